"""Issue 4: writers are not starved, interrupts leave nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

import pytest

import pkgcache
from pkgcache import _processlock
from tests.helpers import (
    SPAWN,
    WAIT,
    Contender,
    LockServer,
    assert_nothing_held,
    hold_until_killed,
    overlapping_reader,
)

# Readers hold for this long, overlapping each other so that at every moment
# some reader holds the lock: with plain flock a writer would wait forever.
READER_HOLD = 0.02


@pytest.mark.timeout(120)
def test_writer_is_not_starved_by_overlapping_reader_processes(tmp_path):
    root = str(tmp_path / "cache")
    start, stop = SPAWN.Event(), SPAWN.Event()
    readers = [
        SPAWN.Process(
            target=overlapping_reader, args=(root, "a", READER_HOLD, start, stop)
        )
        for _ in range(4)
    ]
    for p in readers:
        p.start()
    cache = pkgcache.Cache(root)
    try:
        start.set()
        # Wait (on a real condition, with a deadline) until readers hold "a".
        _eventually(
            lambda: [h for h in cache.holders("a") if not h.waiting],
            "readers never started",
        )
        for _ in range(5):
            # Generous bound: the writer must get in, not within a given time.
            with cache.exclusive("a", timeout=WAIT):
                pass
    finally:
        stop.set()
        for p in readers:
            p.join(WAIT)
    assert all(p.exitcode == 0 for p in readers)


@pytest.mark.timeout(120)
def test_writer_is_not_starved_by_overlapping_reader_threads(tmp_path):
    cache = pkgcache.Cache(tmp_path / "cache")
    stop = threading.Event()
    holding = threading.Barrier(5)
    errors = []

    def reader():
        try:
            first = True
            while not stop.is_set():
                with cache.reading("a", timeout=WAIT):
                    if first:
                        holding.wait(WAIT)  # all four readers overlap once
                        first = False
                    stop.wait(READER_HOLD)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        holding.wait(WAIT)
        writer_got_it = []

        def writer():
            for _ in range(5):
                with cache.exclusive("a", timeout=WAIT):
                    writer_got_it.append(True)

        w = threading.Thread(target=writer)
        w.start()
        w.join(WAIT * 2)
        assert writer_got_it == [True] * 5
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
    assert not errors


@pytest.mark.timeout(120)
def test_readers_are_not_starved_by_a_writer_thread_in_a_loop(tmp_path):
    """A thread taking the lock exclusively again and again (a cleaner).

    Each release hands the lock to the readers that waited for it before
    the writer may take it again; without that the readers waited out
    their timeout behind a lock that was free between two writes.
    """
    cache = pkgcache.Cache(tmp_path / "cache")
    stop = threading.Event()
    writes = []

    def writer():
        while not stop.is_set():
            with cache.exclusive("a", timeout=WAIT):
                writes.append(True)
                stop.wait(READER_HOLD)  # the work of a clean, not a synchronization

    w = threading.Thread(target=writer, name="cleaner")
    w.start()
    outcomes = []

    def reader():
        for _ in range(10):
            try:
                with cache.reading("a", timeout=5):
                    outcomes.append("granted")
            except pkgcache.LockTimeout:
                outcomes.append("starved")

    try:
        readers = [threading.Thread(target=reader) for _ in range(2)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(WAIT * 2)
    finally:
        stop.set()
        w.join(WAIT)
    assert outcomes == ["granted"] * 20
    assert writes, "the writer never ran: nothing was tested"


@pytest.mark.timeout(60)
def test_waiting_writer_queues_later_readers_of_other_processes(tmp_path):
    """A reader that arrives after a waiting writer is served after it."""
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    first_reader = LockServer(str(root))
    late_reader = LockServer(str(root))
    try:
        first_reader.hold("r", "a")
        order = []
        writer_waiting = threading.Event()

        def writer():
            writer_waiting.set()
            with cache.exclusive("a", timeout=WAIT):
                order.append("writer")

        w = threading.Thread(target=writer)
        w.start()
        assert writer_waiting.wait(WAIT)
        # Wait until the kernel shows the writer queued (it holds the gate).
        _wait_until_waiting(cache, "a")
        # A new reader does not overtake the queued writer...
        assert late_reader.call("try", "r", ["a"], 0.2) != True  # noqa: E712
        first_reader.release()
        w.join(WAIT)
        assert order == ["writer"]
        # ...and gets in once the writer is done.
        assert late_reader.call("try", "r", ["a"], WAIT) is True
    finally:
        first_reader.close()
        late_reader.close()


def _eventually(condition, failure):
    """Poll ``condition`` until it holds; fail with ``failure`` after ``WAIT`` s.

    For states nothing signals (the kernel's lock table, another thread's
    position in a wait): the poll watches a real condition, with a deadline.
    """
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.002)


def _wait_until_waiting(cache, package=None, pid=None):
    """Until process ``pid`` (default: this one) queues for ``package``.

    ``None`` stands for the whole-cache lock. The kernel's lock table is the
    only witness that a thread blocks in flock.
    """
    names = (package,) if package else ()
    pid = os.getpid() if pid is None else pid
    _eventually(
        lambda: any(
            h.waiting and h.pid == pid and h.package == package
            for h in cache.holders(*names)
        ),
        f"pid {pid} never queued for {package or 'the whole cache'}",
    )


@contextlib.contextmanager
def _interrupting_main_when(predicate):
    """Raise KeyboardInterrupt in the main thread once ``predicate()`` returns.

    A SIGINT that lands after the main thread proved it waits but before it
    blocks in the system call is noticed only when that call returns (CPython
    runs signal handlers between bytecodes): with a long timeout the
    interrupt arrived late, with none the test hung. So the signal is sent
    again every 50 ms until it has fired, and the handler raises only once.
    """
    main = threading.main_thread().ident
    assert main is not None
    fired, stop = threading.Event(), threading.Event()

    def handler(signum, frame):
        if not fired.is_set():
            fired.set()
            raise KeyboardInterrupt

    def run():
        predicate()
        deadline = time.monotonic() + WAIT
        while not stop.is_set() and time.monotonic() < deadline:
            signal.pthread_kill(main, signal.SIGINT)
            if fired.wait(0.05):
                return

    previous = signal.signal(signal.SIGINT, handler)
    interrupter = threading.Thread(target=run, daemon=True)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        stop.set()
        interrupter.join(WAIT)
        signal.signal(signal.SIGINT, previous)
    assert fired.is_set()


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("timeout", [None, 30.0])
@pytest.mark.parametrize(
    ("held", "wanted"),
    [(("x", "b"), ("x", "b")), (("r", "b"), ("x", "b")), (("x", ""), ("r", "b"))],
)
def test_keyboard_interrupt_during_a_cross_process_wait(
    tmp_path, timeout, held, wanted
):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    server = LockServer(str(root))
    try:
        held_mode, held_pkg = held
        server.hold(held_mode, *([held_pkg] if held_pkg else []))
        wanted_mode, wanted_pkg = wanted
        request = cache.exclusive if wanted_mode == "x" else cache.reading
        probe = wanted_pkg if held_pkg else None
        with _interrupting_main_when(lambda: _wait_until_waiting(cache, probe)):
            # "a" is taken first, then the wait for "b" is interrupted.
            with request("a", wanted_pkg, timeout=timeout):
                pass
        assert_nothing_held(cache, "a", "b")
        server.release()
        # Another process can now take everything at once.
        assert server.call("try", "x", [], 0) is True
    finally:
        server.close()


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_keyboard_interrupt_during_an_in_process_wait(tmp_path, timeout):
    cache = pkgcache.Cache(tmp_path / "cache")
    holding, release = threading.Event(), threading.Event()

    def holder():
        with cache.reading("a"):
            holding.set()
            release.wait(WAIT)

    t = threading.Thread(target=holder)
    t.start()
    assert holding.wait(WAIT)

    def main_is_waiting():
        _eventually(
            lambda: cache.statistics("a").threads_waiting,
            "the main thread never waited",
        )

    with _interrupting_main_when(main_is_waiting):
        with cache.exclusive("a", timeout=timeout):
            pass
    _assert_only_the_other_reader_holds(cache, "a")
    release.set()
    t.join(WAIT)
    assert_nothing_held(cache, "a")
    with cache.exclusive("a", timeout=0):
        pass


def _assert_only_the_other_reader_holds(cache, package):
    stats = cache.statistics(package)
    assert stats.depth == 0, stats
    assert len(stats.readers) == 1, stats
    assert stats.held == pkgcache.Mode.SHARED, stats
    assert not stats.threads_waiting, stats
    assert cache.statistics().depth == 0


@contextlib.contextmanager
def _reader_thread(cache, package):
    """A thread holding reading(package); yields an Event set once it let go."""
    held, release, released = threading.Event(), threading.Event(), threading.Event()

    def run():
        with cache.reading(package, timeout=WAIT):
            held.set()
            release.wait(WAIT * 3)  # outlasts every positive wait of the test
        released.set()

    thread = threading.Thread(target=run, name="first-reader")
    thread.start()
    assert held.wait(WAIT)
    try:
        yield released
    finally:
        release.set()
        thread.join(WAIT)


@pytest.mark.timeout(90)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/locks")
def test_reader_joins_its_process_once_the_other_process_writer_gives_up(tmp_path):
    """Regression: the late reader stalled until every reader thread let go."""
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    writer = LockServer(str(root))
    try:
        writer_pid = writer.call("pid")
        with _reader_thread(cache, "a") as first_released:
            outcome = []
            w = threading.Thread(
                target=lambda: outcome.append(writer.call("try", "x", ["a"], 0.5))
            )
            w.start()
            _wait_until_waiting(cache, "a", writer_pid)
            late = Contender(cache, "r", ("a",))  # queues behind the writer
            w.join(WAIT)
            assert isinstance(outcome[0], str)  # the writer timed out
            assert "timed out" in outcome[0]
            # The first reader still holds "a": the late one joins it.
            assert late.entered.wait(WAIT), "late reader stalled after writer left"
            assert not first_released.is_set()
            late.join()
    finally:
        writer.close()


@pytest.mark.timeout(90)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/locks")
def test_intent_byte_left_by_a_killed_writer_stalls_nobody(tmp_path):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    gate = root / "locks" / "a.gate"
    never = SPAWN.Event()
    with _reader_thread(cache, "a") as first_released:
        proc = SPAWN.Process(
            target=hold_until_killed, args=(str(root), "x", ("a",), never)
        )
        proc.start()
        try:
            _wait_until_waiting(cache, "a", proc.pid)
            assert gate.read_bytes() == b"\x01"  # the writer announced itself
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(WAIT)
        finally:
            if proc.is_alive():
                proc.kill()
        assert not never.is_set()
        assert gate.read_bytes() == b"\x01"  # stale: nobody cleared it
        # A reader thread of this process (which holds "a" shared) gets in
        # while the first reader still holds, and the stale byte is cleared.
        late = Contender(cache, "r", ("a",))
        assert late.entered.wait(WAIT), "reader stalled on a dead writer's byte"
        assert not first_released.is_set()
        late.join()
        assert gate.read_bytes() == b"\x00"
    # The gate file was only ever written in place: still one byte.
    assert gate.stat().st_size == 1


@pytest.mark.timeout(60)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/locks")
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_keyboard_interrupt_while_queued_behind_another_process_writer(
    tmp_path, timeout
):
    """The wait of a reader whose process holds the lock, behind a writer."""
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    writer = LockServer(str(root))
    try:
        writer_pid = writer.call("pid")
        with _reader_thread(cache, "a") as first_released:
            outcome = []
            w = threading.Thread(
                target=lambda: outcome.append(writer.call("try", "x", ["a"], WAIT))
            )
            w.start()
            _wait_until_waiting(cache, "a", writer_pid)

            def main_is_queued():
                _eventually(
                    lambda: cache.statistics("a").threads_waiting,
                    "the main thread never queued",
                )

            with _interrupting_main_when(main_is_queued):
                with cache.reading("a", timeout=timeout):
                    pass
            _assert_only_the_other_reader_holds(cache, "a")
            assert not first_released.is_set()
        # The first reader let go: the writer gets in, then everything is free.
        w.join(WAIT)
        assert outcome == [True]
        assert_nothing_held(cache, "a")
        assert writer.call("try", "x", [], 0) is True
    finally:
        writer.close()


@pytest.mark.timeout(60)
def test_a_release_yields_the_processor_to_a_waiting_writer_of_another_process(
    tmp_path, monkeypatch
):
    yields: list[str] = []
    monkeypatch.setattr(_processlock, "_sched_yield", lambda: yields.append("y"))
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    with cache.exclusive("a"):
        pass
    assert yields == [], "nobody waited: no reason to yield"
    server = LockServer(str(root))
    try:
        pid = server.call("pid")
        block = cache.exclusive("a")
        block.__enter__()
        server.conn.send(("try", "x", ["a"], WAIT))
        _wait_until_waiting(cache, "a", pid)  # the writer queues: intent set
        assert (root / "locks" / "a.gate").read_bytes()[:1] == b"\x01"
        block.__exit__(None, None, None)
        assert server.conn.poll(WAIT)
        assert server.conn.recv() is True
        # Once, for the package lock; nobody waited for the root lock.
        assert yields == ["y"]
    finally:
        server.close()
