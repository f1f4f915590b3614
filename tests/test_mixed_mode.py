"""``exclusive(*packages, reading=...)``: write some packages, read others, in one call.

The builder's pattern: hold my package exclusively while I read my build
dependencies. All locks are taken in the one global order, so crossed sets
never deadlock and a dependency that sorts first is never a LockOrderError.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pkgcache
from tests.helpers import SPAWN, WAIT, LockServer, thread_holding


def crossed_caller(
    root: str, pair: tuple[str, str], rounds: int, barrier: Any, results: Any
) -> None:
    """A process: ``exclusive(mine, reading=[other])`` again and again."""
    mine, other = pair
    cache = pkgcache.Cache(root)
    barrier.wait(WAIT)
    done = 0
    for _ in range(rounds):
        with cache.exclusive(mine, reading=[other], timeout=WAIT):
            done += 1
    results.put(done)


def test_holds_packages_exclusive_and_dependencies_shared(tmp_path: Path) -> None:
    cache = pkgcache.Cache(tmp_path / "cache")
    server = LockServer(str(tmp_path / "cache"))
    try:
        with cache.exclusive("zlib-ng", reading=["Aaa.Dep", "bbb"]) as txn:
            assert txn.packages == ("zlib-ng",)
            assert txn.reading == ("aaa-dep", "bbb")
            assert not txn.whole_cache
            # Another process: may read the dependencies, not write them, and
            # may not touch the exclusive package at all.
            assert server.call("try", "r", ["aaa-dep", "bbb"], 0) is True
            assert server.call("try", "x", ["bbb"], 0) is not True
            assert server.call("try", "r", ["zlib-ng"], 0) is not True
            stats = cache.statistics("bbb")
            assert stats.held == pkgcache.Mode.SHARED
            assert cache.statistics("zlib-ng").held == pkgcache.Mode.EXCLUSIVE
        assert server.call("try", "x", ["aaa-dep", "bbb", "zlib-ng"], 0) is True
    finally:
        server.close()


def test_a_name_in_both_is_exclusive(tmp_path: Path) -> None:
    cache = pkgcache.Cache(tmp_path / "cache")
    with cache.exclusive("a", reading=["a", "b"]) as txn:
        assert txn.packages == ("a",)
        assert txn.reading == ("b",)
        assert cache.statistics("a").held == pkgcache.Mode.EXCLUSIVE


def test_reads_every_package_and_writes_only_the_exclusive_ones(
    tmp_path: Path,
) -> None:
    cache = pkgcache.Cache(tmp_path / "cache", durable=False)
    wheel = tmp_path / "dep-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel, but bytes")
    with cache.exclusive("dep") as txn:
        txn.add(wheel)
    with cache.exclusive("mine", reading=["dep"]) as txn:
        assert txn.find("dep").key == wheel.name  # reads the dependency
        with pytest.raises(pkgcache.NotLockedError, match="only for reading"):
            txn.add(wheel, package="dep")
        with pytest.raises(pkgcache.NotLockedError, match="only for reading"):
            txn.clear(package="dep")
        txn.clear()  # the packages held exclusively only
        assert [e.key for e in txn.entries("dep")] == [wheel.name]  # untouched


def test_bad_arguments_are_refused_before_any_lock(tmp_path: Path) -> None:
    cache = pkgcache.Cache(tmp_path / "cache")
    with pytest.raises(ValueError, match="reading"):
        cache.exclusive(reading=["a"])
    with pytest.raises(TypeError):
        cache.exclusive("a", reading="bc")  # a string is not a list of names
    with pytest.raises(pkgcache.InvalidPackageName):
        cache.exclusive("a", reading=["../etc"])
    assert not (tmp_path / "cache").exists()


@pytest.mark.timeout(60)
def test_a_busy_dependency_that_sorts_first_is_waited_for(tmp_path: Path) -> None:
    """Nesting raised LockOrderError here; the one call waits for the holder."""
    cache = pkgcache.Cache(tmp_path / "cache")
    with thread_holding(cache, "x", ("aaa",)):
        with cache.exclusive("zzz"):
            with pytest.raises(pkgcache.LockOrderError, match="reading="):
                with cache.reading("aaa", timeout=WAIT):
                    pass
        granted = threading.Event()

        def builder() -> None:
            with cache.exclusive("zzz", reading=["aaa"], timeout=WAIT):
                granted.set()

        thread = threading.Thread(target=builder)
        thread.start()
        # The builder waits for the holder of "aaa" (a writer), then gets in.
        deadline = time.monotonic() + WAIT
        while not cache.statistics("aaa").threads_waiting:
            assert time.monotonic() < deadline, "the builder never waited"
            time.sleep(0.001)
        assert not granted.is_set()
    thread.join(WAIT)
    assert granted.is_set()


@pytest.mark.timeout(120)
def test_crossed_sets_in_threads_and_processes_all_finish(tmp_path: Path) -> None:
    """``exclusive(a, reading=[b])`` against ``exclusive(b, reading=[a])``."""
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    rounds = 200
    barrier = SPAWN.Barrier(4)
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=crossed_caller,
            args=(str(root), pair, rounds, barrier, results),
        )
        for pair in (("a", "b"), ("b", "a"))
    ]
    for process in processes:
        process.start()
    counts: list[int] = []

    def thread_caller(mine: str, other: str) -> None:
        barrier.wait(WAIT)
        done = 0
        for _ in range(rounds):
            with cache.exclusive(mine, reading=[other], timeout=WAIT):
                done += 1
        counts.append(done)

    threads = [
        threading.Thread(target=thread_caller, args=pair)
        for pair in (("a", "b"), ("b", "a"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert [results.get(timeout=WAIT * 2) for _ in processes] == [rounds, rounds]
    for process in processes:
        process.join(WAIT)
    assert counts == [rounds, rounds]
