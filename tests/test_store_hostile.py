"""Hostile or odd sources and keys: each case of issue 13, as a regression test.

A FIFO or socket as a source, an unreadable source, a tree nested deeper
than Python's recursion limit, ``move=True`` from a folder that refuses the
removal, a symbolic root re-pointed while a reader holds it, keys whose
UTF-8 form is too long, and the tie-break of ``find()``. Each must give a
clear :class:`~pkgcache.CacheError` (or work), never block, and leave the
store whole.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pkgcache
from pkgcache import Cache

from .helpers import SPAWN
from .store_helpers import frames, maintenance_in_another_process, read_only_miss
from .wheels import make_wheel

WAIT = 30.0
PKG = "demo"
WHEEL = "demo-1.0-py3-none-any.whl"


def stored(cache: Cache, package: str = PKG) -> list[str]:
    with cache.reading(package) as view:
        return [entry.key for entry in view.entries(package)]


def staging(cache: Cache) -> list[str]:
    tmp = cache.root / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def lock_is_free(cache: Cache) -> bool:
    try:
        with cache.exclusive(PKG, timeout=0):
            return True
    except pkgcache.LockTimeout:
        return False


# -- special files as sources ------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_fifo_source_is_refused_at_once(cache, src):
    fifo = src / WHEEL
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def add() -> None:
        try:
            with cache.exclusive(PKG) as txn:
                txn.add(fifo)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    adder = threading.Thread(target=add)
    adder.start()
    adder.join(5.0)
    if adder.is_alive():
        # Blocked in open() waiting for a writer: give it one, then fail.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        adder.join(WAIT)
        pytest.fail("add() of a FIFO blocked (while holding the package lock)")
    (error,) = outcome
    assert isinstance(error, pkgcache.InvalidArtifact), error
    assert "not a regular file" in str(error)
    assert stored(cache) == []
    assert staging(cache) == []
    assert lock_is_free(cache)


def test_a_socket_source_is_refused(cache, src):
    path = src / WHEEL
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with cache.exclusive(PKG) as txn:
            with pytest.raises(pkgcache.InvalidArtifact, match="not a regular file"):
                txn.add(path)
    assert stored(cache) == []


def test_an_unreadable_source_names_itself(cache, src, monkeypatch):
    source = make_wheel(src, PKG, "1.0")
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if os.fspath(path) == str(source):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with cache.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.SourcePermissionError, match=str(source)) as info:
            txn.add(source)
    monkeypatch.undo()
    assert isinstance(info.value, PermissionError)
    assert stored(cache) == []
    assert staging(cache) == []


# -- deep trees ----------------------------------------------------------------


def nest(folder: Path, depth: int) -> None:
    """``depth`` folders inside one another, made through descriptors."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"leaf")
        os.close(leaf)
    finally:
        os.close(fd)


# Deeper than the recursion limit the tests set (``shallow_stack``): a
# recursive walk fails there; trees 1,100 levels deep once did under the
# default limit. Kept small because each level costs an rmdir on disk.
DEEP = 300


@pytest.fixture
def shallow_stack():
    """Allow 100 frames more than the test has: any recursive walk overflows."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(frames() + 100)
    yield
    sys.setrecursionlimit(old)


@pytest.fixture
def deep_cleanup(tmp_path: Path):
    """Delete the test's folder without recursion, pass or fail.

    pytest removes old temporary folders with a recursive ``rmtree``, which
    a deep tree breaks for every later run on the machine.
    """
    yield
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        for name in os.listdir(fd):
            pkgcache._fs.remove_tree(name, fd)
    finally:
        os.close(fd)


def deep_tree(cache: Cache, package: str) -> None:
    with cache.exclusive(package) as txn, txn.add_tree("deep") as tree:
        nest(tree, DEEP)


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("deep_cleanup", "shallow_stack")
def test_a_tree_deeper_than_the_recursion_limit(cache):
    """Published (synced: the cache is durable), counted, pruned."""
    deep_tree(cache, PKG)
    assert stored(cache) == ["deep"]
    assert staging(cache) == []
    assert cache.info().entries == 1
    assert len(cache.prune(older_than=0).removed) == 1
    assert stored(cache) == []


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("deep_cleanup", "shallow_stack")
def test_clean_removes_deep_trees(tmp_path):
    cache = Cache(tmp_path / "cache", timeout=WAIT, durable=False)
    deep_tree(cache, PKG)
    deep_tree(cache, "other")
    assert cache.clean(PKG).entries_removed == 1
    assert cache.clean().entries_removed == 1
    assert staging(cache) == []


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("deep_cleanup", "shallow_stack")
def test_a_deep_leftover_is_reaped_by_another_process(cache):
    """A deep staging folder whose writer failed: any process reaps it."""

    def build(txn: pkgcache.CacheTransaction) -> None:
        with txn.add_tree("deep") as tree:
            nest(tree, DEEP)
            raise RecursionError("the caller's own recursion, inside the block")

    with cache.exclusive(PKG) as txn, pytest.raises(RecursionError):
        build(txn)
    assert staging(cache) == []  # deleted at once, however deep
    leftover = cache.root / "tmp" / f"{PKG}.1-0-dead"  # a dead writer's
    leftover.mkdir()
    nest(leftover, DEEP)
    report = maintenance_in_another_process(str(cache.root), frames_allowed=100)
    assert report == [
        "info: 1 staged, 4 bytes",
        "prune: reaped 1",
        "clean(pkg): ok",
        "clean(): ok",
    ]
    assert staging(cache) == []


def test_staging_cleanup_that_fails_keeps_the_callers_error(cache, monkeypatch):
    def broken_remove(name: str, dir_fd: int) -> bool:
        raise RecursionError("cleanup failed")

    monkeypatch.setattr(pkgcache._fs, "remove_tree", broken_remove)

    def build(txn: pkgcache.CacheTransaction) -> None:
        with txn.add_tree("t") as tree:
            (tree / "x").write_text("x")
            raise KeyError("the caller's error")

    with cache.exclusive(PKG) as txn, pytest.raises(KeyError, match="caller's error"):
        build(txn)
    monkeypatch.undo()
    assert len(staging(cache)) == 1
    # No longer a live writer's: the next prune reaps it.
    assert cache.prune().reaped == 1
    assert staging(cache) == []


# -- move=True: all or nothing -------------------------------------------------


def published_or_refused(cache: Cache, source: Path, data: bytes) -> str:
    """Run add(move=True); check it either stored the file or changed nothing."""
    try:
        with cache.exclusive(PKG) as txn:
            entry = txn.add(source, move=True)
    except pkgcache.CacheError:
        assert source.read_bytes() == data
        assert stored(cache) == []
        with cache.reading(PKG) as view:
            assert view.find(PKG) is None
        return "refused"
    assert entry.path.read_bytes() == data
    with cache.reading(PKG) as view:
        found = view.find(PKG)
        assert found is not None
        assert found.key == entry.key
    return "stored"


def test_move_when_the_source_cannot_be_removed(cache, src, monkeypatch):
    """Another file system (EXDEV), and the source's folder refuses the unlink."""
    source = make_wheel(src, PKG, "1.0")
    data = source.read_bytes()
    real_rename, real_unlink = os.rename, os.unlink

    def rename(a, b, **kwargs):
        if os.fspath(a) == str(source):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        return real_rename(a, b, **kwargs)

    def unlink(path, **kwargs):
        if os.fspath(path) == str(source):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    published_or_refused(cache, source, data)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="needs root on Linux (mount --bind, remount read-only)",
)
def test_move_from_a_read_only_mount(cache, src):
    source = make_wheel(src, PKG, "1.0")
    data = source.read_bytes()
    subprocess.run(["mount", "--bind", src, src], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", src], check=True)
        assert published_or_refused(cache, source, data) == "refused"
    finally:
        subprocess.run(["umount", src], check=True)


# -- paths come from the folder actually locked ------------------------------------


def test_entry_paths_come_from_the_locked_root(tmp_path, src):
    for name in ("A", "B"):
        data = f"bytes of cache {name}".encode()
        (src / WHEEL).write_bytes(data)
        with Cache(tmp_path / name).exclusive(PKG) as txn:
            txn.add(src / WHEEL)
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "A")
    cache = Cache(link)
    with cache.reading(PKG) as view:
        entry = view.find(PKG)
        assert entry is not None
        assert entry.path.read_bytes() == b"bytes of cache A"
        (tmp_path / "next").symlink_to(tmp_path / "B")
        os.replace(tmp_path / "next", link)  # a blue/green switch
        assert entry.path.read_bytes() == b"bytes of cache A"
        assert view.path(PKG, WHEEL).read_bytes() == b"bytes of cache A"
        assert view.entry(PKG, WHEEL).path.read_bytes() == b"bytes of cache A"


# -- key lengths are counted in bytes ----------------------------------------------


@pytest.mark.parametrize(
    "key", ["é" * 200, "\N{GRINNING FACE}" * 100, "a/" + "é" * 101]
)
def test_key_length_is_counted_in_utf8_bytes(cache, src, key):
    source = src / "x.txt"
    source.write_text("x")
    with cache.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.InvalidKey, match="longer than 200 bytes"):
            txn.add(source, key=key)
        with pytest.raises(pkgcache.InvalidKey, match="longer than 200 bytes"):
            txn.add_tree(key)
        with pytest.raises(pkgcache.InvalidKey, match="longer than 200 bytes"):
            txn.remove(key)
        with pytest.raises(pkgcache.InvalidKey, match="longer than 200 bytes"):
            txn.path(PKG, key)
        with pytest.raises(pkgcache.InvalidKey, match="longer than 200 bytes"):
            txn.entry(PKG, key)
    assert staging(cache) == []


def test_a_key_at_the_byte_limit_is_stored(cache, src):
    source = src / "x.txt"
    source.write_text("x")
    key = "é" * 100  # 200 bytes
    with cache.exclusive(PKG) as txn:
        assert txn.add(source, key=key).key == key
    assert stored(cache) == [key]


def test_a_key_longer_than_1000_bytes_in_all(cache, src):
    source = src / "x.txt"
    source.write_text("x")
    key = "/".join(["é" * 50] * 11)  # 549 characters, 1,110 bytes
    with cache.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.InvalidKey, match="longer than 1000 bytes"):
            txn.add(source, key=key)


def test_a_key_that_cannot_be_a_file_name(cache, src):
    source = src / "x.txt"
    source.write_text("x")
    with cache.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.InvalidKey, match="file name"):
            txn.add(source, key="a\ud800b")  # a lone surrogate


# -- find(): one tie-break -----------------------------------------------------------


def test_find_prefers_the_shortest_key_then_sorted_order(cache, src):
    source = make_wheel(src, PKG, "1.0")
    with cache.exclusive(PKG) as txn:
        for key in (f"zz/{WHEEL}", f"cuda/{WHEEL}", f"ab/{WHEEL}", WHEEL):
            txn.add(source, key=key)
    with cache.reading(PKG) as view:
        found = view.find(PKG)
        assert found is not None
        assert found.key == WHEEL
    with cache.exclusive(PKG) as txn:
        txn.remove(WHEEL)
    with cache.reading(PKG) as view:
        found = view.find(PKG)
        assert found is not None
        assert found.key == f"ab/{WHEEL}"  # as short as zz/, first in order
    doc = " ".join(pkgcache.CacheView.find.__doc__.split())
    assert "the shortest key, then the first key in sorted order" in doc


# -- a store on a read-only cache still reports misses --------------------------


def test_a_package_never_stored_is_a_miss_on_a_read_only_cache(cache, src):
    with cache.exclusive("other") as txn:
        txn.add(make_wheel(src, "other", "1.0"))
    with cache.reading(PKG):  # the lock file exists from here on
        pass
    parent, child = SPAWN.Pipe()
    process = SPAWN.Process(target=read_only_miss, args=(str(cache.root), PKG, child))
    process.start()
    try:
        assert parent.poll(WAIT * 2)
        report = parent.recv()
    finally:
        process.join(WAIT)
    assert report == {"entries": [], "find": None, "path": "EntryNotFound"}
