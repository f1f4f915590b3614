"""Every cell of the lock table, across threads and across processes.

Each test runs on both lock engines (the ``locks`` fixture): flock, and
PostgreSQL.
"""

from __future__ import annotations

import threading

import pytest

import pkgcache
from tests.helpers import WAIT, Contender, LockServer, thread_holding

# (mode, packages) -> readable id
R_ALL = ("r", ())
R_A = ("r", ("a",))
R_B = ("r", ("b",))
R_AB = ("r", ("a", "b"))
X_A = ("x", ("a",))
X_B = ("x", ("b",))
X_AB = ("x", ("a", "b"))
X_ALL = ("x", ())

HELD = [R_ALL, R_A, R_AB, X_A, X_AB, X_ALL]
WANTED = [R_ALL, R_A, R_B, X_A, X_B, X_ALL]


def blocks(
    held: tuple[str, tuple[str, ...]], wanted: tuple[str, tuple[str, ...]]
) -> bool:
    """The lock table, written out independently of the implementation."""
    held_mode, held_pkgs = held
    wanted_mode, wanted_pkgs = wanted
    # Root lock: exclusive only for exclusive() with no packages.
    held_root = "x" if held == X_ALL else "r"
    wanted_root = "x" if wanted == X_ALL else "r"
    if "x" in (held_root, wanted_root):
        return True
    # Package locks: conflict when a package is shared and either is exclusive.
    common = set(held_pkgs) & set(wanted_pkgs)
    return bool(common) and "x" in (held_mode, wanted_mode)


def name(cell: tuple[str, tuple[str, ...]]) -> str:
    mode, pkgs = cell
    return f"{'reading' if mode == 'r' else 'exclusive'}({','.join(pkgs)})"


CELLS = [(h, w) for h in HELD for w in WANTED]
IDS = [f"{name(h)}-vs-{name(w)}" for h, w in CELLS]

# How long a contender that must wait is watched before we conclude it waits.
# This is a bounded negative check, not synchronization: the positive side
# (it enters once released) is waited for on an event.
NEGATIVE_WINDOW = 0.25


def check_cell(cache, release, held, wanted):
    contender = Contender(cache, *wanted)
    if blocks(held, wanted):
        assert not contender.entered.wait(NEGATIVE_WINDOW), (
            f"{name(wanted)} entered while {name(held)} was held"
        )
        release()
        assert contender.entered.wait(WAIT), f"{name(wanted)} never entered"
    else:
        assert contender.entered.wait(WAIT), f"{name(wanted)} waited for {name(held)}"
        release()
    contender.join()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("held", "wanted"), CELLS, ids=IDS)
def test_table_across_threads(tmp_path, locks, held, wanted):
    cache = pkgcache.Cache(tmp_path / "cache", locks=locks)
    # A second object shares the locks.
    other = pkgcache.Cache(tmp_path / "cache", locks=locks)
    ctx = thread_holding(cache, *held)
    ctx.__enter__()
    released = []

    def release():
        released.append(True)
        ctx.__exit__(None, None, None)

    try:
        check_cell(other, release, held, wanted)
    finally:
        if not released:
            ctx.__exit__(None, None, None)


@pytest.fixture(scope="module")
def server(tmp_path_factory, locks):
    root = tmp_path_factory.mktemp("shared") / "cache"
    server = LockServer(str(root), locks)
    yield server, pkgcache.Cache(root, locks=locks)
    server.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("held", "wanted"), CELLS, ids=IDS)
def test_table_across_processes(server, held, wanted):
    lock_server, cache = server
    lock_server.hold(held[0], *held[1])
    released = []

    def release():
        released.append(True)
        lock_server.release()

    try:
        check_cell(cache, release, held, wanted)
    finally:
        if not released:
            lock_server.release()


@pytest.mark.timeout(60)
def test_finite_timeout_reports_blocking_cells(server):
    lock_server, cache = server
    lock_server.hold("r", "a")
    try:
        with pytest.raises(pkgcache.LockTimeout) as info:
            with cache.exclusive("a", timeout=0.05):
                pass
        with cache.reading("a", timeout=WAIT), cache.exclusive("b", timeout=WAIT):
            pass
    finally:
        lock_server.release()
    assert info.value.package == "a"
    assert info.value.mode == "exclusive"


# The other direction: this process holds (in a thread), another process asks
# and waits as long as needed. Its answer arrives only once it got the lock.
REVERSE = [
    (R_A, X_A),
    (R_ALL, X_ALL),
    (R_AB, X_B),
    (X_A, R_A),
    (X_ALL, R_B),
    (X_A, X_A),
    (R_A, R_A),
    (X_A, X_B),
    (R_ALL, X_A),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("held", "wanted"),
    REVERSE,
    ids=[f"{name(h)}-vs-{name(w)}" for h, w in REVERSE],
)
def test_table_contender_in_another_process(server, held, wanted):
    lock_server, cache = server
    ctx = thread_holding(cache, *held)
    ctx.__enter__()
    released = []
    answer = []
    answered = threading.Event()

    def ask():
        answer.append(lock_server.call("try", wanted[0], list(wanted[1]), None))
        answered.set()

    asker = threading.Thread(target=ask)
    try:
        asker.start()
        if blocks(held, wanted):
            assert not answered.wait(NEGATIVE_WINDOW), (
                f"{name(wanted)} in another process entered while {name(held)} "
                "was held here"
            )
            released.append(True)
            ctx.__exit__(None, None, None)
        assert answered.wait(WAIT), f"{name(wanted)} never entered"
        assert answer == [True]
    finally:
        if not released:
            ctx.__exit__(None, None, None)
        asker.join(WAIT)
