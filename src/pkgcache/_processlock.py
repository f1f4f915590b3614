"""One lock, shared by the threads of one process.

A :class:`ProcessLock` is the in-process half of every pkgcache lock: a
reader/writer lock for the threads of the process, over one engine that
holds the lock for the whole process (:mod:`pkgcache._engine`; flock in
:mod:`pkgcache._flock`). It counts the threads' holds, has the engine take
the lock for the first holder and release it after the last.

State, all guarded by one plain mutex that is only ever entered with
``with`` (so an exception can neither leave it held nor release it twice):

``readers`` / ``writer``
    The threads holding the lock (by :class:`~pkgcache._process.ThreadState`),
    with their re-entry counts.
``engine_mode``
    What the engine holds for the process: ``NONE``, ``SHARED``,
    ``EXCLUSIVE``, or ``UNKNOWN`` while a transition is under way or after
    one was interrupted.
``mover``
    The thread running a waiting engine transition (queued in the engine),
    if any: only one thread of the process moves the engine at a time.
``waiting_writers``
    Threads waiting to write: readers of this process stop joining a
    shared hold (a writer is not overtaken by later readers).

Acquiring, for a thread that does not hold the lock:

1. **At once.** Under the mutex: a reader joins the process's shared hold
   (no system call) unless a writer waits here or elsewhere
   (:meth:`~pkgcache._engine.LockEngine.writer_waits`); otherwise, with no
   holder, no mover and no waiting writer, the engine tries the lock
   without waiting: one ``flock`` call. That is the whole uncontended path.
2. **Waiting** (reported by :class:`~pkgcache._waits.SlowWait`). The thread
   waits in the process until it can join or the engine is free to move
   (a writer waits for every holder, a reader for the writer), then, as
   the mover, waits in the engine outside the mutex (flock's own queue,
   behind its gate), and records the grant.

Waiting writers of the process go first come, first served, and later
readers wait behind them; a writer that releases while readers waited for
it hands the lock to those readers first (the readers' turn, see
:meth:`ProcessLock._others_wait`).

A try (``timeout=0``, or a nested call against the lock order) never waits:
it fails when it cannot enter at once, which happens only when the lock is
held in a conflicting mode, or a writer waits.

Releasing: the last holder of the process has the engine release, under
the mutex (a reader joining meanwhile would hold a lock the kernel
dropped), then, if a writer of another process waits, yields the processor
so that writer runs at once (see :meth:`~pkgcache._flock.FlockEngine.release`).

A thread that holds the lock re-enters without waiting: shared in shared,
anything in exclusive. Exclusive while holding shared is refused with
:class:`~pkgcache.LockUpgradeError`: a failed in-place flock upgrade
silently loses the shared lock.

Interrupts
----------
A ``KeyboardInterrupt`` (any exception a signal handler raises) can land
between any two bytecodes. The invariant kept at every one of them: **the
process never believes it holds a lock the engine does not hold, and no
interrupt leaves the lock unusable.** How:

* every state change happens inside ``with mutex:``, and is ordered so that
  a prefix of it is safe: ``engine_mode`` becomes ``UNKNOWN`` *before* the
  engine moves (so nobody joins a hold that may not exist) and a mode only
  after the grant; a release removes the holder and marks ``UNKNOWN``
  before the engine unlocks;
* every method that changes state catches any exception and repairs what
  the interrupted step left (:meth:`ProcessLock._recover`): the mover role
  and the waiting-writer mark of the thread are dropped, and an engine
  state nobody holds (``UNKNOWN``, or a mode with no holder) is released;
* waits never use :class:`threading.Condition` (whose ``wait`` re-acquires
  its lock in Python code, where an interrupt left it released, and the
  ``with`` block then released it again, or released another thread's
  hold): a waiter blocks on a lock of its own, outside the mutex, and
  re-checks the state under the mutex when woken.

An interrupt that lands inside the repair itself (a second interrupt while
the first is being handled) can leave the thread's mover role or an engine
hold nobody records: that fails safe (held, never phantom) and heals on the
next call on this lock: a holder-less engine hold is released, a mover
role of a thread that is not moving is dropped. Waiting threads also wake
at least every :data:`_RECHECK` seconds to heal what a lost wake-up left.

Descriptors: after the last release the engine stays open for the next
holder; :class:`LockTable` closes the least recently used idle locks once
more than ``max_idle`` are open.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from ._engine import Expired, LockEngine, Mode
from ._errors import LockUpgradeError
from ._process import ThreadState
from ._waits import SlowWait

if TYPE_CHECKING:
    from ._holders import Holder

__all__ = [
    "EXCLUSIVE",
    "NONE",
    "SHARED",
    "UNKNOWN",
    "LockStatistics",
    "LockTable",
    "ProcessLock",
]

#: Engine modes (``engine_mode``): nothing held, shared, exclusive, and a
#: transition under way or interrupted (treated as held by nobody in the
#: process: nobody joins it, the next caller releases it).
NONE, SHARED, EXCLUSIVE, UNKNOWN = 0, 1, 2, 3

# A reader waiting behind a writer of another process re-reads the intent
# byte this often (the writer may give up or die; nothing here would say so).
_RECHECK = 0.02
# Every waiting thread re-checks the state at least this often: a wake-up
# lost to an interrupt heals within this time.
_HEAL_INTERVAL = 0.25

# Yielding the processor after a release that a writer of another process
# waits for (see ``ProcessLock.release``); POSIX only.
_sched_yield: Callable[[], None] | None = getattr(os, "sched_yield", None)
_allocate_lock = threading.Lock
_monotonic = time.monotonic
# How long a readers' turn lasts at most (see ProcessLock._others_wait): its
# readers are woken at once and enter in microseconds; the bound only
# matters if a reader in it stopped waiting without saying so (a second
# interrupt inside the repair of a first), which would hold writers back.
_TURN_LIMIT = _HEAL_INTERVAL


@attrs.frozen
class LockStatistics:
    """What this process knows of one lock, taken at one instant.

    :meth:`Cache.statistics <pkgcache.Cache.statistics>` returns it; it
    never does I/O (it says nothing of other processes: see
    :meth:`Cache.holders <pkgcache.Cache.holders>`).

    Attributes:
        package: the canonical package name, or ``None`` for the whole-cache
            lock.
        held: what this process holds in the lock service (the lock file):
            :attr:`Mode.SHARED`, :attr:`Mode.EXCLUSIVE`, or ``None``.
        readers: names of the threads of this process holding it shared.
        writer: the name of the thread holding it exclusively, if any.
        writers_waiting: threads of this process waiting to write.
        threads_waiting: threads of this process waiting for it, in any mode.
        waiting_in_engine: whether a thread of this process is queued for it
            in the lock service (behind other processes).
        writer_announced: whether a writer of another process announced it
            waits (readers of this process then queue behind it).
        is_open: whether this process keeps the lock's files open.
        depth: how many times the calling thread holds it (0: not at all).
    """

    package: str | None
    held: Mode | None
    readers: tuple[str, ...]
    writer: str | None
    writers_waiting: int
    threads_waiting: int
    waiting_in_engine: bool
    writer_announced: bool
    is_open: bool
    depth: int


_MODES = {SHARED: Mode.SHARED, EXCLUSIVE: Mode.EXCLUSIVE}


def _idle_lock_bound() -> int:
    """Idle locks to keep open: 256, or fewer under a low descriptor limit.

    Each open lock uses three descriptors (lock file, gate file, and the
    mapping of the gate's intent byte); keep idle ones to a quarter of the
    soft limit so the application keeps most of its descriptors.
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover - Windows
        return 256
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(8, min(256, soft // 12))


class ProcessLock:
    """The reader/writer lock of one engine, for all threads of a process.

    Attributes:
        key: orders locks globally (see :mod:`pkgcache._lockset`).
        package: the canonical name, or ``None`` for the whole-cache lock.
        cache_root: the cache root, for messages.
        root_lock: the whole-cache lock of the same cache (itself for the
            whole-cache lock), so a report on a package wait can name
            whole-cache holders too.
        engine: what holds the lock for the process.
    """

    __slots__ = (
        "__weakref__",
        "_depth",
        "_mode",
        "_mover",
        "_mutex",
        "_readers",
        "_ref",
        "_turn",
        "_turn_ends",
        "_waiters",
        "_waiting_readers",
        "_waiting_writers",
        "_writer",
        "cache_root",
        "engine",
        "key",
        "package",
        "root_lock",
        "table",
        "what",
    )

    def __init__(
        self,
        table: LockTable,
        engine: LockEngine,
        key: tuple[int, str],
        cache_root: str,
        root_lock: ProcessLock | None = None,
    ) -> None:
        self.table = table
        self.engine = engine
        self.key = key
        self.package = engine.package
        self.cache_root = cache_root
        self.root_lock = self if root_lock is None else root_lock
        self.what = (
            "the whole cache" if self.package is None else f"package {self.package!r}"
        )
        self._mutex = threading.Lock()
        self._readers: dict[ThreadState, int] = {}
        self._writer: ThreadState | None = None
        self._depth = 0
        self._mode = NONE
        self._mover: ThreadState | None = None
        # Threads waiting to write, first come first (a dict keeps the order).
        self._waiting_writers: dict[ThreadState, None] = {}
        self._waiting_readers: dict[ThreadState, None] = {}
        #: The readers' turn: readers that waited when a writer released.
        self._turn: dict[ThreadState, None] = {}
        self._turn_ends = 0.0
        self._waiters: list[threading.Lock] = []
        self._ref = weakref.ref(self)

    @property
    def path(self) -> str:
        """Where the lock lives (the lock file), for messages."""
        return self.engine.description

    # -- introspection -------------------------------------------------------

    def depth(self, state: ThreadState) -> int:
        """How many times the thread holds this lock (0 when it does not)."""
        if self._writer is state:
            return self._depth
        return self._readers.get(state, 0)

    def mode_of(self, state: ThreadState) -> int:
        """``EXCLUSIVE``, ``SHARED`` or ``NONE``: what the thread holds."""
        if self._writer is state:
            return EXCLUSIVE
        return SHARED if state in self._readers else NONE

    def holding_threads(self) -> list[tuple[ThreadState, Mode]]:
        """Each thread of this process holding the lock, and its mode."""
        with self._mutex:
            if self._writer is not None:
                return [(self._writer, Mode.EXCLUSIVE)]
            return [(state, Mode.SHARED) for state in self._readers]

    def snapshot(self) -> tuple[int, tuple[ThreadState, ...], ThreadState | None, int]:
        """``(engine mode, readers, writer, waiting writers)``, taken at once."""
        with self._mutex:
            return (
                self._mode,
                tuple(self._readers),
                self._writer,
                len(self._waiting_writers),
            )

    def statistics(self, state: ThreadState) -> LockStatistics:
        """What this process knows of the lock, all taken at one instant."""
        with self._mutex:
            mode = self._mode
            readers = tuple(reader.name for reader in self._readers)
            writer = None if self._writer is None else self._writer.name
            waiting = len(self._waiting_writers)
            moving = self._mover is not None
            threads_waiting = len(self._waiters) + moving
            depth = self.depth(state)
        engine = self.engine
        return LockStatistics(
            package=self.package,
            held=_MODES.get(mode),
            readers=readers,
            writer=writer,
            writers_waiting=waiting,
            threads_waiting=threads_waiting,
            waiting_in_engine=moving,
            writer_announced=engine.is_open and engine.writer_waits(),
            is_open=engine.is_open,
            depth=depth,
        )

    def busy_here(self) -> bool:
        """Whether a thread is inside this lock's bookkeeping (its mutex is held).

        A finalizer that runs inside that bookkeeping, in the same thread,
        must not call in again: the mutex is not re-entrant.
        """
        return self._mutex.locked()

    @property
    def engine_mode(self) -> int:
        """What the engine holds for this process (``NONE`` ... ``UNKNOWN``)."""
        return self._mode

    def holders(self) -> list[Holder]:
        """Who holds or waits for this lock: the engine's view, with thread names.

        This process's holding threads are named on its own entry.
        """
        from ._holders import process_holder  # noqa: PLC0415 - introspection only

        own = self.holding_threads()
        found = self.engine.holders()
        if not own:
            return found
        pid = os.getpid()
        names = tuple(state.name for state, _ in own)
        # The threads' mode: the kernel's line (if any) may be an older one.
        mine = process_holder(
            pid,
            package=self.package,
            mode=str(own[0][1]),
            waiting=False,
            threads=names,
            path=self.path,
        )
        # On a lock server the engine's entry also names this host.
        host = next((h.host for h in found if h.pid == pid and not h.waiting), None)
        if host is not None:
            mine = attrs.evolve(mine, host=host)
        rest = [h for h in found if h.pid != pid or h.waiting]
        return [mine, *rest]

    # -- acquire ---------------------------------------------------------------

    def acquire(
        self, state: ThreadState, exclusive: bool, deadline: float | None, wait: bool
    ) -> None:
        """Acquire for the thread of ``state``.

        Raises :class:`~pkgcache._engine.Expired` when ``wait`` is false and
        the lock cannot be had at once, or at ``deadline``.
        """
        # Re-entry needs no mutex: only the thread itself adds or removes its
        # own hold, and while it holds, nobody releases the engine.
        if self._writer is state:
            if state.held or state.entering != 1:
                self._depth += 1
                return
            self._drop_leftover(state)
        count = self._readers.get(state)
        if count is not None and not state.held and state.entering == 1:
            self._drop_leftover(state)
            count = None
        if count is not None:
            if exclusive:
                raise LockUpgradeError(
                    f"this thread holds a shared lock on {self.what} and asked "
                    "for an exclusive one: release the shared lock first (a "
                    "failed flock upgrade silently loses the shared lock)"
                )
            self._readers[state] = count + 1
            return
        try:
            with self._mutex:
                mode = self._mode
                if mode == SHARED:
                    if (
                        not exclusive
                        and not self._waiting_writers
                        and not self.engine.writer_waits()
                    ):
                        self._readers[state] = 1  # join the process's hold
                        return
                elif (
                    mode == NONE
                    and self._mover is None
                    and not self._waiting_writers
                    and not (exclusive and self._turn)
                ):
                    self._mode = UNKNOWN  # until the engine has answered
                    if self.engine.try_acquire(exclusive):
                        if exclusive:
                            self._writer, self._depth = state, 1
                            self._mode = EXCLUSIVE
                        else:
                            self._readers[state] = 1
                            self._mode = SHARED
                        return
                    self._mode = NONE
            if not wait:
                self._try_harder(state, exclusive)
                return
        except BaseException:
            self._recover(state)
            raise
        self._acquire_slowly(state, exclusive, deadline)

    def _drop_leftover(self, state: ThreadState) -> None:
        """Give back a hold of a thread that has no open block.

        Called when the thread holds this lock while it has no open block
        and its only block being entered is the calling one (``entering``
        is 1: not a signal handler's or finalizer's call in the middle of
        another block's entry, whose holds are real though not yet in
        ``held``). Such a hold is one a second interrupt left behind while
        the first was being repaired: it is released here, and the lock is
        taken anew.
        """
        self.release_all(state)

    def _try_harder(self, state: ThreadState, exclusive: bool) -> None:
        """A try that could not enter at once: enter if a check allows, or raise.

        The quick path above refuses in states that only *may* mean the lock
        is busy: an intent byte that is stale (its writer was killed while
        waiting), or an engine state left behind by an interrupt.
        """
        with self._mutex:
            self._heal(state)
            if self._enter_if_free(state, exclusive, verify=True):
                return
        raise Expired

    def _acquire_slowly(
        self, state: ThreadState, exclusive: bool, deadline: float | None
    ) -> None:
        """Wait in the process, then (as the mover) in the engine."""
        wait = SlowWait(self, 2 if exclusive else 1)
        granted = False
        try:
            wait.begin()
            try:
                if not self._wait_in_process(state, exclusive, deadline):
                    self._move(state, exclusive, deadline)
                granted = True
            except BaseException:
                self._recover(state)
                raise
        finally:
            # Before any call (an interrupt lands at calls, also at the
            # start of the one that would mark it): the watchdog must not
            # report this wait once it is over.
            wait.done = True
            if wait.loud:
                wait.end(granted)

    def _wait_in_process(
        self, state: ThreadState, exclusive: bool, deadline: float | None
    ) -> bool:
        """Wait until the thread joined (``True``) or may move the engine."""
        recheck = False
        waiter: threading.Lock | None = None
        while True:
            with self._mutex:
                self._heal(state)
                if exclusive:
                    self._waiting_writers.setdefault(state)
                else:
                    self._waiting_readers.setdefault(state)
                if self._enter_if_free(state, exclusive, verify=recheck):
                    self._stop_waiting(state)
                    return True
                if (
                    self._mode == NONE
                    and self._mover is None
                    and not self._others_wait(state, exclusive)
                ):
                    self._stop_waiting(state)
                    self._mover, self._mode = state, UNKNOWN
                    return False
                remaining = None if deadline is None else deadline - _monotonic()
                if remaining is not None and remaining <= 0:
                    self._stop_waiting(state)
                    raise Expired
                if waiter is not None and waiter in self._waiters:
                    self._waiters.remove(waiter)  # timed out: not woken
                waiter = _allocate_lock()
                waiter.acquire()
                self._waiters.append(waiter)
                # Woken by a release; or after a while, to re-check a writer
                # of another process (it may have given up or died: nothing
                # here would say so) and to heal a wake-up lost to an interrupt.
                interval = (
                    _RECHECK
                    if self._mode == SHARED and not exclusive
                    else _HEAL_INTERVAL
                )
            waiter.acquire(
                True, interval if remaining is None else min(remaining, interval)
            )
            recheck = True

    def _others_wait(self, state: ThreadState, exclusive: bool) -> bool:
        """Under the mutex: whether a thread waits here that comes before this one.

        Writers are served first come, first served; a reader comes after
        every waiting writer, except in the **readers' turn**: a writer that
        released while readers of this process waited hands the lock to
        those readers first (and no writer goes before them), so that a
        thread taking the lock exclusively again and again (a cleaner in a
        loop) cannot starve them. A turn lasts until its readers are in, at
        most ``_TURN_LIMIT`` seconds. A waiting thread whose thread has
        ended (it cannot be waiting) is forgotten.
        """
        turn = self._turn
        if turn:
            if _monotonic() > self._turn_ends:
                turn.clear()
            for reader in [r for r in turn if not r.thread.is_alive()]:
                del turn[reader]
            if state in turn:
                return False
            if turn and exclusive:
                return True
        waiting = self._waiting_writers
        while waiting:
            first = next(iter(waiting))
            if first is state:
                return False
            if first.thread.is_alive():
                return True
            del waiting[first]
        return False

    def _stop_waiting(self, state: ThreadState) -> None:
        """Under the mutex: the thread no longer waits (granted, or gave up)."""
        self._waiting_writers.pop(state, None)
        self._waiting_readers.pop(state, None)
        self._turn.pop(state, None)

    def _enter_if_free(self, state: ThreadState, exclusive: bool, verify: bool) -> bool:
        """Under the mutex: join the shared hold, or take a free engine at once.

        With ``verify``, a writer announced by the engine is checked (and a
        stale announcement forgotten) before it stops a reader.
        """
        mode = self._mode
        if (
            mode == SHARED
            and not exclusive
            and (not self._waiting_writers or state in self._turn)
        ):
            engine = self.engine
            if not engine.writer_waits() or (
                verify and not engine.writer_really_waits()
            ):
                self._readers[state] = 1
                return True
            return False
        if (
            mode != NONE
            or self._mover is not None
            or self._others_wait(state, exclusive)
        ):
            return False
        self._mode = UNKNOWN
        if not self.engine.try_acquire(exclusive):
            self._mode = NONE
            return False
        self._record(state, exclusive)
        return True

    def _move(
        self, state: ThreadState, exclusive: bool, deadline: float | None
    ) -> None:
        """As the mover: wait in the engine, outside the mutex, then record."""
        self.engine.acquire(exclusive, deadline)
        with self._mutex:
            self._record(state, exclusive)
            self._mover = None
            self._wake()

    def _record(self, state: ThreadState, exclusive: bool) -> None:
        """Under the mutex, after a grant: the thread holds, the engine mode is set."""
        if exclusive:
            self._writer, self._depth = state, 1
            self._stop_waiting(state)
            self._turn.clear()  # (empty already: a writer moves only after it)
            self._mode = EXCLUSIVE
        else:
            self._readers[state] = 1
            self._stop_waiting(state)
            self._mode = SHARED

    # -- repair ------------------------------------------------------------------

    def _recover(self, state: ThreadState) -> None:
        """After any exception in an acquire: undo what the interrupted step left."""
        with self._mutex:
            self._stop_waiting(state)
            if self._mover is state:
                self._mover = None
            self._heal(state)
            self._wake()

    def _heal(self, state: ThreadState) -> None:
        """Under the mutex: repair what an interrupted step left behind.

        A mover role of this very thread cannot be real (a thread moves
        one lock at a time, and it is here): an interrupt in a repair left
        it. An engine state with nobody holding it and nobody moving it is
        a hold nobody records (or may be one): release it.
        """
        if self._mover is state:
            self._mover = None
        if (
            self._mode != NONE
            and self._mover is None
            and self._writer is None
            and not self._readers
        ):
            self._mode = UNKNOWN
            self.engine.release()
            self._mode = NONE

    def _wake(self) -> None:
        """Under the mutex: wake every waiting thread (each re-checks the state)."""
        waiters = self._waiters
        while waiters:
            waiters.pop().release()

    # -- release -----------------------------------------------------------------

    def release(self, state: ThreadState) -> None:
        """Release one hold of the thread; the engine releases after the last."""
        if self._writer is state:
            if self._depth > 1:
                self._depth -= 1
                return
        else:
            count = self._readers[state]
            if count > 1:
                self._readers[state] = count - 1
                return
        try:
            with self._mutex:
                if self._writer is state:
                    self._writer, self._depth = None, 0
                    # The readers that waited for this writer go next.
                    if self._waiting_readers:
                        self._turn = dict(self._waiting_readers)
                        self._turn_ends = _monotonic() + _TURN_LIMIT
                else:
                    del self._readers[state]
                    if self._readers:
                        return
                # Unknown until the engine has unlocked: a reader arriving
                # now must not join a hold being dropped.
                self._mode = UNKNOWN
                writer_waits = self.engine.release()
                self._mode = NONE
                if self._waiters:
                    self._wake()
            # Idle now: note it (first released, first closed), and keep the
            # number of idle locks (and their descriptors) bounded.
            table = self.table
            idle = table.idle
            idle[self._ref] = None
            if len(idle) > table.max_idle:
                table.trim()
        except BaseException:
            self._recover(state)
            raise
        if writer_waits and _sched_yield is not None:
            # A writer of another process waits, and the kernel has just
            # woken it (see FlockEngine.release): let it run now.
            _sched_yield()

    def release_all(self, state: ThreadState, down_to: int = 0) -> None:
        """Release the thread's holds until it holds ``down_to`` (idempotent)."""
        while self.depth(state) > down_to:
            self.release(state)
        with self._mutex:
            self._heal(state)

    # -- descriptors ---------------------------------------------------------------

    def close_if_idle(self) -> bool:
        """Close the engine if nobody uses the lock; say whether it did."""
        with self._mutex:
            if (
                self._mode != NONE
                or self._readers
                or self._writer is not None
                or self._mover is not None
                or not self.engine.is_open
            ):
                return False
            self.engine.close()
            return True


class LockTable:
    """The idle locks of this process, in the order they first became idle.

    Each open lock keeps descriptors open; idle ones (open, nobody holding)
    are closed, earliest first, once more than ``max_idle`` are noted. The
    bound is enforced when a lock becomes idle, so it holds after every
    call, at the cost of one dictionary store per release. (Keeping the
    order of the *last* release cost a second dictionary operation on every
    release; a lock closed early is opened again on its next use.)
    """

    def __init__(self, max_idle: int | None = None) -> None:
        self.max_idle = _idle_lock_bound() if max_idle is None else max_idle
        #: Locks released by their last holder, in the order they first
        #: were, as weak references (each lock's own, made once); some may
        #: have been taken again or closed since (trimming skips them).
        self.idle: dict[weakref.ref[ProcessLock], None] = {}

    def trim(self) -> None:
        """Close the least recently released idle locks beyond ``max_idle``."""
        self._trim(self.max_idle)

    def _trim(self, keep: int, spare: ProcessLock | None = None) -> int:
        closed = 0
        idle = self.idle
        while len(idle) > keep:
            try:
                ref = next(iter(idle))
                del idle[ref]
            except (StopIteration, KeyError, RuntimeError):
                break  # another thread trimmed meanwhile
            lock = ref()
            if lock is not None and lock is not spare and lock.close_if_idle():
                closed += 1
        return closed

    def shed(self, spare: ProcessLock | None) -> int:
        """Close every idle lock but ``spare``; lower the bound; return how many.

        Called when opening a lock ran out of descriptors: the new bound is
        half of what was idle, so the process stops running into its limit.
        """
        self.max_idle = max(8, min(self.max_idle, len(self.idle) // 2))
        return self._trim(0, spare)

    def idle_count(self) -> int:
        """Locks noted idle (some may have been closed or taken again since)."""
        return len(self.idle)

    def after_fork_in_child(self) -> None:
        """Forget every lock: the child's locks are new objects."""
        self.idle = {}
