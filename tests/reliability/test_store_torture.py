"""Torture of the store: readers check every byte while writers churn.

Spawn processes, each with reader and writer threads, on a handful of
packages, for ``PKGCACHE_SOAK_SECONDS``. Readers hold ``reading(pkg)`` and
read every entry they find in full, checking it against the only bytes its
key may ever hold; writers add files and trees, remove, clean one package
or the whole store, and prune. No reader may see a missing, partial or
wrong file; every operation must finish.
"""

from __future__ import annotations

from collections import Counter

import pytest

import pkgcache
from tests.helpers import SPAWN
from tests.reliability.support import (
    STORE_PACKAGES,
    WAIT,
    check_store,
    make_seed,
    soak_seconds,
    store_torture_worker,
)

pytestmark = pytest.mark.reliability

PROCESSES = 2


@pytest.mark.timeout(60 + 3 * soak_seconds())
def test_store_torture_readers_never_see_a_partial_or_missing_entry(tmp_path):
    seed = make_seed()
    root = tmp_path / "cache"
    (tmp_path / "src").mkdir()
    seconds = soak_seconds()
    start = SPAWN.Event()
    result = SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=store_torture_worker,
            args=(str(root), str(tmp_path / "src"), seed + i),
            kwargs={
                "readers": 2,
                "writers": 2,
                "seconds": seconds,
                "start": start,
                "result": result,
            },
        )
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    start.set()
    counts: Counter[str] = Counter()
    errors: list[str] = []
    for _ in procs:
        proc_counts, proc_errors = result.get(timeout=seconds + 2 * WAIT)
        counts.update(proc_counts)
        errors += proc_errors
    for proc in procs:
        proc.join(WAIT)
        assert proc.exitcode == 0
    print(f"store torture operations: {dict(sorted(counts.items()))}")
    assert errors == []
    for op in ("find", "entries", "entry read", "add", "add_tree", "clean(pkg)"):
        assert counts[op] > 0, f"no {op} ran: {counts}"
    # Afterwards: every lock free at once, everything whole, nothing staged.
    cache = pkgcache.Cache(root)
    with cache.exclusive(timeout=0), cache.exclusive(*STORE_PACKAGES, timeout=0):
        pass
    check_store(cache)
    cache.prune(timeout=0)
    assert not (root / "tmp").exists() or list((root / "tmp").iterdir()) == []
