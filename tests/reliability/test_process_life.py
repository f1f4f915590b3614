"""Process life: permissions, fork, holders that never release, descriptors.

Permission bits do not bind root, so when the tests run as root the calls
run in a spawn child that first becomes user ``nobody``.
"""

from __future__ import annotations

import os
import select
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import pytest

import pkgcache
from tests.helpers import SPAWN, LockServer
from tests.reliability.support import (
    NOBODY,
    WAIT,
    fd_exhaustion,
    fork_probe,
    hold_then_exit,
    make_seed,
    scaled,
    try_calls,
    try_calls_child,
)

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions"),
]


# -- permissions --------------------------------------------------------------------


@pytest.fixture
def world_dir():
    """A folder user ``nobody`` can reach (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="pkgcache-rel-"))
    path.chmod(0o755)
    yield path
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    path.chmod(0o755)
    shutil.rmtree(path)


def _as_unprivileged(root: Path, calls) -> list[str]:
    drop = os.geteuid() == 0
    if drop and shutil.which("true") is None:  # pragma: no cover
        pytest.skip("cannot drop privileges here")
    result = SPAWN.Queue()
    proc = SPAWN.Process(target=try_calls_child, args=(str(root), calls, drop, result))
    proc.start()
    try:
        outcomes = result.get(timeout=WAIT)
    finally:
        proc.join(WAIT)
    assert proc.exitcode == 0
    return outcomes


def _make_layout(root: Path, *packages: str) -> None:
    cache = pkgcache.Cache(root)
    with cache.exclusive(*packages, timeout=WAIT):
        pass
    # Owned by someone else than the probe when the tests run as root.
    if os.geteuid() != 0:
        return
    for path in [root, *root.rglob("*")]:
        assert path.stat().st_uid != NOBODY


def _chmod_tree(root: Path, dirs: int, files: int) -> None:
    for path in root.rglob("*"):
        path.chmod(dirs if path.is_dir() else files)
    root.chmod(dirs)


# A package never locked before has no lock file, and none can be made: a
# reader is let in (nobody ever wrote it: its store folder is a miss), a
# writer is refused. Regression: reading("new") raised CachePermissionError.
READ_CALLS = [("r", ()), ("r", ("a",)), ("r", ("new",))]
WRITE_CALLS = [("x", ("a",)), ("x", ("new",)), ("x", ())]


@pytest.mark.timeout(60)
def test_read_only_cache_can_be_read_and_refuses_writes_clearly(world_dir):
    root = world_dir / "cache"
    _make_layout(root, "a")
    _chmod_tree(root, 0o555, 0o444)
    outcomes = _as_unprivileged(root, READ_CALLS + WRITE_CALLS)
    assert outcomes == ["ok", "ok", "ok"] + ["CachePermissionError"] * 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "unreadable", ["root", "locks", "locks/a.lock", ".lock", "locks/a.gate"]
)
def test_unreadable_parts_fail_with_a_cache_error(world_dir, unreadable):
    root = world_dir / "cache"
    _make_layout(root, "a")
    target = root if unreadable == "root" else root / unreadable
    target.chmod(0)
    outcomes = _as_unprivileged(root, [("r", ("a",)), ("x", ("a",))])
    for outcome in outcomes:
        # PermissionError from the OS must surface as a pkgcache error.
        assert outcome in ("CachePermissionError", "ok"), outcomes
    if unreadable != "locks/a.gate":  # the gate only orders waiters
        assert outcomes[1] == "CachePermissionError"


@pytest.mark.timeout(60)
def test_root_in_a_folder_that_cannot_be_written(world_dir):
    parent = world_dir / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    outcomes = _as_unprivileged(parent / "cache", [("r", ()), ("x", ("a",))])
    assert outcomes == ["CachePermissionError"] * 2
    assert list(parent.iterdir()) == []


@pytest.mark.parametrize("layout", ["root is a file", "parent is a file"])
def test_root_that_is_not_a_folder(tmp_path, layout):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    root = blocker if layout == "root is a file" else blocker / "cache"
    outcomes = try_calls(str(root), [("r", ()), ("x", ("a",))], drop=False)
    assert outcomes == ["UnsafePathError"] * 2
    assert blocker.read_text() == "not a folder"


# -- fork while other threads hold and wait ----------------------------------------


def _fork_and_probe(root: Path, packages: list[str], held: list[str]) -> int:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: threads
        pid = os.fork()
    if pid == 0:  # the child: report, then leave without any cleanup
        code = 99
        try:
            os.close(read_end)
            code = fork_probe(str(root), packages, held)
        finally:
            os.write(write_end, bytes([code]))
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT)
        if not ready:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("a forked child hung (a mutex inherited locked?)")
        code = os.read(read_end, 1)[0]
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == code
    return code


def _take(request, errors) -> None:
    try:
        with request:
            pass
    except BaseException as exc:
        errors.append(exc)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_while_threads_hold_wait_and_churn(tmp_path):
    import random

    rng = random.Random(make_seed())
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    server = LockServer(str(root))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    release = threading.Event()
    held = threading.Barrier(3)

    def hold(request) -> None:
        try:
            with request:
                held.wait(WAIT)
                # Held for the whole scenario, however long a soak makes it
                # (a bounded wait: the test sets the event when it ends).
                release.wait(WAIT + scaled(15) * WAIT)
        except BaseException as exc:
            errors.append(exc)

    def churn(seed: int) -> None:
        local = random.Random(seed)
        try:
            while not stop.is_set():
                names = local.sample(["c", "d", "e"], local.randrange(1, 3))
                call = local.choice((cache.reading, cache.exclusive))
                with call(*names, timeout=WAIT):
                    pass
        except BaseException as exc:
            errors.append(exc)

    # A third thread will queue for "a": it holds a's gate mutex while waiting.
    waiter = threading.Thread(target=_take, args=(cache.reading("a"), errors))
    try:
        try:
            threads += [
                threading.Thread(
                    target=hold, args=(cache.exclusive("a", timeout=WAIT),)
                ),
                threading.Thread(target=hold, args=(cache.reading("b", timeout=WAIT),)),
            ]
            threads += [
                threading.Thread(target=churn, args=(rng.randrange(2**32),))
                for _ in range(2)
            ]
            for thread in threads:
                thread.start()
            held.wait(WAIT)
            for i in range(scaled(15)):
                if i == 1:
                    waiter.start()
                assert _fork_and_probe(root, ["c", "d", "f"], ["a", "b"]) == 0
            # The parent still holds what its threads hold.
            assert server.call("try", "r", ["a"], 0) is not True
            assert server.call("try", "x", ["b"], 0) is not True
            assert cache.statistics("a").threads_waiting == 1  # the waiter
        finally:
            stop.set()
            release.set()
            held.abort()
            for thread in threads:
                thread.join(WAIT)
            if waiter.ident is not None:
                waiter.join(WAIT)
        assert errors == []
        assert server.call("try", "x", [], 0) is True
    finally:
        server.close()


# -- a holder that leaves without releasing ----------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["os._exit", "sys.exit", "exception"])
@pytest.mark.parametrize(("mode", "packages"), [("x", ["a"]), ("r", ["a"]), ("x", [])])
def test_holder_that_exits_without_releasing(tmp_path, how, mode, packages):
    root = tmp_path / "cache"
    proc = SPAWN.Process(target=hold_then_exit, args=(str(root), mode, packages, how))
    proc.start()
    proc.join(WAIT)
    assert proc.exitcode is not None
    # The kernel dropped the flocks with the process: everything is free.
    with pkgcache.Cache(root).exclusive(*packages, timeout=0):
        pass
    with pkgcache.Cache(root).exclusive(timeout=0):
        pass


# -- descriptors --------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE")
def test_descriptor_exhaustion_is_bounded_and_clear(tmp_path):
    limit = 64
    result = SPAWN.Queue()
    proc = SPAWN.Process(
        target=fd_exhaustion, args=(str(tmp_path / "cache"), limit, result)
    )
    proc.start()
    try:
        report = result.get(timeout=WAIT * 2)
    finally:
        proc.join(WAIT)
    print(f"descriptor exhaustion at RLIMIT_NOFILE={limit}: {report}")
    assert "crash" not in report
    # The limit was lowered after import (the idle bound still said 256):
    # opening one package after another sheds idle locks instead of failing.
    assert report["peak_descriptors"] < limit
    # Holding ever more at once ends in a clear error, not a raw OSError...
    kind, message = report["error"]
    assert kind == "CacheError", report
    assert "too many open files" in message
    assert report["held"] > 0
    # ...and once released, everything works and few locks stay open.
    assert report["recovered"]
    assert report["descriptors_after"] < limit // 2
