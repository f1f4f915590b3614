"""Spawn-safe helpers shared by the multi-process tests.

Everything a ``spawn`` child runs must be importable at module level, so the
targets live here rather than in the test modules.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pkgcache

SPAWN = multiprocessing.get_context("spawn")
WAIT = 30.0  # generous bound for anything that must happen


def request(
    cache: pkgcache.Cache,
    mode: str,
    packages: tuple[str, ...],
    timeout: float | None = WAIT,
) -> AbstractContextManager[Any]:
    """``mode`` is "r" for reading, "x" for exclusive."""
    if mode == "r":
        return cache.reading(*packages, timeout=timeout)
    return cache.exclusive(*packages, timeout=timeout)


def lock_server(
    root: str, conn: multiprocessing.connection.Connection, locks: str | None = None
) -> None:
    """A process that takes and releases locks when told to, over a pipe.

    Commands: ("hold", mode, packages) -> "held"; ("release",) -> "released";
    ("try", mode, packages, timeout) -> True or the LockTimeout message;
    ("exit",). ``locks`` is the cache's ``locks=``.
    """
    cache = pkgcache.Cache(root, locks=locks)
    stack = contextlib.ExitStack()
    while True:
        command = conn.recv()
        if command[0] == "hold":
            stack.enter_context(request(cache, command[1], tuple(command[2])))
            conn.send("held")
        elif command[0] == "release":
            stack.close()
            conn.send("released")
        elif command[0] == "try":
            try:
                with request(cache, command[1], tuple(command[2]), command[3]):
                    conn.send(True)
            except pkgcache.LockTimeout as exc:
                conn.send(str(exc))
        elif command[0] == "pid":
            conn.send(os.getpid())
        else:
            stack.close()
            conn.send("bye")
            return


def depths(cache: pkgcache.Cache, *packages: str) -> dict[str | None, int]:
    """How many times the calling thread holds each lock (``None``: the root)."""
    return {name: cache.statistics(name).depth for name in (None, *packages)}


def assert_nothing_held(cache: pkgcache.Cache, *packages: str) -> None:
    """No thread of this process holds, waits for or moves these locks."""
    for name in (None, *packages):
        stats = cache.statistics(name)
        assert stats.depth == 0, stats
        assert stats.held is None, stats
        assert not stats.readers, stats
        assert stats.writer is None, stats
        assert not stats.writers_waiting, stats
        assert not stats.threads_waiting, stats
        assert not stats.waiting_in_engine, stats


class LockServer:
    """Client side of :func:`lock_server`, running in a spawn process."""

    def __init__(self, root: str, locks: str | None = None) -> None:
        self.conn, child = SPAWN.Pipe()
        self.process = SPAWN.Process(
            target=lock_server, args=(root, child, locks), daemon=True
        )
        self.process.start()
        child.close()

    def call(self, *command: object) -> Any:
        self.conn.send(command)
        if not self.conn.poll(WAIT):
            raise TimeoutError(f"lock server did not answer {command!r}")
        return self.conn.recv()

    def hold(self, mode: str, *packages: str) -> None:
        assert self.call("hold", mode, packages) == "held"

    def release(self) -> None:
        assert self.call("release") == "released"

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.call("exit")
        self.process.join(WAIT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(WAIT)


@contextlib.contextmanager
def thread_holding(
    cache: pkgcache.Cache, mode: str, packages: tuple[str, ...]
) -> Iterator[None]:
    """Hold a lock in another thread for the duration of the block."""
    held, release, failed = threading.Event(), threading.Event(), []

    def run() -> None:
        try:
            with request(cache, mode, packages):
                held.set()
                release.wait(WAIT)
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)
            held.set()

    thread = threading.Thread(target=run, name=f"holder-{mode}-{'-'.join(packages)}")
    thread.start()
    assert held.wait(WAIT)
    assert not failed, failed
    try:
        yield
    finally:
        release.set()
        thread.join(WAIT)
        assert not thread.is_alive()


class Contender:
    """A thread that asks for a lock (waiting as long as needed) and reports.

    ``entered`` fires once the lock is granted; the thread then releases it
    at once.
    """

    def __init__(
        self, cache: pkgcache.Cache, mode: str, packages: tuple[str, ...]
    ) -> None:
        self.entered = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(
            target=self._run, args=(cache, mode, packages), name="contender"
        )
        self.thread.start()

    def _run(self, cache: pkgcache.Cache, mode: str, packages: tuple[str, ...]) -> None:
        try:
            with request(cache, mode, packages):
                self.entered.set()
        except BaseException as exc:  # pragma: no cover - reported by join()
            self.errors.append(exc)

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert not self.errors, self.errors


def hold_until_killed(
    root: str, mode: str, packages: tuple[str, ...], held: Any
) -> None:
    """Take a lock, say so, then wait to be killed."""
    cache = pkgcache.Cache(root)
    with request(cache, mode, packages):
        held.set()
        threading.Event().wait(600)


def exclusive_at_barrier(root: str, package: str, barrier: Any) -> None:
    """Hold exclusive(package) and meet the others at the barrier while holding."""
    cache = pkgcache.Cache(root)
    with cache.exclusive(package, timeout=WAIT):
        barrier.wait(WAIT)


def opposite_orders(root: str, names: list[str], rounds: int, done: Any) -> None:
    """Take several packages, in varying argument orders, repeatedly."""
    cache = pkgcache.Cache(root)
    for i in range(rounds):
        packages = tuple(reversed(names)) if i % 3 else tuple(names)
        with request(cache, "x" if i % 2 else "r", packages):
            pass
    done.put(os.getpid())


def overlapping_reader(
    root: str, package: str, hold: float, start: Any, stop: Any
) -> None:
    """Keep ``reading(package)`` held most of the time, until told to stop.

    The hold time is simulated work while holding the lock, not
    synchronization.
    """
    cache = pkgcache.Cache(root)
    start.wait(WAIT)
    stopped = threading.Event()
    while not stop.is_set():
        with cache.reading(package, timeout=WAIT):
            stopped.wait(hold)


def identity_at_barrier(folder: str, barrier: Any, results: Any) -> None:
    """Read or create the cache identity in ``folder``, all at once."""
    from pkgcache._identity import cache_identity

    fd = os.open(folder, os.O_RDONLY)
    try:
        barrier.wait(WAIT)
        results.put(cache_identity(fd, folder))
    finally:
        os.close(fd)
