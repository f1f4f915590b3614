"""Durable publish, and the check on read of what was published.

The order of the system calls is what makes a publish survive a power cut:
the data synced before the rename that publishes it, the folder after.
``tests/reliability/test_power_loss.py`` cuts the power for real (a loop
device); these tests check the order on every run, and what readers do
with an entry that lost its bytes anyway (a cache with ``durable=False``).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

import pkgcache
from pkgcache import Cache

from .wheels import make_wheel

PKG = "demo"
WAIT = 30.0


class Calls:
    """Record fsync (by inode), rename and unlink calls, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, object]] = []
        real_fsync, real_rename, real_unlink = os.fsync, os.rename, os.unlink

        def fsync(fd: int) -> None:
            self.log.append(("fsync", os.fstat(fd).st_ino))
            real_fsync(fd)

        def rename(src, dst, **kwargs) -> None:
            real_rename(src, dst, **kwargs)
            self.log.append(("rename", os.path.basename(os.fspath(dst))))

        def unlink(path, **kwargs) -> None:
            self.log.append(("unlink", os.path.basename(os.fspath(path))))
            real_unlink(path, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "unlink", unlink)

    def index(self, event: tuple[str, object]) -> int:
        return self.log.index(event)

    def synced(self) -> set[object]:
        return {what for call, what in self.log if call == "fsync"}


def inode(path: Path) -> int:
    return path.stat().st_ino


def test_add_syncs_the_data_before_publishing_and_the_folders_after(
    cache, src, monkeypatch
):
    wheel = make_wheel(src, PKG, "1.0")
    calls = Calls(monkeypatch)
    with cache.exclusive(PKG) as txn:
        entry = txn.add(wheel, key=f"cuda/{wheel.name}")
    publish = calls.index(("rename", wheel.name))
    assert calls.index(("fsync", inode(entry.path))) < publish
    after = {what for call, what in calls.log[publish:] if call == "fsync"}
    folders = [
        cache.root / "packages" / PKG / "cuda",  # the entry's name
        cache.root / "packages" / PKG,  # "cuda", created for it
        cache.root / "packages",  # the package folder, created
        cache.root,  # packages/, created
    ]
    assert {inode(folder) for folder in folders} <= after


def test_a_tree_is_synced_file_by_file_before_it_is_published(cache, monkeypatch):
    calls = Calls(monkeypatch)
    with cache.exclusive(PKG) as txn, txn.add_tree("build") as staging:
        (staging / "a.txt").write_text("a")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.txt").write_text("b")
        os.symlink("a.txt", staging / "link")  # no data of its own
    tree = cache.root / "packages" / PKG / "build"
    publish = calls.index(("rename", "build"))
    before = {what for call, what in calls.log[:publish] if call == "fsync"}
    inside = [tree, tree / ".pkgcache-tree", tree / "a.txt", tree / "sub"]
    assert {inode(path) for path in [*inside, tree / "sub" / "b.txt"]} <= before
    assert ("fsync", inode(tree.parent)) in calls.log[publish:]


def test_a_removed_tree_leaves_its_key_durably_before_its_files_go(
    cache, src, monkeypatch
):
    keep = src / "keep.txt"
    keep.write_text("keeps the package folder")
    with cache.exclusive(PKG) as txn:
        with txn.add_tree("build") as staging:
            (staging / "a.txt").write_text("a")
        txn.add(keep)
    calls = Calls(monkeypatch)
    folder = inode(cache.root / "packages" / PKG)
    with cache.exclusive(PKG) as txn:
        assert txn.remove("build")
    aside = next(i for i, (call, _) in enumerate(calls.log) if call == "rename")
    synced = calls.index(("fsync", folder))
    first_unlink = calls.index(("unlink", "a.txt"))
    assert aside < synced < first_unlink


def test_a_cache_that_is_not_durable_never_syncs(tmp_path, src, monkeypatch):
    cache = Cache(tmp_path / "cache", durable=False)
    assert cache.durable is False
    assert "durable=False" in repr(cache)
    calls = Calls(monkeypatch)
    with cache.exclusive(PKG) as txn:
        txn.add(make_wheel(src, PKG, "1.0"))
        with txn.add_tree("build") as staging:
            (staging / "a.txt").write_text("a")
        with txn.add_tree("build") as staging:  # replacing
            (staging / "b.txt").write_text("b")
        txn.remove("build")
    cache.clean(PKG)
    assert calls.synced() == set()
    assert ("rename", "build") in calls.log  # it did publish


# -- the check on read ---------------------------------------------------------


@pytest.fixture
def two_versions(cache, src):
    """demo 1.0 and 2.0; 2.0 then loses its bytes, as after a power cut."""
    with cache.exclusive(PKG) as txn:
        old = txn.add(make_wheel(src, PKG, "1.0"))
        new = txn.add(make_wheel(src, PKG, "2.0"))
    os.truncate(new.path, 0)
    return old, new


def test_find_skips_an_entry_that_lost_its_bytes(cache, two_versions, caplog):
    old, new = two_versions
    with caplog.at_level(logging.WARNING, logger="pkgcache"):
        with cache.reading(PKG) as view:
            found = view.find(PKG)
            assert found is not None
            assert found.key == old.key
            assert [e.key for e in view.entries(PKG)] == [old.key]
            with pytest.raises(pkgcache.EntryDamaged, match="0 bytes") as info:
                view.path(PKG, new.key)
    assert isinstance(info.value, pkgcache.EntryNotFound)
    assert info.value.reason == f"0 bytes, {new.size} when published"
    assert f"skipping damaged entry {PKG}/{new.key}" in caplog.text


def test_damaged_entries_are_counted_and_pruned_first(cache, two_versions):
    _, new = two_versions
    info = cache.info()
    assert (info.entries, info.damaged) == (2, 1)
    report = cache.prune()  # no limit: only the damaged entry goes
    assert [entry.key for entry in report.removed] == [new.key]
    assert cache.info().damaged == 0
    assert cache.info().entries == 1


def test_a_damaged_entry_is_replaced_and_removed_like_any_other(
    cache, two_versions, src
):
    _, new = two_versions
    with cache.exclusive(PKG) as txn:
        assert txn.remove(new.key)
        again = txn.add(make_wheel(src, PKG, "2.0"))
    with cache.reading(PKG) as view:
        assert view.entry(PKG, new.key) == again


def test_a_grown_file_is_damaged_too(cache, src):
    with cache.exclusive(PKG) as txn:
        entry = txn.add(make_wheel(src, PKG, "1.0"))
    with open(entry.path, "ab") as appended:
        appended.write(b"junk")
    with cache.reading(PKG) as view:
        assert view.find(PKG) is None
        assert view.entries(PKG) == []


def test_an_unreadable_record_makes_the_entry_damaged(cache, src):
    with cache.exclusive(PKG) as txn:
        entry = txn.add(make_wheel(src, PKG, "1.0"))
    os.setxattr(entry.path, "user.pkgcache", b"\xff not json")
    with cache.reading(PKG) as view:
        with pytest.raises(pkgcache.EntryDamaged, match="record is unreadable"):
            view.path(PKG, entry.key)


def test_a_file_without_a_record_is_trusted(cache, src, monkeypatch):
    """A file system without extended attributes, or an entry of pkgcache 0.1."""

    def unsupported(*args, **kwargs):
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))

    monkeypatch.setattr(os, "setxattr", unsupported)
    with cache.exclusive(PKG) as txn:
        entry = txn.add(make_wheel(src, PKG, "1.0"))
    monkeypatch.undo()
    with pytest.raises(OSError, match="No data available"):
        os.getxattr(entry.path, "user.pkgcache")
    with cache.reading(PKG) as view:
        assert view.find(PKG) == entry


def test_the_record_holds_the_size(cache, src):
    with cache.exclusive(PKG) as txn:
        entry = txn.add(make_wheel(src, PKG, "1.0"))
    record = os.getxattr(entry.path, "user.pkgcache")
    assert record == b'{"format": 1, "size": %d}' % entry.size


# -- the checks the lock layer asks for ------------------------------------------


class LockLost(pkgcache.CacheError):
    pass


def test_every_publishing_and_removing_rename_checks_the_lock_first(
    cache, src, monkeypatch
):
    with cache.exclusive(PKG) as txn:
        with txn.add_tree("build") as staging:
            (staging / "old").write_text("old")
        txn.add(make_wheel(src, PKG, "1.0"))
    before = sorted(p.name for p in (cache.root / "packages" / PKG).iterdir())
    calls = []

    def lost(self) -> None:
        calls.append(self)
        raise LockLost("the hold was lost")

    monkeypatch.setattr(pkgcache.CacheTransaction, "_verify", lost)
    with cache.exclusive(PKG) as txn:
        with pytest.raises(LockLost):
            txn.add(make_wheel(src, PKG, "2.0"))
        with pytest.raises(LockLost), txn.add_tree("build") as staging:
            (staging / "new").write_text("new")
        with pytest.raises(LockLost):
            txn.remove("build")
        with pytest.raises(LockLost):
            txn.clear()
    with pytest.raises(LockLost):
        cache.clean(PKG)
    with pytest.raises(LockLost):
        cache.prune(older_than=0)
    assert len(calls) == 6
    monkeypatch.undo()
    assert sorted(p.name for p in (cache.root / "packages" / PKG).iterdir()) == before
    assert (cache.root / "packages" / PKG / "build" / "old").exists()
    assert os.listdir(cache.root / "tmp") == []


def test_writes_ask_the_transaction_whether_the_package_is_writable(
    cache, src, monkeypatch
):
    def read_only_hold(self, package: str):
        raise pkgcache.NotLockedError(f"{package} is held shared")

    monkeypatch.setattr(pkgcache.CacheTransaction, "_writable", read_only_hold)
    wheel = make_wheel(src, PKG, "1.0")
    with cache.exclusive(PKG) as txn:
        assert txn.entries(PKG) == []  # reading is fine
        for write in (
            lambda: txn.add(wheel),
            lambda: txn.add_tree("t"),
            lambda: txn.remove("t"),
            txn.clear,
        ):
            with pytest.raises(pkgcache.NotLockedError, match="held shared"):
                write()
