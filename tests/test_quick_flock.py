"""Calls that cannot block keep the interpreter lock, on local file systems only.

See :mod:`pkgcache._oslock`: with other threads running, the uncontended try
and the unlock go through ``quick_flock`` (libc's flock through
``ctypes.PyDLL``) instead of ``fcntl.flock``. These tests prove the path is
taken when it should be, is not taken where it must not be (a network file
system, no other thread), fails like ``fcntl.flock`` does, and excludes
other processes exactly as before.
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading

import pytest

import pkgcache
from pkgcache import _flock, _oslock
from tests.helpers import WAIT, LockServer

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not _oslock.HAVE_QUICK_FLOCK,
    reason="no C library flock through ctypes",
)


def _mountinfo(tmp_path, fd: int, kind: str) -> str:
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 0:99 / /proc rw,nosuid shared:5 - proc proc rw\n"
        f"36 1 {device} / /mnt/cache rw,relatime shared:1 - {kind} server:/x rw\n"
    )
    return str(table)


@pytest.mark.parametrize(
    ("kind", "local"),
    [
        ("ext4", True),
        ("tmpfs", True),
        ("nfs4", False),
        ("cifs", False),
        ("fuse", False),
    ],
)
def test_local_file_systems_are_told_apart_by_device(tmp_path, kind, local):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        table = _mountinfo(tmp_path, fd, kind)
        assert _oslock.is_local_file_system(fd, table) is local
    finally:
        os.close(fd)


def test_an_unknown_device_or_unreadable_table_counts_as_not_local(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        table = tmp_path / "mountinfo"
        table.write_text("36 1 250:250 / /elsewhere rw - ext4 /dev/x rw\n")
        assert _oslock.is_local_file_system(fd, str(table)) is False
        assert _oslock.is_local_file_system(fd, str(tmp_path / "missing")) is False
    finally:
        os.close(fd)


def test_quick_flock_reports_busy_and_fails_like_flock(tmp_path):
    path = tmp_path / "f.lock"
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    other = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        exclusive = _oslock.TRY_LOCK[True]
        assert _oslock.quick_flock(other, exclusive) == -1
        assert _oslock.granted_after_all(other, exclusive) is False  # busy
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert _oslock.quick_flock(other, exclusive) == 0
        assert _oslock.quick_flock(other, _oslock.UNLOCK) == 0
    finally:
        os.close(holder)
        os.close(other)
    # A descriptor that is gone: the same OSError fcntl.flock raises.
    assert _oslock.quick_flock(other, _oslock.TRY_LOCK[False]) == -1
    with pytest.raises(OSError, match="Bad file descriptor"):
        _oslock.granted_after_all(other, _oslock.TRY_LOCK[False])


class _Counting:
    def __init__(self, real):
        self.real = real
        self.calls: list[int] = []

    def __call__(self, fd: int, operation: int) -> int:
        self.calls.append(operation)
        return self.real(fd, operation)


@pytest.fixture
def other_thread():
    """A second thread, parked on an event for the length of the test."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(WAIT,), daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(WAIT)


@pytest.mark.timeout(60)
def test_with_other_threads_the_quick_path_excludes_other_processes(
    tmp_path, monkeypatch, other_thread
):
    cache = pkgcache.Cache(tmp_path / "cache")
    with cache.reading():
        pass
    if not _on_local_file_system(tmp_path):
        pytest.skip("the temporary folder is not on a known local file system")
    counting = _Counting(_oslock.quick_flock)
    monkeypatch.setattr(_flock, "_quick_flock", counting)
    server = LockServer(str(tmp_path / "cache"))
    try:
        with cache.exclusive("a"):
            assert _oslock.TRY_LOCK[True] in counting.calls
            assert server.call("try", "r", ["a"], 0) is not True
        assert _oslock.UNLOCK in counting.calls
        assert server.call("try", "x", ["a"], 0) is True
        server.call("pid")  # its try has been released
        with cache.reading("a", timeout=0):
            assert server.call("try", "x", ["a"], 0) is not True
    finally:
        server.close()


def test_without_other_threads_or_on_a_network_file_system_flock_is_used(
    tmp_path, monkeypatch
):
    counting = _Counting(_oslock.quick_flock)
    monkeypatch.setattr(_flock, "_quick_flock", counting)
    monkeypatch.setattr(_flock, "_other_threads", lambda: 0)
    cache = pkgcache.Cache(tmp_path / "local")
    with cache.exclusive("a"):
        pass
    assert counting.calls == []

    monkeypatch.setattr(_flock, "_other_threads", lambda: 1)
    monkeypatch.setattr(_oslock, "is_local_file_system", lambda fd: False)
    remote = pkgcache.Cache(tmp_path / "remote")
    with remote.exclusive("a"):
        pass
    assert counting.calls == []


def test_a_lock_folder_is_quick_only_with_a_descriptor_on_a_local_system(
    tmp_path, monkeypatch
):
    resources = _flock._Resources()
    assert _flock.Folder(resources, str(tmp_path), None).quick is False
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        monkeypatch.setattr(_oslock, "is_local_file_system", lambda fd: True)
        assert _flock.Folder(resources, str(tmp_path), fd).quick is True
        monkeypatch.setattr(_oslock, "HAVE_QUICK_FLOCK", False)
        assert _flock.Folder(resources, str(tmp_path), fd).quick is False
    finally:
        os.close(fd)


def _on_local_file_system(path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _oslock.is_local_file_system(fd)
    finally:
        os.close(fd)
