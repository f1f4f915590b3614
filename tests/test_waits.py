"""What the pkgcache logger says about waits: who, for what, who is in the way."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import pkgcache
from pkgcache import _waits
from tests.helpers import WAIT, LockServer, thread_holding

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="other processes are found in /proc/locks",
)


@pytest.fixture
def cache(tmp_path):
    return pkgcache.Cache(tmp_path / "cache")


@pytest.fixture
def fast_reports(monkeypatch):
    """First report after 10 ms, the next ones at least 10 ms apart."""
    monkeypatch.setattr(_waits, "SLOW_WAIT", 0.01)
    monkeypatch.setattr(_waits, "_MIN_INTERVAL", 0.01)


class Records(logging.Handler):
    """Collects the pkgcache logger's records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record)
            self.changed.notify_all()

    def having(self, text: str) -> list[logging.LogRecord]:
        with self.changed:
            return [r for r in self.records if text in r.getMessage()]

    def until(self, count: int, text: str) -> list[logging.LogRecord]:
        """Wait until ``count`` records say ``text``; return them all."""
        with self.changed:
            assert self.changed.wait_for(
                lambda: len(self.having(text)) >= count, WAIT
            ), f"fewer than {count} records with {text!r}"
            return self.having(text)


@contextmanager
def recording(level: int = logging.INFO) -> Iterator[Records]:
    logger = logging.getLogger("pkgcache")
    records = Records()
    old_level = logger.level
    logger.setLevel(level)
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)
        logger.setLevel(old_level)


def reader(cache: pkgcache.Cache, name: str, *packages: str) -> threading.Thread:
    """A thread that takes ``reading(*packages)`` once, waiting as needed."""

    def read() -> None:
        with cache.reading(*packages, timeout=WAIT):
            pass

    thread = threading.Thread(target=read, name=name)
    thread.start()
    return thread


def test_the_report_schedule_doubles_and_is_capped():
    # After a report t s into the wait, the next comes at 2t s, at least a
    # second and at most a minute later.
    times = [1.0]
    while len(times) < 10:
        times.append(_waits.next_report(times[-1]))
    assert times == [1, 2, 4, 8, 16, 32, 64, 124, 184, 244]
    assert _waits.next_report(0.1) == pytest.approx(1.1)  # the CLI's first


@pytest.mark.timeout(60)
def test_a_wait_is_reported_again_and_again_then_granted(cache, fast_reports):
    with recording() as records:
        with thread_holding(cache, "x", ("a",)):
            waiter = reader(cache, "worker-1", "a")
            reports = records.until(3, "has waited")
            assert waiter.is_alive()  # reported while it waits
        waiter.join(WAIT)
        [got] = records.until(1, " got ")
    pid = os.getpid()
    pattern = re.compile(
        rf"thread 'worker-1' of pid {pid} has waited (?P<waited>[0-9.]+) s for the "
        rf"shared lock on package 'a' in {re.escape(str(cache.root))}: pid {pid} "
        r"holds the exclusive lock on package 'a' \(threads: holder-x-a; process "
        r"age [^)]*\) \[.*\]"
    )
    waited = []
    for record in reports:
        match = pattern.fullmatch(record.getMessage())
        assert match, record.getMessage()
        waited.append(float(match["waited"]))
        # Logged by the watchdog on behalf of the worker, blocked meanwhile.
        assert (record.threadName, record.thread) == ("worker-1", waiter.ident)
        assert record.levelno == logging.INFO
    assert waited == sorted(waited)
    # The end of the wait is logged by the worker itself.
    assert (got.threadName, got.thread) == ("worker-1", waiter.ident)
    assert got.levelno == logging.INFO
    assert re.fullmatch(
        rf"thread 'worker-1' of pid {pid} got the shared lock on package 'a' in "
        rf"{re.escape(str(cache.root))} after [0-9.]+ s",
        got.getMessage(),
    )


@pytest.mark.timeout(60)
def test_six_blocked_workers_give_six_different_lines(cache, fast_reports):
    names = [f"worker-{i}" for i in range(6)]
    with recording() as records:
        with thread_holding(cache, "x", ()):
            workers = [reader(cache, name, "a") for name in names]
            for name in names:
                # Each worker gets its own report, on its own behalf.
                records.until(1, f"thread {name!r} of pid {os.getpid()} has waited")
        for worker in workers:
            worker.join(WAIT)
    for name in names:
        [first, *_] = records.having(f"thread {name!r} of pid")
        assert first.threadName == name
        assert "for the shared lock on the whole cache in " in first.getMessage()
        assert (
            "holds the exclusive lock on the whole cache (threads: holder-x-;"
            in first.getMessage()
        )


def test_the_end_of_a_wait_is_info_only_once_reported(cache):
    with cache.reading("a"):
        pass
    lock = cache._space.package_lock("a")
    with recording() as records:
        with _waits.SlowWait(lock, 2):
            pass  # over before any report: nothing at INFO
        assert records.records == []
        wait = _waits.SlowWait(lock, 2)
        wait.__enter__()
        wait.report_slow()  # what the watchdog does once the wait is slow
        wait.__exit__(TimeoutError, TimeoutError(), None)
    report, gave_up = records.records
    assert "has waited" in report.getMessage()
    assert report.getMessage().endswith(": no holder could be identified")
    assert gave_up.getMessage().startswith(
        f"thread 'MainThread' of pid {os.getpid()} gave up waiting for the "
        f"exclusive lock on package 'a' in {cache.root} after "
    )
    assert gave_up.levelno == logging.INFO


def test_debug_says_when_a_wait_starts_and_ends(cache):
    with recording(logging.DEBUG) as records:
        with thread_holding(cache, "x", ("a",)):
            waiter = reader(cache, "worker-1", "a")
            [start] = records.until(1, "waits for")
        waiter.join(WAIT)
        [end] = records.until(1, " got ")
    assert start.getMessage() == (
        f"thread 'worker-1' of pid {os.getpid()} waits for the shared lock on "
        f"package 'a' in {cache.root}"
    )
    assert (start.threadName, end.threadName) == ("worker-1", "worker-1")
    assert end.levelno == logging.DEBUG


def _until_queued(cache: pkgcache.Cache, package: str, pid: int) -> None:
    deadline = time.monotonic() + WAIT
    while not any(h.waiting and h.pid == pid for h in cache.holders(package)):
        assert time.monotonic() < deadline, f"pid {pid} never queued for {package}"
        time.sleep(0.002)  # polling /proc/locks, the only witness of a flock wait


@linux_only
@pytest.mark.timeout(60)
def test_blockers_are_whole_cache_holders_and_queued_writers(cache, fast_reports):
    server = LockServer(str(cache.root))
    try:
        pid = server.call("pid")
        with cache.reading("a"):
            pass
        lock_a = cache._space.package_lock("a")
        # A package wait names whoever holds the whole cache exclusively.
        server.hold("x")
        [whole] = _waits.blockers(lock_a, 1)
        assert (whole.pid, whole.package, whole.mode) == (pid, None, "exclusive")
        server.release()
        # A reader that arrives while a writer of another process queues
        # waits for that writer: the report names it.
        with recording() as records:
            with thread_holding(cache, "r", ("a",)):
                server.conn.send(("try", "x", ["a"], WAIT))
                _until_queued(cache, "a", pid)
                late = reader(cache, "late-reader", "a")
                report = records.until(1, "'late-reader'")[0]
            assert server.conn.poll(WAIT)
            assert server.conn.recv() is True
            late.join(WAIT)
        assert f"pid {pid} waits for the " in report.getMessage()
        assert "lock on package 'a'" in report.getMessage()
        # The reader holding 'a' shared is not in the way of another reader.
        assert "holder-r-a" not in report.getMessage()
    finally:
        server.close()
