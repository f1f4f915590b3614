"""pytest fixtures for code that uses pkgcache.

Installed with pkgcache and registered through the ``pytest11`` entry point,
so the fixtures are available in every test suite of an environment where
pkgcache is installed (``-p no:pkgcache`` turns the plugin off):

``pkgcache``
    A fresh :class:`~pkgcache.Cache` in the test's temporary directory.
``tmp_pkgcache``
    The same cache under a name that leaves the module alone: inside a test
    that takes the ``pkgcache`` fixture, ``pkgcache`` is the cache, so
    ``pkgcache.LockTimeout`` fails. Take ``tmp_pkgcache`` in a test that
    also uses the module.
``pkgcache_factory``
    A :class:`CacheFactory`: call it for as many caches as the test needs,
    each in its own folder, optionally named and with its own timeout.

At teardown, every cache made through these fixtures is checked: if a
thread of the test process still holds one of its locks (a ``with`` block
left open, a thread that never finished), the test errors at teardown with
a message naming the lock, its mode and the holding threads. The check sees
locks taken through any :class:`~pkgcache.Cache` object on those folders,
and only in the test process (a child process's locks die with it).

The ``pkgcache_timeout`` ini option sets the default lock timeout of the
caches the fixtures make (default: none, wait forever), so a test that
deadlocks fails with a :class:`~pkgcache.LockTimeout` naming the holders.

The ``pkgcache_locks`` ini option, or ``--pkgcache-locks URL`` on the
command line (which wins), puts the locks of those caches on a lock server
(``postgresql://...``, see :doc:`postgres`): the same tests then run against
the PostgreSQL engine.

Each test gets its own folders (under ``tmp_path``), so the fixtures work
unchanged under pytest-xdist.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._cache import Cache
from ._names import canonical_name
from ._timeouts import DEFAULT_TIMEOUT, DefaultTimeout

__all__ = ["CacheFactory", "pkgcache", "pkgcache_factory", "tmp_pkgcache"]

_TIMEOUT_INI = "pkgcache_timeout"
_LOCKS_INI = "pkgcache_locks"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``pkgcache_timeout`` and ``pkgcache_locks`` options."""
    parser.addini(
        _TIMEOUT_INI,
        "default lock timeout in seconds of the caches made by the pkgcache "
        "fixtures (default: wait forever)",
        default="",
    )
    parser.addini(
        _LOCKS_INI,
        "lock server URL (postgresql://...) of the caches made by the pkgcache "
        "fixtures (default: lock files)",
        default="",
    )
    parser.addoption(
        "--pkgcache-locks",
        metavar="URL",
        default=None,
        help="lock server URL of the caches made by the pkgcache fixtures "
        "(overrides the pkgcache_locks ini option)",
    )


class CacheFactory:
    """Makes caches in a test's temporary directory; what ``pkgcache_factory`` is.

    ``factory()`` returns a new cache in its own folder; ``factory("mirror")``
    the cache named ``mirror`` (asking twice for one name gives two
    :class:`~pkgcache.Cache` objects on the same folder, which share their
    locks). ``timeout`` is the cache's default lock timeout (by default the
    factory's).

    Args:
        base: the folder under which the caches are made.
        timeout: the default timeout of the caches made.
        locks: the ``locks=`` of the caches made (a lock server's URL), or
            ``None`` for lock files.
    """

    def __init__(
        self, base: Path, timeout: float | None = None, locks: str | None = None
    ) -> None:
        self.base = base
        self.timeout = timeout
        self.locks = locks
        self.caches: list[Cache] = []
        self._count = 0

    def __call__(
        self,
        name: str | None = None,
        *,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> Cache:
        """A cache in ``<base>/<name>``; ``name`` must be a plain name, not a path.

        Raises:
            InvalidPackageName: ``name`` is not letters, digits, ``.``, ``-``
                and ``_`` (the rules of a project name).
        """
        if name is None:
            name = f"cache-{self._count}"
            self._count += 1
        folder = canonical_name(name)
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.timeout
        cache = Cache(self.base / folder, timeout=timeout, locks=self.locks)
        self.caches.append(cache)
        return cache

    def held_locks(self) -> list[str]:
        """One line for each lock of these caches a thread here still holds."""
        lines: list[str] = []
        seen: set[tuple[str, str | None]] = set()
        for cache in self.caches:
            for stats in cache.locks_in_use():
                key = (os.path.realpath(cache.root), stats.package)
                if key in seen or not (stats.readers or stats.writer):
                    continue
                seen.add(key)
                what = (
                    "the whole cache"
                    if stats.package is None
                    else f"package {stats.package!r}"
                )
                who = (
                    f"exclusive by thread {stats.writer}"
                    if stats.writer is not None
                    else ", ".join(f"shared by thread {name}" for name in stats.readers)
                )
                lines.append(f"{what} of {cache.root} is held {who}")
        return lines


def _default_timeout(config: pytest.Config) -> float | None:
    text = str(config.getini(_TIMEOUT_INI)).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise pytest.UsageError(
            f"{_TIMEOUT_INI} must be a number of seconds, not {text!r}"
        ) from None


def _locks(config: pytest.Config) -> str | None:
    url = config.getoption("--pkgcache-locks") or str(config.getini(_LOCKS_INI))
    return url.strip() or None


@pytest.fixture
def pkgcache_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[CacheFactory]:
    """Make as many caches as the test needs; fail if one is left locked."""
    factory = CacheFactory(
        tmp_path / "pkgcache",
        timeout=_default_timeout(request.config),
        locks=_locks(request.config),
    )
    yield factory
    held = factory.held_locks()
    if held:
        pytest.fail(
            "pkgcache locks still held at teardown (a with-block left open or "
            "a thread still running): " + "; ".join(held),
            pytrace=False,
        )


@pytest.fixture
def pkgcache(pkgcache_factory: CacheFactory) -> Cache:
    """A fresh :class:`~pkgcache.Cache` in the test's temporary directory.

    In the test, the name ``pkgcache`` is then this cache, not the module;
    :func:`tmp_pkgcache` is the same cache under another name.
    """
    return pkgcache_factory("default")


@pytest.fixture
def tmp_pkgcache(pkgcache_factory: CacheFactory) -> Cache:
    """The ``pkgcache`` fixture's cache, under a name that hides no module."""
    return pkgcache_factory("default")
