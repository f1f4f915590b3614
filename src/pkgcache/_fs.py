"""File-system operations of the store, relative to folder descriptors.

Every operation here works on a name inside a folder opened with
``O_NOFOLLOW``, never on a full path, so a symbolic link planted anywhere
inside the cache can neither redirect a write nor a delete outside it:
links are refused (``UnsafePathError``) where an entry or folder is
expected, and deleted as links (never followed) by :func:`remove_tree`.

Walks over trees are iterative and hold at most two folder descriptors
however deep the tree: they climb back up through ``..`` and check that
they reached the folder they left. A tree nested 1,100 levels deep once
made the recursive walks raise ``RecursionError`` (and a descriptor per
level would run out of descriptors first).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ._errors import CacheError, UnsafePathError

__all__ = [
    "copy_contents",
    "ensure_dir",
    "get_record",
    "open_dir",
    "remove_tree",
    "require_dir_fd",
    "set_record",
    "sync_tree",
    "tree_size",
    "walk",
]

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: Flags to open a folder that must not be a link.
DIR_FLAGS = os.O_RDONLY | _DIRECTORY | NOFOLLOW | CLOEXEC
#: Flags to create a new file that cannot already exist or be a link.
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC
#: Flags to open a file of the store for reading: never a link, and a FIFO
#: planted in its place opens at once instead of waiting for a writer.
READ_FLAGS = os.O_RDONLY | NOFOLLOW | NONBLOCK | CLOEXEC

#: ``fsync`` calls :func:`sync_tree` runs at once.
SYNC_THREADS = 16

#: The extended attribute that records what an entry held when published.
RECORD_ATTRIBUTE = "user.pkgcache"

_HAVE_DIR_FD = all(
    function in os.supports_dir_fd
    for function in (os.open, os.mkdir, os.rename, os.unlink, os.rmdir, os.stat)
)
_HAVE_XATTR = hasattr(os, "getxattr")
# Answers of a file system that keeps no extended attributes (or not ours).
_NO_ATTRIBUTES = frozenset(
    {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.ENOSPC}
)


def require_dir_fd() -> None:
    """Refuse to run the store where folder descriptors are missing."""
    if not _HAVE_DIR_FD:
        raise CacheError(
            "the artifact store needs folder descriptors (dir_fd), which this "
            "platform lacks; the locks still work"
        )


def open_dir(name: str, dir_fd: int, *, display: str) -> int:
    """Open folder ``name`` in ``dir_fd``.

    Raises:
        UnsafePathError: ``name`` is a symbolic link.
        NotADirectoryError: it is a file.
        FileNotFoundError: it does not exist.
    """
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW on a link gives ELOOP or ENOTDIR (Linux).
        if exc.errno == errno.ELOOP or (
            exc.errno == errno.ENOTDIR and _is_link(name, dir_fd)
        ):
            raise UnsafePathError(display, "it is a symbolic link") from exc
        raise


def ensure_dir(name: str, dir_fd: int, *, display: str) -> tuple[int, bool]:
    """Open folder ``name`` in ``dir_fd``, creating it if missing.

    Returns the descriptor and whether this call created the folder (its
    parent then has a new name to sync for a durable publish).

    Raises:
        UnsafePathError: ``name`` is a symbolic link.
        NotADirectoryError: it is a file.
    """
    try:
        return open_dir(name, dir_fd, display=display), False
    except FileNotFoundError:
        pass
    # Created only when missing: a mkdir that fails costs a lookup too.
    try:
        os.mkdir(name, 0o777, dir_fd=dir_fd)
        created = True
    except FileExistsError:
        created = False
    return open_dir(name, dir_fd, display=display), created


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _children(fd: int) -> tuple[list[os.DirEntry[str]], list[str]]:
    """The folder's non-folder children, and the names of its sub-folders."""
    others: list[os.DirEntry[str]] = []
    folders: list[str] = []
    with os.scandir(fd) as it:
        for child in it:
            try:
                is_folder = child.is_dir(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if is_folder:
                folders.append(child.name)
            else:
                others.append(child)
    return others, folders


#: ``enter(folder_fd, path, non_folder_children)``; ``path`` names the folders
#: from the top down to this one (empty for the top).
Enter = Callable[[int, tuple[str, ...], list[os.DirEntry[str]]], None]
#: ``leave(parent_fd, name)``: the sub-folder ``name`` and all below it are done.
Leave = Callable[[int, str], None]
#: ``descend(folder_fd, path)``: whether to enter this sub-folder.
Descend = Callable[[int, tuple[str, ...]], bool]


def walk(
    top_fd: int,
    enter: Enter,
    leave: Leave | None = None,
    *,
    descend: Descend | None = None,
) -> None:
    """Visit the folder ``top_fd`` and every folder below it, top-down.

    ``enter`` sees each folder (its descriptor is valid during the call)
    with its non-folder children as :class:`os.DirEntry` objects; ``leave``
    is told when a sub-folder is done, from its parent; ``descend`` may
    refuse to enter a sub-folder (it is then neither entered nor left).
    Links are never followed; sub-folders that vanish or turn into
    something else meanwhile are skipped. Iterative: at most two
    descriptors besides ``top_fd`` are open, however deep the tree.

    Raises:
        UnsafePathError: a folder was moved while the walk was inside it
            (``..`` no longer leads back to its parent).
    """
    # One frame per folder entered: (identity, sub-folders left to visit).
    frames: list[tuple[tuple[int, int], list[str]]] = []
    path: list[str] = []
    fd = top_fd
    try:
        files, folders = _children(fd)
        enter(fd, (), files)
        frames.append((_identity(fd), folders))
        while frames:
            pending = frames[-1][1]
            if pending:
                name = pending.pop()
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # vanished, or swapped for a file or a link
                    raise
                child_path = (*path, name)
                if descend is not None and not descend(child, child_path):
                    os.close(child)
                    continue
                if fd != top_fd:
                    os.close(fd)
                fd = child
                path.append(name)
                files, folders = _children(fd)
                enter(fd, child_path, files)
                frames.append((_identity(fd), folders))
                continue
            frames.pop()
            if not frames:
                break
            parent = top_fd if len(frames) == 1 else _climb(fd, frames[-1][0])
            os.close(fd)
            fd = parent
            name = path.pop()
            if leave is not None:
                leave(fd, name)
    finally:
        if fd != top_fd:
            os.close(fd)


def _climb(fd: int, expected: tuple[int, int]) -> int:
    """Open the parent of folder ``fd``, which must be ``expected``."""
    parent = os.open("..", DIR_FLAGS, dir_fd=fd)
    if _identity(parent) != expected:
        os.close(parent)
        raise UnsafePathError("a folder being walked", "it was moved meanwhile")
    return parent


def remove_tree(name: str, dir_fd: int) -> bool:
    """Delete ``name`` in ``dir_fd``: a file, a link (not its target) or a tree.

    Returns whether anything was there. Entries that vanish meanwhile are
    tolerated; links inside are removed as links, never followed.
    """
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        # EISDIR on Linux, EPERM on macOS: a folder.
        if exc.errno not in (errno.EISDIR, errno.EPERM, errno.EACCES):
            raise
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            raise
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        try:
            walk(fd, _unlink_children, _remove_folder)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=dir_fd)
    return True


def _unlink_children(
    fd: int, path: tuple[str, ...], children: list[os.DirEntry[str]]
) -> None:
    for child in children:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(child.name, dir_fd=fd)


def _remove_folder(parent_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=parent_fd)


def tree_size(fd: int, *, exclude: str = "") -> int:
    """Bytes of the regular files under folder ``fd`` (links not followed).

    ``exclude`` names a file directly in ``fd`` not to count.
    """
    total = 0

    def add(
        folder: int, path: tuple[str, ...], children: list[os.DirEntry[str]]
    ) -> None:
        nonlocal total
        for child in children:
            if not path and child.name == exclude:
                continue
            with contextlib.suppress(FileNotFoundError):
                if child.is_file(follow_symlinks=False):
                    total += child.stat(follow_symlinks=False).st_size

    walk(fd, add)
    return total


def sync_tree(fd: int) -> None:
    """Make every file and folder under folder ``fd`` durable (``fsync``).

    Up to ``SYNC_THREADS`` ``fsync`` calls run at once: the journal commits
    concurrent calls together, where one after another each waits for a
    commit of its own (1,000 files: 0.2 s instead of 1.3-2.3 s on the
    project's test machine; see ``docs/performance.md``). A single
    ``syncfs`` can be faster still, but waits for every other writer's
    dirty data on the file system. Links, FIFOs, sockets and devices have
    no data of their own: their names are made durable with their folder.
    A file this process cannot open (a tree's own mode-000 file) is made
    durable by one ``sync()`` of everything instead.
    """
    unreadable = False
    in_flight = threading.BoundedSemaphore(2 * SYNC_THREADS)  # descriptors open
    with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="pkgcache-sync") as pool:
        syncs = []

        def sync(target: int) -> None:
            in_flight.acquire()
            syncs.append(pool.submit(_sync_and_close, target, in_flight))

        def enter(
            folder: int, path: tuple[str, ...], children: list[os.DirEntry[str]]
        ) -> None:
            nonlocal unreadable
            for child in children:
                try:
                    if child.is_file(follow_symlinks=False):
                        sync(os.open(child.name, READ_FLAGS, dir_fd=folder))
                except FileNotFoundError:
                    continue
                except PermissionError:
                    unreadable = True
            sync(os.dup(folder))  # the walk closes its own descriptor

        walk(fd, enter)
        for done in syncs:
            done.result()  # raises the first failure
    if unreadable:
        os.sync()


def _sync_and_close(fd: int, in_flight: threading.BoundedSemaphore) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
        in_flight.release()


def set_record(fd: int, record: bytes) -> bool:
    """Attach ``record`` to the open file ``fd``; ``False`` where unsupported.

    A file system without user extended attributes (tmpfs before Linux 6.6,
    some network mounts), a file this process may not label, or a platform
    without them: the entry is then stored without a record.
    """
    if not _HAVE_XATTR:
        return False
    try:
        os.setxattr(fd, RECORD_ATTRIBUTE, record)
    except OSError as exc:
        if exc.errno in _NO_ATTRIBUTES:
            return False
        raise
    return True


def get_record(name: str, dir_fd: int) -> bytes | None:
    """The record of file ``name`` in ``dir_fd``, or ``None`` if it has none.

    Raises:
        FileNotFoundError: the file vanished.
    """
    if not _HAVE_XATTR:
        return None
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        return None  # unreadable, or swapped for a link: no record to trust
    try:
        return os.getxattr(fd, RECORD_ATTRIBUTE)
    except OSError as exc:
        if exc.errno == errno.ENODATA or exc.errno in _NO_ATTRIBUTES:
            return None
        raise
    finally:
        os.close(fd)


def copy_contents(source_fd: int, target_fd: int) -> None:
    """Copy every byte of ``source_fd`` to ``target_fd`` (both at offset 0)."""
    if hasattr(os, "sendfile"):
        offset = 0
        while True:
            try:
                sent = os.sendfile(target_fd, source_fd, offset, 1 << 24)
            except OSError as exc:
                if offset == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS):
                    break  # not supported for this pair: copy by hand
                raise
            if sent == 0:
                return
            offset += sent
    while chunk := os.read(source_fd, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(target_fd, view) :]
