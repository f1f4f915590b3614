"""Test-suite configuration and the fixtures several modules share.

``pytester`` runs the pytest plugin's tests. ``cache`` and ``src`` serve the
store tests; lock-test modules define their own ``cache`` (without a
timeout), which takes precedence there. ``pg_server`` is a PostgreSQL
server started from the ``pgserver`` wheel, once per test process; ``locks``
runs a test once per lock engine (flock, and PostgreSQL on that server).
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


@pytest.fixture(scope="session", params=["flock", "postgres"])
def locks(request: pytest.FixtureRequest) -> str | None:
    """The ``locks=`` of a Cache: ``None`` (flock), or the PostgreSQL server's URL.

    The server starts only when a test needs it (once per test process).
    """
    if request.param == "flock":
        return None
    server: pg_support.Server = request.getfixturevalue("pg_server")
    return server.unix_url
