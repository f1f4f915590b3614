"""Testing code that uses pkgcache, with the fixtures of its pytest plugin.

Run it with ``python -m pytest examples/test_with_plugin.py``. The plugin is
installed with pkgcache (nothing to configure): ``pkgcache`` is a fresh
cache in the test's temporary folder, ``pkgcache_factory`` makes more, and a
test that leaves a lock held fails at teardown.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pkgcache import Cache, LockTimeout
from pkgcache.pytest_plugin import CacheFactory


def publish(cache: Cache, package: str, version: str) -> None:
    """The code under test: write a file for ``package`` under its lock."""
    with cache.exclusive(package):
        folder = cache.root / "artifacts" / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{package}-{version}.txt").write_text(version)


def test_publish_from_many_threads(pkgcache: Cache) -> None:
    jobs = [(f"pkg-{i % 3}", f"1.{i}") for i in range(12)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: publish(pkgcache, *job), jobs))
    assert len(list((pkgcache.root / "artifacts").rglob("*.txt"))) == 12


def test_a_writer_excludes_readers(pkgcache: Cache) -> None:
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with pkgcache.exclusive("setuptools-scm"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(30)
        with (
            pytest.raises(LockTimeout) as excinfo,
            pkgcache.reading("Setuptools_SCM", timeout=0),
        ):
            pass
        assert excinfo.value.package == "setuptools-scm"
        with pkgcache.reading("packaging", timeout=0):
            pass  # other packages are not blocked
    finally:
        release.set()
        thread.join(30)


def test_separate_caches_share_nothing(pkgcache_factory: CacheFactory) -> None:
    build_cache = pkgcache_factory("build")
    download_cache = pkgcache_factory("downloads", timeout=5)
    with build_cache.exclusive(), download_cache.exclusive(timeout=0):
        assert build_cache.root != download_cache.root
