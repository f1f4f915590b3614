"""The :class:`Cache` object and its lock protocol.

Files
-----
``<root>/.lock``
    The whole-cache lock: the file and protocol uv uses for its own cache
    (flock; shared for normal work, exclusive for whole-cache work).
``<root>/locks/<name>.lock``
    One lock per package, ``<name>`` being the canonical project name.
``<root>/locks/<name>.gate`` and ``<root>/locks/.root.gate``
    Writer-intent gates (see :mod:`pkgcache._processlock`): a waiting
    writer holds the gate so later readers queue behind it.
``<root>/CACHEDIR.TAG``
    The standard tag that tells backup tools to skip the folder.

Lock files are created on first use and then never truncated, renamed or
deleted: deleting a lock file that someone holds lets a second process lock
a new file of the same name, and both believe they hold the lock.

Modes
-----
=============================  ==================  ==========================
call                           ``<root>/.lock``    ``locks/<name>.lock``
=============================  ==================  ==========================
``reading()``                  shared              --
``reading("a", "b")``          shared              shared on ``a``, ``b``
``exclusive("a", "b")``        shared              exclusive on ``a``, ``b``
``exclusive()``                exclusive           -- (covers every package)
=============================  ==================  ==========================

Shared locks exclude exclusive ones on the same file, across the threads of a
process and across processes. So ``exclusive("a")`` waits for every
``reading("a")`` and ``exclusive("a")``, but not for work on ``b``; and
``exclusive()`` waits for every other call, since they all hold the root
shared. A bare ``reading()`` does not block ``exclusive("a")``: it guards
against whole-cache operations only.

Order
-----
Locks are taken in one global order: the root lock first, then packages by
canonical name (sorted). Two calls that both follow the order cannot wait
for each other in a cycle, so multi-package calls never deadlock.

A thread may nest calls. Re-entering a lock it holds never waits (shared in
shared, anything in exclusive; inside ``exclusive()`` every package lock is
already covered). Asking for exclusive where it holds shared raises
:class:`~pkgcache.LockUpgradeError` at once. A nested call that needs a lock
*earlier* in the order than one the thread holds tries it without waiting
and raises :class:`~pkgcache.LockOrderError` if it is busy: waiting there
could deadlock against a thread that acquires in order.

Next to other tools
-------------------
uv takes ``<root>/.lock`` shared for its normal commands and exclusive for
``uv cache clean`` and ``uv cache prune``, so it waits for pkgcache and
pkgcache waits for it; uv knows nothing of package locks or gates (its
readers can overtake a waiting ``exclusive()``). A tool that takes no lock
at all is not excluded by anything.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
import time
from collections.abc import Iterable, Sequence
from logging import DEBUG
from pathlib import Path
from threading import get_ident
from types import TracebackType

from packaging.utils import NormalizedName
from typing_extensions import Self

from . import _layout, _oslock
from ._errors import (
    CacheError,
    CachePermissionError,
    LockOrderError,
    LockTimeout,
    NotLockedError,
    UnsafePathError,
)
from ._holders import Holder, holders_of
from ._names import canonical_name
from ._processlock import (
    EXCLUSIVE,
    MODE_NAMES,
    NONE,
    SHARED,
    Expired,
    LockDir,
    LockTable,
    ProcessLock,
    _File,
)
from ._store import CacheStoreMethods, TransactionStoreMethods, ViewStoreMethods
from ._timeouts import DEFAULT_TIMEOUT, DefaultTimeout, _resolve_timeout
from ._timeouts import _DefaultTimeout as _DefaultTimeout  # noqa: PLC0414 - 0.1 name
from ._waits import _watchdog, logger

__all__ = ["DEFAULT_TIMEOUT", "Cache", "CacheTransaction", "CacheView", "LockRequest"]

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pkgcache.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)
LOCKS_DIR = "locks"
ROOT_LOCK = ".lock"
ROOT_GATE = ".root.gate"
_PLANS = 4096  # lock plans remembered per cache root (see _Space.plan)


_table = LockTable()
_spaces: dict[str, _Space] = {}
_spaces_mutex = threading.Lock()
_local = threading.local()
_generation = 0


def _after_fork_in_child() -> None:
    global _spaces_mutex, _local, _generation  # noqa: PLW0603
    _generation += 1
    _spaces_mutex = threading.Lock()
    for space in _spaces.values():
        space.after_fork_in_child()
    _local = threading.local()
    _table.after_fork_in_child()
    _watchdog.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_canonical_cached = functools.lru_cache(maxsize=4096)(canonical_name)


def _canonical(name: str) -> NormalizedName:
    # Only exact str values go through the cache: a list raised TypeError
    # (unhashable) instead of InvalidPackageName, and a str subclass may
    # define its own equality.
    if type(name) is str:
        return _canonical_cached(name)
    return canonical_name(name)


def _canonical_sorted(names: tuple[str, ...]) -> tuple[NormalizedName, ...]:
    if len(names) == 1:  # the common call; ``_canonical`` written out
        name = names[0]
        if type(name) is str:
            return (_canonical_cached(name),)
    return tuple(sorted({_canonical(name) for name in names}))


class _Space:
    """The locks of one cache root, shared by every :class:`Cache` on it.

    ``tag_root`` is false for a root another tool owns (see
    :meth:`Cache._attach`): then nothing but ``<root>/.lock`` is created in it.
    """

    def __init__(self, root: str, locks_path: str, *, tag_root: bool = True) -> None:
        self.root = root
        self.locks_path = locks_path
        self.tag_root = tag_root
        self.root_dir, self.locks_dir = self._open_layout()
        self.root_lock = self._new_lock(
            None, _File(self.root_dir, ROOT_LOCK), _File(self.locks_dir, ROOT_GATE)
        )
        self._packages: dict[str, ProcessLock] = {}
        self.plans: dict[tuple[NormalizedName, ...], tuple[ProcessLock, ...]] = {}
        self._mutex = threading.Lock()

    def _open_layout(self) -> tuple[LockDir, LockDir]:
        root = self.root
        try:
            os.makedirs(root, exist_ok=True)
        except FileExistsError as exc:
            raise UnsafePathError(root, "the cache root is not a directory") from exc
        except NotADirectoryError as exc:
            raise UnsafePathError(root, "a parent of the cache root is a file") from exc
        except PermissionError as exc:
            raise CachePermissionError(
                f"cannot create cache root {root}: {exc}"
            ) from exc
        root_fd = _oslock.open_directory(root, dir_fd=None, display=root)
        dir_fd = root_fd if os.mkdir in os.supports_dir_fd else None
        locks_name = (
            LOCKS_DIR if os.path.join(root, LOCKS_DIR) == self.locks_path else None
        )
        try:
            if locks_name is None:
                os.makedirs(self.locks_path, exist_ok=True)
                locks_fd = _oslock.open_directory(
                    self.locks_path, dir_fd=None, display=self.locks_path
                )
            else:
                try:
                    if dir_fd is None:
                        os.mkdir(self.locks_path)
                    else:
                        os.mkdir(locks_name, dir_fd=dir_fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                        raise
                    # A read-only cache: fine if the folder is already there.
                locks_fd = _oslock.open_directory(
                    locks_name if dir_fd is not None else self.locks_path,
                    dir_fd=dir_fd,
                    display=self.locks_path,
                )
            if self.tag_root:
                self._write_cachedir_tag(dir_fd)
        except FileNotFoundError as exc:
            _oslock.close(root_fd)
            raise CachePermissionError(
                f"cannot create {self.locks_path}: the cache is read-only"
            ) from exc
        except BaseException:
            _oslock.close(root_fd)
            raise
        return LockDir(root, root_fd), LockDir(self.locks_path, locks_fd)

    def _write_cachedir_tag(self, dir_fd: int | None) -> None:
        flags = (
            os.O_WRONLY
            | os.O_CREAT
            | os.O_EXCL
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            if dir_fd is None:
                fd = os.open(os.path.join(self.root, "CACHEDIR.TAG"), flags, 0o644)
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

    def _new_lock(
        self, package: str | None, lock_file: _File, gate_file: _File
    ) -> ProcessLock:
        lock = ProcessLock(
            _table,
            (self.root, 0 if package is None else 1, package or ""),
            package,
            lock_file,
            gate_file,
            cache_root=self.root,
            root_lock=None if package is None else self.root_lock,
        )
        _table.register(lock)
        return lock

    def after_fork_in_child(self) -> None:
        # Another thread may have held the mutex at fork time.
        self._mutex = threading.Lock()

    def package_lock(self, name: NormalizedName) -> ProcessLock:
        lock = self._packages.get(name)
        if lock is None:
            with self._mutex:
                lock = self._packages.get(name)
                if lock is None:
                    lock = self._new_lock(
                        name,
                        _File(self.locks_dir, f"{name}.lock"),
                        _File(self.locks_dir, f"{name}.gate"),
                    )
                    self._packages[name] = lock
        return lock

    def plan(self, names: tuple[NormalizedName, ...]) -> tuple[ProcessLock, ...]:
        """The locks an un-nested call on ``names`` takes, in order: the root first.

        Remembered in ``plans`` (up to ``_PLANS`` tuples of names), so a
        call looks its locks up once instead of once per package.
        """
        plan = self.plans.get(names)
        if plan is None:
            plan = (self.root_lock, *map(self.package_lock, names))
            if len(self.plans) >= _PLANS:
                self.plans.clear()
            self.plans[names] = plan
        return plan

    def locks(self) -> list[ProcessLock]:
        """The whole-cache lock and every package lock this process has used."""
        with self._mutex:
            return [self.root_lock, *self._packages.values()]

    def known_packages(self) -> list[NormalizedName]:
        """Canonical names of every package lock file in the locks folder."""
        names = []
        try:
            entries = os.listdir(self.locks_path)
        except OSError:
            return []
        for entry in entries:
            stem, dot, suffix = entry.rpartition(".")
            if dot and suffix == "lock":
                try:
                    canonical = _canonical(stem)
                except CacheError:
                    continue
                if canonical == stem:
                    names.append(canonical)
        return sorted(names)


def _space_for(root: str, locks_path: str, tag_root: bool) -> _Space:
    space = _spaces.get(locks_path)
    if space is None:
        with _spaces_mutex:
            space = _spaces.get(locks_path)
            if space is None:
                space = _spaces[locks_path] = _Space(
                    root, locks_path, tag_root=tag_root
                )
    if space.root != root:
        # Only Cache._attach can get here: its locks would guard another root.
        raise UnsafePathError(
            locks_path, f"these locks already serve the cache {space.root}"
        )
    return space


class LockRequest:
    """A set of locks to take on entering a ``with`` block, and release on exit.

    The base of :class:`CacheView` and :class:`CacheTransaction`, which
    :meth:`Cache.reading` and :meth:`Cache.exclusive` return: entering one
    takes its locks and gives back the same object, the proof of the locks
    while the block lasts. Each can be entered once.

    Attributes:
        cache: the :class:`Cache`.
        packages: canonical names of the packages locked, sorted. Empty for
            a whole-cache hold.
    """

    # One object per ``with`` block, with slots: a second object (a request
    # and its handle) and ``__dict__``-based attributes cost a fifth of the
    # uncontended path.
    __slots__ = (
        "_debug",
        "_exclusive",
        "_generation",
        "_held",
        "_open",
        "_taken",
        "_thread",
        "_timeout",
        "cache",
        "packages",
    )

    def __init__(
        self,
        cache: Cache,
        packages: tuple[NormalizedName, ...],
        exclusive: bool,
        timeout: float | None,
    ) -> None:
        self.cache = cache
        self.packages = packages
        self._exclusive = exclusive
        self._timeout = timeout
        self._open = False
        self._taken: Sequence[ProcessLock] | None = None

    @property
    def is_open(self) -> bool:
        """Whether this object's ``with`` block is open (its locks are held)."""
        return self._open

    def __enter__(self) -> Self:
        if self._taken is not None:
            raise RuntimeError("a lock request can be entered only once")
        thread = get_ident()
        try:
            held: list[ProcessLock] = _local.held
        except AttributeError:
            held = _local.held = []
        self._debug = logger.isEnabledFor(DEBUG)
        taken: Sequence[ProcessLock]
        if held:
            taken = self.cache._acquire_nested(self, thread, held)
        else:
            taken = self.cache._acquire_first(self, thread, held)
        self._taken = taken
        self._thread = thread
        self._generation = _generation
        # The entering thread's list: exiting from another thread (a misuse,
        # but an ExitStack can travel) must still find what to remove.
        self._held = held
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        taken = self._taken
        self._open = False
        if not taken or self._generation != _generation:
            return  # a forked child forgets its parent's locks
        self._taken = ()
        thread = self._thread
        # Release first: a waiter in another process is let in by the first
        # unlock, so the bookkeeping waits until after it. Every lock is
        # released even if one release raises (a KeyboardInterrupt there
        # once skipped the rest, leaving the whole-cache lock held for good).
        error: BaseException | None = None
        for lock in reversed(taken):
            try:
                lock.release(thread)
            except BaseException as raised:
                error = error or raised
        held = self._held
        count = len(taken)
        if len(held) == count:
            # Every lock in ``held`` belongs to an open block, and this one's
            # are among them: equal lengths mean they are all ours.
            del held[:]
        elif tuple(held[-count:]) == tuple(taken):
            del held[-count:]
        else:  # blocks exited out of order (an ExitStack, manual calls)
            for lock in taken:
                held.remove(lock)
        if error is not None:
            raise error
        if self._debug:
            logger.debug("released %s", ", ".join(lock.what for lock in taken))

    def covers(self, package: str) -> NormalizedName:
        """Return the canonical name if this handle holds ``package``, else raise.

        Raises:
            InvalidPackageName: ``package`` is not a valid name.
            NotLockedError: the block is not open, or ``package`` is not held.
        """
        name = _canonical(package)
        if not self._open:
            when = "before" if self._taken is None else "after"
            raise NotLockedError(
                f"this {type(self).__name__} was used {when} its with-block"
            )
        if name not in self.packages:
            held = ", ".join(self.packages) or "no package"
            raise NotLockedError(
                f"package {name!r} is not locked by this {type(self).__name__} "
                f"(it holds {held}); name it when entering the with-block"
            )
        return name

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        name = type(self).__name__
        return f"<{name} {list(self.packages)} of {self.cache.root} ({state})>"


class CacheView(LockRequest, ViewStoreMethods):
    """What :meth:`Cache.reading` returns: shared locks, and proof of them.

    ``with cache.reading("a") as view:`` takes the locks and gives back the
    same object; inside the block it reads the store (see :doc:`store`).
    """

    __slots__ = ()


class CacheTransaction(CacheView, TransactionStoreMethods):
    """What :meth:`Cache.exclusive` returns: exclusive locks, and proof of them.

    Inside ``exclusive()`` (no packages) it covers every package.
    """

    __slots__ = ()

    @property
    def whole_cache(self) -> bool:
        """Whether this holds the whole cache exclusively (``exclusive()``)."""
        return not self.packages

    def covers(self, package: str) -> NormalizedName:
        if self._open and not self.packages:
            return _canonical(package)
        return super().covers(package)


class Cache(CacheStoreMethods):
    """A package cache shared by threads and processes.

    ``Cache(root)`` creates nothing. The root, ``<root>/.lock``,
    ``<root>/locks/`` and ``<root>/CACHEDIR.TAG`` are created on first use; a
    cache that exists but cannot be written can still be read.

    The root may be missing, empty, or a pkgcache cache already. Any other
    existing folder is refused at once, before anything is written: a home
    folder or a project would get a ``CACHEDIR.TAG`` (backup tools skip
    tagged folders), and ``uv cache prune`` would delete a ``locks/`` folder
    put into a uv cache (use :class:`pkgcache.uv.UvCache` for one). The
    ``pkgcache`` command applies the same rule.

    Every :class:`Cache` object on the same root (after resolving links) in
    one process shares one set of locks, so two objects behave like one.
    Objects are safe to share between threads and survive ``fork()`` (the
    child holds none of the parent's locks).

    Args:
        root: the cache folder; ``~`` is expanded.
        timeout: default seconds to wait for a lock; ``None`` waits forever,
            ``0`` never waits.
        adopt: take an existing folder that holds other files as the cache
            root all the same (it gets the cache files above).

    Raises:
        NotACacheError: ``root`` is a uv cache or a folder of other files,
            and ``adopt`` is false.
    """

    # False for a root another tool owns (see _attach).
    _tag_root = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        adopt: bool = False,
    ) -> None:
        self._root = _layout.cache_root(root, adopt=adopt)
        self._real_root = os.path.realpath(self._root)
        self.timeout = _resolve_timeout(timeout, None)
        self._locks_path = os.path.join(self._real_root, LOCKS_DIR)
        self._space: _Space | None = None

    @classmethod
    def _attach(
        cls,
        root: str | os.PathLike[str],
        locks_path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
    ) -> Cache:
        """A cache on a folder another tool owns, for integrations (private).

        The whole-cache lock stays ``<root>/.lock`` (the other tool's lock
        file, e.g. uv's); package locks, their gates and the root gate live
        in ``locks_path``, which the caller picks where the other tool never
        looks. Nothing but ``<root>/.lock`` is ever created inside ``root``.
        Every process that works on ``root`` must pass the same
        ``locks_path``, or their package locks do not meet.
        """
        cache = cls(root, timeout=timeout, adopt=True)
        cache._locks_path = os.path.realpath(os.fspath(locks_path))
        cache._tag_root = False
        return cache

    @property
    def root(self) -> Path:
        """The cache folder, as given (``~`` expanded, made absolute)."""
        return self._root

    def __repr__(self) -> str:
        return f"Cache({str(self._root)!r}, timeout={self.timeout!r})"

    def _open_space(self) -> _Space:
        self._space = _space_for(self._real_root, self._locks_path, self._tag_root)
        return self._space

    # -- the lock API ----------------------------------------------------------

    def reading(
        self, *packages: str, timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CacheView:
        """Hold shared locks: the whole cache, and each package named.

        ``with cache.reading("a", "b") as view:`` takes ``<root>/.lock`` shared,
        then ``locks/a.lock`` and ``locks/b.lock`` shared, in that order. It
        waits for exclusive holders of any of those files and blocks
        ``exclusive("a")``, ``exclusive("b")`` and ``exclusive()`` until the
        block ends. Readers never wait for each other, but a waiting writer
        is not overtaken: readers that arrive after it wait for it.

        Args:
            packages: project names (any spelling; canonicalized).
            timeout: seconds to wait in all; ``None`` waits forever; by
                default the cache's timeout.

        Raises:
            InvalidPackageName: a name is not a valid project name (nothing
                touches the disk).
            LockTimeout: the locks were not all granted in time; none is held.
            LockOrderError: a nested call needed a lock earlier in the global
                order than one this thread holds, and it was busy.
        """
        return CacheView(
            self,
            _canonical_sorted(packages) if packages else (),
            False,
            self.timeout
            if timeout is DEFAULT_TIMEOUT
            else _resolve_timeout(timeout, self.timeout),
        )

    def exclusive(
        self, *packages: str, timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CacheTransaction:
        """Hold exclusive locks: each package named, or the whole cache.

        ``with cache.exclusive("a", "b") as txn:`` takes ``<root>/.lock``
        shared, then ``locks/a.lock`` and ``locks/b.lock`` exclusive. It waits
        until no other thread or process holds ``a`` or ``b`` in any mode (or
        the whole cache exclusively), and work on other packages goes on.

        ``with cache.exclusive() as txn:`` takes ``<root>/.lock`` exclusive:
        it waits for every other holder of any lock of this cache (and for
        uv commands on the same folder), and blocks them all until it ends.

        Args:
            packages: project names (any spelling; canonicalized).
            timeout: seconds to wait in all; ``None`` waits forever; by
                default the cache's timeout.

        Raises:
            InvalidPackageName: a name is not a valid project name.
            LockTimeout: the locks were not all granted in time; none is held.
            LockUpgradeError: this thread holds one of these locks shared.
            LockOrderError: see :meth:`reading`.
            CachePermissionError: the cache is read-only for this process.
        """
        return CacheTransaction(
            self,
            _canonical_sorted(packages) if packages else (),
            True,
            self.timeout
            if timeout is DEFAULT_TIMEOUT
            else _resolve_timeout(timeout, self.timeout),
        )

    def _acquire_nested(
        self, request: LockRequest, thread: int, held: list[ProcessLock]
    ) -> list[ProcessLock]:
        """Take the locks for a thread that already holds some (``held``).

        Re-entry, the whole-cache lock covering packages, and the lock order
        (see the module docstring) are decided here.
        """
        names = request.packages
        exclusive = request._exclusive
        timeout = request._timeout
        debug = request._debug
        space = self._space or self._open_space()
        root = space.root_lock
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        if root.mode_of(thread) == EXCLUSIVE:
            # exclusive() already covers every package of this cache.
            plan = [(root, exclusive)]
        else:
            plan = [(root, exclusive and not names)]
            plan += [(space.package_lock(name), exclusive) for name in names]
        # Depths before this call: undoing down to them is right wherever an
        # exception lands (an interrupt between a lock's bookkeeping and the
        # next step, or a logging handler raising after everything was taken).
        before = [lock.depth(thread) for lock, _ in plan]
        mark = len(held)
        taken: list[ProcessLock] = []
        try:
            for (lock, lock_exclusive), depth in zip(plan, before, strict=True):
                out_of_order = (
                    depth == 0
                    and bool(held)
                    and any(other.key > lock.key for other in held)
                )
                try:
                    lock.acquire(
                        lock_exclusive, -1.0 if out_of_order else deadline, thread
                    )
                except Expired:
                    self._undo(plan, before, held, mark, thread)
                    if out_of_order:
                        raise LockOrderError(
                            f"{lock.what} is busy, and this thread already holds "
                            "a lock later in the lock order "
                            f"({_describe_later(held, lock)}); waiting could "
                            "deadlock. Take all the locks in one call, or "
                            "release the later ones first"
                        ) from None
                    raise self._timed_out(lock, lock_exclusive, start) from None
                taken.append(lock)
            held += taken
            if debug:
                _log_acquired(exclusive, taken, start)
        except (LockOrderError, LockTimeout):
            raise
        except BaseException:
            self._undo(plan, before, held, mark, thread)
            raise
        return taken

    def _acquire_first(
        self, request: LockRequest, thread: int, held: list[ProcessLock]
    ) -> tuple[ProcessLock, ...]:
        """Take the locks for a thread that holds no lock of any cache.

        The common, un-nested call: every depth before it is 0, nothing can
        be out of the lock order, and the plan is the root lock then the
        packages in sorted order. Undoing releases every hold of this
        thread on the locks of the plan, which is exactly what this call
        added, wherever an exception lands.
        """
        names = request.packages
        exclusive = request._exclusive
        timeout = request._timeout
        debug = request._debug
        space = self._space or self._open_space()
        locks = space.plans.get(names) or space.plan(names)
        root = locks[0]
        root_exclusive = exclusive and not names
        if timeout is None:
            start = time.monotonic() if debug else 0.0
            deadline = None
        else:
            start = time.monotonic()
            deadline = start + timeout
        lock = root
        try:
            for lock in locks:
                lock.acquire(
                    root_exclusive if lock is root else exclusive, deadline, thread
                )
            held += locks
            if debug:
                _log_acquired(exclusive, locks, start)
        except BaseException as exc:
            del held[:]
            for each in reversed(locks):
                while each.depth(thread):
                    each.release(thread)
            if type(exc) is Expired:
                # Only a deadline expires, so ``start`` was taken; ``lock``
                # is the one that was busy.
                lock_exclusive = root_exclusive if lock is root else exclusive
                raise self._timed_out(lock, lock_exclusive, start) from None
            raise
        return locks

    def _timed_out(
        self, lock: ProcessLock, exclusive: bool, start: float
    ) -> LockTimeout:
        """The error for a deadline that passed waiting for ``lock``."""
        return LockTimeout(
            root=str(self._root),
            package=lock.package,
            mode=MODE_NAMES[EXCLUSIVE if exclusive else SHARED],
            waited=time.monotonic() - start,
            holders=holders_of([lock]),
        )

    @staticmethod
    def _undo(
        plan: list[tuple[ProcessLock, bool]],
        before: list[int],
        held: list[ProcessLock],
        mark: int,
        thread: int,
    ) -> None:
        """Release exactly what this call added, in reverse order."""
        del held[mark:]
        for (lock, _), depth in zip(reversed(plan), reversed(before), strict=True):
            while lock.depth(thread) > depth:
                lock.release(thread)

    def holders(self, *packages: str) -> list[Holder]:
        """Who holds or waits for locks of this cache, right now.

        With package names, reports those packages' locks; without, the
        whole-cache lock and every package lock file in the cache. Holders in
        other processes are found on Linux (``/proc/locks``); elsewhere only
        this process's threads are reported.

        Raises:
            InvalidPackageName: a name is not a valid project name (nothing
                touches the disk).
        """
        names = _canonical_sorted(packages) if packages else ()
        space = self._space or self._open_space()
        if names:
            locks = [space.package_lock(name) for name in names]
        else:
            locks = [space.root_lock]
            locks.extend(space.package_lock(name) for name in space.known_packages())
        return holders_of(locks)

    def _held_in_process(self) -> list[tuple[ProcessLock, list[tuple[int, str]]]]:
        """Locks of this root held by threads of this process, and by whom.

        Covers locks taken through any :class:`Cache` object on this root.
        Opens nothing; for checks such as the pytest plugin's teardown.
        """
        space = _spaces.get(self._locks_path)
        if space is None:
            return []
        held = [(lock, lock.holding_threads()) for lock in space.locks()]
        return [(lock, threads) for lock, threads in held if threads]

    def lock_path(self, package: str | None = None) -> Path:
        """The lock file of ``package``, or of the whole cache for ``None``."""
        if package is None:
            return Path(self._real_root, ROOT_LOCK)
        return Path(self._locks_path, f"{_canonical(package)}.lock")


def _log_acquired(exclusive: bool, locks: Sequence[ProcessLock], start: float) -> None:
    logger.debug(
        "acquired %s %s after %.6f s",
        "exclusive" if exclusive else "shared",
        ", ".join(lock.what for lock in locks),
        time.monotonic() - start,
    )


def _describe_later(held: Iterable[ProcessLock], lock: ProcessLock) -> str:
    return ", ".join(sorted({other.what for other in held if other.key > lock.key}))


_ = NONE  # re-exported constant used by tests
