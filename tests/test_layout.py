"""Which folders ``Cache`` takes as a root: the rule the CLI applies too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pkgcache
import pkgcache.uv
from pkgcache import _layout


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_an_ordinary_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "project").mkdir()
    with pytest.raises(pkgcache.NotACacheError) as refused:
        pkgcache.Cache(tmp_path)
    assert isinstance(refused.value, ValueError)
    assert refused.value.path == tmp_path
    assert str(refused.value) == (
        f"{tmp_path} is not a pkgcache cache: it holds other files (notes.txt, "
        "project); refusing to add cache files to it (its CACHEDIR.TAG would make "
        "backup tools skip it). Use a new or empty folder, or pass adopt=True to "
        "Cache"
    )
    assert listing(tmp_path) == ["notes.txt", "project"]


def test_adopt_takes_an_ordinary_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    cache = pkgcache.Cache(tmp_path, adopt=True)
    with cache.exclusive("a"):
        pass
    assert {"notes.txt", "locks", ".lock", "CACHEDIR.TAG"} <= set(listing(tmp_path))
    # From now on it is a pkgcache cache: no opt-in needed.
    with pkgcache.Cache(tmp_path).reading("a"):
        pass


@pytest.mark.parametrize(
    ("layout", "shown"),
    [
        ({"wheels-v5/": None, ".lock": ""}, "wheels-v5"),
        (
            {".gitignore": "*", "CACHEDIR.TAG": "Signature: x", ".lock": ""},
            ".gitignore",
        ),
        ({".lock": ""}, ".lock"),  # what 'uv cache clean' leaves
        ({"locks/": None, "sdists-v11/": None}, "sdists-v11"),  # locks put in by 0.1
    ],
)
def test_a_uv_cache_is_refused_with_the_uvcache_hint(
    tmp_path: Path, layout: dict[str, str | None], shown: str
) -> None:
    uv = tmp_path / "uv"
    uv.mkdir()
    for name, text in layout.items():
        if text is None:
            (uv / name).mkdir()
        else:
            (uv / name).write_text(text)
    before = listing(uv)
    with pytest.raises(pkgcache.NotACacheError) as refused:
        pkgcache.Cache(uv)
    assert str(refused.value) == (
        f"{uv} is not a pkgcache cache: it looks like a uv cache ({shown}), and "
        "'uv cache prune' would delete pkgcache's locks/ folder in it; lock it "
        "with pkgcache.uv.UvCache (on the command line: pkgcache --uv)"
    )
    assert listing(uv) == before
    # The way it suggests works, and adds nothing inside the uv cache.
    with pkgcache.uv.UvCache(uv).exclusive("a"):
        pass
    assert set(listing(uv)) == {*before, ".lock"}


def test_missing_empty_and_existing_caches_are_taken(tmp_path: Path) -> None:
    for root in (tmp_path / "missing", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        with pkgcache.Cache(root).exclusive("a") as txn:
            (tmp_path / "a-1.0.tar.gz").write_bytes(b"sdist")
            txn.add(tmp_path / "a-1.0.tar.gz")
        # Now a cache with entries: taken as it is.
        with pkgcache.Cache(root).reading("a") as view:
            assert [e.key for e in view.entries("a")] == ["a-1.0.tar.gz"]


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = pkgcache.Cache("~/builds/cache")
    assert cache.root == tmp_path / "builds" / "cache"
    with cache.reading():
        pass
    assert (tmp_path / "builds" / "cache" / "locks").is_dir()
    assert not Path("~").exists()  # nothing named "~" in the working folder


def test_a_file_is_refused_at_first_use(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    cache = pkgcache.Cache(tmp_path / "file")
    with pytest.raises(pkgcache.UnsafePathError, match="not a directory"):
        cache.reading().__enter__()
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.timeout(30)
def test_a_planted_tag_is_never_followed_nor_waited_on(tmp_path: Path) -> None:
    # A link named CACHEDIR.TAG to a pkgcache tag elsewhere does not make the
    # folder a cache; a FIFO in its place does not hang the check.
    real = tmp_path / "real"
    with pkgcache.Cache(real).reading():
        pass
    for planted in ("link", "fifo"):
        folder = tmp_path / planted
        folder.mkdir()
        tag = folder / "CACHEDIR.TAG"
        if planted == "link":
            tag.symlink_to(real / "CACHEDIR.TAG")
        else:
            os.mkfifo(tag)
        assert _layout.folder_kind(folder) == (
            _layout.FolderKind.OTHER,
            ["CACHEDIR.TAG"],
        )
        with pytest.raises(pkgcache.NotACacheError):
            pkgcache.Cache(folder)
