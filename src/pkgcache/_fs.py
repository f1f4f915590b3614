"""File-system operations of the store, relative to folder descriptors.

Every operation here works on a name inside a folder opened with
``O_NOFOLLOW``, never on a full path, so a symbolic link planted anywhere
inside the cache can neither redirect a write nor a delete outside it:
links are refused (``UnsafePathError``) where an entry or folder is
expected, and deleted as links (never followed) by :func:`remove_tree`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from ._errors import CacheError, UnsafePathError

__all__ = [
    "copy_contents",
    "open_dir",
    "remove_tree",
    "require_dir_fd",
    "tree_size",
]

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: Flags to open a folder that must not be a link.
DIR_FLAGS = os.O_RDONLY | _DIRECTORY | NOFOLLOW | CLOEXEC
#: Flags to create a new file that cannot already exist or be a link.
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC


_HAVE_DIR_FD = all(
    function in os.supports_dir_fd
    for function in (os.open, os.mkdir, os.rename, os.unlink, os.rmdir, os.stat)
)


def require_dir_fd() -> None:
    """Refuse to run the store where folder descriptors are missing."""
    if not _HAVE_DIR_FD:
        raise CacheError(
            "the artifact store needs folder descriptors (dir_fd), which this "
            "platform lacks; the locks still work"
        )


def open_dir(name: str, dir_fd: int, *, create: bool, display: str) -> int:
    """Open (optionally creating) folder ``name`` in ``dir_fd``.

    Raises:
        UnsafePathError: ``name`` is a symbolic link.
        NotADirectoryError: it is a file.
        FileNotFoundError: it does not exist and ``create`` is false.
    """
    try:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
        # Created only when missing: a mkdir that fails costs a lookup too.
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=dir_fd)
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # O_DIRECTORY | O_NOFOLLOW on a link gives ELOOP or ENOTDIR (Linux).
        if exc.errno == errno.ENOTDIR and _is_link(name, dir_fd):
            raise UnsafePathError(display, "it is a symbolic link") from exc
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(display, "it is a symbolic link") from exc
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


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
            with os.scandir(fd) as it:
                children = [child.name for child in it]
            for child in children:
                remove_tree(child, fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=dir_fd)
    return True


def tree_size(fd: int, *, exclude: str = "") -> int:
    """Bytes of the regular files under folder ``fd`` (links not followed).

    ``exclude`` names a file directly in ``fd`` not to count.
    """
    total = 0
    with os.scandir(fd) as it:
        children = [child for child in it if child.name != exclude]
    for child in children:
        try:
            if child.is_dir(follow_symlinks=False):
                sub = os.open(child.name, DIR_FLAGS, dir_fd=fd)
                try:
                    total += tree_size(sub)
                finally:
                    os.close(sub)
            elif child.is_file(follow_symlinks=False):
                total += child.stat(follow_symlinks=False).st_size
        except (FileNotFoundError, NotADirectoryError):
            continue
    return total


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
