"""The seam between the in-process lock layer and the lock engines.

Every pkgcache lock has two halves:

* the **in-process layer** (:mod:`pkgcache._processlock`): the threads of
  one process share the lock; it counts their holds, serializes them,
  gives waiting writers preference, raises on upgrades and order
  violations, and survives interrupts;
* the **engine**: holds the lock *for the whole process* in a lock service
  every other process can see. :mod:`pkgcache._flock` does it with
  ``flock(2)`` on lock files; other engines (a database) follow the same
  contract, :class:`LockEngine`.

The layer calls an engine's ``try_acquire``/``acquire`` when the first
thread of the process takes the lock, and ``release`` after the last one
let go, so the engine sees one holder (the process) and at most one grant
at a time.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._holders import Holder

__all__ = ["Expired", "LockEngine", "LockService", "Mode"]


class Mode(str, enum.Enum):
    """A lock mode. Also a ``str``: ``Mode.SHARED == "shared"``."""

    #: Many holders at once; excludes :attr:`EXCLUSIVE`.
    SHARED = "shared"
    #: One holder; excludes every other holder.
    EXCLUSIVE = "exclusive"

    def __str__(self) -> str:
        return self.value


class Expired(Exception):
    """The deadline passed (or a try found the lock busy): nothing is held."""


class LockEngine(Protocol):
    """One lock (the whole-cache lock or a package's), held for this process.

    The in-process layer guarantees, per engine object: calls never run
    concurrently; ``try_acquire``/``acquire`` only while this process holds
    nothing through the engine; ``release`` after a grant, and also to
    recover after *any* call that raised. A ``KeyboardInterrupt`` can land
    anywhere, even between a system call and the bookkeeping after it, so
    ``release`` must be idempotent and bring the engine back to "not held by
    this process" from any state its methods can be interrupted in.
    Different engine objects are called concurrently from different
    threads: a thread blocked in ``acquire`` of one lock must not delay
    calls on another.
    """

    #: Canonical package name, or ``None`` for the whole-cache lock.
    package: str | None

    @property
    def description(self) -> str:
        """Where the lock lives, for messages (the lock file's path)."""
        ...

    def try_acquire(self, exclusive: bool) -> bool:
        """Take the lock if that needs no waiting; never wait for a holder.

        Returns ``False`` when it is held in a conflicting mode, and also
        when a writer of another process waits for it (fairness: new
        requests queue behind a waiting writer).
        """
        ...

    def acquire(self, exclusive: bool, deadline: float | None) -> None:
        """Wait until granted, fairly; raise :class:`Expired` at ``deadline``.

        ``deadline`` is a :func:`time.monotonic` value; ``None`` waits for
        ever. A waiting writer is not overtaken by readers that ask later.
        """
        ...

    def release(self) -> bool:
        """Drop this process's hold; a no-op when nothing is held.

        Returns whether a writer of another process waits for the lock (the
        caller then yields the processor, so that writer runs at once).
        """
        ...

    def writer_waits(self) -> bool:
        """Whether a writer of another process announced that it waits.

        A cheap hint (no system call): threads of this process then stop
        joining its shared hold. May be stale (a writer that died while
        waiting): :meth:`writer_really_waits` checks.
        """
        ...

    def writer_really_waits(self) -> bool:
        """Like :meth:`writer_waits`, but check, and forget a stale announcement."""
        ...

    def check(self) -> None:
        """Raise :class:`~pkgcache.CacheError` if this process's hold was lost.

        flock locks cannot be lost while their descriptor is open; other
        engines (a database session that died) raise ``LockLost``.
        """
        ...

    def holders(self) -> list[Holder]:
        """Who holds or waits for this lock, in every process that can be seen."""
        ...

    def close(self) -> None:
        """Free what the engine keeps open; only called when nothing is held."""
        ...

    @property
    def is_open(self) -> bool:
        """Whether the engine keeps anything open (descriptors, a session)."""
        ...


class LockService(Protocol):
    """Makes the engines of one cache's locks."""

    #: Whether holds can be lost while held (then checked at block exit).
    can_lose_locks: bool

    def engine(self, package: str | None) -> LockEngine:
        """The engine of a package's lock (``None``: the whole-cache lock)."""
        ...

    def close(self) -> None:
        """Free everything; the engines must all be idle."""
        ...
