"""A ``KeyboardInterrupt`` at every point of acquire and release, one at a time.

SQLite tests its recovery by failing every write in turn; this does the same
for interrupts. A signal handler (Ctrl-C's ``KeyboardInterrupt``) runs only
where CPython checks for pending signals: when a function starts, when a
call returns, and at the back edge of a loop. A dry run of one ``with``
block counts every such point in pkgcache's lock modules, through
``sys.settrace`` and ``sys.setprofile``:

* ``call``: a function of those modules starting, or a function they call;
* ``return``, ``return to``: a function of those modules returning, or a
  Python function returning into one of them;
* ``c_return``: a C function (``flock``, ``fstat``, a mutex's ``__exit__``, a
  dictionary method) returning into one of them;
* ``loop``: a line reached by a backward jump in one of them.

Plain line events are not used: one also fires where no signal can be
handled (the start of a ``with`` statement's exit, before ``__exit__`` is
called), and raising there would skip ``__exit__``, which no real interrupt
can do.

Then the block runs again once per point, and a ``KeyboardInterrupt`` is
raised at exactly that point. After each run, with nothing else done:

* this thread holds nothing, and no lock of this process is held, queued,
  moved or marked unknown (:meth:`pkgcache.Cache.statistics`);
* the kernel lists no flock of this process on the cache's files, and no
  intent byte is left set;
* the lock works again: this thread takes everything without waiting.

Every tenth run, and at the end, another process also checks exclusion: it
takes the whole cache at once, then holds ``a`` exclusively while this
process must fail to read it (a hold this process merely believed in would
let it in).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import pkgcache
from pkgcache import _cache, _waits
from tests.helpers import WAIT, LockServer, assert_nothing_held, thread_holding
from tests.reliability.support import kernel_modes_of

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="/proc/locks, tracing"
    ),
]

_PACKAGE_DIR = Path(_cache.__file__).parent
LOCK_FILES = frozenset(
    str(_PACKAGE_DIR / name)
    for name in (
        "_cache.py",
        "_engine.py",
        "_flock.py",
        "_lockset.py",
        "_oslock.py",
        "_process.py",
        "_processlock.py",
        "_space.py",
    )
)
PACKAGES = ("a", "b", "z")


class Injector:
    """Counts the interrupt points of the lock modules; raises at one of them.

    ``target`` is the 1-based number of the point to interrupt (``None``:
    only count). Tracing stops at the first interrupt (CPython turns a
    trace function off once it raises), so each run has one fault.
    """

    def __init__(self, target: int | None) -> None:
        self.target = target
        self.count = 0
        self.where: tuple[str, str, int] | None = None

    def _point(self, event: str, frame: FrameType) -> None:
        self.count += 1
        if self.count == self.target:
            self.where = (event, frame.f_code.co_name, frame.f_lineno)
            raise KeyboardInterrupt

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        if _in_finalizer(frame):
            return None  # not acquire or release: one's own exceptions are ignored
        ours = frame.f_code.co_filename in LOCK_FILES
        back = frame.f_back
        if not ours and (back is None or back.f_code.co_filename not in LOCK_FILES):
            return None
        self._point("call", frame)
        if not ours:
            return self._returning  # a Python function called by ours
        last = [-1]

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line":
                if frame.f_lasti < last[0]:
                    self._point("loop", frame)
                last[0] = frame.f_lasti
            elif event == "return":
                self._point("return", frame)  # as if the caller raised
            return local

        return local

    def _returning(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "return" and frame.f_back is not None:
            self._point("return to", frame.f_back)
        return self._returning

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if (
            event == "c_return"
            and frame.f_code.co_filename in LOCK_FILES
            and not _in_finalizer(frame)
        ):
            self._point("c_return", frame)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        sys.settrace(self.trace)
        sys.setprofile(self.profile)
        try:
            yield
        finally:
            sys.settrace(None)
            sys.setprofile(None)


def _in_finalizer(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside a ``__del__`` (of an earlier block's object)."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class Scene:
    """The cache, and what else holds or waits while the traced block runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = pkgcache.Cache(root)
        self.probe = LockServer(str(root))
        #: Every contended wait begun: each must be over once its call is.
        self.waits: list[_waits.SlowWait] = []

    def close(self) -> None:
        self.probe.close()

    def check(self, label: str, thorough: bool) -> None:
        cache = self.cache
        assert_nothing_held(cache, *PACKAGES)
        # A wait left "in progress" would be reported by the watchdog for
        # ever (it once was, into another test's output).
        assert all(wait.done for wait in self.waits), label
        for name in (None, *PACKAGES):
            kernel = kernel_modes_of(cache.lock_path(name))
            assert kernel == set(), (label, name, kernel)
        for gate in self.root.joinpath("locks").glob("*.gate"):
            assert gate.read_bytes()[:1] in (b"", b"\0"), (label, gate)
        with cache.exclusive("a", "b", "z", timeout=0), cache.reading("b", timeout=0):
            pass
        with cache.exclusive(timeout=0):
            pass
        if thorough:
            probe = self.probe
            assert probe.call("try", "x", [], 0) is True, label
            probe.hold("x", "a")
            with pytest.raises(pkgcache.LockTimeout):
                with cache.reading("a", timeout=0):
                    pass
            probe.release()


def _run_block(request: Callable[[], Any], injector: Injector) -> bool:
    """Run ``with request(): pass`` under ``injector``; say if it was interrupted."""
    try:
        with injector.active(), request():
            pass
    except KeyboardInterrupt:
        return True
    return False


def _inject_everywhere(
    scene: Scene, request: Callable[[], Any], setup: Callable[[], Any] | None = None
) -> int:
    """Interrupt ``with request(): pass`` at each of its points; return how many."""
    context = setup or contextlib.nullcontext
    with context():
        counting = Injector(None)
        assert not _run_block(request, counting)
    points = counting.count
    assert points > 20, points
    scene.check("dry run", thorough=True)
    for target in range(1, points + 1):
        injector = Injector(target)
        with context():
            interrupted = _run_block(request, injector)
        # The block may take a path with fewer points than the dry run (a
        # try that found the lock free at once, say): then no fault fired.
        assert interrupted == (injector.where is not None)
        label = f"interrupt {target}/{points} at {injector.where}"
        scene.check(label, thorough=target % 10 == 0)
    scene.check("after all", thorough=True)
    return points


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    scene = Scene(tmp_path / "cache")
    begin = _waits.SlowWait.begin

    def recorded(wait: _waits.SlowWait) -> None:
        scene.waits.append(wait)
        begin(wait)

    monkeypatch.setattr(_waits.SlowWait, "begin", recorded)
    with scene.cache.exclusive(*PACKAGES):  # create the files first
        pass
    yield scene
    scene.close()


UNCONTENDED: dict[str, Callable[[pkgcache.Cache], Any]] = {
    "reading()": lambda c: c.reading(),
    "reading(a)": lambda c: c.reading("a"),
    "reading(a, b) timeout=0": lambda c: c.reading("a", "b", timeout=0),
    "exclusive(a)": lambda c: c.exclusive("a"),
    "exclusive(a) timeout=5": lambda c: c.exclusive("a", timeout=5),
    "exclusive()": lambda c: c.exclusive(),
    "exclusive(a, reading=[b])": lambda c: c.exclusive("a", reading=["b"]),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("call", list(UNCONTENDED))
def test_every_point_of_an_uncontended_block(scene: Scene, call: str) -> None:
    make = UNCONTENDED[call]
    points = _inject_everywhere(scene, lambda: make(scene.cache))
    print(f"{call}: {points} points interrupted one by one")


@pytest.mark.timeout(300)
def test_every_point_of_a_nested_block(scene: Scene) -> None:
    """Nested: the depth-based undo, and a lock earlier in the order."""
    cache = scene.cache

    @contextlib.contextmanager
    def outer() -> Iterator[None]:
        with cache.exclusive("z"), cache.reading("b"):
            yield

    _inject_everywhere(scene, lambda: cache.reading("a", "b"), setup=outer)


@pytest.mark.timeout(300)
def test_every_point_of_joining_another_threads_shared_hold(scene: Scene) -> None:
    cache = scene.cache

    _inject_everywhere(
        scene,
        lambda: cache.reading("a"),
        setup=lambda: thread_holding(cache, "r", ("a",)),
    )


def _released_once_waited(
    hold: Callable[[], Any], release: Callable[[], Any], waited: Callable[[], bool]
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A setup: ``hold()``, and ``release()`` once ``waited()`` or the block ends.

    The releasing thread polls with a deadline; the traced block is never
    made to wait longer than it takes to see it waiting.
    """

    @contextlib.contextmanager
    def setup() -> Iterator[None]:
        hold()
        done = threading.Event()

        def watch() -> None:
            while not done.is_set() and not waited():
                done.wait(0.0005)
            release()

        thread = threading.Thread(target=watch, name="releaser")
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(WAIT)
            assert not thread.is_alive()

    return setup


@pytest.mark.timeout(600)
@pytest.mark.parametrize("timeout", [None, 5.0], ids=["blocking", "deadline"])
def test_every_point_of_a_wait_for_another_thread(
    scene: Scene, timeout: float | None
) -> None:
    cache = scene.cache
    writer = _WriterThread(cache, "a")
    setup = _released_once_waited(
        writer.hold, writer.release, lambda: cache.statistics("a").threads_waiting > 0
    )
    _inject_everywhere(scene, lambda: cache.reading("a", timeout=timeout), setup)


class _WriterThread:
    """Holds ``exclusive(package)`` in a thread of its own, on demand."""

    def __init__(self, cache: pkgcache.Cache, package: str) -> None:
        self.cache = cache
        self.package = package
        self.thread: threading.Thread | None = None
        self.held = threading.Event()
        self.finish = threading.Event()

    def _run(self) -> None:
        with self.cache.exclusive(self.package):
            self.held.set()
            self.finish.wait(WAIT)

    def hold(self) -> None:
        self.held.clear()
        self.finish.clear()
        self.thread = threading.Thread(target=self._run, name="other-writer")
        self.thread.start()
        assert self.held.wait(WAIT)

    def release(self) -> None:
        self.finish.set()
        assert self.thread is not None
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("timeout", [None, 5.0], ids=["blocking", "deadline"])
def test_every_point_of_a_wait_for_another_process(
    scene: Scene, timeout: float | None
) -> None:
    cache = scene.cache
    other = LockServer(str(scene.root))
    try:
        setup = _released_once_waited(
            lambda: other.hold("x", "a"),
            other.release,
            lambda: cache.statistics("a").waiting_in_engine,
        )
        _inject_everywhere(scene, lambda: cache.exclusive("a", timeout=timeout), setup)
    finally:
        other.close()


def test_the_injector_finds_the_window_it_is_for(scene: Scene) -> None:
    """The harness itself: points include C returns, calls and returns."""
    counting = Injector(None)
    events: list[str] = []
    real = counting._point

    def record(event: str, frame: FrameType) -> None:
        events.append(event)
        real(event, frame)

    counting._point = record  # type: ignore[method-assign]
    assert not _run_block(lambda: scene.cache.exclusive("a"), counting)
    assert {"call", "c_return", "return", "return to", "loop"} <= set(events)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["r", "x"])
def test_a_hold_left_by_a_double_fault_is_given_back_at_the_next_call(
    scene: Scene, mode: str
) -> None:
    """What a second interrupt inside the repair of a first can leave.

    The thread holds (and records) a lock no open block will release. Its
    next call on that lock, outside any block, gives the hold back and
    takes the lock anew: no ``LockUpgradeError``, nothing held afterwards.
    """
    from pkgcache import _process

    cache = scene.cache
    block = cache.reading("a") if mode == "r" else cache.exclusive("a")
    block.__enter__()
    # The state a double fault leaves: the hold, and no block that owns it.
    # (The block object stays alive: its finalizer would release it.)
    _process.thread_state().held.clear()
    with cache.exclusive("a", timeout=0):
        assert cache.statistics("a").depth == 1
    scene.check("after the leftover was given back", thorough=True)
    del block
