"""The artifact store of one cache root: file operations, and no locks.

Layout
------
``<root>/packages/<name>/<key>``
    One entry: a file (a wheel, an sdist, anything) or a folder tree.
    ``<name>`` is the canonical project name; ``<key>`` a relative path,
    possibly with sub-folders (``cuda/x-1.0-py3-none-any.whl``), validated
    by :func:`pkgcache._keys.key_parts` (no component starts with ``.``).
    A file entry carries its record in the extended attribute
    ``user.pkgcache`` (``{"format": 1, "size": ...}``) where the file
    system keeps them.
``<root>/packages/<name>/<key>/.pkgcache-tree``
    Marks a folder as a tree entry and records its size and creation time,
    so it cannot be mistaken for a sub-folder of keys. It is written into
    the tree before the tree is published, so it appears with it.
``<root>/tmp/<name>.<unique>``
    Staging: a file or tree being written, or an old entry renamed aside to
    be deleted. Always on the file system of the entries, so publishing is
    one ``rename``.

Protocol
--------
:class:`Store` takes no lock: each method says which lock its caller must
hold. Writes need the exclusive lock of their package (or of the whole
cache), which a :class:`~pkgcache.CacheTransaction` proves; reads a shared
lock, which a :class:`~pkgcache.CacheView` proves. Paths are built from the
real path of the root the locks were taken in, never from the path the
user gave: a link to the root may be re-pointed meanwhile.

* **Publish**: write into ``tmp/<name>.<unique>``, record the size, and
  (when durable) ``fsync`` the data; then ``rename`` it into
  ``packages/<name>/<key>`` and ``fsync`` the folder it went into (and the
  folders created on its way). A file replaces an older file in that one
  rename. A tree (or a file replacing a tree) first renames the old entry
  aside into ``tmp/``, renames the new one in, syncs, then deletes the old
  one. So after a crash or a power cut an entry is absent, the old one or
  the new one, never a part; and once a publish returned, it survives.
* **Remove**: ``unlink`` a file (atomic by itself); rename a tree aside into
  ``tmp/``, sync its old folder, then delete it. An entry already gone is
  not an error. A removal is not made durable: a power cut right after it
  can bring the whole entry back.
* **Check on read**: an entry whose size is not the one recorded at publish
  (a file), or whose marker is unreadable (a tree), is damaged: listing and
  ``find()`` skip it with a warning, :meth:`Store.entry` refuses it, and
  removal and pruning remove it.
* **Staging leftovers**: ``tmp/<name>.*`` belongs to the writer holding the
  exclusive lock of ``<name>`` (or of the whole cache). So a sweeper that
  gets that lock (without waiting) knows the writer is gone: the kernel
  frees the lock of a process killed even by ``kill -9``. Leftovers are
  told apart by that lock, never by age. The writer's own process also
  keeps a set of its live staging names, so a sweep running in the
  writer's own thread (which re-enters the lock) never touches them.
* **Last use**: :meth:`Store.find` and :meth:`Store.entry` set the entry's
  access time (``utime``, at most once a second per entry); pruning removes
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
import itertools
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple

from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)

from . import _fs
from ._errors import (
    CacheError,
    CachePermissionError,
    EntryDamaged,
    EntryNotFound,
    InvalidArtifact,
    InvalidKey,
    InvalidPackageName,
    SourceNotFound,
    SourcePermissionError,
    StoreWriteError,
    UnsafePathError,
)
from ._keys import ArtifactName, artifact_name, check_artifact, key_parts
from ._names import canonical_name
from ._ranking import Candidate, best_of, by_version, interpreter_ranks, ranks
from ._records import Entry

__all__ = ["Seen", "Store", "choose_package"]

logger = logging.getLogger("pkgcache")

PACKAGES_DIR = "packages"
STAGING_DIR = "tmp"
TREE_MARKER = ".pkgcache-tree"
#: Seconds between two recordings of an entry's last use.
LAST_USED_RESOLUTION = 1.0
#: A package folder modified less than this long before it was listed is
#: listed again next time: a second change within the file system's
#: timestamp granularity (a jiffy on ext4, two seconds on FAT) would leave
#: its modification time unchanged, and a cached listing stale.
SETTLED_NS = 3_000_000_000
#: Package listings kept per store, and ``find()`` answers per listing.
LISTINGS = 256
ANSWERS = 64
RECORD_FORMAT = 1

_READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_TREE = ArtifactName("tree")

# Staging names of this process's writers still running: (real root, name).
# Set operations are atomic, so no mutex (and nothing to reset after fork).
_live: set[tuple[str, str]] = set()
_counter = itertools.count()

#: The caller's check, run right before each rename that publishes or
#: removes: it raises if the lock that allows the write was lost.
Verify = Callable[[], None]


class Seen(NamedTuple):
    """One entry as a listing saw it: what prune and info need, and more."""

    key: str
    is_tree: bool
    size: int
    created: float
    last_used: float
    damage: str | None  # why it fails its check; None when sound


class _Listing:
    """The entries of one package folder that ``find()`` can choose from.

    Valid while every folder in ``stamp`` (relative path, device, inode,
    modification time in ns) is unchanged, if ``settled``; an unsettled
    listing is only a source of parsed names for the next one.
    """

    __slots__ = ("answers", "by_key", "settled", "stamp", "versions")

    def __init__(
        self,
        stamp: tuple[tuple[str, int, int, int], ...],
        by_key: dict[str, Candidate],
        *,
        settled: bool,
    ) -> None:
        self.stamp = stamp
        self.by_key = by_key
        self.settled = settled
        self.versions = by_version(by_key.values())
        self.answers: dict[object, str | None] = {}


class Store:
    """The artifact store of one cache root: scan, locate, publish, remove.

    Takes no lock: each method names the lock its caller must hold. Safe to
    share between threads (its caches are updated with atomic operations).

    Args:
        root: the real path of the cache root (links resolved), where the
            locks were taken.
        root_fd: a descriptor of that folder, kept open by the caller.
        durable: sync every publish to disk before it returns.
    """

    def __init__(self, root: str, root_fd: int, *, durable: bool) -> None:
        _fs.require_dir_fd()
        self.root = root
        self.durable = durable
        self._root_fd = root_fd
        self._listings: dict[NormalizedName, _Listing] = {}

    def __repr__(self) -> str:
        return f"<Store {self.root} durable={self.durable}>"

    # -- folders -------------------------------------------------------------------

    def _display(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _open(self, name: str) -> int | None:
        """Open ``packages/`` or ``tmp/``; ``None`` if it does not exist."""
        display = self._display(name)
        try:
            return _fs.open_dir(name, self._root_fd, display=display)
        except FileNotFoundError:
            return None
        except NotADirectoryError as exc:
            raise UnsafePathError(display, "it is not a folder") from exc

    def _ensure(self, name: str) -> tuple[int, bool]:
        """Open ``packages/`` or ``tmp/``, creating it; also whether it was."""
        display = self._display(name)
        try:
            return _fs.ensure_dir(name, self._root_fd, display=display)
        except NotADirectoryError as exc:
            raise UnsafePathError(display, "it is not a folder") from exc

    @contextlib.contextmanager
    def _package_folder(self, package: NormalizedName) -> Iterator[int | None]:
        """The package's folder, or ``None`` if there is none."""
        packages_fd = self._open(PACKAGES_DIR)
        package_fd = None
        if packages_fd is not None:
            display = self._display(PACKAGES_DIR, package)
            try:
                package_fd = _fs.open_dir(package, packages_fd, display=display)
            except FileNotFoundError:
                pass
            except NotADirectoryError as exc:
                raise UnsafePathError(display, "it is not a folder") from exc
            finally:
                os.close(packages_fd)
        try:
            yield package_fd
        finally:
            if package_fd is not None:
                os.close(package_fd)

    def _path(self, package: str, key: str) -> Path:
        # One string to parse: much cheaper than joining parts (pathlib).
        return Path(f"{self.root}/{PACKAGES_DIR}/{package}/{key}")

    # -- reading: the caller holds the package shared (or exclusive) ---------------

    def survey(self, package: NormalizedName) -> list[Seen]:
        """Every entry of ``package``, damaged ones included, in no order.

        Lock: the package, shared or exclusive (or the whole cache).

        Raises:
            UnsafePathError: the package folder is a symbolic link.
        """
        found: list[Seen] = []

        def on_file(key: str, folder_fd: int, name: str) -> None:
            seen = _file_seen(key, folder_fd, name)
            if seen is not None:
                found.append(seen)

        def on_tree(key: str, tree_fd: int) -> None:
            found.append(_tree_seen(key, tree_fd))

        with self._package_folder(package) as package_fd:
            if package_fd is not None:
                _walk_keys(package_fd, on_file, on_tree)
        return found

    def entries(self, package: NormalizedName) -> list[Entry]:
        """Every sound entry of ``package``, sorted by key.

        Damaged entries are skipped, each with a warning.

        Lock: the package, shared or exclusive (or the whole cache).

        Raises:
            UnsafePathError: the package folder is a symbolic link.
        """
        entries = []
        for seen in self.survey(package):
            if seen.damage is None:
                entries.append(self.describe(package, seen))
            else:
                _warn_damaged(package, seen.key, seen.damage)
        entries.sort(key=lambda entry: entry.key)
        return entries

    def describe(self, package: NormalizedName, seen: Seen) -> Entry:
        """The :class:`~pkgcache.Entry` for what a listing saw (no I/O)."""
        info = (
            _TREE
            if seen.is_tree
            else artifact_name(package, seen.key.rpartition("/")[2])
        )
        return Entry(
            package=package,
            key=seen.key,
            path=self._path(package, seen.key),
            kind=info.kind,
            version=info.version,
            build_tag=info.build_tag,
            tags=info.tags,
            size=seen.size,
            created=seen.created,
            last_used=seen.last_used,
        )

    def entry(self, package: NormalizedName, key: str) -> Entry:
        """The entry ``key`` of ``package``, with its use recorded.

        Lock: the package, shared or exclusive (or the whole cache).

        Raises:
            EntryNotFound: there is no such entry.
            EntryDamaged: it fails its check.
            InvalidKey: ``key`` is not a valid key.
            UnsafePathError: the entry, or a folder on its way, is a symbolic
                link (its target is left untouched).
        """
        parts = key_parts(key)
        with _Chain(self, package, parts) as chain:
            if not chain.open(create=False):
                raise EntryNotFound(package, key)
            try:
                st = os.stat(chain.last, dir_fd=chain.parent, follow_symlinks=False)
            except FileNotFoundError:
                raise EntryNotFound(package, key) from None
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(chain.path(), "the entry is a symbolic link")
            if stat.S_ISDIR(st.st_mode):
                seen = chain.tree_seen()
                if seen is None:
                    raise EntryNotFound(package, key)  # a folder of keys
            elif stat.S_ISREG(st.st_mode):
                seen = _file_seen(key, chain.parent, chain.last)
            else:
                raise UnsafePathError(chain.path(), "the entry is not a regular file")
            if seen is None:
                raise EntryNotFound(package, key)
            if seen.damage is not None:
                raise EntryDamaged(package, key, seen.damage)
            used = _touch(chain, st)
        if used > seen.last_used:
            seen = seen._replace(last_used=used)
        return self.describe(package, seen)

    def find(
        self,
        package: NormalizedName,
        specifier: SpecifierSet,
        *,
        kind: str | None = None,
        tags: Iterable[Tag] | None = None,
    ) -> Entry | None:
        """The best wheel or sdist of ``package`` for ``specifier``, or ``None``.

        Chosen by :mod:`pkgcache._ranking`; its use is recorded. The parsed
        listing of the package folder is kept, keyed by the identity and
        modification time of its folders, and so are the answers: a repeated
        call lists nothing and parses nothing. A damaged
        winner is skipped (with a warning) for the next best.

        Lock: the package, shared or exclusive (or the whole cache).

        Raises:
            ValueError: ``kind`` is not ``"wheel"``, ``"sdist"`` or ``None``.
            UnsafePathError: the package folder is a symbolic link.
        """
        if kind not in (None, "wheel", "sdist"):
            raise ValueError(f"kind must be 'wheel', 'sdist' or None, not {kind!r}")
        tag_key: tuple[Tag, ...] | None = None
        if tags is None:
            ranked = interpreter_ranks()
        else:
            tag_key = tuple(tags)
            ranked = ranks(tag_key)
        listing = self._listing(package)
        if listing is None:
            return None
        question = (specifier, specifier.prereleases, kind, tag_key)
        skipped: frozenset[str] = frozenset()
        while True:
            if not skipped and question in listing.answers:
                key = listing.answers[question]
            else:
                best = best_of(
                    listing.versions,
                    specifier,
                    kind=kind,
                    ranks=ranked,
                    exclude=skipped,
                )
                key = None if best is None else best.key
                if not skipped:
                    if len(listing.answers) >= ANSWERS:
                        listing.answers.clear()
                    listing.answers[question] = key
            if key is None:
                return None
            try:
                return self.entry(package, key)
            except EntryDamaged as exc:
                _warn_damaged(package, key, exc.reason)
            except EntryNotFound:
                pass  # removed behind the lock's back: the next best
            skipped |= {key}

    def _listing(self, package: NormalizedName) -> _Listing | None:
        with self._package_folder(package) as package_fd:
            if package_fd is None:
                self._listings.pop(package, None)
                return None
            cached = self._listings.pop(package, None)
            if (
                cached is not None
                and cached.settled
                and _unchanged(package_fd, cached.stamp)
            ):
                listing = cached
            else:
                known = {} if cached is None else cached.by_key
                listing = _list(package, package_fd, known)
        if len(self._listings) >= LISTINGS:
            self._listings.pop(next(iter(self._listings)), None)
        self._listings[package] = listing  # the most recently used last
        return listing

    # -- writing: the caller holds the package exclusive (or the whole cache) ----

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
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

    @contextlib.contextmanager
    def _staging(self, package: str) -> Iterator[tuple[int, str]]:
        """A fresh staging name in ``tmp/``, marked live for this process.

        Whatever is left under the name is deleted on the way out; if that
        fails (whatever the exception), the name stops being live, so the
        next prune or clean reaps it, and the caller's error goes on.
        """
        tmp_fd, _ = self._ensure(STAGING_DIR)
        name = _staging_name(package)
        live = (self.root, name)
        _live.add(live)
        try:
            yield tmp_fd, name
        finally:
            try:
                _discard(tmp_fd, name)
            finally:
                _live.discard(live)
                os.close(tmp_fd)

    def add(
        self,
        package: NormalizedName,
        source: str | os.PathLike[str],
        key: str | None,
        *,
        move: bool,
        verify: Verify,
    ) -> Entry:
        """Store the file ``source`` as entry ``key`` (default: its file name).

        Lock: ``package`` exclusive (or the whole cache).

        Raises: see :meth:`pkgcache.CacheTransaction.add`.
        """
        source_path = os.fspath(source)
        if not isinstance(source_path, str):
            raise TypeError("source must be a str path or os.PathLike[str]")
        parts = key_parts(os.path.basename(source_path) if key is None else key)
        check_artifact(package, parts[-1])
        key = "/".join(parts)
        source_fd = _open_source(source_path)
        try:
            if move:
                _check_removable(source_path)
            entry, moved = self._add(
                package, parts, source_path, source_fd, move=move, verify=verify
            )
        finally:
            os.close(source_fd)
        if move and not moved:
            try:
                os.unlink(source_path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # The entry is stored: report success, and say why the
                # source is still there.
                logger.warning(
                    "pkgcache: stored %s as %s/%s but could not delete it: %s",
                    source_path,
                    package,
                    key,
                    exc.strerror,
                )
        return entry

    def _add(
        self,
        package: NormalizedName,
        parts: tuple[str, ...],
        source_path: str,
        source_fd: int,
        *,
        move: bool,
        verify: Verify,
    ) -> tuple[Entry, bool]:
        what = f"store {source_path} as {package}/{'/'.join(parts)}"
        with self._writing(what), self._staging(package) as (tmp_fd, staged):
            moved = move and _movable(source_path, source_fd)
            if moved:
                try:
                    os.rename(source_path, staged, dst_dir_fd=tmp_fd)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    moved = False
            try:
                if moved:
                    target_fd = os.open(staged, _fs.READ_FLAGS, dir_fd=tmp_fd)
                else:
                    target_fd = os.open(
                        staged, _fs.NEW_FILE_FLAGS, 0o666, dir_fd=tmp_fd
                    )
                try:
                    if not moved:
                        _fs.copy_contents(source_fd, target_fd)
                    self._seal(target_fd)
                finally:
                    os.close(target_fd)
                entry = self._publish(package, parts, (tmp_fd, staged), False, verify)
            except BaseException:
                if moved:  # give the caller its file back
                    with contextlib.suppress(OSError):
                        os.rename(staged, source_path, src_dir_fd=tmp_fd)
                raise
        return entry, moved

    def _seal(self, fd: int) -> None:
        """Record the staged file's size and times; sync it if durable."""
        _fs.set_record(fd, _record(os.fstat(fd).st_size))
        now = time.time()
        os.utime(fd, (now, now))
        if self.durable:
            os.fsync(fd)

    def add_tree(
        self, package: NormalizedName, key: str, *, verify: Verify
    ) -> AbstractContextManager[Path]:
        """Build a folder entry: ``with store.add_tree(pkg, key, ...) as staging:``.

        The key is checked at once, before the block.

        Lock: ``package`` exclusive (or the whole cache), for the whole block.

        Raises: see :meth:`pkgcache.CacheTransaction.add_tree`.
        """
        return self._tree(package, key_parts(key), verify)

    @contextlib.contextmanager
    def _tree(
        self, package: NormalizedName, parts: tuple[str, ...], verify: Verify
    ) -> Iterator[Path]:
        what = f"store the tree {package}/{'/'.join(parts)}"
        with contextlib.ExitStack() as stack:
            with self._writing(what):
                tmp_fd, staged = stack.enter_context(self._staging(package))
                os.mkdir(staged, 0o777, dir_fd=tmp_fd)
            yield Path(self.root, STAGING_DIR, staged)
            with self._writing(what):
                display = self._display(STAGING_DIR, staged)
                tree_fd = _fs.open_dir(staged, tmp_fd, display=display)
                try:
                    self._seal_tree(tree_fd)
                finally:
                    os.close(tree_fd)
                self._publish(package, parts, (tmp_fd, staged), True, verify)

    def _seal_tree(self, tree_fd: int) -> None:
        """Write the tree's marker (size, creation time); sync it all if durable."""
        _fs.remove_tree(TREE_MARKER, tree_fd)  # one the caller planted
        size = _fs.tree_size(tree_fd)
        now = time.time()
        marker_fd = os.open(TREE_MARKER, _fs.NEW_FILE_FLAGS, 0o644, dir_fd=tree_fd)
        try:
            record = {"format": RECORD_FORMAT, "size": size, "created": now}
            os.write(marker_fd, json.dumps(record).encode())
        finally:
            os.close(marker_fd)
        os.utime(tree_fd, (now, now))
        if self.durable:
            _fs.sync_tree(tree_fd)

    def _publish(
        self,
        package: NormalizedName,
        parts: tuple[str, ...],
        staged: tuple[int, str],
        is_tree: bool,
        verify: Verify,
    ) -> Entry:
        """Rename ``tmp/<staged>`` into ``packages/<package>/<key>``."""
        key = "/".join(parts)
        tmp_fd, staged_name = staged
        with _Chain(self, package, parts) as chain:
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
                    if chain.tree_seen() is None:
                        raise InvalidKey(key, "it is a folder of other entries")
                elif not stat.S_ISREG(st.st_mode):
                    raise UnsafePathError(
                        chain.path(), "the entry is not a regular file"
                    )
                if is_tree or stat.S_ISDIR(st.st_mode):
                    # Only a file replaces a file in one rename.
                    aside = _staging_name(package)
                    verify()
                    os.rename(last, aside, src_dir_fd=parent, dst_dir_fd=tmp_fd)
            try:
                verify()
                os.rename(staged_name, last, src_dir_fd=tmp_fd, dst_dir_fd=parent)
            except BaseException:
                if aside is not None:
                    with contextlib.suppress(OSError):
                        os.rename(aside, last, src_dir_fd=tmp_fd, dst_dir_fd=parent)
                raise
            if self.durable:
                chain.sync()
            if aside is not None:
                _discard(tmp_fd, aside)
            seen = chain.tree_seen() if is_tree else _file_seen(key, parent, last)
        if seen is None:  # pragma: no cover - we hold the exclusive lock
            raise EntryNotFound(package, key)
        return self.describe(package, seen)

    def remove(self, package: NormalizedName, key: str, *, verify: Verify) -> bool:
        """Remove entry ``key``; ``False`` if there was none.

        Lock: ``package`` exclusive (or the whole cache).

        Raises:
            InvalidKey: ``key`` is not a valid key.
            UnsafePathError: the entry is a symbolic link (left in place).
        """
        parts = key_parts(key)
        with (
            self._writing(f"remove {package}/{key}"),
            _Chain(self, package, parts) as chain,
        ):
            if not chain.open(create=False):
                return False
            removed = self._remove_at(chain, verify)
            if removed:
                chain.remove_empty_folders()
            return removed

    def _remove_at(self, chain: _Chain, verify: Verify) -> bool:
        """Remove the entry the chain leads to; ``False`` if there is none."""
        last, parent = chain.last, chain.parent
        try:
            st = os.stat(last, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(chain.path(), "the entry is a symbolic link")
        if stat.S_ISDIR(st.st_mode):
            if chain.tree_seen() is None:
                return False  # a folder of keys, not an entry
            return self._set_aside(parent, last, chain.package, verify)
        verify()
        try:
            os.unlink(last, dir_fd=parent)
        except FileNotFoundError:
            return False
        return True

    def _set_aside(
        self, folder_fd: int, name: str, package: str, verify: Verify
    ) -> bool:
        """Rename folder ``name`` into ``tmp/`` and delete it there.

        Returns whether it was there. On a durable cache its old folder is
        synced in between: the name no longer leads to the files before
        they go, so a power cut never shows them half deleted.
        """
        tmp_fd, _ = self._ensure(STAGING_DIR)
        try:
            aside = _staging_name(package)
            verify()
            try:
                os.rename(name, aside, src_dir_fd=folder_fd, dst_dir_fd=tmp_fd)
            except FileNotFoundError:
                return False
            if self.durable:
                os.fsync(folder_fd)
            _discard(tmp_fd, aside)
            return True
        finally:
            os.close(tmp_fd)

    def clear(self, package: NormalizedName, *, verify: Verify) -> tuple[int, int]:
        """Remove every entry of ``package`` and its staging leftovers.

        Returns the number of entries removed and their bytes.

        Lock: ``package`` exclusive (or the whole cache).
        """
        with self._writing(f"clear {package}"):
            try:
                seen = self.survey(package)
            except UnsafePathError:
                seen = []  # a planted link: removed below, never followed
            packages_fd = self._open(PACKAGES_DIR)
            if packages_fd is not None:
                try:
                    self._set_aside(packages_fd, package, package, verify)
                finally:
                    os.close(packages_fd)
            self.reap(package)
        return len(seen), sum(item.size for item in seen)

    def clear_all(self, *, verify: Verify) -> tuple[list[NormalizedName], int, int]:
        """Empty the store, and ``tmp/`` but for live staging of this process.

        Every package is cleared, and anything else in ``packages/`` deleted.
        Returns the packages cleared, the entries removed and their bytes.

        Lock: the whole cache, exclusive.
        """
        names = self.package_names()
        removed = freed = 0
        for name in names:
            entries, size = self.clear(name, verify=verify)
            removed += entries
            freed += size
        with self._writing("clean the cache"):
            packages_fd = self._open(PACKAGES_DIR)
            if packages_fd is not None:
                try:
                    with os.scandir(packages_fd) as it:
                        junk = [item.name for item in it]
                    for item in junk:  # whatever is not a package folder
                        verify()
                        _fs.remove_tree(item, packages_fd)
                finally:
                    os.close(packages_fd)
            self.reap(None)
        return names, removed, freed

    def reap(self, package: str | None) -> int:
        """Delete staging leftovers of ``package`` (or all) not live here.

        Lock: ``package`` exclusive, or the whole cache exclusive for
        ``None``: every writer of those names held it, so none is running.
        """
        tmp_fd = self._open(STAGING_DIR)
        if tmp_fd is None:
            return 0
        reaped = 0
        try:
            for name in self._leftovers(tmp_fd):
                if package is None or _owner(name) == package:
                    reaped += _discard(tmp_fd, name)
        finally:
            os.close(tmp_fd)
        return reaped

    def _leftovers(self, tmp_fd: int) -> list[str]:
        with os.scandir(tmp_fd) as it:
            names = [item.name for item in it]
        return [name for name in names if (self.root, name) not in _live]

    # -- the whole store: the caller holds the whole cache, shared or exclusive ---

    def package_names(self) -> list[NormalizedName]:
        """Canonical names of the package folders, sorted.

        Lock: the whole cache, shared or exclusive.
        """
        packages_fd = self._open(PACKAGES_DIR)
        if packages_fd is None:
            return []
        names = []
        try:
            with os.scandir(packages_fd) as it:
                for item in it:
                    if not item.is_dir(follow_symlinks=False):
                        continue
                    try:
                        name = canonical_name(item.name)
                    except InvalidPackageName:
                        continue
                    if name == item.name:
                        names.append(name)
        finally:
            os.close(packages_fd)
        return sorted(names)

    def leftover_owners(self) -> set[NormalizedName]:
        """Packages with staging names in ``tmp/`` that are not live here.

        Lock: the whole cache, shared or exclusive.
        """
        tmp_fd = self._open(STAGING_DIR)
        if tmp_fd is None:
            return set()
        try:
            owners = {_owner(name) for name in self._leftovers(tmp_fd)}
        finally:
            os.close(tmp_fd)
        names = set()
        for owner in owners:
            with contextlib.suppress(InvalidPackageName):
                if canonical_name(owner) == owner:
                    names.add(NormalizedName(owner))
        return names

    def staging_usage(self) -> tuple[int, int]:
        """Files and folders in ``tmp/``, and their bytes (trees walked).

        Lock: the whole cache, shared or exclusive. Writers may be at work:
        a name that vanishes meanwhile is not counted.
        """
        tmp_fd = self._open(STAGING_DIR)
        if tmp_fd is None:
            return 0, 0
        count = size = 0
        try:
            with os.scandir(tmp_fd) as it:
                names = [item.name for item in it]
            for name in names:
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        folder = os.open(name, _fs.DIR_FLAGS, dir_fd=tmp_fd)
                        try:
                            size += _fs.tree_size(folder)
                        finally:
                            os.close(folder)
                    elif stat.S_ISREG(st.st_mode):
                        size += st.st_size
                    count += 1
        finally:
            os.close(tmp_fd)
        return count, size


# -- helpers -----------------------------------------------------------------------


def choose_package(
    package: str | None,
    held: tuple[NormalizedName, ...],
    whole_cache: bool,
    key: object = None,
) -> str:
    """The package a transaction call is about (not yet checked against the hold).

    ``package=`` if given, else the one package held, else the project of
    the wheel or sdist the key (or source) names.

    Raises:
        TypeError: none of those decides.
    """
    if package is not None:
        return package
    if len(held) == 1 and not whole_cache:
        return held[0]
    if isinstance(key, str):
        filename = key.rpartition("/")[2]
        with contextlib.suppress(InvalidWheelFilename, InvalidSdistFilename):
            if filename.endswith(".whl"):
                return parse_wheel_filename(filename)[0]
            if filename.endswith((".tar.gz", ".zip")):
                return parse_sdist_filename(filename)[0]
    holds = "the whole cache" if whole_cache else ", ".join(held)
    raise TypeError(
        f"this transaction holds {holds}: say which package with package=..."
    )


def _staging_name(package: str) -> str:
    return f"{package}.{os.getpid()}-{next(_counter)}-{secrets.token_hex(4)}"


def _owner(staging_name: str) -> str:
    return staging_name.partition(".")[0]


def _discard(tmp_fd: int, name: str) -> int:
    """Delete ``tmp/<name>`` if there; on any failure leave it to be reaped."""
    try:
        return int(_fs.remove_tree(name, tmp_fd))
    except Exception as exc:
        logger.warning(
            "pkgcache: could not delete staging %s (%s: %s); it is reaped later",
            name,
            type(exc).__name__,
            exc,
        )
        return 0


def _warn_damaged(package: str, key: str, damage: str) -> None:
    logger.warning(
        "pkgcache: skipping damaged entry %s/%s (%s); prune or clean removes it",
        package,
        key,
        damage,
    )


def _is_tree(fd: int) -> bool:
    try:
        mode = os.stat(TREE_MARKER, dir_fd=fd, follow_symlinks=False).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode)


def _walk_keys(
    package_fd: int,
    on_file: Callable[[str, int, str], None],
    on_tree: Callable[[str, int], None],
) -> None:
    """Call ``on_file(key, folder fd, name)`` or ``on_tree(key, tree fd)`` per entry.

    Names starting with ``.`` are the store's own; links, FIFOs and the like
    are never entries; trees are not descended into.
    """

    def enter(fd: int, path: tuple[str, ...], children: list[os.DirEntry[str]]) -> None:
        prefix = "".join(f"{part}/" for part in path)
        for child in children:
            with contextlib.suppress(FileNotFoundError):
                if not child.name.startswith(".") and child.is_file(
                    follow_symlinks=False
                ):
                    on_file(prefix + child.name, fd, child.name)

    def descend(fd: int, path: tuple[str, ...]) -> bool:
        if path[-1].startswith("."):
            return False
        if _is_tree(fd):
            on_tree("/".join(path), fd)
            return False
        return True

    _fs.walk(package_fd, enter, descend=descend)


def _file_seen(key: str, parent_fd: int, name: str) -> Seen | None:
    """What file entry ``name`` in ``parent_fd`` is; ``None`` if it is none."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return None
        record = _fs.get_record(name, parent_fd)
    except FileNotFoundError:
        return None
    damage = None
    # The record is pkgcache's own: compared as bytes, parsed only to say
    # what is wrong (parsing every record doubled the cost of a listing).
    if record is not None and record != _record(st.st_size):
        recorded = _recorded_size(record)
        if recorded is None or recorded == st.st_size:
            damage = "its record is unreadable"
        else:
            damage = f"{st.st_size} bytes, {recorded} when published"
    return Seen(key, False, st.st_size, st.st_mtime, st.st_atime, damage)


def _record(size: int) -> bytes:
    """The record of a file entry of ``size`` bytes, as stored."""
    return b'{"format": %d, "size": %d}' % (RECORD_FORMAT, size)


def _recorded_size(record: bytes) -> int | None:
    try:
        size = json.loads(record)["size"]
    except (ValueError, TypeError, KeyError):
        return None
    return size if type(size) is int else None


def _tree_seen(key: str, tree_fd: int) -> Seen:
    """What the tree entry open as ``tree_fd`` is, from its marker."""
    st = os.fstat(tree_fd)
    try:
        marker_fd = os.open(TREE_MARKER, _fs.READ_FLAGS, dir_fd=tree_fd)
        try:
            record = json.loads(os.read(marker_fd, 4096))
        finally:
            os.close(marker_fd)
        size, created = record["size"], record["created"]
        if type(size) is int and isinstance(created, (int, float)):
            return Seen(key, True, size, float(created), st.st_atime, None)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    # Measured for the sizes maintenance reports; never handed out.
    size = _fs.tree_size(tree_fd, exclude=TREE_MARKER)
    return Seen(key, True, size, st.st_mtime, st.st_atime, "unreadable tree marker")


def _list(
    package: NormalizedName, package_fd: int, known: dict[str, Candidate]
) -> _Listing:
    """List the package's wheels and sdists.

    ``known`` holds candidates of an earlier listing, by key: a key's file
    name says the same thing every time, so only new names are parsed.
    """
    started = time.time_ns()
    stamp: list[tuple[str, int, int, int]] = []
    by_key: dict[str, Candidate] = {}

    def enter(fd: int, path: tuple[str, ...], children: list[os.DirEntry[str]]) -> None:
        st = os.fstat(fd)
        stamp.append(("/".join(path), st.st_dev, st.st_ino, st.st_mtime_ns))
        prefix = "".join(f"{part}/" for part in path)
        # Once per file of a package that may hold thousands: kept lean.
        for child in children:
            name = child.name
            key = prefix + name
            candidate = known.get(key)
            if candidate is None:
                if name[0] == ".":
                    continue
                kind, version, build_tag, tags = artifact_name(package, name)
                if version is None:
                    continue  # a plain file
                candidate = Candidate(key, kind, version, build_tag, tags)  # type: ignore[arg-type]
            try:
                if child.is_file(follow_symlinks=False):
                    by_key[key] = candidate
            except FileNotFoundError:
                continue

    def descend(fd: int, path: tuple[str, ...]) -> bool:
        return not path[-1].startswith(".") and not _is_tree(fd)

    _fs.walk(package_fd, enter, descend=descend)
    settled = all(mtime < started - SETTLED_NS for *_, mtime in stamp)
    return _Listing(tuple(stamp), by_key, settled=settled)


def _unchanged(package_fd: int, stamp: tuple[tuple[str, int, int, int], ...]) -> bool:
    """Whether every folder of a listing is still the one listed, unmodified."""
    for path, device, inode, mtime in stamp:
        try:
            if path:
                st = os.stat(path, dir_fd=package_fd, follow_symlinks=False)
            else:
                st = os.fstat(package_fd)
        except OSError:
            return False
        if (st.st_dev, st.st_ino, st.st_mtime_ns) != (device, inode, mtime):
            return False
    return True


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


def _open_source(path: str) -> int:
    """Open the file to store, refusing anything but a regular file.

    The type is checked before opening (a device is never opened), and the
    open does not wait (``O_NONBLOCK``): a FIFO swapped in between would
    otherwise block until a writer comes, while the package lock is held.

    Raises:
        SourceNotFound: it does not exist.
        SourcePermissionError: it cannot be read.
        InvalidArtifact: not a regular file.
    """
    not_regular = f"cannot store {path}: not a regular file"
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArtifact(f"{not_regular} but a folder (see add_tree())")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArtifact(f"{not_regular} but a FIFO, socket or device")
        fd = os.open(path, os.O_RDONLY | _fs.NONBLOCK | _fs.CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceNotFound(
            errno.ENOENT, f"cannot store {path}: no such file", path
        ) from None
    except PermissionError as exc:
        raise SourcePermissionError(
            exc.errno, f"cannot store {path}: {exc.strerror}", path
        ) from None
    except OSError as exc:  # ENXIO: a socket, swapped in after the stat
        raise InvalidArtifact(f"cannot store {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, swapped in meanwhile
        os.close(fd)
        raise InvalidArtifact(f"{not_regular} (it changed while being opened)")
    return fd


def _check_removable(path: str) -> None:
    """Refuse a move whose source this process could not delete afterwards.

    ``move=True`` from another file system copies and then deletes: a source
    on a read-only mount was once stored, then the delete raised ``EROFS``
    and the caller believed the add had failed.

    Raises:
        SourcePermissionError: the source's folder cannot be written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    effective = os.access in os.supports_effective_ids
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=effective):
        raise SourcePermissionError(
            errno.EACCES,
            f"cannot move {path} into the cache: its folder {folder} cannot be "
            "written (read-only?); store a copy with move=False",
            path,
        )


def _movable(path: str, fd: int) -> bool:
    """Whether the open source ``fd`` may be renamed into the store.

    Only a file that is ours alone: a link would bring in the link, a second
    hard link would share the entry with a file outside the cache.
    """
    try:
        link_st = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(link_st.st_mode)
        and link_st.st_nlink == 1
        and link_st.st_ino == os.fstat(fd).st_ino
    )


class _Chain:
    """The folders leading to one key, opened one by one with ``O_NOFOLLOW``.

    ``fds[0]`` is the package folder; ``fds[-1]`` holds the key's last part.
    """

    def __init__(
        self, store: Store, package: NormalizedName, parts: tuple[str, ...]
    ) -> None:
        self.store = store
        self.package = package
        self.parts = parts
        self.fds: list[int] = []
        self.packages_fd: int | None = None
        # Folders that gained a name while the chain was opened (to sync).
        self.grown: list[int] = []

    def open(self, *, create: bool) -> bool:
        """Open the chain; ``False`` if it does not lead to a possible entry.

        Raises:
            UnsafePathError: a folder on the way is a symbolic link.
            InvalidKey: (``create``) a folder on the way is an entry.
        """
        store = self.store
        key = "/".join(self.parts)
        if create:
            self.packages_fd, created = store._ensure(PACKAGES_DIR)
            if created:
                self.grown.append(store._root_fd)
        else:
            self.packages_fd = store._open(PACKAGES_DIR)
            if self.packages_fd is None:
                return False
        parent = self.packages_fd
        for depth, name in enumerate((self.package, *self.parts[:-1])):
            prefix = "/".join(self.parts[:depth])
            display = store._display(PACKAGES_DIR, self.package, *self.parts[:depth])
            try:
                if create:
                    fd, created = _fs.ensure_dir(name, parent, display=display)
                    if created:
                        self.grown.append(parent)
                else:
                    fd = _fs.open_dir(name, parent, display=display)
            except FileNotFoundError:
                return False
            except NotADirectoryError:
                if depth == 0:
                    raise UnsafePathError(display, "it is not a folder") from None
                if create:
                    raise InvalidKey(key, f"{prefix!r} is a file entry") from None
                return False
            self.fds.append(fd)
            parent = fd
            if depth and _is_tree(fd):
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
        return self.store._path(self.package, "/".join(self.parts))

    def tree_seen(self) -> Seen | None:
        """The tree entry at the chain's end; ``None`` if it is no tree."""
        try:
            fd = os.open(self.last, _fs.DIR_FLAGS, dir_fd=self.parent)
        except OSError:
            return None
        try:
            return _tree_seen("/".join(self.parts), fd) if _is_tree(fd) else None
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make the key's name, and the folders created for it, durable."""
        for fd in {*self.grown, self.parent}:
            os.fsync(fd)

    def remove_empty_folders(self) -> None:
        """Remove the key's folders (and the package's) left empty."""
        for depth in range(len(self.fds) - 1, 0, -1):
            try:
                os.rmdir(self.parts[depth - 1], dir_fd=self.fds[depth - 1])
            except OSError:
                return
        if self.packages_fd is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.package, dir_fd=self.packages_fd)

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
