"""The lock files and descriptors themselves: bounded, never lost, never changed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

import pkgcache
from pkgcache import _oslock, _process
from tests.helpers import SPAWN, WAIT, hold_until_killed

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc"
)


@pytest.fixture
def cache(tmp_path):
    return pkgcache.Cache(tmp_path / "cache")


def _lock_descriptors(cache):
    """Descriptors of this process open on files of this cache's locks."""
    prefix = str(cache.root)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix) and target.endswith((".lock", ".gate")):
            count += 1
    return count


# Run with a low descriptor limit, set before pkgcache is imported (the idle
# bound is a twelfth of it: 10 idle locks for 120 descriptors).
_BOUNDED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (120, 120))
import pkgcache

root = sys.argv[1]
cache = pkgcache.Cache(root)

def lock_descriptors():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(root) and target.endswith((".lock", ".gate"))
    return count

def held_in_kernel(package):
    ino = os.stat(f"{root}/locks/{package}.lock").st_ino
    mine = f" {os.getpid()} "
    return any(mine in line and line.split()[5].endswith(f":{ino}")
               for line in open("/proc/locks"))

peak = 0
with cache.exclusive("0-held"):
    for round_ in range(2):  # the second round reopens closed locks
        for i in range(40):
            with cache.exclusive(f"p{i}"):
                pass
            peak = max(peak, lock_descriptors())
    # Closing idle locks never closed the held one (that would drop its flock).
    assert held_in_kernel("0-held")
many = cache.reading(*(f"q{i}" for i in range(20)))
with many:
    pass
print(peak, lock_descriptors())
"""


@linux_only
@pytest.mark.timeout(60)
def test_idle_descriptors_are_bounded_and_held_locks_stay_open(tmp_path):
    """Regression: the bound was enforced only when a lock was opened, so a
    call on 600 names left 1,811 descriptors open after it returned."""
    root = str(tmp_path / "cache")
    done = subprocess.run(
        [sys.executable, "-c", _BOUNDED, root],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    peak, after = map(int, done.stdout.split())
    bound = 10  # 120 // 12
    # Held locks (root, 0-held, one package) plus the idle ones, three
    # descriptors each (lock file, gate, the gate's map).
    assert peak <= 3 * (bound + 3)
    assert after <= 3 * (bound + 1)


def _snapshot(root):
    files = [root / ".lock", *sorted((root / "locks").iterdir())]
    return {p.name: (p.stat().st_ino, p.read_bytes()) for p in files}


@pytest.mark.timeout(60)
def test_lock_files_survive_kill_9_and_fork(cache):
    with cache.exclusive("a"), cache.reading("b"):
        pass
    before = _snapshot(cache.root)
    held = SPAWN.Event()
    proc = SPAWN.Process(
        target=hold_until_killed, args=(str(cache.root), "x", ("a", "b"), held)
    )
    proc.start()
    try:
        assert held.wait(WAIT)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(WAIT)
    finally:
        if proc.is_alive():
            proc.kill()
    if hasattr(os, "fork"):
        with cache.exclusive("a"):
            pid = os.fork()
            if pid == 0:  # the child leaves the block and exits
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    with cache.exclusive(), cache.exclusive("a", "b"):
        pass
    assert _snapshot(cache.root) == before


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["symlink", "dangling", "directory", "fifo"])
def test_planted_root_gate_is_refused_and_untouched(tmp_path, kind):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    mtime = outside.stat().st_mtime_ns
    root = tmp_path / "cache"
    (root / "locks").mkdir(parents=True)
    gate = root / "locks" / ".root.gate"
    if kind == "symlink":
        gate.symlink_to(outside)
    elif kind == "dangling":
        gate.symlink_to(tmp_path / "created-by-attack")
    elif kind == "directory":
        gate.mkdir()
    else:
        os.mkfifo(gate)
    for request in (pkgcache.Cache(root).reading, pkgcache.Cache(root).exclusive):
        with pytest.raises(pkgcache.UnsafePathError) as info, request(timeout=1):
            pass
        assert str(gate) in str(info.value)
    assert outside.read_text() == "precious"
    assert outside.stat().st_mtime_ns == mtime
    assert not (tmp_path / "created-by-attack").exists()


def test_late_opener_of_a_new_gate_keeps_a_writer_intent(tmp_path, monkeypatch):
    """Two processes find a new gate empty; the later one must not erase the byte."""
    gate = tmp_path / "a.gate"
    gate.touch()
    first = os.open(gate, os.O_RDWR)
    second = os.open(gate, os.O_RDWR)
    try:
        intent = _oslock.map_intent_byte(first, True, str(gate))
        intent[0] = 1  # the first process's writer announces itself
        real_fstat = os.fstat
        seen_empty = []

        def fstat_as_seen_before(fd):
            st = real_fstat(fd)
            if fd == second and not seen_empty:
                seen_empty.append(True)  # the second opener looked earlier
                fields = list(st)
                fields[stat.ST_SIZE] = 0
                return os.stat_result(fields)
            return st

        monkeypatch.setattr(_oslock.os, "fstat", fstat_as_seen_before)
        late = _oslock.map_intent_byte(second, True, str(gate))
        assert seen_empty
        assert late[0] == 1
        assert gate.read_bytes() == b"\x01"
        _process.close_map(intent)
        _process.close_map(late)
    finally:
        os.close(first)
        os.close(second)
