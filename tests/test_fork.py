"""After fork() the child has its own locks and waits for its parent like anyone."""

from __future__ import annotations

import os
import select

import pytest

import pkgcache
from tests.helpers import WAIT, LockServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

# Bounded negative check: the child must not get in while the parent holds.
NEGATIVE_WINDOW = 0.25


def _readable(fd, timeout):
    return bool(select.select([fd], [], [], timeout)[0])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("parent", "child"),
    [
        (("x", ("a",)), ("r", ("a",))),
        (("r", ("a",)), ("x", ("a",))),
        (("x", ()), ("r", ())),
    ],
)
def test_child_waits_for_the_parent_then_gets_the_lock(tmp_path, parent, child):
    cache = pkgcache.Cache(tmp_path / "cache")
    parent_request = (cache.exclusive if parent[0] == "x" else cache.reading)(
        *parent[1]
    )
    parent_request.__enter__()
    released = False
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait (no timeout) for what the parent holds
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, b"s")
            request = cache.exclusive if child[0] == "x" else cache.reading
            with request(*child[1], timeout=WAIT):
                os.write(write_end, b"i")
            code = 0 if cache.statistics(*child[1][:1]).depth == 0 else 2
        finally:
            os._exit(code)
    try:
        os.close(write_end)
        assert _readable(read_end, WAIT)
        assert os.read(read_end, 1) == b"s"
        assert not _readable(read_end, NEGATIVE_WINDOW), "child got in early"
        parent_request.__exit__(None, None, None)
        released = True
        assert _readable(read_end, WAIT), "child never got the lock"
        assert os.read(read_end, 1) == b"i"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        if not released:
            parent_request.__exit__(None, None, None)
        os.close(read_end)


@pytest.mark.timeout(60)
def test_locks_taken_by_a_child_end_with_the_child(tmp_path):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    with cache.reading("b"):  # the parent holds something too
        server = LockServer(str(root))
        try:
            read_end, write_end = os.pipe()
            go_read, go_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(read_end)
                    os.close(go_write)
                    req = cache.exclusive("a")
                    req.__enter__()  # never exited: the process ends holding it
                    os.write(write_end, b"h")
                    os.read(go_read, 1)
                finally:
                    os._exit(0)
            os.close(write_end)
            os.close(go_read)
            assert _readable(read_end, WAIT)
            assert os.read(read_end, 1) == b"h"
            assert server.call("try", "r", ["a"], 0) != True  # noqa: E712
            os.write(go_write, b"g")
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            os.close(read_end)
            os.close(go_write)
            assert server.call("try", "x", ["a"], 0) is True
            # The parent's own hold was never touched by the child.
            assert server.call("try", "x", ["b"], 0) != True  # noqa: E712
        finally:
            server.close()
