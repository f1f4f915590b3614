"""Crash injection: writers killed with SIGKILL at random points of the store.

A driver process (spawn) forks writers that run random ``add``,
``add(move=True)``, ``add_tree``, ``remove``, ``clean(pkg)``, ``clean()``
and ``prune`` calls without pause, and kills each at a random moment.
After every kill the driver checks: every lock can be taken at once, every
visible entry is whole (sha256 of every file against the only bytes its key
may hold), and a prune leaves ``tmp/`` empty.
"""

from __future__ import annotations

import sys

import pytest

from tests.helpers import SPAWN
from tests.reliability.support import (
    WAIT,
    crash_driver,
    make_seed,
    scaled,
)

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork()"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
]


@pytest.mark.timeout(120 + scaled(100))
def test_writers_killed_at_random_points_leave_only_whole_entries(tmp_path):
    kills = scaled(100)
    result = SPAWN.Queue()
    (tmp_path / "src").mkdir()
    driver = SPAWN.Process(
        target=crash_driver,
        args=(
            str(tmp_path / "cache"),
            str(tmp_path / "src"),
            make_seed(),
            kills,
            result,
        ),
    )
    driver.start()
    try:
        outcome = result.get(timeout=WAIT + kills * 2)
    finally:
        driver.join(WAIT)
    print(f"crash injection: {outcome[-1]}")
    assert outcome[0] == "ok", outcome[1]
    report = outcome[1]
    assert report["kills"] == kills
    assert report["entries checked"] > 0
    # Kills really landed mid-write: some left staging folders to reap.
    assert report["reaped"] > 0
