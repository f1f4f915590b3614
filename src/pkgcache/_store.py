"""The artifact store: atomic publish, lookup, clean and prune.

Layout
------
``<root>/packages/<name>/<key>``
    One entry: a file (a wheel, an sdist, anything) or a folder tree.
    ``<name>`` is the canonical project name; ``<key>`` a relative path,
    possibly with sub-folders (``cuda/x-1.0-py3-none-any.whl``), validated
    by :func:`pkgcache._keys.key_parts` (no component starts with ``.``).
``<root>/packages/<name>/<key>/.pkgcache-tree``
    Marks a folder as a tree entry (and records its size and creation
    time), so it cannot be mistaken for a sub-folder of keys. It is written
    into the tree before the tree is published, so it appears with it.
``<root>/tmp/<name>.<unique>``
    Staging: a file or tree being written, or an old entry renamed aside to
    be deleted. Always on the file system of the entries, so publishing is
    one ``rename``.

Protocol
--------
Every write runs under the exclusive lock of its package (or of the whole
cache), which the :class:`~pkgcache.CacheTransaction` proves; every read
under a shared lock, which the :class:`~pkgcache.CacheView` proves.

* **Publish**: write into ``tmp/<name>.<unique>``, then ``rename`` it into
  ``packages/<name>/<key>``. A file replaces an older file in that one
  rename. A tree (or a file replacing a tree) first renames the old entry
  aside into ``tmp/``, renames the new one in, then deletes the old one.
  Readers hold the shared lock, so none of them ever sees the gap; a crash
  in the gap loses the entry, never shows a partial one.
* **Remove**: ``unlink`` a file (atomic by itself); rename a tree aside into
  ``tmp/``, then delete it. An entry already gone is not an error.
* **Staging leftovers**: ``tmp/<name>.*`` belongs to the writer holding the
  exclusive lock of ``<name>`` (or of the whole cache). So a sweeper that
  gets that lock (without waiting) knows the writer is gone: the kernel
  frees the lock of a process killed even by ``kill -9``. Leftovers are
  told apart by that lock, never by age. The writer's own process also
  keeps a set of its live staging names, so a sweep running in the
  writer's own thread (which re-enters the lock) never touches them.
* **Last use**: ``find()`` and ``path()`` set the entry's access time
  (``utime``, at most once a second per entry); :meth:`Cache.prune` removes
  the least recently used entries first. On a read-only cache the time is
  not recorded.

Every path is opened relative to a folder descriptor with ``O_NOFOLLOW``
(see :mod:`pkgcache._fs`): a symbolic link planted in place of a folder or
an entry is refused with :class:`~pkgcache.UnsafePathError`, never
followed, and deletions remove links without touching their targets.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol

import attrs
from packaging.requirements import InvalidRequirement as _PackagingInvalidRequirement
from packaging.requirements import Requirement
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from . import _fs, _process
from ._errors import (
    CacheError,
    CachePermissionError,
    EntryNotFound,
    InvalidArtifact,
    InvalidKey,
    InvalidPackageName,
    InvalidRequirement,
    LockOrderError,
    LockTimeout,
    LockUpgradeError,
    SourceNotFound,
    StoreWriteError,
    UnsafePathError,
)
from ._keys import ArtifactName, artifact_name, check_artifact, key_parts
from ._names import canonical_name
from ._records import CacheInfo, CleanReport, Entry, PruneReport
from ._timeouts import DEFAULT_TIMEOUT, _DefaultTimeout, _resolve_timeout

if TYPE_CHECKING:
    from ._cache import CacheTransaction, CacheView, _Space

__all__ = ["CacheStoreMethods", "TransactionStoreMethods", "ViewStoreMethods"]

logger = logging.getLogger("pkgcache")

PACKAGES_DIR = "packages"
STAGING_DIR = "tmp"
TREE_MARKER = ".pkgcache-tree"
#: Seconds between two recordings of an entry's last use.
LAST_USED_RESOLUTION = 1.0

_READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

# Staging names of this process's writers that are still running, per root.
_live: set[tuple[str, str]] = set()
_live_mutex = threading.Lock()
_counter = itertools.count()


def _after_fork_in_child() -> None:
    global _live_mutex  # noqa: PLW0603
    _live_mutex = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _CacheLike(Protocol):
    _real_root: str
    _tag_root: bool
    _space: _Space | None
    timeout: float | None

    @property
    def root(self) -> Path: ...

    def _open_space(self) -> _Space: ...

    def reading(
        self, *packages: str, timeout: float | _DefaultTimeout | None = ...
    ) -> CacheView: ...

    def exclusive(
        self, *packages: str, timeout: float | _DefaultTimeout | None = ...
    ) -> CacheTransaction: ...


class _Handle(Protocol):
    @property
    def cache(self) -> _CacheLike: ...

    @property
    def packages(self) -> tuple[NormalizedName, ...]: ...

    def covers(self, package: str) -> NormalizedName: ...

    def _require_open(self) -> None: ...


class _TransactionHandle(_Handle, Protocol):
    @property
    def whole_cache(self) -> bool: ...

    def _writable(self, package: str) -> NormalizedName: ...


# -- folders -------------------------------------------------------------------


def _root_fd(cache: _CacheLike) -> int:
    if not cache._tag_root:
        raise CacheError(
            f"{cache.root} belongs to another tool (an attached cache): it has "
            "locks but no artifact store"
        )
    _fs.require_dir_fd()
    space = cache._space or cache._open_space()
    fd = space.root_dir.fd
    if fd is None:  # pragma: no cover - require_dir_fd() refused already
        raise CacheError("the artifact store needs folder descriptors")
    return fd


def _display(cache: _CacheLike, *parts: str) -> str:
    return os.path.join(cache.root, *parts)


def _store_dir(cache: _CacheLike, name: str, *, create: bool) -> int | None:
    """Open ``packages/`` or ``tmp/``; ``None`` if missing and not created."""
    display = _display(cache, name)
    try:
        return _fs.open_dir(name, _root_fd(cache), create=create, display=display)
    except FileNotFoundError:
        if create:
            raise
        return None
    except NotADirectoryError as exc:
        raise UnsafePathError(display, "it is not a folder") from exc


def _package_dir(
    cache: _CacheLike, packages_fd: int, name: str, *, create: bool
) -> int | None:
    display = _display(cache, PACKAGES_DIR, name)
    try:
        return _fs.open_dir(name, packages_fd, create=create, display=display)
    except FileNotFoundError:
        if create:
            raise
        return None
    except NotADirectoryError as exc:
        raise UnsafePathError(display, "it is not a folder") from exc


@contextlib.contextmanager
def _opened(fds: Iterable[int | None]) -> Iterator[None]:
    try:
        yield
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _is_tree(fd: int) -> bool:
    try:
        mode = os.stat(TREE_MARKER, dir_fd=fd, follow_symlinks=False).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode)


class _Chain:
    """The folders leading to one key, opened one by one with ``O_NOFOLLOW``.

    ``fds[0]`` is the package folder; ``fds[-1]`` holds the key's last part.
    """

    def __init__(self, cache: _CacheLike, name: str, parts: tuple[str, ...]) -> None:
        self.cache = cache
        self.name = name
        self.parts = parts
        self.fds: list[int] = []
        self.packages_fd: int | None = None

    def open(self, *, create: bool) -> bool:
        """Open the chain; ``False`` if it does not lead to a possible entry.

        Raises:
            UnsafePathError: a folder on the way is a symbolic link.
            InvalidKey: (``create``) a folder on the way is an entry.
        """
        key = "/".join(self.parts)
        self.packages_fd = _store_dir(self.cache, PACKAGES_DIR, create=create)
        if self.packages_fd is None:
            return False
        package_fd = _package_dir(
            self.cache, self.packages_fd, self.name, create=create
        )
        if package_fd is None:
            return False
        self.fds.append(package_fd)
        for depth, part in enumerate(self.parts[:-1], 1):
            prefix = "/".join(self.parts[:depth])
            display = _display(self.cache, PACKAGES_DIR, self.name, prefix)
            try:
                fd = _fs.open_dir(part, self.fds[-1], create=create, display=display)
            except FileNotFoundError:
                return False
            except NotADirectoryError:
                if create:
                    raise InvalidKey(key, f"{prefix!r} is a file entry") from None
                return False
            self.fds.append(fd)
            if _is_tree(fd):
                if create:
                    raise InvalidKey(key, f"{prefix!r} is a tree entry")
                return False
        return True

    @property
    def parent(self) -> int:
        return self.fds[-1]

    @property
    def last(self) -> str:
        return self.parts[-1]

    def path(self) -> Path:
        return Path(self.cache.root, PACKAGES_DIR, self.name, *self.parts)

    def remove_empty_folders(self) -> None:
        """Remove the key's folders (and the package's) left empty."""
        for depth in range(len(self.fds) - 1, 0, -1):
            try:
                os.rmdir(self.parts[depth - 1], dir_fd=self.fds[depth - 1])
            except OSError:
                return
        if self.packages_fd is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.name, dir_fd=self.packages_fd)

    def close(self) -> None:
        fds, self.fds = self.fds, []
        for fd in [*fds, self.packages_fd]:
            if fd is not None:
                os.close(fd)
        self.packages_fd = None

    def __enter__(self) -> _Chain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- reading -------------------------------------------------------------------


def _walk(fd: int, prefix: str = "") -> Iterator[tuple[str, int, str, bool]]:
    """Yield ``(key, folder fd, name, is_tree)`` for each entry under ``fd``.

    Names starting with ``.`` are the store's own; links, FIFOs and the like
    are never entries; trees are not descended into.
    """
    with os.scandir(fd) as it:
        items = list(it)
    for item in items:
        name = item.name
        if name.startswith("."):
            continue
        try:
            if item.is_file(follow_symlinks=False):
                yield prefix + name, fd, name, False
                continue
            if not item.is_dir(follow_symlinks=False):
                continue
            sub = os.open(name, _fs.DIR_FLAGS, dir_fd=fd)
        except OSError:
            continue  # vanished meanwhile, or swapped for a link
        try:
            if _is_tree(sub):
                yield prefix + name, fd, name, True
            else:
                yield from _walk(sub, f"{prefix}{name}/")
        finally:
            os.close(sub)


_TREE = ArtifactName("tree")


def _tree_record(name: str, parent_fd: int, st: os.stat_result) -> tuple[int, float]:
    """Size and creation time of a tree, from its marker (or by walking it)."""
    tree_fd = os.open(name, _fs.DIR_FLAGS, dir_fd=parent_fd)
    try:
        try:
            marker_fd = os.open(
                TREE_MARKER, os.O_RDONLY | _fs.NOFOLLOW | _fs.CLOEXEC, dir_fd=tree_fd
            )
            try:
                record = json.loads(os.read(marker_fd, 4096))
            finally:
                os.close(marker_fd)
            size, created = record["size"], record["created"]
            if isinstance(size, int) and isinstance(created, (int, float)):
                return size, float(created)
        except (OSError, ValueError, TypeError, KeyError):
            pass
        logger.warning(
            "pkgcache: unreadable tree marker in %s; measuring the tree instead",
            name,
        )
        return _fs.tree_size(tree_fd, exclude=TREE_MARKER), st.st_mtime
    finally:
        os.close(tree_fd)


def _entry(
    cache: _CacheLike,
    package: NormalizedName,
    key: str,
    location: tuple[int, str],
    *,
    is_tree: bool,
) -> Entry | None:
    """Describe the entry at ``(folder fd, name)``; ``None`` if it vanished."""
    parent_fd, name = location
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if is_tree:
            if not stat.S_ISDIR(st.st_mode):
                return None
            size, created = _tree_record(name, parent_fd, st)
            info = _TREE
        else:
            if not stat.S_ISREG(st.st_mode):
                return None
            size, created = st.st_size, st.st_mtime
            info = artifact_name(package, name)
    except FileNotFoundError:
        return None
    return Entry(
        package=package,
        key=key,
        # One string to parse: much cheaper than joining parts (pathlib).
        path=Path(f"{cache.root}/{PACKAGES_DIR}/{package}/{key}"),
        kind=info.kind,
        version=info.version,
        build_tag=info.build_tag,
        tags=info.tags,
        size=size,
        created=created,
        last_used=st.st_atime,
    )


def _scan(cache: _CacheLike, package: NormalizedName) -> list[Entry]:
    """Every entry of ``package``, sorted by key.

    Raises:
        UnsafePathError: the package folder is a symbolic link.
    """
    packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
    if packages_fd is None:
        return []
    with _opened([packages_fd]):
        package_fd = _package_dir(cache, packages_fd, package, create=False)
        if package_fd is None:
            return []
        with _opened([package_fd]):
            entries = [
                entry
                for key, fd, name, is_tree in _walk(package_fd)
                if (entry := _entry(cache, package, key, (fd, name), is_tree=is_tree))
            ]
    entries.sort(key=lambda entry: entry.key)
    return entries


class _Record(NamedTuple):
    """What prune and info need of an entry: no parsing, no path."""

    last_used: float
    package: str
    key: str
    size: int
    is_tree: bool


def _records(cache: _CacheLike, package: NormalizedName) -> list[_Record]:
    """Size and last use of every entry of ``package`` (cheaper than _scan)."""
    packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
    if packages_fd is None:
        return []
    records = []
    with _opened([packages_fd]):
        package_fd = _package_dir(cache, packages_fd, package, create=False)
        if package_fd is None:
            return []
        with _opened([package_fd]):
            for key, fd, name, is_tree in _walk(package_fd):
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if is_tree:
                        size = _tree_record(name, fd, st)[0]
                    elif stat.S_ISREG(st.st_mode):
                        size = st.st_size
                    else:
                        continue
                except FileNotFoundError:
                    continue
                records.append(_Record(st.st_atime, package, key, size, is_tree))
    return records


def _touch(chain: _Chain, st: os.stat_result) -> float:
    """Record a use of the entry; return its last-use time."""
    now = time.time()
    if now - st.st_atime < LAST_USED_RESOLUTION:
        return st.st_atime
    try:
        os.utime(
            chain.last,
            ns=(time.time_ns(), st.st_mtime_ns),
            dir_fd=chain.parent,
            follow_symlinks=False,
        )
    except OSError:
        return st.st_atime  # a read-only cache: reading still works
    return now


def _located(view: _Handle, package: NormalizedName, key: str) -> Entry:
    """The entry at ``key``, with its use recorded."""
    cache = view.cache
    parts = key_parts(key)
    with _Chain(cache, package, parts) as chain:
        if not chain.open(create=False):
            raise EntryNotFound(package, key)
        try:
            st = os.stat(chain.last, dir_fd=chain.parent, follow_symlinks=False)
        except FileNotFoundError:
            raise EntryNotFound(package, key) from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(chain.path(), "the entry is a symbolic link")
        is_tree = stat.S_ISDIR(st.st_mode)
        if is_tree and not _is_tree_at(chain):
            raise EntryNotFound(package, key)  # a folder of keys
        if not is_tree and not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(chain.path(), "the entry is not a regular file")
        used = _touch(chain, st)
        entry = _entry(cache, package, key, (chain.parent, chain.last), is_tree=is_tree)
    if entry is None:
        raise EntryNotFound(package, key)
    return _with_last_used(entry, used)


def _with_last_used(entry: Entry, used: float) -> Entry:
    if used <= entry.last_used:
        return entry
    return attrs.evolve(entry, last_used=used)


def _is_tree_at(chain: _Chain) -> bool:
    try:
        fd = os.open(chain.last, _fs.DIR_FLAGS, dir_fd=chain.parent)
    except OSError:
        return False
    try:
        return _is_tree(fd)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def _interpreter_ranks() -> dict[Tag, int]:
    return _ranks(sys_tags())


def _ranks(tags: Iterable[Tag]) -> dict[Tag, int]:
    ranks: dict[Tag, int] = {}
    for rank, tag in enumerate(tags):
        ranks.setdefault(tag, rank)
    return ranks


def _requirement(requirement: str | Requirement) -> Requirement:
    if isinstance(requirement, Requirement):
        return requirement
    if not isinstance(requirement, str):
        raise TypeError(
            "requirement must be a str or Requirement, not "
            f"{type(requirement).__name__}"
        )
    try:
        return Requirement(requirement)
    except _PackagingInvalidRequirement as exc:
        raise InvalidRequirement(str(exc)) from exc


def _find(
    view: _Handle,
    requirement: str | Requirement,
    kind: str | None,
    tags: Iterable[Tag] | None,
) -> Entry | None:
    req = _requirement(requirement)
    package = view.covers(req.name)
    if kind not in (None, "wheel", "sdist"):
        raise ValueError(f"kind must be 'wheel', 'sdist' or None, not {kind!r}")
    ranks = _interpreter_ranks() if tags is None else _ranks(tags)
    cache = view.cache
    packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
    if packages_fd is None:
        return None
    # Wheels of one package mostly share their tags: rank each set once, by
    # the tag part of the file name (cheaper to hash than a set of tags).
    rank_of: dict[str, int] = {}
    by_version: dict[Version, list[tuple[str, ArtifactName, int]]] = {}
    with _opened([packages_fd]):
        package_fd = _package_dir(cache, packages_fd, package, create=False)
        if package_fd is None:
            return None
        with _opened([package_fd]):
            for key, _, name, is_tree in _walk(package_fd):
                if is_tree:
                    continue
                info = artifact_name(package, name)
                if info.version is None or (kind is not None and info.kind != kind):
                    continue
                rank = 0
                if info.kind == "wheel":
                    tag_part = name.rsplit("-", 3)
                    tag_key = "-".join(tag_part[1:])
                    rank = rank_of.get(tag_key, -2)
                    if rank == -2:
                        found = [ranks[tag] for tag in info.tags if tag in ranks]
                        rank = rank_of[tag_key] = min(found, default=-1)
                    if rank < 0:
                        continue  # no tag this interpreter supports
                by_version.setdefault(info.version, []).append((key, info, rank))
    allowed = list(req.specifier.filter(by_version))
    if not allowed:
        return None
    # Highest version; then highest build tag, a wheel over an sdist, the
    # most preferred tag; among equals the first key in sorted order.
    best = max(
        sorted(by_version[max(allowed)]),
        key=lambda c: (c[1].build_tag, c[1].kind == "wheel", -c[2]),
    )
    return _located(view, package, best[0])


# -- writing -------------------------------------------------------------------


@contextlib.contextmanager
def _writing(what: str) -> Iterator[None]:
    """Turn a failed system call into a pkgcache error naming ``what``."""
    try:
        yield
    except CacheError:
        raise
    except OSError as exc:
        if exc.errno in _READ_ONLY:
            raise CachePermissionError(
                f"cannot {what}: {exc.strerror} (the cache is read-only for "
                "this process)"
            ) from exc
        raise StoreWriteError(exc.errno, f"cannot {what}: {exc.strerror}") from exc


def _staging_name(package: str) -> str:
    return f"{package}.{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def _staging(cache: _CacheLike, package: str) -> Iterator[tuple[int, str]]:
    """A fresh staging name in ``tmp/``, marked live for this process."""
    tmp_fd = _store_dir(cache, STAGING_DIR, create=True)
    assert tmp_fd is not None
    name = _staging_name(package)
    live = (cache._real_root, name)
    with _live_mutex:
        _live.add(live)
    try:
        yield tmp_fd, name
    finally:
        with contextlib.suppress(OSError):
            _fs.remove_tree(name, tmp_fd)  # nothing left after a publish
        with _live_mutex:
            _live.discard(live)
        os.close(tmp_fd)


def _target(
    handle: _TransactionHandle, package: str | None, filename: str | None
) -> NormalizedName:
    """The package a transaction call writes, checked like every write.

    Raises NotLockedError if the block is not open (or was opened by the
    parent of this forked process) or holds the package only for reading.
    """
    if package is not None:
        return handle._writable(package)
    if len(handle.packages) == 1 and not handle.whole_cache:
        return handle._writable(handle.packages[0])
    if filename is not None:
        with contextlib.suppress(InvalidWheelFilename, InvalidSdistFilename):
            if filename.endswith(".whl"):
                return handle._writable(parse_wheel_filename(filename)[0])
            if filename.endswith((".tar.gz", ".zip")):
                return handle._writable(parse_sdist_filename(filename)[0])
    held = "the whole cache" if handle.whole_cache else ", ".join(handle.packages)
    raise TypeError(
        f"this transaction holds {held}: say which package with package=..."
    )


def _publish(
    cache: _CacheLike,
    package: NormalizedName,
    parts: tuple[str, ...],
    staged: tuple[int, str],
    *,
    is_tree: bool,
) -> Entry:
    """Rename ``tmp/<staged>`` into ``packages/<package>/<key>``."""
    key = "/".join(parts)
    tmp_fd, staged_name = staged
    with _Chain(cache, package, parts) as chain:
        chain.open(create=True)
        last, parent = chain.last, chain.parent
        aside = None
        try:
            st = os.stat(last, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(chain.path(), "the entry is a symbolic link")
            if stat.S_ISDIR(st.st_mode):
                if not _is_tree_at(chain):
                    raise InvalidKey(key, "it is a folder of other entries")
            elif not stat.S_ISREG(st.st_mode):
                raise UnsafePathError(chain.path(), "the entry is not a regular file")
            if is_tree or stat.S_ISDIR(st.st_mode):
                # Only a file replaces a file in one rename.
                aside = _staging_name(package)
                os.rename(last, aside, src_dir_fd=parent, dst_dir_fd=tmp_fd)
        try:
            os.rename(staged_name, last, src_dir_fd=tmp_fd, dst_dir_fd=parent)
        except BaseException:
            if aside is not None:
                with contextlib.suppress(OSError):
                    os.rename(aside, last, src_dir_fd=tmp_fd, dst_dir_fd=parent)
            raise
        if aside is not None:
            with contextlib.suppress(OSError):
                _fs.remove_tree(aside, tmp_fd)  # else reaped later
        entry = _entry(cache, package, key, (parent, last), is_tree=is_tree)
    if entry is None:  # pragma: no cover - we hold the exclusive lock
        raise EntryNotFound(package, key)
    return entry


def _add(
    txn: _TransactionHandle,
    source: str | os.PathLike[str],
    key: str | None,
    move: bool,
    package: str | None,
) -> Entry:
    source_path = os.fspath(source)
    if not isinstance(source_path, str):
        raise TypeError("source must be a str path or os.PathLike[str]")
    if key is None:
        key = os.path.basename(source_path)
    parts = key_parts(key)
    name = _target(txn, package, parts[-1])
    check_artifact(name, parts[-1])
    cache = txn.cache
    try:
        source_fd = os.open(source_path, os.O_RDONLY | _fs.CLOEXEC)
    except FileNotFoundError:
        raise SourceNotFound(
            errno.ENOENT, f"cannot store {source_path}: no such file", source_path
        ) from None
    with _opened([source_fd]):
        source_st = os.fstat(source_fd)
        if not stat.S_ISREG(source_st.st_mode):
            raise InvalidArtifact(
                f"cannot store {source_path}: not a regular file (store folders "
                "with add_tree())"
            )
        # Only a file that is ours alone may be renamed in: a link would
        # bring in the link, a second hard link would share the entry.
        link_st = os.lstat(source_path)
        can_rename = (
            move
            and stat.S_ISREG(link_st.st_mode)
            and link_st.st_nlink == 1
            and link_st.st_ino == source_st.st_ino
        )
        with (
            _writing(f"store {source_path} as {name}/{key}"),
            _staging(cache, name) as (
                tmp_fd,
                staged,
            ),
        ):
            moved = False
            if can_rename:
                try:
                    os.rename(source_path, staged, dst_dir_fd=tmp_fd)
                    moved = True
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            try:
                if not moved:
                    target_fd = os.open(
                        staged, _fs.NEW_FILE_FLAGS, 0o666, dir_fd=tmp_fd
                    )
                    with _opened([target_fd]):
                        _fs.copy_contents(source_fd, target_fd)
                now = time.time()
                os.utime(staged, (now, now), dir_fd=tmp_fd, follow_symlinks=False)
                entry = _publish(cache, name, parts, (tmp_fd, staged), is_tree=False)
            except BaseException:
                if moved:  # give the caller its file back
                    with contextlib.suppress(OSError):
                        os.rename(staged, source_path, src_dir_fd=tmp_fd)
                raise
    if move and not moved:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(source_path)
    return entry


@contextlib.contextmanager
def _add_tree(txn: _TransactionHandle, key: str, package: str | None) -> Iterator[Path]:
    parts = key_parts(key)
    name = _target(txn, package, None)
    cache = txn.cache
    what = f"store the tree {name}/{key}"
    with contextlib.ExitStack() as stack:
        with _writing(what):
            tmp_fd, staged = stack.enter_context(_staging(cache, name))
            os.mkdir(staged, 0o777, dir_fd=tmp_fd)
        yield Path(cache.root, STAGING_DIR, staged)
        with _writing(what):
            tree_fd = _fs.open_dir(
                staged,
                tmp_fd,
                create=False,
                display=_display(cache, STAGING_DIR, staged),
            )
            with _opened([tree_fd]):
                size = _fs.tree_size(tree_fd)
                now = time.time()
                with contextlib.suppress(FileNotFoundError):
                    _fs.remove_tree(TREE_MARKER, tree_fd)
                marker_fd = os.open(
                    TREE_MARKER, _fs.NEW_FILE_FLAGS, 0o644, dir_fd=tree_fd
                )
                with _opened([marker_fd]):
                    record = {"format": 1, "size": size, "created": now}
                    os.write(marker_fd, json.dumps(record).encode())
                os.utime(tree_fd, (now, now))
            _publish(cache, name, parts, (tmp_fd, staged), is_tree=True)


def _remove_at(chain: _Chain, tmp_fd: int) -> bool:
    """Remove the entry the chain leads to; ``False`` if there is none."""
    last, parent = chain.last, chain.parent
    try:
        st = os.stat(last, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(chain.path(), "the entry is a symbolic link")
    if stat.S_ISDIR(st.st_mode):
        if not _is_tree_at(chain):
            return False  # a folder of keys, not an entry
        aside = _staging_name(chain.name)
        try:
            os.rename(last, aside, src_dir_fd=parent, dst_dir_fd=tmp_fd)
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            _fs.remove_tree(aside, tmp_fd)  # else reaped later
        return True
    try:
        os.unlink(last, dir_fd=parent)
    except FileNotFoundError:
        return False
    return True


def _remove(cache: _CacheLike, package: NormalizedName, key: str) -> bool:
    parts = key_parts(key)
    with _writing(f"remove {package}/{key}"), _Chain(cache, package, parts) as chain:
        if not chain.open(create=False):
            return False
        tmp_fd = _store_dir(cache, STAGING_DIR, create=True)
        assert tmp_fd is not None
        with _opened([tmp_fd]):
            removed = _remove_at(chain, tmp_fd)
        if removed:
            chain.remove_empty_folders()
        return removed


def _reap(cache: _CacheLike, tmp_fd: int, package: str | None) -> int:
    """Delete staging leftovers of ``package`` (or all) not live here.

    The caller holds the lock that every writer of those names held.
    """
    reaped = 0
    with os.scandir(tmp_fd) as it:
        names = [item.name for item in it]
    for name in names:
        if package is not None and name.partition(".")[0] != package:
            continue
        with _live_mutex:
            if (cache._real_root, name) in _live:
                continue
        with contextlib.suppress(OSError):
            if _fs.remove_tree(name, tmp_fd):
                reaped += 1
    return reaped


def _clear(cache: _CacheLike, package: NormalizedName) -> tuple[int, int]:
    """Remove every entry of ``package``; return (entries, bytes)."""
    with _writing(f"clear {package}"):
        try:
            entries = _scan(cache, package)
        except UnsafePathError:
            entries = []  # a planted link: removed below, never followed
        packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
        tmp_fd = _store_dir(cache, STAGING_DIR, create=packages_fd is not None)
        with _opened([packages_fd, tmp_fd]):
            if packages_fd is not None and tmp_fd is not None:
                aside = _staging_name(package)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(package, aside, src_dir_fd=packages_fd, dst_dir_fd=tmp_fd)
            if tmp_fd is not None:
                _reap(cache, tmp_fd, package)
    return len(entries), sum(entry.size for entry in entries)


def _package_names(cache: _CacheLike) -> list[NormalizedName]:
    packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
    if packages_fd is None:
        return []
    names = []
    with _opened([packages_fd]), os.scandir(packages_fd) as it:
        for item in it:
            if not item.is_dir(follow_symlinks=False):
                continue
            try:
                name = canonical_name(item.name)
            except InvalidPackageName:
                continue
            if name == item.name:
                names.append(name)
    return sorted(names)


def _clean_all(
    cache: _CacheLike, timeout: float | _DefaultTimeout | None
) -> CleanReport:
    with cache.exclusive(timeout=timeout):
        names: list[str] = []
        removed = freed = 0
        for name in _package_names(cache):
            entries, size = _clear(cache, name)
            names.append(name)
            removed += entries
            freed += size
        with _writing("clean the cache"):
            packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
            tmp_fd = _store_dir(cache, STAGING_DIR, create=False)
            with _opened([packages_fd, tmp_fd]):
                if packages_fd is not None:
                    with os.scandir(packages_fd) as it:
                        junk = [item.name for item in it]
                    for item in junk:  # whatever is not a package folder
                        _fs.remove_tree(item, packages_fd)
                if tmp_fd is not None:
                    _reap(cache, tmp_fd, None)
    return CleanReport(tuple(names), removed, freed)


def _clean(
    cache: _CacheLike,
    packages: tuple[str, ...],
    timeout: float | _DefaultTimeout | None,
) -> CleanReport:
    if not packages:
        return _clean_all(cache, timeout)
    names = sorted({canonical_name(package) for package in packages})
    seconds = _resolve_timeout(timeout, cache.timeout)
    deadline = None if seconds is None else time.monotonic() + seconds
    removed = freed = 0
    for name in names:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        with cache.exclusive(name, timeout=left):
            entries, size = _clear(cache, name)
        removed += entries
        freed += size
    return CleanReport(tuple(names), removed, freed)


def _info(cache: _CacheLike, timeout: float | _DefaultTimeout | None) -> CacheInfo:
    per_package: dict[str, tuple[int, int]] = {}
    with cache.reading(timeout=timeout):
        _root_fd(cache)
        for name in _package_names(cache):
            try:
                records = _records(cache, name)
            except UnsafePathError:
                continue
            if records:
                per_package[name] = (len(records), sum(r.size for r in records))
    return CacheInfo(
        root=cache.root,
        packages=len(per_package),
        entries=sum(count for count, _ in per_package.values()),
        bytes=sum(size for _, size in per_package.values()),
        per_package=MappingProxyType(per_package),
    )


@contextlib.contextmanager
def _try_exclusive(cache: _CacheLike, package: NormalizedName) -> Iterator[bool]:
    """Hold ``package`` exclusively if that needs no waiting; yield whether."""
    space = cache._space or cache._open_space()
    if space.package_lock(package).depth(_process.thread_state()):
        yield False  # this very thread holds it: it is busy
        return
    try:
        request = cache.exclusive(package, timeout=0)
        request.__enter__()
    except (LockTimeout, LockOrderError, LockUpgradeError):
        yield False
        return
    try:
        yield True
    finally:
        request.__exit__(None, None, None)


def _prune(
    cache: _CacheLike,
    max_bytes: int | None,
    older_than: float | None,
    timeout: float | _DefaultTimeout | None,
) -> PruneReport:
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
        raise ValueError(f"max_bytes must be None or an int >= 0, not {max_bytes!r}")
    if older_than is not None and (
        not isinstance(older_than, (int, float)) or not older_than >= 0
    ):
        raise ValueError(f"older_than must be None or seconds >= 0, not {older_than!r}")
    removed: list[Entry] = []
    skipped: set[str] = set()
    reaped = 0
    with cache.reading(timeout=timeout):
        _root_fd(cache)
        now = time.time()
        seen: list[_Record] = []
        for package in _package_names(cache):
            with contextlib.suppress(UnsafePathError):
                seen.extend(_records(cache, package))
        seen.sort()  # least recently used first
        total = sum(record.size for record in seen)
        leftovers = _leftover_packages(cache)
        done: set[tuple[str, str]] = set()
        for _ in range(3):
            chosen = _choose(
                seen,
                done,
                skipped,
                total,
                max_bytes=max_bytes,
                older_than=older_than,
                now=now,
            )
            visit = {record.package for record in chosen} | (leftovers - skipped)
            leftovers = set()
            if not visit:
                break
            by_package: dict[str, dict[str, _Record]] = {name: {} for name in visit}
            for record in chosen:
                by_package[record.package][record.key] = record
                done.add((record.package, record.key))
            for name in sorted(visit):
                with _try_exclusive(cache, NormalizedName(name)) as held:
                    if not held:
                        skipped.add(name)
                        continue
                    gone, count = _prune_package(
                        cache, NormalizedName(name), by_package[name]
                    )
                removed.extend(gone)
                total -= sum(entry.size for entry in gone)
                reaped += count
            if max_bytes is None or total <= max_bytes:
                break
    removed.sort(key=lambda e: (e.last_used, e.package, e.key))
    return PruneReport(
        removed=tuple(removed),
        bytes_freed=sum(entry.size for entry in removed),
        skipped=tuple(sorted(skipped)),
        reaped=reaped,
    )


def _leftover_packages(cache: _CacheLike) -> set[str]:
    tmp_fd = _store_dir(cache, STAGING_DIR, create=False)
    if tmp_fd is None:
        return set()
    with _opened([tmp_fd]), os.scandir(tmp_fd) as it:
        names = {item.name for item in it}
    packages = set()
    for name in names:
        with _live_mutex:
            if (cache._real_root, name) in _live:
                continue
        package = name.partition(".")[0]
        with contextlib.suppress(InvalidPackageName):
            if canonical_name(package) == package:
                packages.add(package)
    return packages


def _choose(
    seen: list[_Record],
    done: set[tuple[str, str]],
    skipped: set[str],
    total: int,
    *,
    max_bytes: int | None,
    older_than: float | None,
    now: float,
) -> list[_Record]:
    """The entries to remove next, least recently used first."""
    cutoff = None if older_than is None else now - older_than
    chosen = []
    for entry in seen:
        if (entry.package, entry.key) in done or entry.package in skipped:
            continue
        if (cutoff is not None and entry.last_used < cutoff) or (
            max_bytes is not None and total > max_bytes
        ):
            chosen.append(entry)
            total -= entry.size
    return chosen


def _prune_package(
    cache: _CacheLike, package: NormalizedName, chosen: dict[str, _Record]
) -> tuple[list[Entry], int]:
    """Under ``package``'s exclusive lock: remove chosen entries not used since."""
    gone: list[Entry] = []
    with _writing(f"prune {package}"):
        tmp_fd = _store_dir(cache, STAGING_DIR, create=bool(chosen))
        with _opened([tmp_fd]):
            reaped = _reap(cache, tmp_fd, package) if tmp_fd is not None else 0
            if not chosen or tmp_fd is None:
                return gone, reaped
            for current in _records(cache, package):
                picked = chosen.get(current.key)
                if picked is None or current.last_used > picked.last_used:
                    continue  # used since the scan: no longer the oldest
                parts = key_parts(current.key)
                with _Chain(cache, package, parts) as chain:
                    if not chain.open(create=False):
                        continue
                    location = (chain.parent, chain.last)
                    entry = _entry(
                        cache, package, current.key, location, is_tree=current.is_tree
                    )
                    if entry is not None and _remove_at(chain, tmp_fd):
                        gone.append(entry)
                        if len(parts) > 1:
                            chain.remove_empty_folders()
            if gone:  # the package folder, if that emptied it
                packages_fd = _store_dir(cache, PACKAGES_DIR, create=False)
                if packages_fd is not None:
                    with _opened([packages_fd]), contextlib.suppress(OSError):
                        os.rmdir(package, dir_fd=packages_fd)
    return gone, reaped


# -- the methods of views, transactions and caches ---------------------------


class ViewStoreMethods:
    """Reading the store through a view (mixed into :class:`CacheView`)."""

    __slots__ = ()

    def entries(self: _Handle, package: str) -> list[Entry]:
        """Every entry of ``package``, sorted by key.

        Raises:
            NotLockedError: this handle does not hold ``package``.
            UnsafePathError: the package's folder is a symbolic link.
        """
        return _scan(self.cache, self.covers(package))

    def find(
        self: _Handle,
        requirement: str | Requirement,
        *,
        kind: str | None = None,
        tags: Iterable[Tag] | None = None,
    ) -> Entry | None:
        """The best stored wheel or sdist for ``requirement``, or ``None``.

        Wheels are kept if one of their tags is in ``tags`` (by default
        :func:`packaging.tags.sys_tags`, the tags this interpreter supports).
        Among the entries left, the best has the highest version the
        specifier allows (PEP 440: pre-releases only if the specifier names
        one, or if no final release matches), then the highest build tag,
        then a wheel over an sdist, then the most preferred tag (earliest in
        ``tags``), then the shortest key. Extras and markers are ignored.
        Records the entry's use (see :meth:`Cache.prune`).

        Args:
            requirement: a PEP 508 string (``"setuptools-scm>=8"``) or a
                :class:`packaging.requirements.Requirement`.
            kind: ``"wheel"``, ``"sdist"``, or ``None`` for both.
            tags: supported tags, most preferred first.

        Raises:
            InvalidRequirement: ``requirement`` does not parse.
            NotLockedError: this handle does not hold the package.
        """
        return _find(self, requirement, kind, tags)

    def path(self: _Handle, package: str, key: str) -> Path:
        """Where entry ``key`` of ``package`` is; valid while the block is open.

        Records the entry's use (see :meth:`Cache.prune`).

        Raises:
            EntryNotFound: there is no such entry.
            InvalidKey: ``key`` is not a valid key.
            NotLockedError: this handle does not hold ``package``.
            UnsafePathError: the entry, or a folder on its way, is a symbolic
                link (its target is left untouched).
        """
        return _located(self, self.covers(package), key).path

    def entry(self: _Handle, package: str, key: str) -> Entry:
        """The entry ``key`` of ``package``, with its use recorded.

        Raises the same errors as :meth:`path`.
        """
        return _located(self, self.covers(package), key)


class TransactionStoreMethods:
    """Writing the store (mixed into :class:`CacheTransaction`).

    The methods take the package from ``package=``, else from the one
    package the transaction holds, else (for a wheel or sdist) from the
    file name; inside ``exclusive()`` every package is covered.
    """

    __slots__ = ()

    def add(
        self: _TransactionHandle,
        src: str | os.PathLike[str],
        *,
        key: str | None = None,
        move: bool = False,
        package: str | None = None,
    ) -> Entry:
        """Store the file ``src`` as entry ``key`` (default: its file name).

        The file is copied (or, with ``move=True``, renamed when it is on the
        same file system, else copied and then deleted) into a staging file
        under ``<root>/tmp/``, then renamed into place: readers see the old
        entry or the new one, never a part. An entry with the same key is
        replaced.

        Raises:
            InvalidKey: ``key`` is invalid, or a folder on its way is an
                entry, or it names a folder of other entries.
            InvalidArtifact: a ``.whl``, ``.tar.gz`` or ``.zip`` name does
                not parse as a wheel or sdist of the package; ``src`` is not a
                regular file.
            SourceNotFound: ``src`` does not exist.
            StoreWriteError: the file system failed (disk full, I/O error);
                nothing visible changed.
            CachePermissionError: the cache is read-only.
            UnsafePathError: a symbolic link is planted on the entry's way.
            NotLockedError: this transaction does not hold the package.
        """
        return _add(self, src, key, move, package)

    def add_tree(
        self: _TransactionHandle, key: str, *, package: str | None = None
    ) -> contextlib.AbstractContextManager[Path]:
        """Build a folder entry: ``with txn.add_tree(key) as staging:``.

        ``staging`` is an empty folder under ``<root>/tmp/``. When the block
        ends without an exception, pkgcache adds its marker file
        (``.pkgcache-tree``: size and creation time) and renames the folder
        to ``<root>/packages/<name>/<key>`` in one step, replacing any entry
        with that key; on an exception the folder is deleted.

        Raises the errors of :meth:`add` that apply.
        """
        return _add_tree(self, key, package)

    def remove(
        self: _TransactionHandle, key: str, *, package: str | None = None
    ) -> bool:
        """Remove entry ``key``; return ``False`` if there was none.

        Raises:
            UnsafePathError: the entry is a symbolic link (left in place).
        """
        name = _target(self, package, key_parts(key)[-1])
        return _remove(self.cache, name, key)

    def clear(self: _TransactionHandle, *, package: str | None = None) -> int:
        """Remove every entry of the packages held (or of ``package``).

        Inside ``exclusive()`` without a ``package``, empties the store.
        Also deletes staging leftovers of those packages. Returns the number
        of entries removed.
        """
        self._require_open()
        if package is not None:
            names = [self._writable(package)]
        elif self.whole_cache:
            names = _package_names(self.cache)
        else:
            names = list(self.packages)
        return sum(_clear(self.cache, name)[0] for name in names)


class CacheStoreMethods:
    """Whole-store operations (mixed into :class:`Cache`)."""

    __slots__ = ()

    def clean(
        self: _CacheLike,
        *packages: str,
        timeout: float | _DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> CleanReport:
        """Remove every entry of ``packages``, or of the whole store.

        With packages, each is emptied in turn under its exclusive lock, so
        work on other packages goes on. Without, the whole store is emptied
        under the whole-cache exclusive lock. Lock files, ``CACHEDIR.TAG``
        and the root stay. Staging leftovers of the packages are deleted.

        Raises:
            LockTimeout: a lock was not granted in time (packages cleaned
                before it stay cleaned).
            CachePermissionError: the cache is read-only.
        """
        return _clean(self, packages, timeout)

    def prune(
        self: _CacheLike,
        *,
        max_bytes: int | None = None,
        older_than: float | None = None,
        timeout: float | _DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> PruneReport:
        """Remove least recently used entries; reap dead writers' leftovers.

        Takes ``<root>/.lock`` shared (waiting up to ``timeout``), lists
        every entry, then removes those last used more than ``older_than``
        seconds ago, and more, least recently used first, until the store
        holds at most ``max_bytes``. Each package is taken exclusively only
        if that needs no waiting: a package another thread or process holds
        is skipped (reported in ``skipped``), never waited for. An entry
        used after the listing is kept. Staging leftovers in ``<root>/tmp/``
        whose package lock is free are deleted: their writer is gone.

        Raises:
            ValueError: a negative or non-numeric limit.
            LockTimeout: the whole-cache lock was not granted in time.
        """
        return _prune(self, max_bytes, older_than, timeout)

    def info(
        self: _CacheLike, *, timeout: float | _DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CacheInfo:
        """Count packages, entries and bytes, under ``<root>/.lock`` shared.

        Package locks are not taken: a package being written meanwhile is
        counted before or after the change.
        """
        return _info(self, timeout)
