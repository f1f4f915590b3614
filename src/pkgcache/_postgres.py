"""The locks of a cache on a PostgreSQL server, for build farms of many hosts.

``Cache(root, locks="postgresql://...")`` holds every lock of the cache as a
PostgreSQL session-level advisory lock instead of a flock on a lock file.
The in-process layer above (threads, re-entry, upgrade and order errors) is
the same for both; this module is the engine that holds one lock for the
whole process, and the service that owns the connections.

Keys
----
A cache is named by its identity (see :mod:`pkgcache._identity`), never by
its path, so every host meets the same locks wherever it mounts the cache.
Each lock is one 64-bit advisory key: the first eight bytes of a BLAKE2b
hash of the identity and the canonical package name (``None``, the whole
cache, hashes apart from every name). Two names whose keys collide share
one lock: more waiting, never less exclusion. With 10,000 packages the
chance of any collision is about 3 in 10^12.

Modes and fairness
------------------
Shared is ``pg_advisory_lock_shared``, exclusive is ``pg_advisory_lock``.
PostgreSQL queues waiters fairly: while a writer waits, a new shared request
(blocking or not) conflicts with the writer's request and queues behind it,
so readers on other hosts cannot starve a writer. Within this process the
layer above joins threads to an existing shared hold; :meth:`writer_waits`
tells it to stop doing so while a writer elsewhere waits (seen by the
heartbeat, at most :data:`HEARTBEAT` seconds late).

Sessions
--------
A lock belongs to the session that took it, and a session runs one
statement at a time. A session blocked in a wait can do nothing else, so:

* a lock that is free is taken with ``pg_try_advisory_lock*`` on a session
  that is not waiting (preferably the oldest one: the first session of a
  process usually carries all its uncontended locks);
* a lock that is busy is waited for on a session of its own, one that holds
  nothing (a spare, or a new connection). The lock then lives on that
  session until it is released; the session then serves other locks.

So a process uses at most ``1 + W + G + 2`` connections: one session for
the locks it took at once, one per wait in progress (``W``), one per held
lock that had to be waited for (``G``), one idle spare, and one probe that
looks for waiting writers while the process holds a lock shared (see
:meth:`PostgresLocks._writers_waiting`); idle sessions beyond the spare are
closed. A worker process whose threads each hold the whole-cache lock and
a package or two needs a handful; a farm needs ``max_connections`` of at
least the sum over its processes, plus the server's reserve. A session
never holds a key twice (PostgreSQL counts re-entry per session), so an
unlock after an interrupted call is exact: it returns whether the call had
taken the lock.

Lost locks
----------
PostgreSQL does not tell a client that its session died: the next statement
fails. A heartbeat thread sends a statement on every session that holds a
lock each :data:`HEARTBEAT` seconds and gives it :data:`ANSWER` seconds to
answer (libpq's ``tcp_user_timeout`` and keepalives end a cut TCP connection
in the same time). A session that fails is dead: every lock on it is marked
lost, an ERROR is logged, the connection is closed, and :meth:`check`
raises :class:`~pkgcache.LockLost`. So a loss is noticed within
``HEARTBEAT + ANSWER`` (1.5 s). The server, told by per-session settings,
drops the locks of a silent client only after its own keepalives fail
(``SERVER_KEEPALIVE``, about 6 s): later than the client notices. A client
that is killed, or whose session is terminated, loses its locks at once.

``client_connection_check_interval`` is set on every session (it is a
per-session setting, so no server configuration is needed): without it a
killed process that was *waiting* for an exclusive lock stays queued on the
server, and every new reader queues behind a writer that will never come.

Fork
----
A forked child closes its copies of the parent's sockets without a word to
the server (see :mod:`pkgcache._pgsession`): an :func:`at_fork_in_child
<pkgcache._process.at_fork_in_child>` handler of this module does it for
every service of the process. The child never uses those services again (its
caches get new lock spaces, see :mod:`pkgcache._space`) and opens its own
sessions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import select
import socket
import sys
import threading
import time
import weakref

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import _process
from ._engine import Expired
from ._errors import InvalidLockServer, LockLost, LockServerError
from ._holders import Holder
from ._pgsession import (
    LOCK_NOT_AVAILABLE,
    Prepared,
    ServerRefused,
    Session,
    SessionDied,
    Statement,
    connect,
)

__all__ = [
    "ANSWER",
    "HEARTBEAT",
    "PostgresLock",
    "PostgresLocks",
    "connection_string",
    "lock_key",
    "redacted",
]

logger = logging.getLogger("pkgcache")

#: Seconds between two heartbeats of a session that holds a lock.
HEARTBEAT = 0.5
#: Seconds a session may take to answer before it counts as dead.
ANSWER = 1.0
# How often the heartbeat looks for sessions that started holding a lock,
# to watch their sockets (see PostgresLocks._watch).
_WATCH_REFRESH = 0.1
#: Server-side keepalives: idle seconds, interval, count. A client cut from
#: the network loses its locks after about ``idle + interval * count`` s.
SERVER_KEEPALIVE = (3, 1, 3)

# What every session asks of the server (all per-session settings). The
# user's own ``options`` come after, so they win where they overlap.
_SERVER_OPTIONS = (
    "-c client_connection_check_interval=1000",
    "-c lock_timeout=0",
    "-c statement_timeout=0",
    "-c idle_session_timeout=0",
    "-c idle_in_transaction_session_timeout=0",
    f"-c tcp_keepalives_idle={SERVER_KEEPALIVE[0]}",
    f"-c tcp_keepalives_interval={SERVER_KEEPALIVE[1]}",
    f"-c tcp_keepalives_count={SERVER_KEEPALIVE[2]}",
    f"-c tcp_user_timeout={sum(SERVER_KEEPALIVE) * 1000}",
)
# Client-side TCP settings (libpq), unless the URL sets them: a cut
# connection fails within ANSWER seconds even inside a long wait.
_CLIENT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "1",
    "keepalives_interval": "1",
    "keepalives_count": "3",
    "tcp_user_timeout": str(int(ANSWER * 1000)),
}
_NAME_LIMIT = 63  # bytes of application_name the server keeps

# The uncontended path's statements, prepared on every session: parsing and
# planning them each time cost the server a fifth of a lock + unlock pair.
_PREPARED = {
    "pkgcache_try_shared": "SELECT pg_try_advisory_lock_shared($1)",
    "pkgcache_try": "SELECT pg_try_advisory_lock($1)",
    "pkgcache_unlock_shared": "SELECT pg_advisory_unlock_shared($1)",
    "pkgcache_unlock": "SELECT pg_advisory_unlock($1)",
}
_TRY = ("pkgcache_try_shared", "pkgcache_try")
_UNLOCK = ("pkgcache_unlock_shared", "pkgcache_unlock")
_LOCK = ("SELECT pg_advisory_lock_shared({})", "SELECT pg_advisory_lock({})")
_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"
# Of the keys listed, those a shared try cannot take (see _writers_waiting);
# CASE makes the unlock run only after a successful try.
_WRITERS_WAITING = (
    "SELECT k FROM unnest(ARRAY[{}]::bigint[]) AS k WHERE NOT"
    " CASE WHEN pg_try_advisory_lock_shared(k) THEN pg_advisory_unlock_shared(k)"
    " ELSE false END"
)
_HOLDERS = (
    "SELECT l.pid, l.mode, l.granted, a.application_name, host(a.client_addr)"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.objsubid = 1"
    " AND l.classid = {} AND l.objid = {}"
    f" AND l.database = {_THIS_DATABASE}"
    " ORDER BY NOT l.granted, l.pid"
)
_MODES = {"ShareLock": "shared", "ExclusiveLock": "exclusive"}


def lock_key(identity: str, package: str | None) -> int:
    """The signed 64-bit advisory key of ``package`` (``None``: the whole cache)."""
    name = b"\0" if package is None else package.encode()
    digest = hashlib.blake2b(
        identity.encode() + b"\n" + name, digest_size=8, person=b"pkgcache-lock"
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def host_name() -> str:
    """The name this host gives itself in ``application_name``."""
    return socket.gethostname() or "unknown-host"


def _application_name(tag: str) -> str:
    """``pkgcache <tag> <pid> <host> <command>``, cut to what the server keeps."""
    argv = list(getattr(sys, "orig_argv", sys.argv)) or ["python"]
    # The program's name, not its folder: 63 bytes hold little.
    command = " ".join([os.path.basename(argv[0]), *argv[1:]])
    text = f"pkgcache {tag} {os.getpid()} {host_name()} {command}"
    # The server keeps printable ASCII only, and 63 bytes of it.
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text[:_NAME_LIMIT]


def connection_string(url: str, application_name: str) -> str:
    """The libpq connection string for ``url``, with pkgcache's settings added.

    Raises:
        InvalidLockServer: ``url`` is not a ``postgresql://`` URL libpq parses.
    """
    if not url.startswith(("postgresql://", "postgres://")):
        raise InvalidLockServer(
            f"unsupported lock server {redacted(url)!r}: expected a postgresql:// URL"
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InvalidLockServer(
            f"invalid lock server URL {redacted(url)!r}: {exc}"
        ) from None
    for key, value in _CLIENT_DEFAULTS.items():
        params.setdefault(key, value)
    params["options"] = " ".join((*_SERVER_OPTIONS, str(params.get("options", ""))))
    params["application_name"] = application_name
    return make_conninfo("", **params)


def redacted(url: str) -> str:
    """``url`` without a password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.partition(':')[0]}:***@{location}"


# Every service of this process, for the after-fork handler.
_services: weakref.WeakSet[PostgresLocks] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for service in list(_services):
        service._open.forget_after_fork()
    _services.clear()


_process.at_fork_in_child(_after_fork_in_child)


class PostgresLocks:
    """The lock service of one cache on one PostgreSQL server, for this process.

    Creates an engine per lock (:meth:`engine`) and owns the sessions they
    share, the heartbeat thread, and the bookkeeping of what each session
    holds. Safe to use from any thread.

    Args:
        url: ``postgresql://user:password@host:port/database?param=value``;
            every host of a farm must name the same server and database.
        identity: the cache identity (see :mod:`pkgcache._identity`).
    """

    #: A session can die while it holds locks (see LockEngine.check).
    can_lose_locks = True

    def __init__(self, url: str, identity: str) -> None:
        # Check the URL before any I/O.
        params = conninfo_to_dict(connection_string(url, ""))
        try:
            self._connect_timeout = max(1.0, float(str(params["connect_timeout"])))
        except ValueError:
            raise InvalidLockServer(
                f"invalid connect_timeout in the lock server URL {redacted(url)!r}"
            ) from None
        self.url = url
        self.identity = identity
        self.tag = identity[:8]
        self.server = redacted(url)
        # Weak: an engine lives while the in-process layer refers to it, or
        # while a session holds (or may hold) its lock (``Session.held``).
        self._engines: weakref.WeakValueDictionary[str | None, PostgresLock] = (
            weakref.WeakValueDictionary()
        )
        self._open = _Open()
        # Sessions are closed when the service is garbage (the finalizer
        # holds the sessions, not the service): a process that makes many
        # caches must not keep a connection per cache it no longer uses.
        weakref.finalize(self, self._open.close_all)
        self._reset()
        _services.add(self)

    def _reset(self) -> None:
        self._mutex = threading.Lock()
        self.writers_waiting: frozenset[int] = frozenset()
        self._probe_mutex = threading.Lock()
        self._heartbeat: threading.Thread | None = None

    def engine(self, package: str | None) -> PostgresLock:
        """The engine of ``package``'s lock (``None``: the whole cache)."""
        engine = self._engines.get(package)
        if engine is None:
            with self._mutex:
                engine = self._engines.get(package)
                if engine is None:
                    engine = PostgresLock(self, package)
                    self._engines[package] = engine
        return engine

    # -- sessions ------------------------------------------------------------

    def _connect(self) -> Session:
        conninfo = connection_string(self.url, _application_name(self.tag))
        deadline = time.monotonic() + self._connect_timeout
        try:
            session = connect(conninfo, deadline)
            try:
                session.prepare(_PREPARED, deadline)
            except BaseException:
                session.close()
                raise
            return session
        except (SessionDied, ServerRefused) as exc:
            raise LockServerError(
                f"cannot connect to the lock server {self.server}: {exc}"
            ) from None

    def reserve(self, engine: PostgresLock, *, waiting: bool) -> Session:
        """Pick a session for ``engine``'s next call and record the key on it.

        For a try (``waiting`` false): the oldest live session that is not
        waiting and does not hold the key. For a wait: a live session that
        holds nothing. A new connection when none fits. ``engine._session``
        is set before the key is recorded, so an interrupt anywhere leaves
        something :meth:`PostgresLock.release` can undo.
        """
        key = engine.key
        while True:
            with self._mutex:
                for session in self._open.sessions:
                    if session.dead or session.waiting:
                        continue
                    if (not session.held) if waiting else (key not in session.held):
                        engine._session = session
                        session.held[key] = engine
                        session.waiting = waiting
                        return session
            new = self._connect()
            with self._mutex:
                self._open.sessions.append(new)

    def unreserve(self, engine: PostgresLock) -> None:
        """Forget ``engine``'s call or hold; keep at most two idle sessions."""
        session = engine._session
        if session is None:
            return
        with self._mutex:
            if session.held.get(engine.key) is engine:
                del session.held[engine.key]
                session.waiting = False
            engine._session = None
            engine._granted = False
            engine._lost = False
            if session.dead and session in self._open.sessions:
                self._open.sessions.remove(session)
            # The first session (tries go there first) and one spare for the
            # next wait stay open; more idle ones are closed.
            idle = [s for s in self._open.sessions[1:] if not s.held and not s.waiting]
            if self._open.sessions and not self._open.sessions[0].held:
                idle.insert(0, self._open.sessions[0])
            extra = [s for s in idle[2:] if s is not self._open.sessions[0]]
            for each in extra:
                self._open.sessions.remove(each)
        for each in extra:
            self._close(each)

    def _close(self, session: Session) -> None:
        # libpq must never run on a connection another thread is using.
        with session.mutex:
            session.close()

    def granted(self, engine: PostgresLock) -> None:
        """Record that ``engine``'s call took the lock; start the heartbeat."""
        with self._mutex:
            engine._granted = True
            session = engine._session
            if session is not None:
                session.waiting = False
            if self._heartbeat is None:
                thread = threading.Thread(
                    target=_heartbeat,
                    args=(weakref.ref(self), self._open, self._open.stop),
                    name="pkgcache-postgres-heartbeat",
                    daemon=True,
                )
                thread.start()
                self._heartbeat = thread

    def died(self, session: Session, reason: object) -> None:
        """Mark ``session`` dead: its locks are lost. Call with its mutex held."""
        with self._mutex:
            if session in self._open.sessions:
                self._open.sessions.remove(session)
            lost = [
                engine
                for engine in session.held.values()
                if isinstance(engine, PostgresLock) and engine._granted
            ]
            for engine in lost:
                engine._lost = True
        session.close()
        if lost:
            logger.error(
                "lost %s on the lock server %s: %s (the server may already "
                "have granted them to others; work under them will not be "
                "published)",
                ", ".join(engine.description for engine in lost),
                self.server,
                reason,
            )

    # -- heartbeat -------------------------------------------------------------

    def beat(self) -> None:
        """One heartbeat: ping every session that holds a lock, probe writers."""
        with self._mutex:
            sessions = [s for s in self._open.sessions if s.held and not s.waiting]
            shared = sorted(
                engine.key
                for s in sessions
                for engine in s.held.values()
                if isinstance(engine, PostgresLock)
                and engine._granted
                and not engine._exclusive
            )
        for session in sessions:
            self.ping_if_free(session)
        self.writers_waiting = self._writers_waiting(shared)

    def ping_if_free(self, session: Session) -> None:
        """Ping ``session`` unless another thread uses it (which sees failures)."""
        if session.mutex.acquire(blocking=False):
            try:
                self._ping(session)
            finally:
                session.mutex.release()

    def _ping(self, session: Session) -> None:
        """Prove ``session`` alive; call with its mutex held."""
        if session.dead:
            return
        try:
            session.execute("SELECT 1", time.monotonic() + ANSWER)
        except SessionDied as exc:
            self.died(session, exc)
        except ServerRefused as exc:  # pragma: no cover - a server in trouble
            logger.warning("lock server heartbeat refused: %s", exc)

    def _writers_waiting(self, shared: list[int]) -> frozenset[int]:
        """Which of ``shared`` (keys this process holds shared) a writer waits for.

        A shared try fails while a writer waits (PostgreSQL queues it
        behind the writer), and this process holds the key shared, so no
        writer holds it: a failed try means a waiting writer. The probe runs
        on a session of its own, which never holds a lock (a session that
        holds the key would be granted the try whatever waits) and undoes
        each successful try in the same statement. It costs the server a
        lock and an unlock per key; reading ``pg_locks`` instead took a
        millisecond of server time per call with 1,800 locks held.
        """
        if not shared:
            return frozenset()
        try:
            with self._probe_mutex:
                probe = self._open.probe
                if probe is None or probe.dead:
                    probe = self._open.probe = self._connect()
                with probe.mutex:
                    rows = probe.execute(
                        _WRITERS_WAITING.format(",".join(map(str, shared))),
                        time.monotonic() + ANSWER,
                    )
        except (LockServerError, SessionDied, ServerRefused) as exc:
            logger.debug("lock server writer probe failed: %s", exc)
            return self.writers_waiting
        return frozenset(int(row[0]) for row in rows if row[0] is not None)

    def writer_really_waits(self, key: int) -> bool:
        """Probe ``key`` now (see :meth:`_writers_waiting`) and remember the answer."""
        waiting = key in self._writers_waiting([key])
        with self._mutex:
            if waiting:
                self.writers_waiting |= {key}
            else:
                self.writers_waiting -= {key}
        return waiting

    def confirm(self, session: Session) -> None:
        """Ping ``session`` now unless it answered within the last ``ANSWER`` s."""
        if time.monotonic() - session.last_answer <= ANSWER:
            return
        with session.mutex:
            self._ping(session)

    # -- queries -----------------------------------------------------------------

    def query(self, sql: str) -> list[list[str | None]]:
        """Run a read-only statement on a session that is free right now."""
        with self._mutex:
            candidates = [
                s for s in self._open.sessions if not s.dead and not s.waiting
            ]
        for session in candidates:
            if session.mutex.acquire(blocking=False):
                if not session.dead:  # closed meanwhile: try the next
                    break
                session.mutex.release()
        else:
            session = self._connect()
            with self._mutex:
                self._open.sessions.append(session)
            session.mutex.acquire()
        try:
            return session.execute(sql, time.monotonic() + ANSWER)
        except SessionDied as exc:
            self.died(session, exc)
            raise LockServerError(
                f"the lock server {self.server} failed: {exc}"
            ) from None
        except ServerRefused as exc:
            raise LockServerError(
                f"the lock server {self.server} refused a query: {exc}"
            ) from None
        finally:
            session.mutex.release()

    def holders(self, engine: PostgresLock) -> list[Holder]:
        """Every process, on any host, holding or waiting for ``engine``'s key."""
        unsigned = engine.key & 0xFFFF_FFFF_FFFF_FFFF
        rows = self.query(_HOLDERS.format(unsigned >> 32, unsigned & 0xFFFF_FFFF))
        found: dict[tuple[str | None, int, bool], Holder] = {}
        for backend, mode, granted, name, address in rows:
            pid, host, command = _parse_application_name(name, self.tag)
            if pid is None:
                # Not a session of this cache: some other client of the
                # server uses the same key (another cache, by a collision,
                # or an application of its own). It blocks us all the same.
                pid, host, command = int(backend or 0), address, name or None
            waiting = granted != "t"
            holder = Holder(
                package=engine.package,
                pid=pid,
                mode=_MODES.get(mode or "", mode),
                waiting=waiting,
                command=command,
                threads=(),
                path=engine.description,
                host=host,
            )
            found.setdefault((host, pid, waiting), holder)
        return list(found.values())

    # -- life ------------------------------------------------------------------

    def close(self) -> None:
        """Close every session if no lock is held or waited for."""
        with self._mutex:
            if any(s.held for s in self._open.sessions):
                return
        self._open.close_all()
        self._reset()


class _Open:
    """The sessions of a service, apart from it (for its finalizer)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.sessions: list[Session] = []
        self.probe: Session | None = None  # holds no lock; see _writers_waiting
        self.stop = threading.Event()  # ends the heartbeat of these sessions

    def close_all(self) -> None:
        """End every session, and the heartbeat; start afresh."""
        sessions = [*self.sessions, *([self.probe] if self.probe else [])]
        self.sessions, self.probe = [], None
        self.stop.set()
        self.stop = threading.Event()
        if os.getpid() != self.pid:
            return  # a forked child: the parent's sessions are not ours
        for session in sessions:
            # libpq must never run on a connection another thread is using.
            with session.mutex:
                session.close()

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited sockets, without a word.

        The sessions stay marked dead, so an engine of the parent's that the
        child still reaches (it should not) fails instead of using them.
        """
        for session in [*self.sessions, *([self.probe] if self.probe else [])]:
            session.forget_after_fork()
        self.sessions, self.probe = [], None
        self.stop = threading.Event()
        self.pid = os.getpid()


def _heartbeat(
    ref: weakref.ref[PostgresLocks], sessions: _Open, stop: threading.Event
) -> None:
    """The heartbeat thread: a beat, then a watch, until ``stop``.

    It holds its service only during a beat: a service nobody else uses is
    collected, its finalizer closes its sessions, and the thread ends.
    """
    while not stop.is_set():
        service = ref()
        if service is None:
            return
        service.beat()
        del service
        _watch(ref, sessions, time.monotonic() + HEARTBEAT, stop)


def _watch(
    ref: weakref.ref[PostgresLocks],
    sessions: _Open,
    until: float,
    stop: threading.Event,
) -> None:
    """Until ``until``, ping at once a session the server writes to unasked.

    The server writes to an idle session only to end it: the message of
    ``pg_terminate_backend`` or of a shutdown, or the end of the stream when
    it crashed. Watching the sockets notices those in milliseconds rather
    than at the next beat (the lock may be someone else's by then). The
    watched set is refreshed every :data:`_WATCH_REFRESH` seconds, so a lock
    held longer than that is watched; waking the watch at each grant instead
    cost more than the grant itself (a thread switch on every uncontended
    lock).
    """
    pinged: set[Session] = set()
    while not stop.is_set():
        remaining = until - time.monotonic()
        if remaining <= 0:
            return
        watched = {}
        poller = select.poll()
        for session in list(sessions.sessions):  # a copy: other threads edit it
            if not session.held or session.waiting or session in pinged:
                continue
            fd = session.fileno()
            if fd is not None:
                watched[fd] = session
                poller.register(fd, select.POLLIN)
        timeout = min(remaining, _WATCH_REFRESH)
        for fd, _ in poller.poll(max(1, int(timeout * 1000))):
            service = ref()
            if service is None:
                return
            # Once per beat: a session in use is readable while its user
            # reads its own answer, and would keep waking this loop.
            pinged.add(watched[fd])
            service.ping_if_free(watched[fd])
            del service


def _parse_application_name(
    name: str | None, tag: str
) -> tuple[int | None, str | None, str | None]:
    """``(pid, host, command)`` from a session of this cache, else ``None``s."""
    parts = (name or "").split(" ", 4)
    if len(parts) < 4 or parts[0] != "pkgcache" or parts[1] != tag:
        return None, None, None
    try:
        pid = int(parts[2])
    except ValueError:
        return None, None, None
    return pid, parts[3], parts[4] if len(parts) > 4 else None


class PostgresLock:
    """One lock of a cache (a package's, or the whole cache's) on PostgreSQL.

    The engine the in-process layer drives: it holds the lock at most once
    for the whole process, shared or exclusive, on one session. See the
    module docstring for keys, sessions, fairness and lost locks.
    """

    __slots__ = (
        "__weakref__",
        "_exclusive",
        "_granted",
        "_lost",
        "_service",
        "_session",
        "description",
        "key",
        "package",
    )

    def __init__(self, service: PostgresLocks, package: str | None) -> None:
        self._service = service
        self.package = package
        self.key = lock_key(service.identity, package)
        what = "the whole cache" if package is None else f"package {package!r}"
        self.description = f"postgresql lock on {what} of cache {service.tag}"
        self._session: Session | None = None
        self._exclusive = False
        self._granted = False
        self._lost = False

    def __repr__(self) -> str:
        return f"<PostgresLock {self.description} key={self.key}>"

    def try_acquire(self, exclusive: bool) -> bool:
        """Take the lock if that needs no waiting; never waits for a holder.

        Fails (``False``) while a writer waits, also for a shared request:
        PostgreSQL queues it behind the writer.

        Raises:
            LockServerError: the server cannot be reached or failed.
        """
        self._exclusive = exclusive  # first: release() must know the mode
        service = self._service
        session = service.reserve(self, waiting=False)
        rows = self._run(session, Prepared.call(_TRY[exclusive], self.key), ANSWER)
        if rows and rows[0][0] == "t":
            service.granted(self)
            return True
        service.unreserve(self)
        return False

    def acquire(self, exclusive: bool, deadline: float | None) -> None:
        """Wait until granted; raise ``Expired`` at ``deadline``.

        Waits in PostgreSQL's queue (fair: a waiting writer is not overtaken
        by later readers, on any host), on a session of its own, bounded by
        ``lock_timeout``. Interruptible: a ``KeyboardInterrupt`` cancels the
        wait on the server.

        Raises:
            Expired: ``deadline`` (``time.monotonic()``) passed; nothing held.
            LockServerError: the server cannot be reached or failed; nothing
                is held.
        """
        if self.try_acquire(exclusive):
            return
        if deadline is None:
            timeout_ms = 0  # lock_timeout 0: wait for ever
            answer: float | None = None
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Expired
            timeout_ms = max(1, math.ceil(remaining * 1000))
            # The server's lock_timeout ends the wait; this only bounds a
            # connection that went silent meanwhile.
            answer = remaining + ANSWER
        self._exclusive = exclusive
        service = self._service
        session = service.reserve(self, waiting=True)
        sql = f"SET lock_timeout = {timeout_ms}; " + _LOCK[exclusive].format(self.key)
        try:
            self._run(session, sql, answer)
        except _Expired:
            service.unreserve(self)
            raise Expired from None
        service.granted(self)

    def _run(
        self, session: Session, sql: Statement, answer: float | None
    ) -> list[list[str | None]]:
        """Run one lock statement for this engine on ``session``.

        On failure nothing is held: the engine is unreserved (a dead
        session's locks are gone with it) and a public error raised. On an
        interrupt the session keeps the statement's key: release() settles
        the late answer and unlocks exactly what it took.
        """
        service = self._service
        with session.mutex:
            try:
                session.settle(time.monotonic() + ANSWER)
                session.send(sql)
                try:
                    return session.collect(
                        None if answer is None else time.monotonic() + answer
                    )
                except BaseException as exc:
                    if not isinstance(exc, Exception):
                        session.cancel()  # an interrupt: stop waiting, now
                    raise
            except SessionDied as exc:
                service.died(session, exc)
                failure: Exception = exc
            except ServerRefused as exc:
                failure = exc
        if isinstance(failure, ServerRefused):
            if failure.sqlstate == LOCK_NOT_AVAILABLE:
                raise _Expired
            self.release()  # the statement failed: it took nothing
            raise LockServerError(
                f"the lock server {service.server} refused {self.description}: "
                f"{failure.message} (SQLSTATE {failure.sqlstate})"
            )
        service.unreserve(self)
        raise LockServerError(
            f"cannot lock {self.description}: the lock server {service.server} "
            f"failed: {failure}"
        )

    def release(self) -> bool:
        """Drop this process's hold; a no-op when nothing is held.

        Returns whether the heartbeat last saw a writer of another process
        waiting for the lock (see :meth:`writer_waits`).

        Also the recovery after any interrupted call: it first reads the
        answer of a statement left in flight, then unlocks. A session holds
        a key at most once, so the unlock removes exactly what the call had
        taken, or nothing. A dead session holds nothing any more.
        """
        session = self._session
        if session is None:
            return False
        if not session.dead:
            with session.mutex:
                if not session.dead:
                    sql = Prepared.call(_UNLOCK[self._exclusive], self.key)
                    try:
                        session.execute(sql, time.monotonic() + ANSWER)
                    except (SessionDied, ServerRefused) as exc:
                        # Either way the session's state is unknown: ending
                        # it is the one sure way to drop the lock.
                        self._service.died(session, exc)
        self._service.unreserve(self)
        return self.key in self._service.writers_waiting

    def writer_waits(self) -> bool:
        """Whether a writer elsewhere waits for this lock (no I/O).

        Seen by the heartbeat, so up to :data:`HEARTBEAT` seconds late; and
        only while this process holds the lock shared.
        """
        return self.key in self._service.writers_waiting

    def writer_really_waits(self) -> bool:
        """Like :meth:`writer_waits`, but ask the server now (one round trip)."""
        return self._service.writer_really_waits(self.key)

    def check(self) -> None:
        """Raise :class:`~pkgcache.LockLost` if this process's hold was lost.

        If the heartbeat has not heard from the session within :data:`ANSWER`
        seconds, ask it now: a hold that passes this check was alive on the
        server less than ``ANSWER`` seconds earlier (or the ping's own
        time, at most ``ANSWER`` more).
        """
        session = self._session
        if session is not None and self._granted and not self._lost:
            self._service.confirm(session)
        if self._lost:
            raise LockLost(
                f"{self.description} was lost: its session on the lock server "
                f"{self._service.server} died (see the ERROR logged then); "
                "another process may hold it now"
            )

    def holders(self) -> list[Holder]:
        """Who holds and who waits for this lock, on every host.

        Raises:
            LockServerError: the server cannot be reached or failed.
        """
        return self._service.holders(self)

    def close(self) -> None:
        """Nothing of its own to free: the sessions belong to the service."""

    @property
    def is_open(self) -> bool:
        """Whether a session holds, or is reserved for, this lock."""
        return self._session is not None


class _Expired(Exception):
    """``lock_timeout`` fired on the server."""
