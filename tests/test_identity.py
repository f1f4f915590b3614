"""The cache identity: created once for every host, never replaced."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgcache import CachePermissionError, UnsafePathError
from pkgcache._identity import IDENTITY_FILE, cache_identity
from tests.helpers import SPAWN, WAIT, identity_at_barrier


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    path = tmp_path / "locks"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY)
    yield fd, path
    os.close(fd)


def test_created_once_then_read(folder):
    fd, path = folder
    identity = cache_identity(fd, str(path))
    assert len(identity) == 32
    assert cache_identity(fd, str(path)) == identity
    assert identity in (path / IDENTITY_FILE).read_text()
    assert sorted(os.listdir(path)) == [IDENTITY_FILE]  # no temporary left


def test_the_same_folder_under_another_path_has_the_same_identity(folder, tmp_path):
    fd, path = folder
    link = tmp_path / "mounted-elsewhere"
    link.symlink_to(path)
    other = os.open(link, os.O_RDONLY)
    try:
        assert cache_identity(other, str(link)) == cache_identity(fd, str(path))
    finally:
        os.close(other)


@pytest.mark.timeout(60)
def test_processes_creating_it_at_once_agree(folder):
    _, path = folder
    count = 6
    barrier, results = SPAWN.Barrier(count), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=identity_at_barrier, args=(str(path), barrier, results))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    found = {results.get(timeout=WAIT) for _ in processes}
    for process in processes:
        process.join(WAIT)
        assert process.exitcode == 0
    assert len(found) == 1
    assert sorted(os.listdir(path)) == [IDENTITY_FILE]


def test_a_link_in_its_place_is_refused_and_left_alone(folder, tmp_path):
    fd, path = folder
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    (path / IDENTITY_FILE).symlink_to(target)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        cache_identity(fd, str(path))
    assert target.read_text() == "precious"


@pytest.mark.parametrize("content", ["", "garbage\n", "pkgcache cache id v1\nxyz\n"])
def test_a_damaged_file_is_refused_not_replaced(folder, content):
    fd, path = folder
    (path / IDENTITY_FILE).write_text(content)
    with pytest.raises(UnsafePathError, match="not a cache identity"):
        cache_identity(fd, str(path))
    assert (path / IDENTITY_FILE).read_text() == content


def test_a_folder_in_its_place_is_refused(folder):
    fd, path = folder
    (path / IDENTITY_FILE).mkdir()
    with pytest.raises(UnsafePathError):
        cache_identity(fd, str(path))


@pytest.mark.skipif(
    getattr(os, "geteuid", lambda: 1)() == 0, reason="root writes read-only folders"
)
def test_a_read_only_cache_without_identity_says_so(folder):
    fd, path = folder
    path.chmod(0o555)
    try:
        with pytest.raises(CachePermissionError, match="cache identity"):
            cache_identity(fd, str(path))
    finally:
        path.chmod(0o755)
