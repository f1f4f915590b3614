"""``Cache(root, locks="postgresql://...")``: the cache's locks on a real server.

The lock table itself runs on both engines in ``test_lock_table.py`` (the
``locks`` fixture); here: the wiring, lost locks at the level of the cache
and its store, and several processes acting as hosts of a farm on one store.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgcache import Cache, InvalidLockServer, LockLost, LockTimeout
from pkgcache._postgres import host_name, lock_key
from tests.helpers import SPAWN, LockServer
from tests.pg_support import (
    HOST_PACKAGES,
    WAIT,
    Board,
    HostSettings,
    Server,
    host_worker,
)


def identity_of(root: Path) -> str:
    """The cache identity every host reads from the shared folder."""
    return (root / "locks" / "cache-id").read_text().splitlines()[1]


def backends_holding(pg_server: Server, root: Path, package: str | None) -> list[int]:
    unsigned = lock_key(identity_of(root), package) & 0xFFFF_FFFF_FFFF_FFFF
    rows = pg_server.sql(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        f" AND classid = {unsigned >> 32} AND objid = {unsigned & 0xFFFF_FFFF}"
    )
    return [int(row[0]) for row in rows]


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


# -- wiring ------------------------------------------------------------------------


def test_import_and_flock_caches_never_load_the_driver(tmp_path):
    code = (
        "import sys, pkgcache\n"
        f"c = pkgcache.Cache({str(tmp_path / 'c')!r})\n"
        "with c.exclusive('a'): pass\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=WAIT)


def test_a_missing_driver_says_what_to_install(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # not installed\n"
        "import pkgcache\n"
        "try:\n"
        f"    pkgcache.Cache({str(tmp_path / 'c')!r}, locks='postgresql://h/db')\n"
        "except pkgcache.InvalidLockServer as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        timeout=WAIT,
        capture_output=True,
        text=True,
    )
    assert "pip install 'pkgcache[postgres]'" in done.stdout
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "url", ["mysql://h/db", "postgresql://h/db?no_such_option=1", "/var/run/db", 5432]
)
def test_a_bad_url_is_refused_before_anything_is_made(tmp_path, url):
    with pytest.raises(InvalidLockServer) as info:
        Cache(tmp_path / "c", locks=url)
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "c").exists()


def test_a_password_stays_out_of_messages(tmp_path):
    cache = Cache(tmp_path / "c", locks="postgresql://u:s3cret@h/db")
    assert "s3cret" not in repr(cache)
    with pytest.raises(InvalidLockServer) as info:
        Cache(tmp_path / "c", locks="postgresql://u:s3cret@h/db?bad=1")
    assert "s3cret" not in str(info.value)


def test_locks_live_on_the_server_not_in_lock_files(pg_server, tmp_path):
    root = tmp_path / "c"
    cache = Cache(root, locks=pg_server.unix_url)
    with cache.exclusive("a"):
        assert len(backends_holding(pg_server, root, "a")) == 1
        assert len(backends_holding(pg_server, root, None)) == 1
        # flock sees nothing: another process's flock cache is not excluded.
        assert not (root / "locks" / "a.lock").exists()
    assert backends_holding(pg_server, root, "a") == []


def test_one_folder_cannot_mix_flock_and_a_server_in_one_process(pg_server, tmp_path):
    flock = Cache(tmp_path / "c")
    with flock.reading():
        pass
    served = Cache(tmp_path / "c", locks=pg_server.unix_url)
    with pytest.raises(InvalidLockServer, match="same locks="):
        with served.reading():
            pass
    del flock
    with served.reading():  # no flock object left: the folder may choose again
        pass


# -- holders, kill -9, lost locks ------------------------------------------------------


def test_holders_and_timeouts_name_the_host(pg_server, tmp_path):
    root = tmp_path / "c"
    cache = Cache(root, locks=pg_server.unix_url)
    holder = LockServer(str(root), pg_server.unix_url)
    try:
        holder.hold("x", "a")
        pid = holder.call("pid")
        with pytest.raises(LockTimeout) as info:
            with cache.reading("a", timeout=0):
                pass
        assert f"pid {pid} on {host_name()} holds the exclusive lock" in str(info.value)
        found = cache.holders("a")
        assert [(h.pid, h.host, h.mode, h.waiting) for h in found] == [
            (pid, host_name(), "exclusive", False)
        ]
        assert "python" in (found[0].command or "")
    finally:
        holder.close()


def test_kill_9_of_a_holder_frees_its_locks(pg_server, tmp_path):
    root = tmp_path / "c"
    cache = Cache(root, locks=pg_server.unix_url)
    holder = LockServer(str(root), pg_server.unix_url)
    try:
        holder.hold("x", "a")
        with pytest.raises(LockTimeout):
            with cache.exclusive("a", timeout=0):
                pass
        holder.process.kill()
        with cache.exclusive("a", timeout=WAIT):
            pass
    finally:
        holder.close()


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.ERROR, logger="pkgcache"):
        yield caplog


def test_a_terminated_session_is_a_lost_lock_and_nothing_is_published(
    pg_server, tmp_path, errors
):
    root = tmp_path / "c"
    cache = Cache(root, locks=pg_server.unix_url, durable=False)
    src = tmp_path / "entry.txt"
    src.write_text("x")

    def work() -> None:
        with cache.exclusive("a") as txn:
            txn.add(src, key="before.txt")
            (backend,) = backends_holding(pg_server, root, "a")
            pg_server.sql(f"SELECT pg_terminate_backend({backend})")
            wait_until(lambda: "lost" in errors.text, "the loss was noticed")
            with pytest.raises(LockLost):
                txn.add(src, key="after.txt")
            with pytest.raises(LockLost):
                txn.remove("before.txt")

    with pytest.raises(LockLost, match="was lost"):
        work()
    with cache.reading("a") as view:
        assert [entry.key for entry in view.entries("a")] == ["before.txt"]


def test_a_lost_lock_is_raised_at_the_end_of_the_block(pg_server, tmp_path, errors):
    root = tmp_path / "c"
    cache = Cache(root, locks=pg_server.unix_url)

    def work() -> None:
        with cache.reading("a"):
            for backend in backends_holding(pg_server, root, "a"):
                pg_server.sql(f"SELECT pg_terminate_backend({backend})")
            wait_until(lambda: "lost" in errors.text, "the loss was noticed")

    with pytest.raises(LockLost):
        work()
    with cache.exclusive("a", timeout=WAIT):  # the locks work again
        pass


# -- hosts of a farm on one store ------------------------------------------------------


@contextlib.contextmanager
def mounts(real: Path, count: int) -> Iterator[list[Path]]:
    """``count`` paths of the folder ``real``: bind mounts as root, else links."""
    paths = []
    mounted = []
    try:
        for index in range(count):
            path = real.parent / f"host-{index}"
            path.mkdir()
            if os.geteuid() == 0 and _bind(real, path):
                mounted.append(path)
            else:
                path.rmdir()
                path.symlink_to(real)
            paths.append(path)
        yield paths
    finally:
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], check=False, timeout=WAIT)


def _bind(real: Path, path: Path) -> bool:
    done = subprocess.run(
        ["mount", "--bind", str(real), str(path)],
        check=False,
        capture_output=True,
        timeout=WAIT,
    )
    return done.returncode == 0


@pytest.mark.timeout(180)
def test_hosts_race_on_one_store_without_overlap(pg_server, tmp_path):
    real = tmp_path / "shared"
    real.mkdir()
    hosts = 4
    board = Board(SPAWN)
    barrier = SPAWN.Barrier(hosts)
    with mounts(real, hosts) as paths:
        workers = []
        for index, path in enumerate(paths):
            conn, child = SPAWN.Pipe()
            host = HostSettings(
                str(path / "cache"), pg_server.unix_url, f"builder-{index}", index, 60
            )
            process = SPAWN.Process(
                target=host_worker, args=(host, board, barrier, child)
            )
            process.start()
            child.close()
            workers.append((process, conn))
        results = []
        for process, conn in workers:
            assert conn.poll(150), "a host never finished"
            results.append(conn.recv())
            process.join(WAIT)
        # Every host met the same locks: one identity, made once.
        assert len({identity_of(path / "cache") for path in paths}) == 1
    problems = [problem for _, found in results for problem in found]
    assert problems == []
    assert board.violations.value == 0
    totals: dict[str, int] = {}
    for counts, _ in results:
        for operation, count in counts.items():
            totals[operation] = totals.get(operation, 0) + count
    assert set(totals) == {"read", "write", "clean", "prune"}, totals
    with Cache(real / "cache").reading(*HOST_PACKAGES) as view:
        for package in HOST_PACKAGES:
            view.entries(package)  # still a consistent store


# -- UvCache, the command line, the pytest plugin ------------------------------------


def test_a_uv_cache_keeps_its_identity_in_its_locks_folder(pg_server, tmp_path):
    from pkgcache.uv import UvCache

    uv_cache = UvCache(tmp_path / "uv", locks=pg_server.unix_url)
    with uv_cache.cache.exclusive("a"):
        assert (uv_cache.locks_dir / "cache-id").is_file()
        assert not (tmp_path / "uv" / "locks").exists()
        unsigned = lock_key(identity_of_folder(uv_cache.locks_dir), "a")
        assert held_keys(pg_server) >= {unsigned}


def identity_of_folder(folder: Path) -> str:
    return (folder / "cache-id").read_text().splitlines()[1]


def held_keys(pg_server: Server) -> set[int]:
    rows = pg_server.sql(
        "SELECT (classid::bigint << 32 | objid::bigint) FROM pg_locks"
        " WHERE locktype = 'advisory' AND granted"
    )
    # Back to the signed keys pkgcache computes.
    return {
        int(row[0]) - (1 << 64) if int(row[0]) >= 1 << 63 else int(row[0])
        for row in rows
    }


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_command_line_shows_holders_on_the_server(
    pg_server, tmp_path, capsys, monkeypatch, how
):
    from pkgcache._cli import ENV_LOCKS, main

    root = tmp_path / "c"
    entry = tmp_path / "a-1.0.tar.gz"
    entry.write_bytes(b"sdist")
    # Without names, holders are looked for on the packages of the store
    # (a lock server has no lock files to list).
    cache = Cache(root, locks=pg_server.unix_url, durable=False)
    with cache.exclusive("a") as txn:
        txn.add(entry)
    del cache, txn
    gc.collect()
    holder = LockServer(str(root), pg_server.unix_url)
    try:
        holder.hold("x", "a")
        pid = holder.call("pid")
        if how == "option":
            argv = ["--cache-dir", str(root), "locks", "--locks", pg_server.unix_url]
        else:
            monkeypatch.setenv(ENV_LOCKS, pg_server.unix_url)
            argv = ["--cache-dir", str(root), "locks"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"pid {pid} on {host_name()} holds the exclusive lock" in out
        # Without the server the command sees no holder: the locks live there.
        monkeypatch.delenv(ENV_LOCKS, raising=False)
        assert main(["--cache-dir", str(root), "locks"]) == 0
        assert str(pid) not in capsys.readouterr().out
    finally:
        holder.close()


def test_the_command_line_refuses_a_bad_server(tmp_path, capsys):
    from pkgcache._cli import main

    code = main(["--cache-dir", str(tmp_path), "--locks", "mysql://h/db", "info"])
    err = capsys.readouterr().err
    assert code == 1
    assert "expected a postgresql:// URL" in err


def test_the_pytest_plugin_puts_the_fixtures_caches_on_the_server(pg_server, pytester):
    pytester.makepyfile(
        """
        def test_on_the_server(pkgcache):
            with pkgcache.exclusive("a"):
                (holder,) = pkgcache.holders("a")
                assert holder.host is not None  # only a lock server names it
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pkgcache-locks", pg_server.unix_url
    )
    result.assert_outcomes(passed=1)
    assert pytester.runpytest("-p", "no:cacheprovider").ret == 1  # flock: no host
