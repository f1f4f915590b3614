"""The ``pkgcache`` command: look at, clean and lock a cache from a shell.

``pkgcache [--cache-dir DIR] COMMAND``; the cache is ``--cache-dir``, else
``$PKGCACHE_DIR``, else the platform's user cache folder (see
:func:`default_cache_dir`).

Exit codes:

===  ==========================================================
0    success (``run``: the command's own exit code instead)
1    a failure: an unusable cache, a missing cache for a read command,
     an error from the file system
2    bad usage: an unknown option, a bad size or duration, an invalid
     package name
3    a lock was not granted within ``--timeout``
126  ``run``: the command cannot be executed
127  ``run``: the command was not found
128+N  ``run``: the command was killed by signal N, or pkgcache was
     interrupted by signal N while waiting for locks (130 for Ctrl-C)
===  ==========================================================

Errors are one line on stderr, never a traceback. Read-only commands
(``dir``, ``info``, ``list``, ``locks``) take ``--json``. ``info``, ``list``
and ``locks`` never create a cache that does not exist.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO, TypeVar

import attrs

from ._cache import Cache
from ._errors import CacheError, InvalidPackageName, LockTimeout
from ._holders import Holder
from ._names import canonical_name
from ._records import Entry

__all__ = [
    "EXIT_FAILURE",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "default_cache_dir",
    "format_size",
    "main",
    "parse_duration",
    "parse_size",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
EXIT_SIGNAL_BASE = 128

ENV_CACHE_DIR = "PKGCACHE_DIR"
PROG = "pkgcache"

_T = TypeVar("_T")

# Signals ``run`` forwards to its command (those that exist on the platform).
_FORWARDED = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP")
    if hasattr(signal, name)
)


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


class Failure(Exception):
    """A failure to report in one line (exit code 1)."""


# -- the cache folder ---------------------------------------------------------


def default_cache_dir() -> Path:
    r"""The platform's user cache folder for pkgcache.

    ``$XDG_CACHE_HOME/pkgcache`` (when set to an absolute path) or
    ``~/.cache/pkgcache`` on Linux and other POSIX systems,
    ``~/Library/Caches/pkgcache`` on macOS, and
    ``%LOCALAPPDATA%\pkgcache\Cache`` on Windows.
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or os.path.join(
            os.path.expanduser("~"), "AppData", "Local"
        )
        return Path(local, "pkgcache", "Cache")
    if sys.platform == "darwin":
        return Path(os.path.expanduser("~"), "Library", "Caches", "pkgcache")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative path is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg, "pkgcache")
    return Path(os.path.expanduser("~"), ".cache", "pkgcache")


def _cache_dir(option: str | None) -> Path:
    if option:
        return Path(os.path.abspath(os.path.expanduser(option)))
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(os.path.abspath(os.path.expanduser(env)))
    return default_cache_dir()


def _existing_cache(root: Path) -> Cache:
    """A :class:`Cache` on ``root``, which must already exist (never created)."""
    if not root.exists():
        raise Failure(f"no cache at {root} (nothing has been cached there yet)")
    return _usable_cache(root)


def _usable_cache(root: Path) -> Cache:
    """A :class:`Cache` on ``root``, refusing a folder that is not a cache.

    Opening a cache creates ``.lock``, ``locks/`` and ``CACHEDIR.TAG`` (which
    makes backup tools skip the folder): a mistyped ``--cache-dir ~`` must not
    do that to a home folder. A folder qualifies when it is missing or empty,
    or already has ``locks/`` (pkgcache) or ``.lock`` (uv's protocol).
    """
    if root.exists():
        if not root.is_dir():
            raise Failure(f"{root} is not a directory")
        markers = (root / "locks").is_dir() or (root / ".lock").is_file()
        if not markers and any(root.iterdir()):
            raise Failure(
                f"{root} is not a pkgcache cache (no locks/ or .lock in it); "
                "refusing to add cache files to it"
            )
    return Cache(root)


# -- sizes, durations, names -------------------------------------------------------

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*\Z", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*\Z", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in ``text``: a number with an optional unit K, M, G or T.

    Units are binary (``1K`` = 1024 bytes) and may end in ``iB`` or ``B``:
    ``10G``, ``10GiB`` and ``10GB`` are all ``10 * 2**30`` bytes; ``512`` and
    ``512B`` are bytes.

    Raises:
        ValueError: ``text`` is not a size.
    """
    match = _SIZE.match(text)
    if not match or ((match.group(3) or "").lower() == "ib" and not match.group(2)):
        raise ValueError(
            f"invalid size {text!r} (use a number with K, M, G or T, e.g. 10G)"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit s, m, h, d or w.

    ``30d`` is thirty days, ``1.5h`` ninety minutes; a bare number is seconds.

    Raises:
        ValueError: ``text`` is not a duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"invalid duration {text!r} (use a number with s, m, h, d or w, e.g. 30d)"
        )
    return float(match.group(1)) * _SECONDS[match.group(2).lower() or "s"]


def format_size(size: int) -> str:
    """``size`` bytes in binary units, e.g. ``1.5 GiB`` or ``512 B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _argtype(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, CacheError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


def _timeout(text: str) -> float:
    value = float(text)
    if math.isnan(value) or value < 0:
        raise ValueError(f"invalid timeout {text!r} (seconds, a number >= 0)")
    return value


def _package(text: str) -> str:
    try:
        return canonical_name(text)
    except InvalidPackageName as exc:
        raise ValueError(str(exc)) from None


# -- the parser ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports bad usage as one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The ``pkgcache`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Look at, clean and lock a pkgcache cache.",
        epilog=(
            "Exit codes: 0 success, 1 failure, 2 bad usage, 3 lock timeout; "
            "'run' passes the command's exit code through (128+N for signal N)."
        ),
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"the cache folder (default: ${ENV_CACHE_DIR}, else "
        f"{default_cache_dir()})",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    commands.required = True

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=_HANDLERS[name])
        return sub

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--json", action="store_true", help="print JSON for other tools"
        )

    def timeout_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--timeout",
            type=_argtype(_timeout, "timeout"),
            default=None,
            metavar="S",
            help="seconds to wait for locks (default: wait as long as it takes); "
            "exit code 3 when they are not granted in time",
        )

    json_option(command("dir", "print the cache folder"))
    json_option(command("info", "count packages, entries and bytes"))
    sub = command("list", "list the entries of the cache, or of some packages")
    sub.add_argument(
        "packages", nargs="*", metavar="PKG", type=_argtype(_package, "package")
    )
    json_option(sub)
    sub = command("clean", "remove the entries of some packages, or of the whole cache")
    sub.add_argument(
        "packages", nargs="*", metavar="PKG", type=_argtype(_package, "package")
    )
    timeout_option(sub)
    sub = command(
        "prune",
        "remove least recently used entries until under the limits; skip "
        "packages in use",
    )
    sub.add_argument(
        "--max-size",
        type=_argtype(parse_size, "size"),
        metavar="SIZE",
        help="keep at most this much (K, M, G, T; binary units), e.g. 10G",
    )
    sub.add_argument(
        "--older-than",
        type=_argtype(parse_duration, "duration"),
        metavar="AGE",
        help="remove entries unused for this long (s, m, h, d, w), e.g. 30d",
    )
    json_option(command("locks", "show who holds or waits for which lock"))
    sub = command(
        "run",
        "hold locks while a command runs, and exit with its exit code",
    )
    sub.add_argument(
        "--read",
        action="append",
        default=[],
        metavar="PKG",
        type=_argtype(_package, "package"),
        help="hold PKG shared (repeatable)",
    )
    sub.add_argument(
        "--exclusive",
        action="append",
        default=[],
        metavar="PKG",
        type=_argtype(_package, "package"),
        help="hold PKG exclusive (repeatable)",
    )
    sub.add_argument(
        "--exclusive-all",
        action="store_true",
        help="hold the whole cache exclusive (like 'uv cache clean')",
    )
    timeout_option(sub)
    sub.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command to run (after '--')",
    )
    return parser


# -- output -------------------------------------------------------------------


def _print_json(data: object, out: TextIO) -> None:
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _holders_line(holders: Sequence[Holder]) -> str:
    return "; ".join(h.describe() for h in holders) or "no holder could be identified"


# -- commands -----------------------------------------------------------------


def _cmd_dir(args: argparse.Namespace, root: Path) -> int:
    if args.json:
        _print_json({"cache_dir": str(root), "exists": root.is_dir()}, sys.stdout)
    else:
        print(root)
    return EXIT_OK


def _cmd_info(args: argparse.Namespace, root: Path) -> int:
    info = _existing_cache(root).info()
    if args.json:
        _print_json(
            {
                "root": str(info.root),
                "packages": info.packages,
                "entries": info.entries,
                "bytes": info.bytes,
                "per_package": {
                    name: {"entries": entries, "bytes": size}
                    for name, (entries, size) in sorted(info.per_package.items())
                },
            },
            sys.stdout,
        )
        return EXIT_OK
    print(f"cache:    {info.root}")
    print(f"packages: {info.packages}")
    print(f"entries:  {info.entries}")
    print(f"size:     {format_size(info.bytes)} ({info.bytes} bytes)")
    return EXIT_OK


def _entry_json(entry: Entry) -> dict[str, Any]:
    data: dict[str, Any] = attrs.asdict(entry, recurse=False)
    data["path"] = str(entry.path)
    data["version"] = None if entry.version is None else str(entry.version)
    data["tags"] = sorted(str(tag) for tag in entry.tags)
    return data


def _cmd_list(args: argparse.Namespace, root: Path) -> int:
    cache = _existing_cache(root)
    packages = tuple(args.packages)
    names = packages or tuple(sorted(cache.info().per_package))
    entries: list[Entry] = []
    # One package at a time: a listing never holds every package at once.
    for name in names:
        with cache.reading(name) as view:
            entries.extend(view.entries(name))
    if args.json:
        _print_json([_entry_json(entry) for entry in entries], sys.stdout)
        return EXIT_OK
    for entry in entries:
        print(f"{entry.package:30} {format_size(entry.size):>10}  {entry.key}")
    return EXIT_OK


def _patiently(
    cache: Cache,
    packages: Sequence[str],
    attempt: Callable[[float | None], _T],
    timeout: float | None,
) -> _T:
    """Call ``attempt(0)``; if a lock is busy, say once who holds it, then wait."""
    if timeout == 0:
        return attempt(0)
    try:
        return attempt(0)
    except LockTimeout:
        pass
    what = ", ".join(packages) if packages else "the whole cache"
    holders = [h for h in cache.holders(*packages) if not h.waiting]
    print(
        f"{PROG}: waiting for {what}: {_holders_line(holders)}",
        file=sys.stderr,
        flush=True,
    )
    return attempt(timeout)


def _cmd_clean(args: argparse.Namespace, root: Path) -> int:
    if not root.exists():
        print(f"nothing to clean: no cache at {root}")
        return EXIT_OK
    cache = _usable_cache(root)
    packages = tuple(args.packages)
    report = _patiently(
        cache,
        packages,
        lambda timeout: cache.clean(*packages, timeout=timeout),
        args.timeout,
    )
    what = ", ".join(packages) if packages else "the whole cache"
    print(
        f"cleaned {what}: removed {report.entries_removed} entries, "
        f"freed {format_size(report.bytes_freed)}"
    )
    return EXIT_OK


def _cmd_prune(args: argparse.Namespace, root: Path) -> int:
    if not root.exists():
        print(f"nothing to prune: no cache at {root}")
        return EXIT_OK
    report = _usable_cache(root).prune(
        max_bytes=args.max_size, older_than=args.older_than
    )
    for entry in report.removed:
        print(f"removed {entry.package} {entry.key} ({format_size(entry.size)})")
    print(
        f"removed {len(report.removed)} entries, freed "
        f"{format_size(report.bytes_freed)}; reaped {report.reaped} staging "
        "leftovers"
    )
    if report.skipped:
        print(f"skipped (in use): {', '.join(report.skipped)}")
    return EXIT_OK


def _cmd_locks(args: argparse.Namespace, root: Path) -> int:
    holders = _existing_cache(root).holders()
    if args.json:
        _print_json([attrs.asdict(h) for h in holders], sys.stdout)
        return EXIT_OK
    if not holders:
        print("no locks held")
    for holder in holders:
        print(holder.describe())
    return EXIT_OK


# -- run ----------------------------------------------------------------------


class _Interrupted(BaseException):
    """A forwarded signal arrived before the command started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminal_sent(signum: int) -> bool:
    """Whether ``signum`` most likely came from the terminal (Ctrl-C, hang-up).

    The terminal signals its whole foreground process group, so a command in
    our group has received it too: forwarding it would deliver it twice.
    """
    if signum == getattr(signal, "SIGTERM", None) or not hasattr(os, "tcgetpgrp"):
        return False
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            if os.tcgetpgrp(stream.fileno()) == os.getpgrp():
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


class _SignalForwarder:
    """Signal handlers for ``run``.

    Before the command starts, a signal aborts the wait for locks (the locks
    taken so far are released by the ``with`` blocks). Once it runs, a
    signal is passed on to the command, and pkgcache waits for it to exit.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.started = False
        self.pending: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for signum in _FORWARDED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.started:
            raise _Interrupted(signum)
        if self.child is None:
            self.pending.append(signum)
        elif not _terminal_sent(signum):
            self._send(signum)

    def _send(self, signum: int) -> None:
        if self.child is not None and self.child.returncode is None:
            with contextlib.suppress(OSError):  # it has just exited
                self.child.send_signal(signum)

    def start(self, command: Sequence[str], env: dict[str, str]) -> int:
        """Run ``command`` to completion; return its exit code (shell style)."""
        self.started = True
        try:
            self.child = subprocess.Popen(command, env=env)
        except FileNotFoundError:
            _error(f"command not found: {command[0]}")
            return EXIT_NOT_FOUND
        except PermissionError:
            _error(f"cannot execute: {command[0]}")
            return EXIT_CANNOT_EXECUTE
        except OSError as exc:
            _error(f"cannot run {command[0]}: {exc.strerror or exc}")
            return EXIT_CANNOT_EXECUTE
        for signum in self.pending:
            self._send(signum)
        returncode = self.child.wait()
        if returncode < 0:
            return EXIT_SIGNAL_BASE - returncode
        return returncode


def _cmd_run(args: argparse.Namespace, root: Path) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        del command[0]
    if not command:
        raise UsageError("run needs a command after '--' (see 'pkgcache run --help')")
    if args.exclusive_all and (args.read or args.exclusive):
        raise UsageError(
            "--exclusive-all covers every package: drop --read and --exclusive"
        )
    exclusive = set(args.exclusive)
    modes = {name: name in exclusive for name in {*args.read, *exclusive}}
    cache = _usable_cache(root)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    held = ExitStack()

    def take(name: str, timeout: float | None) -> None:
        request = cache.exclusive if modes[name] else cache.reading
        held.enter_context(request(name, timeout=timeout))

    env = dict(os.environ)
    env[ENV_CACHE_DIR] = str(root)
    with _SignalForwarder() as forwarder, held:
        try:
            if args.exclusive_all or not modes:
                whole = cache.exclusive if args.exclusive_all else cache.reading
                _patiently(
                    cache,
                    (),
                    lambda t: held.enter_context(whole(timeout=t)),
                    remaining(),
                )
            # Mixed modes: one package per call, in the global lock order
            # (sorted canonical names), so each call only adds locks later in
            # the order than those already held and cannot deadlock.
            for name in sorted(modes):
                _patiently(cache, (name,), functools.partial(take, name), remaining())
        except _Interrupted as exc:
            return EXIT_SIGNAL_BASE + exc.signum
        return forwarder.start(command, env)


_HANDLERS: dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "dir": _cmd_dir,
    "info": _cmd_info,
    "list": _cmd_list,
    "clean": _cmd_clean,
    "prune": _cmd_prune,
    "locks": _cmd_locks,
    "run": _cmd_run,
}


# -- entry point --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pkgcache`` on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        root = _cache_dir(args.cache_dir)
        code: int = args.handler(args, root)
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except LockTimeout as exc:
        _error(str(exc))
        return EXIT_TIMEOUT
    except (Failure, CacheError) as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # The reader of our output went away (``pkgcache list | head``).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILURE
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_SIGNAL_BASE + signal.SIGINT
    return code
