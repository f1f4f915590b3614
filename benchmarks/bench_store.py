"""Issue 3: the artifact store.

1. ``add`` + ``find`` throughput: 1,000 wheels of 100 packages (10 versions
   each), each added under ``exclusive(pkg)``, then each package found
   under ``reading(pkg)`` (best version, and a pinned version).
2. ``find()`` latency with 10,000 entries in one package (and ``entries()``
   and ``path()`` beside it).
3. ``prune()`` time on 100,000 entries (1,000 packages of 100): a prune
   that removes nothing (the cost of listing everything), then one that
   removes the least recently used half.

Run: ``python -m benchmarks.bench_store [--scale 0.1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pkgcache
from benchmarks._common import describe, machine, percentile, save, table

PAYLOAD = b"w" * 4096  # the store does not read wheels: their size is what counts


def wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def sources(folder: Path, package: str, versions: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for version in versions:
        path = folder / wheel_name(package, version)
        path.write_bytes(PAYLOAD)
        paths.append(path)
    return paths


def bench_add_find(work: Path, packages: int, versions: int) -> dict[str, Any]:
    cache = pkgcache.Cache(work / "cache-1")
    names = [f"pkg-{i:03d}" for i in range(packages)]
    all_versions = [f"1.{v}.0" for v in range(versions)]
    files = {name: sources(work / "src-1" / name, name, all_versions) for name in names}
    start = time.perf_counter()
    for name in names:
        for path in files[name]:
            with cache.exclusive(name) as txn:
                txn.add(path)
    add_seconds = time.perf_counter() - start
    # The floor: the same copies by hand (create, copy, rename), no store.
    raw = work / "raw-1"
    raw.mkdir()
    start = time.perf_counter()
    for name in names:
        for path in files[name]:
            staged = raw / f"{path.name}.part"
            with open(path, "rb") as source, open(staged, "xb") as target:
                os.sendfile(target.fileno(), source.fileno(), 0, len(PAYLOAD))
            os.rename(staged, raw / path.name)
    raw_seconds = time.perf_counter() - start
    start = time.perf_counter()
    finds = 0
    for name in names:
        with cache.reading(name) as view:
            assert view.find(name) is not None
            assert view.find(f"{name}=={all_versions[0]}") is not None
            finds += 2
    find_seconds = time.perf_counter() - start
    adds = packages * versions
    return {
        "adds": adds,
        "add_seconds": add_seconds,
        "adds_per_second": adds / add_seconds,
        "raw_copy_seconds": raw_seconds,
        "raw_copies_per_second": adds / raw_seconds,
        "finds": finds,
        "find_seconds": find_seconds,
        "finds_per_second": finds / find_seconds,
    }


def latency(fn: Any, repeat: int) -> tuple[float, float]:
    fn()  # warm the parse cache
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3, percentile(samples, 95) * 1e3


def bench_find_latency(work: Path, entries: int, repeat: int) -> dict[str, Any]:
    cache = pkgcache.Cache(work / "cache-2")
    name = "big-package"
    versions = [f"{v // 100}.{v % 100}.0" for v in range(entries)]
    folder = work / "src-2"
    folder.mkdir()
    start = time.perf_counter()
    with cache.exclusive(name) as txn:
        for version in versions:
            path = folder / wheel_name(name, version)
            path.write_bytes(PAYLOAD)
            txn.add(path, move=True)
    fill_seconds = time.perf_counter() - start
    pinned = versions[len(versions) // 2]
    results: dict[str, Any] = {"entries": entries, "fill_seconds": fill_seconds}
    with cache.reading(name) as view:
        calls = {
            "find(name)": lambda: view.find(name),
            f"find(name=={pinned})": lambda: view.find(f"{name}=={pinned}"),
            "find(name<1)": lambda: view.find(f"{name}<1"),
            "entries(name)": lambda: view.entries(name),
            "path(name, key)": lambda: view.path(name, wheel_name(name, pinned)),
        }
        for label, fn in calls.items():
            results[label] = latency(fn, repeat)
    return results


def bench_prune(work: Path, packages: int, per_package: int) -> dict[str, Any]:
    cache = pkgcache.Cache(work / "cache-3")
    folder = work / "src-3"
    folder.mkdir()
    start = time.perf_counter()
    for p in range(packages):
        name = f"pkg-{p:04d}"
        with cache.exclusive(name) as txn:
            for v in range(per_package):
                path = folder / wheel_name(name, f"1.{v}")
                path.write_bytes(PAYLOAD)
                txn.add(path, move=True)
    fill_seconds = time.perf_counter() - start
    total = packages * per_package
    start = time.perf_counter()
    info = cache.info()
    info_seconds = time.perf_counter() - start
    assert info.entries == total
    start = time.perf_counter()
    nothing = cache.prune(older_than=1e9)
    scan_seconds = time.perf_counter() - start
    assert nothing.removed == ()
    start = time.perf_counter()
    half = cache.prune(max_bytes=info.bytes // 2)
    half_seconds = time.perf_counter() - start
    return {
        "entries": total,
        "fill_seconds": fill_seconds,
        "info_seconds": info_seconds,
        "prune_nothing_seconds": scan_seconds,
        "prune_half_seconds": half_seconds,
        "removed": len(half.removed),
        "bytes_freed": half.bytes_freed,
    }


def main(argv: list[str] | None = None, *, save_results: bool = True) -> dict[str, Any]:
    """Run the store benchmarks; print the tables, return (and save) the numbers."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_store", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the sizes")
    parser.add_argument("--dir", default=None, help="where to build the caches")
    parser.add_argument("--name", default="store", help="results file name")
    args = parser.parse_args(argv)
    s = args.scale
    print(f"store: {describe(machine(args.dir))}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        add_find = bench_add_find(work, max(1, int(100 * s)), 10)
        print("\nadd + find, 1,000 wheels of 100 packages")
        print(
            table(
                ["operation", "count", "seconds", "per second"],
                [
                    [
                        "add",
                        add_find["adds"],
                        add_find["add_seconds"],
                        add_find["adds_per_second"],
                    ],
                    [
                        "raw copy (floor)",
                        add_find["adds"],
                        add_find["raw_copy_seconds"],
                        add_find["raw_copies_per_second"],
                    ],
                    [
                        "find",
                        add_find["finds"],
                        add_find["find_seconds"],
                        add_find["finds_per_second"],
                    ],
                ],
            )
        )
        find = bench_find_latency(work, max(10, int(10_000 * s)), 50)
        print(f"\nlatency with {find['entries']} entries in one package (ms)")
        print(
            table(
                ["call", "median", "p95"],
                [[k, *v] for k, v in find.items() if isinstance(v, tuple)],
            )
        )
        prune = bench_prune(work, max(1, int(1000 * s)), 100)
        print(f"\nprune on {prune['entries']} entries (seconds)")
        print(
            table(
                ["step", "seconds"],
                [
                    ["fill (add, move=True)", prune["fill_seconds"]],
                    ["info()", prune["info_seconds"]],
                    ["prune() removing nothing", prune["prune_nothing_seconds"]],
                    [
                        f"prune() removing {prune['removed']}",
                        prune["prune_half_seconds"],
                    ],
                ],
            )
        )
        os.sync()
    result = {
        "dir": args.dir,
        "scale": s,
        "add_find": add_find,
        "find_latency": find,
        "prune": prune,
    }
    if save_results:
        print(f"\nsaved {save(result, args.name)}")
    return result


if __name__ == "__main__":
    main()
