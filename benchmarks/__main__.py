"""Run the lock benchmarks: ``python -m benchmarks [--quick] [--only NAME]``.

``--only realfarm`` runs the real build farm (:mod:`benchmarks.bench_realfarm`),
which is left out otherwise: its first run downloads sdists and wheels.

Prints every table and writes the numbers, with a description of the
machine, to ``benchmarks/results/<scale>-<time>.json`` and ``latest.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from tests.pg_support import unavailable as postgres_unavailable

from benchmarks import bench_buildfarm, bench_realfarm, bench_store
from benchmarks._common import SCALES, Scale, describe, machine, save
from benchmarks.bench_locks import throughput, uncontended
from benchmarks.bench_waiting import fairness, handover, writer_wait


def store(scale: Scale, folder: str) -> dict[str, Any]:
    """Issue 3: add/find throughput, find latency, prune on many entries."""
    size = "1.0" if scale.name == "full" else "0.05"
    print()
    return {
        "store": bench_store.main(
            ["--scale", size, "--dir", folder], save_results=False
        )
    }


def buildfarm(scale: Scale, folder: str) -> dict[str, Any]:
    """Issue 7: a build farm with per-package locks against one cache lock."""
    argv = [] if scale.name == "full" else ["--quick"]
    print()
    return {"buildfarm": bench_buildfarm.main(argv, save_results=False)}


def realfarm(scale: Scale, folder: str) -> dict[str, Any]:
    """Issue 11: real sdists, backends and uv; downloads once (the network)."""
    argv = ["--rounds", "3" if scale.name == "full" else "1"]
    print()
    return {"realfarm": bench_realfarm.main(argv, save_results=False)}


BENCHMARKS: dict[str, Callable[[Scale, str], dict[str, Any]]] = {
    "uncontended": uncontended,
    "throughput": throughput,
    "writer-wait": writer_wait,
    "handover": handover,
    "fairness": fairness,
    "buildfarm": buildfarm,
    "store": store,
    "realfarm": realfarm,
}
if postgres_unavailable() is None:  # the server comes from pip: '.[bench]'
    from benchmarks import bench_postgres

    BENCHMARKS["postgres"] = bench_postgres.postgres
    BENCHMARKS["postgres-failures"] = bench_postgres.failures

# Run only when named (--only realfarm): its first run downloads sdists and
# wheels from the package registry, and it takes minutes.
BY_DEFAULT = [name for name in BENCHMARKS if name != "realfarm"]


def run(scale: Scale, names: list[str], directory: str | None) -> dict[str, Any]:
    """Run the benchmarks ``names`` in a fresh folder; return every number."""
    folder = tempfile.mkdtemp(prefix="pkgcache-bench-", dir=directory)
    try:
        info = machine(folder)
        print(f"# pkgcache lock benchmarks, scale {scale.name!r}")
        print(f"# {describe(info)}")
        results: dict[str, Any] = {"scale": scale.name, "machine": info}
        for name in names:
            started = time.monotonic()
            results.update(BENCHMARKS[name](scale, folder))
            results.setdefault("seconds", {})[name] = time.monotonic() - started
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="pkgcache lock benchmarks"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller samples: about a minute"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=(
            f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}; "
            "realfarm runs only when named (its first run downloads sdists)"
        ),
    )
    parser.add_argument(
        "--dir",
        default=None,
        help="where to create the lock files (default: the system temp folder)",
    )
    args = parser.parse_args(argv)
    scale = SCALES["quick" if args.quick else "full"]
    started = time.monotonic()
    results = run(scale, args.only or BY_DEFAULT, args.dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = save(results, f"{scale.name}-{stamp}")
    print(f"\n# {time.monotonic() - started:.0f} s in all; numbers in {path}")


if __name__ == "__main__":
    main()
