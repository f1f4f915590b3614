"""A full disk at every write of every store operation (simulated).

For each operation, the k-th write-like system call (``write``, ``mkdir``,
``rename``/``replace``, ``utime``, ``fsync`` (where delayed allocation
reports a full disk), ``setxattr``, creating ``open``, the copy itself)
fails with ``ENOSPC``, for k = 1, 2, ... until the operation no longer
reaches a k-th call. After each failure: the error is a :class:`~pkgcache.CacheError`,
every visible entry is whole (and an entry being replaced is still the old
one or the new one), every lock is free at once, and a prune leaves
``tmp/`` empty.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

import pkgcache
from pkgcache import _fs
from tests.reliability.support import (
    WAIT,
    check_store,
    fill_tree,
    source_file,
)

pytestmark = pytest.mark.reliability

_WRITES = (
    "write",
    "mkdir",
    "rename",
    "replace",
    "utime",
    "link",
    "symlink",
    "fsync",
    "setxattr",
)


class _FullDisk:
    """Fail the k-th write-like call of this thread with ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self.fired = False
        self.mutex = threading.Lock()
        self.thread = threading.get_ident()
        for name in _WRITES:
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))
        real_open = os.open

        def open_(path, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                self._count()
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(_fs, "copy_contents", self._wrap(_fs.copy_contents))

    def _count(self) -> None:
        if self.fired:
            return
        # This thread, and the threads that sync a tree for it.
        here = threading.current_thread()
        if here.ident != self.thread and not here.name.startswith("pkgcache-sync"):
            return
        with self.mutex:
            self.calls += 1
            fire = self.calls == self.fail_at
            self.fired = self.fired or fire
        if fire:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _wrap(self, real):
        def call(*args, **kwargs):
            self._count()
            return real(*args, **kwargs)

        return call


def _add(txn, src: Path, key: str) -> None:
    txn.add(source_file(src, key, fresh=False), key=key)


def _add_tree(txn, _src: Path, key: str) -> None:
    with txn.add_tree(key) as staging:
        fill_tree(Path(staging), key)


OPERATIONS = {
    "add new": lambda c, s: _in_txn(c, _add, s, "alpha-2.0-py3-none-any.whl"),
    "add replacing": lambda c, s: _in_txn(c, _add, s, "alpha-1.0-py3-none-any.whl"),
    "add_tree new": lambda c, s: _in_txn(c, _add_tree, s, "build/9"),
    "add_tree replacing": lambda c, s: _in_txn(c, _add_tree, s, "build/1"),
    "remove tree": lambda c, s: _in_txn(c, lambda t, _s, k: t.remove(k), s, "build/1"),
    "clean(pkg)": lambda c, s: c.clean("alpha", timeout=WAIT),
    "clean()": lambda c, s: c.clean(timeout=WAIT),
    "prune": lambda c, s: c.prune(max_bytes=0, timeout=WAIT),
}


REPLACED = {
    "add replacing": "alpha-1.0-py3-none-any.whl",
    "add_tree replacing": "build/1",
}


def _in_caller_code(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "fill_tree":
            return True
        tb = tb.tb_next
    return False


def _in_txn(cache, action, src, key):
    with cache.exclusive("alpha", timeout=WAIT) as txn:
        action(txn, src, key)


def _stock(cache: pkgcache.Cache, src: Path) -> None:
    for key in ("alpha-1.0-py3-none-any.whl", "alpha-2.0-py3-none-any.whl"):
        source_file(src, key, fresh=False)  # before the disk fills
    with cache.exclusive("alpha", timeout=WAIT) as txn:
        _add(txn, src, "alpha-1.0-py3-none-any.whl")
        _add_tree(txn, src, "build/1")
    with cache.exclusive("beta", timeout=WAIT) as txn:
        _add(txn, src, "beta-1.0.tar.gz")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_a_full_disk_at_every_write(tmp_path, monkeypatch, operation):
    src = tmp_path / "src"
    src.mkdir()
    failures = 0
    for fail_at in range(1, 200):
        root = tmp_path / f"cache{fail_at}"
        cache = pkgcache.Cache(root)
        _stock(cache, src)
        with monkeypatch.context() as patch:
            disk = _FullDisk(patch, fail_at)
            error: BaseException | None = None
            try:
                OPERATIONS[operation](cache, src)
            except OSError as exc:
                error = exc
        if error is not None:
            failures += 1
            assert disk.fired, error
            # pkgcache's own writes fail as a CacheError; the caller's own
            # writes into an add_tree staging folder propagate unchanged
            # (and the tree is discarded).
            assert isinstance(error, pkgcache.CacheError) or _in_caller_code(error), (
                f"raw {error!r} at write {fail_at} of {operation}"
            )
        check_store(cache)
        if operation in REPLACED:  # the old entry, or the new: never none
            with cache.reading("alpha", timeout=WAIT) as view:
                assert view.path("alpha", REPLACED[operation]).exists()
        with cache.exclusive(timeout=0), cache.exclusive("alpha", "beta", timeout=0):
            pass
        cache.prune(timeout=WAIT)
        assert not (root / "tmp").exists() or os.listdir(root / "tmp") == []
        if not disk.fired:
            break
    else:  # pragma: no cover
        pytest.fail("the operation never finished")
    print(f"{operation}: full disk at each of {failures} writes")
