"""Damaged and foreign files inside the cache root.

Lock and gate files with garbage in them, files that pkgcache never made in
its folders, and names it would never choose: every call either works or
raises a :class:`~pkgcache.CacheError`, real entries stay whole, and nothing
outside the root changes.
"""

from __future__ import annotations

import os

import pytest

import pkgcache
from tests.reliability.support import (
    WAIT,
    OutsideWatch,
    check_entry,
    content_for,
    source_file,
)

pytestmark = pytest.mark.reliability


@pytest.fixture
def stocked(tmp_path):
    root = tmp_path / "cache"
    src = tmp_path / "src"
    src.mkdir()
    keys = ["alpha-1.0-py3-none-any.whl", "blob-1.bin"]
    sources = [source_file(src, key, fresh=False) for key in keys]
    watch = OutsideWatch(tmp_path, root)
    cache = pkgcache.Cache(root)
    with cache.exclusive("alpha", timeout=WAIT) as txn:
        for key, source in zip(keys, sources, strict=True):
            txn.add(source, key=key)
    yield cache, root, keys
    watch.check()


def test_garbage_in_lock_and_gate_files(stocked):
    cache, root, keys = stocked
    for path in [root / ".lock", root / "locks" / "alpha.lock"]:
        path.write_bytes(b"\xff" * 4096)  # lock files are never read
    for path in [root / "locks" / "alpha.gate", root / "locks" / ".root.gate"]:
        path.write_bytes(b"\x01garbage")  # an intent byte left set
    with cache.reading("alpha", timeout=WAIT) as view:
        assert sorted(e.key for e in view.entries("alpha")) == sorted(keys)
    with cache.exclusive("alpha", timeout=WAIT), cache.reading("beta", timeout=WAIT):
        pass
    with cache.exclusive(timeout=WAIT):
        pass
    # The lock files kept their (foreign) content: never truncated.
    assert (root / ".lock").read_bytes() == b"\xff" * 4096


FOREIGN = {
    "packages/README": b"not an entry",
    "packages/Not_Canonical/x.whl": b"junk",
    "packages/alpha/.hidden": b"the store's own prefix",
    "packages/alpha/empty-folder/": None,
    "tmp/foreign-junk": b"junk",
    "locks/README.lock": b"",
    "locks/UPPER.lock": b"",
    "locks/notes.txt": b"",
}


def _plant_foreign(root):
    for rel, data in FOREIGN.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(data)


def _call(what):
    try:
        return what()
    except pkgcache.CacheError as exc:
        return exc


def test_foreign_files_in_the_store_folders(stocked):
    cache, root, keys = stocked
    _plant_foreign(root)
    with cache.reading("alpha", timeout=WAIT) as view:
        entries = view.entries("alpha")
        # Foreign names are not entries: only what the store published.
        assert sorted(entry.key for entry in entries) == sorted(keys)
        for entry in entries:
            check_entry(entry)
        assert view.find("alpha") is not None
    info = cache.info()
    assert (info.packages, info.entries) == (1, len(keys))
    for outcome in (
        _call(cache.info),
        _call(cache.holders),
        _call(lambda: cache.prune(max_bytes=10**9, timeout=WAIT)),
    ):
        assert not isinstance(outcome, BaseException) or isinstance(
            outcome, pkgcache.CacheError
        )
    holders_names = {h.package for h in cache.holders()}
    assert "README" not in holders_names
    # The real entries survived, whole.
    with cache.reading("alpha", timeout=WAIT) as view:
        for key in keys:
            assert view.path("alpha", key).read_bytes() == content_for(key)
    # clean() empties the store, foreign files included, but keeps the locks.
    _call(lambda: cache.clean(timeout=WAIT))
    assert (root / "locks" / "alpha.lock").is_file()
    assert (root / ".lock").is_file()
    with cache.exclusive("alpha", timeout=WAIT) as txn:
        txn.add(source_file(root.parent / "src", keys[0], fresh=False), key=keys[0])
        assert os.path.isfile(txn.path("alpha", keys[0]))
