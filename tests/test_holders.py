"""Who holds a lock, and what the pkgcache logger says about waits."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import pytest

import pkgcache
from tests.helpers import WAIT, LockServer, thread_holding

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="other processes are found in /proc/locks",
)


@pytest.fixture
def cache(tmp_path):
    return pkgcache.Cache(tmp_path / "cache")


def test_holders_in_this_process_name_their_threads(cache):
    with thread_holding(cache, "r", ("a",)):
        holders = cache.holders("a")
    assert len(holders) == 1
    holder = holders[0]
    assert holder.pid == os.getpid()
    assert holder.mode == "shared"
    assert not holder.waiting
    assert holder.threads == ("holder-r-a",)
    assert holder.package == "a"
    assert holder.describe().startswith(
        f"pid {os.getpid()} holds the shared lock on package 'a' (threads: "
        "holder-r-a; process age "
    )
    assert cache.holders("a") == []


@linux_only
@pytest.mark.timeout(60)
def test_holders_in_other_processes(cache):
    server = LockServer(str(cache.root))
    try:
        server.hold("x", "a")
        pid = server.call("pid")
        holders = cache.holders()
        by_package = {(h.package, h.pid): h for h in holders}
        assert by_package[None, pid].mode == "shared"  # the root lock
        holder = by_package["a", pid]
        assert holder.mode == "exclusive"
        assert not holder.waiting
        assert holder.threads == ()
        assert holder.command is not None
        assert "multiprocessing" in holder.command
        assert holder.path.endswith("locks/a.lock")
    finally:
        server.close()


@linux_only
@pytest.mark.timeout(60)
def test_waiters_are_reported(cache):
    server = LockServer(str(cache.root))
    try:
        server.hold("r", "a")
        waiting = threading.Event()
        done = threading.Event()

        def writer():
            waiting.set()
            with cache.exclusive("a", timeout=WAIT):
                done.set()

        t = threading.Thread(target=writer)
        t.start()
        assert waiting.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while not (waiters := [h for h in cache.holders("a") if h.waiting]):
            assert time.monotonic() < deadline, "the writer never queued"
            time.sleep(0.002)
        assert waiters[0].pid == os.getpid()
        assert "waits for" in waiters[0].describe()
        server.release()
        assert done.wait(WAIT)
        t.join(WAIT)
    finally:
        server.close()


def test_debug_log_of_acquire_and_release(cache, caplog):
    with caplog.at_level(logging.DEBUG, logger="pkgcache"):
        with cache.exclusive("a"):
            pass
    messages = [r.getMessage() for r in caplog.records]
    # Each lock with its own mode, and the cache it belongs to: the line once
    # read "acquired exclusive the whole cache, package 'a'".
    root = os.path.realpath(cache.root)
    assert any(
        m.startswith(
            f"acquired the whole cache shared, package 'a' exclusive in {root} after"
        )
        for m in messages
    )
    assert (
        f"released the whole cache shared, package 'a' exclusive in {root}" in messages
    )
