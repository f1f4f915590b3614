"""Issue 2: the cost of a lock, and throughput on distinct packages.

Uncontended: the median cost of one ``with`` block of each pkgcache call,
beside the raw flock acquire+release pairs the call needs (on descriptors
kept open: the limit), portalocker, filelock and fasteners taking the same
locks.

Throughput: N threads, or N processes, each holding ``exclusive(own
package)`` for 1 ms in a loop, beside the same loop on raw flock with one
file per worker. Workers on different packages should not slow each other:
pkgcache should reach at least 90% of raw flock.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import fasteners
import filelock
import portalocker

import pkgcache
from benchmarks._common import interleaved_medians, machine, save, table

HOLD = 0.001  # the work done while holding, in the throughput benchmark
SPAWN = multiprocessing.get_context("spawn")


def _raw_pairs(folder: Path, modes: list[int]) -> Any:
    fds = [
        os.open(folder / f"raw{i}.lock", os.O_RDWR | os.O_CREAT)
        for i in range(len(modes))
    ]

    def run() -> None:
        for fd, mode in zip(fds, modes, strict=True):
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        for fd in reversed(fds):
            fcntl.flock(fd, fcntl.LOCK_UN)

    return run


def uncontended(quick: bool = False) -> dict[str, Any]:
    ops, rounds = (500, 5) if quick else (4000, 15)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = pkgcache.Cache(folder / "cache")

        def reading_pkg() -> None:
            with cache.reading("setuptools-scm"):
                pass

        def exclusive_pkg() -> None:
            with cache.exclusive("setuptools-scm"):
                pass

        def reading_all() -> None:
            with cache.reading():
                pass

        def exclusive_all() -> None:
            with cache.exclusive():
                pass

        sh, ex = fcntl.LOCK_SH, fcntl.LOCK_EX
        portalocker_sh = [
            portalocker.Lock(
                folder / f"pl{i}.lock",
                flags=portalocker.LockFlags.SHARED | portalocker.LockFlags.NON_BLOCKING,
            )
            for i in range(2)
        ]
        portalocker_mixed = [
            portalocker.Lock(
                folder / "plm0.lock",
                flags=portalocker.LockFlags.SHARED | portalocker.LockFlags.NON_BLOCKING,
            ),
            portalocker.Lock(
                folder / "plm1.lock",
                flags=portalocker.LockFlags.EXCLUSIVE
                | portalocker.LockFlags.NON_BLOCKING,
            ),
        ]
        filelocks = [filelock.FileLock(str(folder / f"fl{i}.lock")) for i in range(2)]
        rwlocks = [
            fasteners.InterProcessReaderWriterLock(str(folder / f"fa{i}.lock"))
            for i in range(2)
        ]

        def portalocker_two_shared() -> None:
            with portalocker_sh[0], portalocker_sh[1]:
                pass

        def portalocker_shared_exclusive() -> None:
            with portalocker_mixed[0], portalocker_mixed[1]:
                pass

        def filelock_two() -> None:
            with filelocks[0], filelocks[1]:
                pass

        def fasteners_two_read() -> None:
            with rwlocks[0].read_lock(), rwlocks[1].read_lock():
                pass

        contenders = {
            "pkgcache reading(pkg)": reading_pkg,
            "pkgcache exclusive(pkg)": exclusive_pkg,
            "pkgcache reading()": reading_all,
            "pkgcache exclusive()": exclusive_all,
            "raw flock SH+SH (limit of reading(pkg))": _raw_pairs(folder, [sh, sh]),
            "raw flock SH+EX (limit of exclusive(pkg))": _raw_pairs(folder, [sh, ex]),
            "raw flock SH (limit of reading())": _raw_pairs(folder, [sh]),
            "raw flock EX (limit of exclusive())": _raw_pairs(folder, [ex]),
            "portalocker.Lock x2 (SH+SH)": portalocker_two_shared,
            "portalocker.Lock x2 (SH+EX)": portalocker_shared_exclusive,
            "filelock.FileLock x2": filelock_two,
            "fasteners RW lock x2 (read)": fasteners_two_read,
        }
        results = interleaved_medians(contenders, ops, rounds)

    med = {name: r[0] for name, r in results.items()}
    ratios = {
        "reading(pkg) / raw": med["pkgcache reading(pkg)"]
        / med["raw flock SH+SH (limit of reading(pkg))"],
        "exclusive(pkg) / raw": med["pkgcache exclusive(pkg)"]
        / med["raw flock SH+EX (limit of exclusive(pkg))"],
        "reading() / raw": med["pkgcache reading()"]
        / med["raw flock SH (limit of reading())"],
        "exclusive() / raw": med["pkgcache exclusive()"]
        / med["raw flock EX (limit of exclusive())"],
        "portalocker / reading(pkg)": med["portalocker.Lock x2 (SH+SH)"]
        / med["pkgcache reading(pkg)"],
        "portalocker / exclusive(pkg)": med["portalocker.Lock x2 (SH+EX)"]
        / med["pkgcache exclusive(pkg)"],
        "filelock / exclusive(pkg)": med["filelock.FileLock x2"]
        / med["pkgcache exclusive(pkg)"],
        "fasteners / reading(pkg)": med["fasteners RW lock x2 (read)"]
        / med["pkgcache reading(pkg)"],
    }
    print("\n## Uncontended acquire + release (µs per with-block, median of rounds)")
    print(
        table(["what", "median", "min", "max"], [(n, *r) for n, r in results.items()])
    )
    print()
    print(
        table(
            ["ratio", "value", "target"],
            [
                (
                    n,
                    v,
                    "<= 5"
                    if "/ raw" in n
                    else (">= 3" if n.startswith("portalocker") else ""),
                )
                for n, v in ratios.items()
            ],
        )
    )
    return {"uncontended_us": results, "uncontended_ratios": ratios}


# -- throughput on distinct packages ------------------------------------------------


def _pkgcache_worker(
    root: str, package: str, duration: float, start: Any, counts: Any, index: int
) -> None:
    cache = pkgcache.Cache(root)
    with cache.reading():  # open the layout before the clock starts
        pass
    start.wait()
    end = time.perf_counter() + duration
    done = 0
    while time.perf_counter() < end:
        with cache.exclusive(package):
            time.sleep(HOLD)
        done += 1
    counts[index] = done


def _raw_worker(
    root: str, package: str, duration: float, start: Any, counts: Any, index: int
) -> None:
    fd = os.open(os.path.join(root, f"{package}.lock"), os.O_RDWR | os.O_CREAT)
    start.wait()
    end = time.perf_counter() + duration
    done = 0
    while time.perf_counter() < end:
        fcntl.flock(fd, fcntl.LOCK_EX)
        time.sleep(HOLD)
        fcntl.flock(fd, fcntl.LOCK_UN)
        done += 1
    os.close(fd)
    counts[index] = done


def _run_workers(kind: str, target: Any, root: str, n: int, duration: float) -> float:
    if kind == "threads":
        start: Any = threading.Barrier(n + 1)
        counts: Any = [0] * n
        workers: list[Any] = [
            threading.Thread(
                target=target, args=(root, f"pkg{i}", duration, start, counts, i)
            )
            for i in range(n)
        ]
    else:
        start = SPAWN.Barrier(n + 1)
        counts = SPAWN.Array("l", n)
        workers = [
            SPAWN.Process(
                target=target, args=(root, f"pkg{i}", duration, start, counts, i)
            )
            for i in range(n)
        ]
    for w in workers:
        w.start()
    start.wait()
    for w in workers:
        w.join()
    return sum(counts) / duration


def throughput(quick: bool = False) -> dict[str, Any]:
    duration = 0.5 if quick else 2.0
    sizes = [1, 2, 4] if quick else [1, 2, 4, 8, 16]
    rows = []
    data: dict[str, Any] = {}
    for kind in ("threads", "processes"):
        for n in sizes:
            with tempfile.TemporaryDirectory() as root:
                raw = _run_workers(kind, _raw_worker, root, n, duration)
                ours = _run_workers(kind, _pkgcache_worker, root, n, duration)
            ideal = n / HOLD
            rows.append((kind, n, ours, raw, ours / raw, raw / ideal))
            data[f"{kind}-{n}"] = {"pkgcache_ops_s": ours, "raw_ops_s": raw}
    print(
        f"\n## Distinct packages, exclusive(own package) held {HOLD * 1e3:.0f} ms (ops/s)"
    )
    print(
        table(
            ["workers", "n", "pkgcache", "raw flock", "pkgcache/raw", "raw/ideal"], rows
        )
    )
    print("target: pkgcache/raw >= 0.90")
    return {"throughput": data}


def main(quick: bool = False) -> dict[str, Any]:
    print(f"# Lock benchmarks ({machine()})")
    return {**uncontended(quick), **throughput(quick)}


if __name__ == "__main__":
    save("locks", main())
