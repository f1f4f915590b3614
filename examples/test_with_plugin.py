"""Testing code that uses pkgcache, with the fixtures of its pytest plugin.

Run it with ``python -m pytest examples/test_with_plugin.py``. The plugin is
installed with pkgcache (nothing to configure): ``pkgcache`` is a fresh
cache in the test's temporary folder, ``pkgcache_factory`` makes more, and a
test that leaves a lock held fails at teardown.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pkgcache import Cache, LockTimeout
from pkgcache.pytest_plugin import CacheFactory


def publish(cache: Cache, package: str, version: str, work: Path) -> None:
    """The code under test: store an sdist of ``package`` under its lock."""
    sdist = work / f"{package.replace('-', '_')}-{version}.tar.gz"
    sdist.write_bytes(version.encode())
    with cache.exclusive(package) as txn:
        txn.add(sdist, move=True)


def test_publish_from_many_threads(pkgcache: Cache, tmp_path: Path) -> None:
    jobs = [(f"pkg-{i % 3}", f"1.{i}") for i in range(12)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: publish(pkgcache, *job, tmp_path), jobs))
    with pkgcache.reading("pkg-0", "pkg-1", "pkg-2") as view:
        assert [len(view.entries(f"pkg-{i}")) for i in range(3)] == [4, 4, 4]
        newest = view.find("pkg-1")
        assert newest is not None
        assert str(newest.version) == "1.10"
    assert pkgcache.info().entries == 12


def test_a_writer_excludes_readers(pkgcache: Cache) -> None:
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with pkgcache.exclusive("setuptools-scm"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(30)
        with (
            pytest.raises(LockTimeout) as excinfo,
            pkgcache.reading("Setuptools_SCM", timeout=0),
        ):
            pass
        assert excinfo.value.package == "setuptools-scm"
        with pkgcache.reading("packaging", timeout=0):
            pass  # other packages are not blocked
    finally:
        release.set()
        thread.join(30)


def test_separate_caches_share_nothing(pkgcache_factory: CacheFactory) -> None:
    build_cache = pkgcache_factory("build")
    download_cache = pkgcache_factory("downloads", timeout=5)
    with build_cache.exclusive(), download_cache.exclusive(timeout=0):
        assert build_cache.root != download_cache.root
