"""Issues 3 and 13: the artifact store.

1. **Durability cost**: 1,000 adds of 100 KB wheels, with ``durable=True``
   (the default) and ``durable=False``, beside hand-made floors (create,
   copy, rename; and the same with ``fsync`` of the file and the folder).
   Trees of 1,000 files of 1 KB published both ways, and three ways to
   sync such a tree: ``fsync`` file after file, pkgcache's (several
   ``fsync`` calls at once), and one ``syncfs``.
2. ``add`` + ``find`` throughput: 1,000 small wheels of 100 packages (10
   versions each), each added under ``exclusive(pkg)``, then each package
   found under ``reading(pkg)`` (best version, and a pinned version).
3. ``find()`` latency with 10,000 entries in one package, beside the raw
   ``scandir`` of that folder (the floor of any lookup that lists it): with
   the listing kept (the folder unchanged for a few seconds), for a new
   question each call, and right after a change (listed again); with
   ``entries()`` and ``path()`` beside it.
4. ``prune()`` time on 100,000 entries (1,000 packages of 100): a prune
   that removes nothing (the cost of listing everything), then one that
   removes the least recently used half.

Run: ``python -m benchmarks.bench_store [--scale 0.1] [--dir FOLDER]``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkgcache
from benchmarks._common import describe, machine, percentile, save, table
from pkgcache import _fs, _store

PAYLOAD = b"w" * 4096  # the store does not read wheels: their size is what counts
WHEEL = os.urandom(100_000)  # 100 KB, for the durability cost
LEAF = os.urandom(1000)  # one file of a tree


def wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def sources(folder: Path, package: str, versions: list[str], data: bytes) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for version in versions:
        path = folder / wheel_name(package, version)
        path.write_bytes(data)
        paths.append(path)
    return paths


# -- 1. durability ------------------------------------------------------------------


ROUNDS = 5  # interleaved rounds: the machine's noise falls on every contender


def raw_copies(files: list[Path], target: Path, *, durable: bool) -> float:
    """The floor: create, copy, (fsync), rename, (fsync the folder); seconds."""
    target.mkdir(exist_ok=True)
    folder = os.open(target, os.O_RDONLY)
    start = time.perf_counter()
    for path in files:
        staged = target / f"{path.name}.part"
        with open(path, "rb") as source, open(staged, "xb") as copy:
            os.sendfile(copy.fileno(), source.fileno(), 0, path.stat().st_size)
            if durable:
                os.fsync(copy.fileno())
        os.rename(staged, target / path.name)
        if durable:
            os.fsync(folder)
    seconds = time.perf_counter() - start
    os.close(folder)
    return seconds


def store_adds(cache: pkgcache.Cache, files: list[Path], package: str) -> float:
    start = time.perf_counter()
    for path in files:
        with cache.exclusive(package) as txn:
            txn.add(path)
    return time.perf_counter() - start


def fill_tree(folder: Path, files: int) -> None:
    """``files`` files of 1 KB, 100 to a sub-folder."""
    for i in range(files):
        sub = folder / f"d{i // 100}"
        if i % 100 == 0:
            sub.mkdir()
        (sub / f"f{i}").write_bytes(LEAF)


def store_tree(cache: pkgcache.Cache, key: str, files: int) -> float:
    """Seconds to publish a tree of ``files`` files (not to write them)."""
    with cache.exclusive("trees") as txn, txn.add_tree(key) as staging:
        fill_tree(staging, files)
        start = time.perf_counter()
    return time.perf_counter() - start


def fsync_one_by_one(fd: int) -> None:
    def each(
        folder: int, path: tuple[str, ...], children: list[os.DirEntry[str]]
    ) -> None:
        for child in children:
            file_fd = os.open(child.name, os.O_RDONLY, dir_fd=folder)
            os.fsync(file_fd)
            os.close(file_fd)
        os.fsync(folder)

    _fs.walk(fd, each)


def syncfs(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs failed")


def tree_sync_strategies(work: Path, count: int, files: int) -> dict[str, list[float]]:
    """Seconds to sync a freshly written tree, each strategy on its own trees."""
    strategies: dict[str, Callable[[int], None]] = {
        "fsync one by one": fsync_one_by_one,
        f"pkgcache ({_fs.SYNC_THREADS} fsync at a time)": _fs.sync_tree,
        "syncfs (whole file system)": syncfs,
    }
    results: dict[str, list[float]] = {name: [] for name in strategies}
    for i in range(count):
        for name, sync in strategies.items():  # interleaved: noise hits all
            folder = work / f"sync-{i}-{len(results[name])}-{name[:5]}"
            folder.mkdir()
            fill_tree(folder, files)
            fd = os.open(folder, os.O_RDONLY)
            start = time.perf_counter()
            sync(fd)
            results[name].append(time.perf_counter() - start)
            os.close(fd)
    return results


def bench_durability(work: Path, adds: int, trees: int, files: int) -> dict[str, Any]:
    wheels = sources(work / "src-d", "durable", [f"1.{v}" for v in range(adds)], WHEEL)
    caches = {
        durable: pkgcache.Cache(work / f"cache-d-{durable}", durable=durable)
        for durable in (False, True)
    }
    seconds: dict[str, float] = {}
    contenders: dict[str, Callable[[list[Path]], float]] = {
        "raw": lambda part: raw_copies(part, work / "raw", durable=False),
        "raw_durable": lambda part: raw_copies(part, work / "raw-d", durable=True),
        "add_not_durable": lambda part: store_adds(caches[False], part, "durable"),
        "add_durable": lambda part: store_adds(caches[True], part, "durable"),
    }
    for round_ in range(ROUNDS):
        part = wheels[round_::ROUNDS]
        for name, contender in contenders.items():
            seconds[f"{name}_seconds"] = seconds.get(
                f"{name}_seconds", 0.0
            ) + contender(part)
    results: dict[str, Any] = {"adds": adds, "tree_files": files, "trees": trees}
    results |= seconds
    results["tree_not_durable_seconds"] = []
    results["tree_durable_seconds"] = []
    for i in range(trees):
        for durable in (False, True):
            label = "durable" if durable else "not_durable"
            results[f"tree_{label}_seconds"].append(
                store_tree(caches[durable], f"t{i}", files)
            )
    results["tree_sync"] = tree_sync_strategies(work, trees, files)
    return results


def print_durability(d: dict[str, Any]) -> None:
    adds = d["adds"]
    rows = [
        ["raw create + copy + rename (floor)", d["raw_seconds"]],
        ["raw, with fsync of file and folder", d["raw_durable_seconds"]],
        ["add, durable=False", d["add_not_durable_seconds"]],
        ["add, durable=True (default)", d["add_durable_seconds"]],
    ]
    print(f"\ndurability: {adds} adds of 100 KB wheels")
    print(
        table(
            ["what", "seconds", "ms each"],
            [[name, s, s / adds * 1e3] for name, s in rows],
        )
    )
    print(f"\ndurability: publishing a tree of {d['tree_files']} files of 1 KB (ms)")
    tree_rows = [
        ["add_tree, durable=False", d["tree_not_durable_seconds"]],
        ["add_tree, durable=True (default)", d["tree_durable_seconds"]],
        *[[f"sync only: {name}", s] for name, s in d["tree_sync"].items()],
    ]
    print(
        table(
            ["what", "median", "min", "max"],
            [
                [name, *(x * 1e3 for x in (statistics.median(s), min(s), max(s)))]
                for name, s in tree_rows
            ],
        )
    )


# -- 2. add + find ------------------------------------------------------------------


def bench_add_find(work: Path, packages: int, versions: int) -> dict[str, Any]:
    # durable=False: this measures the store's own cost (see bench_durability)
    cache = pkgcache.Cache(work / "cache-1", durable=False)
    names = [f"pkg-{i:03d}" for i in range(packages)]
    all_versions = [f"1.{v}.0" for v in range(versions)]
    files = {
        name: sources(work / "src-1" / name, name, all_versions, PAYLOAD)
        for name in names
    }
    start = time.perf_counter()
    for name in names:
        for path in files[name]:
            with cache.exclusive(name) as txn:
                txn.add(path)
    add_seconds = time.perf_counter() - start
    raw_seconds = raw_copies(
        [path for name in names for path in files[name]],
        work / "raw-1",
        durable=False,
    )
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


# -- 3. find() with many entries ----------------------------------------------------


def latency(fn: Callable[[], object], repeat: int, *, warm: bool = True) -> list[float]:
    if warm:
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def ms(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples) * 1e3, percentile(samples, 95) * 1e3


def bench_find_latency(work: Path, entries: int, repeat: int) -> dict[str, Any]:
    cache = pkgcache.Cache(work / "cache-2", durable=False)
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
    package_folder = cache.root / "packages" / name
    pinned = versions[len(versions) // 2]
    results: dict[str, Any] = {"entries": entries, "fill_seconds": fill_seconds}
    with cache.reading(name) as view:
        # Listed again on every call: the folder changed moments ago.
        results["find(name), folder just changed"] = ms(
            latency(lambda: view.find(name), max(3, repeat // 10))
        )
        time.sleep(_store.SETTLED_NS / 1e9)  # let the listing be kept
        results["scandir of the folder (floor)"] = ms(
            latency(lambda: list(os.scandir(package_folder)), repeat)
        )
        calls = {
            "find(name)": lambda: view.find(name),
            f"find(name=={pinned})": lambda: view.find(f"{name}=={pinned}"),
            "find(name<1)": lambda: view.find(f"{name}<1"),
            "path(name, key)": lambda: view.path(name, wheel_name(name, pinned)),
        }
        for label, fn in calls.items():
            results[label] = ms(latency(fn, repeat))
        questions = iter(range(10**9))
        results["find(name<1), a new question each call"] = ms(
            latency(lambda: view.find(f"{name}<1,!=0.0.{next(questions)}"), repeat)
        )
        results["entries(name)"] = ms(latency(lambda: view.entries(name), 5))
    return results


# -- 4. prune ---------------------------------------------------------------------


def bench_prune(work: Path, packages: int, per_package: int) -> dict[str, Any]:
    cache = pkgcache.Cache(work / "cache-3", durable=False)
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
        durability = bench_durability(
            work, max(ROUNDS, int(1000 * s)), 5 if s >= 1 else 2, max(20, int(1000 * s))
        )
        print_durability(durability)
        add_find = bench_add_find(work, max(1, int(100 * s)), 10)
        print("\nadd + find, 1,000 wheels of 100 packages (durable=False)")
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
        find = bench_find_latency(work, max(10, int(10_000 * s)), 200)
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
        "durability": durability,
        "add_find": add_find,
        "find_latency": find,
        "prune": prune,
    }
    if save_results:
        print(f"\nsaved {save(result, args.name)}")
    return result


if __name__ == "__main__":
    main()
