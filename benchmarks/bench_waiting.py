"""Issue 4: how waiting goes — starved writers, hand-over, fairness.

Writer wait under reader load: reader processes continuously take
overlapping shared holds of 5 ms on one package while one process repeatedly
asks for it exclusively. With plain flock new readers overtake the queued
writer, so its wait is unbounded; pkgcache's writer-intent gate should keep
the writer's p99 within 3x the readers' hold. A writer whose single wait
passes the cap is reported as starved (the readers are then stopped so the
run ends).

Hand-over: the time from a holder's release to the moment a waiter (in
another process, or another thread) holds the lock. The holder releases
after a random delay so polling waiters are caught at a random phase.

Fairness: N workers contend for one package, holding it 1 ms each time,
for a fixed duration; the slowest worker's share should be at least half
the average.
"""

from __future__ import annotations

import multiprocessing.connection
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._common import WAIT, Scale, percentile, spread, table
from benchmarks._contenders import KINDS, make_lock
from benchmarks._workers import SPAWN, Task, run_plan

PACKAGE = "setuptools-scm"
READER_HOLD = 0.005  # each reader's hold in the writer-wait benchmark
# The columns of a writer-wait table (also PostgreSQL's, in bench_postgres).
WRITER_WAIT_COLUMNS = [
    "contender",
    "requests",
    "p50 ms",
    "p99 ms",
    "max ms",
    "starved",
    "reader holds/s",
]
WRITER_HOLD = 0.001
WRITER_PAUSE = 0.02  # between the writer's requests: readers resume meanwhile
FAIR_HOLD = 0.001
# Delay before a hand-over release: 2 ms (the waiter is parked by then) plus
# a random part as long as the contender's polling period.
HANDOVER_JITTER = {
    "pkgcache": 0.002,
    "pkgcache timeout=60": 0.002,
    "flock": 0.002,
    "portalocker": 0.25,
    "filelock": 0.05,
    "fasteners": 0.1,
    # A waiter on PostgreSQL is parked once its wait statement reached the
    # server: well within the 2 ms, but a first wait also opens a session.
    "pkgcache pg-unix": 0.005,
    "pkgcache pg-tcp": 0.005,
}
POLLING = {"portalocker", "filelock", "fasteners"}


def _recv(conn: multiprocessing.connection.Connection) -> Any:
    if not conn.poll(WAIT):
        raise TimeoutError("benchmark peer did not answer")
    return conn.recv()


# -- writer wait under reader load ----------------------------------------------


def _reader(
    kind: str, folder: str, index: int, barrier: Any, stop: Any, counts: Any
) -> None:
    lock = make_lock(kind, folder, PACKAGE, exclusive=False)
    lock.acquire()
    lock.release()
    barrier.wait(WAIT)
    done = 0
    try:
        while not stop.is_set():
            lock.acquire()
            time.sleep(READER_HOLD)
            lock.release()
            done += 1
    finally:
        counts[index] = done
        lock.close()


def _writer(
    kind: str,
    folder: str,
    run: float,
    barrier: Any,
    waiting_since: Any,
    conn: multiprocessing.connection.Connection,
) -> None:
    lock = make_lock(kind, folder, PACKAGE, exclusive=True)
    lock.acquire()
    lock.release()
    barrier.wait(WAIT)
    waits = []
    end = time.monotonic() + run
    time.sleep(WRITER_PAUSE)  # the readers get going first
    try:
        while time.monotonic() < end:
            asked = waiting_since.value = time.monotonic()
            lock.acquire()
            waits.append(time.monotonic() - asked)
            waiting_since.value = 0.0
            time.sleep(WRITER_HOLD)
            lock.release()
            time.sleep(WRITER_PAUSE)
    finally:
        conn.send(waits)
        lock.close()


def _writer_run(kind: str, folder: str, scale: Scale) -> dict[str, Any]:
    n = scale.readers
    barrier = SPAWN.Barrier(n + 2)
    stop = SPAWN.Event()
    counts = SPAWN.Array("q", n)
    waiting_since = SPAWN.Value("d", 0.0)
    parent_end, child_end = SPAWN.Pipe()
    readers = [
        SPAWN.Process(
            target=_reader,
            args=(kind, folder, i, barrier, stop, counts),
            daemon=True,
        )
        for i in range(n)
    ]
    writer = SPAWN.Process(
        target=_writer,
        args=(kind, folder, scale.writer_run, barrier, waiting_since, child_end),
        daemon=True,
    )
    for process in [*readers, writer]:
        process.start()
    starved = False
    try:
        barrier.wait(WAIT)
        start = time.monotonic()
        deadline = start + scale.writer_run + scale.starve_cap + 1.0
        while not parent_end.poll(0.05):
            now = time.monotonic()
            since = waiting_since.value
            if (since and now - since > scale.starve_cap) or now > deadline:
                starved = True
                break
    finally:
        stop.set()
    waits: list[float] = _recv(parent_end)
    elapsed = time.monotonic() - start
    for process in [*readers, writer]:
        process.join(WAIT)
    ms = [w * 1e3 for w in waits]
    return {
        "waits_ms": ms,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms, default=float("nan")),
        "starved": starved,
        "reader_ops_s": sum(counts) / elapsed,
    }


def writer_wait(scale: Scale, folder: str) -> dict[str, Any]:
    """The wait of a writer among overlapping readers, per contender."""
    data: dict[str, Any] = {}
    rows = []
    for kind in ("pkgcache", "flock", "portalocker"):
        work = Path(folder, f"writer-{kind}")
        work.mkdir()
        result = data[kind] = _writer_run(kind, str(work), scale)
        starved = f"starved: > {scale.starve_cap:g} s" if result["starved"] else "no"
        rows.append(
            (
                kind,
                len(result["waits_ms"]),
                result["p50_ms"],
                result["p99_ms"],
                result["max_ms"],
                starved,
                result["reader_ops_s"],
            )
        )
    print(
        f"\n## Writer wait under reader load: {scale.readers} processes take "
        f"overlapping {READER_HOLD * 1e3:g} ms shared holds; one process asks for "
        "exclusive"
    )
    print(
        f"writer: {scale.writer_run:g} s per contender, a request every "
        f"{WRITER_PAUSE * 1e3:g} ms; one wait longer than {scale.starve_cap:g} s "
        "counts as starved. Target for pkgcache: p99 <= "
        f"{3 * READER_HOLD * 1e3:g} ms"
    )
    print(
        table(
            WRITER_WAIT_COLUMNS,
            rows,
        )
    )
    return {"writer_wait": data}


# -- hand-over ------------------------------------------------------------------


def _handover_waiter(
    kind: str, folder: str, conn: multiprocessing.connection.Connection
) -> None:
    lock = make_lock(kind, folder, PACKAGE, exclusive=True)
    granted = []
    try:
        while _recv(conn):  # True: the holder holds it; False: finished
            conn.send("waiting")
            lock.acquire()
            granted.append(time.monotonic())
            lock.release()
            conn.send("done")
        conn.send(granted)
    finally:
        lock.close()


def _handover_holder(
    kind: str,
    folder: str,
    conn: multiprocessing.connection.Connection,
    samples: int,
    seed: int,
) -> list[float]:
    """Hand the lock over ``samples`` times; the latencies in seconds."""
    lock = make_lock(kind, folder, PACKAGE, exclusive=True)
    rng = random.Random(seed)
    jitter = HANDOVER_JITTER[kind]
    released = []
    try:
        for _ in range(samples):
            lock.acquire()
            conn.send(True)
            _recv(conn)  # the waiter is about to wait
            time.sleep(0.002 + rng.random() * jitter)
            released.append(time.monotonic())
            lock.release()
            _recv(conn)  # the waiter got it and let it go
        conn.send(False)
        granted: list[float] = _recv(conn)
    finally:
        lock.close()
    return [g - r for g, r in zip(granted, released, strict=True)]


def _handover_pair(kind: str, folder: str, mode: str, samples: int) -> list[float]:
    mine, theirs = SPAWN.Pipe()
    if mode == "threads":
        waiter: Any = threading.Thread(
            target=_handover_waiter, args=(kind, folder, theirs), daemon=True
        )
    else:
        waiter = SPAWN.Process(
            target=_handover_waiter, args=(kind, folder, theirs), daemon=True
        )
    waiter.start()
    try:
        return _handover_holder(kind, folder, mine, samples, seed=samples)
    finally:
        waiter.join(WAIT)


def handover(scale: Scale, folder: str) -> dict[str, Any]:
    """Release-to-acquired latency across processes and threads.

    The blocking contenders run ``scale.handover_rounds`` interleaved rounds
    (pkgcache, pkgcache with a deadline, flock, pkgcache, ...) whose samples
    are pooled: one round's median moved by ±30% with the machine's load,
    and the rounds spread that over all contenders alike. Polling ones run
    one round (each sample costs up to their polling period).
    """
    data: dict[str, Any] = {}
    rows = []
    for mode in ("processes", "threads"):
        kinds = [
            k for k, threads_too in KINDS.items() if mode == "processes" or threads_too
        ]
        pooled: dict[str, list[float]] = {kind: [] for kind in kinds}
        medians: dict[str, list[float]] = {kind: [] for kind in kinds}
        for round_index in range(scale.handover_rounds):
            for kind in kinds:
                if kind in POLLING and round_index:
                    continue
                samples = scale.polling_samples if kind in POLLING else scale.samples
                work = Path(
                    folder, f"handover-{mode}-{kind.replace(' ', '-')}-{round_index}"
                )
                work.mkdir()
                us = [s * 1e6 for s in _handover_pair(kind, str(work), mode, samples)]
                pooled[kind] += us
                medians[kind].append(statistics.median(us))
        for kind in KINDS:
            if kind not in pooled:
                rows.append((kind, mode, "-", "-", "-", "-", "-", "n/a: lockf"))
                continue
            us = pooled[kind]
            key = f"{kind} / {mode}"
            data[key] = spread(us)
            data[key]["samples_us"] = us
            data[key]["round_medians_us"] = medians[kind]
            rounds = medians[kind]
            rows.append(
                (
                    kind,
                    mode,
                    len(us),
                    statistics.median(us),
                    f"{min(rounds):.0f}-{max(rounds):.0f}" if len(rounds) > 1 else "-",
                    percentile(us, 90),
                    percentile(us, 99),
                    max(us),
                )
            )
    print("\n## Hand-over: release -> the waiter holds it (µs)")
    print(
        "exclusive -> exclusive on one package; pkgcache without a deadline "
        "(target median <= 100 µs across processes) and with timeout=60 "
        "(target <= 2,000 µs); same-process waiters are woken, never polled; "
        f"{scale.handover_rounds} interleaved rounds pooled for blocking "
        "contenders (range of the round medians beside)"
    )
    print(
        table(
            ["contender", "across", "n", "median", "rounds", "p90", "p99", "max"],
            rows,
        )
    )
    print("fasteners uses POSIX lockf, which does not exclude threads of one process")
    return {"handover": data}


# -- fairness -------------------------------------------------------------------


def fairness(scale: Scale, folder: str) -> dict[str, Any]:
    """Each worker's share of one contended package."""
    data: dict[str, Any] = {}
    rows = []
    n = scale.fair_workers
    for mode in ("threads", "processes"):
        work = Path(folder, f"fairness-{mode}")
        work.mkdir()
        plan = [
            Task(kind, "contended", scale.fair_duration, FAIR_HOLD)
            for kind in ("pkgcache", "flock")
        ]
        for task, counts in zip(plan, run_plan(mode, n, str(work), plan), strict=True):
            mean = statistics.mean(counts)
            slowest = min(counts) / mean if mean else float("nan")
            data[f"{task.kind} / {mode}"] = {
                "counts": counts,
                "min/mean": slowest,
                "max/mean": max(counts) / mean if mean else float("nan"),
                "ops_s": sum(counts) / task.duration,
            }
            rows.append(
                (
                    task.kind,
                    mode,
                    sum(counts) / task.duration,
                    min(counts),
                    mean,
                    max(counts),
                    f"{slowest:.2f}",
                )
            )
    print(
        f"\n## Fairness: {n} workers contend for one package, "
        f"{FAIR_HOLD * 1e3:g} ms holds, {scale.fair_duration:g} s"
    )
    print(
        table(
            [
                "contender",
                "workers",
                "ops/s",
                "slowest",
                "mean",
                "fastest",
                "slowest/mean (>= 0.5)",
            ],
            rows,
        )
    )
    return {"fairness": data}
