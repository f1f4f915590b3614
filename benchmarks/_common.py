"""Shared helpers: sizes, statistics, the machine, tables, results."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
WAIT = 600.0  # bound on any barrier or join: a benchmark never hangs forever


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much work each benchmark does (see :data:`SCALES`)."""

    name: str
    # uncontended: interleaved rounds, and target seconds per round per contender
    rounds: int
    round_seconds: float
    # throughput: worker counts, seconds per measurement, interleaved repeats
    sizes: tuple[int, ...]
    duration: float
    repeats: int
    # writer wait: reader processes, seconds per contender, cap on one wait
    readers: int
    writer_run: float
    starve_cap: float
    # hand-over: samples for blocking contenders, and for polling ones, per
    # round; interleaved rounds of the blocking contenders (pooled)
    samples: int
    polling_samples: int
    handover_rounds: int
    # fairness: workers and seconds
    fair_workers: int
    fair_duration: float


SCALES = {
    "full": Scale(
        "full",
        rounds=31,
        round_seconds=0.02,
        sizes=(1, 2, 4, 8, 16),
        duration=1.0,
        repeats=3,
        readers=8,
        writer_run=8.0,
        starve_cap=10.0,
        samples=300,
        polling_samples=24,
        handover_rounds=5,
        fair_workers=16,
        fair_duration=4.0,
    ),
    "quick": Scale(
        "quick",
        rounds=9,
        round_seconds=0.01,
        sizes=(1, 4, 16),
        duration=0.4,
        repeats=1,
        readers=8,
        writer_run=3.0,
        starve_cap=3.0,
        samples=80,
        polling_samples=6,
        handover_rounds=1,
        fair_workers=16,
        fair_duration=1.5,
    ),
    # For the smoke test only: every code path, numbers meaningless.
    "tiny": Scale(
        "tiny",
        rounds=2,
        round_seconds=0.001,
        sizes=(1, 2),
        duration=0.05,
        repeats=1,
        readers=2,
        writer_run=0.1,
        starve_cap=0.5,
        samples=3,
        polling_samples=1,
        handover_rounds=2,
        fair_workers=2,
        fair_duration=0.1,
    ),
}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _file_system(path: str) -> str:
    """The type of the file system holding ``path`` (Linux), else ``?``."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def machine(folder: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "system": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": {
            name: _version(name)
            for name in ("pkgcache", "portalocker", "filelock", "fasteners")
        },
    }
    if folder is not None:
        info["file_system"] = _file_system(os.path.realpath(folder))
    return info


def describe(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    text = (
        f"{info['system']}, {info['cpu']} x{info['cpus']}, Python {info['python']}, "
        f"1-min load {info['load_1min']:.2f}"
    )
    if "file_system" in info:
        text += f", lock files on {info['file_system']}"
    return f"{text}\n# {versions}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile, min and max."""
    return {
        "median": statistics.median(values) if values else float("nan"),
        "p10": percentile(values, 10),
        "p90": percentile(values, 90),
        "min": min(values, default=float("nan")),
        "max": max(values, default=float("nan")),
        "n": len(values),
    }


def per_op_us(fn: Callable[[], None], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops * 1e6


def interleaved(
    contenders: dict[str, Callable[[], None]], rounds: int, round_seconds: float
) -> dict[str, dict[str, float]]:
    """Per-operation cost (µs) of each contender over interleaved rounds.

    Each round runs every contender once, for about ``round_seconds``, so the
    machine's noise falls on all of them alike; the spread is over rounds.
    """
    ops: dict[str, int] = {}
    for name, fn in contenders.items():  # warm up, and size a round
        per_op_us(fn, 20)
        cost = per_op_us(fn, 50)
        ops[name] = max(20, round(round_seconds * 1e6 / max(cost, 0.01)))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(per_op_us(fn, ops[name]))
    return {name: spread(values) for name, values in samples.items()}


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save(data: dict[str, Any], name: str) -> Path:
    """Write ``data`` to ``benchmarks/results/<name>.json`` and ``latest.json``."""
    RESULTS.mkdir(exist_ok=True)
    data = {
        "argv": sys.argv,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **data,
    }
    text = json.dumps(data, indent=2, default=str)
    path = RESULTS / f"{name}.json"
    path.write_text(text, encoding="utf-8")
    (RESULTS / "latest.json").write_text(text, encoding="utf-8")
    return path


def uncontended_blocks(cache: Any, package: str) -> dict[str, Callable[[], None]]:
    """One uncontended ``with`` block of each call on ``cache``, by call name."""

    def reading_pkg() -> None:
        with cache.reading(package):
            pass

    def exclusive_pkg() -> None:
        with cache.exclusive(package):
            pass

    def reading_all() -> None:
        with cache.reading():
            pass

    def exclusive_all() -> None:
        with cache.exclusive():
            pass

    return {
        "reading(pkg)": reading_pkg,
        "exclusive(pkg)": exclusive_pkg,
        "reading()": reading_all,
        "exclusive()": exclusive_all,
    }
