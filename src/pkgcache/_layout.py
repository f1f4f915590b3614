"""Whether a folder may become a pkgcache cache: one rule for the library and CLI.

Opening a cache creates ``.lock``, ``locks/`` and ``CACHEDIR.TAG`` in its
folder. The tag tells backup tools to skip the folder, so a mistyped root
(a home folder, a project) must not get one; and ``uv cache prune`` deletes
every top-level folder of a uv cache it does not know, ``locks/`` included,
while pkgcache holds locks in it. So a folder is taken as a cache root only
if it is:

* missing or empty (it becomes a cache on first use);
* already a pkgcache cache (it has ``locks/``, or the ``CACHEDIR.TAG``
  pkgcache writes).

A uv cache (a bucket folder named like ``wheels-v5``, uv's ``.gitignore``,
or a lone ``.lock``, which is what ``uv cache clean`` leaves) and any other
non-empty folder are refused with
:class:`~pkgcache.NotACacheError`, which says what was found and what to do.
A path is expanded (``~``) and made absolute first, by both.
"""

from __future__ import annotations

import enum
import os
import re
import stat
from pathlib import Path

from ._errors import NotACacheError

__all__ = ["FolderKind", "cache_root", "expand", "folder_kind"]

# uv names its cache buckets "<name>-v<version>": wheels-v5, archive-v0,
# sdists-v9, simple-v16, interpreter-v4, ...
_UV_BUCKET = re.compile(r"[a-z]+(?:-[a-z]+)*-v[0-9]+\Z")
# The comment line pkgcache writes into its CACHEDIR.TAG (see _cache.py).
_PKGCACHE_TAG = b"created by pkgcache"
_SHOWN = 3  # names quoted in a refusal


class FolderKind(enum.Enum):
    """What :func:`folder_kind` found."""

    MISSING = "missing"
    EMPTY = "empty"
    PKGCACHE = "a pkgcache cache"
    UV = "a uv cache"
    OTHER = "a folder of other files"
    NOT_A_FOLDER = "not a folder"


def expand(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded, made absolute (links are not resolved)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def folder_kind(path: Path) -> tuple[FolderKind, list[str]]:
    """What the folder ``path`` is, and the names that show it (sorted)."""
    try:
        with os.scandir(path) as it:
            folders = {entry.name: entry.is_dir(follow_symlinks=False) for entry in it}
    except FileNotFoundError:
        return FolderKind.MISSING, []
    except NotADirectoryError:
        return FolderKind.NOT_A_FOLDER, []
    except OSError:
        # Unreadable: the first use reports it (as CachePermissionError).
        return FolderKind.PKGCACHE, []
    names = sorted(folders)
    if not names:
        return FolderKind.EMPTY, []
    uv = [name for name in names if folders[name] and _UV_BUCKET.match(name)]
    if uv or _head(path / ".gitignore").strip() == b"*":
        # uv writes a .gitignore of one "*" so its cache is never committed.
        return FolderKind.UV, uv or [".gitignore"]
    # ``locks`` of any type: opening the cache refuses a link or a file there.
    if "locks" in folders:
        return FolderKind.PKGCACHE, ["locks"]
    if _PKGCACHE_TAG in _head(path / "CACHEDIR.TAG"):
        return FolderKind.PKGCACHE, ["CACHEDIR.TAG"]
    if names == [".lock"]:
        # What 'uv cache clean' leaves; pkgcache creates locks/ with .lock.
        return FolderKind.UV, names
    return FolderKind.OTHER, names


def cache_root(root: str | os.PathLike[str], *, adopt: bool = False) -> Path:
    """``root`` expanded, if it may become a cache (see the module docstring).

    ``adopt=True`` accepts any folder as it is. A path that is not a folder
    passes too: opening the cache refuses it (``UnsafePathError``), as it
    refuses a file that takes a folder's place later.

    Raises:
        NotACacheError: ``root`` is a uv cache, or a folder of other files.
    """
    path = expand(root)
    if adopt:
        return path
    kind, names = folder_kind(path)
    if kind is FolderKind.UV:
        raise NotACacheError(
            path,
            f"it looks like a uv cache ({_quoted(names)}), and 'uv cache prune' "
            "would delete pkgcache's locks/ folder in it; lock it with "
            "pkgcache.uv.UvCache (on the command line: pkgcache --uv)",
        )
    if kind is FolderKind.OTHER:
        raise NotACacheError(
            path,
            f"it holds other files ({_quoted(names)}); refusing to add cache "
            "files to it (its CACHEDIR.TAG would make backup tools skip it). "
            "Use a new or empty folder, or pass adopt=True to Cache",
        )
    return path


def _quoted(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _head(path: Path) -> bytes:
    """The first bytes of the regular file ``path``; empty for anything else.

    Never follows a link, and never blocks on a FIFO planted in its place.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, 512)
    except OSError:
        return b""
    finally:
        os.close(fd)
