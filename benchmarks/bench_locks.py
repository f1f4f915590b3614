"""Issue 2: what a lock costs, and throughput on distinct packages.

Uncontended: the cost of one ``with`` block of each pkgcache call, beside
the raw flock acquire+release pairs the call needs (on descriptors kept
open: the limit), and portalocker, filelock and fasteners taking the same
locks. Targets: pkgcache within 5x the raw pairs, portalocker at least 3x
slower than pkgcache.

Throughput: N threads, or N processes, each holding ``exclusive(own
package)`` for 1 ms in a loop, beside the same loop on raw flock with one
file per worker. Workers on different packages should not slow each other:
target pkgcache at least 90% of raw flock.
"""

from __future__ import annotations

import fcntl
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fasteners
import filelock
import portalocker

import pkgcache
from benchmarks._common import Scale, interleaved, table, uncontended_blocks
from benchmarks._workers import Task, run_plan

HOLD = 0.001  # time held per iteration in the throughput benchmark
PACKAGE = "setuptools-scm"


def _raw_pairs(folder: Path, name: str, modes: list[int]) -> Callable[[], None]:
    """Non-blocking flock of each mode in turn on kept descriptors, then unlock."""
    fds = [
        os.open(folder / f"{name}{i}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        for i in range(len(modes))
    ]
    pairs = list(zip(fds, [m | fcntl.LOCK_NB for m in modes], strict=True))
    flock, unlock = fcntl.flock, fcntl.LOCK_UN

    def run() -> None:
        for fd, mode in pairs:
            flock(fd, mode)
        for fd, _ in reversed(pairs):
            flock(fd, unlock)

    run.fds = fds  # type: ignore[attr-defined]
    return run


def _one_block(contexts: list[Callable[[], Any]]) -> Callable[[], None]:
    """One ``with`` block over one or two locks: the unit the benchmark times.

    One and two locks get their own closure so no ExitStack or loop is timed.
    """
    if len(contexts) == 1:
        (first,) = contexts

        def one() -> None:
            with first():
                pass

        return one
    first, second = contexts

    def two() -> None:
        with first(), second():
            pass

    return two


def _portalocker(folder: Path, name: str, shared: list[bool]) -> Callable[[], None]:
    sh, ex = portalocker.LockFlags.SHARED, portalocker.LockFlags.EXCLUSIVE
    nb = portalocker.LockFlags.NON_BLOCKING
    locks = [
        portalocker.Lock(folder / f"{name}{i}.lock", flags=(sh if s else ex) | nb)
        for i, s in enumerate(shared)
    ]
    return _one_block([lambda lock=lock: lock for lock in locks])


def _filelock(folder: Path, name: str, count: int) -> Callable[[], None]:
    locks = [filelock.FileLock(str(folder / f"{name}{i}.lock")) for i in range(count)]
    return _one_block([lambda lock=lock: lock for lock in locks])


def _fasteners(folder: Path, name: str, shared: list[bool]) -> Callable[[], None]:
    locks = [
        fasteners.InterProcessReaderWriterLock(str(folder / f"{name}{i}.lock"))
        for i in range(len(shared))
    ]
    return _one_block(
        [
            lock.read_lock if s else lock.write_lock
            for lock, s in zip(locks, shared, strict=True)
        ]
    )


# (pkgcache call, the flock modes it takes, whether each is shared)
CALLS = {
    "reading(pkg)": [True, True],
    "exclusive(pkg)": [True, False],
    "reading()": [True],
    "exclusive()": [False],
}


def uncontended(scale: Scale, folder: str) -> dict[str, Any]:
    """Median cost of an uncontended with-block, beside its limit and rivals."""
    base = Path(folder, "uncontended")
    base.mkdir()
    cache = pkgcache.Cache(base / "cache")

    ours = uncontended_blocks(cache, PACKAGE)
    contenders: dict[str, Callable[[], None]] = {}
    raw_fds: list[int] = []
    for n, (call, shared) in enumerate(CALLS.items()):
        modes = [fcntl.LOCK_SH if s else fcntl.LOCK_EX for s in shared]
        raw = _raw_pairs(base, f"raw{n}-", modes)
        raw_fds += raw.fds  # type: ignore[attr-defined]
        contenders[f"pkgcache {call}"] = ours[call]
        contenders[f"raw flock, same locks as {call}"] = raw
        contenders[f"portalocker, same locks as {call}"] = _portalocker(
            base, f"pl{n}-", shared
        )
        contenders[f"filelock, same locks as {call}"] = _filelock(
            base, f"fl{n}-", len(shared)
        )
        contenders[f"fasteners, same locks as {call}"] = _fasteners(
            base, f"fa{n}-", shared
        )
    try:
        results = interleaved(contenders, scale.rounds, scale.round_seconds)
    finally:
        for fd in raw_fds:
            os.close(fd)

    rows = [
        (name, r["median"], r["p10"], r["p90"], r["min"]) for name, r in results.items()
    ]
    print("\n## Uncontended acquire + release (µs per with-block)")
    print(f"{scale.rounds} interleaved rounds; spread over rounds")
    print(table(["what", "median", "p10", "p90", "min"], rows))

    med = {name: r["median"] for name, r in results.items()}
    ratios: dict[str, dict[str, float]] = {}
    ratio_rows = []
    for call in CALLS:
        mine = med[f"pkgcache {call}"]
        ratios[call] = {
            "pkgcache/raw": mine / med[f"raw flock, same locks as {call}"],
            "portalocker/pkgcache": med[f"portalocker, same locks as {call}"] / mine,
            "filelock/pkgcache": med[f"filelock, same locks as {call}"] / mine,
            "fasteners/pkgcache": med[f"fasteners, same locks as {call}"] / mine,
        }
        ratio_rows.append((call, *ratios[call].values()))
    print()
    print(
        table(
            [
                "call",
                "pkgcache/raw (<= 5)",
                "portalocker/pkgcache (>= 3)",
                "filelock/pkgcache",
                "fasteners/pkgcache",
            ],
            ratio_rows,
        )
    )
    return {"uncontended_us": results, "uncontended_ratios": ratios}


def throughput(scale: Scale, folder: str) -> dict[str, Any]:
    """Ops/s of N workers, each on its own package, beside raw flock."""
    data: dict[str, Any] = {}
    rows = []
    for mode in ("threads", "processes"):
        for n in scale.sizes:
            work = Path(folder, f"throughput-{mode}-{n}")
            work.mkdir()
            plan = []
            for r in range(scale.repeats):
                kinds = ("flock", "pkgcache") if r % 2 == 0 else ("pkgcache", "flock")
                plan += [Task(kind, None, scale.duration, HOLD) for kind in kinds]
            counts = run_plan(mode, n, str(work), plan)
            rates: dict[str, list[float]] = {"pkgcache": [], "flock": []}
            for task, per_worker in zip(plan, counts, strict=True):
                rates[task.kind].append(sum(per_worker) / task.duration)
            ours = statistics.median(rates["pkgcache"])
            raw = statistics.median(rates["flock"])
            ideal = n / HOLD
            data[f"{mode}-{n}"] = {
                "pkgcache_ops_s": rates["pkgcache"],
                "flock_ops_s": rates["flock"],
                "pkgcache/raw": ours / raw,
            }
            rows.append(
                (
                    mode,
                    n,
                    ours,
                    raw,
                    f"{ours / raw:.0%}",
                    f"{raw / ideal:.0%}",
                    f"{min(rates['pkgcache']):,.0f}-{max(rates['pkgcache']):,.0f}",
                )
            )
    print(
        f"\n## Distinct packages: N workers, each exclusive(own package) held "
        f"{HOLD * 1e3:.0f} ms (ops/s)"
    )
    print(
        f"{scale.duration} s per measurement, median of {scale.repeats} interleaved "
        "with raw flock (one file per worker)"
    )
    print(
        table(
            [
                "workers",
                "n",
                "pkgcache",
                "raw flock",
                "pkgcache/raw (>= 90%)",
                "raw/ideal",
                "pkgcache range",
            ],
            rows,
        )
    )
    return {"throughput": data}
