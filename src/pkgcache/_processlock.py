"""One lock file, shared by the threads of one process.

A :class:`ProcessLock` is the in-process half of every pkgcache lock: a
reader/writer lock over one OS lock file (``<name>.lock``), kept open once per
process, plus a gate file (``<name>.gate``) that makes waiting fair. It
serializes the threads of the process, counts their holds, takes the OS lock
for the first holder and releases it after the last.

Acquiring, for a thread that does not already hold the lock:

1. Take the in-process **gate mutex**. Only its holder runs the steps below,
   so the OS state of the lock changes under one thread at a time (flock
   cannot tell two threads sharing a descriptor apart).
2. **At once, or not at all.** A reader joins the process's shared OS lock
   if another thread holds it (no system call; this step needs only the
   condition's lock, not the gate mutex, and is skipped while a writer of
   this process or another waits). Otherwise, when no thread of
   the process holds the lock and byte 0 of the gate file (the **intent
   byte**, read through a shared memory map) says no writer waits, try the
   lock file without blocking: one ``flock`` system call, one more to
   release. That is the whole uncontended path.
3. **Waiting** (reported by :class:`~pkgcache._waits.SlowWait`). First wait
   on a ``threading.Condition`` until the other threads of the process are
   out of the way (a writer waits for every holder; a reader for the
   writer). Then queue at the **gate file**: take it exclusively with a
   blocking flock, so waiters pass it one at a time. A writer sets the
   intent byte while it waits for the lock file and clears it once granted;
   readers that arrive meanwhile see the byte and queue at the gate instead
   of overtaking the writer (flock alone lets new readers overtake a queued
   writer forever). The gate is released as soon as the lock file is
   granted.

Releasing: the last holder of the process unlocks the lock file. If the
intent byte then says a writer of another process waits, the thread yields
the processor (``sched_yield``): the kernel has just woken that writer, on a
machine with few cores often on this same processor, where it would run only
once the releasing thread blocks. Across processes this cut the median
hand-over from about 100 µs to about 60 µs on two cores.

Why it is safe: exclusion comes only from the flock on the lock file; the
gate and the intent byte only order waiters. A writer killed while waiting
leaves the byte set, which costs readers the slow path until the next gate
holder clears it (a gate holder knows no other writer waits: waiting
writers hold the gate).

A reader whose process already holds the lock shared, and who sees the byte
set, waits for that hold to end rather than extend it. Nothing in this
process would tell it that the writer gave up or died, so that wait re-reads
the byte every ``_INTENT_RECHECK`` seconds and tries the gate without
blocking; once the byte is clear, or the gate is free (the byte is stale and
is cleared), the reader joins the hold.

A thread that already holds the lock re-enters without waiting: shared in
shared, shared or exclusive in exclusive. Exclusive while holding shared is
refused with :class:`LockUpgradeError`: a failed in-place flock upgrade
silently loses the shared lock.

A try-lock (a deadline already past) never waits for the lock and never
queues at the gate. It does wait for the gate mutex while its holder is only
passing through (microseconds), and fails at once when the holder is blocked
in a wait: then the lock is busy or a writer waits. Waits with a deadline
poll the lock with a short, growing interval (flock has no timed wait);
waits without one block in the kernel.

Descriptors stay open after release, in a table bounded to
``MAX_IDLE_LOCKS`` idle locks (least recently used are closed first); held
locks are always open. After ``fork()`` the child forgets every lock of its
parent: it closes its copies of the descriptors (which does not release the
parent's flock, still open in the parent) and never calls ``LOCK_UN`` on
them, which would release the parent's lock.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import threading
import time
from collections.abc import Callable

from . import _oslock
from ._errors import CacheError, CachePermissionError, LockUpgradeError
from ._waits import SlowWait

__all__ = [
    "EXCLUSIVE",
    "MODE_NAMES",
    "NONE",
    "SHARED",
    "Expired",
    "LockDir",
    "LockTable",
    "ProcessLock",
]

NONE, SHARED, EXCLUSIVE = 0, 1, 2
MODE_NAMES = {SHARED: "shared", EXCLUSIVE: "exclusive"}


def _idle_lock_bound() -> int:
    """Idle locks to keep open: 256, or fewer under a low descriptor limit.

    Each open lock uses three descriptors (lock file, gate file, and the
    mapping of the gate's intent byte); keep idle ones to a quarter of the
    soft limit so the application keeps most of its descriptors.
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(8, min(256, soft // 12))


#: Idle locks kept open per process (each holds three descriptors).
MAX_IDLE_LOCKS = _idle_lock_bound()

# Polling schedule for waits with a deadline: start short so a quick
# hand-over is seen quickly, cap so a long wait costs ~1000 cheap calls/s.
_FIRST_POLL = 0.00005
_MAX_POLL = 0.001

# How often a reader that waits behind another process's writer, while its
# own process holds the lock shared, re-reads the intent byte (the writer
# may give up or die; nothing in this process would say so).
_INTENT_RECHECK = 0.02

# Yielding the processor after a release that a writer of another process
# waits for (see ``ProcessLock.release``); POSIX only.
_sched_yield: Callable[[], None] | None = getattr(os, "sched_yield", None)

_tick = itertools.count().__next__


class Expired(Exception):
    """The deadline passed before the lock was granted."""


class _OutOfDescriptors(CacheError):
    """The process ran out of file descriptors while opening a lock."""


def _too_many_open_files(path: str) -> CacheError:
    return _OutOfDescriptors(
        f"cannot open lock file {path}: too many open files (pkgcache closes "
        "its idle locks first; each lock held keeps three descriptors open)"
    )


class LockDir:
    """A folder of lock files, reached through a descriptor held open.

    Opening lock files relative to this descriptor means a folder swapped for
    a symbolic link after start-up cannot redirect them elsewhere.
    """

    def __init__(self, path: str, fd: int | None) -> None:
        self.path = path
        self.fd = fd
        #: Whether calls that cannot block may keep the interpreter lock
        #: (see :mod:`pkgcache._oslock`): a local file system.
        self.quick = (
            fd is not None
            and _oslock.HAVE_QUICK_FLOCK
            and _oslock.is_local_file_system(fd)
        )

    def display(self, name: str) -> str:
        """The path of ``name`` in this folder, for messages."""
        return f"{self.path}/{name}"


class _File:
    """One lock file and this process's descriptor for it (or none yet)."""

    __slots__ = ("directory", "fd", "name", "writable")

    def __init__(self, directory: LockDir, name: str) -> None:
        self.directory = directory
        self.name = name
        self.fd: int | None = None
        self.writable = True

    @property
    def path(self) -> str:
        return self.directory.display(self.name)

    def open(self) -> int:
        if self.fd is None:
            try:
                # Without a folder descriptor (no dir_fd on this platform),
                # the bare name would be opened in the working directory.
                dir_fd = self.directory.fd
                self.fd, self.writable = _oslock.open_lock_file(
                    self.name if dir_fd is not None else self.path,
                    dir_fd=dir_fd,
                    display=self.path,
                )
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise _too_many_open_files(self.path) from exc
                raise
        return self.fd

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            _oslock.close(fd)


class ProcessLock:
    """The reader/writer lock of one lock file, for all threads of a process.

    ``key`` orders locks globally (see :mod:`pkgcache._cache`); ``package`` is
    the canonical name or ``None`` for the whole-cache lock. ``cache_root``
    names the cache in messages, and ``root_lock`` is the whole-cache lock of
    the same cache (``self`` for the whole-cache lock), so a report on a
    package wait can name whole-cache holders too.
    """

    def __init__(
        self,
        table: LockTable,
        key: tuple[str, int, str],
        package: str | None,
        lock_file: _File,
        gate_file: _File,
        *,
        cache_root: str = "",
        root_lock: ProcessLock | None = None,
    ) -> None:
        self.table = table
        self.key = key
        self.package = package
        self.cache_root = cache_root
        self.root_lock = self if root_lock is None else root_lock
        self._lock_file = lock_file
        self._gate_file = gate_file
        self._quick = lock_file.directory.quick
        self._intent: mmap.mmap | None = None
        self._reset()

    def _reset(self) -> None:
        # Hot paths enter ``_cond_lock`` directly: the same lock the
        # condition uses, without ``Condition.__enter__``'s Python frame.
        self._cond_lock = threading.Lock()
        self._cond = threading.Condition(self._cond_lock)
        self._gate_mutex = threading.Lock()
        self._readers: dict[int, int] = {}
        self._writer: int | None = None
        self._writers_waiting = 0  # writers of this process in the slow path
        self._depth = 0
        self._os_mode = NONE
        self._admitting = False
        self._queued = False  # the gate-mutex holder is blocked in a wait
        self.last_used = 0

    @property
    def path(self) -> str:
        """The lock file's path."""
        return self._lock_file.path

    @property
    def gate_path(self) -> str:
        """The gate file's path."""
        return self._gate_file.path

    @property
    def what(self) -> str:
        """``package 'name'`` or ``the whole cache``, for messages."""
        return (
            "the whole cache" if self.package is None else f"package {self.package!r}"
        )

    # -- introspection -------------------------------------------------------

    def depth(self, thread: int) -> int:
        """How many times ``thread`` holds this lock (0 when it does not)."""
        if self._writer == thread:
            return self._depth
        return self._readers.get(thread, 0)

    def mode_of(self, thread: int) -> int:
        """``EXCLUSIVE``, ``SHARED`` or ``NONE``: what ``thread`` holds."""
        if self._writer == thread:
            return EXCLUSIVE
        return SHARED if thread in self._readers else NONE

    def holding_threads(self) -> list[tuple[int, str]]:
        """``(thread ident, mode name)`` of each thread of this process holding it."""
        with self._cond_lock:
            if self._writer is not None:
                return [(self._writer, "exclusive")]
            return [(thread, "shared") for thread in self._readers]

    @property
    def os_mode(self) -> int:
        """What this process holds at the OS level."""
        return self._os_mode

    # -- acquire ---------------------------------------------------------------

    def acquire(self, exclusive: bool, deadline: float | None, thread: int) -> None:
        """Acquire for ``thread``; raise :class:`Expired` at ``deadline``.

        A ``deadline`` already in the past makes this a try-lock.
        """
        # Re-entry needs no mutex: only ``thread`` itself adds or removes its
        # own hold, and while it holds, nobody releases the OS lock.
        if self._writer == thread:
            self._depth += 1
            return
        count = self._readers.get(thread)
        if count is not None:
            if exclusive:
                raise LockUpgradeError(
                    f"this thread holds a shared lock on {self.what} and asked "
                    "for an exclusive one: release the shared lock first (a "
                    "failed flock upgrade silently loses the shared lock)"
                )
            self._readers[thread] = count + 1
            return
        if not exclusive and self._os_mode == SHARED:
            # Join this process's shared OS lock: no system call, and only the
            # condition's lock (which the last reader's release also holds),
            # not the gate mutex. Taking the gate mutex here made threads that
            # merely join queue behind a thread doing a system call under it:
            # sixteen threads on distinct packages, all joining the root lock,
            # fell into a convoy at two thirds of raw flock's throughput. A
            # writer waiting in this process (``_writers_waiting``) or in
            # another (the intent byte) is not overtaken: the reader then
            # takes the slow path and queues.
            with self._cond_lock:
                if self._os_mode == SHARED and not self._writers_waiting:
                    intent = self._intent  # ``_no_writer_waits``, written out
                    if (
                        not intent[0]
                        if intent is not None
                        else self._gate_file.fd is None
                    ):
                        self._readers[thread] = 1
                        return
        mutex = self._gate_mutex
        if mutex.acquire(False):
            try:
                if self._acquire_at_once(exclusive, thread):
                    return
            finally:
                mutex.release()
            if deadline is not None and deadline <= time.monotonic():
                raise Expired  # a try-lock never waits
        elif deadline is not None and deadline <= time.monotonic():
            if self._mutex_unless_queued():
                try:
                    if self._acquire_at_once(exclusive, thread):
                        return
                finally:
                    mutex.release()
            raise Expired  # a try-lock never waits
        self._acquire_slowly(exclusive, deadline, thread)

    def _acquire_slowly(
        self, exclusive: bool, deadline: float | None, thread: int
    ) -> None:
        """Wait for the lock: the other threads first, then the gate, then the file."""
        mutex = self._gate_mutex
        if exclusive:
            # Readers of this process stop joining the shared hold (see
            # ``acquire``) until this writer is served or gives up.
            with self._cond_lock:
                self._writers_waiting += 1
        try:
            with SlowWait(self, EXCLUSIVE if exclusive else SHARED):
                if deadline is None:
                    mutex.acquire()
                elif not mutex.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                    raise Expired
                try:
                    self._acquire_waiting(exclusive, deadline, thread)
                finally:
                    self._queued = False
                    mutex.release()
        finally:
            if exclusive:
                with self._cond_lock:
                    self._writers_waiting -= 1

    def _mutex_unless_queued(self) -> bool:
        """For a try-lock: take the gate mutex unless its holder is blocked.

        A thread holds the mutex for microseconds when the lock can be had
        without waiting, and for a whole wait when it cannot. Failing a
        try-lock in the first case failed ``timeout=0`` calls (and raised
        :class:`LockOrderError` for free locks) whenever another thread was
        merely passing by; in the second case the lock is busy (or a writer
        waits), so failing is right.
        """
        while not self._queued:
            if self._gate_mutex.acquire(timeout=_FIRST_POLL * 10):
                return True
        return False

    # The methods below run with the gate mutex held: this thread alone may
    # move the OS state of the lock away from NONE.

    def _lock_fd(self, exclusive: bool) -> int:
        lock_fd = self._lock_file.fd
        if lock_fd is None:
            lock_fd = self._open()
        if exclusive and not self._lock_file.writable:
            raise CachePermissionError(
                f"cannot take an exclusive lock on {self.what}: "
                f"{self._lock_file.path} is read-only for this process"
            )
        self.last_used = _tick()
        return lock_fd

    def _no_writer_waits(self) -> bool:
        """Whether the intent byte says no writer of another process waits.

        Without a readable byte but with a gate, every request queues at the
        gate; without a gate at all (a read-only cache), there is nothing to
        queue at.
        """
        intent = self._intent
        if intent is not None:
            return not intent[0]
        return self._gate_file.fd is None

    def _acquire_at_once(self, exclusive: bool, thread: int) -> bool:
        """Take the lock if that needs no waiting; say whether it did."""
        lock_file = self._lock_file
        lock_fd = lock_file.fd
        if lock_fd is None or (exclusive and not lock_file.writable):
            lock_fd = self._lock_fd(exclusive)
        else:
            self.last_used = _tick()
        if self._os_mode != NONE:
            if exclusive:
                return False
            with self._cond_lock:
                if self._os_mode == SHARED:
                    if not self._no_writer_waits():
                        return False
                    self._readers[thread] = 1  # join this process's shared hold
                    return True
                if self._os_mode != NONE:
                    return False
            # The last holder let go meanwhile: the lock is free to try (it
            # stays NONE, only the gate-mutex holder moves it away).
        intent = self._intent  # ``_no_writer_waits``, inlined
        if intent is not None:
            if intent[0]:
                return False
        elif self._gate_file.fd is not None:
            return False
        operation = _oslock.TRY_LOCK[exclusive]
        try:
            if self._quick and _oslock.other_threads():
                # Keep the interpreter lock through a call that cannot block
                # (see pkgcache._oslock): no hand-over to another thread.
                if _oslock.quick_flock(
                    lock_fd, operation
                ) and not _oslock.quick_flock_failed(lock_fd, operation):
                    return False
            else:
                _oslock.flock(lock_fd, operation)
            self._record(exclusive, thread)
        except BlockingIOError:
            return False
        except BaseException:
            # A KeyboardInterrupt can land between the flock and the
            # bookkeeping; unrecorded, the OS lock would be held by nobody.
            if self._os_mode == NONE:
                _oslock.unlock(lock_fd)
            raise
        return True

    def _acquire_waiting(
        self, exclusive: bool, deadline: float | None, thread: int
    ) -> None:
        lock_fd = self._lock_fd(exclusive)
        if self._os_mode != NONE and self._admit(exclusive, deadline, thread):
            return
        if self._acquire_at_once(exclusive, thread):
            return
        self._queue_at_gate(lock_fd, exclusive, deadline, thread)

    def _admit(self, exclusive: bool, deadline: float | None, thread: int) -> bool:
        """Wait until the other threads of this process are out of the way.

        Returns ``True`` when a reader joined the process's shared OS lock
        (nothing more to do), ``False`` when the OS lock is free to take.
        """
        with self._cond_lock:
            self._admitting = True
            try:
                if exclusive:
                    ready = self._wait_locked(
                        lambda: self._writer is None and not self._readers, deadline
                    )
                else:
                    ready = self._wait_locked(lambda: self._writer is None, deadline)
                    if ready and self._os_mode == SHARED:
                        # A writer of another process may wait: queue behind
                        # it rather than extend this process's shared hold.
                        ready = self._wait_for_writer_of_other_process(deadline)
                        if ready and self._os_mode == SHARED:
                            self._readers[thread] = 1
                            return True
            finally:
                self._admitting = False
            if not ready:
                raise Expired
            return False

    def _wait_for_writer_of_other_process(self, deadline: float | None) -> bool:
        """Wait while this process holds shared and another process's writer waits.

        Returns ``False`` at the deadline. Otherwise returns once the shared
        hold has ended (the caller then queues at the gate) or once no writer
        waits any more, so a reader joins the hold. Nothing in this process
        signals the second case (a writer that gave up or died in another
        process), so the intent byte is re-read every ``_INTENT_RECHECK``
        seconds; without it a reader stalled until every reader thread of
        its process let go, long after the writer had left.
        """
        while self._os_mode == SHARED:
            if self._no_writer_waits() or self._gate_is_free():
                return True
            interval = _INTENT_RECHECK
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                interval = min(interval, remaining)
            self._queued = True
            self._cond.wait(interval)
        return True

    def _gate_is_free(self) -> bool:
        """Whether no writer of any process queues at the gate right now.

        Waiting writers hold the gate, so a gate taken at once proves the
        intent byte stale (a writer killed while waiting): clear it.
        """
        gate_fd = self._gate_file.fd
        if gate_fd is None or not _oslock.try_lock(gate_fd, True):
            return False
        try:
            if self._intent is not None and self._gate_file.writable:
                self._intent[0] = 0
        finally:
            _oslock.unlock(gate_fd)
        return True

    def _wait_locked(
        self, admitted: Callable[[], bool], deadline: float | None
    ) -> bool:
        if admitted():
            return True
        self._queued = True
        if deadline is None:
            return self._cond.wait_for(admitted)
        return self._cond.wait_for(admitted, max(deadline - time.monotonic(), 0.0))

    def _queue_at_gate(
        self, lock_fd: int, exclusive: bool, deadline: float | None, thread: int
    ) -> None:
        gate_fd = self._gate_file.fd
        if gate_fd is None:
            self._take_lock_file(lock_fd, exclusive, deadline, thread)
            return
        intent = self._intent if self._gate_file.writable else None
        try:
            self._wait_os(gate_fd, True, deadline)
            if intent is not None:
                # Waiting writers hold the gate, and we do: none waits but us,
                # so a byte left set by a dead writer is cleared here.
                intent[0] = 1 if exclusive else 0
            try:
                self._take_lock_file(lock_fd, exclusive, deadline, thread)
            finally:
                if exclusive and intent is not None:
                    intent[0] = 0
        finally:
            # Only the gate-mutex holder uses this descriptor: unlocking is
            # safe even if an interrupt came before the gate was granted.
            _oslock.flock(gate_fd, _oslock.UNLOCK)

    def _take_lock_file(
        self, lock_fd: int, exclusive: bool, deadline: float | None, thread: int
    ) -> None:
        try:
            self._wait_os(lock_fd, exclusive, deadline)
            self._record(exclusive, thread)
        except BaseException:
            # An interrupt may land after flock succeeded but before the
            # bookkeeping: nobody else holds it here, so unlocking is safe.
            if self._os_mode == NONE:
                _oslock.unlock(lock_fd)
            raise

    def _wait_os(self, fd: int, exclusive: bool, deadline: float | None) -> None:
        if _oslock.try_lock(fd, exclusive):
            return
        self._queued = True
        if deadline is None:
            _oslock.flock(fd, _oslock.LOCK[exclusive])
            return
        interval = _FIRST_POLL
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Expired
            time.sleep(min(interval, remaining))
            if _oslock.try_lock(fd, exclusive):
                return
            interval = min(interval * 2, _MAX_POLL)

    def _record(self, exclusive: bool, thread: int) -> None:
        if exclusive:
            # Plain assignments: other threads only read them, and none may
            # move the OS state but the gate-mutex holder (this thread).
            self._writer = thread
            self._depth = 1
            self._os_mode = EXCLUSIVE
            return
        # Other threads iterate ``_readers`` (holders(), the slow-wait
        # watchdog, a timeout message): growing it under them raises
        # "dictionary changed size during iteration".
        with self._cond_lock:
            self._readers[thread] = 1
            self._os_mode = SHARED

    # -- release -----------------------------------------------------------------

    def release(self, thread: int) -> None:
        """Release one hold of ``thread``; drop the OS lock after the last."""
        if self._writer == thread:
            if self._depth > 1:
                self._depth -= 1
                return
        else:
            count = self._readers[thread]
            if count > 1:
                self._readers[thread] = count - 1
                return
        with self._cond_lock:
            if self._writer == thread:
                self._depth = 0
                self._writer = None
            else:
                del self._readers[thread]
                if self._readers:
                    return
            # The last holder of the process unlocks under the condition's
            # lock: a reader joining meanwhile would hold a lock the kernel
            # has dropped. Unlock before saying NONE: a thread that sees NONE
            # may take the OS lock through the same descriptor at once.
            fd = self._lock_file.fd
            try:
                if fd is None:
                    pass
                elif self._quick and _oslock.other_threads():
                    # As in ``_acquire_at_once``: an unlock cannot block.
                    if _oslock.quick_flock(fd, _oslock.UNLOCK):
                        _oslock.quick_flock_failed(fd, _oslock.UNLOCK)
                else:
                    _oslock.flock(fd, _oslock.UNLOCK)
            except BaseException:
                # A KeyboardInterrupt may land before the flock call; a mode
                # left SHARED let later readers "join" a hold the kernel had
                # already dropped, and a lock left held is held by nobody.
                # Unlocking twice is harmless.
                if fd is not None:
                    _oslock.flock(fd, _oslock.UNLOCK)
                raise
            finally:
                # Notify before NONE (the waiter runs only once we let go of
                # the condition): an interrupt after NONE must not leave an
                # admitting waiter asleep.
                if self._admitting:
                    self._cond.notify()
                self._os_mode = NONE
            intent = self._intent
            hand_over = intent is not None and intent[0]
        if hand_over and _sched_yield is not None:
            # A writer of another process waits (the intent byte), and the
            # kernel has just woken it, often on this very processor, where
            # it would run only once this thread blocks: let it run now.
            _sched_yield()

    # -- descriptors and fork ------------------------------------------------------

    def _open(self) -> int:
        try:
            return self._open_files()
        except _OutOfDescriptors:
            # Fewer descriptors than the idle bound assumed (the limit was
            # lowered after import, or the application uses many): close
            # the idle locks, keep fewer from now on, and try once more.
            if not self.table.shed_idle(self):
                raise
        return self._open_files()

    def _open_files(self) -> int:
        lock_fd = self._lock_file.open()
        try:
            gate_fd = self._gate_file.open()
        except CachePermissionError:
            # A read-only cache without the gate file: waits are not queued
            # at a gate (fairness only; exclusion comes from the lock file).
            gate_fd = None
        except BaseException:
            self._close_files()
            raise
        if gate_fd is not None:
            try:
                self._intent = _oslock.map_intent_byte(
                    gate_fd, self._gate_file.writable, self._gate_file.path
                )
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._close_files()
                    raise _too_many_open_files(self._gate_file.path) from exc
                # A file system without shared mappings: every acquisition
                # queues at the gate instead of reading the intent byte.
                self._intent = None
            except BaseException:
                self._close_files()
                raise
        self.table.opened(self)
        return lock_fd

    def _close_files(self) -> None:
        if self._intent is not None:
            self._intent.close()
            self._intent = None
        self._lock_file.close()
        self._gate_file.close()

    def close_if_idle(self) -> bool:
        """Close the descriptors if nobody uses the lock; say whether it did."""
        if not self._gate_mutex.acquire(blocking=False):
            return False
        try:
            with self._cond_lock:
                if self._os_mode != NONE or self._readers or self._writer is not None:
                    return False
                self._close_files()
                return True
        finally:
            self._gate_mutex.release()

    def forget_after_fork(self) -> None:
        """In a forked child: drop every hold and descriptor without unlocking."""
        self._close_files()
        self._reset()


class LockTable:
    """Every :class:`ProcessLock` of this process, and the bound on open ones."""

    def __init__(self, max_idle: int = MAX_IDLE_LOCKS) -> None:
        self.max_idle = max_idle
        self._mutex = threading.Lock()
        self._open: set[ProcessLock] = set()
        self._all: list[ProcessLock] = []

    def register(self, lock: ProcessLock) -> None:
        with self._mutex:
            self._all.append(lock)

    def opened(self, lock: ProcessLock) -> None:
        """Count a newly opened lock; close least recently used idle ones."""
        with self._mutex:
            self._open.add(lock)
            excess = len(self._open) - self.max_idle
            if excess <= 0:
                return
            candidates = sorted(
                (other for other in self._open if other is not lock),
                key=lambda other: other.last_used,
            )
        for other in candidates:
            if excess <= 0:
                break
            if other.close_if_idle():
                excess -= 1
                with self._mutex:
                    self._open.discard(other)

    def shed_idle(self, keep: ProcessLock) -> int:
        """Close every idle lock but ``keep``; lower the bound; return how many.

        Called when opening a lock ran out of descriptors: the new bound is
        half of what was open, so the process stops running into its limit.
        """
        with self._mutex:
            candidates = [other for other in self._open if other is not keep]
            self.max_idle = max(8, min(self.max_idle, len(candidates) // 2))
        closed = 0
        for other in candidates:
            if other.close_if_idle():
                closed += 1
                with self._mutex:
                    self._open.discard(other)
        return closed

    def open_count(self) -> int:
        """Locks with open descriptors."""
        return len(self._open)

    def after_fork_in_child(self) -> None:
        self._mutex = threading.Lock()
        for lock in self._all:
            lock.forget_after_fork()
        self._open.clear()
