"""Spawn targets and fork helpers of the lock-core regression tests.

Everything a ``spawn`` child runs lives here, at module level. The busy
processes below fork on purpose (fork is what they test); whoever watches
them from outside is a ``spawn`` process.
"""

from __future__ import annotations

import json
import os
import random
import select
import threading
import time
import warnings
from typing import Any

import pkgcache

WAIT = 30.0  # bound for anything that must happen


def descriptors_under(root: str) -> list[str]:
    """What this process's descriptors name under ``root`` (folders included)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target == root or target.startswith(root + os.sep):
            found.append(target)
    return found


def lock_file_descriptors(root: str) -> int:
    """Descriptors of this process open on lock files (``*.lock``) under ``root``."""
    return sum(target.endswith(".lock") for target in descriptors_under(root))


def kernel_locks_of_this_process() -> list[str]:
    """This process's lines in ``/proc/locks`` (held or waiting)."""
    pid = str(os.getpid())
    with open("/proc/locks") as table:
        return [line for line in table if pid in line.split()[3:6]]


def fork_quietly() -> int:
    """``os.fork()`` from a process with threads, on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: threads
        return os.fork()


# -- a busy process -----------------------------------------------------------------


class Churn:
    """Threads that open and close lock files all the time, until stopped.

    Each thread takes random locks among ``names`` (shared or exclusive) and
    often closes every idle descriptor of the cache (``Cache.close``), so
    opens and closes of lock and gate files are always in flight. One more
    thread walks through more names than the process keeps idle (its idle
    bound), so trimming closes descriptors as well.
    """

    def __init__(
        self, cache: pkgcache.Cache, names: list[str], seed: int, threads: int = 2
    ) -> None:
        self.cache = cache
        self.names = names
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.operations = 0
        self.threads = [
            threading.Thread(target=self._churn, args=(seed + i,), daemon=True)
            for i in range(threads)
        ]
        self.threads.append(threading.Thread(target=self._walk, daemon=True))
        for thread in self.threads:
            thread.start()

    def _churn(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not self.stop.is_set():
                call = rng.choice((self.cache.reading, self.cache.exclusive))
                with call(rng.choice(self.names), timeout=WAIT):
                    pass
                if rng.random() < 0.5:
                    self.cache.close()
                self.operations += 1
        except BaseException as exc:  # reported by join()
            self.errors.append(repr(exc))

    def _walk(self) -> None:
        # More names than the idle bound (256 at most): every release trims.
        try:
            index = 0
            while not self.stop.is_set():
                with self.cache.reading(f"walk{index % 300}", timeout=WAIT):
                    pass
                index += 1
        except BaseException as exc:  # reported by join()
            self.errors.append(repr(exc))

    def join(self) -> list[str]:
        """Stop the threads; return their errors."""
        self.stop.set()
        for thread in self.threads:
            thread.join(WAIT)
            if thread.is_alive():
                self.errors.append("a churn thread never stopped")
        return self.errors


def _child_report(root: str, cache: pkgcache.Cache, held: str) -> str:
    """In a forked child: what it inherited, and whether it can take ``held``."""
    leaked = descriptors_under(root)
    try:
        with cache.exclusive(held, timeout=0):
            got_held = True
    except pkgcache.LockTimeout:
        got_held = False
    # The child's own locks work (it shares no state with the parent's).
    with cache.exclusive("child", timeout=WAIT):
        pass
    return json.dumps([leaked, got_held])


def _fork_one(
    root: str, cache: pkgcache.Cache, held: str, stay: Any
) -> tuple[int, str]:
    """Fork a child that reports (see :func:`_child_report`) over a pipe.

    The child then leaves at once, or, if ``stay`` is an event, waits for it
    first (a long-lived child). Returns the child's pid and its report.
    """
    read_end, write_end = os.pipe()
    pid = fork_quietly()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, _child_report(root, cache, held).encode())
            os.close(write_end)
            code = 0
            if stay is not None:
                stay.wait(WAIT * 4)
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], WAIT)
            chunk = os.read(read_end, 65536) if ready else b""
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    return pid, b"".join(chunks).decode() or "no report (hung or crashed)"


def _tally(report: dict[str, Any], text: str) -> None:
    report["forks"] += 1
    try:
        leaked, got_held = json.loads(text)
    except ValueError:
        report["bad reports"].append(text)
        return
    if leaked:
        report["children with inherited descriptors"] += 1
        report["examples"] = (report["examples"] + [leaked])[:5]
    report["children that got the parent's lock"] += got_held


def _new_report() -> dict[str, Any]:
    return {
        "forks": 0,
        "children with inherited descriptors": 0,
        "children that got the parent's lock": 0,
        "examples": [],
        "bad reports": [],
        "bad exits": 0,
        "errors": [],
    }


def busy_forker(root: str, seconds: float, seed: int, conn: Any) -> None:
    """A process that forks from several threads while others churn its locks.

    The main thread holds ``exclusive("held")`` throughout; two threads
    fork children one after the other for ``seconds``; each child reports
    every descriptor it has under ``root`` (there must be none: an inherited
    lock descriptor keeps the parent's lock alive after the parent dies)
    and whether it could take ``held`` (it must not). Sends the tally.
    """
    cache = pkgcache.Cache(root)
    report = _new_report()
    mutex = threading.Lock()
    with cache.exclusive("held", timeout=WAIT):
        churn = Churn(cache, [f"n{i}" for i in range(20)], seed)
        deadline = time.monotonic() + seconds

        def forker() -> None:
            try:
                while time.monotonic() < deadline:
                    pid, text = _fork_one(root, cache, "held", None)
                    _, status = os.waitpid(pid, 0)
                    with mutex:
                        _tally(report, text)
                        report["bad exits"] += os.waitstatus_to_exitcode(status) != 0
            except BaseException as exc:  # reported in the tally
                report["errors"].append(repr(exc))

        forkers = [threading.Thread(target=forker) for _ in range(2)]
        for thread in forkers:
            thread.start()
        for thread in forkers:
            thread.join(seconds + WAIT)
        report["errors"] += churn.join()
        report["churn operations"] = churn.operations
    conn.send(report)


def kill9_victim(
    root: str, names: list[str], stay: Any, conn: Any, *, seconds: float, seed: int
) -> None:
    """Hold ``exclusive(*names)``, fork long-lived children while busy; wait to die.

    While the main thread holds the locks, other threads churn other locks
    and the main thread forks children; the first ``_LONG_LIVED`` stay
    alive until ``stay`` is set (workers a build farm would start), the
    rest leave at once. Sends ``(report, pids of the long-lived children)``,
    then waits to be killed (``kill -9``) with the locks held.
    """
    cache = pkgcache.Cache(root)
    report = _new_report()
    living: list[int] = []
    with cache.exclusive(*names, timeout=WAIT):
        churn = Churn(cache, [f"other{i}" for i in range(20)], seed)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline or not living:
                long_lived = len(living) < _LONG_LIVED
                pid, text = _fork_one(
                    root, cache, names[0], stay if long_lived else None
                )
                _tally(report, text)
                if long_lived:
                    living.append(pid)
                else:
                    _, status = os.waitpid(pid, 0)
                    report["bad exits"] += os.waitstatus_to_exitcode(status) != 0
        except BaseException as exc:  # reported in the tally
            report["errors"].append(repr(exc))
        report["errors"] += churn.join()
        conn.send((report, living))
        threading.Event().wait(WAIT * 4)  # killed meanwhile


_LONG_LIVED = 8


# -- user code that closes pkgcache's descriptors ------------------------------------


def closerange_case(root: str, reuse: bool, other_thread: bool, conn: Any) -> None:
    """Close every descriptor but the pipe (as daemonizing code does), then lock.

    Says "ready" once it used ``root``; when told to go on, another
    process holds ``exclusive("a")`` there. With ``reuse``, the
    user then opens files of its own, which take over pkgcache's numbers.
    Sends what ``exclusive("a", timeout=0)`` did, and whether the user's
    files still work.
    """
    cache = pkgcache.Cache(root)
    with cache.reading("a", timeout=WAIT):
        pass  # every descriptor of the cache and of "a" is open now
    conn.send("ready")
    conn.recv()  # another process holds "a" now
    keep = conn.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 4096)
    user_files = []
    if reuse:
        user_files = [open(f"{root}.user{i}", "w") for i in range(16)]  # noqa: SIM115
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(WAIT,))
    if other_thread:
        thread.start()
    outcome: dict[str, Any] = {}
    try:
        with cache.exclusive("a", timeout=0):
            outcome["call"] = "granted"
    except pkgcache.CacheError as exc:  # LockTimeout among them
        outcome["call"] = ("CacheError", type(exc).__name__, str(exc))
    except BaseException as exc:  # the defect: a raw error
        outcome["call"] = ("raw", type(exc).__name__, str(exc))
    stop.set()
    if other_thread:
        thread.join(WAIT)
    broken = []
    for file in user_files:
        try:
            file.write("still mine")
            file.flush()
        except OSError as exc:
            broken.append(f"{file.name}: {exc}")
    outcome["broken user files"] = broken
    conn.send(outcome)
