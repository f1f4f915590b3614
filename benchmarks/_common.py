"""Shared helpers: statistics, machine description, tables, results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def machine() -> str:
    system = f"{platform.system()} {platform.release()}"
    text = f"{system}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
    if hasattr(os, "getloadavg"):
        text += f", load {os.getloadavg()[0]:.2f}"
    return text


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def per_op_us(fn: Callable[[], None], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops * 1e6


def interleaved_medians(
    contenders: dict[str, Callable[[], None]], ops: int, rounds: int
) -> dict[str, tuple[float, float, float]]:
    """Median, min and max per-operation cost (µs) over interleaved rounds.

    Interleaving spreads the machine's noise over every contender alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm up
        per_op_us(fn, max(10, ops // 10))
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(per_op_us(fn, ops))
    return {name: (statistics.median(v), min(v), max(v)) for name, v in samples.items()}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [
        [f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"machine": machine(), "argv": sys.argv, "when": time.time(), **data}
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
