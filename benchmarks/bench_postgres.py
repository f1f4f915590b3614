"""Issue 15: the locks on PostgreSQL beside flock, and how failures go.

Everything runs on a PostgreSQL server started from the ``pgserver`` wheel
for the run, on this machine: over its unix socket (``pkgcache pg-unix``)
and over TCP on 127.0.0.1 (``pkgcache pg-tcp``), beside the flock engine
(``pkgcache``), in the same run. A network between hosts adds its round
trip to every lock call of the PostgreSQL contenders.

``postgres`` (the costs):

* uncontended: one ``with`` block of each call, as in ``uncontended``;
* hand-over: a holder in one process releases, a waiter in another holds
  it (release to grant);
* writer wait: reader processes take overlapping 5 ms holds while one
  process asks for the lock exclusively, as in ``writer-wait``;
* throughput: 8 processes, each ``exclusive(own package)`` for 1 ms in a
  loop, as in ``throughput``.

``postgres-failures``: how fast a lock comes back when its holder fails, and
how fast the holder finds out:

* ``kill -9`` of the holding process: the waiter's wait until granted;
* ``pg_terminate_backend`` of the holder's session: the waiter's wait, and
  the time until the holder's heartbeat marks the lock lost;
* a silent network cut (no packet passes, no connection closes): the time
  until the holder notices, and until the server frees the lock for the
  waiter. This needs a network namespace of its own (root, ``unshare`` and
  ``ip``), in which the holder talks to the server over a veth pair that is
  then taken down; without them the row says why it is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.pg_support import EngineServer, Server

import pkgcache
from benchmarks import bench_waiting
from benchmarks._common import (
    WAIT,
    Scale,
    interleaved,
    percentile,
    spread,
    table,
    uncontended_blocks,
)
from benchmarks._contenders import POSTGRES_URLS
from benchmarks._workers import Task, run_plan
from pkgcache._postgres import PostgresLocks

IDENTITY = "be7c" * 8
PACKAGE = "setuptools-scm"
KINDS = ("pkgcache", *POSTGRES_URLS)
HOLD = 0.001  # throughput: time held per iteration
WORKERS = 8  # throughput: processes on distinct packages


@contextlib.contextmanager
def _server() -> Iterator[Server]:
    """A server for the run; its URLs where the contenders look for them."""
    with Server.temporary() as server:
        os.environ[POSTGRES_URLS["pkgcache pg-unix"]] = server.unix_url
        os.environ[POSTGRES_URLS["pkgcache pg-tcp"]] = server.tcp_url
        try:
            yield server
        finally:
            for name in POSTGRES_URLS.values():
                os.environ.pop(name, None)


def _cache(kind: str, root: Path) -> pkgcache.Cache:
    if kind == "pkgcache":
        return pkgcache.Cache(root)
    return pkgcache.Cache(root, locks=os.environ[POSTGRES_URLS[kind]])


def _uncontended(scale: Scale, folder: str) -> tuple[dict[str, Any], list[Any]]:
    contenders = {}
    for kind in KINDS:
        cache = _cache(kind, Path(folder, f"uncontended-{kind.replace(' ', '-')}"))
        for call, block in uncontended_blocks(cache, PACKAGE).items():
            contenders[f"{kind} {call}"] = block
    results = interleaved(contenders, scale.rounds, scale.round_seconds)
    rows = []
    for call in ("reading(pkg)", "exclusive(pkg)", "reading()", "exclusive()"):
        flock = results[f"pkgcache {call}"]["median"]
        unix = results[f"pkgcache pg-unix {call}"]["median"]
        tcp = results[f"pkgcache pg-tcp {call}"]["median"]
        rows.append((call, flock, unix, tcp, unix / flock, tcp / flock))
    return results, rows


def _handover(scale: Scale, folder: str) -> tuple[dict[str, Any], list[Any]]:
    data: dict[str, Any] = {}
    rows = []
    for kind in KINDS:
        us: list[float] = []
        for round_index in range(scale.handover_rounds):
            work = Path(folder, f"handover-{kind.replace(' ', '-')}-{round_index}")
            work.mkdir()
            pair = bench_waiting._handover_pair(
                kind, str(work), "processes", scale.samples
            )
            us += [s * 1e6 for s in pair]
        data[kind] = spread(us)
        rows.append(
            (
                kind,
                len(us),
                statistics.median(us),
                percentile(us, 90),
                percentile(us, 99),
            )
        )
    return data, rows


def _writer_wait(scale: Scale, folder: str) -> tuple[dict[str, Any], list[Any]]:
    data: dict[str, Any] = {}
    rows = []
    for kind in KINDS:
        work = Path(folder, f"writer-{kind.replace(' ', '-')}")
        work.mkdir()
        result = data[kind] = bench_waiting._writer_run(kind, str(work), scale)
        rows.append(
            (
                kind,
                len(result["waits_ms"]),
                result["p50_ms"],
                result["p99_ms"],
                result["max_ms"],
                "yes" if result["starved"] else "no",
                result["reader_ops_s"],
            )
        )
    return data, rows


def _throughput(scale: Scale, folder: str) -> tuple[dict[str, Any], list[Any]]:
    work = Path(folder, "throughput")
    work.mkdir()
    plan = [
        Task(kind, None, scale.duration, HOLD)
        for _ in range(scale.repeats)
        for kind in KINDS
    ]
    counts = run_plan("processes", WORKERS, str(work), plan)
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for task, per_worker in zip(plan, counts, strict=True):
        rates[task.kind].append(sum(per_worker) / task.duration)
    ideal = WORKERS / HOLD
    rows = [
        (kind, statistics.median(r), f"{statistics.median(r) / ideal:.0%}")
        for kind, r in rates.items()
    ]
    return {"ops_s": rates}, rows


def postgres(scale: Scale, folder: str) -> dict[str, Any]:
    """The costs of the PostgreSQL engine beside flock, in one run."""
    with _server():
        uncontended, uncontended_rows = _uncontended(scale, folder)
        handover, handover_rows = _handover(scale, folder)
        writer, writer_rows = _writer_wait(scale, folder)
        throughput, throughput_rows = _throughput(scale, folder)
    print("\n## PostgreSQL beside flock: uncontended with-block (µs, median)")
    print(f"{scale.rounds} interleaved rounds; the server on this machine")
    print(
        table(
            ["call", "flock", "pg unix", "pg tcp", "unix/flock", "tcp/flock"],
            uncontended_rows,
        )
    )
    print("\n## PostgreSQL beside flock: hand-over across processes (µs)")
    print(table(["contender", "n", "median", "p90", "p99"], handover_rows))
    print(
        f"\n## PostgreSQL beside flock: writer wait under {scale.readers} reader "
        "processes (overlapping 5 ms shared holds)"
    )
    print(
        table(
            bench_waiting.WRITER_WAIT_COLUMNS,
            writer_rows,
        )
    )
    print(
        f"\n## PostgreSQL beside flock: {WORKERS} processes, each exclusive(own "
        f"package) held {HOLD * 1e3:g} ms (ops/s, median of {scale.repeats})"
    )
    print(table(["contender", "ops/s", "of ideal"], throughput_rows))
    return {
        "postgres": {
            "uncontended_us": uncontended,
            "handover_us": handover,
            "writer_wait": writer,
            "throughput": throughput,
        }
    }


def _waiting(server: Server, key: int) -> bool:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    rows = server.sql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        f" AND classid = {unsigned >> 32} AND objid = {unsigned & 0xFFFF_FFFF}"
    )
    return bool(rows[0][0])


def _until(condition: Any) -> float:
    """Poll ``condition`` (1 ms); the time it turned true."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition never came true")
        time.sleep(0.001)
    return time.monotonic()


class _Waiter:
    """A thread waiting for the exclusive lock; ``granted`` is when it got it."""

    def __init__(self, service: PostgresLocks, server: Server) -> None:
        self.engine = service.engine(PACKAGE)
        self.granted = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        _until(lambda: _waiting(server, self.engine.key))

    def _run(self) -> None:
        self.engine.acquire(True, time.monotonic() + WAIT)
        self.granted = time.monotonic()

    def join(self) -> float:
        self.thread.join(WAIT)
        self.engine.release()
        return self.granted


def _kill_9(server: Server, samples: int) -> list[float]:
    waits = []
    service = PostgresLocks(server.unix_url, IDENTITY)
    for _ in range(samples):
        holder = EngineServer(server.unix_url, IDENTITY)
        try:
            assert holder.call("try", PACKAGE, True)
            waiter = _Waiter(service, server)
            killed = time.monotonic()
            holder.process.kill()
            waits.append(waiter.join() - killed)
        finally:
            holder.close()
    service.close()
    return waits


def _terminate(server: Server, samples: int) -> tuple[list[float], list[float]]:
    waits, noticed = [], []
    holder = PostgresLocks(server.unix_url, IDENTITY)
    service = PostgresLocks(server.unix_url, IDENTITY)
    for _ in range(samples):
        engine = holder.engine(PACKAGE)
        assert engine.try_acquire(True)
        backend = engine._session.backend_pid  # type: ignore[union-attr]
        waiter = _Waiter(service, server)
        ended = time.monotonic()
        server.sql(f"SELECT pg_terminate_backend({backend})")
        noticed.append(_until(lambda engine=engine: engine._lost) - ended)
        waits.append(waiter.join() - ended)
        engine.release()
    holder.close()
    service.close()
    return waits, noticed


def _cut_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Linux network namespaces only"
    if os.geteuid() != 0:
        return "needs root (a network namespace and a veth pair)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _cut(samples: int) -> dict[str, Any]:
    """Run :func:`_cut_inside` in a network namespace of its own."""
    reason = _cut_unavailable()
    if reason is not None:
        return {"skipped": reason}
    command = ["unshare", "-n", sys.executable, "-m", "benchmarks.bench_postgres"]
    done = subprocess.run(
        [*command, "cut", str(samples)],
        capture_output=True,
        text=True,
        timeout=WAIT * (samples + 2),
        check=False,
    )
    if done.returncode != 0:
        return {"skipped": f"failed: {done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def _cut_client(url: str, ready: int, report: int) -> None:
    """In the client's own namespace: hold the lock; say when it is lost."""
    os.read(ready, 1)  # the veth end has arrived here
    _ip("link", "set", "lo", "up")
    _ip("addr", "add", "10.215.0.2/24", "dev", "pkgcache-b")
    _ip("link", "set", "pkgcache-b", "up")
    engine = PostgresLocks(url, IDENTITY).engine(PACKAGE)
    engine.acquire(True, time.monotonic() + WAIT)
    os.write(report, b"h")
    _until(lambda: engine._lost)
    os.write(report, b"l")
    threading.Event().wait(WAIT)


def _unshared(pid: int) -> bool:
    """Whether ``unshare`` has made its namespace and started Python."""
    return os.readlink(f"/proc/{pid}/exe") != shutil.which("unshare")


def _cut_inside(samples: int) -> dict[str, Any]:
    """In a fresh network namespace: the server, a waiter, a cut holder."""
    _ip("link", "set", "lo", "up")
    noticed, freed = [], []
    with Server.temporary(listen="*") as server:
        server.trust("10.215.0.0/24")
        url = f"postgresql://postgres@10.215.0.1:{server.port}/postgres"
        service = PostgresLocks(server.unix_url, IDENTITY)
        for _ in range(samples):
            ready_r, ready_w = os.pipe()
            report_r, report_w = os.pipe()
            client = subprocess.Popen(
                [
                    "unshare",
                    "-n",
                    sys.executable,
                    "-m",
                    "benchmarks.bench_postgres",
                    "cut-client",
                    url,
                    str(ready_r),
                    str(report_w),
                ],
                pass_fds=(ready_r, report_w),
            )
            os.close(ready_r)
            os.close(report_w)
            try:
                # The namespace exists once unshare has exec'd Python.
                _until(lambda pid=client.pid: _unshared(pid))
                _ip(
                    "link",
                    "add",
                    "pkgcache-a",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "pkgcache-b",
                )
                _ip("link", "set", "pkgcache-b", "netns", str(client.pid))
                _ip("addr", "add", "10.215.0.1/24", "dev", "pkgcache-a")
                _ip("link", "set", "pkgcache-a", "up")
                os.write(ready_w, b"g")
                assert os.read(report_r, 1) == b"h"
                waiter = _Waiter(service, server)
                cut = time.monotonic()
                _ip("link", "set", "pkgcache-a", "down")
                assert os.read(report_r, 1) == b"l"
                noticed.append(time.monotonic() - cut)
                freed.append(waiter.join() - cut)
            finally:
                client.kill()
                client.wait(WAIT)
                os.close(ready_w)
                os.close(report_r)
                subprocess.run(["ip", "link", "del", "pkgcache-a"], check=False)
        service.close()
    return {"noticed_s": noticed, "freed_s": freed}


def failures(scale: Scale, folder: str) -> dict[str, Any]:
    """When a holder dies, is cut off, or has its session ended."""
    samples = {"full": 10, "quick": 3}.get(scale.name, 1)
    with _server() as server:
        killed = _kill_9(server, samples)
        terminated, noticed = _terminate(server, samples * 3)
    cut = _cut(max(1, samples // 3))
    data = {
        "kill_9_granted_ms": spread([s * 1e3 for s in killed]),
        "terminate_granted_ms": spread([s * 1e3 for s in terminated]),
        "terminate_noticed_ms": spread([s * 1e3 for s in noticed]),
        "cut": cut,
    }
    rows: list[tuple[Any, ...]] = [
        ("kill -9 of the holder", "waiter granted", *_row(killed)),
        ("pg_terminate_backend", "waiter granted", *_row(terminated)),
        ("pg_terminate_backend", "holder notices (LockLost)", *_row(noticed)),
    ]
    if "skipped" in cut:
        rows.append(("silent network cut", cut["skipped"], "-", "-", "-", "-"))
    else:
        rows.append(("silent network cut", "holder notices", *_row(cut["noticed_s"])))
        rows.append(("silent network cut", "server frees it", *_row(cut["freed_s"])))
    print("\n## PostgreSQL: when a holder fails (ms)")
    print("unix socket, except the cut (TCP over a veth pair taken down)")
    print(table(["event", "what", "n", "median", "min", "max"], rows))
    return {"postgres_failures": data}


def _row(seconds: list[float]) -> tuple[Any, ...]:
    ms = [s * 1e3 for s in seconds]
    return (len(ms), spread(ms)["median"], min(ms), max(ms))


if __name__ == "__main__":
    if sys.argv[1] == "cut":
        print(json.dumps(_cut_inside(int(sys.argv[2]))))
    elif sys.argv[1] == "cut-client":
        _cut_client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
