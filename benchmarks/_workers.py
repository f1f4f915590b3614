"""Pools of worker threads or spawned processes that run a plan of lock loops.

Workers start once per pool and run every task of the plan in step: a
barrier starts each task in every worker at the same moment, so contenders
can be interleaved (pkgcache, raw flock, pkgcache, ...) without paying for
process start-up between them, and start-up never counts in a measurement.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any, NamedTuple

from benchmarks._common import WAIT
from benchmarks._contenders import BenchLock, make_lock

SPAWN = multiprocessing.get_context("spawn")


class Task(NamedTuple):
    """Every worker loops on ``kind``'s exclusive lock for ``duration`` s.

    ``package=None`` gives each worker its own package (``pkg<index>``);
    a name makes them all contend for that one. ``hold`` is the time spent
    holding the lock in each iteration.
    """

    kind: str
    package: str | None
    duration: float
    hold: float


def hold_loop(lock: BenchLock, duration: float, hold: float) -> int:
    """Acquire, hold ``hold`` s, release, for ``duration`` s; count the rounds."""
    done = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        lock.acquire()
        time.sleep(hold)
        lock.release()
        done += 1
    return done


def loop_worker(
    folder: str, index: int, workers: int, plan: list[Task], barrier: Any, counts: Any
) -> None:
    """Run ``plan``; write the count of task ``t`` to ``counts[t * workers + index]``."""
    locks: dict[tuple[str, str], BenchLock] = {}
    for task in plan:
        package = task.package or f"pkg{index}"
        if (task.kind, package) not in locks:
            lock = locks[task.kind, package] = make_lock(
                task.kind, folder, package, exclusive=True
            )
            lock.acquire()  # create files and open descriptors before the clock
            lock.release()
    try:
        for t, task in enumerate(plan):
            lock = locks[task.kind, task.package or f"pkg{index}"]
            barrier.wait(WAIT)
            counts[t * workers + index] = hold_loop(lock, task.duration, task.hold)
    finally:
        for lock in locks.values():
            lock.close()


def run_plan(mode: str, workers: int, folder: str, plan: list[Task]) -> list[list[int]]:
    """Run ``plan`` in ``workers`` threads or processes; counts per task, per worker."""
    size = len(plan) * workers
    if mode == "threads":
        barrier: Any = threading.Barrier(workers + 1)
        counts: Any = [0] * size
        pool: list[Any] = [
            threading.Thread(
                target=loop_worker,
                args=(folder, i, workers, plan, barrier, counts),
                daemon=True,
            )
            for i in range(workers)
        ]
    else:
        barrier = SPAWN.Barrier(workers + 1)
        counts = SPAWN.Array("q", size)
        pool = [
            SPAWN.Process(
                target=loop_worker,
                args=(folder, i, workers, plan, barrier, counts),
                daemon=True,
            )
            for i in range(workers)
        ]
    for worker in pool:
        worker.start()
    try:
        for _ in plan:
            barrier.wait(WAIT)
    finally:
        for worker in pool:
            worker.join(WAIT)
    values = list(counts)
    return [values[t * workers : (t + 1) * workers] for t in range(len(plan))]
