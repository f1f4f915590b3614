"""Regression tests for the lock-core reproductions (issue 12), quick tier.

Each test names the reproduction it guards (``shared/repro/locks/<id>_*.py``).
The slow and root-only ones are in ``tests/reliability/``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import pkgcache
from tests.helpers import SPAWN, WAIT, LockServer, hold_until_killed
from tests.lock_core_targets import (
    busy_forker,
    closerange_case,
    descriptors_under,
    fork_quietly,
    kill9_victim,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="/proc/self/fd, /proc/locks"
)
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

FORK_SECONDS = 1.5  # the quick tier's fork storm; the reliability tier soaks


def _receive(conn, process, what: str):
    if not conn.poll(WAIT * 2):
        process.kill()
        pytest.fail(f"{what} never reported")
    return conn.recv()


# -- e1: a dead thread's hold and a new thread with its ident --------------------------


@pytest.mark.timeout(60)
def test_new_thread_reusing_a_dead_holders_ident_does_not_enter_its_hold(tmp_path):
    """e1 part 4: holds belong to a thread's state, not to its reusable id."""
    cache = pkgcache.Cache(tmp_path / "cache")
    kept = []  # a block object that is dropped releases its locks: keep it
    dead = []

    def die_holding() -> None:
        kept.append(cache.exclusive("d", timeout=0))
        kept[-1].__enter__()
        dead.append(threading.get_ident())

    holder = threading.Thread(target=die_holding)
    holder.start()
    holder.join(WAIT)
    assert dead, "the holder thread failed"
    outcomes: list[str] = []

    def probe() -> None:
        if threading.get_ident() != dead[0]:
            return
        for call in (cache.exclusive, cache.reading):
            try:
                with call("d", timeout=0):
                    outcomes.append("granted")
            except pkgcache.LockTimeout:
                outcomes.append("LockTimeout")
        outcomes.append(f"depth {cache.statistics('d').depth}")

    for _ in range(500):
        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(WAIT)
        if outcomes:
            break
    else:
        pytest.skip("no new thread got the dead thread's id (platform-dependent)")
    assert outcomes == ["LockTimeout", "LockTimeout", "depth 0"]
    # The dead thread's hold stays, for every thread and process (a misuse:
    # a thread must leave its with-blocks), as the lock's record says.
    assert cache.statistics("d").writer == holder.name
    server = LockServer(str(cache.root))
    try:
        assert server.call("try", "r", ["d"], 0) is not True
        kept[0].__exit__(None, None, None)  # ending a block from another thread
        assert server.call("try", "x", ["d"], 0) is True
    finally:
        server.close()


# -- f1 / f2: fork from a busy process -------------------------------------------------


@linux_only
@needs_fork
@pytest.mark.timeout(120)
def test_children_forked_from_a_busy_process_inherit_no_lock_descriptor(tmp_path):
    """f1: a child forked while other threads open and close lock files has no
    descriptor of the cache (it would keep the parent's flock alive)."""
    root = str(tmp_path / "cache")
    report = _run_busy_forker(root, FORK_SECONDS)
    assert report["forks"] >= 10, report
    assert report["children with inherited descriptors"] == 0, report
    assert report["children that got the parent's lock"] == 0, report
    assert report["bad exits"] == 0, report
    assert report["bad reports"] == [], report
    assert report["errors"] == [], report


def _run_busy_forker(root: str, seconds: float) -> dict:
    parent_end, child_end = SPAWN.Pipe()
    seed = int.from_bytes(os.urandom(4), "little")
    proc = SPAWN.Process(target=busy_forker, args=(root, seconds, seed, child_end))
    proc.start()
    try:
        report = _receive(parent_end, proc, "the busy process")
    finally:
        proc.join(WAIT)
        if proc.is_alive():
            proc.kill()
    print(f"seed {seed}: {report}")
    return report


@linux_only
@needs_fork
@pytest.mark.timeout(120)
def test_kill_9_frees_the_locks_of_a_forking_holder_at_once(tmp_path):
    """f2: a holder that forked long-lived children while busy is killed with
    SIGKILL; another process gets its locks at once while the children live."""
    root = str(tmp_path / "cache")
    _kill_forking_holder(root, FORK_SECONDS)


def _kill_forking_holder(root: str, seconds: float) -> None:
    names = ["a", "b", "c"]
    stay = SPAWN.Event()
    parent_end, child_end = SPAWN.Pipe()
    seed = int.from_bytes(os.urandom(4), "little")
    victim = SPAWN.Process(
        target=kill9_victim,
        args=(root, names, stay, child_end),
        kwargs={"seconds": seconds, "seed": seed},
    )
    victim.start()
    server = LockServer(root)
    try:
        report, children = _receive(parent_end, victim, "the victim")
        print(f"seed {seed}: {report}")
        assert report["children with inherited descriptors"] == 0, report
        assert report["children that got the parent's lock"] == 0, report
        assert report["errors"] == [], report
        assert report["bad reports"] == [], report
        assert server.call("try", "r", names[:1], 0) is not True  # held
        os.kill(victim.pid, signal.SIGKILL)
        # Not join(): it waits for the process's sentinel pipe, which the
        # children inherited; the exit code comes from waitpid().
        deadline = time.monotonic() + WAIT
        while victim.exitcode is None:
            assert time.monotonic() < deadline, "the victim survived SIGKILL"
            time.sleep(0.001)
        assert victim.exitcode == -signal.SIGKILL
        for pid in children:
            os.kill(pid, 0)  # still alive (raises if not)
        assert server.call("try", "x", names, 0) is True
        assert server.call("try", "x", [], 0) is True
    finally:
        stay.set()
        server.close()
        if victim.exitcode is None:
            victim.kill()
        victim.join(WAIT)  # the children leave once ``stay`` is set


# -- g1: user code closes pkgcache's descriptors ---------------------------------------


@linux_only
@pytest.mark.timeout(60)
@pytest.mark.parametrize("other_thread", [False, True], ids=["alone", "threads"])
@pytest.mark.parametrize("reuse", [False, True], ids=["closed", "reused"])
def test_descriptors_closed_by_user_code_never_let_a_second_holder_in(
    tmp_path, reuse, other_thread
):
    """g1: after ``os.closerange`` (and the numbers reused by the user's own
    files), a lock another process holds is never granted, and the call
    fails with a pkgcache error, not a raw OSError."""
    root = str(tmp_path / "cache")
    server = LockServer(root)
    try:
        parent_end, child_end = SPAWN.Pipe()
        proc = SPAWN.Process(
            target=closerange_case, args=(root, reuse, other_thread, child_end)
        )
        proc.start()
        assert _receive(parent_end, proc, "the closerange process") == "ready"
        server.hold("x", "a")
        parent_end.send("go")
        outcome = _receive(parent_end, proc, "the closerange process")
        proc.join(WAIT)
    finally:
        server.close()
    print(outcome)
    assert outcome["call"] != "granted"
    assert outcome["call"][0] == "CacheError", outcome
    assert (
        outcome["call"][1] == "LockTimeout"
        or "outside pkgcache" in (outcome["call"][2])
    ), outcome
    # pkgcache never closes what now is the user's: numbers it lost are
    # forgotten, not closed.
    assert outcome["broken user files"] == [], outcome


# -- h1 / h2: many names in one call ---------------------------------------------------

_LINE_COUNT = """
import json, os, sys
import pkgcache

root = sys.argv[1]
cache = pkgcache.Cache(root)
package_dir = os.path.dirname(pkgcache.__file__)
lines = 0

def global_trace(frame, event, arg):
    return local_trace if frame.f_code.co_filename.startswith(package_dir) else None

def local_trace(frame, event, arg):
    global lines
    if event == "line":
        lines += 1
    return local_trace

def work(count, prefix):
    global lines
    names = [f"{prefix}{i}" for i in range(count)]
    lines = 0
    sys.settrace(global_trace)
    try:
        with cache.reading(*names, timeout=60):
            pass
        with cache.exclusive(*names, timeout=60):
            pass
    finally:
        sys.settrace(None)
    return lines

with cache.reading("warm-up"):
    pass
print(json.dumps([work(300, "small"), work(1200, "large")]))
"""


@pytest.mark.timeout(120)
def test_lock_work_grows_linearly_with_the_names_of_one_call(tmp_path):
    """h1: the lines of pkgcache executed to take and release N fresh locks in
    one call (past the idle bound: opens and trims) grow linearly with N; the
    defect (each open walked every open lock) made them grow with N^2."""
    small, large = json.loads(_run_script(_LINE_COUNT, tmp_path / "cache"))
    print(f"lines executed: 300 names {small}, 1200 names {large}")
    # 4x the names: about 4x the work; quadratic work would be 16x or more.
    assert large < 6 * small


_OUT_OF_DESCRIPTORS = """
import json, os, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (240, hard))  # idle bound 240 // 12 = 20
import pkgcache

root = sys.argv[1]
cache = pkgcache.Cache(root)

def lock_files():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").endswith(".lock")
        except OSError:
            pass
    return count

def user_files(n=10):
    files = []
    try:
        for _ in range(n):
            files.append(open(os.devnull))
        return n
    except OSError:
        return len(files)
    finally:
        for f in files:
            f.close()

report = {}
try:
    with cache.exclusive(*(f"r{i}" for i in range(10_000)), timeout=30):
        report["call"] = "granted"
except pkgcache.CacheError as exc:
    report["call"] = ["CacheError", type(exc).__name__, str(exc)]
except BaseException as exc:
    report["call"] = ["raw", type(exc).__name__, str(exc)]
pid = str(os.getpid())
report["kernel locks"] = [l for l in open("/proc/locks") if pid in l.split()[3:6]]
report["in use"] = len(cache.locks_in_use())
report["lock files after the failure"] = lock_files()
report["user files"] = user_files()
with cache.reading(*(f"s{i}" for i in range(60)), timeout=30):
    pass
report["lock files after a call on 60"] = lock_files()
with cache.exclusive("r1", "r9999", timeout=0):
    report["recovered"] = True
print(json.dumps(report))
"""


@linux_only
@pytest.mark.timeout(120)
def test_a_call_that_runs_out_of_descriptors_fails_clearly_and_keeps_few_open(
    tmp_path,
):
    """h1 part 3, h2: ``exclusive()`` of 10,000 names under a low descriptor
    limit raises a CacheError, holds nothing, and leaves at most the idle
    bound of locks open, as does a call on more names than the bound."""
    report = json.loads(_run_script(_OUT_OF_DESCRIPTORS, tmp_path / "cache"))
    print(report)
    assert report["call"][0] == "CacheError", report
    assert "too many open files" in report["call"][2]
    assert report["kernel locks"] == [], report
    assert report["in use"] == 0, report
    bound = 240 // 12  # see pkgcache._processlock._idle_lock_bound
    assert report["lock files after the failure"] <= bound, report
    assert report["user files"] == 10, report
    assert report["lock files after a call on 60"] <= bound, report
    assert report["recovered"] is True


def _run_script(script: str, root) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- i1: a stale intent byte and try-locks ---------------------------------------------


@linux_only
@pytest.mark.timeout(90)
def test_try_locks_on_a_free_lock_pass_a_killed_writers_intent_byte(tmp_path):
    """i1: a writer SIGKILLed while queued leaves its intent byte set; a
    ``timeout=0`` call on the free lock is granted (every time), and so is a
    nested call out of the lock order (a try as well)."""
    root = tmp_path / "cache"
    gate = root / "locks" / "a.gate"
    holder = LockServer(str(root))
    writer = None
    try:
        holder.hold("r", "a")
        never = SPAWN.Event()
        writer = SPAWN.Process(
            target=hold_until_killed, args=(str(root), "x", ("a",), never)
        )
        writer.start()
        deadline = time.monotonic() + WAIT
        while not (gate.exists() and gate.read_bytes()[:1] == b"\x01"):
            assert time.monotonic() < deadline, "the writer never queued"
            time.sleep(0.005)  # polling the gate file with a deadline
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(WAIT)
        holder.release()
    finally:
        holder.close()
        if writer is not None and writer.is_alive():
            writer.kill()
    assert gate.read_bytes()[:1] == b"\x01"  # stale: its writer is dead
    cache = pkgcache.Cache(root)
    # A nested call out of order first: it meets the stale byte itself.
    with cache.exclusive("b", timeout=0), cache.reading("a"):
        pass
    gate.write_bytes(b"\x01")  # stale again (as after a second killed writer)
    granted = 0
    for _ in range(20):
        with cache.reading("a", timeout=0):
            granted += 1
    assert granted == 20
    assert gate.read_bytes()[:1] == b"\x00"  # cleared by the first try


# -- k1: a forked child and its parent's transaction -----------------------------------


@needs_fork
@pytest.mark.timeout(60)
def test_forked_child_cannot_use_its_parents_open_transaction(tmp_path):
    """k1: in a child forked inside ``with cache.exclusive("a") as txn``, the
    handle is not open and every write through it raises NotLockedError,
    even after the parent left the block and another process holds "a"."""
    root = tmp_path / "cache"
    wheel = tmp_path / "a-1.0-py3-none-any.whl"
    wheel.write_bytes(b"the child wrote this")
    cache = pkgcache.Cache(root)
    results_r, results_w = os.pipe()
    go_r, go_w = os.pipe()
    with cache.exclusive("a") as txn:
        pid = fork_quietly()
        if pid == 0:
            code = 1
            try:
                os.close(results_r)
                os.read(go_r, 1)  # the parent left; another process holds "a"
                os.write(results_w, json.dumps(_use_transaction(txn, wheel)).encode())
                code = 0
            finally:
                os._exit(code)
    os.close(results_w)
    server = LockServer(str(root))
    try:
        server.hold("x", "a")
        os.write(go_w, b"g")
        results = json.loads(os.read(results_r, 65536))
    finally:
        server.close()
        os.close(results_r)
        os.close(go_w)
        os.close(go_r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert results == {
        "is_open": False,
        "add": "NotLockedError",
        "add_tree": "NotLockedError",
        "remove": "NotLockedError",
        "clear": "NotLockedError",
    }
    assert not (root / "packages" / "a").exists() or not any(
        (root / "packages" / "a").iterdir()
    )


def _use_transaction(txn, wheel) -> dict:
    results: dict = {"is_open": txn.is_open}
    calls = {
        "add": lambda: txn.add(wheel),
        "add_tree": lambda: txn.add_tree("tree").__enter__(),
        "remove": lambda: txn.remove(wheel.name),
        "clear": txn.clear,
    }
    for name, call in calls.items():
        try:
            call()
            results[name] = "ACCEPTED"
        except Exception as exc:
            results[name] = type(exc).__name__
    return results


def test_transaction_used_after_its_block_raises_not_locked(tmp_path):
    """Found with k1: the same handle after its own block had ended (no
    fork) wrote without a lock, and a package held only for reading was
    writable."""
    wheel = tmp_path / "a-1.0-py3-none-any.whl"
    wheel.write_bytes(b"written without a lock")
    b_wheel = tmp_path / "b-1.0-py3-none-any.whl"
    b_wheel.write_bytes(b"written under a shared lock")
    cache = pkgcache.Cache(tmp_path / "cache")
    with cache.exclusive("a", reading=["b"]) as txn:
        with pytest.raises(pkgcache.NotLockedError):
            txn.add(b_wheel, package="b")
        with pytest.raises(pkgcache.NotLockedError):
            txn.clear(package="b")
    assert _use_transaction(txn, wheel) == {
        "is_open": False,
        "add": "NotLockedError",
        "add_tree": "NotLockedError",
        "remove": "NotLockedError",
        "clear": "NotLockedError",
    }
    with cache.reading("a", "b") as view:
        assert view.entries("a") == []
        assert view.entries("b") == []


# -- l1: many roots --------------------------------------------------------------------


@linux_only
@pytest.mark.timeout(120)
def test_many_roots_used_and_dropped_keep_few_descriptors(tmp_path):
    """l1: 1,000 caches on different folders, each used once, dropped and its
    folder deleted, leave no descriptor behind (the 497th root once failed
    with EMFILE)."""
    base = str(tmp_path)
    counts = {}
    for i in range(1000):
        root = os.path.join(base, f"root{i}")
        cache = pkgcache.Cache(root)
        with cache.exclusive("a"):
            pass
        del cache
        shutil.rmtree(root)
        if i + 1 in (10, 100, 1000):
            gc.collect()
            # Descriptors of dropped roots close at the next lock operation.
            with pkgcache.Cache(os.path.join(base, "probe")).reading():
                counts[i + 1] = len(descriptors_under(base))
    print(counts)
    # The probe's own: its folder, locks folder, lock file, gate, gate's map.
    assert max(counts.values()) <= 5, counts
