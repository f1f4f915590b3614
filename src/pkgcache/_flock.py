"""The flock engine: pkgcache's locks on one machine, as lock files.

Files of one cache
------------------
``<root>/.lock``
    The whole-cache lock: the file and protocol uv uses for its own cache.
``<locks>/<name>.lock``
    One package's lock, ``<name>`` being its canonical name.
``<locks>/<name>.gate``, ``<locks>/.root.gate``
    Writer-intent gates, one per lock (see below).

``<locks>`` is ``<root>/locks``, or a folder outside the root when another
tool owns the root (:mod:`pkgcache.uv`). Lock files are created on first use
and never truncated, renamed or deleted by pkgcache; every one is opened
with ``O_NOFOLLOW`` relative to its folder's descriptor (see
:mod:`pkgcache._oslock`), read-write (NFS needs write access for an
exclusive flock), read-only on a cache this process cannot write.

The engine holds a lock *for the process*: one descriptor per lock file,
kept open, locked with ``flock`` when the process's first thread takes the
lock and unlocked after its last lets go (:mod:`pkgcache._processlock`).

Waiting fairly: the gate
------------------------
flock lets a new reader overtake a queued writer, for ever if readers
overlap. So a request that must wait (:meth:`FlockEngine.acquire`):

1. queues at the **gate**: ``flock(gate, LOCK_EX)``, so waiters pass one at
   a time;
2. a writer sets the **intent byte** (byte 0 of the gate, mapped shared by
   every process) to 1; a reader sets it to 0 (nobody else waits: waiting
   writers hold the gate, so a byte left by a writer killed while waiting
   is cleared here);
3. waits for the lock file;
4. a writer clears the byte; the gate is unlocked.

A request that does not wait (:meth:`FlockEngine.try_acquire`) reads the
intent byte first. A set byte normally means a writer waits, and the
request fails so that it queues behind the writer. But the byte may be
stale (its writer was killed while waiting): the gate taken at once proves
that no writer waits, and the byte is cleared. Without that check one
killed writer made every ``timeout=0`` call fail, in every process, until
some other call happened to queue at the gate.

Exclusion comes only from the lock file; the gate and the byte only order
waiters.

Self-check after every grant
----------------------------
A descriptor kept open outlives the file: if someone deletes the locks
folder (or the file) while nobody holds the lock, the next process creates
a new file, and a process still locking the old one would not exclude it.
After every grant the engine ``fstat``-s its descriptor; a file with no
link left, or a descriptor number that now names another file (user code
closed it, ``os.closerange``, and the number was reused), is forgotten, the
file is opened again from its folder (recreating the folder if it is gone)
and the grant is retried. A root folder that was removed raises
:class:`~pkgcache.CacheError`. What stays out of reach: a holder that keeps
the old file while the new one is locked (the deletion happened during its
hold), and the user's file that was locked through a reused descriptor
before the check (do not close descriptors you did not open).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import time
import weakref
from collections.abc import Callable

from . import _oslock, _process
from ._engine import Expired
from ._errors import CacheError, CachePermissionError, UnsafePathError
from ._holders import Holder, file_id, kernel_locks, process_holder

__all__ = ["ROOT_GATE", "ROOT_LOCK", "FlockEngine", "FlockService", "Folder"]

ROOT_LOCK = ".lock"
ROOT_GATE = ".root.gate"

# Waits with a deadline poll the lock file (flock has no timed wait): start
# short so a quick hand-over is seen quickly, cap at about 1000 cheap calls/s.
_FIRST_POLL = 0.00005
_MAX_POLL = 0.001

_flock = _oslock.flock
_quick_flock = _oslock.quick_flock
_other_threads = _oslock.other_threads
_TRY_LOCK = _oslock.TRY_LOCK
_LOCK = _oslock.LOCK
_UNLOCK = _oslock.UNLOCK
_fstat = os.fstat


class _Resources:
    """The descriptors and maps of one service, for its finalizer.

    Kept apart from the service so the finalizer can reach them without
    keeping the service alive.
    """

    __slots__ = ("descriptors", "generation", "maps", "shed")

    def __init__(self) -> None:
        self.descriptors: set[int] = set()
        self.maps: set[mmap.mmap] = set()
        self.generation = _process.generation
        #: Closes idle locks when the process runs out of descriptors;
        #: returns how many it closed (set by the owner of the engines).
        self.shed: Callable[[], int] | None = None

    def open(self, opener: Callable[[], int]) -> int:
        fd = _process.open_descriptor(opener)
        self.descriptors.add(fd)
        return fd

    def close(self, fd: int) -> None:
        if fd in self.descriptors and self.generation == _process.generation:
            self.descriptors.discard(fd)
            _process.close_descriptor(fd)

    def close_map(self, mapping: mmap.mmap) -> None:
        if mapping in self.maps and self.generation == _process.generation:
            self.maps.discard(mapping)
            _process.close_map(mapping)

    def close_all_later(self) -> None:
        _process.defer_close(self.generation, tuple(self.descriptors), tuple(self.maps))
        self.descriptors = set()
        self.maps = set()


class Folder:
    """A folder of lock files, reached through a descriptor held open.

    Opening lock files relative to this descriptor means a folder swapped
    for a symbolic link after start-up cannot redirect them elsewhere.
    ``parent``/``name`` say how to open it again if it is deleted (``None``
    for the root, which is never reopened, and for a folder outside the
    root, opened again by ``path``).
    """

    __slots__ = ("fd", "gone", "name", "parent", "path", "quick", "resources")

    def __init__(
        self,
        resources: _Resources,
        path: str,
        fd: int | None,
        *,
        parent: Folder | None = None,
        name: str | None = None,
    ) -> None:
        self.resources = resources
        self.path = path
        self.fd = fd
        self.parent = parent
        self.name = name
        #: Set once the folder is known to be removed for good (the root).
        self.gone = False
        #: Whether calls that cannot block may keep the interpreter lock
        #: (see :mod:`pkgcache._oslock`): a local file system.
        self.quick = (
            fd is not None
            and _oslock.HAVE_QUICK_FLOCK
            and _oslock.is_local_file_system(fd)
        )

    def display(self, name: str) -> str:
        """The path of ``name`` in this folder, for messages."""
        return f"{self.path}/{name}"

    def removed(self) -> bool:
        """Whether this folder was deleted (its descriptor names no folder)."""
        if self.fd is None:
            return not os.path.isdir(self.path)
        try:
            return _fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def reopen(self) -> None:
        """Open the folder again after it was deleted, creating it.

        Raises:
            CacheError: this is the cache root, or the root is gone too.
        """
        if self.parent is None and self.name is None:
            self.gone = True
            raise CacheError(
                f"the cache root {self.path} was removed or replaced while in use; "
                "use a new Cache object"
            )
        old = self.fd
        if self.parent is not None:
            assert self.name is not None
            if self.parent.removed():
                self.parent.reopen()  # raises for the root
            fd = _open_folder(self.resources, self.name, self.parent, self.path)
        else:
            os.makedirs(self.path, exist_ok=True)
            fd = _open_folder(self.resources, self.path, None, self.path)
        self.fd = fd
        if old is not None:
            self.resources.close(old)


def _open_folder(
    resources: _Resources, name: str, parent: Folder | None, display: str
) -> int | None:
    """Open a folder with ``O_NOFOLLOW``; ``name`` in ``parent``, created if missing.

    Returns ``None`` where the platform has no folder descriptors (Windows):
    paths are used instead.
    """
    dir_fd = None if parent is None else parent.fd
    if parent is not None:
        try:
            if dir_fd is None:
                os.mkdir(display)
            else:
                os.mkdir(name, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except FileNotFoundError as exc:
            raise _oslock.FolderGone(f"cannot create {display}") from exc
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A read-only cache: fine if the folder is already there.
    if not _oslock.HAVE_DIR_FD:
        _oslock.check_directory(display, nested=parent is not None)
        return None
    return resources.open(
        lambda: _oslock.open_directory(
            name if dir_fd is not None else display, dir_fd=dir_fd, display=display
        )
    )


class FlockEngine:
    """The flock lock of one lock file, with its gate (see the module docstring)."""

    __slots__ = (
        "_dev",
        "_fd",
        "_folder",
        "_gate_fd",
        "_gate_folder",
        "_gate_held",
        "_gate_name",
        "_gate_writable",
        "_ino",
        "_intent",
        "_name",
        "_quick",
        "_resources",
        "_virtual",
        "_writable",
        "package",
    )

    def __init__(
        self,
        package: str | None,
        folder: Folder,
        name: str,
        gate_folder: Folder,
        gate_name: str,
    ) -> None:
        self.package = package
        self._folder = folder
        self._name = name
        self._gate_folder = gate_folder
        self._gate_name = gate_name
        self._resources = folder.resources
        self._quick = folder.quick
        self._fd: int | None = None
        self._dev = self._ino = 0
        self._writable = True
        self._gate_fd: int | None = None
        self._gate_writable = True
        self._intent: mmap.mmap | None = None
        self._gate_held = False
        # A shared hold on a lock file that does not exist and cannot be
        # created (a read-only cache): nothing to lock, nobody ever wrote it.
        self._virtual = False

    @property
    def description(self) -> str:
        """The lock file's path."""
        return self._folder.display(self._name)

    @property
    def gate_path(self) -> str:
        """The gate file's path."""
        return self._gate_folder.display(self._gate_name)

    @property
    def is_open(self) -> bool:
        """Whether the lock file is open."""
        return self._fd is not None

    # -- opening -------------------------------------------------------------

    def _open(self) -> int:
        """Open the lock file and the gate; return the lock file's descriptor."""
        try:
            return self._open_all()
        except OutOfDescriptors:
            # Fewer descriptors than the idle bound assumed (the limit was
            # lowered after import, or the application uses many): close the
            # idle locks, keep fewer from now on, and try once more.
            shed = self._resources.shed
            if shed is None or not shed():
                raise
        return self._open_all()

    def _open_all(self) -> int:
        fd = self._open_file(self._folder, self._name, gate=False)
        try:
            try:
                gate_fd = self._open_file(self._gate_folder, self._gate_name, gate=True)
            except CachePermissionError:
                # A read-only cache without the gate file: waits are not
                # queued at a gate (fairness only; exclusion is the lock file).
                return fd
            try:
                self._intent = _oslock.map_intent_byte(
                    gate_fd, self._gate_writable, self.gate_path
                )
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise OutOfDescriptors(self.gate_path) from exc
                # No shared mappings here: every request queues at the gate.
                self._intent = None
            if self._intent is not None:
                self._resources.maps.add(self._intent)
        except BaseException:
            self.close()
            raise
        return fd

    def _open_file(self, folder: Folder, name: str, *, gate: bool) -> int:
        for attempt in (1, 2):
            dir_fd = folder.fd
            writable = [True]

            def opener(
                folder: Folder = folder,
                dir_fd: int | None = dir_fd,
                writable: list[bool] = writable,
            ) -> int:
                fd, writable[0] = _oslock.open_lock_file(
                    name if dir_fd is not None else folder.display(name),
                    dir_fd=dir_fd,
                    display=folder.display(name),
                )
                return fd

            try:
                fd = self._resources.open(opener)
            except _oslock.FolderGone as exc:
                try:
                    if attempt == 2:
                        raise
                    folder.reopen()
                except _oslock.FolderGone:
                    raise CacheError(
                        f"cannot open {folder.display(name)}: its folder keeps "
                        "being removed or replaced"
                    ) from exc
                continue
            except UnsafePathError:
                if dir_fd is not None and not _is_folder(dir_fd):
                    # The folder's number now names a file of the user's.
                    raise _folder_closed(folder.display(name)) from None
                raise
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    raise OutOfDescriptors(folder.display(name)) from exc
                if exc.errno == errno.EBADF and dir_fd is not None:
                    raise _folder_closed(folder.display(name)) from exc
                raise
            if gate:
                self._gate_fd, self._gate_writable = fd, writable[0]
            else:
                st = _fstat(fd)
                self._fd, self._writable = fd, writable[0]
                self._dev, self._ino = st.st_dev, st.st_ino
            return fd
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the lock file, the gate and the map (only when not held)."""
        resources = self._resources
        intent, self._intent = self._intent, None
        if intent is not None:
            resources.close_map(intent)
        gate_fd, self._gate_fd = self._gate_fd, None
        if gate_fd is not None:
            resources.close(gate_fd)
        fd, self._fd = self._fd, None
        if fd is not None:
            resources.close(fd)

    def _lock_fd(self, exclusive: bool) -> int:
        fd = self._fd
        if fd is None:
            try:
                fd = self._open()
            except _oslock.LockFileMissing as exc:
                if exclusive:
                    raise CachePermissionError(str(exc)) from exc
                raise
        if exclusive and not self._writable:
            raise CachePermissionError(
                f"cannot take an exclusive lock on {self._what()}: "
                f"{self.description} is read-only for this process"
            )
        return fd

    def _what(self) -> str:
        return (
            "the whole cache" if self.package is None else f"package {self.package!r}"
        )

    # -- the contract ------------------------------------------------------------

    def writer_waits(self) -> bool:
        """Whether the intent byte says a writer of another process waits.

        Without a readable byte but with a gate, every request queues at the
        gate; without a gate (a read-only cache), nothing can be known.
        """
        intent = self._intent
        if intent is not None:
            return intent[0] != 0
        return self._gate_fd is not None

    def writer_really_waits(self) -> bool:
        """Check the intent byte against the gate; clear a stale byte."""
        if not self.writer_waits():
            return False
        gate_fd = self._gate_fd
        if gate_fd is None:
            return False
        try:
            _flock(gate_fd, _TRY_LOCK[True])
        except BlockingIOError:
            return True  # a writer waits (or a waiter is passing the gate)
        try:
            # Waiting writers hold the gate, and we do: none waits.
            if self._intent is not None and self._gate_writable:
                self._intent[0] = 0
        finally:
            _flock(gate_fd, _UNLOCK)
        return False

    def try_acquire(self, exclusive: bool) -> bool:
        """Take the lock if that needs no waiting (see the module docstring)."""
        fd = self._fd
        if fd is None or (exclusive and not self._writable):
            try:
                fd = self._lock_fd(exclusive)
            except _oslock.LockFileMissing:
                self._virtual = True  # only shared requests get here
                return True
        intent = self._intent
        if (
            intent[0] if intent is not None else self._gate_fd is not None
        ) and self.writer_really_waits():
            return False  # queue behind the writer
        operation = _TRY_LOCK[exclusive]
        try:
            if self._quick and _other_threads():
                # Keep the interpreter lock through a call that cannot block
                # (see pkgcache._oslock): no hand-over to another thread.
                if _quick_flock(fd, operation) and not _oslock.granted_after_all(
                    fd, operation
                ):
                    return False
            else:
                _flock(fd, operation)
            st = _fstat(fd)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            return self._try_again(exclusive, None)  # closed under us
        if st.st_nlink and st.st_ino == self._ino and st.st_dev == self._dev:
            return True
        return self._try_again(exclusive, st)

    def _try_again(self, exclusive: bool, seen: os.stat_result | None) -> bool:
        """After a grant on a descriptor that is no longer the lock file: retry.

        ``seen`` is what ``fstat`` said of it (``None``: it was closed).
        """
        for _ in range(3):
            self._forget(seen)
            fd = self._lock_fd(exclusive)
            try:
                _flock(fd, _TRY_LOCK[exclusive])
            except BlockingIOError:
                return False
            seen = _fstat(fd)
            if seen.st_nlink and (seen.st_dev, seen.st_ino) == (self._dev, self._ino):
                return True
        raise CacheError(f"{self.description} keeps being replaced; giving up")

    def acquire(self, exclusive: bool, deadline: float | None) -> None:
        """Queue at the gate, then wait for the lock file (module docstring)."""
        try:
            fd = self._lock_fd(exclusive)
        except _oslock.LockFileMissing:
            self._virtual = True  # only shared requests get here
            return
        gate_fd = self._gate_fd
        if gate_fd is None:
            self._wait_for_lock_file(fd, exclusive, deadline)
            return
        intent = self._intent if self._gate_writable else None
        # Set before the wait: an interrupt anywhere after it leaves
        # release() to unlock the gate (unlocking a gate not held is harmless).
        self._gate_held = True
        _wait(gate_fd, True, deadline)
        if intent is not None:
            intent[0] = 1 if exclusive else 0
        self._wait_for_lock_file(fd, exclusive, deadline)
        self._leave_gate()

    def _wait_for_lock_file(
        self, fd: int, exclusive: bool, deadline: float | None
    ) -> None:
        for _ in range(3):
            try:
                _wait(fd, exclusive, deadline)
                seen: os.stat_result | None = _fstat(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
                seen = None  # closed under us
            if (
                seen is not None
                and seen.st_nlink
                and (seen.st_dev, seen.st_ino) == (self._dev, self._ino)
            ):
                return
            self._forget(seen)
            fd = self._lock_fd(exclusive)
        raise CacheError(f"{self.description} keeps being replaced; giving up")

    def _leave_gate(self) -> None:
        if self._gate_held:
            gate_fd = self._gate_fd
            intent = self._intent
            if intent is not None and self._gate_writable and intent[0]:
                intent[0] = 0
            self._gate_held = False
            if gate_fd is not None:
                _flock(gate_fd, _UNLOCK)

    def release(self) -> bool:
        """Unlock the lock file (and the gate, after an interrupted wait).

        Returns whether a writer of another process waits: the kernel has
        just woken it, often on this very processor, where it runs only once
        this thread blocks, so the caller yields the processor once it has
        let go of its own mutex (on two cores that cut the median hand-over
        between processes from about 100 µs to 60 µs).
        """
        self._virtual = False
        fd = self._fd
        if fd is not None:
            try:
                if self._quick and _other_threads():
                    # As in try_acquire: an unlock cannot block.
                    if _quick_flock(fd, _UNLOCK):
                        _oslock.granted_after_all(fd, _UNLOCK)
                else:
                    _flock(fd, _UNLOCK)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
        if self._gate_held:
            self._leave_gate()
        intent = self._intent
        return intent is not None and intent[0] != 0

    def check(self) -> None:
        """Flock holds cannot be lost while the descriptor is open."""

    # -- the self-check --------------------------------------------------------

    def _forget(self, seen: os.stat_result | None) -> None:
        """Drop a lock file that was deleted, or a descriptor taken over.

        ``seen`` is what ``fstat`` said of the descriptor after the grant.
        If it is still our file (deleted: no link left), it is unlocked and
        closed. If the number names another file (user code closed ours and
        the number was reused) or nothing, it belongs to someone else: it is
        forgotten, never unlocked or closed. The gate goes with the lock
        file: its folder may have been replaced as well.
        """
        fd = self._fd
        taken_over = seen is None or (seen.st_dev, seen.st_ino) != (
            self._dev,
            self._ino,
        )
        if fd is not None:
            if not taken_over:
                _flock(fd, _UNLOCK)
                self._resources.close(fd)
            else:
                self._resources.descriptors.discard(fd)
                _process.forget_descriptor(fd)
            self._fd = None
        if not self._gate_held:
            intent, self._intent = self._intent, None
            gate_fd, self._gate_fd = self._gate_fd, None
            if taken_over:
                # Code that closed our lock descriptor closed (and may have
                # reused) the gate's and the map's too: closing them now
                # could close one of its own files. Forget them (a leak, in
                # a misuse) instead.
                if gate_fd is not None:
                    self._resources.descriptors.discard(gate_fd)
                    _process.forget_descriptor(gate_fd)
                if intent is not None:
                    self._resources.maps.discard(intent)
                    _process.forget_map(intent)
            else:
                if intent is not None:
                    self._resources.close_map(intent)
                if gate_fd is not None:
                    self._resources.close(gate_fd)

    # -- who holds it ------------------------------------------------------------

    def holders(self) -> list[Holder]:
        """Processes holding the lock file, and processes queued for it.

        From ``/proc/locks`` (Linux); elsewhere an empty list. A process that
        holds the gate is queued (or passing through): its mode is unknown.
        """
        lock_id = file_id(self.description)
        gate_id = file_id(self.gate_path)
        if lock_id is None:
            return []
        found: dict[tuple[int, bool], Holder] = {}
        kernel = kernel_locks()
        for id_, pid, mode, waiting in kernel:
            if id_ == lock_id and (pid, waiting) not in found:
                found[pid, waiting] = process_holder(
                    pid,
                    package=self.package,
                    mode=mode,
                    waiting=waiting,
                    threads=(),
                    path=self.description,
                )
        for id_, pid, _mode, _waiting in kernel:
            if gate_id is not None and id_ == gate_id and (pid, True) not in found:
                found[pid, True] = process_holder(
                    pid,
                    package=self.package,
                    mode=None,
                    waiting=True,
                    threads=(),
                    path=self.description,
                )
        return sorted(found.values(), key=lambda h: (h.waiting, h.pid))


def _is_folder(fd: int) -> bool:
    try:
        return stat.S_ISDIR(_fstat(fd).st_mode)
    except OSError:
        return False


def _folder_closed(path: str) -> CacheError:
    # Not ours to repair: code outside pkgcache closed the folder's
    # descriptor (os.closerange), and its number may be reused.
    return CacheError(
        f"cannot open {path}: the descriptor of its folder was closed by code "
        "outside pkgcache (do not close descriptors you did not open)"
    )


def _wait(fd: int, exclusive: bool, deadline: float | None) -> None:
    """Wait for the flock on ``fd``; raise :class:`Expired` at ``deadline``."""
    try:
        _flock(fd, _TRY_LOCK[exclusive])
        return
    except BlockingIOError:
        pass
    if deadline is None:
        _flock(fd, _LOCK[exclusive])
        return
    interval = _FIRST_POLL
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Expired
        time.sleep(min(interval, remaining))
        try:
            _flock(fd, _TRY_LOCK[exclusive])
            return
        except BlockingIOError:
            interval = min(interval * 2, _MAX_POLL)


class OutOfDescriptors(CacheError):
    """The process ran out of file descriptors while opening a lock."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"cannot open lock file {path}: too many open files (pkgcache "
            "closes its idle locks first; each lock held keeps three "
            "descriptors open)"
        )


class FlockService:
    """The lock files of one cache: its root folder and its locks folder.

    Args:
        root: the cache root's real path.
        root_fd: a descriptor of the root folder, opened by the caller (it
            identifies the cache); the service owns it from now on.
        locks_path: the locks folder; ``<root>/locks`` or a folder outside.
    """

    can_lose_locks = False

    def __init__(self, root: str, root_fd: int | None, locks_path: str) -> None:
        self._resources = resources = _Resources()
        if root_fd is not None:
            resources.descriptors.add(root_fd)
        self.root = Folder(resources, root, root_fd)
        try:
            inside = os.path.join(root, "locks") == locks_path
            if inside and root_fd is not None:
                fd = _open_folder(resources, "locks", self.root, locks_path)
                self.locks = Folder(
                    resources, locks_path, fd, parent=self.root, name="locks"
                )
            else:
                os.makedirs(locks_path, exist_ok=True)
                fd = _open_folder(resources, locks_path, None, locks_path)
                self.locks = Folder(
                    resources, locks_path, fd, name=None if inside else locks_path
                )
        except _oslock.FolderGone as exc:
            resources.close_all_later()
            _process.drain_deferred()
            raise CachePermissionError(
                f"cannot create {locks_path}: the cache is read-only"
            ) from exc
        except BaseException:
            resources.close_all_later()
            _process.drain_deferred()
            raise
        self._finalizer = weakref.finalize(self, resources.close_all_later)

    def on_out_of_descriptors(self, shed: Callable[[], int]) -> None:
        """Call ``shed`` (it closes idle locks) when an open runs out of descriptors."""
        self._resources.shed = shed

    def engine(self, package: str | None) -> FlockEngine:
        """The engine of ``package``'s lock, or of the whole cache for ``None``."""
        if package is None:
            return FlockEngine(None, self.root, ROOT_LOCK, self.locks, ROOT_GATE)
        return FlockEngine(
            package, self.locks, f"{package}.lock", self.locks, f"{package}.gate"
        )

    def package_names(self) -> list[str]:
        """Stems of every ``*.lock`` file in the locks folder."""
        try:
            entries = os.listdir(self.locks.path)
        except OSError:
            return []
        return [
            entry[: -len(".lock")]
            for entry in entries
            if entry.endswith(".lock") and entry != ".lock"
        ]

    def close(self) -> None:
        """Close every descriptor of this service (the engines must be idle)."""
        self._finalizer()
        _process.drain_deferred()


def same_file(fd: int) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of a descriptor: the identity of a folder."""
    st = _fstat(fd)
    return st.st_dev, st.st_ino
