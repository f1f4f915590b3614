"""``KeyboardInterrupt`` where a lock call waits, and interrupt storms.

Each wait-point scenario makes the main thread wait at one exact point of
the lock modules (recognised from its stack), then delivers a real SIGINT
to it. Afterwards nothing may be held or queued by this thread, the intent
byte is clear, and once the other holders let go, another process takes
the whole cache at once.

The points, in the order an acquisition meets them: the wait inside the
process (behind another thread's hold, behind another thread queued in the
lock service, behind a writer of another process while this process holds
the lock shared), the gate file and the lock file; each with a deadline
(polling) and without (blocking in the kernel).

The storms fire SIGALRM (whose handler raises ``KeyboardInterrupt``) at
random microseconds while the main thread takes and releases locks, and
another process's writer checks that no reader of this process is ever
inside beside it. Every interrupt point one by one is in
``test_fault_injection.py``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pkgcache
from pkgcache import _cache
from tests.helpers import SPAWN, WAIT, LockServer, assert_nothing_held
from tests.reliability.support import kernel_modes_of, make_seed, soak_seconds

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

_PACKAGE = str(Path(pkgcache.__file__).parent)
_LOCK_FILES = frozenset(
    str(Path(_cache.__file__).with_name(name))
    for name in ("_cache.py", "_flock.py", "_lockset.py", "_processlock.py")
)


def _pkgcache_stack(thread_id: int) -> list[str]:
    """Names of the pkgcache functions on a thread's stack, innermost first.

    Stops at the first frame outside pkgcache's lock modules below the
    innermost pkgcache frame, so ``["_wait", "_wait_for_lock_file", ...]``
    means the thread is inside ``_wait`` (or a C call it made).
    """
    frame = sys._current_frames().get(thread_id)
    names = []
    while frame is not None:
        if frame.f_code.co_filename in _LOCK_FILES:
            names.append(frame.f_code.co_name)
        elif names:
            break
        frame = frame.f_back
    return names


def _innermost_python_frame(thread_id: int) -> str:
    frame = sys._current_frames().get(thread_id)
    return "" if frame is None else frame.f_code.co_name


# Wait point -> predicate over (pkgcache stack innermost first, innermost frame).
def _in_process(s: list[str], top: str) -> bool:
    return s[:1] == ["_wait_in_process"] and top == "_wait_in_process"


POINTS = {
    "behind a holder in the process": _in_process,
    "behind a thread queued in the lock service": _in_process,
    "behind a writer of another process": _in_process,
    "gate file": lambda s, top: s[:2] == ["_wait", "acquire"],
    "lock file": lambda s, top: s[:2] == ["_wait", "_wait_for_lock_file"],
}


def _interrupt_main_at(point: str, errors: list[str]) -> threading.Thread:
    main = threading.main_thread().ident
    assert main is not None
    matches = POINTS[point]

    def run() -> None:
        deadline = time.monotonic() + WAIT
        seen = 0
        while time.monotonic() < deadline:
            stack = _pkgcache_stack(main)
            if stack and matches(stack, _innermost_python_frame(main)):
                # Seen twice in a row: parked there, not passing through.
                seen += 1
                if seen >= 2:
                    signal.pthread_kill(main, signal.SIGINT)
                    return
            else:
                seen = 0
            time.sleep(0.001)
        errors.append(f"the main thread never waited at the {point}")
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=run, name="interrupter", daemon=True)
    thread.start()
    return thread


class _Scene:
    """Holders in other threads and processes, set up for one wait point."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = pkgcache.Cache(root)
        self.servers: list[LockServer] = []
        self.pending: list[LockServer] = []
        self.stack = contextlib.ExitStack()
        self.releases: list[threading.Event] = []

    def server_holds(self, mode: str, *packages: str) -> LockServer:
        server = LockServer(str(self.root))
        self.servers.append(server)
        server.hold(mode, *packages)
        return server

    def server_queues(self, mode: str, *packages: str) -> LockServer:
        """A process whose request waits (its answer is read at the end)."""
        server = LockServer(str(self.root))
        self.servers.append(server)
        server.conn.send(("hold", mode, packages))
        self.pending.append(server)
        deadline = time.monotonic() + WAIT
        name = packages[0]
        pid = server.process.pid
        while not any(h.waiting and h.pid == pid for h in self.cache.holders(name)):
            assert time.monotonic() < deadline, "the other process never queued"
            time.sleep(0.002)
        return server

    def thread_holds(self, mode: str, *packages: str) -> None:
        held, release = threading.Event(), threading.Event()
        request = self.cache.exclusive if mode == "x" else self.cache.reading

        def run() -> None:
            with request(*packages, timeout=WAIT):
                held.set()
                release.wait(WAIT)

        thread = threading.Thread(target=run, name=f"holder-{mode}")
        thread.start()
        self.stack.callback(thread.join, WAIT)
        self.stack.callback(release.set)
        self.releases.append(release)
        assert held.wait(WAIT)

    def thread_queues(self, mode: str, *packages: str) -> None:
        """A thread of this process whose request waits (for a process)."""
        done = threading.Event()
        request = self.cache.exclusive if mode == "x" else self.cache.reading

        def run() -> None:
            with request(*packages, timeout=WAIT):
                pass
            done.set()

        thread = threading.Thread(target=run, name=f"queued-{mode}")
        thread.start()
        deadline = time.monotonic() + WAIT
        while not self.cache.statistics(packages[0]).waiting_in_engine:
            assert time.monotonic() < deadline, "the thread never queued"
            time.sleep(0.001)
        self.stack.callback(lambda: done.wait(WAIT) or pytest.fail("never served"))
        self.stack.callback(thread.join, WAIT)

    def release_all(self) -> None:
        for server in self.servers:
            if server not in self.pending:
                server.release()
        for release in self.releases:
            release.set()
        for server in self.pending:
            assert server.conn.poll(WAIT), "a queued process was never served"
            assert server.conn.recv() == "held"
            server.release()
        self.stack.close()

    def close(self) -> None:
        self.stack.close()
        for server in self.servers:
            server.close()


def _setup(scene: _Scene, point: str) -> None:
    """Arrange that a request for ``exclusive/reading("a", "b")`` waits at ``point``.

    ``a`` is always free (taken first, so the interrupt must also undo it);
    ``b`` is where the wait happens.
    """
    if point == "behind a holder in the process":
        scene.thread_holds("r", "b")
    elif point == "behind a thread queued in the lock service":
        scene.server_holds("r", "b")
        scene.thread_queues("x", "b")  # the thread waits in flock for b
    elif point == "behind a writer of another process":
        scene.thread_holds("r", "b")
        scene.server_queues("x", "b")  # sets the intent byte
    elif point == "gate file":
        scene.server_holds("r", "b")
        scene.server_queues("x", "b")  # holds b's gate while it waits
    elif point == "lock file":
        scene.server_holds("x", "b")


# The mode the main thread asks for at each point.
WANTED = {
    "behind a holder in the process": "x",
    "behind a thread queued in the lock service": "r",
    "behind a writer of another process": "r",
    "gate file": "r",
    "lock file": "r",
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("timeout", [None, WAIT], ids=["blocking", "deadline"])
@pytest.mark.parametrize("point", list(POINTS))
def test_keyboard_interrupt_at_every_wait_point(tmp_path, point, timeout):
    root = tmp_path / "cache"
    scene = _Scene(root)
    cache = scene.cache
    try:
        with cache.reading():  # open the layout before the scene starts
            pass
        _setup(scene, point)
        errors: list[str] = []
        interrupter = _interrupt_main_at(point, errors)
        request = cache.exclusive if WANTED[point] == "x" else cache.reading
        with pytest.raises(KeyboardInterrupt):
            with request("a", "b", timeout=timeout):
                pytest.fail("granted while it should have waited")
        interrupter.join(WAIT)
        assert errors == []
        # Nothing of the interrupted call is left in this thread...
        for name in (None, "a", "b"):
            assert cache.statistics(name).depth == 0
        # ...and once the others let go, everything is free for everyone.
        scene.release_all()
        assert_nothing_held(cache, "a", "b")
        gate = root / "locks" / "b.gate"
        assert gate.read_bytes()[:1] in (b"", b"\0"), "intent byte left set"
        probe = LockServer(str(root))
        scene.servers.append(probe)
        assert probe.call("try", "x", [], 0) is True
        assert probe.call("try", "x", ["a", "b"], 0) is True
        probe.call("pid")  # the probe answers once its try has been released
        with cache.exclusive("a", "b", timeout=0):
            pass
    finally:
        scene.close()


# -- storms -------------------------------------------------------------------------


def storm_writer(root: str, shared: Any, stop: Any, report: Any) -> None:
    """Another process: take exclusive("a") again and again; look for readers.

    ``shared[0]`` is 1 while this writer is inside, ``shared[1]`` counts the
    readers of the stormed process inside ``reading("a")``.
    """
    cache = pkgcache.Cache(root)
    entries = violations = 0
    while not stop.is_set():
        with cache.exclusive("a", timeout=WAIT):
            shared[0] = 1
            entries += 1
            for _ in range(3):
                if shared[1]:
                    violations += 1
                time.sleep(0.0002)  # work while holding, not a synchronization
            shared[0] = 0
    report.put((entries, violations))


class _Storm:
    """SIGALRM at random instants, each raising KeyboardInterrupt in the main thread.

    ``repeat=False``: one signal per operation, armed just before it (the
    interrupted operation's own recovery is never interrupted). ``repeat``:
    a timer firing every few tens of microseconds for the whole run, so
    interrupts also land inside the handling of earlier ones.
    """

    def __init__(self, rng: random.Random, repeat: bool) -> None:
        self.rng = rng
        self.repeat = repeat
        self.armed = False
        self.fired = 0
        #: Code the interrupts are for: pkgcache's, and the calls made.
        self.targets: set[Any] = set()

    def handler(self, signum: int, frame: Any) -> None:
        # Only inside a call under test: the test's own loop and
        # bookkeeping must not be torn apart (it is not what is tested).
        if self.armed and self._in_target(frame):
            self.armed = self.repeat
            self.fired += 1
            raise KeyboardInterrupt

    def _in_target(self, frame: Any) -> bool:
        # The innermost frame only: not in the standard library's code that
        # pkgcache calls (a finalizer's report printed by pytest's hook).
        code = frame.f_code
        return code in self.targets or code.co_filename.startswith(_PACKAGE)

    def arm(self) -> None:
        self.armed = True
        if not self.repeat:
            signal.setitimer(signal.ITIMER_REAL, 1e-6 + self.rng.random() * 40e-6)

    @contextlib.contextmanager
    def running(self) -> Any:
        previous = signal.signal(signal.SIGALRM, self.handler)
        if self.repeat:
            signal.setitimer(signal.ITIMER_REAL, 30e-6, 45e-6)
        try:
            yield self
        finally:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


# The thread method: this test owns SIGALRM (the signal method uses it too).
@pytest.mark.timeout(120 + 4 * soak_seconds(), method="thread")
# A signal landing in a finalizer is printed, not raised, by Python.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/locks")
@pytest.mark.parametrize("repeat", [False, True], ids=["one-per-call", "storm"])
def test_interrupt_storm_never_lets_two_holders_in(tmp_path, monkeypatch, repeat):
    """Ctrl-C at random moments, thousands of times, beside another process.

    Never may a thread of this process be inside ``reading("a")`` while the
    other process's writer is inside ``exclusive("a")``. With one interrupt
    per call, nothing is left held afterwards; in a storm, an interrupt that
    lands inside the recovery from the previous one may leave this thread
    holding a lock (held, never believed held without being held), which
    heals when the thread calls again or is counted and cleared below.
    """
    # An interrupt that lands in a finalizer goes to sys.unraisablehook; the
    # storm must not tear pytest's own hook apart (it imports modules, and a
    # half-imported module breaks the rest of the run). Counted here instead.
    in_finalizers: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", in_finalizers.append)
    rng = random.Random(make_seed())
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    with cache.exclusive("a", "b"):
        pass
    shared = SPAWN.Array("i", 2, lock=False)
    stop = SPAWN.Event()
    report: multiprocessing.Queue[Any] = SPAWN.Queue()
    writer = SPAWN.Process(target=storm_writer, args=(str(root), shared, stop, report))
    writer.start()
    inside = threading.Lock()
    seen = {"overlaps": 0, "calls": 0, "interrupts": 0, "completed": 0}

    def read_a() -> None:
        with cache.reading("a", timeout=WAIT):
            # The count is the test's, not pkgcache's: SIGALRM is blocked
            # while it is up, so no interrupt leaves it counted (one that
            # came before is raised by the first call, before the count).
            try:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                with inside:
                    shared[1] += 1
                    if shared[0]:
                        seen["overlaps"] += 1
                    shared[1] -= 1
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})

    # A reader thread of this process: joins the main thread's shared holds.
    done = threading.Event()

    def other_reader() -> None:
        while not done.is_set():
            read_a()

    thread = threading.Thread(target=other_reader, name="other-reader")
    thread.start()

    def block(request: Any) -> None:
        with request:
            pass

    calls = [
        read_a,
        lambda: block(cache.exclusive("b", reading=["a"], timeout=WAIT)),
        lambda: block(cache.reading("a", "b", timeout=0)),
    ]
    deadline = time.monotonic() + 2 * soak_seconds()
    storm = _Storm(rng, repeat)
    storm.targets = {read_a.__code__, block.__code__} | {c.__code__ for c in calls}
    try:
        with storm.running():
            while time.monotonic() < deadline:
                seen["calls"] += 1
                try:
                    storm.arm()
                    try:
                        rng.choice(calls)()
                        seen["completed"] += 1
                    except pkgcache.LockTimeout:
                        pass  # timeout=0 while the writer holds "a"
                    for _ in range(200):  # a moment for a late signal to land
                        pass
                    storm.armed = False
                except KeyboardInterrupt:
                    storm.armed = repeat
                    seen["interrupts"] += 1
        seen["interrupts"] = storm.fired
    finally:
        done.set()
        thread.join(WAIT)
        stop.set()
        entries, violations = report.get(timeout=WAIT)
        writer.join(WAIT)
    print(
        f"storm: {seen}, writer entered {entries} times, saw {violations}; "
        f"{len(in_finalizers)} interrupts landed in finalizers"
    )
    assert violations == 0
    assert seen["overlaps"] == 0
    assert seen["interrupts"] > 10
    with cache.reading(timeout=WAIT):  # a call: releases what it can heal
        pass
    left = {
        name: cache.statistics(name)
        for name in (None, "a", "b")
        if cache.statistics(name).depth
    }
    if not repeat:
        assert left == {}, left
        assert_nothing_held(cache, "a", "b")
        for name in (None, "a", "b"):
            assert kernel_modes_of(cache.lock_path(name)) == set()
    print(f"left held after the storm: {sorted(map(str, left))}")
