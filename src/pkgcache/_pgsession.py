"""One connection to a PostgreSQL server, and nothing else.

A :class:`Session` runs the few statements the PostgreSQL lock engine needs
(advisory lock calls, a heartbeat, the holders query) through libpq's
asynchronous interface (``psycopg.pq``), so that every call

* has a deadline: a server that does not answer in time makes the session
  **dead** (:class:`SessionDied`), and a dead session is never used again;
  a cut network behind a proxy would otherwise hang the caller forever;
* is interruptible: a ``KeyboardInterrupt`` lands in :func:`select.poll`,
  not inside a blocking C call. A statement interrupted in flight leaves the
  session *unsettled*; its next user first collects the late answer (or
  declares the session dead), so an answer is never read by the wrong call.

One thread at a time uses a session: callers hold :attr:`Session.mutex`.

After ``fork()`` the child inherits the parent's socket. It must never send
anything on it (libpq's goodbye message ends the parent's session, and every
lock with it) and must close its copy of the descriptor: while the child
keeps it open, the server sees the parent's session alive even after the
parent died, and its locks stay held. :meth:`Session.forget_after_fork` does
exactly that; psycopg's own finalizer does not finish a connection made in
another process.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

from psycopg import pq

__all__ = [
    "Prepared",
    "ServerRefused",
    "Session",
    "SessionDied",
    "Statement",
    "connect",
]

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT

#: SQLSTATE codes the engine tells apart.
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout fired
QUERY_CANCELED = "57014"  # our cancel request, after an interrupt


class Prepared(NamedTuple):
    """A statement prepared on every session (see :meth:`Session.prepare`)."""

    name: bytes
    argument: bytes

    @classmethod
    def call(cls, name: str, argument: int) -> Prepared:
        return cls(name.encode(), str(argument).encode())


#: Text, or a prepared statement and its one argument.
Statement = str | Prepared


class SessionDied(Exception):
    """The connection failed, or the server did not answer in time."""


class ServerRefused(Exception):
    """The server answered a statement with an error; the session lives on."""

    def __init__(self, sqlstate: str, message: str) -> None:
        self.sqlstate = sqlstate
        self.message = message
        super().__init__(f"{message} (SQLSTATE {sqlstate})")


def _wait(fd: int, events: int, deadline: float) -> bool:
    """Wait until ``fd`` is ready for ``events``; ``False`` at the deadline."""
    poller = select.poll()
    poller.register(fd, events)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    # poll() restarts after a signal (PEP 475) unless the handler raises:
    # a KeyboardInterrupt comes out of here.
    return bool(poller.poll(max(1, int(remaining * 1000) + 1)))


def connect(conninfo: str, deadline: float) -> Session:
    """Open a session; raise :class:`SessionDied` if that fails by ``deadline``."""
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    try:
        while True:
            status = pgconn.connect_poll()
            if status == pq.PollingStatus.OK:
                break
            if status == pq.PollingStatus.FAILED:
                raise SessionDied(_message(pgconn.get_error_message()))
            events = _IN if status == pq.PollingStatus.READING else _OUT
            if not _wait(pgconn.socket, events, deadline):
                raise SessionDied("no answer from the server in time")
    except BaseException:
        pgconn.finish()
        raise
    return Session(pgconn)


def _message(text: str) -> str:
    return " ".join(text.split()) or "connection failed"


class Session:
    """One connection, the locks this process holds on it, and its state.

    Attributes:
        mutex: held by the one thread using the session.
        held: ``key -> owner`` of every advisory lock held, or possibly held
            (a call in flight or interrupted), through this session. A key
            is never held twice on one session: PostgreSQL counts re-entry
            per session, and one count per key makes an unlock after an
            interrupted call exact (it returns whether the lock was held).
        waiting: a blocking lock call runs on it; nobody else may use it.
        dead: the connection failed; the server frees (or has freed) every
            lock of the session.
        last_answer: ``time.monotonic()`` of the last answer received.
        backend_pid: the server process serving this session.
    """

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self._pgconn = pgconn
        self.mutex = threading.Lock()
        self.held: dict[int, object] = {}
        self.waiting = False
        self.dead = False
        self.unsettled = False
        self.last_answer = time.monotonic()
        self.backend_pid = pgconn.backend_pid

    # -- statements ------------------------------------------------------------

    def prepare(self, statements: dict[str, str], deadline: float) -> None:
        """Prepare each ``name: sql`` on the server, for :class:`Prepared` calls."""
        for name, sql in statements.items():
            try:
                self._pgconn.send_prepare(name.encode(), sql.encode())
            except Exception as exc:
                self._die()
                raise SessionDied(_message(self._pgconn.get_error_message())) from exc
            self.unsettled = True
            self._collect(deadline)

    def execute(self, sql: Statement, deadline: float) -> list[list[str | None]]:
        """Run ``sql`` (one statement or several); return the last result's rows.

        Raises:
            SessionDied: the connection failed or no answer came by
                ``deadline``; the session is dead.
            ServerRefused: a statement failed; the session lives on.
        """
        self.settle(deadline)
        self._send(sql)
        return _rows(self._collect(deadline))

    def send(self, sql: Statement) -> None:
        """Start ``sql`` without waiting for its answer (see :meth:`collect`)."""
        self._send(sql)

    def collect(self, deadline: float | None) -> list[list[str | None]]:
        """The answer to the statement started by :meth:`send`."""
        return _rows(self._collect(deadline))

    def settle(self, deadline: float) -> None:
        """Read the answer of a statement interrupted in flight, if any."""
        if self.dead:
            raise SessionDied("the session died earlier")
        if self.unsettled:
            with contextlib.suppress(ServerRefused):
                self._collect(deadline)

    def cancel(self) -> None:
        """Ask the server to cancel the statement in flight (best effort)."""
        with contextlib.suppress(Exception):
            self._pgconn.get_cancel().cancel()

    def _send(self, sql: Statement) -> None:
        try:
            if isinstance(sql, Prepared):
                self._pgconn.send_query_prepared(sql.name, [sql.argument])
            else:
                self._pgconn.send_query(sql.encode())
        except Exception as exc:
            self._die()
            raise SessionDied(_message(self._pgconn.get_error_message())) from exc
        self.unsettled = True

    def _collect(self, deadline: float | None) -> list[pq.abc.PGresult]:
        pgconn = self._pgconn
        results: list[pq.abc.PGresult] = []
        try:
            while True:
                while pgconn.is_busy():
                    if deadline is None:
                        ready = _wait(pgconn.socket, _IN, time.monotonic() + 3600)
                    else:
                        ready = _wait(pgconn.socket, _IN, deadline)
                    if ready:
                        pgconn.consume_input()
                    elif deadline is not None:
                        self._die()
                        raise SessionDied("the server did not answer in time")
                result = pgconn.get_result()
                if result is None:
                    break
                results.append(result)
        except SessionDied:
            raise
        except Exception as exc:  # psycopg.OperationalError: connection lost
            self._die()
            raise SessionDied(_message(pgconn.get_error_message())) from exc
        if pgconn.status != pq.ConnStatus.OK:
            self._die()
            raise SessionDied(_describe_failure(results, pgconn))
        self.unsettled = False
        self.last_answer = time.monotonic()
        for result in results:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise ServerRefused(
                    (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode(),
                    _message(result.get_error_message()),
                )
        return results

    # -- life --------------------------------------------------------------------

    def fileno(self) -> int | None:
        """The socket, to watch for a message the server sends unasked."""
        if self.dead:
            return None
        try:
            return self._pgconn.socket
        except Exception:  # psycopg.OperationalError: the connection is gone
            return None

    def _die(self) -> None:
        self.dead = True

    def close(self) -> None:
        """End the session; the server frees every lock held on it."""
        self.dead = True
        self._pgconn.finish()

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited socket, send nothing on it."""
        self.dead = True
        with contextlib.suppress(Exception):
            os.close(self._pgconn.socket)


def _rows(results: Sequence[pq.abc.PGresult]) -> list[list[str | None]]:
    if not results:
        return []
    last = results[-1]
    rows = []
    for row in range(last.ntuples):
        values = []
        for column in range(last.nfields):
            value = last.get_value(row, column)
            values.append(None if value is None else value.decode())
        rows.append(values)
    return rows


def _describe_failure(results: Sequence[pq.abc.PGresult], pgconn: pq.abc.PGconn) -> str:
    for result in results:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            return _message(result.get_error_message())
    return _message(pgconn.get_error_message())
