"""Worker threads and processes sharing one pkgcache cache.

Run it with ``python examples/workers.py``. Three processes, each with three
threads, work on a few packages: most of the time they read (``reading``),
now and then one invalidates a package (``exclusive(pkg)``), and once a
process cleans the whole cache (``exclusive()``). Every wait is timed, and
the summary says who waited for what: workers on different packages never
wait for each other; a package's writer waits only for that package's
readers; the whole-cache writer waits for everyone.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pkgcache

PACKAGES = ["setuptools-scm", "packaging", "wheel", "attrs"]
ROUNDS = 40


@contextmanager
def timed(waits: list[tuple[str, str, float]], who: str, what: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    waits.append((who, what, time.perf_counter() - start))


def worker(
    root: str, process: int, thread: int, waits: list[tuple[str, str, float]]
) -> None:
    cache = pkgcache.Cache(root)
    rng = random.Random(process * 100 + thread)
    who = f"process {process} thread {thread}"
    own = PACKAGES[(process + thread) % len(PACKAGES)]
    for round_ in range(ROUNDS):
        if round_ % 10 == 9:
            request = cache.exclusive(own)
            what = f"exclusive({own!r})"
        else:
            package = rng.choice(PACKAGES)
            request = cache.reading(package)
            what = f"reading({package!r})"
        start = time.perf_counter()
        with request:
            waits.append((who, what, time.perf_counter() - start))
            time.sleep(0.002)  # the work done while holding the lock
    if process == 0 and thread == 0:
        start = time.perf_counter()
        with cache.exclusive():
            waits.append((who, "exclusive()", time.perf_counter() - start))


def run_process(root: str, process: int, queue: multiprocessing.Queue[object]) -> None:
    waits: list[tuple[str, str, float]] = []
    threads = [
        threading.Thread(target=worker, args=(root, process, t, waits))
        for t in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(waits)


def main() -> int:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as root:
        queue: multiprocessing.Queue[object] = ctx.Queue()
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
    by_kind: dict[str, list[float]] = defaultdict(list)
    for waits in results:
        assert isinstance(waits, list)
        for _who, what, waited in waits:
            by_kind[what.split("(")[0] + ("(pkg)" if "'" in what else "()")].append(
                waited
            )
    print(f"3 processes x 3 threads, {len(PACKAGES)} packages, {elapsed:.2f} s in all")
    print(f"{'lock':<16}{'count':>7}{'median wait':>14}{'max wait':>12}")
    for kind, values in sorted(by_kind.items()):
        values.sort()
        print(
            f"{kind:<16}{len(values):>7}{values[len(values) // 2] * 1e3:>11.3f} ms"
            f"{values[-1] * 1e3:>9.3f} ms"
        )
    print(
        "readers wait only for a writer of the same package; exclusive(pkg) waits "
        "for that package's readers; exclusive() waits for everyone."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
