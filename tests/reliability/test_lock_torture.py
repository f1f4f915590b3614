"""Torture of the lock API: processes x threads, random calls, a shared log.

Every hold is logged with its enter and exit time (CLOCK_MONOTONIC is one
clock for every process of the machine). Afterwards the log must show no
two exclusive holders of one lock at once and no reader beside an exclusive
holder; every thread must have finished its last call.
"""

from __future__ import annotations

import pytest

import pkgcache
from tests.helpers import SPAWN
from tests.reliability.support import (
    WAIT,
    lock_torture_worker,
    make_seed,
    overlapping_conflicts,
    read_torture_logs,
    soak_seconds,
)

pytestmark = pytest.mark.reliability

PROCESSES = 2
THREADS = 3


@pytest.mark.timeout(60 + 2 * soak_seconds())
def test_lock_torture_never_overlaps_conflicting_holds(tmp_path):
    seed = make_seed()
    root = tmp_path / "cache"
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    seconds = soak_seconds()
    start = SPAWN.Event()
    procs = [
        SPAWN.Process(
            target=lock_torture_worker,
            args=(str(root), str(log_dir), seed + i),
            kwargs={"threads": THREADS, "seconds": seconds, "start": start},
        )
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(seconds + WAIT)
        assert proc.exitcode == 0, f"worker {proc.pid} exit code {proc.exitcode}"

    holds, counts, errors = read_torture_logs(log_dir)
    print(f"operations: {dict(sorted(counts.items()))}, holds logged: {len(holds)}")
    assert errors == []
    assert len(list(log_dir.glob("*.log"))) == PROCESSES  # every worker finished
    assert overlapping_conflicts(holds) == []
    # The mix really happened: every kind of call, some of them contended.
    for op in ("r0", "x0", "r1", "x1", "r2", "x2", "nested"):
        assert counts[op] > 0, f"no {op} operation ran: {counts}"
    # Nothing is left held: one fresh call takes everything at once.
    with pkgcache.Cache(root).exclusive(timeout=0):
        pass


def test_conflict_detector_finds_overlaps():
    """The checker itself: it must see what it is there to see."""
    ok = [
        ("p1.0", "r", ("a",), 0, 10),
        ("p2.0", "r", ("a",), 5, 15),
        ("p1.1", "x", ("a",), 15, 20),
        ("p2.1", "x", ("b",), 0, 30),
        ("p3.0", "r", (), 0, 30),
    ]
    assert overlapping_conflicts(ok) == []
    two_writers = [*ok, ("p4.0", "x", ("a",), 19, 25)]
    assert len(overlapping_conflicts(two_writers)) == 1
    reader_in_writer = [*ok, ("p4.0", "r", ("a",), 16, 17)]
    assert len(overlapping_conflicts(reader_in_writer)) == 1
    whole_cache = [*ok, ("p4.0", "x", (), 29, 31)]
    assert overlapping_conflicts(whole_cache) != []
