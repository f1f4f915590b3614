"""The identity of a cache: one random id stored in the cache itself.

A lock server shared by many hosts cannot name a cache by its path: one host
mounts the shared folder at ``/mnt/cache``, another at ``/srv/build/cache``,
a container at ``/cache``. Every host reads the same file instead,
``<locks folder>/cache-id`` (``<root>/locks/cache-id``, or the locks folder
of an attached cache such as a uv cache), and so meets the same locks
whatever the path it mounts the cache at.

The file is created once and never changed. Two hosts that create it at the
same moment must not end up with two ids: each writes a complete file under
a unique temporary name, then links it (``link(2)``) to ``cache-id``, which fails
if the name exists (a rename would silently replace the other host's id).
The loser reads the winner's id. ``link`` is atomic on local file systems
and on NFS, where a reply lost after success reports an error although the
link was made: the temporary file's link count tells the truth then.

Like lock files, the identity file is opened relative to the locks folder's
descriptor, never through a link, never truncated; a file that is not what
pkgcache wrote is refused with a clear error rather than replaced (a new id
would silently split the cache's locks in two).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat

from ._errors import CacheError, CachePermissionError, UnsafePathError

__all__ = ["IDENTITY_FILE", "cache_identity"]

#: The file, in the locks folder, that names the cache for a lock server.
IDENTITY_FILE = "cache-id"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_HEADER = "pkgcache cache id v1\n"
_FORMAT = re.compile(r"pkgcache cache id v1\n([0-9a-f]{32})\n")
_MAX_SIZE = 4096


def cache_identity(locks_dir: int, display: str) -> str:
    """The id of the cache whose locks folder is open as ``locks_dir``.

    Created (atomically, once for every host) if the folder has none.
    ``display`` is the folder's path, for messages.

    Raises:
        UnsafePathError: ``cache-id`` is a link, a folder, or not a file
            pkgcache wrote.
        CachePermissionError: there is no id yet and the folder is read-only.
    """
    identity = _read(locks_dir, display)
    if identity is None:
        identity = _create(locks_dir, display)
    return identity


def _read(locks_dir: int, display: str) -> str | None:
    path = f"{display}/{IDENTITY_FILE}"
    try:
        fd = os.open(
            IDENTITY_FILE,
            os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK,
            dir_fd=locks_dir,
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise UnsafePathError(path, "it is a symbolic link") from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise CachePermissionError(
                f"cannot read the cache identity {path}: {exc.strerror}"
            ) from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(path, "it is not a regular file")
        content = os.read(fd, _MAX_SIZE)
    finally:
        os.close(fd)
    match = _FORMAT.fullmatch(content.decode("ascii", errors="replace"))
    if match is None:
        raise UnsafePathError(
            path,
            "it is not a cache identity written by pkgcache (restore it from "
            "another host, or, with every user of the cache stopped, delete "
            "it to give the cache a new identity)",
        )
    return match.group(1)


def _create(locks_dir: int, display: str) -> str:
    identity = secrets.token_hex(16)
    temporary = f".{IDENTITY_FILE}.{secrets.token_hex(8)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o644, dir_fd=locks_dir)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CachePermissionError(
                f"cannot create the cache identity in {display}: {exc.strerror} "
                "(a lock server needs it; create it once from a host that may "
                "write the cache)"
            ) from exc
        raise
    try:
        try:
            os.write(fd, f"{_HEADER}{identity}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(
                temporary, IDENTITY_FILE, src_dir_fd=locks_dir, dst_dir_fd=locks_dir
            )
        except FileExistsError:
            pass  # another host or process was first: its id is the cache's
        except OSError:
            # NFS: a retransmitted link reports an error after succeeding.
            if os.stat(temporary, dir_fd=locks_dir).st_nlink != 2:
                raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=locks_dir)
    found = _read(locks_dir, display)
    if found is None:
        raise CacheError(
            f"the cache identity {display}/{IDENTITY_FILE} vanished right after "
            "it was created: something deletes files in the locks folder"
        )
    return found
