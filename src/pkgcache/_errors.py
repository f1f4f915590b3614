"""The exceptions pkgcache raises.

Every error derives from :class:`CacheError`. Where a caller would naturally
catch a builtin exception, the pkgcache error also subclasses it:
:class:`InvalidPackageName` is a :class:`ValueError` and :class:`LockTimeout`
is a :class:`TimeoutError`.

Every error pickles: a process pool sends a worker's exception back to the
caller by pickling it, and the default pickling of an exception calls the
class with ``args`` (its message alone), which failed with ``TypeError`` for
the classes whose constructor takes fields. Those classes name their fields
in ``_fields`` and are rebuilt from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from packaging.requirements import InvalidRequirement as _PackagingInvalidRequirement

if TYPE_CHECKING:
    from ._holders import Holder

__all__ = [
    "CacheError",
    "CachePermissionError",
    "EntryDamaged",
    "EntryNotFound",
    "InvalidArtifact",
    "InvalidKey",
    "InvalidLockServer",
    "InvalidPackageName",
    "InvalidRequirement",
    "LockLost",
    "LockOrderError",
    "LockServerError",
    "LockTimeout",
    "LockUpgradeError",
    "NotACacheError",
    "NotLockedError",
    "SourceNotFound",
    "SourcePermissionError",
    "StoreWriteError",
    "UnsafePathError",
]


def _rebuild(cls: type[CacheError], fields: dict[str, Any]) -> CacheError:
    return cls(**fields)


class CacheError(Exception):
    """Base class of every error pkgcache raises."""

    # The constructor's keyword arguments, for errors built from fields
    # rather than from a message (see the module docstring).
    _fields: ClassVar[tuple[str, ...]] = ()

    def __reduce__(self) -> str | tuple[Any, ...]:
        if not self._fields:
            return super().__reduce__()
        fields = {name: getattr(self, name) for name in self._fields}
        # The instance dict also carries what was added later (notes).
        return (_rebuild, (type(self), fields), self.__dict__)


class InvalidPackageName(CacheError, ValueError):
    """A string that is not a valid Python project name was used as one.

    Raised before anything touches the file system: a package name is never
    a path.
    """

    _fields = ("name", "reason")

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid package name {name!r}: {reason}")


class InvalidKey(CacheError, ValueError):
    """An entry key is not a safe relative path inside a package's folder."""

    _fields = ("key", "reason")

    def __init__(self, key: object, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid entry key {key!r}: {reason}")


class UnsafePathError(CacheError):
    """A path inside the cache is not what pkgcache created there.

    For example a lock file replaced by a symbolic link, a directory or a
    FIFO, or an entry that has become a symbolic link. pkgcache refuses to
    use it and leaves whatever it points to untouched.
    """

    _fields = ("path", "reason")

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"refusing to use {path}: {reason}")


class CachePermissionError(CacheError, PermissionError):
    """The cache (or part of it) cannot be written by this process.

    A read-only cache can still be read with :meth:`Cache.reading`; writes and
    exclusive locks raise this error.
    """


class LockTimeout(CacheError, TimeoutError):
    """A lock was not granted before the timeout expired.

    Nothing is held when this is raised: locks taken earlier by the same call
    are released again.

    Attributes:
        package: the canonical package name, or ``None`` for the whole-cache
            lock.
        mode: ``"shared"`` or ``"exclusive"``.
        waited: seconds spent waiting.
        holders: who held the lock when the wait gave up (see
            :meth:`Cache.holders`).
        root: the cache root.
    """

    _fields = ("root", "package", "mode", "waited", "holders")

    def __init__(
        self,
        *,
        root: str,
        package: str | None,
        mode: str,
        waited: float,
        holders: Sequence[Holder] = (),
    ) -> None:
        self.root = root
        self.package = package
        self.mode = mode
        self.waited = waited
        self.holders = tuple(holders)
        what = "the whole cache" if package is None else f"package {package!r}"
        who = "; ".join(h.describe() for h in self.holders)
        super().__init__(
            f"timed out after {waited:.3f} s waiting for the {mode} lock on {what}"
            f" in {root}: {who or 'no holder could be identified'}"
        )


class NotACacheError(CacheError, ValueError):
    """A folder that is not a pkgcache cache was given as one.

    :class:`Cache` refuses an existing folder that holds other files (a home
    folder, a project, a uv cache) rather than add ``.lock``, ``locks/`` and
    ``CACHEDIR.TAG`` to it: the tag makes backup tools skip the whole
    folder, and ``uv cache prune`` deletes a ``locks/`` folder it finds in
    its cache. Nothing is created when this is raised.

    Attributes:
        path: the folder.
        reason: what it holds instead, and what to do.
    """

    _fields = ("path", "reason")

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is not a pkgcache cache: {reason}")


class InvalidLockServer(CacheError, ValueError):
    """The ``locks=`` argument names no lock server pkgcache can use.

    Not a ``postgresql://`` URL, a URL libpq cannot parse, or the PostgreSQL
    driver is missing (install ``pkgcache[postgres]``). Raised before any
    connection is made.
    """


class LockServerError(CacheError, ConnectionError):
    """The lock server cannot be reached, or failed while serving a lock.

    For example the PostgreSQL server is down, refuses the connection, or
    stops answering. Raised by the call that needed the server; a call that
    was waiting for a lock holds nothing when this is raised.
    """


class LockLost(LockServerError):
    """A lock this process held on a lock server was lost.

    The session that held it died: the server was stopped or restarted, an
    administrator ended the session, or the network was cut for longer than
    the detection bound. The server may already have granted the lock to
    someone else, so the work done under it must not be published: the
    store refuses to write, and the ``with`` block raises this error at its
    end. An ERROR is logged the moment the loss is noticed.
    """


class LockUpgradeError(CacheError, RuntimeError):
    """A thread asked for an exclusive lock while it holds the shared one.

    flock cannot upgrade atomically: a failed upgrade silently drops the
    shared lock. pkgcache refuses the request at once instead; release the
    shared lock first, or ask for the exclusive lock from the start.
    """


class LockOrderError(CacheError, RuntimeError):
    """A nested acquisition would have waited against the global lock order.

    Locks are always taken in one order (the whole-cache lock, then packages
    sorted by canonical name). A thread that already holds a lock later in
    that order may still take an earlier one, but only if it is free at once:
    waiting could deadlock with a thread that acquires in order.
    """


class NotLockedError(CacheError, RuntimeError):
    """A handle was used for a package it does not hold, or after its block.

    A view or transaction is the proof that a lock is held: it only reaches
    the packages named when it was opened, and only while its ``with`` block
    is open.
    """


class InvalidArtifact(CacheError, ValueError):
    """A file or folder that cannot be stored as asked.

    For example a wheel whose file name does not parse, or names another
    package than the one it is stored under, or a source that is not a
    regular file. Nothing is stored when this is raised.
    """


class SourceNotFound(CacheError, FileNotFoundError):
    """The file given to :meth:`CacheTransaction.add` does not exist."""


class SourcePermissionError(CacheError, PermissionError):
    """The file given to :meth:`CacheTransaction.add` cannot be used as asked.

    It cannot be read by this process, or, with ``move=True``, its folder
    does not let this process remove it (a read-only mount, for example).
    Nothing is stored when this is raised, and the source is left as it was.
    """


class EntryNotFound(CacheError, LookupError):
    """No entry of that package has that key."""

    _fields = ("package", "key")

    def __init__(self, package: str, key: str) -> None:
        self.package = package
        self.key = key
        super().__init__(f"package {package!r} has no entry {key!r}")

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[EntryNotFound], tuple[str, str]]:
        # Process pools pickle errors: rebuild from the fields, not ``args``.
        return type(self), (self.package, self.key)


class EntryDamaged(EntryNotFound):
    """The entry is there but fails its check, so it is not handed out.

    A file whose size is not the size recorded when it was published, or a
    tree whose marker file is unreadable: what a power cut leaves of an
    entry published with ``durable=False``, or a file changed behind the
    store's back. Also an :class:`EntryNotFound`, so code that rebuilds a
    missing entry rebuilds a damaged one; :meth:`CacheTransaction.remove`,
    :meth:`Cache.clean` and :meth:`Cache.prune` remove it.

    Attributes:
        reason: what does not match.
    """

    def __init__(self, package: str, key: str, reason: str) -> None:
        super().__init__(package, key)
        self.reason = reason
        self.args = (f"entry {key!r} of package {package!r} is damaged: {reason}",)

    def __reduce__(self) -> tuple[type[EntryNotFound], tuple[str, str, str]]:  # type: ignore[override]
        return type(self), (self.package, self.key, self.reason)


class StoreWriteError(CacheError, OSError):
    """The file system refused a write while storing an entry.

    A full disk, a quota, an I/O error. ``errno`` is the system's error
    number. Nothing visible changed: the half-written copy stays in the
    staging folder, which is deleted at once (or reaped later).
    """


class InvalidRequirement(CacheError, _PackagingInvalidRequirement):
    """A string given to :meth:`CacheView.find` is not a PEP 508 requirement.

    Also a :class:`packaging.requirements.InvalidRequirement` (a
    :class:`ValueError`).
    """
