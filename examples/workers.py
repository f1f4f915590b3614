"""Worker threads and processes sharing one pkgcache cache.

Run it with ``python examples/workers.py``. Three processes, each with three
threads, work on four packages: mostly they read (``reading(pkg)``), now and
then one invalidates its own package (``exclusive(pkg)``), and at the end one
worker cleans the whole cache (``exclusive()``).

Each worker first asks without waiting (``timeout=0``). When that fails, the
:class:`pkgcache.LockTimeout` says who holds the lock, and the worker then
waits for real. The summary shows what waited for what: a reader waits only
for a writer of the same package, a package's writer waits only for that
package's users, and the whole-cache writer waits for everyone.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager
from typing import Any

import pkgcache

PACKAGES = ["setuptools-scm", "packaging", "wheel", "attrs"]
ROUNDS = 40
WORK = 0.002  # seconds of simulated work while holding a lock

# One record per acquisition: (worker, what it asked for, seconds waited,
# descriptions of the holders it found in its way).
Record = tuple[str, str, float, list[str]]


def request(
    cache: pkgcache.Cache, what: str, timeout: float | None
) -> AbstractContextManager[Any]:
    kind, _, package = what.partition(":")
    packages = (package,) if package else ()
    if kind == "reading":
        return cache.reading(*packages, timeout=timeout)
    return cache.exclusive(*packages, timeout=timeout)


def take(cache: pkgcache.Cache, who: str, what: str, records: list[Record]) -> None:
    """Hold the lock ``what`` for a moment; record the wait and its cause."""
    blockers: list[str] = []
    start = time.perf_counter()
    try:
        with request(cache, what, timeout=0):
            records.append((who, what, 0.0, blockers))
            time.sleep(WORK)
            return
    except pkgcache.LockTimeout as busy:
        blockers = [describe(h) for h in busy.holders]
    with request(cache, what, timeout=60):
        records.append((who, what, time.perf_counter() - start, blockers))
        time.sleep(WORK)


def describe(holder: pkgcache.Holder) -> str:
    role = "queued writer" if holder.waiting else f"{holder.mode} holder"
    threads = f" ({', '.join(holder.threads)})" if holder.threads else ""
    return f"{role} pid {holder.pid}{threads}"


def cause(blockers: list[str]) -> str:
    """The main reason a request had to wait."""
    if any(b.startswith("exclusive") for b in blockers):
        return "an exclusive holder"
    if any(b.startswith("queued") for b in blockers):
        return "a writer queued ahead of it"
    return "shared holders"


def worker(root: str, process: int, thread: int, records: list[Record]) -> None:
    cache = pkgcache.Cache(root)
    rng = random.Random(process * 100 + thread)
    who = f"p{process}/t{thread}"
    own = PACKAGES[(process + thread) % len(PACKAGES)]
    for round_ in range(ROUNDS):
        if round_ % 10 == 9:
            take(cache, who, f"exclusive:{own}", records)
        else:
            take(cache, who, f"reading:{rng.choice(PACKAGES)}", records)
    if process == 0 and thread == 0:
        take(cache, who, "exclusive:", records)


def run_process(root: str, process: int, queue: Any) -> None:
    records: list[Record] = []
    threads = [
        threading.Thread(
            target=worker, args=(root, process, t, records), name=f"p{process}/t{t}"
        )
        for t in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((os.getpid(), records))


def label(what: str) -> str:
    kind, _, package = what.partition(":")
    return f"{kind}({'pkg' if package else ''})"


def main() -> int:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as root:
        queue = ctx.Queue()
        processes = [
            ctx.Process(target=run_process, args=(root, p, queue)) for p in range(3)
        ]
        start = time.perf_counter()
        for p in processes:
            p.start()
        results = [queue.get(timeout=120) for _ in processes]
        for p in processes:
            p.join(timeout=120)
        elapsed = time.perf_counter() - start

    records = [record for _, rs in results for record in rs]
    print(
        f"3 processes x 3 threads, {len(PACKAGES)} packages, "
        f"{len(records)} locks taken in {elapsed:.2f} s\n"
    )
    print(f"{'asked for':<16}{'count':>7}{'had to wait':>13}", end="")
    print(f"{'median wait':>14}{'max wait':>11}")
    for kind in ("reading(pkg)", "exclusive(pkg)", "exclusive()"):
        waits = sorted(w for _, what, w, _ in records if label(what) == kind)
        waited = [w for w in waits if w > 0]
        median = waited[len(waited) // 2] * 1e3 if waited else 0.0
        print(
            f"{kind:<16}{len(waits):>7}{len(waited):>13}{median:>11.2f} ms"
            f"{(waits[-1] if waits else 0) * 1e3:>8.2f} ms"
        )

    causes = Counter((label(what), cause(b)) for _, what, w, b in records if w > 0)
    print("\nwhat waited for what (found when the first try failed):")
    for (asked, reason), count in sorted(causes.items()):
        print(f"  {asked:<16} waited for {reason}: {count}x")

    print("\nlongest waits:")
    for who, what, waited, blockers in sorted(records, key=lambda r: -r[2])[:4]:
        kind, _, package = what.partition(":")
        call = f"{kind}({package!r})" if package else f"{kind}()"
        behind = "; ".join(blockers) or "a holder already gone when asked"
        print(f"  {who} {call}: {waited * 1e3:.2f} ms behind {behind}")
    print(
        "\nreaders wait only for a writer of the same package; exclusive(pkg) waits "
        "for that package's readers; exclusive() waits for everyone."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
