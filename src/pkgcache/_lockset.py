"""Taking and giving back the locks of one ``with`` block, in the global order.

Order
-----
Locks are taken in one global order: the whole-cache lock first, then
packages sorted by canonical name. Two calls that both follow the order
cannot wait for each other in a cycle, so multi-package calls never
deadlock, however their sets overlap, whatever mix of modes they ask
(``exclusive("a", reading=["b"])`` against ``exclusive("b", reading=["a"])``
both finish).

A thread may nest calls. Re-entering a lock it holds never waits (shared in
shared, anything in exclusive; inside ``exclusive()`` every package lock is
already covered). Asking for exclusive where it holds shared raises
:class:`~pkgcache.LockUpgradeError` at once. A nested call that needs a lock
*earlier* in the order than one the thread holds tries it without waiting
and raises :class:`~pkgcache.LockOrderError` if it is busy: waiting there
could deadlock against a thread that acquires in order.

Interrupts
----------
A block's locks are given back by depth, not by count: the depths each lock
had before the block (all zero for an un-nested block) are the target, so
giving back is idempotent and right wherever an exception landed (between
two acquisitions, between a grant and its bookkeeping, inside a release).
The thread's list of held plans (``ThreadState.held``: one entry per open
block) is a hint, cut back to what the locks themselves record before it
is relied on.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._engine import Expired
from ._process import ThreadState
from ._processlock import EXCLUSIVE, ProcessLock

__all__ = [
    "Busy",
    "describe_later",
    "forget",
    "give_back",
    "nested_plan",
    "take_nested",
]

Plan = tuple[tuple[ProcessLock, bool], ...]


class Busy(Exception):
    """A lock of the plan could not be had (in time, or without waiting)."""

    def __init__(self, lock: ProcessLock, exclusive: bool, out_of_order: bool) -> None:
        super().__init__(lock.what)
        self.lock = lock
        self.exclusive = exclusive
        self.out_of_order = out_of_order


def take_nested(
    plan: Plan,
    state: ThreadState,
    before: Sequence[int],
    deadline: float | None,
    wait: bool,
) -> None:
    """Take ``plan`` for a thread that holds locks already (see the module).

    ``before`` are the depths of the plan's locks before this call.
    """
    held = state.held
    later = _latest_held(held, state)
    for (lock, exclusive), depth in zip(plan, before, strict=True):
        out_of_order = depth == 0 and later is not None and lock.key < later
        try:
            lock.acquire(state, exclusive, deadline, wait and not out_of_order)
        except Expired:
            raise Busy(lock, exclusive, out_of_order) from None
    held.append(plan)


def _latest_held(held: list[Plan], state: ThreadState) -> tuple[int, str] | None:
    """The key of the latest lock in the order the thread holds, or ``None``.

    The thread's list of plans may lag after an interrupt: plans none of
    whose locks the thread still holds are dropped first. (Loops, not
    generators: an interrupt landing in a generator that ``any()`` closes
    early is swallowed, "exception ignored", and the user's Ctrl-C is lost.)
    """
    latest = None
    for index in range(len(held) - 1, -1, -1):
        plan = held[index]
        for lock, _ in plan:
            if lock.depth(state):
                break
        else:
            del held[index]
            continue
        key = plan[-1][0].key
        if latest is None or key > latest:
            latest = key
    return latest


def nested_plan(plan: Plan, state: ThreadState) -> Plan:
    """``plan`` for a nested call: only the root when it is held exclusively.

    ``exclusive()`` already covers every package lock of its cache.
    """
    root, _ = plan[0]
    if root.mode_of(state) == EXCLUSIVE:
        return plan[:1]
    return plan


def describe_later(state: ThreadState, lock: ProcessLock) -> str:
    """The locks the thread holds later in the order than ``lock``."""
    return ", ".join(
        sorted(
            {
                other.what
                for plan in state.held
                for other, _ in plan
                if other.key > lock.key and other.depth(state)
            }
        )
    )


def give_back(plan: Plan, state: ThreadState, before: Sequence[int] | None) -> None:
    """Release what a block added: down to the depths ``before`` (idempotent).

    ``None`` means the thread held none of the plan's locks before.
    """
    error: BaseException | None = None
    for index in range(len(plan) - 1, -1, -1):
        lock = plan[index][0]
        try:
            lock.release_all(state, 0 if before is None else before[index])
        except BaseException as raised:
            error = error or raised
    if error is not None:
        raise error


def forget(plan: Plan, state: ThreadState) -> None:
    """Take a block's plan off the thread's list of held plans.

    Blocks usually end in the reverse order they began; an ``ExitStack`` may
    end them in any order.
    """
    held = state.held
    if held and held[-1] is plan:
        held.pop()
        return
    for index in range(len(held) - 1, -1, -1):
        if held[index] is plan:
            del held[index]
            return
