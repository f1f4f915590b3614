"""The system calls under every lock, and nothing else.

pkgcache uses one lock family everywhere: ``flock(2)`` on POSIX (the family uv,
portalocker and filelock use, so their locks and ours see each other), and
``LockFileEx`` through portalocker on Windows. POSIX record locks
(``fcntl``/``lockf``) are never used: they do not exclude the threads of one
process and closing *any* descriptor of the file drops them.

Lock files are opened so that a planted file cannot be abused:

* ``O_NOFOLLOW``: a symbolic link at the lock path is refused, never followed
  (filelock CVE-2025-68146 truncated the link's target);
* never ``O_TRUNC``, with an explicit mode of ``0o644``: opening a lock file
  never changes its content;
* ``O_NONBLOCK`` on open: a FIFO planted at the path cannot block the open,
  and is refused after ``fstat`` like any other non-regular file;
* ``O_CLOEXEC``: a program started with ``exec`` inherits no lock;
* relative to a directory descriptor opened with ``O_NOFOLLOW``, so a folder
  swapped for a link cannot redirect lock files outside the cache.

Descriptors are opened read-write (NFS emulates flock with POSIX locks, which
need write access for an exclusive lock). On a read-only cache they fall back
to read-only, and such a descriptor only ever takes shared locks.

Two ways to make the call
-------------------------
:func:`flock` is ``fcntl.flock``: it releases the interpreter lock around the
system call, as every blocking wait must. A call that cannot block (a try
with ``LOCK_NB``, or an unlock) on a local file system returns in about a
microsecond, and releasing the interpreter lock around it only invites a
hand-over to another thread, after which the caller queues for the lock
again. Sixteen threads each locking its own package lost a fifth of raw
flock's throughput to those hand-overs. :data:`quick_flock` is the same
system call through ``ctypes.PyDLL``, which keeps the interpreter lock; it is
used only for calls that cannot block, only when other threads exist
(:data:`other_threads`), and only on the local file systems of
:func:`is_local_file_system`: on NFS the call is a network round trip, and
holding the interpreter lock through it would stall every thread.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import mmap
import os
import stat
import sys
from collections.abc import Callable

from . import _process
from ._errors import CacheError, CachePermissionError, UnsafePathError

__all__ = [
    "HAVE_DIR_FD",
    "HAVE_QUICK_FLOCK",
    "LOCK",
    "TRY_LOCK",
    "UNLOCK",
    "FolderGone",
    "LockFileMissing",
    "check_directory",
    "close",
    "flock",
    "granted_after_all",
    "is_local_file_system",
    "map_intent_byte",
    "open_directory",
    "open_lock_file",
    "other_threads",
    "quick_flock",
    "try_lock",
    "unlock",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: Whether files can be opened relative to a folder descriptor (not on Windows).
HAVE_DIR_FD = os.open in os.supports_dir_fd

_READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class FolderGone(CacheError):
    """The folder of a lock file no longer exists (it was deleted under us)."""


class LockFileMissing(CachePermissionError):
    """A lock file does not exist and this process cannot create it."""


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "it is a directory, not a lock file"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO, not a lock file"
    if stat.S_ISLNK(mode):
        return "it is a symbolic link"
    return "it is not a regular file"


def _unsafe_from_errno(exc: OSError, display: str) -> CacheError | None:
    if exc.errno == errno.ELOOP:
        return UnsafePathError(display, "it is a symbolic link")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return UnsafePathError(display, "it is a directory, not a lock file")
    if exc.errno == errno.ENXIO:
        return UnsafePathError(display, "it is a FIFO or device, not a lock file")
    return None


def open_directory(name: str, *, dir_fd: int | None, display: str) -> int:
    """Open a folder for use as ``dir_fd``; refuse a link in place of ``name``.

    With ``dir_fd=None`` ``name`` is the cache root chosen by the caller, and
    links in it are followed like in any path the user gives us. Only where
    :data:`HAVE_DIR_FD`; elsewhere see :func:`check_directory`.
    """
    flags = os.O_RDONLY | _DIRECTORY | _CLOEXEC
    if dir_fd is not None:
        flags |= _NOFOLLOW
    try:
        if dir_fd is None:
            return os.open(name, flags)
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(display, "it is a symbolic link") from exc
        if exc.errno == errno.ENOTDIR:
            raise UnsafePathError(display, "it is not a directory") from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise CachePermissionError(
                f"cannot open folder {display}: {exc.strerror}"
            ) from exc
        if exc.errno == errno.ENOENT and dir_fd is not None:
            raise FolderGone(f"cannot open folder {display}: it was removed") from exc
        raise


def check_directory(path: str, *, nested: bool) -> None:
    """Where folders cannot be opened (Windows): check ``path`` is a real folder."""
    if not os.path.isdir(path) or (nested and os.path.islink(path)):
        raise UnsafePathError(path, "it is not a directory")


def open_lock_file(name: str, *, dir_fd: int | None, display: str) -> tuple[int, bool]:
    """Open (creating if needed) the lock file ``name`` in ``dir_fd``.

    Returns the descriptor and whether it is writable. Never truncates, never
    follows a link, never blocks on a FIFO.

    Raises:
        UnsafePathError: the path is a link, a folder, a FIFO or a device.
        CachePermissionError: the file cannot be created, or cannot be
            opened even for reading.
        CacheError: the folder of the lock file no longer exists.
    """

    def _open(flags: int) -> int:
        if dir_fd is None or not HAVE_DIR_FD:
            return os.open(name, flags, 0o644)
        return os.open(name, flags, 0o644, dir_fd=dir_fd)

    base = _NOFOLLOW | _CLOEXEC | _NONBLOCK
    writable = True
    try:
        fd = _open(os.O_RDWR | os.O_CREAT | base)
    except OSError as exc:
        unsafe = _unsafe_from_errno(exc, display)
        if unsafe is not None:
            raise unsafe from exc
        if exc.errno == errno.ENOENT:
            # With O_CREAT, only a missing folder gives ENOENT.
            raise FolderGone(
                f"cannot open lock file {display}: its folder was removed while "
                "the cache was in use"
            ) from exc
        if exc.errno not in _READ_ONLY_ERRNOS:
            raise
        writable = False
        try:
            fd = _open(os.O_RDONLY | base)
        except FileNotFoundError:
            raise LockFileMissing(
                f"cannot create lock file {display}: {exc.strerror}"
            ) from exc
        except OSError as exc2:
            unsafe = _unsafe_from_errno(exc2, display)
            if unsafe is not None:
                raise unsafe from exc2
            if exc2.errno in _READ_ONLY_ERRNOS:
                raise CachePermissionError(
                    f"cannot open lock file {display}: {exc2.strerror}"
                ) from exc2
            raise
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafePathError(display, _describe_kind(mode))
    return fd, writable


def map_intent_byte(fd: int, writable: bool, display: str) -> mmap.mmap | None:
    """Map byte 0 of a gate file, where a waiting writer announces itself.

    The byte is extended into an empty gate file we may write (never
    truncated). A gate file with more than one link is refused: writing the
    byte would change a file outside the cache. Returns ``None`` when the
    file cannot hold the byte (an empty file in a read-only cache).
    """
    st = os.fstat(fd)
    if st.st_nlink != 1:
        raise UnsafePathError(display, "it has more than one hard link")
    if st.st_size < 1:
        if not writable:
            return None
        _extend_to_one_byte(fd)
    return _process.open_map(fd, writable=writable)


def _extend_to_one_byte(fd: int) -> None:
    """Give an empty gate file its intent byte without ever writing over it.

    Two processes may both find a new gate empty; writing a zero would erase
    a byte the other has meanwhile set for a waiting writer (who could then
    be overtaken by readers for as long as they overlap). Allocating only
    grows the file and leaves an existing byte alone.
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, 1)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        else:
            return
    if os.fstat(fd).st_size < 1:  # no fallocate here: a narrow race remains
        os.pwrite(fd, b"\0", 0)


def close(fd: int | None) -> None:
    """Close a descriptor, ignoring ``None`` and a descriptor already gone."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.close(fd)


if sys.platform != "win32":
    import fcntl

    #: ``flock(fd, operation)``: the system call itself. With ``LOCK_NB`` it
    #: raises :class:`BlockingIOError` when the lock is busy. The hot paths
    #: of :mod:`pkgcache._processlock` call it directly, without a Python
    #: frame around it.
    flock = fcntl.flock
    #: ``TRY_LOCK[exclusive]``: the operation that takes the lock at once or fails.
    TRY_LOCK = (fcntl.LOCK_SH | fcntl.LOCK_NB, fcntl.LOCK_EX | fcntl.LOCK_NB)
    #: ``LOCK[exclusive]``: the operation that waits for the lock in the kernel.
    LOCK = (fcntl.LOCK_SH, fcntl.LOCK_EX)
    UNLOCK = fcntl.LOCK_UN

else:  # pragma: no cover - exercised on Windows only
    import portalocker

    _SH, _EX, _NB, UNLOCK = 1, 2, 4, 8  # the values fcntl uses
    TRY_LOCK = (_SH | _NB, _EX | _NB)
    LOCK = (_SH, _EX)

    def flock(fd: int, operation: int) -> None:
        """``flock(2)`` on top of ``LockFileEx``, through portalocker."""
        if operation == UNLOCK:
            portalocker.unlock(fd)
            return
        flags = (
            portalocker.LockFlags.EXCLUSIVE
            if operation & _EX
            else portalocker.LockFlags.SHARED
        )
        if operation & _NB:
            flags |= portalocker.LockFlags.NON_BLOCKING
        try:
            portalocker.lock(fd, flags)
        except portalocker.AlreadyLocked as exc:
            raise BlockingIOError(errno.EWOULDBLOCK, "lock is busy") from exc


def _load_quick_flock() -> tuple[Callable[[int, int], int], Callable[[], int]] | None:
    """The C library's ``flock`` through ctypes, and ctypes' ``get_errno``.

    The function keeps the interpreter lock; ``None`` where either is missing.
    """
    if sys.platform == "win32":
        return None
    try:
        import ctypes  # noqa: PLC0415 - optional: some builds lack _ctypes

        function: Callable[[int, int], int] = ctypes.PyDLL(None, use_errno=True).flock
    except (ImportError, OSError, AttributeError):
        return None
    return function, ctypes.get_errno


def _quick_flock_missing(fd: int, operation: int) -> int:
    flock(fd, operation)  # BlockingIOError when busy, as the callers expect
    return 0


_loaded = _load_quick_flock()
#: Whether :data:`quick_flock` keeps the interpreter lock on this platform.
HAVE_QUICK_FLOCK = _loaded is not None
#: ``quick_flock(fd, operation)`` returns 0, or -1 with ``errno`` set; it never
#: releases the interpreter lock (where ctypes or the C library's flock is
#: missing, it is :func:`flock`, which never returns -1). Only for calls that
#: cannot block; see the module docstring.
quick_flock: Callable[[int, int], int] = (
    _loaded[0] if _loaded is not None else _quick_flock_missing
)
_get_errno: Callable[[], int] = _loaded[1] if _loaded is not None else lambda: 0

#: How many threads besides the main one this interpreter runs (cheap: C).
other_threads: Callable[[], int] = getattr(_thread, "_count", lambda: 1)


def granted_after_all(fd: int, operation: int) -> bool:
    """After :data:`quick_flock` returned -1: say whether the lock was granted.

    ``EWOULDBLOCK`` means busy (``False``). Any other error is rare (a
    descriptor closed under us, an interrupted call): the call is made again
    through :func:`flock`, which retries an interrupted call and raises
    :class:`OSError` for the rest, so both paths fail alike.
    """
    if _get_errno() in (errno.EWOULDBLOCK, errno.EAGAIN):
        return False
    flock(fd, operation)
    return True


# File systems on which a non-blocking flock is a local kernel call.
_LOCAL_FILE_SYSTEMS = frozenset(
    {
        "bcachefs",
        "btrfs",
        "ext2",
        "ext3",
        "ext4",
        "f2fs",
        "jfs",
        "overlay",
        "ramfs",
        "reiserfs",
        "tmpfs",
        "xfs",
        "zfs",
    }
)


def is_local_file_system(fd: int, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether the folder open as ``fd`` lives on a known local file system.

    Read from the mount table by device number (Linux). Anything else, an
    unknown type, or a table that cannot be read, counts as not local: the
    safe answer, since it only costs speed.
    """
    try:
        st = os.fstat(fd)
        with open(mountinfo, encoding="utf-8", errors="replace") as table:
            lines = table.read().splitlines()
    except OSError:
        return False
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    for line in lines:
        fields = line.split()
        # id parent major:minor root mount-point options [tags...] - type ...
        if len(fields) < 7 or fields[2] != device or "-" not in fields[6:]:
            continue
        kind = fields[fields.index("-", 6) + 1]
        return kind in _LOCAL_FILE_SYSTEMS
    return False


def try_lock(fd: int, exclusive: bool) -> bool:
    """Take the lock if it is free at once; return whether it was taken."""
    try:
        flock(fd, TRY_LOCK[exclusive])
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    """Release the lock held through ``fd``."""
    flock(fd, UNLOCK)
