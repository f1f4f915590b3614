"""Issue 7: a build farm on one shared cache, per-package locks vs one cache lock.

A dependency graph of about 50 packages (layers; each package depends on
one to three packages of earlier layers) is built by 8 worker threads. A
package is ready when all its dependencies are built. Each build:

1. installs its dependencies from the cache (a read: ``INSTALL`` ms);
2. builds the package (``BUILD`` ms, simulated work while holding);
3. publishes the wheel and invalidates the package's cache entries
   (``CLEAN`` ms, like ``uv cache clean PKG``).

The same graph runs, in the same process and interleaved round by round,
under four lock schemes:

``pkgcache``
    per-package locks: install under ``reading(*deps)``; build, publish and
    invalidate under ``exclusive(pkg)``.
``whole-cache``
    one reader/writer lock for the cache (uv's scheme), on pkgcache's own
    whole-cache lock (writers are not overtaken by later readers): install
    and build shared (a uv process holds uv's cache lock shared for its
    whole run, builds included), invalidate exclusive.
``uv-flock``
    the same, on a bare ``flock`` of one file per worker thread, as uv
    does it: a queued writer does not stop new readers.
``no-locks``
    no locking at all: unsafe, the lower bound.

Reported per scheme: makespan (first build start to last build end, median
over rounds), total time workers spent waiting for locks, and the speed-up
of ``pkgcache`` over each. Run: ``python -m benchmarks.bench_buildfarm``
(``--quick`` for a short run, ``--svg PATH`` for the plot).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pkgcache
from benchmarks._common import describe, machine, save, table

SCHEMES = ("pkgcache", "whole-cache", "uv-flock", "no-locks")
DEFAULT_SVG = Path(__file__).resolve().parent.parent / "docs/_static/buildfarm.svg"


# -- the workload --------------------------------------------------------------


def dependency_graph(
    packages: int = 50, layers: int = 5, seed: int = 7
) -> dict[str, tuple[str, ...]]:
    """Package -> dependencies: layers of packages, each needing 1-3 earlier ones."""
    rng = random.Random(seed)
    names = [f"pkg-{i:02d}" for i in range(packages)]
    per_layer = max(1, packages // layers)
    graph: dict[str, tuple[str, ...]] = {}
    for index, name in enumerate(names):
        layer = min(index // per_layer, layers - 1)
        earlier = names[: layer * per_layer]
        count = min(len(earlier), rng.randint(1, 3))
        graph[name] = tuple(sorted(rng.sample(earlier, count))) if count else ()
    return graph


# A build is a list of holds: (lock, [(step, seconds), ...]) in order.
Hold = tuple[AbstractContextManager[Any], list[tuple[str, float]]]
Scheme = Callable[[str, tuple[str, ...], dict[str, float]], list[Hold]]


def pkgcache_scheme(root: Path) -> Scheme:
    cache = pkgcache.Cache(root)

    def plan(name: str, deps: tuple[str, ...], t: dict[str, float]) -> list[Hold]:
        return [
            (cache.reading(*deps), [("install", t["install"])]),
            # Build, publish and invalidate: one exclusive hold of the package.
            (cache.exclusive(name), [("build", t["build"]), ("clean", t["clean"])]),
        ]

    return plan


def whole_cache_scheme(root: Path) -> Scheme:
    cache = pkgcache.Cache(root)

    def plan(name: str, deps: tuple[str, ...], t: dict[str, float]) -> list[Hold]:
        return [
            (cache.reading(), [("install", t["install"])]),
            (cache.reading(), [("build", t["build"])]),
            (cache.exclusive(), [("clean", t["clean"])]),
        ]

    return plan


def uv_flock_scheme(root: Path) -> Scheme:
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    local = threading.local()

    @contextlib.contextmanager
    def hold(mode: int) -> Iterator[None]:
        fd = getattr(local, "fd", None)
        if fd is None:  # one open file description per thread, like a process
            fd = local.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        fcntl.flock(fd, mode)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def plan(name: str, deps: tuple[str, ...], t: dict[str, float]) -> list[Hold]:
        return [
            (hold(fcntl.LOCK_SH), [("install", t["install"])]),
            (hold(fcntl.LOCK_SH), [("build", t["build"])]),
            (hold(fcntl.LOCK_EX), [("clean", t["clean"])]),
        ]

    return plan


def no_locks_scheme(root: Path) -> Scheme:
    def plan(name: str, deps: tuple[str, ...], t: dict[str, float]) -> list[Hold]:
        steps = [("install", t["install"]), ("build", t["build"])]
        return [(contextlib.nullcontext(), [*steps, ("clean", t["clean"])])]

    return plan


MAKERS: dict[str, Callable[[Path], Scheme]] = {
    "pkgcache": pkgcache_scheme,
    "whole-cache": whole_cache_scheme,
    "uv-flock": uv_flock_scheme,
    "no-locks": no_locks_scheme,
}


def run_farm(
    scheme: Scheme,
    graph: dict[str, tuple[str, ...]],
    workers: int,
    times: dict[str, float],
) -> dict[str, Any]:
    """Build every package of ``graph`` with ``workers`` threads; time it."""
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    missing = {name: len(deps) for name, deps in graph.items()}
    for name, deps in graph.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [name for name, count in missing.items() if count == 0]
    done = 0
    state = threading.Condition()
    waits = [0.0] * workers
    spans: list[list[tuple[str, float, float]]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers + 1)

    def build(worker: int, name: str) -> None:
        for request, steps in scheme(name, graph[name], times):
            asked = time.perf_counter()
            with request:
                begin = time.perf_counter()
                waits[worker] += begin - asked
                if begin - asked > 0.0002:
                    spans[worker].append(("wait", asked, begin))
                for step, seconds in steps:
                    time.sleep(seconds)  # the simulated work, inside the hold
                    end = time.perf_counter()
                    spans[worker].append((step, begin, end))
                    begin = end

    def work(worker: int) -> None:
        nonlocal done
        barrier.wait(timeout=60)
        try:
            while True:
                with state:
                    while not ready and done < len(graph):
                        state.wait(timeout=60)
                    if done == len(graph):
                        return
                    name = ready.pop(0)
                build(worker, name)
                with state:
                    done += 1
                    for child in dependents[name]:
                        missing[child] -= 1
                        if missing[child] == 0:
                            ready.append(child)
                    state.notify_all()
        except BaseException as exc:
            errors.append(exc)
            with state:
                done = len(graph)
                state.notify_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    barrier.wait(timeout=60)
    for thread in threads:
        thread.join(timeout=300)
    makespan = time.perf_counter() - start
    if errors:
        raise errors[0]
    return {
        "makespan": makespan,
        "wait": sum(waits),
        "spans": [
            [(kind, a - start, b - start) for kind, a, b in worker] for worker in spans
        ],
    }


# -- the run -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_buildfarm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--packages", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--install-ms", type=float, default=5.0)
    parser.add_argument("--build-ms", type=float, default=20.0)
    parser.add_argument("--clean-ms", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="two rounds")
    parser.add_argument(
        "--svg", type=Path, default=None, help=f"write the plot (e.g. {DEFAULT_SVG})"
    )
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None, *, save_results: bool = True
) -> dict[str, Any]:
    """Run every scheme on the same graph, print a table, save JSON (and SVG)."""
    args = parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    graph = dependency_graph(args.packages, seed=args.seed)
    edges = sum(len(deps) for deps in graph.values())
    print(f"build farm: {describe(machine())}")
    print(
        f"{len(graph)} packages, {edges} dependency edges, {args.workers} workers; "
        f"install {args.install_ms} ms, build {args.build_ms} ms, "
        f"invalidate {args.clean_ms} ms; {rounds} rounds"
    )
    times = {
        "install": args.install_ms / 1000,
        "build": args.build_ms / 1000,
        "clean": args.clean_ms / 1000,
    }
    samples: dict[str, list[dict[str, Any]]] = {scheme: [] for scheme in SCHEMES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(rounds):
            for scheme in SCHEMES:
                root = Path(tmp, f"{scheme}-{round_number}")
                samples[scheme].append(
                    run_farm(MAKERS[scheme](root), graph, args.workers, times)
                )
    summary = {}
    for scheme in SCHEMES:
        runs = samples[scheme]
        summary[scheme] = {
            "makespan_s": statistics.median(r["makespan"] for r in runs),
            "wait_s": statistics.median(r["wait"] for r in runs),
        }
    ours = summary["pkgcache"]["makespan_s"]
    rows = []
    for scheme in SCHEMES:
        makespan = summary[scheme]["makespan_s"]
        summary[scheme]["speedup_of_pkgcache"] = makespan / ours
        rows.append(
            [
                scheme,
                f"{makespan * 1000:.0f}",
                f"{summary[scheme]['wait_s'] * 1000:.0f}",
                f"{makespan / ours:.2f}x",
            ]
        )
    ideal = len(graph) * (args.install_ms + args.build_ms + args.clean_ms)
    print(
        table(
            ["scheme", "makespan ms", "total wait ms", "pkgcache speed-up"],
            rows,
        )
    )
    print(
        f"(work: {ideal:.0f} ms of builds; /{args.workers} workers = "
        f"{ideal / args.workers:.0f} ms if nothing waited)"
    )
    result = {
        "parameters": {
            "packages": len(graph),
            "edges": edges,
            "workers": args.workers,
            "install_ms": args.install_ms,
            "build_ms": args.build_ms,
            "clean_ms": args.clean_ms,
            "rounds": rounds,
            "seed": args.seed,
        },
        "summary": summary,
    }
    if save_results:
        print(f"saved {save(result, 'buildfarm')}")
    if args.svg is not None:
        median_runs = {
            scheme: sorted(samples[scheme], key=lambda r: r["makespan"])[
                len(samples[scheme]) // 2
            ]
            for scheme in SCHEMES
        }
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(render_svg(summary, median_runs, result["parameters"]))
        print(f"plot: {args.svg}")
    return result


# -- the plot (hand-written SVG: no plotting dependency) ------------------------

_COLORS = {
    "install": "#4c78a8",
    "build": "#59a14f",
    "clean": "#f28e2b",
    "wait": "#e15759",
}


def render_svg(
    summary: dict[str, dict[str, float]],
    runs: dict[str, dict[str, Any]],
    parameters: dict[str, Any],
) -> str:
    """Bars of makespan and wait per scheme, and each scheme's worker timeline."""
    width, left, right = 900, 120, 30
    bar_h, gap = 22, 8
    schemes = list(summary)
    longest = max(s["makespan_s"] for s in summary.values())
    most_wait = max(s["wait_s"] for s in summary.values()) or 1.0
    out: list[str] = []
    y = 40

    def text(x: float, y: float, body: str, **attrs: Any) -> None:
        extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" {extra}>{body}</text>')

    text(
        left,
        22,
        f"Build farm: {parameters['packages']} packages, {parameters['workers']} "
        f"workers, build {parameters['build_ms']:g} ms "
        "(median of rounds; lower is better)",
        font_weight="bold",
    )
    panel = (width - left - right - 40) / 2
    text(left, y + 10, "makespan (ms)")
    text(left + panel + 40, y + 10, "total worker wait (ms)")
    y += 20
    for scheme in schemes:
        makespan = summary[scheme]["makespan_s"]
        wait = summary[scheme]["wait_s"]
        text(left - 8, y + 15, scheme, text_anchor="end")
        w1 = 0.85 * panel * makespan / longest  # room for the value label
        w2 = 0.85 * panel * wait / most_wait
        fill = "#4c78a8" if scheme == "pkgcache" else "#9d9d9d"
        out.append(
            f'<rect x="{left}" y="{y}" width="{w1:.1f}" height="{bar_h}" '
            f'fill="{fill}"/>'
        )
        text(left + w1 + 4, y + 15, f"{makespan * 1000:.0f}")
        x2 = left + panel + 40
        out.append(
            f'<rect x="{x2}" y="{y}" width="{w2:.1f}" height="{bar_h}" fill="{fill}"/>'
        )
        text(x2 + w2 + 4, y + 15, f"{wait * 1000:.0f}")
        y += bar_h + gap
    y += 20
    text(left, y, "worker timelines (one median run per scheme)", font_weight="bold")
    y += 10
    legend_x = left + 330
    for kind, color in _COLORS.items():
        out.append(
            f'<rect x="{legend_x}" y="{y - 10}" width="12" height="12" fill="{color}"/>'
        )
        text(legend_x + 16, y, kind)
        legend_x += 80
    y += 12
    scale = (width - left - right) / max(r["makespan"] for r in runs.values())
    lane = 7
    for scheme in schemes:
        spans = runs[scheme]["spans"]
        text(left - 8, y + lane * len(spans) / 2 + 4, scheme, text_anchor="end")
        for index, worker in enumerate(spans):
            for kind, a, b in worker:
                out.append(
                    f'<rect x="{left + a * scale:.1f}" y="{y + index * lane}" '
                    f'width="{max(0.5, (b - a) * scale):.1f}" height="{lane - 1}" '
                    f'fill="{_COLORS[kind]}"/>'
                )
        y += lane * len(spans) + 12
    axis_ms = max(r["makespan"] for r in runs.values()) * 1000
    text(left, y + 4, "0 ms")
    text(width - right, y + 4, f"{axis_ms:.0f} ms", text_anchor="end")
    height = y + 20
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>'
    )
    return head + "".join(out) + "</svg>\n"


if __name__ == "__main__":
    main()
