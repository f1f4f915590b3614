"""Who holds a lock: processes from the kernel, threads from this process.

On Linux the kernel lists every flock in ``/proc/locks`` with the process id
that took it and the device and inode of the file; a ``->`` marks a request
that is blocked waiting. pkgcache matches those lines against its lock and
gate files, reads ``/proc/<pid>/cmdline`` for a command line, and adds the
names of the threads of this process that hold the lock. On other platforms
only this process's own threads can be named.

A process that holds the *gate* file of a lock is waiting for that lock (or
passing through in a few microseconds): it is reported as waiting.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._processlock import ProcessLock

__all__ = ["Holder", "holders_of"]

_PROC_LOCKS = "/proc/locks"
_MAX_COMMAND = 300


@attrs.frozen
class Holder:
    """One process holding (or waiting for) a pkgcache lock.

    Attributes:
        package: canonical package name, or ``None`` for the whole-cache lock.
        pid: process id.
        mode: ``"shared"`` or ``"exclusive"``; ``None`` when a waiter's mode
            cannot be known (it holds the gate file, not yet the lock).
        waiting: ``True`` for a process queued for the lock, ``False`` for a
            holder.
        command: the process's command line, when the platform tells it.
        threads: names of the threads of *this* process holding the lock
            (empty for other processes).
        path: the lock file (for a lock on a lock server, the lock's
            description).
        host: the host the process runs on, when the lock lives on a lock
            server shared by several hosts; ``None`` for a local lock.
    """

    package: str | None
    pid: int
    mode: str | None
    waiting: bool
    command: str | None
    threads: tuple[str, ...]
    path: str
    host: str | None = None

    def describe(self) -> str:
        """A one-line description for log messages and errors."""
        what = "whole cache" if self.package is None else repr(self.package)
        role = "waits for" if self.waiting else "holds"
        mode = f"{self.mode} " if self.mode else ""
        where = f" on {self.host}" if self.host else ""
        text = f"pid {self.pid}{where} {role} {mode}lock on {what}"
        if self.threads:
            text += f" (threads: {', '.join(self.threads)})"
        if self.command:
            text += f" [{self.command}]"
        return text


def _command_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    if len(text) > _MAX_COMMAND:
        text = text[: _MAX_COMMAND - 3] + "..."
    return text or None


def _file_id(path: str) -> str | None:
    """The ``major:minor:inode`` form /proc/locks uses (major, minor in hex)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _kernel_locks() -> list[tuple[str, int, str, bool]]:
    """``(file id, pid, mode, waiting)`` for every flock the kernel lists."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open(_PROC_LOCKS) as f:
            lines = f.readlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        waiting = len(fields) > 1 and fields[1] == "->"
        if waiting:
            del fields[1]
        # "<n>: FLOCK ADVISORY WRITE|READ <pid> <maj:min:inode> <start> <end>"
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            pid = int(fields[4])
        except ValueError:
            continue
        found.append(
            (fields[5], pid, "exclusive" if fields[3] == "WRITE" else "shared", waiting)
        )
    return found


def holders_of(locks: Iterable[ProcessLock]) -> list[Holder]:
    """Every process known to hold or wait for each of ``locks``.

    Holders come before waiters; this process's holding threads are named.
    """
    kernel = _kernel_locks()
    own_pid = os.getpid()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    commands: dict[int, str | None] = {}

    def command(pid: int) -> str | None:
        if pid not in commands:
            commands[pid] = _command_of(pid)
        return commands[pid]

    result: list[Holder] = []
    for lock in locks:
        lock_id = _file_id(lock.path)
        gate_id = _file_id(lock.gate_path)
        own = lock.holding_threads()
        threads = tuple(names.get(ident, f"thread {ident}") for ident, _ in own)
        found: dict[tuple[int, bool], Holder] = {}
        if own:
            found[own_pid, False] = Holder(
                package=lock.package,
                pid=own_pid,
                mode=own[0][1],
                waiting=False,
                command=command(own_pid),
                threads=threads,
                path=lock.path,
            )
        # Lock-file lines first, so a waiter seen there keeps its mode.
        for file_id, pid, mode, waiting in kernel:
            if file_id != lock_id or (pid, waiting) in found:
                continue
            found[pid, waiting] = Holder(
                package=lock.package,
                pid=pid,
                mode=mode,
                waiting=waiting,
                command=command(pid),
                threads=threads if pid == own_pid and not waiting else (),
                path=lock.path,
            )
        for file_id, pid, _mode, _waiting in kernel:
            # Holding (or queueing for) the gate means queued for the lock.
            if file_id != gate_id or (pid, True) in found or gate_id is None:
                continue
            found[pid, True] = Holder(
                package=lock.package,
                pid=pid,
                mode=None,
                waiting=True,
                command=command(pid),
                threads=(),
                path=lock.path,
            )
        result.extend(sorted(found.values(), key=lambda h: (h.waiting, h.pid)))
    return result
