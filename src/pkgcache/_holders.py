"""Who holds a lock: processes from the kernel, threads from this process.

On Linux the kernel lists every flock in ``/proc/locks`` with the process id
that took it and the device and inode of the file; a ``->`` marks a request
that is blocked waiting. pkgcache matches those lines against its lock and
gate files, reads ``/proc/<pid>/cmdline`` for a command line, and adds the
names of the threads of this process that hold the lock. On other platforms
only this process's own threads can be named.

A process that holds the *gate* file of a lock is waiting for that lock (or
passing through in a few microseconds): it is reported as waiting.

How long a lock has been held is not recorded anywhere: the kernel keeps no
time for a flock, and writing one down would cost the uncontended path, which
is one ``flock`` call, more than a clock read. What can be known for free is
how long the holding process has existed (``/proc/<pid>/stat``), an upper
bound on its hold, and for a short-lived holder (``pkgcache run``, a ``uv``
command) close to it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._processlock import ProcessLock

__all__ = [
    "Holder",
    "command_of",
    "file_id",
    "format_seconds",
    "holders_of",
    "kernel_locks",
    "process_holder",
]

_PROC_LOCKS = "/proc/locks"
_MAX_COMMAND = 300


def format_seconds(seconds: float) -> str:
    """A duration for people: ``0.25 s``, ``3.2 s``, ``2 min 5 s``, ``3 h 12 min``."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


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
        process_age: seconds since the process started, where the platform
            tells it (Linux), else ``None``. The lock cannot have been held
            longer; how long it has been held is not recorded (see
            :doc:`stuck`).
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
    process_age: float | None = None
    host: str | None = None

    def describe(self) -> str:
        """One line for messages, e.g. ``pid 4242 holds the shared lock on ...``.

        ``pid 4242 holds the shared lock on package 'packaging' (threads:
        worker-1; process age 3.2 s) [uv pip install packaging]``; a waiter
        ``waits for`` the lock instead.
        """
        what = (
            "the whole cache" if self.package is None else f"package {self.package!r}"
        )
        role = "waits for" if self.waiting else "holds"
        lock = f"the {self.mode} lock" if self.mode else "the lock"
        where = f" on {self.host}" if self.host else ""
        text = f"pid {self.pid}{where} {role} {lock} on {what}"
        details = []
        if self.threads:
            details.append(f"threads: {', '.join(self.threads)}")
        if self.process_age is not None:
            details.append(f"process age {format_seconds(self.process_age)}")
        if details:
            text += f" ({'; '.join(details)})"
        if self.command:
            text += f" [{self.command}]"
        return text


def command_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    args = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    text = command_line(args)
    if len(text) > _MAX_COMMAND:
        text = text[: _MAX_COMMAND - 3] + "..."
    return text or None


def command_line(args: Iterable[str]) -> str:
    r"""``args`` as one line a shell would read back.

    Arguments are quoted as needed (``shlex.quote``); one with a line break or
    another control character (``python -c "import x<newline>..."``) is
    written ``$'import x\n...'``, so a holder's command stays on one line.
    """
    return " ".join(map(_quote, args))


def _quote(arg: str) -> str:
    if arg.isprintable():
        return shlex.quote(arg)
    # Bash's $'...' reads the escapes Python writes (\n, \x1b, \u2028).
    body = "".join(
        "\\'"
        if char == "'"
        else char
        if char.isprintable() and char != "\\"
        else char.encode("unicode_escape").decode("ascii")
        for char in arg
    )
    return f"$'{body}'"


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


def _uptime() -> float | None:
    """Seconds since boot (the clock of ``/proc/<pid>/stat``), or ``None``."""
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_holder(pid: int, **fields: Any) -> Holder:
    """A :class:`Holder` for process ``pid``, with its command line and age."""
    return Holder(
        pid=pid,
        command=command_of(pid),
        process_age=_process_age(pid, _uptime()),
        **fields,
    )


def _process_age(pid: int, uptime: float | None) -> float | None:
    """Seconds since process ``pid`` started, from ``/proc/<pid>/stat``."""
    if uptime is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces and parentheses: the
        # fields after it start after the last ")"; start time is field 22.
        started = int(stat.rpartition(b")")[2].split()[19]) / _clock_ticks()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started)


def file_id(path: str) -> str | None:
    """The ``major:minor:inode`` form /proc/locks uses (major, minor in hex)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def kernel_locks() -> list[tuple[str, int, str, bool]]:
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
    return [holder for lock in locks for holder in lock.holders()]
