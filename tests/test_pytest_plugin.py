"""The pytest plugin: fixtures, the teardown check, xdist, opting out."""

from __future__ import annotations

import pytest

import pkgcache
from pkgcache.pytest_plugin import CacheFactory

# A fixture the inner tests set up BEFORE ``pkgcache`` (it comes first in
# their arguments), so it is torn down AFTER the plugin's check: it releases
# whatever the test leaked, so nothing stays held in this process.
RELEASE_CONFTEST = """
import threading
import pytest

LEAKED = []

@pytest.fixture
def release_later():
    yield LEAKED
    for item in reversed(LEAKED):
        if isinstance(item, threading.Event):
            item.set()
        elif isinstance(item, threading.Thread):
            item.join(30)
        else:
            item.__exit__(None, None, None)
    LEAKED.clear()
"""


# Plugins the inner runs do not need (hypothesis alone takes seconds to load).
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET_PLUGINS, *args)


def test_fixture_is_a_fresh_cache_in_tmp_path(
    pkgcache: pkgcache.Cache, tmp_path
) -> None:
    assert isinstance(pkgcache, __import__("pkgcache").Cache)
    assert pkgcache.root.is_relative_to(tmp_path)
    assert not pkgcache.root.exists()  # nothing is created before first use
    with pkgcache.exclusive("a") as txn:
        assert txn.packages == ("a",)
    assert pkgcache.root.is_dir()


def test_factory_makes_separate_named_caches(
    pkgcache_factory: CacheFactory, tmp_path
) -> None:
    first, second = pkgcache_factory(), pkgcache_factory()
    mirror = pkgcache_factory("Mirror_Cache", timeout=2.5)
    assert len({first.root, second.root, mirror.root}) == 3
    assert all(c.root.is_relative_to(tmp_path) for c in (first, second, mirror))
    assert mirror.root.name == "mirror-cache"
    assert mirror.timeout == 2.5
    assert first.timeout is None
    assert pkgcache_factory("mirror-cache").root == mirror.root
    with first.exclusive("a"), second.exclusive("a", timeout=0):
        pass  # separate caches: separate locks


def test_factory_refuses_a_path_as_name(pkgcache_factory: CacheFactory) -> None:
    for name in ("../escape", "a/b", "/abs", ""):
        with pytest.raises(pkgcache.InvalidPackageName):
            pkgcache_factory(name)


def test_clean_tests_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_reads(pkgcache):
            with pkgcache.reading("a"), pkgcache.reading("a"):
                pass

        def test_many(pkgcache, pkgcache_factory):
            other = pkgcache_factory()
            with pkgcache.exclusive("a"), other.exclusive("a", timeout=0):
                pass
            assert other.root != pkgcache.root
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_tmp_pkgcache_leaves_the_module_name_alone(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RELEASE_CONFTEST)
    pytester.makepyfile(
        """
        import pytest
        import pkgcache

        def test_module_and_cache(tmp_pkgcache):
            with tmp_pkgcache.exclusive("a"):
                pass
            with pytest.raises(pkgcache.InvalidPackageName):
                tmp_pkgcache.reading("../etc")

        def test_one_cache_under_two_names(tmp_pkgcache, pkgcache):
            assert tmp_pkgcache.root == pkgcache.root

        def test_the_shadowed_module(pkgcache):
            with pytest.raises(AttributeError):
                pkgcache.LockTimeout

        def test_checked_at_teardown(release_later, tmp_pkgcache):
            request = tmp_pkgcache.exclusive("b")
            request.__enter__()
            release_later.append(request)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*package 'b'*held exclusive*"])


def test_lock_left_held_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RELEASE_CONFTEST)
    pytester.makepyfile(
        """
        def test_leaks(release_later, pkgcache):
            request = pkgcache.exclusive("setuptools-scm")
            request.__enter__()
            release_later.append(request)

        def test_leaks_from_factory(release_later, pkgcache_factory):
            request = pkgcache_factory("other").reading()
            request.__enter__()
            release_later.append(request)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*pkgcache locks still held at teardown*package 'setuptools-scm'*"
            "held exclusive by thread MainThread*",
            "*pkgcache locks still held at teardown*the whole cache*"
            "held shared by thread MainThread*",
        ]
    )


def test_lock_held_by_a_leftover_thread_fails_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(RELEASE_CONFTEST)
    pytester.makepyfile(
        """
        import threading

        def test_thread_leaks(release_later, pkgcache):
            held, done = threading.Event(), threading.Event()

            def hold():
                with pkgcache.reading("a"):
                    held.set()
                    done.wait(30)

            thread = threading.Thread(target=hold, name="leaky-worker")
            thread.start()
            release_later.extend([thread, done])  # released in reverse
            assert held.wait(30)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*package 'a' of * is held shared by thread leaky-worker*"]
    )


def test_lock_released_by_a_fixture_of_the_test_is_fine(
    pytester: pytest.Pytester,
) -> None:
    # A fixture that uses the cache is torn down before the check runs.
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def holding(pkgcache):
            with pkgcache.exclusive("a") as txn:
                yield txn

        def test_uses_it(holding):
            assert holding.is_open
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_timeout_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\npkgcache_timeout = 0\n")
    pytester.makepyfile(
        """
        import threading
        import pkgcache as pc

        def test_timeout(pkgcache, pkgcache_factory):
            assert pkgcache.timeout == 0.0
            assert pkgcache_factory(timeout=None).timeout is None
            held, done = threading.Event(), threading.Event()

            def hold():
                with pkgcache.exclusive("a"):
                    held.set()
                    done.wait(30)

            thread = threading.Thread(target=hold)
            thread.start()
            try:
                assert held.wait(30)
                try:
                    with pkgcache.reading("a"):
                        raise AssertionError("not excluded")
                except pc.LockTimeout:
                    pass
            finally:
                done.set()
                thread.join(30)
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(pkgcache):\n    pass\n")
    result = run(pytester, "-p", "no:pkgcache")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'pkgcache' not found*"])


@pytest.mark.timeout(90)
def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RELEASE_CONFTEST)
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_isolated(pkgcache, n):
            with pkgcache.exclusive("a", timeout=0):
                (pkgcache.root / "worker").write_text(os.environ["PYTEST_XDIST_WORKER"])
            assert (pkgcache.root / "worker").read_text().startswith("gw")

        def test_leaks(release_later, pkgcache):
            request = pkgcache.exclusive("b")
            request.__enter__()
            release_later.append(request)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", *QUIET_PLUGINS, timeout=80
    )
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(["*2 workers*", "*package 'b'*held exclusive*"])
