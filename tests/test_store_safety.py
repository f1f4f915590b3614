"""The store's guarantees under bad input, planted links, crashes, a full disk
and a read-only cache: a clear error, and nothing visible changes."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

import pkgcache
import pkgcache._fs
from pkgcache import Cache

from .helpers import SPAWN
from .store_helpers import add_then_block, read_only_probe, tree_then_block
from .wheels import make_wheel

WAIT = 30.0
PKG = "setuptools-scm"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the cache with a file that must never change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious").write_bytes(b"precious")
    return folder


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` (not following links) with its content."""
    result: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                result[relative] = f"-> {os.readlink(path)}"
            elif path.is_file():
                result[relative] = path.read_bytes()
            else:
                result[relative] = "dir"
    return result


def store_snapshot(cache: Cache) -> dict[str, bytes | str]:
    return snapshot(cache.root / "packages") | {
        f"tmp/{k}": v for k, v in snapshot(cache.root / "tmp").items()
    }


@pytest.fixture
def stocked(cache: Cache, src: Path) -> Cache:
    """A cache with one wheel and one tree of PKG."""
    with cache.exclusive(PKG) as txn:
        txn.add(make_wheel(src, PKG, "8.2.0"))
        with txn.add_tree("build") as staging:
            (staging / "f").write_text("f")
    return cache


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("../escape.whl", "'..' component"),
        ("a/../../b", "'..' component"),
        ("/etc/passwd", "absolute"),
        ("a\0b", "NUL"),
        ("a\\b", "backslash"),
        ("a//b", "empty path component"),
        ("a/", "empty path component"),
        ("", "empty"),
        (".pkgcache-tree", "reserved"),
        ("a/.hidden", "reserved"),
        ("a/./b", "'.' component"),
        ("x" * 201, "longer than"),
        ("/".join(["abcdefghij"] * 100), "longer than 1000"),
    ],
)
def test_bad_keys_are_refused_and_change_nothing(stocked, src, key, reason):
    before = store_snapshot(stocked)
    source = src / "file.txt"
    source.write_text("x")
    with stocked.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.InvalidKey, match=reason):
            txn.add(source, key=key)
        with pytest.raises(pkgcache.InvalidKey):
            txn.add_tree(key).__enter__()
        with pytest.raises(pkgcache.InvalidKey):
            txn.remove(key)
        with pytest.raises(pkgcache.InvalidKey):
            txn.path(PKG, key)
    assert store_snapshot(stocked) == before


def test_a_key_that_is_not_a_string(stocked, src):
    with stocked.exclusive(PKG) as txn, pytest.raises(pkgcache.InvalidKey, match="str"):
        txn.add(make_wheel(src, PKG, "1.0"), key=b"x.whl")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("packaging-24.0-py3-none-any.whl", "a wheel of 'packaging', not of"),
        ("packaging-24.0.tar.gz", "an sdist of 'packaging'"),
        ("garbage.whl", "not a wheel file name"),
        ("setuptools_scm.tar.gz", "not an sdist file name"),
    ],
)
def test_misnamed_artifacts_are_refused_and_change_nothing(stocked, src, name, message):
    before = store_snapshot(stocked)
    source = src / name
    source.write_bytes(b"data")
    with stocked.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.InvalidArtifact, match=message) as info:
            txn.add(source)
    assert isinstance(info.value, ValueError)
    assert store_snapshot(stocked) == before


def test_a_missing_source_or_a_folder_is_refused(stocked, src):
    before = store_snapshot(stocked)
    with stocked.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.SourceNotFound, match="no such file") as info:
            txn.add(src / "setuptools_scm-1.0-py3-none-any.whl")
        assert isinstance(info.value, FileNotFoundError)
        with pytest.raises(pkgcache.InvalidArtifact, match="not a regular file"):
            txn.add(src, key="folder")
    assert store_snapshot(stocked) == before


def test_a_root_that_is_a_file(tmp_path):
    root = tmp_path / "file"
    root.write_text("not a folder")
    with pytest.raises(pkgcache.UnsafePathError, match="not a directory"):
        with Cache(root).reading(PKG):
            pass
    assert root.read_text() == "not a folder"


# -- planted links -------------------------------------------------------------


def test_a_linked_folder_in_a_key_is_refused(stocked, src, outside):
    (stocked.root / "packages" / PKG / "cuda").symlink_to(outside)
    before = snapshot(outside)
    wheel = make_wheel(src, PKG, "9.0")
    with stocked.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.UnsafePathError, match="symbolic link"):
            txn.add(wheel, key=f"cuda/{wheel.name}")
        with pytest.raises(pkgcache.UnsafePathError):
            txn.path(PKG, "cuda/precious")
        with pytest.raises(pkgcache.UnsafePathError):
            txn.remove("cuda/precious")
        # Listing skips the link; it is no entry.
        assert [e.key for e in txn.entries(PKG)] == [
            "build",
            wheel.name.replace("9.0", "8.2.0"),
        ]
    assert snapshot(outside) == before


def test_an_entry_that_became_a_link_is_refused(stocked, src, outside):
    wheel = make_wheel(src, PKG, "8.2.0")
    entry_path = stocked.root / "packages" / PKG / wheel.name
    entry_path.unlink()
    entry_path.symlink_to(outside / "precious")
    tree_path = stocked.root / "packages" / PKG / "build"
    pkgcache._fs.remove_tree(str(tree_path), -100)  # AT_FDCWD
    tree_path.symlink_to(outside)
    before = snapshot(outside)
    with stocked.exclusive(PKG) as txn:
        for key in (wheel.name, "build"):
            with pytest.raises(pkgcache.UnsafePathError, match="symbolic link"):
                txn.path(PKG, key)
            with pytest.raises(pkgcache.UnsafePathError, match="symbolic link"):
                txn.remove(key)
        with pytest.raises(pkgcache.UnsafePathError, match="symbolic link"):
            txn.add(wheel)
        assert txn.entries(PKG) == []
        assert txn.find(PKG) is None
    assert snapshot(outside) == before
    # Cleaning removes the links themselves, never their targets.
    stocked.clean(PKG)
    assert not entry_path.is_symlink()
    assert snapshot(outside) == before


def test_a_linked_package_folder_is_refused_then_cleaned_as_a_link(cache, src, outside):
    (cache.root / "packages").mkdir(parents=True)
    (cache.root / "packages" / PKG).symlink_to(outside)
    before = snapshot(outside)
    with cache.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.UnsafePathError):
            txn.entries(PKG)
        with pytest.raises(pkgcache.UnsafePathError):
            txn.add(make_wheel(src, PKG, "1.0"))
    cache.prune(max_bytes=0)
    assert cache.info().entries == 0
    cache.clean(PKG)
    assert not (cache.root / "packages" / PKG).exists()
    assert snapshot(outside) == before


def test_links_inside_a_tree_are_removed_not_followed(cache, outside):
    with cache.exclusive(PKG) as txn:
        with txn.add_tree("venv") as staging:
            (staging / "lib").symlink_to(outside)
            (staging / "python").symlink_to(outside / "precious")
        assert txn.entries(PKG)[0].size == 0  # links are not followed to count
    before = snapshot(outside)
    cache.clean()
    assert snapshot(outside) == before


def test_a_linked_staging_folder_is_refused(cache, src, outside):
    cache.info()  # creates the root
    (cache.root / "tmp").symlink_to(outside)
    before = snapshot(outside)
    with cache.exclusive(PKG) as txn, pytest.raises(pkgcache.UnsafePathError):
        txn.add(make_wheel(src, PKG, "1.0"))
    assert snapshot(outside) == before


def test_a_staging_folder_swapped_for_a_link_is_not_published(cache, outside):
    def swap(txn: pkgcache.CacheTransaction) -> None:
        with txn.add_tree("t") as staging:
            os.rmdir(staging)
            staging.symlink_to(outside)

    with cache.exclusive(PKG) as txn, pytest.raises(pkgcache.UnsafePathError):
        swap(txn)
    assert cache.info().entries == 0
    assert snapshot(outside) == {"precious": b"precious"}


# -- sidecar -------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage", [b"", b"{not json", b'{"size": "big"}', b"\xff" * 5000]
)
def test_a_tree_with_a_corrupted_marker_is_damaged(cache, garbage, caplog):
    """What a power cut leaves of a tree published without syncing."""
    with cache.exclusive(PKG) as txn, txn.add_tree("t") as staging:
        (staging / "data").write_bytes(b"d" * 123)
    (cache.root / "packages" / PKG / "t" / ".pkgcache-tree").write_bytes(garbage)
    with cache.reading(PKG) as view:
        assert view.entries(PKG) == []
        with pytest.raises(pkgcache.EntryDamaged, match="unreadable tree marker"):
            view.path(PKG, "t")
    assert "skipping damaged entry setuptools-scm/t" in caplog.text
    info = cache.info()
    assert (info.entries, info.bytes, info.damaged) == (1, 123, 1)
    assert cache.prune().bytes_freed == 123  # damaged entries always go
    assert cache.info().entries == 0


# -- a full disk -------------------------------------------------------------------


def test_a_full_disk_during_a_copy_changes_nothing(stocked, src, monkeypatch):
    def full_disk(source_fd: int, target_fd: int) -> None:
        os.write(target_fd, os.read(source_fd, 10))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pkgcache._fs, "copy_contents", full_disk)
    before = store_snapshot(stocked)
    wheel = make_wheel(src, PKG, "8.2.0", files={"big.py": b"changed" * 100})
    with stocked.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.StoreWriteError, match="No space left") as info:
            txn.add(wheel)  # would replace the stored 8.2.0
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)
    assert store_snapshot(stocked) == before
    assert wheel.exists()


def test_a_full_disk_while_moving_gives_the_source_back(cache, src, monkeypatch):
    wheel = make_wheel(src, PKG, "8.2.0")
    data = wheel.read_bytes()
    real_utime = os.utime

    def failing_utime(path, *args, **kwargs):
        if isinstance(path, int):  # the staged file, by its descriptor
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_utime(path, *args, **kwargs)

    monkeypatch.setattr(os, "utime", failing_utime)
    with cache.exclusive(PKG) as txn, pytest.raises(pkgcache.StoreWriteError):
        txn.add(wheel, move=True)
    assert wheel.read_bytes() == data
    assert cache.info().entries == 0


# -- read-only caches ------------------------------------------------------------


def test_a_read_only_file_system_can_be_read_not_written(stocked, src):
    """EROFS everywhere under the root, simulated in a fresh spawn process."""
    wheel = make_wheel(src, PKG, "8.2.0")
    parent, child = SPAWN.Pipe()
    process = SPAWN.Process(
        target=read_only_probe,
        args=(
            str(stocked.root),
            PKG,
            wheel.name,
            str(make_wheel(src, PKG, "9.0")),
            child,
        ),
    )
    before = store_snapshot(stocked)
    process.start()
    try:
        assert parent.poll(WAIT * 2)
        report = parent.recv()
    finally:
        process.join(WAIT)
    assert report["keys"] == ["build", wheel.name]
    assert report["found"] == wheel.name
    assert report["bytes"] == wheel.read_bytes()
    for write in ("add", "clean", "clean-all"):
        assert report[write].startswith("CachePermissionError"), report[write]
    assert store_snapshot(stocked) == before


def test_store_folders_that_cannot_be_written(stocked, src, monkeypatch):
    """Locks can be taken, but the store's folders refuse writes."""
    before = store_snapshot(stocked)

    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "mkdir", refuse)
    monkeypatch.setattr(os, "rename", refuse)
    monkeypatch.setattr(os, "unlink", refuse)
    real_open = os.open

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        if flags & os.O_EXCL:
            refuse()
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", open_)
    with stocked.exclusive(PKG) as txn:
        with pytest.raises(pkgcache.CachePermissionError, match="read-only"):
            txn.add(make_wheel(src, PKG, "9.0"))
        with pytest.raises(pkgcache.CachePermissionError):
            txn.remove("build")
        with pytest.raises(pkgcache.CachePermissionError):
            txn.add_tree("t").__enter__()
    with pytest.raises(pkgcache.CachePermissionError):
        stocked.clean(PKG)
    monkeypatch.undo()
    assert store_snapshot(stocked) == before


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores permission bits; the EROFS tests above cover this case",
)
def test_a_cache_without_write_permission(stocked, src):
    with stocked.reading(PKG) as view:
        view.entries(PKG)  # creates nothing new below, but opens the lock
    modes = {}
    for folder, dirs, files in os.walk(stocked.root):
        for name in [*dirs, *files, ""]:
            path = Path(folder, name)
            modes[path] = path.stat().st_mode
            path.chmod(modes[path] & ~0o222)
    try:
        with stocked.reading(PKG) as view:
            assert [e.key for e in view.entries(PKG)] == [
                "build",
                make_wheel(src, PKG, "8.2.0").name,
            ]
            assert view.find(PKG) is not None
        with pytest.raises(pkgcache.CachePermissionError):
            with stocked.exclusive(PKG) as txn:
                txn.clear()
    finally:
        for path, mode in sorted(modes.items(), key=lambda item: len(str(item[0]))):
            path.chmod(mode)


# -- crashes -----------------------------------------------------------------------


def staging_names(cache: Cache) -> list[str]:
    return sorted(p.name for p in (cache.root / "tmp").iterdir())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", ["file", "tree"])
def test_a_writer_killed_mid_write_leaves_no_entry_and_no_lock(cache, src, what):
    old = src / "notes.txt"
    old.write_bytes(b"old entry")
    with cache.exclusive(PKG) as txn:
        txn.add(old)
    new = src / "new" / "notes.txt"
    new.parent.mkdir()
    new.write_bytes(b"new entry " * 1000)
    parent, child = SPAWN.Pipe()
    if what == "file":
        args = (str(cache.root), PKG, str(new), "notes.txt", child)
        process = SPAWN.Process(target=add_then_block, args=args)
    else:
        args = (str(cache.root), PKG, "notes.txt", child)
        process = SPAWN.Process(target=tree_then_block, args=args)
    process.start()
    try:
        assert parent.poll(WAIT), "the writer never reached the middle of its write"
        parent.recv()
        assert len(staging_names(cache)) == 1  # the write is under way
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.join(WAIT)
    assert process.exitcode == -signal.SIGKILL
    # The lock is free at once, and the old entry is whole.
    with cache.exclusive(PKG, timeout=0) as txn:
        (entry,) = txn.entries(PKG)
        assert entry.path.read_bytes() == b"old entry"
    # The leftover is counted (what du sees), and is the dead writer's:
    # the next prune reaps it.
    info = cache.info()
    assert info.staging_entries == 1
    assert info.staging_bytes > 0
    report = cache.prune()
    assert report.reaped == 1
    assert report.removed == ()
    assert staging_names(cache) == []
    assert (cache.info().staging_entries, cache.info().staging_bytes) == (0, 0)


@pytest.mark.timeout(60)
def test_prune_never_reaps_a_live_writers_staging_folder(cache):
    parent, child = SPAWN.Pipe()
    process = SPAWN.Process(
        target=tree_then_block, args=(str(cache.root), PKG, "t", child)
    )
    process.start()
    try:
        assert parent.poll(WAIT)
        staging = Path(parent.recv())
        report = cache.prune(max_bytes=0)
        assert report.skipped == (PKG,)
        assert report.reaped == 0
        with pytest.raises(pkgcache.LockTimeout):
            cache.clean(PKG, timeout=0)
        assert (staging / "half.txt").read_text() == "half of a tree"
        parent.send("finish")
        assert parent.poll(WAIT)
        assert parent.recv() == "done"
    finally:
        process.join(WAIT)
    with cache.reading(PKG) as view:
        assert (view.path(PKG, "t") / "half.txt").read_text() == "half of a tree"


def test_a_prune_in_the_writers_own_thread_spares_its_staging(cache):
    with cache.exclusive() as txn, txn.add_tree("t", package=PKG) as staging:
        (staging / "x").write_text("x")
        assert cache.prune().reaped == 0
        assert cache.clean().entries_removed == 0
        assert (staging / "x").exists()
    with cache.reading(PKG) as view:
        assert [e.key for e in view.entries(PKG)] == ["t"]


def test_leftovers_of_unknown_writers_are_reaped_by_clean(cache):
    cache.info()
    (cache.root / "tmp").mkdir(exist_ok=True)
    (cache.root / "tmp" / f"{PKG}.12345-0-dead").mkdir()
    (cache.root / "tmp" / f"{PKG}.12345-0-dead" / "half").write_text("x")
    (cache.root / "tmp" / "other.1-1-dead").write_text("x")
    cache.clean(PKG)
    assert staging_names(cache) == ["other.1-1-dead"]
    cache.clean()
    assert staging_names(cache) == []


def test_an_attached_cache_has_no_store(tmp_path):
    attached = Cache._attach(tmp_path / "uv", tmp_path / "locks")
    with (
        attached.reading(PKG) as view,
        pytest.raises(pkgcache.CacheError, match="another tool"),
    ):
        view.entries(PKG)
