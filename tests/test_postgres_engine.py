"""The PostgreSQL lock engine against its contract, on a real server.

Each :class:`PostgresLocks` has sessions of its own, so two of them in one
test behave like two processes; the tests that need a real other process
(a kill, a fork, another host name) spawn one (:class:`EngineServer`).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pkgcache import InvalidLockServer, LockLost, LockServerError
from pkgcache._engine import Expired
from pkgcache._pgsession import Session
from pkgcache._postgres import (
    ANSWER,
    PostgresLocks,
    connection_string,
    host_name,
    lock_key,
)
from tests.pg_support import WAIT, EngineServer, Proxy, Server, fork_while_holding

SPAWN = multiprocessing.get_context("spawn")

IDENTITY = "5eed" * 8
Services = Callable[..., PostgresLocks]


@pytest.fixture
def services(pg_server: Server) -> Iterator[Services]:
    """Make lock services (each like a process of its own); close them after."""
    made: list[PostgresLocks] = []

    def make(url: str | None = None, identity: str = IDENTITY) -> PostgresLocks:
        service = PostgresLocks(url or pg_server.unix_url, identity)
        made.append(service)
        return service

    yield make
    for service in made:
        for engine in list(service._engines.values()):
            engine.release()
        service.close()


@pytest.fixture
def servers(pg_server: Server) -> Iterator[Callable[..., EngineServer]]:
    """Spawn engine servers (processes acting as hosts); stop them after."""
    made: list[EngineServer] = []

    def make(host: str = "other-host", url: str | None = None) -> EngineServer:
        server = EngineServer(url or pg_server.unix_url, IDENTITY, host)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def waiting_on(pg_server: Server, key: int) -> int:
    """How many sessions wait for ``key`` on the server."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    rows = pg_server.sql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        f" AND classid = {unsigned >> 32} AND objid = {unsigned & 0xFFFF_FFFF}"
    )
    return int(rows[0][0])


def advisory_locks_of(pg_server: Server, service: PostgresLocks) -> int:
    """Advisory locks the server records for ``service``'s live sessions."""
    pids = [s.backend_pid for s in service._open.sessions if not s.dead]
    if not pids:
        return 0
    rows = pg_server.sql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        f" AND pid IN ({', '.join(map(str, pids))})"
    )
    return int(rows[0][0])


# -- keys and URLs ---------------------------------------------------------------


def test_keys_depend_on_the_identity_and_the_name_only():
    assert lock_key(IDENTITY, "a") == lock_key(IDENTITY, "a")
    keys = {lock_key(IDENTITY, None), lock_key(IDENTITY, "a"), lock_key(IDENTITY, "b")}
    assert len(keys) == 3
    assert lock_key("0" * 32, "a") != lock_key(IDENTITY, "a")
    assert all(-(2**63) <= key < 2**63 for key in keys)


def test_connection_string_adds_settings_and_keeps_the_users():
    text = connection_string(
        "postgresql://u:secret@db.example:5433/locks?keepalives_idle=7"
        "&options=-c%20client_connection_check_interval%3D250",
        "pkgcache abc 1 host cmd",
    )
    assert "keepalives_idle=7" in text  # the URL's own value wins
    assert "tcp_user_timeout=1000" in text
    assert "application_name='pkgcache abc 1 host cmd'" in text
    options = text.split("options='", 1)[1].split("'", 1)[0]
    # Ours first, the user's after: a later -c wins on the server.
    assert options.index("client_connection_check_interval=1000") < options.index(
        "client_connection_check_interval=250"
    )


@pytest.mark.parametrize(
    "url", ["/var/lock/pkgcache", "mysql://db/x", "postgresql://h/db?bogus=1"]
)
def test_a_url_that_is_not_postgresql_is_refused_before_any_io(url):
    with pytest.raises(InvalidLockServer) as info:
        PostgresLocks(url, IDENTITY)
    assert isinstance(info.value, ValueError)


def test_the_password_never_reaches_a_message(services):
    service = services("postgresql://user:hunter2@127.0.0.1:1/db?connect_timeout=1")
    with pytest.raises(LockServerError) as info:
        service.engine("a").try_acquire(False)
    assert "hunter2" not in str(info.value)
    assert "cannot connect to the lock server" in str(info.value)


# -- modes -----------------------------------------------------------------------


def test_readers_share_and_a_writer_excludes(services):
    one, two = services(), services()
    assert one.engine("a").try_acquire(False)
    assert two.engine("a").try_acquire(False)
    assert not services().engine("a").try_acquire(True)
    one.engine("a").release()
    two.engine("a").release()
    assert one.engine("a").try_acquire(True)
    assert not two.engine("a").try_acquire(False)
    assert two.engine("b").try_acquire(True)  # another package: no conflict


def test_same_name_in_another_cache_is_another_lock(services):
    assert services().engine("a").try_acquire(True)
    assert services(identity="0" * 32).engine("a").try_acquire(True)


def test_a_wait_expires_at_its_deadline_and_holds_nothing(services, pg_server):
    holder, waiter = services(), services()
    assert holder.engine("a").try_acquire(True)
    start = time.monotonic()
    with pytest.raises(Expired):
        waiter.engine("a").acquire(False, start + 0.2)
    assert time.monotonic() - start >= 0.2
    assert advisory_locks_of(pg_server, waiter) == 0
    assert waiting_on(pg_server, lock_key(IDENTITY, "a")) == 0
    holder.engine("a").release()
    assert waiter.engine("a").try_acquire(True)


def test_release_is_idempotent(services):
    service = services()
    engine = service.engine("a")
    engine.release()  # nothing held: no-op
    assert engine.try_acquire(True)
    engine.release()
    engine.release()
    assert services().engine("a").try_acquire(True)


def test_a_waiter_gets_the_lock_when_it_is_released(services):
    holder, waiter = services(), services()
    assert holder.engine("a").try_acquire(True)
    granted = threading.Event()

    def wait() -> None:
        waiter.engine("a").acquire(True, None)
        granted.set()

    thread = threading.Thread(target=wait)
    thread.start()
    wait_until(lambda: waiter.engine("a")._session is not None, "the waiter queued")
    assert not granted.wait(0.05)
    holder.engine("a").release()
    assert granted.wait(WAIT)
    thread.join(WAIT)


# -- sessions ----------------------------------------------------------------------


def test_uncontended_locks_share_one_session(services):
    service = services()
    for name in (None, "a", "b", "c"):
        assert service.engine(name).try_acquire(name is not None)
    assert len(service._open.sessions) == 1


def test_a_waiting_thread_does_not_block_other_locks_of_the_process(services):
    holder, service = services(), services()
    assert holder.engine("a").try_acquire(True)
    assert service.engine("b").try_acquire(True)  # on the first session
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (service.engine("a").acquire(True, None), done.set())
    )
    thread.start()
    wait_until(
        lambda: any(s.waiting for s in service._open.sessions),
        "the wait is in progress",
    )
    # Another thread releases and takes other locks meanwhile.
    service.engine("b").release()
    assert service.engine("c").try_acquire(False)
    service.engine("c").release()
    assert service.engine("b").try_acquire(True)
    assert not done.is_set()
    holder.engine("a").release()
    assert done.wait(WAIT)
    thread.join(WAIT)
    # The wait's session now holds "a"; one spare at most stays idle.
    assert len(service._open.sessions) == 2


def test_idle_sessions_beyond_one_spare_are_closed(services):
    holders = [services() for _ in range(3)]
    service = services()
    names = ["a", "b", "c"]
    for holder, name in zip(holders, names, strict=True):
        assert holder.engine(name).try_acquire(True)
    threads = [
        threading.Thread(target=service.engine(name).acquire, args=(True, None))
        for name in names
    ]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: sum(s.waiting for s in service._open.sessions) == 3, "three waits"
    )
    for holder, name in zip(holders, names, strict=True):
        holder.engine(name).release()
    for thread in threads:
        thread.join(WAIT)
    assert len(service._open.sessions) == 3  # each lock on the session that waited
    for name in names:
        service.engine(name).release()
    assert len(service._open.sessions) == 2


def test_a_service_nobody_uses_closes_its_sessions(pg_server):
    identity = "dead" * 8
    service = PostgresLocks(pg_server.unix_url, identity)
    assert service.engine("a").try_acquire(False)  # starts the heartbeat too
    service.engine("a").release()
    heartbeat = service._heartbeat
    assert heartbeat is not None
    sessions = (
        "SELECT count(*) FROM pg_stat_activity"
        f" WHERE application_name LIKE 'pkgcache {identity[:8]} %'"
    )
    assert pg_server.sql(sessions)[0][0] > 0
    del service
    gc.collect()
    wait_until(lambda: pg_server.sql(sessions)[0][0] == 0, "the sessions closed")
    heartbeat.join(WAIT)
    assert not heartbeat.is_alive()


# -- fairness ------------------------------------------------------------------------


def test_a_waiting_writer_is_not_overtaken_by_later_readers(services, pg_server):
    reader, writer, late = services(), services(), services()
    assert reader.engine("a").try_acquire(False)
    thread = threading.Thread(target=writer.engine("a").acquire, args=(True, None))
    thread.start()
    wait_until(lambda: waiting_on(pg_server, lock_key(IDENTITY, "a")), "writer queued")
    assert not late.engine("a").try_acquire(False)
    with pytest.raises(Expired):
        late.engine("a").acquire(False, time.monotonic() + 0.1)
    reader.engine("a").release()
    thread.join(WAIT)
    assert writer.engine("a")._granted


def test_writer_waits_is_seen_by_a_shared_holder(services, pg_server):
    reader, writer = services(), services()
    assert reader.engine("a").try_acquire(False)
    assert not reader.engine("a").writer_waits()
    thread = threading.Thread(target=writer.engine("a").acquire, args=(True, None))
    thread.start()
    wait_until(reader.engine("a").writer_waits, "the heartbeat saw the writer")
    reader.engine("a").release()
    thread.join(WAIT)


def test_writer_really_waits_asks_the_server_now(services, pg_server):
    reader, writer = services(), services()
    engine = reader.engine("a")
    assert engine.try_acquire(False)
    assert not engine.writer_really_waits()
    thread = threading.Thread(target=writer.engine("a").acquire, args=(True, None))
    thread.start()
    wait_until(lambda: waiting_on(pg_server, lock_key(IDENTITY, "a")), "writer queued")
    assert engine.writer_really_waits()
    assert engine.writer_waits()  # remembered
    engine.release()
    thread.join(WAIT)


def test_a_writer_is_not_starved_by_readers_of_other_hosts(
    servers, services, pg_server
):
    readers = [servers(host=f"reader-{i}") for i in range(3)]
    for reader in readers:
        assert reader.call("acquire", "a", False, WAIT) == "held"
    writer = services()
    thread = threading.Thread(target=writer.engine("a").acquire, args=(True, None))
    thread.start()
    wait_until(lambda: waiting_on(pg_server, lock_key(IDENTITY, "a")), "writer queued")
    # Each reader lets go and asks again while the others still hold: the
    # shared holds overlap, so without a fair queue the lock would never be
    # free of readers.
    for reader in readers:
        assert reader.call("release", "a") == "released"
        reader.send("acquire", "a", False, WAIT)
    thread.join(WAIT)
    assert writer.engine("a")._granted
    assert not any(reader.conn.poll(0) for reader in readers), "readers overtook"
    writer.engine("a").release()
    for reader in readers:
        assert reader.answer() == "held"


# -- failures ----------------------------------------------------------------------


def test_kill_9_of_a_holder_frees_its_lock(servers, services):
    other = servers()
    assert other.call("try", "a", True)
    waiter = services()
    result: list[float] = []

    def wait() -> None:
        waiter.engine("a").acquire(True, time.monotonic() + WAIT)
        result.append(time.monotonic())

    thread = threading.Thread(target=wait)
    thread.start()
    wait_until(lambda: waiter.engine("a")._session is not None, "waiter queued")
    killed = time.monotonic()
    other.process.kill()
    thread.join(WAIT)
    assert result, "the waiter never got the lock"
    print(f"granted {1000 * (result[0] - killed):.1f} ms after kill -9")


def test_terminated_session_gives_lock_lost_and_an_error_log(
    services, pg_server, caplog
):
    service = services()
    engine = service.engine("a")
    assert engine.try_acquire(True)
    engine.check()
    backend = engine._session.backend_pid
    with caplog.at_level(logging.ERROR, logger="pkgcache"):
        pg_server.sql(f"SELECT pg_terminate_backend({backend})")
        wait_until(lambda: engine._lost, "the heartbeat noticed")
    with pytest.raises(LockLost) as info:
        engine.check()
    assert isinstance(info.value, ConnectionError)
    assert "package 'a'" in str(info.value)
    assert any("lost" in r.message and "'a'" in r.message for r in caplog.records)
    # Another process may take it now; this one recovers with release().
    assert services().engine("a").try_acquire(True)
    engine.release()
    engine.check()


def test_check_notices_a_dead_session_even_without_the_heartbeat(services, pg_server):
    service = services()
    engine = service.engine("a")
    assert engine.try_acquire(True)
    service._open.stop.set()  # no heartbeat from now on
    pg_server.sql(f"SELECT pg_terminate_backend({engine._session.backend_pid})")
    wait_until(
        lambda: time.monotonic() - engine._session.last_answer > ANSWER,
        "the last answer is stale",
    )
    with pytest.raises(LockLost):
        engine.check()


def test_a_cut_network_is_noticed_within_the_bound(services, pg_server):
    proxy = Proxy(pg_server.port)
    try:
        service = services(proxy.url)
        engine = service.engine("a")
        assert engine.try_acquire(True)
        cut = time.monotonic()
        proxy.cut()
        wait_until(lambda: engine._lost, "the cut was noticed")
        noticed = time.monotonic() - cut
        with pytest.raises(LockLost):
            engine.check()
        print(f"cut noticed after {noticed:.2f} s")
        assert noticed >= ANSWER  # no answer is no proof of death before that
    finally:
        proxy.close()
    # The relay closed its side: the server frees the lock.
    waiter = services()
    waiter.engine("a").acquire(True, time.monotonic() + WAIT)
    engine.release()


def test_server_stopped_mid_run_gives_clear_errors(services, pg_server):
    service = services()
    holding, idle = service.engine("a"), service.engine("b")
    assert holding.try_acquire(True)
    pg_server.stop()
    try:
        wait_until(lambda: holding._lost, "the loss was noticed")
        with pytest.raises(LockLost):
            holding.check()
        with pytest.raises(LockServerError) as info:
            idle.try_acquire(True)
        assert "cannot connect to the lock server" in str(info.value)
        holding.release()
    finally:
        pg_server.start()
    assert idle.try_acquire(True)  # the service recovers with the server


def test_a_statement_the_server_refuses_is_a_clear_error(services, pg_server):
    pg_server.sql("CREATE ROLE pkgcache_nolocks LOGIN")
    for function in ("pg_try_advisory_lock(bigint)", "pg_advisory_lock(bigint)"):
        pg_server.sql(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    try:
        url = pg_server.unix_url.replace("//postgres@", "//pkgcache_nolocks@")
        service = services(url)
        engine = service.engine("a")
        with pytest.raises(LockServerError, match="permission denied") as info:
            engine.try_acquire(True)
        assert "42501" in str(info.value)  # the SQLSTATE, for a search
        assert engine._session is None  # nothing held, nothing to recover
        assert engine.try_acquire(False)  # the session lives on
        engine.release()
    finally:
        for function in ("pg_try_advisory_lock(bigint)", "pg_advisory_lock(bigint)"):
            pg_server.sql(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")


# -- interrupts ---------------------------------------------------------------------


def _interrupt_when(condition: Callable[[], bool]) -> threading.Thread:
    main = threading.main_thread().ident
    assert main is not None

    def run() -> None:
        deadline = time.monotonic() + WAIT
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.001)
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_interrupted_wait_leaves_nothing_queued_or_held(services, pg_server):
    holder, service = services(), services()
    assert holder.engine("a").try_acquire(True)
    engine = service.engine("a")
    key = lock_key(IDENTITY, "a")
    thread = _interrupt_when(lambda: waiting_on(pg_server, key) > 0)
    with pytest.raises(KeyboardInterrupt):
        engine.acquire(True, None)
    thread.join(WAIT)
    engine.release()  # the contract's recovery
    assert waiting_on(pg_server, key) == 0
    assert advisory_locks_of(pg_server, service) == 0
    holder.engine("a").release()
    assert engine.try_acquire(True)


@pytest.mark.parametrize("waiting", [False, True], ids=["try", "wait"])
def test_an_interrupt_between_the_grant_and_the_bookkeeping_is_undone(
    services, pg_server, monkeypatch, waiting
):
    holder, service = services(), services()
    engine = service.engine("a")
    if waiting:
        assert holder.engine("a").try_acquire(False)
        threading.Timer(0.05, holder.engine("a").release).start()
    collect = Session.collect

    def interrupted(session: Session, deadline: float | None) -> object:
        rows = collect(session, deadline)
        if rows == [["t"]] or (waiting and rows == [[""]]):
            raise KeyboardInterrupt  # the lock is granted, nobody knows yet
        return rows

    monkeypatch.setattr(Session, "collect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.acquire(True, time.monotonic() + WAIT)
    monkeypatch.undo()
    assert advisory_locks_of(pg_server, service) == 1
    engine.release()
    assert advisory_locks_of(pg_server, service) == 0
    assert services().engine("a").try_acquire(True)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_interrupts_anywhere_never_leave_a_count_behind(services, pg_server):
    """SIGINT at random moments of try/acquire/release; release() recovers."""
    service = services()
    engine = service.engine("a")
    main = threading.main_thread().ident
    assert main is not None
    interrupted = 0
    for round_ in range(100):
        delay = (round_ % 25) * 0.00004
        timer = threading.Timer(delay, signal.pthread_kill, (main, signal.SIGINT))
        try:
            timer.start()
            try:
                if engine.try_acquire(round_ % 2 == 0):
                    engine.release()
                engine.acquire(round_ % 3 == 0, time.monotonic() + WAIT)
                engine.release()
            finally:
                timer.join()
        except KeyboardInterrupt:
            interrupted += 1
            engine.release()
        assert engine._session is None
        assert advisory_locks_of(pg_server, service) == 0, f"round {round_}"
    assert interrupted > 0


# -- holders and fork ---------------------------------------------------------------


def test_holders_name_host_pid_command_and_mode_of_everyone(
    services, servers, pg_server
):
    holder = servers(host="builder-7")
    assert holder.call("try", "a", False)
    pid = holder.call("pid")
    service = services()
    thread = threading.Thread(target=service.engine("a").acquire, args=(True, None))
    thread.start()
    wait_until(lambda: waiting_on(pg_server, lock_key(IDENTITY, "a")), "writer queued")
    found = services().engine("a").holders()
    assert [(h.host, h.pid, h.mode, h.waiting) for h in found] == [
        ("builder-7", pid, "shared", False),
        (host_name(), os.getpid(), "exclusive", True),
    ]
    assert (found[0].command or "").startswith("python ")
    assert "builder-7" in found[0].describe()
    holder.call("release", "a")
    thread.join(WAIT)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_leaves_the_parents_session_alone(pg_server, services):
    service = services()
    engine = service.engine("a")
    assert engine.try_acquire(True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            # pkgcache's at-fork handler has run: the parent's service is
            # forgotten (its sockets closed without a word), never used.
            session = engine._session
            forgotten = session is not None and session.dead
            forgotten = forgotten and not service._open.sessions
            child = PostgresLocks(pg_server.unix_url, IDENTITY).engine("a")
            ok = forgotten and not child.try_acquire(True)
            child.release()
            del child, engine, service, session
            gc.collect()  # finalizers of the inherited connections run here
            os.write(write, b"1" if ok else f"0 {forgotten}".encode())
        except BaseException as exc:
            os.write(write, f"{type(exc).__name__}: {exc}".encode()[:500])
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 500) == b"1"
    os.waitpid(pid, 0)
    os.close(read)
    engine.check()  # the parent's session lived through the child's exit
    with engine._session.mutex:  # the heartbeat uses the session too
        assert engine._session.execute("SELECT 1", time.monotonic() + WAIT)
    assert not services().engine("a").try_acquire(True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_killed_parent_loses_its_locks_while_its_forked_child_lives(
    pg_server, services
):
    conn, child = SPAWN.Pipe()
    parent = SPAWN.Process(
        target=fork_while_holding, args=(pg_server.unix_url, IDENTITY, "a", child)
    )
    parent.start()
    child.close()
    assert conn.poll(WAIT)
    grandchild = conn.recv()
    try:
        assert not services().engine("a").try_acquire(True)
        parent.kill()
        # Not join(): the child inherited the end of the pipe it watches.
        wait_until(lambda: not parent.is_alive(), "the parent died")
        os.kill(grandchild, 0)  # the child lives on, without the socket
        services().engine("a").acquire(True, time.monotonic() + WAIT)
    finally:
        os.kill(grandchild, signal.SIGKILL)
