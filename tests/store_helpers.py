"""Spawn-safe targets for the store tests (importable at module level)."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing.connection
import os
import sys
import threading
from typing import Any

import pkgcache
import pkgcache._fs

WAIT = 30.0


# -- a writer killed in the middle of a write -----------------------------------


def add_then_block(
    root: str,
    package: str,
    source: str,
    key: str,
    conn: multiprocessing.connection.Connection,
) -> None:
    """Start ``txn.add(source)``; after half the bytes, report and block."""

    def half_copy(source_fd: int, target_fd: int) -> None:
        data = os.read(source_fd, 1 << 20)
        os.write(target_fd, data[: len(data) // 2])
        conn.send("mid-write")
        conn.recv()  # never answered: the test kills us here

    pkgcache._fs.copy_contents = half_copy
    with pkgcache.Cache(root).exclusive(package, timeout=WAIT) as txn:
        txn.add(source, key=key)


def tree_then_block(
    root: str, package: str, key: str, conn: multiprocessing.connection.Connection
) -> None:
    """Build a tree entry; after some files, report the staging path and wait.

    On "finish" the block ends and the tree is published; then "done".
    """
    with pkgcache.Cache(root).exclusive(package, timeout=WAIT) as txn:
        with txn.add_tree(key) as staging:
            (staging / "half.txt").write_text("half of a tree")
            conn.send(str(staging))
            if conn.recv() != "finish":
                return
    conn.send("done")


# -- the motivating race ---------------------------------------------------------


def race_reader(  # noqa: PLR0917 - Process args
    root: str,
    package: str,
    digests: dict[str, str],
    threads: int,
    stop: Any,
    reads: Any,
    results: Any,
) -> None:
    """Threads that find() the package and check every byte they read."""
    cache = pkgcache.Cache(root)
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            try:
                with cache.reading(package, timeout=WAIT) as view:
                    entry = view.find(package)
                    if entry is None:
                        continue
                    data = entry.path.read_bytes()
                if hashlib.sha256(data).hexdigest() != digests[entry.key]:
                    with lock:
                        errors.append(f"wrong bytes in {entry.key}")
                with reads.get_lock():
                    reads.value += 1
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT * 4)
    results.put(errors)


def race_writer(  # noqa: PLR0917 - Process args
    root: str, package: str, sources: list[str], stop: Any, cycles: Any, results: Any
) -> None:
    """Clean the package and add its versions back, over and over."""
    cache = pkgcache.Cache(root)
    errors: list[str] = []
    while not stop.is_set():
        try:
            cache.clean(package, timeout=WAIT)
            for source in sources:
                with cache.exclusive(package, timeout=WAIT) as txn:
                    txn.add(source)
            with cycles.get_lock():
                cycles.value += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    results.put(errors)


def other_worker(  # noqa: PLR0917 - Process args
    root: str, package: str, source: str, stop: Any, progress: Any, results: Any
) -> None:
    """Work on another package: add, find, read, clean, and count rounds."""
    cache = pkgcache.Cache(root)
    errors: list[str] = []
    while not stop.is_set():
        try:
            with cache.exclusive(package, timeout=WAIT) as txn:
                txn.add(source)
            with cache.reading(package, timeout=WAIT) as view:
                entry = view.find(package)
                assert entry is not None
                entry.path.read_bytes()
            cache.clean(package, timeout=WAIT)
            with progress.get_lock():
                progress.value += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    results.put(errors)


# -- a read-only file system ----------------------------------------------------


def make_read_only(inside: str) -> None:
    """Make every write under ``inside`` fail with EROFS (this process only)."""
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC
    real_open, real_mkdir = os.open, os.mkdir
    real_rename, real_unlink, real_rmdir = os.rename, os.unlink, os.rmdir
    real_utime = os.utime

    def refuse(path: object = None) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    def is_inside(path: Any, dir_fd: int | None) -> bool:
        if isinstance(path, int):
            return True
        if dir_fd is not None:
            return True  # the store and the locks only use folders of the cache
        return os.path.abspath(os.fspath(path)).startswith(inside)

    def open_(
        path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None
    ) -> int:
        if flags & writes and is_inside(path, dir_fd):
            refuse(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if is_inside(path, dir_fd):
            refuse(path)
        real_mkdir(path, mode, dir_fd=dir_fd)

    def rename(src: Any, dst: Any, **kwargs: Any) -> None:
        refuse(src)
        real_rename(src, dst, **kwargs)

    def unlink(path: Any, **kwargs: Any) -> None:
        refuse(path)
        real_unlink(path, **kwargs)

    def rmdir(path: Any, **kwargs: Any) -> None:
        refuse(path)
        real_rmdir(path, **kwargs)

    def utime(path: Any, *args: Any, **kwargs: Any) -> None:
        refuse(path)
        real_utime(path, *args, **kwargs)

    os.open, os.mkdir, os.rename = open_, mkdir, rename  # type: ignore[assignment]
    os.unlink, os.rmdir, os.utime = unlink, rmdir, utime  # type: ignore[assignment]


def read_only_probe(
    root: str,
    package: str,
    key: str,
    source: str,
    conn: multiprocessing.connection.Connection,
) -> None:
    """On a read-only cache: read everything, try every write; report."""
    make_read_only(root)
    cache = pkgcache.Cache(root)
    report: dict[str, Any] = {}
    with cache.reading(package, timeout=WAIT) as view:
        report["keys"] = [entry.key for entry in view.entries(package)]
        found = view.find(package)
        report["found"] = None if found is None else found.key
        report["bytes"] = view.path(package, key).read_bytes()
    for name, write in [
        ("add", lambda: _add(cache, package, source)),
        ("clean", lambda: cache.clean(package, timeout=WAIT)),
        ("clean-all", lambda: cache.clean(timeout=WAIT)),
    ]:
        try:
            write()
            report[name] = "no error"
        except pkgcache.CachePermissionError as exc:
            report[name] = f"CachePermissionError: {exc}"
        except Exception as exc:
            report[name] = f"{type(exc).__name__}: {exc}"
    conn.send(report)


def _add(cache: pkgcache.Cache, package: str, source: str) -> None:
    with cache.exclusive(package, timeout=WAIT) as txn:
        txn.add(source)


def read_only_miss(
    root: str, package: str, conn: multiprocessing.connection.Connection
) -> None:
    """On a read-only cache, look for a package that was never stored."""
    make_read_only(root)
    cache = pkgcache.Cache(root)
    with cache.reading(package, timeout=WAIT) as view:
        report: dict[str, object] = {
            "entries": view.entries(package),
            "find": view.find(package),
        }
        try:
            view.path(package, f"{package}-1.0-py3-none-any.whl")
        except pkgcache.CacheError as exc:
            report["path"] = type(exc).__name__
    conn.send(report)


# -- maintenance from a process that never wrote -----------------------------------


def frames() -> int:
    """How many frames deep the caller is."""
    frame, count = sys._getframe(1), 0
    while frame is not None:
        frame, count = frame.f_back, count + 1
    return count


def _maintenance(
    root: str, frames_allowed: int, conn: multiprocessing.connection.Connection
) -> None:
    sys.setrecursionlimit(frames() + frames_allowed)
    cache = pkgcache.Cache(root)

    def staged() -> str:
        report = cache.info(timeout=WAIT)
        return f"{report.staging_entries} staged, {report.staging_bytes} bytes"

    lines = []
    for label, call in (
        ("info", staged),
        ("prune", lambda: f"reaped {cache.prune(max_bytes=0, timeout=WAIT).reaped}"),
        ("clean(pkg)", lambda: cache.clean("demo", timeout=WAIT) and "ok"),
        ("clean()", lambda: cache.clean(timeout=WAIT) and "ok"),
    ):
        try:
            lines.append(f"{label}: {call()}")
        except BaseException as exc:
            lines.append(f"{label}: {type(exc).__name__}: {exc}")
    conn.send(lines)


def maintenance_in_another_process(root: str, *, frames_allowed: int) -> list[str]:
    """Run info(), prune(), clean("demo") and clean() in a spawn process.

    The process allows itself ``frames_allowed`` frames of recursion.
    Returns one line per call: what it gave, or the exception it raised.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_maintenance, args=(root, frames_allowed, child))
    process.start()
    try:
        if not parent.poll(WAIT * 4):
            raise TimeoutError("the maintenance process did not answer")
        lines: list[str] = parent.recv()
    finally:
        process.join(WAIT)
    return lines
