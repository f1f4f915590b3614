"""Lock behaviour beyond the table: overlap, names, nesting, timeouts, crashes."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading

import pytest

import pkgcache
from tests.helpers import (
    SPAWN,
    WAIT,
    LockServer,
    assert_nothing_held,
    depths,
    exclusive_at_barrier,
    hold_until_killed,
    opposite_orders,
    thread_holding,
)


@pytest.fixture
def cache(tmp_path):
    return pkgcache.Cache(tmp_path / "cache")


def test_creates_layout_on_first_use(tmp_path):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    assert not root.exists()  # Cache() does no I/O
    with cache.reading():
        pass
    assert (root / ".lock").is_file()
    assert (root / "locks").is_dir()
    assert (
        (root / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )


# -- different packages never wait for each other --------------------------------


@pytest.mark.timeout(60)
def test_exclusive_on_different_packages_overlap_in_threads(cache):
    names = ["a", "b", "c", "d"]
    barrier = threading.Barrier(len(names))
    errors = []

    def work(name):
        try:
            with cache.exclusive(name, timeout=WAIT):
                barrier.wait(WAIT)  # every holder is inside at the same time
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors


@pytest.mark.timeout(90)
def test_exclusive_on_different_packages_overlap_in_processes(cache):
    names = ["a", "b", "c"]
    barrier = SPAWN.Barrier(len(names) + 1)
    procs = [
        SPAWN.Process(target=exclusive_at_barrier, args=(str(cache.root), n, barrier))
        for n in names
    ]
    for p in procs:
        p.start()
    # The main process holds a fourth package and meets them too.
    with cache.exclusive("e", timeout=WAIT):
        barrier.wait(WAIT)
    for p in procs:
        p.join(WAIT)
        assert p.exitcode == 0


# -- names ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_canonical_spellings_share_one_lock(cache):
    with thread_holding(cache, "x", ("Setuptools_SCM",)):
        for spelling in ["setuptools-scm", "setuptools.scm", "SETUPTOOLS_scm"]:
            with pytest.raises(pkgcache.LockTimeout):
                with cache.reading(spelling, timeout=0.01):
                    pass
    assert sorted(p.name for p in (cache.root / "locks").glob("*.lock")) == [
        "setuptools-scm.lock"
    ]


def test_invalid_name_fails_before_any_io(tmp_path):
    cache = pkgcache.Cache(tmp_path / "cache")
    for bad in ["../evil", "a/b", "/abs", "-rf", "", "a\0b"]:
        with pytest.raises(pkgcache.InvalidPackageName):
            cache.exclusive("ok", bad)
    assert not (tmp_path / "cache").exists()


# -- nesting ----------------------------------------------------------------------


def test_reentry_in_the_same_mode(cache):
    with cache.reading("a"), cache.reading("a"), cache.reading("A"):
        pass
    with cache.exclusive("a"), cache.exclusive("a"), cache.reading("a"):
        pass
    with cache.exclusive(), cache.exclusive("a"), cache.reading("b"), cache.reading():
        pass
    # Everything was released: another thread can take the whole cache.
    assert _fresh_thread_can(cache, "x", ())


def test_upgrade_is_refused_at_once(cache):
    with cache.reading("a"):
        with pytest.raises(pkgcache.LockUpgradeError):
            with cache.exclusive("a"):
                pass
        with pytest.raises(pkgcache.LockUpgradeError):
            with cache.exclusive():
                pass
        # The shared lock is still held: an exclusive request elsewhere waits.
        assert not _fresh_thread_can(cache, "x", ("a",))
    assert _fresh_thread_can(cache, "x", ("a",))


@pytest.mark.timeout(60)
def test_out_of_order_nested_call_raises_instead_of_waiting(cache):
    with thread_holding(cache, "x", ("a",)):
        with cache.exclusive("b"):
            with pytest.raises(pkgcache.LockOrderError):
                with cache.reading("a"):
                    pass
            # Nothing leaked from the failed call.
            assert depths(cache, "a", "b") == {None: 1, "a": 0, "b": 1}
    # When the earlier lock is free, the out-of-order call simply succeeds.
    with cache.exclusive("b"), cache.reading("a"):
        pass


@pytest.mark.timeout(60)
def test_blocks_exited_out_of_order_keep_the_bookkeeping_right(cache):
    """An ExitStack (or manual calls) may end blocks in any order."""
    first = cache.exclusive("b")
    second = cache.reading("c")
    third = cache.exclusive("d")
    stack = contextlib.ExitStack()
    for request in (first, second, third):
        stack.enter_context(request)
    first.__exit__(None, None, None)  # the earliest block ends first
    assert depths(cache, "b", "c", "d") == {None: 2, "b": 0, "c": 1, "d": 1}
    # "b" is free: another thread takes it; "c" and "d" are still held.
    assert _fresh_thread_can(cache, "x", ("b",))
    assert not _fresh_thread_can(cache, "x", ("c",))
    assert not _fresh_thread_can(cache, "r", ("d",))
    # Holding "d", "a" is out of order: taken at once when free...
    with cache.reading("a"):
        pass
    # ...and refused at once when busy.
    with thread_holding(cache, "x", ("a",)), pytest.raises(pkgcache.LockOrderError):
        with cache.reading("a"):
            pass
    stack.close()  # exits third, second, then first again (a no-op)
    assert_nothing_held(cache, "a", "b", "c", "d")
    assert _fresh_thread_can(cache, "x", ())


@pytest.mark.timeout(120)
def test_opposite_argument_orders_never_deadlock(cache):
    names = ["a", "b", "c"]
    done = SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=opposite_orders, args=(str(cache.root), names[::step], 150, done)
        )
        for step in (1, -1)
    ]
    for p in procs:
        p.start()
    errors = []

    def spin(order):
        try:
            for i in range(150):
                with (cache.exclusive if i % 2 else cache.reading)(
                    *order, timeout=WAIT
                ):
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=spin, args=(o,)) for o in (names, names[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    finished = sorted(done.get(timeout=WAIT * 2) for _ in procs)
    for p in procs:
        p.join(WAIT)
    assert not errors
    assert finished == sorted(p.pid for p in procs)


# -- timeouts ---------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_timeout_names_the_lock_and_leaves_nothing_held(tmp_path):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    server = LockServer(str(root))
    try:
        server.hold("x", "b")
        # "a" is granted first, then "b" times out: "a" must be released again.
        with pytest.raises(pkgcache.LockTimeout) as info:
            with cache.exclusive("a", "b", timeout=0.1):
                pass
        exc = info.value
        assert isinstance(exc, TimeoutError)
        assert isinstance(exc, pkgcache.CacheError)
        assert exc.package == "b"
        assert exc.mode == "exclusive"
        assert exc.waited >= 0.1
        assert "'b'" in str(exc)
        assert "exclusive" in str(exc)
        server_pid = server.call("pid")
        if sys.platform.startswith("linux"):
            assert [h.pid for h in exc.holders] == [server_pid]
            assert str(server_pid) in str(exc)
        assert_nothing_held(cache, "a", "b")
        # Another process can take "a" (and the whole cache, once b is free).
        assert server.call("try", "x", ["a"], 0) is True
        server.release()
        assert server.call("try", "x", [], 0) is True
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_timeout_on_whole_cache_names_the_whole_cache(cache):
    with thread_holding(cache, "r", ()):
        with pytest.raises(pkgcache.LockTimeout) as info:
            with cache.exclusive(timeout=0):
                pass
    assert info.value.package is None
    assert "whole cache" in str(info.value)


def test_bad_timeout_values(cache):
    for bad in (-1, float("nan"), "soon"):
        with pytest.raises(ValueError, match="timeout"):
            cache.reading("a", timeout=bad)
    with pytest.raises(ValueError, match="timeout"):
        pkgcache.Cache(cache.root, timeout=-5)


# -- crashes, fork and the lock files themselves ----------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("mode", "packages"), [("x", ("a",)), ("r", ("a",)), ("x", ())]
)
def test_kill_9_of_a_holder_frees_its_locks(cache, mode, packages):
    held = SPAWN.Event()
    proc = SPAWN.Process(
        target=hold_until_killed, args=(str(cache.root), mode, packages, held)
    )
    proc.start()
    try:
        assert held.wait(WAIT)
        with pytest.raises(pkgcache.LockTimeout):
            with cache.exclusive(*packages, timeout=0):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(WAIT)
        assert proc.exitcode == -signal.SIGKILL
        with cache.exclusive(*packages, timeout=WAIT):
            pass
    finally:
        if proc.is_alive():
            proc.kill()


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_neither_holds_nor_releases_parent_locks(tmp_path):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    server = LockServer(str(root))
    try:
        with cache.exclusive("a"), cache.reading("b"):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                code = 0
                try:
                    os.close(read_end)
                    # The child holds nothing: it cannot take what the parent holds...
                    try:
                        with cache.exclusive("a", timeout=0):
                            code = 10
                    except pkgcache.LockTimeout:
                        pass
                    # ...and can take what nobody holds.
                    with cache.exclusive("c", timeout=0):
                        pass
                    assert depths(cache, "a", "b", "c") == {
                        None: 0,
                        "a": 0,
                        "b": 0,
                        "c": 0,
                    }
                except BaseException:
                    code = 11
                finally:
                    os.write(write_end, b"x")
                    # Leaving the inherited with-blocks must not release anything.
                os._exit(code)
            os.close(write_end)
            assert os.read(read_end, 1) == b"x"
            os.close(read_end)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            # The parent still holds "a" exclusively and "b" shared.
            assert server.call("try", "r", ["a"], 0) != True  # noqa: E712
            assert server.call("try", "x", ["b"], 0) != True  # noqa: E712
            assert server.call("try", "r", ["b"], 0) is True
        assert server.call("try", "x", ["a", "b"], 0) is True
    finally:
        server.close()


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_child_leaving_inherited_block_keeps_parent_lock(tmp_path):
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    server = LockServer(str(root))
    try:
        with cache.exclusive("a"):
            pid = os.fork()
            if pid == 0:
                os._exit(0)  # leaves without running the parent's __exit__
        # (the with-block above exits in the parent only)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert server.call("try", "x", ["a"], 0) is True

        req = cache.exclusive("a")
        req.__enter__()
        pid = os.fork()
        if pid == 0:
            try:
                req.__exit__(None, None, None)  # the child's copy of the block ends
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert server.call("try", "r", ["a"], 0) != True  # noqa: E712
        req.__exit__(None, None, None)
        assert server.call("try", "x", ["a"], 0) is True
    finally:
        server.close()


def test_lock_files_survive_everything(cache):
    with cache.exclusive("a"), cache.reading("b"):
        pass
    files = [*sorted((cache.root / "locks").iterdir()), cache.root / ".lock"]
    before = {p: (p.stat().st_ino, p.read_bytes()) for p in files}
    for _ in range(50):
        with cache.exclusive(), cache.exclusive("a"):
            pass
        with cache.reading("a", "b"):
            pass
    after = {p: (p.stat().st_ino, p.read_bytes()) for p in files}
    assert after == before


# -- hostile lock paths -------------------------------------------------------------


def _plant(path, kind, outside):
    if kind == "symlink":
        path.symlink_to(outside)
    elif kind == "dangling":
        path.symlink_to(outside.with_name("created-by-attack"))
    elif kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["symlink", "dangling", "directory", "fifo"])
@pytest.mark.parametrize("which", ["a.lock", "a.gate", "root"])
def test_planted_lock_paths_are_refused_and_untouched(tmp_path, kind, which):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    before = outside.stat()
    root = tmp_path / "cache"
    root.mkdir()
    (root / "locks").mkdir()
    target = root / ".lock" if which == "root" else root / "locks" / which
    _plant(target, kind, outside)
    cache = pkgcache.Cache(root)
    with pytest.raises(pkgcache.UnsafePathError) as info:
        with cache.exclusive("a", timeout=1):
            pass
    assert str(target) in str(info.value)
    assert outside.read_text() == "precious"
    assert outside.stat().st_mtime_ns == before.st_mtime_ns
    assert not (tmp_path / "created-by-attack").exists()
    if kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(target).st_mode)


def test_hard_linked_gate_is_refused(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"")
    root = tmp_path / "cache"
    (root / "locks").mkdir(parents=True)
    os.link(outside, root / "locks" / "a.gate")
    with pytest.raises(pkgcache.UnsafePathError, match="hard link"):
        with pkgcache.Cache(root).exclusive("a"):
            pass
    assert outside.read_bytes() == b""


def test_locks_folder_replaced_by_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "cache"
    root.mkdir()
    (root / "locks").symlink_to(elsewhere)
    with pytest.raises(pkgcache.UnsafePathError):
        with pkgcache.Cache(root).reading("a"):
            pass
    assert list(elsewhere.iterdir()) == []


def test_root_that_is_a_file(tmp_path):
    root = tmp_path / "cache"
    root.write_text("not a folder")
    with pytest.raises(pkgcache.CacheError):
        with pkgcache.Cache(root).reading():
            pass
    assert root.read_text() == "not a folder"


# -- helpers -------------------------------------------------------------------------


def _fresh_thread_can(cache, mode, packages) -> bool:
    """Whether another thread gets the lock at once."""
    result = []

    def run():
        try:
            with (cache.exclusive if mode == "x" else cache.reading)(
                *packages, timeout=0
            ):
                result.append(True)
        except pkgcache.LockTimeout:
            result.append(False)

    t = threading.Thread(target=run)
    t.start()
    t.join(WAIT)
    return result == [True]
