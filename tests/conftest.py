"""Test-suite configuration and the fixtures several modules share.

``pytester`` runs the pytest plugin's tests. ``cache`` and ``src`` serve the
store tests; lock-test modules define their own ``cache`` (without a
timeout), which takes precedence there. ``pg_server`` is a PostgreSQL
server started from the ``pgserver`` wheel, once per test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgcache import Cache
from tests import pg_support

pytest_plugins = ["pytester"]

WAIT = 30.0


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    """A cache in a fresh folder, whose waits give up after ``WAIT`` seconds."""
    return Cache(tmp_path / "cache", timeout=WAIT)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """An empty folder for the files a test adds to the store."""
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg_support.Server]:
    """A PostgreSQL server of this test process (unix socket and TCP)."""
    reason = pg_support.unavailable()
    if reason is not None:
        pytest.skip(reason)
    with pg_support.Server.temporary() as server:
        yield server
