"""The ``pkgcache`` command: look at, clean and lock a cache from a shell.

``pkgcache [OPTIONS] COMMAND [ARGS]``. The global options may come before or
after the command, as with ``uv`` and ``pip``:

``--cache-dir DIR``
    The cache; else ``$PKGCACHE_DIR``, else the platform's user cache
    folder (see :func:`default_cache_dir`). ``~`` is expanded.
``--locks URL``
    Hold the cache's locks on a lock server (``postgresql://...``, see
    :doc:`postgres`) instead of lock files; else ``$PKGCACHE_LOCKS``, else
    lock files. Every host and process of the cache must name the same
    server.
``--uv``
    Work on a uv cache, with the layout of :class:`pkgcache.uv.UvCache`
    (package locks beside it, never inside): ``--cache-dir``, else
    ``$UV_CACHE_DIR``, else the folder ``uv cache dir`` names.
``-q`` / ``-v``
    Say less (errors only) / more (every lock taken and released).

Commands that lock take ``--timeout`` (default ``$PKGCACHE_TIMEOUT``, else
wait as long as it takes); while one waits, it says who is in the way, at a
growing interval, and when it gets the lock.

Exit codes:

===  ==========================================================
0    success (``run``: the command's own exit code instead)
1    a failure: an unusable cache, an error from the file system
2    bad usage: an unknown option, a bad size or duration, an invalid
     package name
3    a lock was not granted within ``--timeout``
126  ``run``: the command cannot be executed
127  ``run``: the command was not found
128+N  ``run``: the command was killed by signal N, or pkgcache was
     interrupted by signal N while waiting for locks (130 for Ctrl-C)
===  ==========================================================

Errors are one line on stderr, never a traceback. ``dir``, ``info``,
``list``, ``locks``, ``clean``, ``prune`` and ``remove`` take ``--json``.
Read-only commands on a cache that does not exist report an empty cache
and create nothing; no command fills a folder that is not a cache (the rule
of :class:`pkgcache.Cache`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import attrs
from packaging.requirements import InvalidRequirement, Requirement

from . import _layout, _waits
from ._cache import Cache
from ._errors import CacheError, InvalidPackageName, LockTimeout
from ._names import canonical_name
from ._records import CacheInfo, Entry
from .uv import UvCache

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
ENV_TIMEOUT = "PKGCACHE_TIMEOUT"
ENV_LOCKS = "PKGCACHE_LOCKS"
ENV_UV_CACHE_DIR = "UV_CACHE_DIR"
PROG = "pkgcache"

# A person waits for the answer: say at once (after a hand-over's worth of
# time) why it does not come, instead of the library's one second.
FIRST_WAIT_REPORT = 0.1

# Signals ``run`` forwards to its command (those that exist on the platform).
_FORWARDED = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP")
    if hasattr(signal, name)
)


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


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


def _cache_dir(args: argparse.Namespace) -> Path:
    if args.cache_dir:
        return _layout.expand(args.cache_dir)
    if args.uv:
        env = os.environ.get(ENV_UV_CACHE_DIR)
        # Without either, uv itself says where its cache is.
        return _layout.expand(env) if env else UvCache().path
    env = os.environ.get(ENV_CACHE_DIR)
    return _layout.expand(env) if env else default_cache_dir()


def _locks(args: argparse.Namespace) -> str | None:
    """The lock server: ``--locks``, else ``$PKGCACHE_LOCKS``, else none (flock)."""
    return args.locks or os.environ.get(ENV_LOCKS) or None


def _uv_cache(args: argparse.Namespace, root: Path) -> UvCache:
    return UvCache(root, locks=_locks(args))


def _cache(args: argparse.Namespace, root: Path) -> Cache:
    """The cache at ``root``: pkgcache's own, or a uv cache's locks (``--uv``).

    Raises :class:`~pkgcache.NotACacheError` for a folder that is not a
    cache (the rule of :class:`Cache`, whose message says what to do), and
    :class:`~pkgcache.InvalidLockServer` for a bad ``--locks``.
    """
    return _uv_cache(args, root).cache if args.uv else Cache(root, locks=_locks(args))


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
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"invalid timeout {text!r} (seconds, or a number with a unit: "
            "30, 30s, 5m, 1h)"
        ) from None


def _package(text: str) -> str:
    try:
        return canonical_name(text)
    except InvalidPackageName as exc:
        raise ValueError(str(exc)) from None


def _requirement(text: str) -> Requirement:
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        # packaging's message draws a caret under the text on more lines.
        reason = str(exc).splitlines()[0]
        raise ValueError(f"invalid requirement {text!r}: {reason}") from None
    if requirement.url or requirement.extras or requirement.marker:
        raise ValueError(
            f"invalid requirement {text!r}: give a name and a version "
            "specifier only, e.g. 'setuptools-scm==8.2.0' or 'numpy<2'"
        )
    return requirement


# -- the parser ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports bad usage as one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """Options every command takes, before or after its name.

    The copy after the name has ``argparse.SUPPRESS`` defaults, so that one
    given before the name is not reset by the command's parser.
    """
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=default,
        help=f"the cache folder (default: ${ENV_CACHE_DIR}, else "
        f"{default_cache_dir()}; with --uv: ${ENV_UV_CACHE_DIR}, else uv's)",
    )
    parser.add_argument(
        "--locks",
        metavar="URL",
        default=default,
        help=f"hold the locks on this lock server (postgresql://...; default: "
        f"${ENV_LOCKS}, else lock files)",
    )
    parser.add_argument(
        "--uv",
        action="store_true",
        default=argparse.SUPPRESS if default is argparse.SUPPRESS else False,
        help="work on a uv cache, with package locks beside it (the layout "
        "of pkgcache.uv.UvCache)",
    )
    count = default if default is argparse.SUPPRESS else 0
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=count,
        help="print only errors and results",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=count,
        help="also log every lock taken and released",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``pkgcache`` argument parser."""
    from . import __version__  # noqa: PLC0415 - the package imports its modules

    anywhere = _Parser(add_help=False)
    _global_options(anywhere, default=argparse.SUPPRESS)
    parser = _Parser(
        prog=PROG,
        description="Look at, clean and lock a pkgcache cache (or, with --uv, "
        "a uv cache).",
        epilog=(
            "Exit codes: 0 success, 1 failure, 2 bad usage, 3 lock timeout; "
            "'run' passes the command's exit code through (128+N for signal N)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _global_options(parser, default=None)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    commands.required = True

    def command(
        name: str, help: str, *, json: bool = True, locks: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[anywhere])
        sub.set_defaults(handler=_HANDLERS[name])
        if json:
            sub.add_argument(
                "--json", action="store_true", help="print JSON for other tools"
            )
        if locks:
            sub.add_argument(
                "--timeout",
                type=_argtype(_timeout, "timeout"),
                default=None,
                metavar="S",
                help=f"seconds to wait for locks (default: ${ENV_TIMEOUT}, else "
                "as long as it takes); exit code 3 when they are not granted "
                "in time",
            )
        return sub

    def packages(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "packages", nargs="*", metavar="PKG", type=_argtype(_package, "package")
        )

    command("dir", "print the cache folder", locks=False)
    command("info", "count packages, entries, bytes and staging leftovers")
    sub = command("list", "list the entries of the cache, or of some packages")
    packages(sub)
    sub.add_argument(
        "--paths",
        action="store_true",
        help="print only the path of each entry (pip cache list --format=abspath)",
    )
    sub = command("clean", "remove the entries of some packages, or of the whole cache")
    packages(sub)
    sub = command(
        "remove",
        "remove the entries of one version of a package, or entries by key",
    )
    sub.add_argument(
        "requirement",
        metavar="PKG[SPEC]",
        type=_argtype(_requirement, "requirement"),
        help="a package and the versions to remove, e.g. 'setuptools-scm==8.2.0' "
        "or 'numpy<2'; a bare name with --key",
    )
    sub.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help="remove the entry with this key, as 'pkgcache list' shows it (repeatable)",
    )
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
    command("locks", "show who holds or waits for which lock", locks=False)
    sub = command(
        "run",
        "hold locks while a command runs, and exit with its exit code",
        json=False,
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
    sub.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command to run (after '--')",
    )
    return parser


def _timeout_from_environment(args: argparse.Namespace) -> None:
    if getattr(args, "timeout", 0) is not None:
        return
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if text:
        try:
            args.timeout = _timeout(text)
        except ValueError as exc:
            raise UsageError(f"${ENV_TIMEOUT}: {exc}") from None


# -- output -------------------------------------------------------------------


def _print_json(data: object, out: TextIO) -> None:
    json.dump(data, out, indent=2, sort_keys=True, default=str)
    out.write("\n")


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _note(args: argparse.Namespace, message: str) -> None:
    """A line for the person at the terminal (stderr), unless ``-q``."""
    if args.quiet <= args.verbose:
        print(f"{PROG}: {message}", file=sys.stderr)


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Show the ``pkgcache`` logger on stderr: waits at INFO, all with ``-v``."""
    verbosity = args.verbose - args.quiet
    level = (
        logging.DEBUG
        if verbosity > 0
        else logging.INFO
        if verbosity == 0
        else logging.WARNING
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger = _waits.logger
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        with _waits.reporting_after(FIRST_WAIT_REPORT):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _count(number: int, noun: str) -> str:
    """``1 entry``, ``2 entries``, ``0 staging leftovers``."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _what(packages: Sequence[str]) -> str:
    return ", ".join(packages) if packages else "the whole cache"


def _entry_json(entry: Entry) -> dict[str, Any]:
    data: dict[str, Any] = attrs.asdict(entry, recurse=False)
    data["path"] = str(entry.path)
    data["version"] = None if entry.version is None else str(entry.version)
    data["tags"] = sorted(str(tag) for tag in entry.tags)
    return data


def _print_removed(entries: Iterable[Entry]) -> None:
    for entry in entries:
        print(f"removed {entry.package} {entry.key} ({format_size(entry.size)})")


# What to use instead of the commands that read pkgcache's own entries.
_NOT_WITH_UV = {
    "info": "uv cache size",
    "list": "uv cache dir",
    "remove": "pkgcache --uv clean PKG",
}


def _refuse_with_uv(args: argparse.Namespace) -> None:
    """Refuse, before asking uv anything, what ``--uv`` cannot do."""
    if not args.uv:
        return
    if args.command in _NOT_WITH_UV:
        raise UsageError(
            f"'{args.command}' reads pkgcache's own entries, which a uv cache "
            f"does not have (try '{_NOT_WITH_UV[args.command]}')"
        )
    if args.command == "prune" and (
        args.max_size is not None or args.older_than is not None
    ):
        raise UsageError(
            "--max-size and --older-than prune pkgcache's own entries; "
            "'pkgcache --uv prune' runs 'uv cache prune'"
        )


def _deadline(timeout: float | None) -> Callable[[], float | None]:
    """The seconds left of ``timeout`` at each call (``None``: no limit)."""
    if timeout is None:
        return lambda: None
    deadline = time.monotonic() + timeout
    return lambda: max(0.0, deadline - time.monotonic())


# -- commands -----------------------------------------------------------------


def _cmd_dir(args: argparse.Namespace, root: Path) -> int:
    if not args.json:
        print(root)
        return EXIT_OK
    data: dict[str, Any] = {"cache_dir": str(root), "exists": root.is_dir()}
    if args.uv:
        data["locks_dir"] = str(UvCache(root).locks_dir)
    _print_json(data, sys.stdout)
    return EXIT_OK


def _cmd_info(args: argparse.Namespace, root: Path) -> int:
    exists = root.exists()
    # A cache that does not exist yet counts zero of everything.
    data: dict[str, Any] = {field.name: 0 for field in attrs.fields(CacheInfo)}
    if exists:
        data.update(attrs.asdict(_cache(args, root).info(timeout=args.timeout)))
    data["root"] = str(root)
    data["exists"] = exists
    data["per_package"] = {
        name: {"entries": entries, "bytes": size}
        for name, (entries, size) in sorted((data["per_package"] or {}).items())
    }
    if args.json:
        _print_json(data, sys.stdout)
        return EXIT_OK
    print(f"cache:    {root}{'' if exists else ' (does not exist yet)'}")
    print(f"packages: {data['packages']}")
    print(f"entries:  {data['entries']}")
    print(f"size:     {format_size(data['bytes'])} ({data['bytes']} bytes)")
    count, size = data["staging_entries"], data["staging_bytes"]
    print(
        f"staging:  {_count(count, 'leftover')}, {format_size(size)} ({size} bytes)"
        + ("; 'pkgcache prune' reaps those of dead writers" if count else "")
    )
    return EXIT_OK


def _cmd_list(args: argparse.Namespace, root: Path) -> int:
    packages = tuple(args.packages)
    entries: list[Entry] = []
    if root.exists():
        cache = _cache(args, root)
        remaining = _deadline(args.timeout)
        names = packages or tuple(sorted(cache.info(timeout=remaining()).per_package))
        # One package at a time: a listing never holds every package at once.
        for name in names:
            with cache.reading(name, timeout=remaining()) as view:
                entries.extend(view.entries(name))
    if args.json:
        _print_json([_entry_json(entry) for entry in entries], sys.stdout)
        return EXIT_OK
    for entry in entries:
        if args.paths:
            print(entry.path)
        else:
            print(f"{entry.package:30} {format_size(entry.size):>10}  {entry.key}")
    if not entries:
        where = f" of {', '.join(packages)}" if packages else ""
        _note(args, f"no entries{where} in {root}")
    return EXIT_OK


def _cmd_clean(args: argparse.Namespace, root: Path) -> int:
    packages = tuple(args.packages)
    data: dict[str, Any] = {"packages": list(packages), "exists": root.exists()}
    if not root.exists():
        if args.json:
            _print_json({**data, "entries_removed": 0, "bytes_freed": 0}, sys.stdout)
        else:
            print(f"nothing to clean: no cache at {root}")
        return EXIT_OK
    if args.uv:
        uv_cache = _uv_cache(args, root)
        if packages:
            done = uv_cache.clean(*packages, timeout=args.timeout)
        else:
            done = uv_cache.clean_all(timeout=args.timeout)
        said = "; ".join(line for line in done.stderr.splitlines() if line.strip())
        if args.json:
            _print_json({**data, "uv_output": done.stderr}, sys.stdout)
        else:
            print(f"cleaned {_what(packages)} with uv: {said or 'done'}")
        return EXIT_OK
    report = _cache(args, root).clean(*packages, timeout=args.timeout)
    if args.json:
        _print_json(
            {
                **data,
                "packages": list(report.packages),
                "entries_removed": report.entries_removed,
                "bytes_freed": report.bytes_freed,
            },
            sys.stdout,
        )
    else:
        print(
            f"cleaned {_what(packages)}: removed "
            f"{_count(report.entries_removed, 'entry')}, freed "
            f"{format_size(report.bytes_freed)}"
        )
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace, root: Path) -> int:
    requirement: Requirement = args.requirement
    name = canonical_name(requirement.name)
    keys = set(args.key)
    specifier = requirement.specifier
    if keys and specifier:
        raise UsageError("give either a version specifier or --key, not both")
    if not keys and not specifier:
        raise UsageError(
            f"name the versions to remove ('{name}==1.0') or the entries "
            f"(--key KEY); 'pkgcache clean {name}' removes every entry"
        )
    removed: list[Entry] = []
    if root.exists():
        with _cache(args, root).exclusive(name, timeout=args.timeout) as txn:
            for entry in txn.entries(name):
                if keys:
                    chosen = entry.key in keys
                else:
                    chosen = entry.version is not None and specifier.contains(
                        entry.version, prereleases=True
                    )
                if chosen and txn.remove(entry.key):
                    removed.append(entry)
    freed = sum(entry.size for entry in removed)
    if args.json:
        _print_json(
            {
                "package": name,
                "removed": [_entry_json(entry) for entry in removed],
                "bytes_freed": freed,
            },
            sys.stdout,
        )
        return EXIT_OK
    _print_removed(removed)
    print(f"removed {_count(len(removed), 'entry')}, freed {format_size(freed)}")
    missing = sorted(keys - {entry.key for entry in removed})
    if missing:
        _note(args, f"no entry {', '.join(map(repr, missing))} in package {name!r}")
    elif not removed:
        _note(args, f"no entry of {name!r} matches {specifier}")
    return EXIT_OK


def _cmd_prune(args: argparse.Namespace, root: Path) -> int:
    if not root.exists():
        if args.json:
            _print_json(
                {
                    "exists": False,
                    "removed": [],
                    "bytes_freed": 0,
                    "skipped": [],
                    "reaped": 0,
                },
                sys.stdout,
            )
        else:
            print(f"nothing to prune: no cache at {root}")
        return EXIT_OK
    if args.uv:
        done = _uv_cache(args, root).prune(timeout=args.timeout)
        said = "; ".join(line for line in done.stderr.splitlines() if line.strip())
        if args.json:
            _print_json({"exists": True, "uv_output": done.stderr}, sys.stdout)
        else:
            print(f"pruned with uv: {said or 'done'}")
        return EXIT_OK
    report = _cache(args, root).prune(
        max_bytes=args.max_size, older_than=args.older_than, timeout=args.timeout
    )
    if args.json:
        _print_json(
            {
                "exists": True,
                "removed": [_entry_json(entry) for entry in report.removed],
                "bytes_freed": report.bytes_freed,
                "skipped": list(report.skipped),
                "reaped": report.reaped,
            },
            sys.stdout,
        )
        return EXIT_OK
    _print_removed(report.removed)
    print(
        f"removed {_count(len(report.removed), 'entry')}, freed "
        f"{format_size(report.bytes_freed)}; reaped "
        f"{_count(report.reaped, 'staging leftover')}"
    )
    if report.skipped:
        print(f"skipped (in use): {', '.join(report.skipped)}")
    return EXIT_OK


def _cmd_locks(args: argparse.Namespace, root: Path) -> int:
    holders = _cache(args, root).holders() if root.exists() else []
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
    if args.uv:
        uv_cache = _uv_cache(args, root)
        cache, env = uv_cache.cache, uv_cache.environ()
    else:
        cache = Cache(root, locks=_locks(args))
        env = {**os.environ, ENV_CACHE_DIR: str(root)}
        if _locks(args):  # nested pkgcache commands meet the same locks
            env[ENV_LOCKS] = str(_locks(args))
    remaining = _deadline(args.timeout)
    with _SignalForwarder() as forwarder, ExitStack() as held:
        try:
            if args.exclusive_all or not modes:
                whole = cache.exclusive if args.exclusive_all else cache.reading
                held.enter_context(whole(timeout=remaining()))
            # One package per call, in the global lock order (sorted
            # canonical names), so each call only adds locks later in the
            # order than those already held and cannot deadlock.
            for name in sorted(modes):
                request = cache.exclusive if modes[name] else cache.reading
                held.enter_context(request(name, timeout=remaining()))
        except _Interrupted as exc:
            return EXIT_SIGNAL_BASE + exc.signum
        return forwarder.start(command, env)


_HANDLERS: dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "dir": _cmd_dir,
    "info": _cmd_info,
    "list": _cmd_list,
    "clean": _cmd_clean,
    "remove": _cmd_remove,
    "prune": _cmd_prune,
    "locks": _cmd_locks,
    "run": _cmd_run,
}


# -- entry point --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pkgcache`` on ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version, after printing
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        _timeout_from_environment(args)
        _refuse_with_uv(args)
        with _logging(args):
            code: int = args.handler(args, _cache_dir(args))
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except LockTimeout as exc:
        _error(str(exc))
        return EXIT_TIMEOUT
    except CacheError as exc:
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
