"""The artifact store's API: add, add_tree, find, entries, path, remove, clear,
clean, prune and info."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import attrs
import pytest
from packaging.requirements import InvalidRequirement as PackagingInvalidRequirement
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.version import Version

import pkgcache
from pkgcache import Cache

from .wheels import make_wheel

WAIT = 30.0
PKG = "setuptools-scm"


def artifact(folder: Path, name: str, data: bytes | None = None) -> Path:
    """A file with that name (content does not matter to the store)."""
    path = folder / name
    path.write_bytes(name.encode() if data is None else data)
    return path


def store(cache: Cache, package: str, *paths: Path, **kwargs: object) -> list:
    with cache.exclusive(package) as txn:
        return [txn.add(path, **kwargs) for path in paths]  # type: ignore[arg-type]


def keys(cache: Cache, package: str = PKG) -> list[str]:
    with cache.reading(package) as view:
        return [entry.key for entry in view.entries(package)]


def set_last_used(entry: pkgcache.Entry, when: float) -> None:
    os.utime(entry.path, (when, entry.created), follow_symlinks=False)


# -- add, entries, path ----------------------------------------------------------


def test_add_copies_and_describes_a_wheel(cache, src):
    wheel = make_wheel(src, PKG, "8.2.0")
    (entry,) = store(cache, "Setuptools_SCM", wheel)
    assert entry.package == PKG
    assert entry.key == wheel.name
    assert entry.kind == "wheel"
    assert entry.version == Version("8.2.0")
    assert entry.build_tag == ()
    assert entry.tags == frozenset({Tag("py3", "none", "any")})
    assert entry.size == wheel.stat().st_size
    assert entry.path == cache.root / "packages" / PKG / wheel.name
    assert entry.path.read_bytes() == wheel.read_bytes()
    assert wheel.exists()  # copied, not moved
    with cache.reading(PKG) as view:
        (listed,) = view.entries(PKG)
        # Reading the file above may have moved its access time (relatime).
        assert attrs.evolve(listed, last_used=entry.last_used) == entry
        assert view.path(PKG, wheel.name) == entry.path


def test_an_entry_reads_well(cache, src):
    wheel = make_wheel(src, PKG, "8.2.0")
    (entry,) = store(cache, PKG, wheel)
    text = repr(entry)
    assert text.startswith(
        f"Entry(package='{PKG}', key='{wheel.name}', kind='wheel', version=8.2.0, "
        f"size={entry.size}, created="
    )
    assert re.search(r"created=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$", text)
    assert "0x" not in text
    assert "Tag" not in text
    assert "Path" not in text


def test_kinds_from_file_names(cache, src):
    store(
        cache,
        PKG,
        artifact(src, "setuptools_scm-8.2.0.tar.gz"),
        artifact(src, "setuptools_scm-8.2.0-1-py3-none-any.whl"),
        artifact(src, "build.log"),
    )
    with cache.reading(PKG) as view:
        kinds = {e.key: (e.kind, e.version, e.build_tag) for e in view.entries(PKG)}
    assert kinds == {
        "build.log": ("file", None, ()),
        "setuptools_scm-8.2.0-1-py3-none-any.whl": ("wheel", Version("8.2.0"), (1, "")),
        "setuptools_scm-8.2.0.tar.gz": ("sdist", Version("8.2.0"), ()),
    }


def test_keys_with_sub_folders_keep_variants_side_by_side(cache, src):
    wheel = make_wheel(src, PKG, "8.2.0")
    with cache.exclusive(PKG) as txn:
        plain = txn.add(wheel)
        cuda = txn.add(wheel, key=f"cuda/{wheel.name}")
    assert cuda.key == f"cuda/{wheel.name}"
    assert cuda.path == cache.root / "packages" / PKG / "cuda" / wheel.name
    assert keys(cache) == [f"cuda/{wheel.name}", plain.key]


def test_add_replaces_an_entry_with_the_same_key(cache, src):
    first = artifact(src, "notes.txt", b"first")
    store(cache, PKG, first)
    second = artifact(src, "notes.txt", b"second version")
    (entry,) = store(cache, PKG, second)
    assert entry.path.read_bytes() == b"second version"
    assert entry.size == len(b"second version")
    assert keys(cache) == ["notes.txt"]


def test_move_renames_the_source_into_the_store(cache, src):
    wheel = make_wheel(src, PKG, "8.2.0")
    inode = wheel.stat().st_ino
    data = wheel.read_bytes()
    (entry,) = store(cache, PKG, wheel, move=True)
    assert not wheel.exists()
    assert entry.path.stat().st_ino == inode
    assert entry.path.read_bytes() == data


def test_move_copies_a_file_with_another_hard_link(cache, src):
    wheel = make_wheel(src, PKG, "8.2.0")
    other = src / "other-link"
    os.link(wheel, other)
    (entry,) = store(cache, PKG, wheel, move=True)
    assert not wheel.exists()
    # The entry must not share its inode with a file outside the cache.
    assert entry.path.stat().st_ino != other.stat().st_ino
    assert entry.path.read_bytes() == other.read_bytes()


def test_path_records_last_use_and_missing_keys_raise(cache, src):
    (entry,) = store(cache, PKG, artifact(src, "a.txt"))
    set_last_used(entry, entry.created - 3600)
    with cache.reading(PKG) as view:
        assert view.entries(PKG)[0].last_used == pytest.approx(entry.created - 3600)
        view.path(PKG, "a.txt")
        assert view.entries(PKG)[0].last_used >= entry.created
        with pytest.raises(pkgcache.EntryNotFound, match=r"no entry 'b\.txt'"):
            view.path(PKG, "b.txt")
        with pytest.raises(pkgcache.EntryNotFound):
            view.path(PKG, "x/a.txt")


def test_an_unknown_package_has_no_entries(cache):
    with cache.reading("nothing-here") as view:
        assert view.entries("nothing-here") == []
        assert view.find("nothing-here") is None


# -- trees -------------------------------------------------------------------------


def test_add_tree_publishes_the_folder_on_a_clean_exit(cache):
    with cache.exclusive(PKG) as txn:
        with txn.add_tree("build/8.2.0") as staging:
            assert staging.is_dir()
            assert list(staging.iterdir()) == []
            assert cache.root / "tmp" in staging.parents
            (staging / "setup.py").write_text("print('hi')\n")
            (staging / "src").mkdir()
            (staging / "src" / "mod.py").write_text("x = 1\n")
        assert not staging.exists()
    with cache.reading(PKG) as view:
        (entry,) = view.entries(PKG)
        path = view.path(PKG, "build/8.2.0")
    assert entry.kind == "tree"
    assert entry.key == "build/8.2.0"
    assert entry.size == len("print('hi')\n") + len("x = 1\n")
    assert (path / "src" / "mod.py").read_text() == "x = 1\n"


def test_add_tree_discards_the_folder_on_an_exception(cache):
    seen: list[Path] = []

    def failing_build(txn: pkgcache.CacheTransaction) -> None:
        with txn.add_tree("build") as staging:
            seen.append(staging)
            (staging / "half").write_text("x")
            raise RuntimeError("build failed")

    with cache.exclusive(PKG) as txn:
        with pytest.raises(RuntimeError, match="build failed"):
            failing_build(txn)
        assert not seen[0].exists()
    assert keys(cache) == []
    assert list((cache.root / "tmp").iterdir()) == []


def test_a_tree_replaces_a_tree_and_a_file_replaces_a_tree(cache, src):
    with cache.exclusive(PKG) as txn:
        with txn.add_tree("thing") as staging:
            (staging / "old").write_text("old")
        with txn.add_tree("thing") as staging:
            (staging / "new").write_text("new")
        path = txn.path(PKG, "thing")
        assert sorted(p.name for p in path.iterdir()) == [".pkgcache-tree", "new"]
        entry = txn.add(artifact(src, "thing", b"a file now"))
    assert entry.kind == "file"
    assert entry.path.read_bytes() == b"a file now"
    assert list((cache.root / "tmp").iterdir()) == []


def test_a_key_inside_a_tree_or_over_a_folder_of_keys_is_refused(cache, src):
    with cache.exclusive(PKG) as txn:
        with txn.add_tree("build") as staging:
            (staging / "f").write_text("f")
        with pytest.raises(pkgcache.InvalidKey, match="'build' is a tree entry"):
            txn.add(artifact(src, "x.txt"), key="build/x.txt")
        txn.add(artifact(src, "y.txt"), key="cuda/y.txt")
        with pytest.raises(pkgcache.InvalidKey, match="folder of other entries"):
            txn.add(artifact(src, "cuda"))
        with pytest.raises(pkgcache.InvalidKey, match=r"'cuda/y\.txt' is a file"):
            txn.add(artifact(src, "z.txt"), key="cuda/y.txt/z.txt")
    assert keys(cache) == ["build", "cuda/y.txt"]


# -- find ----------------------------------------------------------------------------


def names(*versions: str, suffix: str = "py3-none-any.whl") -> list[str]:
    return [f"setuptools_scm-{version}-{suffix}" for version in versions]


@pytest.fixture
def versions(cache, src):
    files = [*names("7.1.0", "8.2.0", "9.0.0rc1"), "setuptools_scm-8.3.0.tar.gz"]
    store(cache, PKG, *(artifact(src, name) for name in files))
    return cache


@pytest.mark.parametrize(
    ("requirement", "kind", "expected"),
    [
        ("setuptools-scm", None, "setuptools_scm-8.3.0.tar.gz"),
        ("setuptools-scm", "wheel", "setuptools_scm-8.2.0-py3-none-any.whl"),
        ("setuptools-scm", "sdist", "setuptools_scm-8.3.0.tar.gz"),
        ("setuptools-scm<8", None, "setuptools_scm-7.1.0-py3-none-any.whl"),
        ("Setuptools_SCM==8.2.0", None, "setuptools_scm-8.2.0-py3-none-any.whl"),
        # A pre-release only when the specifier names one...
        ("setuptools-scm>=9.0.0rc1", None, "setuptools_scm-9.0.0rc1-py3-none-any.whl"),
        # ...or when no final release matches.
        ("setuptools-scm>8.3", None, "setuptools_scm-9.0.0rc1-py3-none-any.whl"),
        ("setuptools-scm>=10", None, None),
        ("setuptools-scm[toml]>=8; python_version>'3'", "wheel", names("8.2.0")[0]),
    ],
)
def test_find_picks_the_highest_allowed_version(versions, requirement, kind, expected):
    with versions.reading(PKG) as view:
        found = view.find(requirement, kind=kind)
    assert (found and found.key) == expected


def test_find_takes_a_requirement_object(versions):
    with versions.reading(PKG) as view:
        found = view.find(Requirement("setuptools-scm~=7.0"))
    assert found is not None
    assert found.version == Version("7.1.0")


def test_find_prefers_a_higher_build_tag_then_a_preferred_tag(cache, src):
    files = [
        "setuptools_scm-8.2.0-py3-none-any.whl",
        "setuptools_scm-8.2.0-2-py3-none-any.whl",
        "setuptools_scm-8.2.0-1-cp311-cp311-linux_x86_64.whl",
        "setuptools_scm-8.2.0-2-cp311-cp311-linux_x86_64.whl",
        "setuptools_scm-9.0.0-cp99-cp99-linux_x86_64.whl",  # never compatible
    ]
    store(cache, PKG, *(artifact(src, name) for name in files))
    linux = [Tag("cp311", "cp311", "linux_x86_64"), Tag("py3", "none", "any")]
    with cache.reading(PKG) as view:
        best = view.find(PKG, tags=linux)
        assert best is not None
        assert best.key == "setuptools_scm-8.2.0-2-cp311-cp311-linux_x86_64.whl"
        pure = view.find(PKG, tags=[Tag("py3", "none", "any")])
        assert pure is not None
        assert pure.key == "setuptools_scm-8.2.0-2-py3-none-any.whl"
        assert view.find(PKG, tags=[Tag("py2", "none", "any")]) is None


def test_find_by_default_uses_the_interpreter_tags(cache, src):
    store(
        cache,
        PKG,
        artifact(src, "setuptools_scm-9.0.0-cp99-cp99-linux_x86_64.whl"),
        artifact(src, "setuptools_scm-8.0.0-py3-none-any.whl"),
    )
    with cache.reading(PKG) as view:
        found = view.find(PKG)
    assert found is not None
    assert found.version == Version("8.0.0")


def test_find_prefers_a_wheel_to_an_sdist_of_the_same_version(cache, src):
    store(
        cache,
        PKG,
        *(artifact(src, n) for n in ["setuptools_scm-8.2.0.tar.gz", *names("8.2.0")]),
    )
    with cache.reading(PKG) as view:
        found = view.find(PKG)
    assert found is not None
    assert found.kind == "wheel"


def test_find_records_last_use(versions):
    with versions.reading(PKG) as view:
        (entry,) = [e for e in view.entries(PKG) if e.key == names("7.1.0")[0]]
    set_last_used(entry, entry.created - 7200)
    with versions.reading(PKG) as view:
        found = view.find("setuptools-scm<8")
    assert found is not None
    assert found.last_used >= entry.created


def test_find_refuses_bad_requirements_and_kinds(versions):
    with versions.reading(PKG) as view:
        with pytest.raises(pkgcache.InvalidRequirement) as info:
            view.find("setuptools-scm >>> 8")
        assert isinstance(info.value, PackagingInvalidRequirement)
        with pytest.raises(ValueError, match="kind must be"):
            view.find(PKG, kind="tree")
        with pytest.raises(pkgcache.NotLockedError):
            view.find("packaging")


# -- handles prove the lock ----------------------------------------------------


def test_handles_reach_only_what_they_hold(cache, src):
    with cache.reading() as whole:
        with pytest.raises(pkgcache.NotLockedError):
            whole.entries(PKG)
    with cache.reading(PKG) as view:
        pass
    with pytest.raises(pkgcache.NotLockedError, match="after its with-block"):
        view.entries(PKG)
    with cache.exclusive("a", "b") as txn:
        with pytest.raises(pkgcache.NotLockedError):
            txn.add(make_wheel(src, "c", "1.0"))
        with pytest.raises(TypeError, match="package="):
            txn.add(artifact(src, "notes.txt"))
        entry = txn.add(make_wheel(src, "b", "1.0"))  # the package from the name
        assert entry.package == "b"
        assert txn.add(artifact(src, "notes.txt"), package="a").package == "a"


def test_a_whole_cache_transaction_covers_every_package(cache, src):
    with cache.exclusive() as txn:
        txn.add(make_wheel(src, "alpha", "1.0"))
        txn.add(make_wheel(src, "beta", "2.0"))
        with txn.add_tree("env", package="gamma") as staging:
            (staging / "x").write_text("x")
        assert [e.key for e in txn.entries("gamma")] == ["env"]
        assert txn.clear() == 3
    assert cache.info().entries == 0


# -- remove, clear, clean --------------------------------------------------------


def test_remove_and_clear(cache, src):
    with cache.exclusive(PKG) as txn:
        txn.add(artifact(src, "a.txt"), key="deep/er/a.txt")
        txn.add(artifact(src, "b.txt"))
        with txn.add_tree("tree") as staging:
            (staging / "t").write_text("t")
        assert txn.remove("deep/er/a.txt") is True
        assert txn.remove("deep/er/a.txt") is False  # already gone
        assert txn.remove("never/was") is False
        assert not (cache.root / "packages" / PKG / "deep").exists()  # emptied
        assert txn.remove("tree") is True
        assert txn.clear() == 1
        assert txn.clear() == 0
    assert not (cache.root / "packages" / PKG).exists()
    assert list((cache.root / "tmp").iterdir()) == []


def test_clean_packages_keeps_lock_files_and_other_packages(cache, src):
    store(
        cache, "alpha", make_wheel(src, "alpha", "1.0"), make_wheel(src, "alpha", "2.0")
    )
    (kept,) = store(cache, "beta", make_wheel(src, "beta", "1.0"))
    report = cache.clean("Alpha")
    assert report.packages == ("alpha",)
    assert report.entries_removed == 2
    assert report.bytes_freed > 0
    assert keys(cache, "alpha") == []
    assert keys(cache, "beta") == [kept.key]
    assert cache.lock_path("alpha").exists()
    assert (cache.root / ".lock").exists()


def test_clean_of_a_package_does_not_wait_for_another_package(cache, src):
    store(cache, "alpha", make_wheel(src, "alpha", "1.0"))
    held, done = threading.Event(), threading.Event()

    def hold_beta() -> None:
        with cache.reading("beta"):
            held.set()
            done.wait(WAIT)

    thread = threading.Thread(target=hold_beta)
    thread.start()
    try:
        assert held.wait(WAIT)
        assert cache.clean("alpha", timeout=0).entries_removed == 1
        with pytest.raises(pkgcache.LockTimeout):
            cache.clean("beta", timeout=0)
    finally:
        done.set()
        thread.join(WAIT)


def test_clean_everything(cache, src):
    store(cache, "alpha", make_wheel(src, "alpha", "1.0"))
    store(cache, "beta", make_wheel(src, "beta", "1.0"))
    report = cache.clean()
    assert report.packages == ("alpha", "beta")
    assert report.entries_removed == 2
    assert cache.info().entries == 0
    assert sorted(p.name for p in cache.root.iterdir()) == [
        ".lock",
        "CACHEDIR.TAG",
        "locks",
        "packages",
        "tmp",
    ]


# -- prune and info ----------------------------------------------------------------


@pytest.fixture
def aged(cache, src):
    """Three entries of 100 bytes, last used 3, 2 and 1 hours ago."""
    entries = store(
        cache,
        "alpha",
        artifact(src, "old", b"o" * 100),
        artifact(src, "mid", b"m" * 100),
    )
    entries += store(cache, "beta", artifact(src, "new", b"n" * 100))
    for hours, entry in zip((3, 2, 1), entries, strict=False):
        set_last_used(entry, entry.created - hours * 3600)
    return cache


def test_prune_removes_least_recently_used_first(aged):
    report = aged.prune(max_bytes=150)
    assert [(e.package, e.key) for e in report.removed] == [
        ("alpha", "old"),
        ("alpha", "mid"),
    ]
    assert report.bytes_freed == 200
    assert report.skipped == ()
    assert aged.info().bytes == 100


def test_prune_by_age(aged):
    report = aged.prune(older_than=1.5 * 3600)
    assert [e.key for e in report.removed] == ["old", "mid"]
    assert aged.prune(older_than=1.5 * 3600).removed == ()


def test_prune_keeps_what_was_used_recently(aged):
    with aged.reading("alpha") as view:
        view.path("alpha", "old")  # now the most recently used
    report = aged.prune(max_bytes=150)
    assert [e.key for e in report.removed] == ["mid", "new"]


def test_prune_skips_a_busy_package_without_waiting(aged):
    held, done = threading.Event(), threading.Event()

    def hold_alpha() -> None:
        with aged.reading("alpha"):
            held.set()
            done.wait(WAIT)

    thread = threading.Thread(target=hold_alpha)
    thread.start()
    try:
        assert held.wait(WAIT)
        report = aged.prune(max_bytes=0)
    finally:
        done.set()
        thread.join(WAIT)
    assert report.skipped == ("alpha",)
    assert [e.key for e in report.removed] == ["new"]
    assert keys(aged, "alpha") == ["mid", "old"]


def test_prune_skips_a_package_this_thread_holds(aged):
    with aged.reading("alpha"):
        report = aged.prune(max_bytes=0)
    assert report.skipped == ("alpha",)


def test_prune_refuses_bad_limits(cache):
    with pytest.raises(ValueError, match="max_bytes"):
        cache.prune(max_bytes=-1)
    with pytest.raises(ValueError, match="older_than"):
        cache.prune(older_than=float("nan"))


def test_info_counts_packages_entries_and_bytes(cache, src):
    assert cache.info().entries == 0
    store(cache, "alpha", artifact(src, "a", b"a" * 10), artifact(src, "b", b"b" * 5))
    with cache.exclusive("beta") as txn, txn.add_tree("t") as staging:
        (staging / "x").write_bytes(b"x" * 7)
    info = cache.info()
    assert info.root == cache.root
    assert (info.packages, info.entries, info.bytes) == (2, 3, 22)
    assert dict(info.per_package) == {"alpha": (2, 15), "beta": (1, 7)}
