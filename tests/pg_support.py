"""A throwaway PostgreSQL server for tests and benchmarks, from pip alone.

The ``pgserver`` wheel carries PostgreSQL's binaries: ``pgserver.get_server``
runs ``initdb`` and starts a server on a unix socket in about a second. This
module restarts it to listen on ``127.0.0.1`` too (a port of its own), so
tests and benchmarks can use both transports, and can stop and start it
again. Nothing here imports pytest: the benchmarks use it as well.

:class:`Proxy` stands between a client and the server's TCP port, and can
cut the line without closing anything, as a dead network or a hung router
does: no byte passes, no connection ends.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import selectors
import shutil
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["EngineServer", "Proxy", "Server", "engine_server", "unavailable"]

WAIT = 30.0  # bound on anything that must happen


def unavailable() -> str | None:
    """Why no server can run here (``None`` when one can)."""
    try:
        with warnings.catch_warnings():
            # pgserver picks its runtime folder at import, and warns when
            # XDG_RUNTIME_DIR is unset (it then uses /tmp/runtime-<uid>).
            warnings.simplefilter("ignore")
            import pgserver  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        return (
            f"needs pgserver and psycopg ({exc}); pip install -e '.[test]' "
            "installs them where wheels exist"
        )
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A PostgreSQL server in ``folder``, on a unix socket and on TCP.

    ``listen`` is the server's ``listen_addresses``; clients from addresses
    other than 127.0.0.1 also need :meth:`trust`.
    """

    def __init__(self, folder: Path, listen: str = "127.0.0.1") -> None:
        assert unavailable() is None
        import pgserver

        folder.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: this object stops the server, not pgserver's
        # exit hook (which loses track of it after the restart below).
        server = pgserver.get_server(folder / "data", cleanup_mode=None)
        self._pgserver = pgserver
        self._server = server
        info = server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)
        self.listen = listen
        self.port = _free_port()
        self._ctl("restart", "-m", "fast")
        self.unix_url = (
            f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"
        )
        self.tcp_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-h '{self.listen}' -p {self.port} -k {self.socket_dir}"
        self._pgserver.pg_ctl(
            ["-w", "-o", options, "-l", str(self._server.log), *args],
            pgdata=self._server.pgdata,
            user=self._server.system_user,
            timeout=60,
        )

    def trust(self, network: str) -> None:
        """Let clients from ``network`` (``10.0.0.0/8``) in without a password."""
        with open(self._server.pgdata / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write(f"host all all {network} trust\n")
        self.sql("SELECT pg_reload_conf()")

    def stop(self) -> None:
        """Stop the server at once (sessions are terminated)."""
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start it again, on the same socket and port."""
        self._ctl("start")

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; return its rows."""
        import psycopg

        with psycopg.connect(self.unix_url, autocommit=True) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ctl("stop", "-m", "immediate")

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, listen: str = "127.0.0.1") -> Iterator[Server]:
        """A server in a new temporary folder, deleted afterwards.

        Not under pytest's own temporary folder: run as root, the server
        runs as an unprivileged user (pgserver's ``pgserver``), which must
        traverse the folders above its data, and pytest resets its root
        folder to mode 0700 whenever a pytest session starts.
        """
        folder = Path(tempfile.mkdtemp(prefix="pkgcache-postgres-"))
        try:
            server = cls(folder, listen)
            try:
                yield server
            finally:
                server.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


class Proxy:
    """A TCP relay to ``port`` on 127.0.0.1 whose line can be cut.

    ``url`` is the server's URL through the relay. After :meth:`cut`, no
    byte passes in either direction and no connection is closed: clients
    see a silent network. :meth:`close` ends every relayed connection.
    """

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Stop relaying: the network went silent."""
        self._cut.set()
        self._wake_w.send(b"x")

    def close(self) -> None:
        """End every connection and stop the relay."""
        self._closed.set()
        self._wake_w.send(b"x")
        self._thread.join(WAIT)
        self._wake_w.close()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                for key, _ in self._selector.select(1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._wake_r:
                        sock.recv(64)
                        if self._cut.is_set():
                            self._go_silent()
                    elif sock is self._listener:
                        self._accept()
                    else:
                        self._relay(sock)
        finally:
            for sock in [*self._peers, self._listener, self._wake_r]:
                sock.close()
            self._selector.close()

    def _go_silent(self) -> None:
        for sock in list(self._peers):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self._target)
        self._peers[client] = server
        self._peers[server] = client
        for sock in (client, server):
            self._selector.register(sock, selectors.EVENT_READ)

    def _relay(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            with contextlib.suppress(OSError):
                peer.sendall(data)
            return
        for each in (sock, peer):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            self._peers.pop(each, None)
            each.close()


def engine_server(
    url: str, identity: str, host: str, conn: multiprocessing.connection.Connection
) -> None:
    """A process (acting as host ``host``) driving engines over a pipe.

    Commands, each answered: ``("try", package, exclusive)`` -> bool;
    ``("acquire", package, exclusive, timeout)`` -> "held" or "expired";
    ``("release", package)``; ``("check", package)`` -> None or the error;
    ``("backend", package)`` -> the server pid of the session holding it;
    ``("pid",)``; ``("exit",)``.
    """
    from pkgcache import _postgres
    from pkgcache._engine import Expired

    _postgres.host_name = lambda: host
    service = _postgres.PostgresLocks(url, identity)
    while True:
        command, *args = conn.recv()
        if command == "try":
            conn.send(service.engine(args[0]).try_acquire(args[1]))
        elif command == "acquire":
            deadline = None if args[2] is None else time.monotonic() + args[2]
            try:
                service.engine(args[0]).acquire(args[1], deadline)
            except Expired:
                conn.send("expired")
            else:
                conn.send("held")
        elif command == "release":
            service.engine(args[0]).release()
            conn.send("released")
        elif command == "check":
            try:
                service.engine(args[0]).check()
            except Exception as exc:
                conn.send(f"{type(exc).__name__}: {exc}")
            else:
                conn.send(None)
        elif command == "backend":
            session = service.engine(args[0])._session
            conn.send(None if session is None else session.backend_pid)
        elif command == "pid":
            conn.send(os.getpid())
        else:
            conn.send("bye")
            return


class EngineServer:
    """Client side of :func:`engine_server`, in a ``spawn`` process."""

    def __init__(self, url: str, identity: str, host: str = "other-host") -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=engine_server, args=(url, identity, host, child), daemon=True
        )
        self.process.start()
        child.close()

    def send(self, *command: object) -> None:
        """Send a command without waiting for its answer (see :meth:`answer`)."""
        self.conn.send(command)

    def answer(self, timeout: float = WAIT) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError("the engine server did not answer")
        return self.conn.recv()

    def call(self, *command: object) -> Any:
        self.send(*command)
        return self.answer()

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.conn.send(("exit",))
        self.process.join(WAIT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(WAIT)


def fork_while_holding(
    url: str, identity: str, package: str, conn: multiprocessing.connection.Connection
) -> None:
    """Hold ``package`` exclusively, fork a child that lives on, report its pid.

    The child forgets the parent's locks as pkgcache's fork handler does,
    then waits to be killed; the parent waits to be killed too.
    """
    from pkgcache import _postgres

    service = _postgres.PostgresLocks(url, identity)
    assert service.engine(package).try_acquire(True)
    pid = os.fork()
    if pid == 0:  # pkgcache's at-fork handler closed the inherited sockets
        threading.Event().wait(10 * WAIT)  # outlives the test's waits
        os._exit(0)
    conn.send(pid)
    threading.Event().wait(10 * WAIT)


# -- hosts racing on one store (tests/test_postgres_cache.py) ---------------------

HOST_PACKAGES = ("alpha", "beta")


def entry_content(key: str) -> bytes:
    """What the entry ``key`` holds: anything else is a torn or foreign write."""
    return (key * 64).encode()


class Board:
    """Who is inside which lock, in memory shared by every host process.

    A slot per package (readers, writers) and one for the whole cache; every
    entry checks what the lock table forbids and counts violations.
    """

    def __init__(self, context: Any) -> None:
        self.mutex = context.Lock()
        self.slots = context.Array("i", 2 * (len(HOST_PACKAGES) + 1), lock=False)
        self.violations = context.Value("i", 0, lock=False)

    def _index(self, package: str | None) -> int:
        return 0 if package is None else 2 * (HOST_PACKAGES.index(package) + 1)

    def enter(self, package: str | None, exclusive: bool) -> None:
        with self.mutex:
            index = self._index(package)
            readers, writers = self.slots[index], self.slots[index + 1]
            whole_writer = self.slots[1]
            if package is None:
                # exclusive(): nobody else anywhere.
                others = sum(self.slots)
            elif exclusive:
                others = readers + writers + whole_writer
            else:
                others = writers + whole_writer
            if others:
                self.violations.value += 1
            self.slots[index + exclusive] += 1

    def leave(self, package: str | None, exclusive: bool) -> None:
        with self.mutex:
            self.slots[self._index(package) + exclusive] -= 1


class HostSettings(NamedTuple):
    """One host of :func:`host_worker`: its path of the cache, and its work."""

    root: str
    url: str
    host: str
    seed: int
    operations: int


def host_worker(
    settings: HostSettings,
    board: Board,
    barrier: Any,
    conn: multiprocessing.connection.Connection,
) -> None:
    """One host of a farm: random reads, writes, cleans and prunes on the store.

    Reports ``(counts by operation, problems seen)`` on ``conn``.
    """
    import random

    import pkgcache
    from pkgcache import _postgres

    root, url, host, seed, operations = settings
    _postgres.host_name = lambda: host
    cache = pkgcache.Cache(root, locks=url, timeout=WAIT, durable=False)
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    problems: list[str] = []
    source = Path(root).parent / f"src-{host}"
    source.mkdir(exist_ok=True)
    barrier.wait(WAIT)
    for index in range(operations):
        operation = rng.choice(("read", "read", "write", "write", "clean", "prune"))
        package = rng.choice(HOST_PACKAGES)
        counts[operation] = counts.get(operation, 0) + 1
        try:
            if operation == "read":
                with cache.reading(package) as view:
                    board.enter(package, False)
                    for entry in view.entries(package):
                        data = view.path(package, entry.key).read_bytes()
                        if data != entry_content(entry.key):
                            problems.append(f"{entry.key}: wrong content")
                    board.leave(package, False)
            elif operation == "write":
                key = f"{host}-{index}.txt"
                file = source / key
                file.write_bytes(entry_content(key))
                with cache.exclusive(package) as txn:
                    board.enter(package, True)
                    txn.add(file, key=key, move=True)
                    if txn.path(package, key).read_bytes() != entry_content(key):
                        problems.append(f"{key}: changed under its writer")
                    board.leave(package, True)
            elif operation == "clean":
                if rng.random() < 0.25:
                    with cache.exclusive() as txn:
                        board.enter(None, True)
                        txn.clear(package=package)
                        board.leave(None, True)
                else:
                    cache.clean(package)
            else:
                cache.prune(max_bytes=rng.choice((0, 2000)))
        except Exception as exc:  # any failure is a finding
            problems.append(f"{operation} {package}: {type(exc).__name__}: {exc}")
    conn.send((counts, problems))
