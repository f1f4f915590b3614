"""Reporting waits: who waits for which lock, who is in the way, for how long.

A person watching a stalled build needs to know which worker waits for
which lock, in which mode, in which cache, and who is in the way: the
holders whose mode conflicts, writers queued ahead, and, for a package,
whoever holds or waits for the whole cache exclusively. The ``pkgcache``
logger says so:

* INFO, :data:`SLOW_WAIT` seconds into a wait, then again at a growing
  interval (twice the time waited so far, at least a second apart and at
  most ``_MAX_INTERVAL``), while the wait lasts: ``thread 'worker-3' of pid
  4242 has waited 2.0 s for the exclusive lock on package 'x' in /cache:
  pid 977 holds ...``;
* INFO when a wait that was reported ends: ``... got the exclusive lock ...
  after 5.3 s`` (or ``gave up on ...`` at a timeout);
* DEBUG when any contended wait starts and ends.

A thread blocked in ``flock`` cannot log by itself, so one watchdog thread
(started on the first contended wait) keeps a heap of the waits in progress
and logs for them, on behalf of the waiting thread: the record carries the
waiting thread's name and id (``%(threadName)s`` shows the worker, not the
watchdog), and the text names it too. The line that ends a wait is logged
by the waiting thread itself.

Uncontended acquisitions never reach this module, and a thread woken up
after a wait (the hand-over path, where every step counts) only sets a flag
and reads one: nothing is formatted unless that wait was reported.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from . import _process
from ._holders import Holder, format_seconds, holders_of

if TYPE_CHECKING:
    from ._processlock import ProcessLock

__all__ = ["SLOW_WAIT", "SlowWait", "blockers", "logger", "reporting_after"]

logger = logging.getLogger("pkgcache")

#: Seconds after which a wait is first reported at INFO level.
SLOW_WAIT = 1.0
# Later reports: at twice the time waited so far, at least this far apart...
_MIN_INTERVAL = 1.0
# ... and at most this far apart, so a wait of hours still says so hourly-ish.
_MAX_INTERVAL = 60.0

# The modes of pkgcache._processlock, which imports this module.
_MODE_NAMES = {1: "shared", 2: "exclusive"}
_EXCLUSIVE = 2


def next_report(waited: float) -> float:
    """When (seconds into the wait) to report again after reporting at ``waited``."""
    interval = min(max(waited, _MIN_INTERVAL), _MAX_INTERVAL)
    return waited + interval


@contextlib.contextmanager
def reporting_after(seconds: float) -> Iterator[None]:
    """Report waits after ``seconds`` instead of :data:`SLOW_WAIT` in the block.

    For a command line, where a person waits for the answer: it should say
    at once why it does not come.
    """
    global SLOW_WAIT  # noqa: PLW0603
    before, SLOW_WAIT = SLOW_WAIT, seconds
    try:
        yield
    finally:
        SLOW_WAIT = before


def blockers(lock: ProcessLock, mode: int) -> list[Holder]:
    """Who keeps ``lock`` from being granted in ``mode``, as far as can be seen.

    The holders whose mode conflicts (every holder, for an exclusive
    request), the processes queued for it ahead of a reader (a waiting
    writer is not overtaken), and, for a package lock, whoever holds or
    waits for the whole-cache lock exclusively. This process's own waiting
    entries (the waiting thread itself) are left out.
    """
    root = lock.root_lock
    own_pid = os.getpid()
    found = []
    for holder in holders_of([lock] if root is lock else [lock, root]):
        if holder.waiting:
            # Queued readers are not in the way; this process's waiting
            # entry is most likely the thread that asks.
            blocks = holder.pid != own_pid and holder.mode != "shared"
        elif holder.package is None and lock is not root:
            blocks = holder.mode == "exclusive"  # the whole cache, exclusively
        else:
            # The kernel's line for this process when no thread of it holds
            # the lock any more is a hold about to end: not in the way.
            blocks = (mode == _EXCLUSIVE or holder.mode == "exclusive") and (
                holder.pid != own_pid or bool(holder.threads)
            )
        if blocks:
            found.append(holder)
    return found


class _Watchdog:
    """One thread of its own that reports the waits in progress.

    A waiting thread hands its wait over with :meth:`add`: one
    ``SimpleQueue.put`` (a single C call that takes no lock an interrupt
    could leave held), so a ``KeyboardInterrupt`` in the waiting thread can
    never block the watchdog or the next waiter. Only the watchdog thread
    touches its heap of due reports.
    """

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[tuple[float, SlowWait]] = queue.SimpleQueue()
        self._start = threading.Lock()
        self._started = False

    def add(self, wait: SlowWait, due: float) -> None:
        """Report ``wait`` at ``due`` (a ``time.monotonic()``) unless it is over."""
        self._inbox.put((due, wait))
        if not self._started:
            self._start_thread()

    def _start_thread(self) -> None:
        with self._start:
            if self._started:
                return
            thread = threading.Thread(
                target=self._run, name="pkgcache-wait-watchdog", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # Python 3.12+ starts no thread at interpreter shutdown (an
                # atexit handler waiting for a lock): the wait goes on, it
                # just cannot be reported.
                return
            self._started = True

    def _run(self) -> None:
        heap: list[tuple[float, int, SlowWait]] = []
        counter = itertools.count()
        while True:
            timeout = max(0.0, heap[0][0] - time.monotonic()) if heap else None
            try:
                due, wait = self._inbox.get(timeout=timeout)
            except queue.Empty:
                pass
            else:
                heapq.heappush(heap, (due, next(counter), wait))
                continue
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                due, _, wait = heapq.heappop(heap)
                if wait.done:
                    continue
                try:
                    wait.report_slow()
                except Exception:
                    # One report that fails (a /proc race, a broken handler)
                    # must not end every later report.
                    logger.debug("could not report a slow wait", exc_info=True)
                again = wait.start + next_report(due - wait.start)
                heapq.heappush(heap, (again, next(counter), wait))

    def after_fork_in_child(self) -> None:
        # The parent's thread is not in the child; its queue may be
        # half-written by a thread that no longer exists.
        self.__init__()  # type: ignore[misc]


_watchdog = _Watchdog()
_process.at_fork_in_child(_watchdog.after_fork_in_child)


class SlowWait:
    """Wraps one contended wait of the calling thread: logs it while it lasts.

    ``begin()`` and ``end()`` around the wait, in the waiting thread (or
    ``with SlowWait(lock, mode):``);
    ``lock`` is the :class:`~pkgcache._processlock.ProcessLock` waited for,
    ``mode`` 1 (shared) or 2 (exclusive), ``gate`` whether the thread queues
    behind a waiting writer.
    """

    __slots__ = ("done", "gate", "lock", "loud", "mode", "reported", "start", "thread")

    def __init__(self, lock: ProcessLock, mode: int, *, gate: bool = False) -> None:
        self.lock = lock
        self.mode = mode
        self.gate = gate
        self.done = False
        # Whether the end of the wait is logged: at DEBUG level, or once the
        # watchdog has reported the wait (then ``reported`` is set first).
        self.loud = False
        self.reported = False
        self.start = 0.0
        self.thread = 0

    def begin(self) -> None:
        """Log the start of the wait (DEBUG) and have the watchdog watch it.

        The caller sets ``done`` when the wait is over, in a ``finally``
        block, before any call: see ``ProcessLock._acquire_slowly``.
        """
        self.start = time.monotonic()
        self.thread = threading.get_ident()
        # Asked once: the end runs on the hand-over path.
        self.loud = logger.isEnabledFor(logging.DEBUG)
        if self.loud:
            logger.debug(
                "%s waits for %s%s",
                _thread_name(threading.current_thread()),
                self._what(),
                " (queued behind a waiting writer)" if self.gate else "",
            )
        _watchdog.add(self, self.start + SLOW_WAIT)

    def end(self, granted: bool) -> None:
        """The wait is over: log how it ended if it was logged or reported."""
        self.done = True
        if self.loud:
            self._log_end(granted)

    def __enter__(self) -> SlowWait:
        try:
            self.begin()
        except BaseException:
            self.done = True
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc_type is None)

    def _what(self) -> str:
        lock = self.lock
        return f"the {_MODE_NAMES[self.mode]} lock on {lock.what} in {lock.cache_root}"

    def _log_end(self, granted: bool) -> None:
        logger.log(
            logging.INFO if self.reported else logging.DEBUG,
            "%s %s %s after %s",
            _thread_name(threading.current_thread()),
            "got" if granted else "gave up waiting for",
            self._what(),
            format_seconds(time.monotonic() - self.start),
        )

    def report_slow(self) -> None:
        """Log, from the watchdog, how long this wait has lasted and why."""
        if not logger.isEnabledFor(logging.INFO):
            return
        who = "; ".join(h.describe() for h in blockers(self.lock, self.mode))
        waited = time.monotonic() - self.start
        thread = _thread_by_ident(self.thread)
        # Claimed before the last look at ``done``: a wait that ends from
        # here on logs its end at INFO, so no report is left without one.
        self.reported = True
        self.loud = True
        if self.done:
            return
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            "%s has waited %s for %s: %s",
            (
                _thread_name(thread, self.thread),
                format_seconds(waited),
                self._what(),
                who or "no holder could be identified",
            ),
            None,
            func="report_slow",
        )
        # On behalf of the waiting thread, which is blocked in the kernel.
        record.thread = self.thread
        record.threadName = thread.name if thread is not None else str(self.thread)
        logger.handle(record)


def _thread_by_ident(ident: int) -> threading.Thread | None:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread
    return None


def _thread_name(thread: threading.Thread | None, ident: int = 0) -> str:
    name = repr(thread.name) if thread is not None else f"{ident}"
    return f"thread {name} of pid {os.getpid()}"
