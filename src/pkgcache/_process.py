"""Process-wide state of the lock core, and its one after-fork handler.

Everything of pkgcache that belongs to the whole process lives here, so that
``fork()`` has one place to look:

* the **fork generation**, a number the child increments: objects made by
  an earlier generation (lock spaces, open ``with`` blocks) belong to the
  parent, and the child never uses them;
* each thread's :class:`ThreadState`: what the thread holds, in order, and
  the identity locks record as their holder;
* the **descriptor registry**: every descriptor and memory map of a lock
  file, gate file or lock folder this process opened;
* the handlers other modules register with :func:`at_fork_in_child`.

Fork-tight descriptors
----------------------
A descriptor of a lock file inherited by a child keeps the parent's
``flock`` alive for as long as the child lives: flock locks belong to the
open file description, which the kernel frees only when its last
descriptor closes. A parent killed with ``kill -9`` would then keep its
locks while its child runs. Two rules prevent it:

1. Every such descriptor (and memory map, which holds a duplicate) is
   opened and closed under :data:`_guard`, and recorded or forgotten in the
   same guarded step. The interpreter lock is released inside ``os.open``,
   ``os.close`` and ``mmap``, so without the guard another thread could
   fork while a descriptor exists that the registry does not know.
2. A before-fork handler takes the guard, so no open or close is in flight
   at the fork; the child closes every recorded descriptor and map at once.
   Closing does not unlock: the parent's locks stay the parent's.

``O_CLOEXEC`` covers ``exec``. A ``fork()`` made without Python's at-fork
handlers (by a C extension calling ``fork(2)`` directly) is not covered.

Thread identity
---------------
Locks record holders by :class:`ThreadState` object, never by thread id:
a thread that ends while holding a lock (a misuse) keeps its state object
alive through the lock's record, so a new thread that reuses the dead
thread's id cannot re-enter the dead thread's hold.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "ThreadState",
    "at_fork_in_child",
    "close_descriptor",
    "close_map",
    "defer_close",
    "drain_deferred",
    "forget_descriptor",
    "generation",
    "open_descriptor",
    "open_map",
    "registered_descriptors",
    "thread_state",
]

_local = threading.local()

#: The fork generation: 0 in the process that imported pkgcache, +1 in each
#: forked child. Read it as ``_process.generation`` (it changes).
generation = 0

# Re-entrant: a signal handler that forks while its thread is inside a
# guarded step must not deadlock against itself.
_guard = threading.RLock()
_descriptors: set[int] = set()
_maps: set[mmap.mmap] = set()
#: Maps forgotten after user code closed their descriptors (see forget_map).
_abandoned: list[mmap.mmap] = []
# Descriptors and maps whose owners were garbage collected, with the
# generation that opened them, closed at the next guarded step (a finalizer
# may run inside a guarded step of its own thread, or in a forked child).
_deferred: list[tuple[int, tuple[int, ...], tuple[mmap.mmap, ...]]] = []
_child_handlers: list[Callable[[], None]] = []


class ThreadState:
    """One thread's view of the locks: its identity as a holder, and its holds.

    Attributes:
        held: what this thread's open ``with`` blocks took, one entry (the
            block's plan of locks) per block, in the order entered. It may
            lag behind the locks' own records after an interrupt; the
            locks' records are the truth (see :mod:`pkgcache._lockset`).
        thread: the thread (for its name in messages).
        entering: how many un-nested ``with`` blocks of this thread are
            taking their locks right now (their plan is not in ``held``
            yet). Normally 0 or 1; more when a signal handler or a
            finalizer makes a call in the middle of one. An interrupt may
            leave it too high, which only turns off the clean-up that needs
            it (see ``ProcessLock.acquire``).
    """

    __slots__ = ("__weakref__", "entering", "held", "thread")

    def __init__(self) -> None:
        self.held: list[Any] = []
        self.entering = 0
        self.thread = threading.current_thread()

    @property
    def name(self) -> str:
        """The thread's name."""
        return self.thread.name

    @property
    def ident(self) -> int | None:
        """The thread's id (``None`` once the thread has ended)."""
        return self.thread.ident

    def __repr__(self) -> str:
        return f"<ThreadState of {self.thread.name!r}>"


def thread_state() -> ThreadState:
    """The calling thread's :class:`ThreadState`, made on first use."""
    try:
        return _local.state  # type: ignore[no-any-return]
    except AttributeError:
        state = _local.state = ThreadState()
        return state


def open_descriptor(opener: Callable[[], int]) -> int:
    """Call ``opener`` (which opens one descriptor) and record the result."""
    with _guard:
        drain_deferred()
        fd = opener()
        _descriptors.add(fd)
        return fd


def close_descriptor(fd: int) -> None:
    """Close a recorded descriptor and forget it (an error closing is ignored)."""
    with _guard:
        # Not contextlib.suppress: no Python-level __exit__ on this path,
        # which runs while the registry's guard is held.
        try:  # noqa: SIM105
            os.close(fd)
        except OSError:
            pass
        _descriptors.discard(fd)


def forget_descriptor(fd: int) -> None:
    """Forget a descriptor without closing it: its number was taken over.

    User code closed it (``os.closerange``) and the number now names a file
    of the user's, which must not be closed or unlocked.
    """
    with _guard:
        _descriptors.discard(fd)


def forget_map(mapping: mmap.mmap) -> None:
    """Forget a map whose descriptor user code may have closed and reused.

    The map object is kept alive for good: unmapping it (or letting it be
    collected) would close its descriptor number, which may now be a file
    of the user's. A misuse costs one small leak, never the user's file.
    """
    with _guard:
        _maps.discard(mapping)
        _abandoned.append(mapping)


def open_map(fd: int, *, writable: bool) -> mmap.mmap:
    """Map byte 0 of ``fd`` (a gate file) and record the map.

    A map holds a duplicate of the descriptor, so it is as fork-sensitive.
    """
    with _guard:
        drain_deferred()
        mapping = mmap.mmap(
            fd, 1, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        )
        _maps.add(mapping)
        return mapping


def close_map(mapping: mmap.mmap) -> None:
    """Unmap and forget a recorded map."""
    with _guard:
        mapping.close()
        _maps.discard(mapping)


def defer_close(
    opened_in: int, descriptors: tuple[int, ...], maps: tuple[mmap.mmap, ...]
) -> None:
    """Close these at the next guarded step; for finalizers, which may run anywhere.

    Nothing is closed if ``opened_in`` is an earlier fork generation: the
    child has closed them already, and their numbers may belong to new
    descriptors by now.
    """
    _deferred.append((opened_in, descriptors, maps))


def drain_deferred() -> None:
    """Close what finalizers deferred (see :func:`defer_close`)."""
    with _guard:
        _close_deferred()


def _close_deferred() -> None:
    while _deferred:
        opened_in, descriptors, maps = _deferred.pop()
        if opened_in != generation:
            continue
        for mapping in maps:
            close_map(mapping)
        for fd in descriptors:
            close_descriptor(fd)


def registered_descriptors() -> frozenset[int]:
    """The descriptors the registry knows (for tests and diagnostics)."""
    with _guard:
        return frozenset(_descriptors)


def at_fork_in_child(handler: Callable[[], None]) -> None:
    """Run ``handler`` in every forked child, after the registry is cleared."""
    _child_handlers.append(handler)


def _before_fork() -> None:
    _guard.acquire()


def _after_fork_in_parent() -> None:
    _guard.release()


def _after_fork_in_child() -> None:
    global _guard, _local, generation  # noqa: PLW0603
    generation += 1
    for mapping in _maps:
        try:  # noqa: SIM105 (as in close_descriptor)
            mapping.close()
        except (OSError, ValueError):
            pass
    for fd in _descriptors:
        try:  # noqa: SIM105 (as in close_descriptor)
            os.close(fd)
        except OSError:
            pass
    _maps.clear()
    _descriptors.clear()
    _deferred.clear()
    _guard = threading.RLock()
    _local = threading.local()
    for handler in _child_handlers:
        handler()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
