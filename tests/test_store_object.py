"""The store as an object of its own: its listing cache, and its place in the layers."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

import pkgcache
import pkgcache._store
from pkgcache import Cache

from .wheels import make_wheel

PKG = "demo"
SOURCE = Path(pkgcache.__file__).parent


@pytest.fixture
def settled(monkeypatch):
    """Let a listing be kept even right after its folder changed."""
    monkeypatch.setattr(pkgcache._store, "SETTLED_NS", -(10**12))


@pytest.fixture
def listings(monkeypatch) -> list[int]:
    """Count folder listings (``scandir`` calls)."""
    calls: list[int] = []
    real = os.scandir

    def scandir(path):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return calls


def add(cache: Cache, src: Path, version: str, key: str | None = None) -> None:
    with cache.exclusive(PKG) as txn:
        wheel = make_wheel(src, PKG, version)
        txn.add(wheel, key=None if key is None else f"{key}/{wheel.name}")


def found(cache: Cache, requirement: str = PKG) -> str | None:
    with cache.reading(PKG) as view:
        entry = view.find(requirement)
    return None if entry is None else entry.key


@pytest.mark.usefixtures("settled")
def test_a_repeated_find_lists_nothing(cache, src, listings):
    add(cache, src, "1.0")
    assert found(cache) == "demo-1.0-py3-none-any.whl"
    listings.clear()
    assert found(cache, "demo<1") is None  # a new question, the same listing
    assert found(cache, "demo<1") is None
    assert listings == []


@pytest.mark.usefixtures("settled")
def test_the_kept_listing_sees_every_change(cache, src):
    add(cache, src, "1.0", key="cuda")
    assert found(cache) == "cuda/demo-1.0-py3-none-any.whl"
    add(cache, src, "2.0", key="cuda")  # only cuda/ changes
    assert found(cache) == "cuda/demo-2.0-py3-none-any.whl"
    add(cache, src, "2.0")  # the package folder changes
    assert found(cache) == "demo-2.0-py3-none-any.whl"
    with cache.exclusive(PKG) as txn:
        txn.remove("demo-2.0-py3-none-any.whl")
    assert found(cache) == "cuda/demo-2.0-py3-none-any.whl"
    cache.clean(PKG)  # the folder is replaced by a new one below
    add(cache, src, "0.5", key="cuda")
    assert found(cache) == "cuda/demo-0.5-py3-none-any.whl"


def test_a_folder_changed_moments_ago_is_listed_again(cache, src, listings):
    """Two changes within one timestamp tick would leave a kept listing stale."""
    add(cache, src, "1.0")
    found(cache)
    listings.clear()
    found(cache)
    assert listings != []


def test_the_store_is_reached_through_the_locked_root(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cache = Cache(tmp_path / "link")
    with cache.reading(PKG):
        store = cache._store()
    assert store.root == str(tmp_path / "real")
    assert store.durable is True
    assert store is cache._store()  # one per cache object


def test_the_store_finds_nothing_where_nothing_was_stored(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    try:
        store = pkgcache._store.Store(str(root), fd, durable=False)
        assert store.entries(pkgcache.canonical_name(PKG)) == []
        assert store.find(pkgcache.canonical_name(PKG), SpecifierSet()) is None
        assert store.package_names() == []
        assert store.staging_usage() == (0, 0)
    finally:
        os.close(fd)
    assert os.listdir(root) == []  # reading created nothing


# -- the layers --------------------------------------------------------------------

STORE_MODULES = {"_store", "_fs", "_keys", "_records", "_ranking", "_maintenance"}
LOCK_MODULES = {"_cache", "_processlock", "_oslock", "_holders", "_waits"}


def imports() -> dict[str, set[str]]:
    """Which pkgcache modules each module imports, type-only imports included."""
    graph: dict[str, set[str]] = {}
    for path in SOURCE.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module.partition(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
        graph[path.stem] = found
    return graph


def test_the_store_sits_below_the_locks_in_no_import_cycle():
    graph = imports()
    for module in STORE_MODULES:
        assert not graph[module] & LOCK_MODULES, module
        seen, todo = set(), list(graph[module])
        while todo:  # everything the module reaches, directly or not
            other = todo.pop()
            if other not in seen:
                seen.add(other)
                todo.extend(graph.get(other, ()))
        assert module not in seen, f"{module} is on an import cycle"
