"""Reporting waits: DEBUG for every contended wait, INFO once past a second.

A person watching a stalled build needs one message that says which lock a
worker waits for, in which mode, and who holds it. A blocking flock cannot
wake up to say so, so a single watchdog thread (started on the first
contended wait) keeps a heap of the waits in progress and logs each wait
that passes :data:`SLOW_WAIT` seconds, once. Uncontended acquisitions never
reach this module.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from ._holders import holders_of

if TYPE_CHECKING:
    from ._processlock import ProcessLock

__all__ = ["SLOW_WAIT", "SlowWait", "logger"]

logger = logging.getLogger("pkgcache")

#: Seconds after which a wait is reported at INFO level (once per wait).
SLOW_WAIT = 1.0

_MODE_NAMES = {1: "shared", 2: "exclusive"}


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, SlowWait]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, wait: SlowWait) -> None:
        with self._cond:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="pkgcache-wait-watchdog", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:
                    # Python 3.12+ starts no thread at interpreter shutdown
                    # (an atexit handler waiting for a lock): the wait goes
                    # on, it just cannot be reported.
                    return
                self._thread = thread
            heapq.heappush(
                self._heap, (wait.start + SLOW_WAIT, next(self._counter), wait)
            )
            if self._heap[0][2] is wait:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = (
                        self._heap[0][0] - time.monotonic() if self._heap else None
                    )
                    self._cond.wait(timeout)
                _, _, wait = heapq.heappop(self._heap)
            if not wait.done:
                try:
                    wait.report_slow()
                except Exception:
                    # One report that fails (a /proc race, a broken handler)
                    # must not end every later report.
                    logger.debug("could not report a slow wait", exc_info=True)

    def after_fork_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]


_watchdog = _Watchdog()


class SlowWait:
    """Wraps one contended OS wait: logs it, and reports it if it lasts."""

    __slots__ = ("debug", "done", "gate", "lock", "mode", "start")

    def __init__(self, lock: ProcessLock, mode: int, *, gate: bool = False) -> None:
        self.lock = lock
        self.mode = mode
        self.gate = gate
        self.done = False
        self.debug = False
        self.start = 0.0

    def __enter__(self) -> SlowWait:
        self.start = time.monotonic()
        # Asked once: the exit runs on the hand-over path, where every step
        # of a thread just woken up counts.
        self.debug = logger.isEnabledFor(logging.DEBUG)
        if self.debug:
            logger.debug(
                "waiting for %s lock on %s%s",
                _MODE_NAMES[self.mode],
                self.lock.what,
                " (queued behind a waiting writer)" if self.gate else "",
            )
        _watchdog.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done = True
        if self.debug:
            logger.debug(
                "%s %s lock on %s after waiting %.6f s",
                "got" if exc_type is None else "gave up on",
                _MODE_NAMES[self.mode],
                self.lock.what,
                time.monotonic() - self.start,
            )

    def report_slow(self) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        holders = [
            h for h in holders_of([self.lock]) if h.pid != os.getpid() or h.threads
        ]
        who = (
            "; ".join(h.describe() for h in holders) or "no holder could be identified"
        )
        logger.info(
            "pid %d has waited %.1f s for a %s lock on %s (%s): %s",
            os.getpid(),
            time.monotonic() - self.start,
            _MODE_NAMES[self.mode],
            self.lock.what,
            self.lock.path,
            who,
        )
