"""The locks of one cache in this process, shared by every Cache object on it.

A cache is identified by its root folder's device and inode, not by the
path it was named by: two spellings of one folder (a symbolic link, a bind
mount, ``..`` in the path) reach one :class:`LockSpace`, so their locks
nest, re-enter and exclude as one. Spellings of one folder must never get
two sets of in-process locks: a thread nesting through both would wait for
itself.

A space lives as long as a :class:`~pkgcache.Cache` (or an open ``with``
block) refers to it; then its descriptors are closed (at the next lock
operation of the process: a finalizer may run anywhere). A space made by an
earlier fork generation belongs to the parent and is never used by a child.
A space whose root was removed is dead: the call that finds out raises
:class:`~pkgcache.CacheError`, later calls look the path up again.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref

from packaging.utils import NormalizedName

from . import _oslock, _process
from ._errors import CachePermissionError, UnsafePathError
from ._flock import FlockService
from ._processlock import LockTable, ProcessLock

__all__ = ["CACHEDIR_TAG", "LOCKS_DIR", "LockSpace", "Plan", "lock_space", "table"]

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pkgcache.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)
LOCKS_DIR = "locks"
_PLANS = 4096  # lock plans remembered per space (see LockSpace.plan)

#: What a with-block takes, in the global order: each lock and whether exclusively.
Plan = tuple[tuple[ProcessLock, bool], ...]

#: The idle-descriptor bound of the whole process.
table = LockTable()

_spaces: dict[tuple[int, int, str | None], weakref.ref[LockSpace]] = {}
_spaces_mutex = threading.Lock()
# A locks folder outside its root serves one root: two roots sharing one set
# of package locks would exclude each other's packages by name, and a root
# reached through two locks folders would not exclude itself.
_owners: dict[str, tuple[int, int, str]] = {}


def _after_fork_in_child() -> None:
    global _spaces_mutex  # noqa: PLW0603
    _spaces.clear()
    _spaces_mutex = threading.Lock()
    table.after_fork_in_child()


_process.at_fork_in_child(_after_fork_in_child)


class LockSpace:
    """The whole-cache lock and the package locks of one cache.

    Attributes:
        root: the root's real path, as first opened in this process.
        identity: ``(st_dev, st_ino)`` of the root folder, and the locks
            folder for a cache whose locks live outside the root.
        generation: the fork generation that made it.
        root_lock: the whole-cache lock.
    """

    def __init__(
        self,
        root: str,
        identity: tuple[int, int, str | None],
        service: FlockService,
    ) -> None:
        self.root = root
        self.identity = identity
        self.service = service
        #: The root folder: ``gone`` once it is known to have been removed.
        self.root_folder = service.root
        service.on_out_of_descriptors(lambda: table.shed(None))
        self.generation = _process.generation
        self.root_lock = ProcessLock(table, service.engine(None), (0, ""), root)
        self._packages: dict[str, ProcessLock] = {}
        #: Plans of the common calls, by their names: ``reading(*names)``
        #: and ``exclusive(*names)`` (see :meth:`plan`).
        self.read_plans: dict[tuple[object, ...], Plan] = {}
        self.write_plans: dict[tuple[object, ...], Plan] = {}
        self._mixed_plans: dict[tuple[object, ...], Plan] = {}
        self._mutex = threading.Lock()

    @property
    def root_dir(self) -> _FolderView:
        """The root folder (``.fd``: its descriptor), for the store."""
        return _FolderView(self.service.root.fd)

    @property
    def alive(self) -> bool:
        """Whether this process may still use the space (same fork generation)."""
        return self.generation == _process.generation

    def package_lock(self, name: NormalizedName) -> ProcessLock:
        """The lock of a package (canonical name), made on first use."""
        lock = self._packages.get(name)
        if lock is None:
            with self._mutex:
                lock = self._packages.get(name)
                if lock is None:
                    lock = self._packages[name] = ProcessLock(
                        table,
                        self.service.engine(name),
                        (1, name),
                        self.root,
                        self.root_lock,
                    )
        return lock

    def plan(
        self,
        exclusive: tuple[NormalizedName, ...],
        shared: tuple[NormalizedName, ...],
        whole: bool,
    ) -> Plan:
        """The locks a call takes, in the global order, with their modes.

        The root lock first (exclusive only for ``whole``), then packages by
        name; a name in both ``exclusive`` and ``shared`` is exclusive.
        Remembered (up to ``_PLANS`` per kind of call), so a call looks its
        locks up once instead of once per package.
        """
        if not exclusive and not whole:
            plans = self.read_plans
            key: tuple[object, ...] = shared
        elif not shared:
            plans = self.write_plans
            key = exclusive
        else:
            plans = self._mixed_plans
            key = (exclusive, shared)
        plan = plans.get(key)
        if plan is None:
            modes = dict.fromkeys(shared, False)
            modes.update(dict.fromkeys(exclusive, True))
            plan = (
                (self.root_lock, whole),
                *((self.package_lock(name), modes[name]) for name in sorted(modes)),
            )
            if len(plans) >= _PLANS:
                plans.clear()
            plans[key] = plan
        return plan

    def locks(self) -> list[ProcessLock]:
        """The whole-cache lock and every package lock this process has used."""
        with self._mutex:
            return [self.root_lock, *self._packages.values()]

    def known_packages(self) -> list[NormalizedName]:
        """Canonical names of every package lock file in the locks folder."""
        from ._names import canonical_name  # noqa: PLC0415 - avoid a cost at import

        names = []
        for stem in self.service.package_names():
            try:
                canonical = canonical_name(stem)
            except ValueError:
                continue
            if canonical == stem:
                names.append(canonical)
        return sorted(names)

    def close_idle(self) -> int:
        """Close the descriptors of every idle lock; return how many locks."""
        return sum(lock.close_if_idle() for lock in self.locks())


class _FolderView:
    __slots__ = ("fd",)

    def __init__(self, fd: int | None) -> None:
        self.fd = fd


def lock_space(root: str, locks_path: str, *, tag_root: bool) -> LockSpace:
    """The space of the cache at ``root`` (a real path), opened if needed.

    Creates the root and the locks folder if missing, and ``CACHEDIR.TAG``
    when ``tag_root``. ``locks_path`` is ``<root>/locks`` or, for a root
    another tool owns, a folder outside it.

    Raises:
        UnsafePathError: the root, or a parent of it, is not a folder.
        CachePermissionError: the root or its locks folder cannot be made.
    """
    _process.drain_deferred()
    root_fd = _open_root(root)
    try:
        st = os.fstat(root_fd) if root_fd is not None else os.stat(root)
    except BaseException:
        if root_fd is not None:
            _process.close_descriptor(root_fd)
        raise
    inside = locks_path == os.path.join(root, LOCKS_DIR)
    identity = (st.st_dev, st.st_ino, None if inside else locks_path)
    with _spaces_mutex:
        if not inside:
            owner = _owners.get(locks_path)
            if owner is not None and owner[:2] != identity[:2]:
                if root_fd is not None:
                    _process.close_descriptor(root_fd)
                raise UnsafePathError(
                    locks_path, f"these locks already serve the cache {owner[2]}"
                )
            _owners[locks_path] = (*identity[:2], root)
        ref = _spaces.get(identity)
        space = None if ref is None else ref()
        if space is not None and space.alive and not space.service.root.removed():
            if root_fd is not None:
                _process.close_descriptor(root_fd)
            return space
        service = FlockService(root, root_fd, locks_path)
        if tag_root:
            _write_cachedir_tag(root, root_fd)
        space = LockSpace(root, identity, service)
        _spaces[identity] = weakref.ref(space)
        return space


def _open_root(root: str) -> int | None:
    try:
        os.makedirs(root, exist_ok=True)
    except FileExistsError as exc:
        raise UnsafePathError(root, "the cache root is not a directory") from exc
    except NotADirectoryError as exc:
        raise UnsafePathError(root, "a parent of the cache root is a file") from exc
    except PermissionError as exc:
        raise CachePermissionError(f"cannot create cache root {root}: {exc}") from exc
    if not _oslock.HAVE_DIR_FD:
        _oslock.check_directory(root, nested=False)
        return None
    return _process.open_descriptor(
        lambda: _oslock.open_directory(root, dir_fd=None, display=root)
    )


def _write_cachedir_tag(root: str, dir_fd: int | None) -> None:
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    try:
        if dir_fd is None:
            fd = os.open(os.path.join(root, "CACHEDIR.TAG"), flags, 0o644)
        else:
            fd = os.open("CACHEDIR.TAG", flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS):
            return
        raise
    try:
        os.write(fd, CACHEDIR_TAG.encode())
    finally:
        os.close(fd)
