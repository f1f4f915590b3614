"""The :class:`Cache` object and its lock protocol.

Files
-----
``<root>/.lock``
    The whole-cache lock: the file and protocol uv uses for its own cache
    (flock; shared for normal work, exclusive for whole-cache work).
``<root>/locks/<name>.lock``
    One lock per package, ``<name>`` being the canonical project name.
``<root>/locks/<name>.gate`` and ``<root>/locks/.root.gate``
    Writer-intent gates (see :mod:`pkgcache._flock`): a waiting writer
    holds the gate so later readers queue behind it.
``<root>/CACHEDIR.TAG``
    The standard tag that tells backup tools to skip the folder.

Lock files are created on first use and then never truncated, renamed or
deleted: deleting a lock file that someone holds lets a second process lock
a new file of the same name, and both believe they hold the lock.

Modes
-----
=================================  ================  ==========================
call                               ``<root>/.lock``  ``locks/<name>.lock``
=================================  ================  ==========================
``reading()``                      shared            --
``reading("a", "b")``              shared            shared on ``a``, ``b``
``exclusive("a", "b")``            shared            exclusive on ``a``, ``b``
``exclusive("a", reading=["b"])``  shared            exclusive on ``a``, shared
                                                     on ``b``
``exclusive()``                    exclusive         -- (covers every package)
=================================  ================  ==========================

Shared locks exclude exclusive ones on the same file, across the threads of a
process and across processes. So ``exclusive("a")`` waits for every
``reading("a")`` and ``exclusive("a")``, but not for work on ``b``; and
``exclusive()`` waits for every other call, since they all hold the root
shared. A bare ``reading()`` does not block ``exclusive("a")``: it guards
against whole-cache operations only.

The layers: :mod:`pkgcache._lockset` takes a block's locks in the global
order (and explains it); :mod:`pkgcache._processlock` shares each lock
between the threads of the process and survives interrupts;
:mod:`pkgcache._flock` holds it for the process with ``flock``;
:mod:`pkgcache._space` keeps the locks of one cache; :mod:`pkgcache._process`
holds what belongs to the whole process (fork, descriptors, threads).

Next to other tools
-------------------
uv takes ``<root>/.lock`` shared for its normal commands and exclusive for
``uv cache clean`` and ``uv cache prune``, so it waits for pkgcache and
pkgcache waits for it; uv knows nothing of package locks or gates (its
readers can overtake a waiting ``exclusive()``). A tool that takes no lock
at all is not excluded by anything.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterable
from logging import DEBUG
from pathlib import Path
from types import TracebackType

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import NormalizedName
from typing_extensions import Self

from . import _layout, _lockset, _maintenance, _process
from ._engine import Expired
from ._errors import (
    CacheError,
    LockLost,
    LockOrderError,
    LockTimeout,
    NotLockedError,
)
from ._holders import Holder
from ._names import canonical_name
from ._processlock import LockStatistics
from ._ranking import parse_requirement
from ._records import CacheInfo, CleanReport, Entry, PruneReport
from ._space import LOCKS_DIR, LockSpace, Plan, check_lock_server, lock_space
from ._store import Store, choose_package
from ._timeouts import DEFAULT_TIMEOUT, DefaultTimeout, _resolve_timeout
from ._waits import logger

__all__ = ["DEFAULT_TIMEOUT", "Cache", "CacheTransaction", "CacheView", "LockRequest"]

ROOT_LOCK = ".lock"

_canonical_cached = functools.lru_cache(maxsize=4096)(canonical_name)
_monotonic = time.monotonic

# With-blocks whose object was garbage collected while still holding its
# locks (an interrupt landed as __exit__ began, before any of its code ran),
# released at the next call that is safe to do it.
_orphans: list[tuple[Plan, int, _process.ThreadState]] = []


def _canonical(name: str) -> NormalizedName:
    # Only exact str values go through the cache: a list raised TypeError
    # (unhashable) instead of InvalidPackageName, and a str subclass may
    # define its own equality.
    if type(name) is str:
        return _canonical_cached(name)
    return canonical_name(name)


def _canonical_sorted(names: Iterable[str]) -> tuple[NormalizedName, ...]:
    if type(names) is tuple and len(names) == 1:  # the common call
        name = names[0]
        if type(name) is str:
            return (_canonical_cached(name),)
    return tuple(sorted({_canonical(name) for name in names}))


def _release_orphans() -> None:
    while _orphans:
        _release_orphan(*_orphans.pop())


#: The class of an open block for each class of block, and back.
_OPEN: dict[type, type] = {}
_CLOSED: dict[type, type] = {}


def _open_class(cls: type) -> type:
    """The class a block of class ``cls`` has while it is open.

    The same class with a finalizer (``__del__``) that releases the block's
    locks if its exit never ran (an interrupt landed as ``__exit__`` began).
    Only open blocks have it: a finalizer is Python code, run each time an
    object is freed, and a ``KeyboardInterrupt`` that lands in one is
    printed and lost. A closed block is freed without running any.
    """
    opened = _OPEN.get(cls)
    if opened is None:
        namespace = {
            "__slots__": (),
            "__del__": LockRequest._finalize,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        }
        opened = type(cls.__name__, (cls,), namespace)
        _CLOSED[opened] = cls
        _OPEN[cls] = opened
    return opened


def _release_orphan(plan: Plan, remaining: int, state: _process.ThreadState) -> None:
    """Release what a with-block never exited still holds.

    That is one hold on each of the first ``remaining`` locks of its plan.
    """
    for index in range(remaining - 1, -1, -1):
        lock = plan[index][0]
        if lock.depth(state):
            lock.release(state)
    _lockset.forget(plan, state)


class LockRequest:
    """A set of locks to take on entering a ``with`` block, and release on exit.

    The base of :class:`CacheView` and :class:`CacheTransaction`, which
    :meth:`Cache.reading` and :meth:`Cache.exclusive` return: entering one
    takes its locks and gives back the same object, the proof of the locks
    while the block lasts. Each can be entered once. In a process forked
    while the block was open, the object proves nothing (the child holds
    none of its parent's locks).

    Attributes:
        cache: the :class:`Cache`.
        packages: canonical names of the packages locked (exclusively, for a
            :class:`CacheTransaction`), sorted. Empty for a whole-cache hold.
    """

    # One object per ``with`` block, with slots: a second object (a request
    # and its handle) and ``__dict__``-based attributes cost a fifth of the
    # uncontended path.
    __slots__ = (
        "_before",
        "_debug",
        "_exclusive",
        "_generation",
        "_open",
        "_plan",
        "_remaining",
        "_shared",
        "_state",
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
        shared: tuple[NormalizedName, ...] = (),
    ) -> None:
        self.cache = cache
        self.packages = packages
        self._exclusive = exclusive
        self._shared = shared
        self._timeout = timeout
        self._open = False
        # How many locks of the plan (from the first) this block still
        # holds: set when entered, counted down as __exit__ releases.
        self._remaining = 0
        self._state: _process.ThreadState | None = None
        self._before: list[int] | None = None
        self._plan: Plan = ()

    @property
    def is_open(self) -> bool:
        """Whether this object's ``with`` block is open (its locks are held).

        ``False`` in a process forked while the block was open.
        """
        return self._open and self._generation == _process.generation

    def __enter__(self) -> Self:
        if self._state is not None:
            raise RuntimeError("a lock request can be entered only once")
        if _orphans:
            _release_orphans()
        try:
            state = _process._local.state
        except AttributeError:
            state = _process.thread_state()
        cache = self.cache
        # Cache._lock_space, written out: this is every call's path.
        space = cache._space
        if (
            space is None
            or space.generation != _process.generation
            or space.root_folder.gone
        ):
            space = cache._open_space()
        packages = self.packages
        if not self._exclusive:
            plan = space.read_plans.get(packages) or space.plan((), packages, False)
        elif self._shared:
            plan = space.plan(packages, self._shared, False)
        else:
            plan = space.write_plans.get(packages) or space.plan(
                packages, (), not packages
            )
        timeout = self._timeout
        self._debug = debug = logger.isEnabledFor(DEBUG)
        start = _monotonic() if timeout is not None or debug else 0.0
        deadline = None if timeout is None else start + timeout
        held = state.held
        before = None
        if held:
            plan = _lockset.nested_plan(plan, state)
            before = [lock.depth(state) for lock, _ in plan]
        # Set before anything is taken: the undo below needs them all.
        self._state = state
        self._generation = _process.generation
        self._plan = plan
        self._before = before
        try:
            if before is not None:
                _lockset.take_nested(plan, state, before, deadline, timeout != 0)
            else:
                # The common call: an un-nested block (see _lockset.take_nested).
                wait = timeout != 0
                state.entering += 1
                try:
                    for lock, exclusive in plan:
                        lock.acquire(state, exclusive, deadline, wait)
                finally:
                    state.entering -= 1
                held.append(plan)
            if debug:
                _log_acquired(space, plan, start)
            self._remaining, self._open = len(plan), True
            # Open: a finalizer now guards the locks (see _open_class).
            self.__class__ = _OPEN.get(type(self)) or _open_class(type(self))
        except BaseException as exc:
            self._remaining = 0
            _lockset.give_back(self._plan, state, self._before)
            _lockset.forget(self._plan, state)
            if type(exc) is _lockset.Busy:
                raise cache._busy_error(exc, state, start) from None
            if type(exc) is Expired:
                # Only the un-nested loop lets it through: ``lock`` is the
                # one that could not be had.
                busy = _lockset.Busy(lock, exclusive, out_of_order=False)
                raise cache._busy_error(busy, state, start) from None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._open:
            return
        self._open = False
        if self._generation != _process.generation:
            return  # a forked child forgets its parent's locks
        state = self._state
        plan = self._plan
        try:
            # A lock server can lose locks: say so after releasing them.
            space: LockSpace = self.cache._space  # type: ignore[assignment]
            lost = _lost(plan) if space.can_lose_locks else None
            # Release first: a waiter in another process is let in by the
            # first unlock, so the bookkeeping waits until after it.
            for index in range(len(plan) - 1, -1, -1):
                plan[index][0].release(state)  # type: ignore[arg-type]
                self._remaining = index
        except BaseException:
            # Every lock is released even if one release raised (an
            # interrupt there once left the whole-cache lock held for good).
            self._remaining = 0
            _lockset.give_back(plan, state, self._before)  # type: ignore[arg-type]
            raise
        finally:
            held = state.held  # type: ignore[union-attr]
            if held and held[-1] is plan:
                held.pop()  # the usual order: the latest block ends first
            else:
                _lockset.forget(plan, state)  # type: ignore[arg-type]
            # Closed: no finalizer runs when the object is freed.
            self.__class__ = _CLOSED[type(self)]
        if self._debug:
            logger.debug(
                "released %s in %s", _describe_plan(plan), self.cache._real_root
            )
        if lost is not None:
            # The block's work was done without its lock (an exception of
            # the block itself stays this one's __context__).
            raise lost

    def _finalize(self) -> None:
        # The finalizer of an open block (``__del__`` of its class while it
        # is open, see _open_class). Still holding, and unreachable: an
        # interrupt landed as __exit__
        # began, before any of its code ran (a function's entry is a point
        # where pending signal handlers run), and the with statement went on
        # without it. Release what is left now, or, if this thread is inside
        # pkgcache's own bookkeeping of one of those locks (a finalizer can
        # run anywhere), at the next call.
        # getattr: __init__ itself may have been interrupted.
        if getattr(self, "_remaining", 0) and self._generation == _process.generation:
            state = self._state
            assert state is not None
            orphan = (self._plan, self._remaining, state)
            self._remaining = 0
            for lock, _ in self._plan:
                if lock.busy_here():
                    _orphans.append(orphan)
                    return
            _release_orphan(*orphan)

    def covers(self, package: str) -> NormalizedName:
        """Return the canonical name if this handle holds ``package``, else raise.

        Raises:
            InvalidPackageName: ``package`` is not a valid name.
            NotLockedError: the block is not open (or this is a forked
                child of the process that opened it), or ``package`` is not
                held.
        """
        name = _canonical(package)
        self._require_open()
        if name not in self.packages and name not in self._shared:
            held = ", ".join(sorted((*self.packages, *self._shared))) or "no package"
            raise NotLockedError(
                f"package {name!r} is not locked by this {type(self).__name__} "
                f"(it holds {held}); name it when entering the with-block"
            )
        return name

    def _require_open(self) -> None:
        if not self._open:
            when = "before" if self._state is None else "after"
            raise NotLockedError(
                f"this {type(self).__name__} was used {when} its with-block"
            )
        if self._generation != _process.generation:
            raise NotLockedError(
                f"this {type(self).__name__} was opened by the parent of this "
                "forked process, which holds none of its locks"
            )

    def _verify(self) -> None:
        """Raise if a lock of this block was lost (see LockEngine.check).

        The store calls it right before each rename that publishes or
        removes an entry.
        """
        self._require_open()
        for lock, _ in self._plan:
            lock.engine.check()

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        name = type(self).__name__
        return f"<{name} {list(self.packages)} of {self.cache.root} ({state})>"


class CacheView(LockRequest):
    """What :meth:`Cache.reading` returns: shared locks, and proof of them.

    ``with cache.reading("a") as view:`` takes the locks and gives back the
    same object; inside the block it reads the store (see :doc:`store`).
    """

    __slots__ = ()

    # -- the store (see pkgcache._store): reads need the package held --------

    def entries(self, package: str) -> list[Entry]:
        """Every entry of ``package``, sorted by key.

        Damaged entries (see :doc:`store`) are left out, with a warning.

        Raises:
            NotLockedError: this handle does not hold ``package``.
            UnsafePathError: the package's folder is a symbolic link.
        """
        return self.cache._store().entries(self.covers(package))

    def find(
        self,
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
        ``tags``), then the shortest key, then the first key in sorted
        order. Extras and markers are ignored. A damaged entry is skipped
        for the next best, with a warning. Records the entry's use (see
        :meth:`Cache.prune`).

        Args:
            requirement: a PEP 508 string (``"setuptools-scm>=8"``) or a
                :class:`packaging.requirements.Requirement`.
            kind: ``"wheel"``, ``"sdist"``, or ``None`` for both.
            tags: supported tags, most preferred first.

        Raises:
            InvalidRequirement: ``requirement`` does not parse.
            NotLockedError: this handle does not hold the package.
        """
        req = parse_requirement(requirement)
        package = self.covers(req.name)
        return self.cache._store().find(package, req.specifier, kind=kind, tags=tags)

    def path(self, package: str, key: str) -> Path:
        """Where entry ``key`` of ``package`` is; valid while the block is open.

        Records the entry's use (see :meth:`Cache.prune`).

        Raises:
            EntryNotFound: there is no such entry.
            EntryDamaged: the entry fails its check (see :doc:`store`).
            InvalidKey: ``key`` is not a valid key.
            NotLockedError: this handle does not hold ``package``.
            UnsafePathError: the entry, or a folder on its way, is a symbolic
                link (its target is left untouched).
        """
        return self.entry(package, key).path

    def entry(self, package: str, key: str) -> Entry:
        """The entry ``key`` of ``package``, with its use recorded.

        Raises the same errors as :meth:`path`.
        """
        return self.cache._store().entry(self.covers(package), key)


class CacheTransaction(CacheView):
    """What :meth:`Cache.exclusive` returns: exclusive locks, and proof of them.

    It reads every package it holds and writes the ones it holds
    exclusively: ``packages``, or every package inside ``exclusive()``.

    Inside ``exclusive()`` (no packages) it covers every package. The write
    methods take the package from ``package=``, else from the one package
    the transaction holds, else (for a wheel or sdist) from the file name.
    """

    __slots__ = ()

    @property
    def whole_cache(self) -> bool:
        """Whether this holds the whole cache exclusively (``exclusive()``)."""
        return not self.packages

    @property
    def reading(self) -> tuple[NormalizedName, ...]:
        """Canonical names of the packages held only shared (``reading=``)."""
        return self._shared

    def covers(self, package: str) -> NormalizedName:
        if not self.packages:
            name = _canonical(package)
            self._require_open()
            return name
        return super().covers(package)

    def _writable(self, package: str) -> NormalizedName:
        """Like :meth:`covers`, for a write: the package must be held exclusively."""
        name = self.covers(package)
        if self.packages and name not in self.packages:
            raise NotLockedError(
                f"package {name!r} is held only for reading by this "
                "CacheTransaction (reading=...); name it among the exclusive "
                "packages to write it"
            )
        return name

    def _target(self, package: str | None, key: object = None) -> NormalizedName:
        """The package a write is about (see :func:`pkgcache._store.choose_package`)."""
        held, whole = self.packages, self.whole_cache
        return self._writable(choose_package(package, held, whole, key))

    # -- the store (see pkgcache._store): writes need the package exclusive --

    def add(
        self,
        src: str | os.PathLike[str],
        *,
        key: str | None = None,
        move: bool = False,
        package: str | None = None,
    ) -> Entry:
        """Store the file ``src`` as entry ``key`` (default: its file name).

        The file is copied (or, with ``move=True``, renamed when it is on the
        same file system, else copied and then deleted) into a staging file
        under ``<root>/tmp/``, synced to disk (unless the cache is not
        ``durable``), then renamed into place: readers see the old entry or
        the new one, never a part, and once this returns the entry survives
        a power cut. An entry with the same key is replaced. ``src`` must be
        a regular file; nothing waits on a FIFO.

        With ``move=True`` the call either stores the entry and returns, or
        raises and stores nothing, leaving ``src`` in place.

        Raises:
            InvalidKey: ``key`` is invalid, or a folder on its way is an
                entry, or it names a folder of other entries.
            InvalidArtifact: a ``.whl``, ``.tar.gz`` or ``.zip`` name does
                not parse as a wheel or sdist of the package; ``src`` is not a
                regular file.
            SourceNotFound: ``src`` does not exist.
            SourcePermissionError: ``src`` cannot be read, or with
                ``move=True`` its folder cannot be written.
            StoreWriteError: the file system failed (disk full, I/O error);
                nothing visible changed.
            CachePermissionError: the cache is read-only.
            UnsafePathError: a symbolic link is planted on the entry's way.
            NotLockedError: this transaction does not hold the package.
        """
        name = self._target(package, os.fspath(src) if key is None else key)
        return self.cache._store().add(name, src, key, move=move, verify=self._verify)

    def add_tree(
        self, key: str, *, package: str | None = None
    ) -> contextlib.AbstractContextManager[Path]:
        """Build a folder entry: ``with txn.add_tree(key) as staging:``.

        ``staging`` is an empty folder under ``<root>/tmp/``. When the block
        ends without an exception, pkgcache adds its marker file
        (``.pkgcache-tree``: size and creation time), syncs every file and
        folder of the tree (unless the cache is not ``durable``), and renames
        the folder to ``<root>/packages/<name>/<key>`` in one step, replacing
        any entry with that key; on an exception the folder is deleted. The
        key is checked at once, before the block.

        Raises the errors of :meth:`add` that apply.
        """
        name = self._target(package)
        return self.cache._store().add_tree(name, key, verify=self._verify)

    def remove(self, key: str, *, package: str | None = None) -> bool:
        """Remove entry ``key``; return ``False`` if there was none.

        A damaged entry is removed like any other.

        Raises:
            InvalidKey: ``key`` is not a valid key.
            UnsafePathError: the entry is a symbolic link (left in place).
            NotLockedError: this transaction does not hold the package.
        """
        name = self._target(package, key)
        return self.cache._store().remove(name, key, verify=self._verify)

    def clear(self, *, package: str | None = None) -> int:
        """Remove every entry of the packages held exclusively (or of ``package``).

        Inside ``exclusive()`` without a ``package``, empties the store.
        Also deletes staging leftovers of those packages. Returns the number
        of entries removed.
        """
        store = self.cache._store()
        if package is not None:
            names = [self._writable(package)]
        elif self.whole_cache:
            names = store.package_names()
        else:
            names = [self._writable(name) for name in self.packages]
        return sum(store.clear(name, verify=self._verify)[0] for name in names)


class Cache:
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

    Every :class:`Cache` object on the same root folder in one process
    (whatever path names it: links and bind mounts are followed to the
    folder itself) shares one set of locks, so two objects behave like one.
    Objects are safe to share between threads and survive ``fork()`` (the
    child holds none of the parent's locks). The descriptors of a root are
    closed once no :class:`Cache` object on it is left.

    Args:
        root: the cache folder; ``~`` is expanded.
        timeout: default seconds to wait for a lock; ``None`` waits forever,
            ``0`` never waits.
        durable: sync every entry to disk before ``add()`` or ``add_tree()``
            returns (see :doc:`store`). ``False`` is faster, for throw-away
            caches and tests: a power cut (not a crash) may then lose or
            truncate entries published in the last seconds or so.
        adopt: take an existing folder that holds other files as the cache
            root all the same (it gets the cache files above).
        locks: ``None`` (the default) for locks on lock files (flock), which
            exclude the processes of one machine; or a lock server's URL,
            ``"postgresql://user@host/database"``, to hold every lock of
            the cache on PostgreSQL and share the cache folder between hosts
            (see :doc:`postgres`; needs ``pkgcache[postgres]``). Every
            process and host that uses the cache must pass the same server.

    Raises:
        NotACacheError: ``root`` is a uv cache or a folder of other files,
            and ``adopt`` is false.
        InvalidLockServer: ``locks`` is not a ``postgresql://`` URL, or the
            PostgreSQL driver is not installed.

    Attributes:
        timeout: the default timeout.
        durable: whether publishing syncs to disk.
    """

    # False for a root another tool owns (see _attach).
    _tag_root = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        durable: bool = True,
        adopt: bool = False,
        locks: str | None = None,
    ) -> None:
        self._server = None if locks is None else check_lock_server(locks)
        self._root = _layout.cache_root(root, adopt=adopt)
        self._real_root = os.path.realpath(self._root)
        self.timeout = _resolve_timeout(timeout, None)
        self.durable = bool(durable)
        self._locks_path = os.path.join(self._real_root, LOCKS_DIR)
        self._space: LockSpace | None = None
        self._artifacts: Store | None = None
        self._artifacts_fd = -1

    @classmethod
    def _attach(
        cls,
        root: str | os.PathLike[str],
        locks_path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        locks: str | None = None,
    ) -> Cache:
        """A cache on a folder another tool owns, for integrations (private).

        The whole-cache lock stays ``<root>/.lock`` (the other tool's lock
        file, e.g. uv's); package locks, their gates and the root gate live
        in ``locks_path``, which the caller picks where the other tool never
        looks. Nothing but ``<root>/.lock`` is ever created inside ``root``.
        Every process that works on ``root`` must pass the same
        ``locks_path``, or their package locks do not meet.
        """
        cache = cls(root, timeout=timeout, adopt=True, locks=locks)
        cache._locks_path = os.path.realpath(os.fspath(locks_path))
        cache._tag_root = False
        return cache

    @property
    def root(self) -> Path:
        """The cache folder, as given (``~`` expanded, made absolute)."""
        return self._root

    def __repr__(self) -> str:
        durable = "" if self.durable else ", durable=False"
        locks = ""
        if self._server is not None:
            from ._postgres import redacted  # noqa: PLC0415 - imported already

            locks = f", locks={redacted(self._server)!r}"
        return f"Cache({str(self._root)!r}, timeout={self.timeout!r}{durable}{locks})"

    def _open_space(self) -> LockSpace:
        self._space = lock_space(
            self._real_root,
            self._locks_path,
            tag_root=self._tag_root,
            server=self._server,
        )
        return self._space

    def _lock_space(self) -> LockSpace:
        space = self._space
        if (
            space is None
            or space.generation != _process.generation
            or space.root_folder.gone
        ):
            space = self._open_space()
        return space

    def _store(self) -> Store:
        """The artifact store of the root the locks are taken in."""
        if not self._tag_root:
            raise CacheError(
                f"{self.root} belongs to another tool (an attached cache): it "
                "has locks but no artifact store"
            )
        space = self._lock_space()
        fd = space.root_folder.fd
        if fd is None:
            raise CacheError("the artifact store needs folder descriptors")
        store = self._artifacts
        # A new store when the root folder was opened anew (after a fork,
        # or the root was replaced): the old descriptor is closed.
        if store is None or self._artifacts_fd != fd:
            store = self._artifacts = Store(space.root, fd, durable=self.durable)
            self._artifacts_fd = fd
        return store

    # -- the store's maintenance (see pkgcache._maintenance) -----------------------

    def clean(
        self, *packages: str, timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CleanReport:
        """Remove every entry of ``packages``, or of the whole store.

        With packages, each is emptied in turn under its exclusive lock, so
        work on other packages goes on. Without, the whole store is emptied
        under the whole-cache exclusive lock. Lock files, ``CACHEDIR.TAG``
        and the root stay. Staging leftovers of the packages are deleted.

        Raises:
            InvalidPackageName: a name is not a valid project name.
            LockTimeout: a lock was not granted in time (packages cleaned
                before it stay cleaned).
            CachePermissionError: the cache is read-only.
        """
        return _maintenance.clean(self, self._store(), packages, timeout)

    def prune(
        self,
        *,
        max_bytes: int | None = None,
        older_than: float | None = None,
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> PruneReport:
        """Remove least recently used entries; reap dead writers' leftovers.

        Takes ``<root>/.lock`` shared (waiting up to ``timeout``), lists
        every entry, then removes damaged entries (see :doc:`store`), those
        last used more than ``older_than`` seconds ago, and more, least
        recently used first, until the store holds at most ``max_bytes``.
        Each package is taken exclusively only if that needs no waiting: a
        package another thread or process holds (or this thread holds
        shared) is skipped (reported in ``skipped``), never waited for. An
        entry used after the listing is kept. Staging leftovers in
        ``<root>/tmp/`` whose package lock is free are deleted: their
        writer is gone.

        Raises:
            ValueError: a negative or non-numeric limit.
            LockTimeout: the whole-cache lock was not granted in time.
        """
        return _maintenance.prune(self, self._store(), max_bytes, older_than, timeout)

    def info(
        self, *, timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT
    ) -> CacheInfo:
        """Count packages, entries, bytes and staging, under ``<root>/.lock`` shared.

        Package locks are not taken: a package being written meanwhile is
        counted before or after the change. ``staging_entries`` and
        ``staging_bytes`` count ``<root>/tmp/``: writes under way and the
        leftovers of writers that died, which :meth:`prune` reaps.
        """
        return _maintenance.info(self, self._store(), timeout)

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
            timeout: seconds to wait in all; ``None`` waits forever; ``0``
                never waits; by default the cache's timeout.

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
        self,
        *packages: str,
        reading: Iterable[str] = (),
        timeout: float | DefaultTimeout | None = DEFAULT_TIMEOUT,
    ) -> CacheTransaction:
        """Hold exclusive locks: each package named, or the whole cache.

        ``with cache.exclusive("a", "b") as txn:`` takes ``<root>/.lock``
        shared, then ``locks/a.lock`` and ``locks/b.lock`` exclusive. It waits
        until no other thread or process holds ``a`` or ``b`` in any mode (or
        the whole cache exclusively), and work on other packages goes on.

        ``with cache.exclusive("a", reading=["b", "c"]) as txn:`` also holds
        ``b`` and ``c`` shared: the pattern of a builder that writes its
        package while it reads its build dependencies. All the locks are
        taken in the one global order, so two such calls never deadlock,
        however their sets cross; a name in both is held exclusively. The
        transaction reads every package it holds and writes only ``a``.

        ``with cache.exclusive() as txn:`` takes ``<root>/.lock`` exclusive:
        it waits for every other holder of any lock of this cache (and for
        uv commands on the same folder), and blocks them all until it ends.

        Args:
            packages: project names (any spelling; canonicalized).
            reading: more project names, held shared.
            timeout: seconds to wait in all; ``None`` waits forever; ``0``
                never waits; by default the cache's timeout.

        Raises:
            InvalidPackageName: a name is not a valid project name.
            ValueError: ``reading`` was given without ``packages`` (inside
                ``exclusive()`` every package is held already).
            LockTimeout: the locks were not all granted in time; none is held.
            LockUpgradeError: this thread holds one of these locks shared.
            LockOrderError: see :meth:`reading`.
            CachePermissionError: the cache is read-only for this process.
        """
        names = _canonical_sorted(packages) if packages else ()
        shared: tuple[NormalizedName, ...] = ()
        if reading:
            if isinstance(reading, str):
                raise TypeError(
                    "reading= takes a list of package names, not a single string"
                )
            if not names:
                raise ValueError(
                    "reading= needs at least one package held exclusively; "
                    "exclusive() alone already covers every package"
                )
            shared = tuple(
                name for name in _canonical_sorted(tuple(reading)) if name not in names
            )
        return CacheTransaction(
            self,
            names,
            True,
            self.timeout
            if timeout is DEFAULT_TIMEOUT
            else _resolve_timeout(timeout, self.timeout),
            shared,
        )

    def _busy_error(
        self, busy: _lockset.Busy, state: _process.ThreadState, start: float
    ) -> LockTimeout | LockOrderError:
        """The error for a lock that could not be had."""
        lock = busy.lock
        if busy.out_of_order:
            return LockOrderError(
                f"{lock.what} is busy, and this thread already holds a lock "
                f"later in the lock order ({_lockset.describe_later(state, lock)}); "
                "waiting could deadlock. Take all the locks in one call "
                '(cache.exclusive("pkg", reading=[...]) holds some packages '
                "exclusively and others shared), or release the later ones first"
            )
        return LockTimeout(
            root=self._real_root,
            package=lock.package,
            mode="exclusive" if busy.exclusive else "shared",
            waited=_monotonic() - start,
            holders=lock.holders(),
        )

    def holders(self, *packages: str) -> list[Holder]:
        """Who holds or waits for locks of this cache, right now.

        With package names, reports those packages' locks; without, the
        whole-cache lock and every package lock file in the cache. Holders in
        other processes are found on Linux (``/proc/locks``); elsewhere only
        this process's threads are reported. On a lock server (``locks=``)
        holders on every host are reported, with their host; there are no
        lock files to list, so without names the packages reported are
        those of the store and those this process has locked.

        Raises:
            InvalidPackageName: a name is not a valid project name (nothing
                touches the disk).
        """
        names = _canonical_sorted(packages) if packages else ()
        space = self._lock_space()
        if names:
            locks = [space.package_lock(name) for name in names]
        else:
            known = set(space.known_packages())
            if space.server is not None and self._tag_root:
                known.update(self._store().package_names())
            locks = [space.root_lock]
            locks.extend(space.package_lock(name) for name in sorted(known))
        return [holder for lock in locks for holder in lock.holders()]

    def statistics(self, package: str | None = None) -> LockStatistics:
        """What this process knows of a lock right now (no I/O).

        The whole-cache lock by default, else ``package``'s. See
        :class:`LockStatistics`; :meth:`holders` covers other processes.

        Raises:
            InvalidPackageName: ``package`` is not a valid project name.
        """
        name = None if package is None else _canonical(package)
        space = self._lock_space()
        lock = space.root_lock if name is None else space.package_lock(name)
        return lock.statistics(_process.thread_state())

    def locks_in_use(self) -> list[LockStatistics]:
        """Every lock of this cache a thread of this process holds or waits for.

        What the pytest plugin checks at teardown. Opens nothing.
        """
        space = self._space
        if space is None or space.generation != _process.generation:
            return []
        state = _process.thread_state()
        found = []
        for lock in space.locks():
            stats = lock.statistics(state)
            if stats.readers or stats.writer or stats.writers_waiting:
                found.append(stats)
        return found

    def close(self) -> None:
        """Close this process's idle descriptors of this cache now.

        Locks held stay open. The cache stays usable: files are opened again
        on the next call. Descriptors are also closed on their own once no
        :class:`Cache` object on the folder is left.
        """
        space = self._space
        if space is not None and space.generation == _process.generation:
            space.close_idle()

    def lock_path(self, package: str | None = None) -> Path:
        """The lock file of ``package``, or of the whole cache for ``None``."""
        if package is None:
            return Path(self._real_root, ROOT_LOCK)
        return Path(self._locks_path, f"{_canonical(package)}.lock")


def _lost(plan: Plan) -> LockLost | None:
    """The error of the first lock of ``plan`` that was lost, if any."""
    for lock, _ in plan:
        try:
            lock.engine.check()
        except LockLost as exc:
            return exc
    return None


def _describe_plan(plan: Plan) -> str:
    return ", ".join(
        f"{lock.what} {'exclusive' if exclusive else 'shared'}"
        for lock, exclusive in plan
    )


def _log_acquired(space: LockSpace, plan: Plan, start: float) -> None:
    logger.debug(
        "acquired %s in %s after %.6f s",
        _describe_plan(plan),
        space.root,
        _monotonic() - start,
    )
