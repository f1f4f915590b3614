"""One interface over every lock we compare: acquire, release, close.

Each contender waits the way its library does by default: pkgcache in the
kernel (no deadline) or with its deadline polling (``timeout=60``), raw
``flock`` blocking in the kernel, portalocker, filelock and fasteners by
their default polling intervals (0.25 s, 0.05 s, 0.01 s growing to 0.1 s).
The constructors take plain strings so a spawned process can build them.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any, Protocol

import fasteners
import filelock
import portalocker

import pkgcache

__all__ = ["KINDS", "POSTGRES_URLS", "BenchLock", "make_lock"]

LONG = 3600.0  # "wait as long as it takes" for libraries that need a number


class BenchLock(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


class PkgcacheLock:
    """``cache.exclusive(package)`` / ``cache.reading(package)``, entered by hand.

    ``package=None`` is the whole-cache call (``exclusive()`` / ``reading()``).
    """

    def __init__(
        self,
        root: str,
        package: str | None,
        exclusive: bool,
        timeout: float | None = None,
        locks: str | None = None,
    ) -> None:
        self._cache = (
            pkgcache.Cache(root) if locks is None else pkgcache.Cache(root, locks=locks)
        )
        self._packages = () if package is None else (package,)
        self._exclusive = exclusive
        self._timeout = timeout
        self._request: Any = None

    def acquire(self) -> None:
        # As a user writes it: ``timeout=`` only when there is one.
        take = self._cache.exclusive if self._exclusive else self._cache.reading
        request: Any = (
            take(*self._packages)
            if self._timeout is None
            else take(*self._packages, timeout=self._timeout)
        )
        request.__enter__()
        self._request = request

    def release(self) -> None:
        request, self._request = self._request, None
        request.__exit__(None, None, None)

    def close(self) -> None:
        pass


class FlockLock:
    """Raw ``flock`` on a descriptor kept open, blocking in the kernel."""

    def __init__(self, path: str, exclusive: bool) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH

    def acquire(self) -> None:
        fcntl.flock(self._fd, self._mode)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class _LibraryLock:
    """A library lock object with ``acquire()`` / ``release()`` of its own."""

    _lock: Any

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def close(self) -> None:
        pass


class PortalockerLock(_LibraryLock):
    """``portalocker.Lock`` with its default polling (every 0.25 s)."""

    def __init__(self, path: str, exclusive: bool) -> None:
        mode = (
            portalocker.LockFlags.EXCLUSIVE
            if exclusive
            else portalocker.LockFlags.SHARED
        )
        self._lock = portalocker.Lock(
            path, timeout=LONG, flags=mode | portalocker.LockFlags.NON_BLOCKING
        )


class FileLockLock(_LibraryLock):
    """``filelock.FileLock`` (exclusive only) with its default polling (0.05 s)."""

    def __init__(self, path: str, exclusive: bool) -> None:
        if not exclusive:
            raise ValueError("filelock.FileLock has no shared mode")
        self._lock = filelock.FileLock(path)


class FastenersLock:
    """``fasteners.InterProcessReaderWriterLock`` with its default backoff.

    It uses POSIX record locks (``lockf``), which never exclude the threads
    of one process: compare it across processes only.
    """

    def __init__(self, path: str, exclusive: bool) -> None:
        self._lock = fasteners.InterProcessReaderWriterLock(path)
        self._exclusive = exclusive

    def acquire(self) -> None:
        if self._exclusive:
            self._lock.acquire_write_lock()
        else:
            self._lock.acquire_read_lock()

    def release(self) -> None:
        if self._exclusive:
            self._lock.release_write_lock()
        else:
            self._lock.release_read_lock()

    def close(self) -> None:
        pass


#: The lock server of the PostgreSQL contenders (``pkgcache pg-unix``,
#: ``pkgcache pg-tcp``): set by :mod:`benchmarks.bench_postgres` in the
#: environment, which spawned workers inherit.
POSTGRES_URLS = {
    "pkgcache pg-unix": "PKGCACHE_BENCH_POSTGRES_UNIX",
    "pkgcache pg-tcp": "PKGCACHE_BENCH_POSTGRES_TCP",
}

#: Contender names, and whether each excludes the threads of one process.
KINDS = {
    "pkgcache": True,
    "pkgcache timeout=60": True,
    "flock": True,
    "portalocker": True,
    "filelock": True,
    "fasteners": False,
}


def make_lock(
    kind: str, folder: str, package: str | None, exclusive: bool
) -> BenchLock:
    """The lock ``kind`` on ``package`` (a file per package) under ``folder``.

    pkgcache contenders use ``<folder>/cache`` as their cache root (the
    PostgreSQL ones ``<folder>/cache-pg-unix`` and ``cache-pg-tcp``); the
    others use ``<folder>/<kind>-<package>.lock``.
    """
    if kind == "pkgcache":
        return PkgcacheLock(os.path.join(folder, "cache"), package, exclusive)
    if kind == "pkgcache timeout=60":
        return PkgcacheLock(
            os.path.join(folder, "cache"), package, exclusive, timeout=60.0
        )
    if kind in POSTGRES_URLS:
        # A cache of its own: one process uses a cache with one engine.
        root = os.path.join(folder, f"cache-{kind.rpartition(' ')[2]}")
        url = os.environ[POSTGRES_URLS[kind]]
        return PkgcacheLock(root, package, exclusive, locks=url)
    path = os.path.join(folder, f"{kind}-{package or 'root'}.lock")
    if kind == "flock":
        return FlockLock(path, exclusive)
    if kind == "portalocker":
        return PortalockerLock(path, exclusive)
    if kind == "filelock":
        return FileLockLock(path, exclusive)
    if kind == "fasteners":
        return FastenersLock(path, exclusive)
    raise ValueError(f"unknown contender {kind!r}")
