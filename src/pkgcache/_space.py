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

Lock services
-------------
The locks of a space live in one lock service (:mod:`pkgcache._engine`):
flock on the cache's lock files (:mod:`pkgcache._flock`), or a PostgreSQL
server (:mod:`pkgcache._postgres`, ``Cache(root, locks=URL)``). The root
folder and the locks folder are always opened by the flock side: the store
works in the root through its descriptor, and a lock server names the cache
by the identity file in its locks folder (:mod:`pkgcache._identity`).

One folder has one space per process, so all its :class:`~pkgcache.Cache`
objects must agree on the service: a space on flock and another on a lock
server would not exclude each other, not even within this process. A second
``locks=`` for a folder whose space is alive is refused
(:class:`~pkgcache.InvalidLockServer`); once no object on the folder is
left, the next one may choose again.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref

from packaging.utils import NormalizedName

from . import _oslock, _process
from ._engine import LockService
from ._errors import (
    CacheError,
    CachePermissionError,
    InvalidLockServer,
    UnsafePathError,
)
from ._flock import FlockService
from ._processlock import LockTable, ProcessLock

__all__ = [
    "CACHEDIR_TAG",
    "LOCKS_DIR",
    "LockSpace",
    "Plan",
    "check_lock_server",
    "lock_space",
    "table",
]

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
        folders: the flock service, which holds the root and locks folders
            (and the locks, unless ``service`` is another one).
        service: the lock service the locks live in.
        server: the lock server's URL, ``None`` for flock.
        can_lose_locks: ``service.can_lose_locks`` (read at every block's end).
    """

    def __init__(
        self,
        root: str,
        identity: tuple[int, int, str | None],
        folders: FlockService,
        service: LockService | None = None,
        server: str | None = None,
    ) -> None:
        self.root = root
        self.identity = identity
        self.folders = folders
        self.service: LockService = folders if service is None else service
        self.server = server
        self.can_lose_locks = self.service.can_lose_locks
        #: The root folder: ``gone`` once it is known to have been removed.
        self.root_folder = folders.root
        folders.on_out_of_descriptors(lambda: table.shed(None))
        self.generation = _process.generation
        self.root_lock = ProcessLock(table, self.service.engine(None), (0, ""), root)
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
        return _FolderView(self.folders.root.fd)

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
        """Canonical names of every package lock file in the locks folder.

        And of every package lock this process has used: on a lock server
        there are no lock files to list.
        """
        from ._names import canonical_name  # noqa: PLC0415 - avoid a cost at import

        names: set[str] = set()
        for stem in self.folders.package_names():
            try:
                canonical = canonical_name(stem)
            except ValueError:
                continue
            if canonical == stem:
                names.add(canonical)
        with self._mutex:
            names.update(self._packages)
        return sorted(NormalizedName(name) for name in names)

    def close_idle(self) -> int:
        """Close the descriptors of every idle lock; return how many locks."""
        return sum(lock.close_if_idle() for lock in self.locks())


class _FolderView:
    __slots__ = ("fd",)

    def __init__(self, fd: int | None) -> None:
        self.fd = fd


def check_lock_server(url: object) -> str:
    """``url`` if it names a lock server pkgcache can use (no I/O).

    Imports the PostgreSQL driver: only a cache with ``locks=`` pays for it.

    Raises:
        InvalidLockServer: not a ``postgresql://`` URL libpq parses, or the
            driver is not installed.
    """
    if not isinstance(url, str):
        raise InvalidLockServer(
            f"locks= takes a postgresql:// URL (a str), not {type(url).__name__}"
        )
    try:
        from ._postgres import connection_string  # noqa: PLC0415 - the driver
    except ImportError as exc:
        raise InvalidLockServer(
            f"locks={url.partition('://')[0]}://... needs the PostgreSQL driver "
            f"({exc}): pip install 'pkgcache[postgres]'"
        ) from None
    connection_string(url, "")
    return url


def lock_space(
    root: str, locks_path: str, *, tag_root: bool, server: str | None = None
) -> LockSpace:
    """The space of the cache at ``root`` (a real path), opened if needed.

    Creates the root and the locks folder if missing, and ``CACHEDIR.TAG``
    when ``tag_root``. ``locks_path`` is ``<root>/locks`` or, for a root
    another tool owns, a folder outside it. ``server`` is a lock server URL
    checked by :func:`check_lock_server`, ``None`` for flock.

    Raises:
        UnsafePathError: the root, or a parent of it, is not a folder.
        CachePermissionError: the root or its locks folder cannot be made.
        InvalidLockServer: the space of this folder is open with other locks.
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
        if space is not None and space.alive and not space.root_folder.removed():
            if root_fd is not None:
                _process.close_descriptor(root_fd)
            if space.server != server:
                raise InvalidLockServer(
                    f"the cache {root} is open in this process with its locks "
                    f"{_where(space.server)}; a Cache object with locks "
                    f"{_where(server)} cannot share it (the two would not "
                    "exclude each other): give every Cache object on this "
                    "folder the same locks="
                )
            return space
        folders = FlockService(root, root_fd, locks_path)
        try:
            service = None if server is None else _server_service(folders, server)
        except BaseException:
            folders.close()
            raise
        if tag_root:
            _write_cachedir_tag(root, root_fd)
        space = LockSpace(root, identity, folders, service, server)
        _spaces[identity] = weakref.ref(space)
        return space


def _where(server: str | None) -> str:
    if server is None:
        return "on lock files (flock)"
    from ._postgres import redacted  # noqa: PLC0415 - the driver

    return f"on the lock server {redacted(server)}"


def _server_service(folders: FlockService, server: str) -> LockService:
    """The lock service on ``server`` for the cache whose folders are open."""
    from ._identity import cache_identity  # noqa: PLC0415 - only with locks=
    from ._postgres import PostgresLocks  # noqa: PLC0415 - the driver

    fd = folders.locks.fd
    if fd is None:
        raise CacheError("a lock server needs folder descriptors (os.open dir_fd)")
    return PostgresLocks(server, cache_identity(fd, folders.locks.path))


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
