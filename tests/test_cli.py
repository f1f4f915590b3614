"""The ``pkgcache`` command: in process through ``main()``, and as a process."""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest

import pkgcache
import pkgcache.uv
from pkgcache import _cli
from pkgcache._cli import main, parse_duration, parse_size

WAIT = 30.0
PY = sys.executable


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def on_log(needle: str, action: Callable[[], None]) -> Iterator[None]:
    """Call ``action`` when the pkgcache logger says something with ``needle``.

    Records of a wait come from the watchdog thread: releasing a holder from
    there lets the command, blocked in this thread, go on.
    """

    class Trigger(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if needle in record.getMessage():
                action()

    logger = logging.getLogger("pkgcache")
    handler = Trigger()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextmanager
def held_in_thread(
    cache: pkgcache.Cache, mode: str, *packages: str
) -> Iterator[threading.Event]:
    """Hold locks in another thread for the with-block; set the event to release."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        request = (
            cache.exclusive(*packages) if mode == "x" else cache.reading(*packages)
        )
        with request:
            held.set()
            release.wait(WAIT)

    thread = threading.Thread(target=hold, name="holder")
    thread.start()
    try:
        assert held.wait(WAIT)
        yield release
    finally:
        release.set()
        thread.join(WAIT)


# -- values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("1K", 1024),
        ("1k", 1024),
        ("1KiB", 1024),
        ("1KB", 1024),
        ("1.5M", 3 << 19),
        ("10G", 10 << 30),
        ("10GiB", 10 << 30),
        ("2T", 2 << 40),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "10X", "-1G", "1iB", "10 G B", "1e3"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("5m", 300), ("1.5h", 5400), ("30d", 2592000)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration("2w") == 14 * 86400


@pytest.mark.parametrize("text", ["", "d", "30y", "-1d", "soon"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_size() -> None:
    assert _cli.format_size(0) == "0 B"
    assert _cli.format_size(1023) == "1023 B"
    assert _cli.format_size(1536) == "1.5 KiB"
    assert _cli.format_size(10 << 30) == "10.0 GiB"
    assert _cli.format_size(3 << 50) == "3072.0 TiB"


# -- the cache folder -----------------------------------------------------------


def test_default_cache_dir_per_platform(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert _cli.default_cache_dir() == tmp_path / ".cache" / "pkgcache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _cli.default_cache_dir() == tmp_path / "xdg" / "pkgcache"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert _cli.default_cache_dir() == tmp_path / ".cache" / "pkgcache"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _cli.default_cache_dir() == tmp_path / "Library" / "Caches" / "pkgcache"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert _cli.default_cache_dir() == tmp_path / "local" / "pkgcache" / "Cache"


def test_dir_option_beats_environment_beats_default(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PKGCACHE_DIR", raising=False)
    assert run_main(capsys, "dir") == (0, f"{tmp_path / 'xdg' / 'pkgcache'}\n", "")
    monkeypatch.setenv("PKGCACHE_DIR", str(tmp_path / "env"))
    assert run_main(capsys, "dir") == (0, f"{tmp_path / 'env'}\n", "")
    code, out, _ = run_main(capsys, "--cache-dir", str(tmp_path / "opt"), "dir")
    assert (code, out) == (0, f"{tmp_path / 'opt'}\n")
    code, out, _ = run_main(capsys, "dir", "--json")
    assert json.loads(out) == {"cache_dir": str(tmp_path / "env"), "exists": False}
    assert not (tmp_path / "env").exists()


def test_global_options_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PKGCACHE_DIR", raising=False)
    for argv in (
        ["--cache-dir", "~/before", "dir"],
        ["dir", "--cache-dir", "~/before"],
        ["--cache-dir", "elsewhere", "dir", "--cache-dir", "~/before"],
        ["-q", "dir", "-v", "--cache-dir=~/before"],
    ):
        assert run_main(capsys, *argv) == (0, f"{tmp_path / 'home' / 'before'}\n", "")
    # The replay: 'pkgcache info --cache-dir X' was a usage error.
    code, out, _ = run_main(capsys, "info", "--cache-dir", str(tmp_path / "x"))
    assert (code, out.splitlines()[0]) == (
        0,
        f"cache:    {tmp_path / 'x'} (does not exist yet)",
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "--version") == (
        0,
        f"pkgcache {pkgcache.__version__}\n",
        "",
    )


# -- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["list", "../etc"], "invalid package name '../etc'"),
        (["clean", "a/b"], "invalid package name 'a/b'"),
        (["run", "--read", "-x", "--", "true"], "expected one argument"),
        (["run", "--exclusive", ".hidden", "--", "true"], "invalid package name"),
        (["prune", "--max-size", "10X"], "invalid size '10X'"),
        (["prune", "--older-than", "soon"], "invalid duration 'soon'"),
        (["clean", "--timeout", "-1"], "invalid timeout '-1'"),
        (["clean", "--timeout", "nan"], "invalid timeout 'nan'"),
        (["info", "--timeout", "abc"], "invalid timeout 'abc' (seconds, or a"),
        (["run"], "run needs a command"),
        (["run", "--"], "run needs a command"),
        (["run", "--exclusive-all", "--read", "a", "--", "true"], "covers every"),
        (["remove", "a"], "name the versions to remove ('a==1.0') or the entries"),
        (["remove", "a==1", "--key", "k"], "either a version specifier or --key"),
        (["remove", "a[x]==1"], "give a name and a version specifier only"),
        (["remove", "a=1"], "invalid requirement 'a=1'"),
        (["--uv", "info"], "try 'uv cache size'"),
        (["--uv", "list"], "a uv cache does not have"),
        (["--uv", "prune", "--max-size", "1G"], "runs 'uv cache prune'"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    code, out, err = run_main(capsys, "--cache-dir", str(tmp_path / "c"), *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("pkgcache: error: ")
    assert message in err
    assert "could not convert" not in err
    assert not (tmp_path / "c").exists()


def test_timeout_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    root = tmp_path / "cache"
    cache = pkgcache.Cache(root)
    monkeypatch.setenv("PKGCACHE_TIMEOUT", "0")
    with held_in_thread(cache, "x"):
        code, out, err = run_main(capsys, "--cache-dir", str(root), "info")
    assert (code, out) == (3, "")
    assert err.startswith("pkgcache: error: timed out after ")
    monkeypatch.setenv("PKGCACHE_TIMEOUT", "soon")
    code, _, err = run_main(capsys, "--cache-dir", str(root), "info")
    assert code == 2
    assert err == (
        "pkgcache: error: $PKGCACHE_TIMEOUT: invalid timeout 'soon' (seconds, or "
        "a number with a unit: 30, 30s, 5m, 1h)\n"
    )


@pytest.mark.parametrize(
    ("command", "out"),
    [
        (
            ["info"],
            "cache:    {root} (does not exist yet)\npackages: 0\nentries:  0\n"
            "size:     0 B (0 bytes)\nstaging:  0 leftovers, 0 B (0 bytes)\n",
        ),
        (["list"], ""),
        (["list", "a"], ""),
        (["list", "--paths"], ""),
        (["locks"], "no locks held\n"),
        (["dir"], "{root}\n"),
    ],
)
def test_read_commands_on_a_missing_cache_report_it_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], out: str
) -> None:
    # Like 'uv cache size' (0) and 'pip cache info' (0 bytes): exit 0.
    root = tmp_path / "missing"
    code, stdout, _ = run_main(capsys, "--cache-dir", str(root), *command)
    assert (code, stdout) == (0, out.format(root=root))
    assert not root.exists()


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (
            ["info"],
            {
                "root": "{root}",
                "exists": False,
                "packages": 0,
                "entries": 0,
                "bytes": 0,
                "per_package": {},
            },
        ),
        (["list"], []),
        (["locks"], []),
        (["dir"], {"cache_dir": "{root}", "exists": False}),
        (
            ["clean", "a"],
            {
                "packages": ["a"],
                "exists": False,
                "entries_removed": 0,
                "bytes_freed": 0,
            },
        ),
        (
            ["prune"],
            {
                "exists": False,
                "removed": [],
                "bytes_freed": 0,
                "skipped": [],
                "reaped": 0,
            },
        ),
        (["remove", "a==1"], {"package": "a", "removed": [], "bytes_freed": 0}),
    ],
)
def test_json_on_a_missing_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], data: object
) -> None:
    root = tmp_path / "missing"
    code, out, _ = run_main(capsys, "--cache-dir", str(root), *command, "--json")
    assert code == 0
    expected = json.loads(json.dumps(data).replace("{root}", str(root)))
    if isinstance(expected, dict) and "root" in expected:
        # What CacheInfo holds besides (staging leftovers, when it counts them).
        assert {k: v for k, v in json.loads(out).items() if k in expected} == expected
    else:
        assert json.loads(out) == expected
    assert not root.exists()


def test_a_file_as_cache_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a cache")
    for command in (["locks"], ["info"], ["run", "--", "true"]):
        code, out, err = run_main(
            capsys, "--cache-dir", str(tmp_path / "file"), *command
        )
        assert (code, out) == (1, "")
        assert err == (
            f"pkgcache: error: refusing to use {tmp_path / 'file'}: the cache root "
            "is not a directory\n"
        )
    assert (tmp_path / "file").read_text() == "not a cache"


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["list"],
        ["locks"],
        ["clean"],
        ["clean", "a"],
        ["remove", "a==1"],
        ["prune", "--max-size", "0"],
        ["run", "--", "true"],
    ],
)
def test_a_folder_that_is_not_a_cache_is_left_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    # A mistyped --cache-dir (a home folder, a project) gets no lock files
    # and no CACHEDIR.TAG, which would make backup tools skip it.
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run_main(capsys, "--cache-dir", str(tmp_path), *command)
    assert (code, out) == (1, "")
    assert err == (
        f"pkgcache: error: {tmp_path} is not a pkgcache cache: it holds other "
        "files (notes.txt); refusing to add cache files to it (its CACHEDIR.TAG "
        "would make backup tools skip it). Use a new or empty folder, or pass "
        "adopt=True to Cache\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def make_uv_cache(path: Path) -> Path:
    """A uv cache as ``uv`` lays it out (``uv venv`` made this one)."""
    path.mkdir()
    (path / ".lock").touch()
    (path / ".gitignore").write_text("*")
    (path / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55")
    (path / "sdists-v11").mkdir()
    return path


@pytest.mark.parametrize("command", [["info"], ["locks"], ["run", "--", "true"]])
def test_a_uv_cache_is_refused_with_the_uv_hint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    uv_cache = make_uv_cache(tmp_path / "uv")
    code, out, err = run_main(capsys, "--cache-dir", str(uv_cache), *command)
    assert (code, out) == (1, "")
    assert err == (
        f"pkgcache: error: {uv_cache} is not a pkgcache cache: it looks like a uv "
        "cache (sdists-v11), and 'uv cache prune' would delete pkgcache's locks/ "
        "folder in it; lock it with pkgcache.uv.UvCache (on the command line: "
        "pkgcache --uv)\n"
    )
    assert not (uv_cache / "locks").exists()


def test_an_empty_folder_becomes_a_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--cache-dir", str(tmp_path), "run", "--", PY, "-c", "pass"]) == 0
    assert (tmp_path / "locks").is_dir()
    code, out, _ = run_main(capsys, "--cache-dir", str(tmp_path), "locks")
    assert (code, out) == (0, "no locks held\n")


# -- waits ---------------------------------------------------------------------------

REPORT = re.compile(
    r"pkgcache: thread 'MainThread' of pid (?P<pid>\d+) has waited [0-9.]+ s for "
    r"the (?P<mode>\w+) lock on (?P<what>.+?) in (?P<root>\S+): (?P<who>.*)\Z"
)


@pytest.mark.parametrize("command", [["info"], ["list"], ["list", "a"], ["clean"]])
def test_commands_say_who_they_wait_for_and_when_they_get_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with (
        held_in_thread(cache, "x") as release,
        on_log("has waited", release.set),
    ):
        code, out, err = run_main(capsys, "--cache-dir", str(root), *command)
    assert code == 0
    assert out  # the command's own output, once the lock was granted
    first, *_, last = err.splitlines()
    report = REPORT.match(first)
    assert report, first
    mode = "exclusive" if command == ["clean"] else "shared"
    assert report["pid"] == str(os.getpid())
    assert (report["mode"], report["what"], report["root"]) == (
        mode,
        "the whole cache",
        str(root),
    )
    assert report["who"].startswith(
        f"pid {os.getpid()} holds the exclusive lock on the whole cache "
        "(threads: holder; process age "
    )
    assert re.fullmatch(
        rf"pkgcache: thread 'MainThread' of pid {os.getpid()} got the {mode} lock "
        rf"on the whole cache in {re.escape(str(root))} after [0-9.]+ s",
        last,
    ), last


def test_quiet_says_nothing_about_waits_verbose_logs_every_lock(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with held_in_thread(cache, "x"):
        # Five times the first report's delay: without -q, it would say so.
        code, out, err = run_main(
            capsys, "--cache-dir", str(root), "info", "-q", "--timeout", "0.5"
        )
    assert (code, out) == (3, "")
    assert err.startswith("pkgcache: error: timed out after ")
    assert err.count("\n") == 1
    assert run_main(capsys, "--cache-dir", str(root), "list", "a")[2] == ""
    code, _, err = run_main(capsys, "--cache-dir", str(root), "list", "a", "-v")
    assert code == 0
    assert "package 'a'" in err  # the DEBUG lines of the locks taken
    code, out, err = run_main(capsys, "--cache-dir", str(root), "list", "zzz", "-q")
    assert (code, out, err) == (0, "", "")


@pytest.mark.timeout(60)
def test_a_package_clean_names_the_whole_cache_holder(tmp_path: Path) -> None:
    # The replay: 'pkgcache run --exclusive-all' holds the cache while
    # 'pkgcache clean packaging' waits; the message must name that holder.
    root = tmp_path / "cache"
    hold = "import sys; print('held', flush=True); sys.stdin.read()"
    with (
        pkgcache_process(
            root, "run", "--exclusive-all", "--", PY, "-c", hold, stdin=subprocess.PIPE
        ) as holder,
        killed_at_end(holder),
    ):
        assert read_line(holder.stdout) == "held\n"
        with (
            pkgcache_process(root, "clean", "packaging") as cleaner,
            killed_at_end(cleaner),
        ):
            report = REPORT.match(read_line(cleaner.stderr).rstrip("\n"))
            assert report
            assert (report["mode"], report["what"]) == ("shared", "the whole cache")
            assert report["who"].startswith(
                f"pid {holder.pid} holds the exclusive lock on the whole cache "
                "(process age "
            )
            assert "run --exclusive-all -- " in report["who"]
            assert holder.stdin is not None
            holder.stdin.close()
            out, err = cleaner.communicate(timeout=WAIT)
        assert holder.wait(WAIT) == 0
    assert cleaner.returncode == 0, err
    assert out == "cleaned packaging: removed 0 entries, freed 0 B\n"
    assert re.search(r"got the shared lock on the whole cache in .* after ", err)


# -- locks ---------------------------------------------------------------------------


def test_locks_lists_holders(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = pkgcache.Cache(tmp_path)
    with cache.reading("x"):
        pass  # the cache and a lock file for x exist, nobody holds them
    assert run_main(capsys, "--cache-dir", str(tmp_path), "locks") == (
        0,
        "no locks held\n",
        "",
    )
    with held_in_thread(cache, "x", "setuptools-scm"):
        code, out, _ = run_main(capsys, "--cache-dir", str(tmp_path), "locks")
        assert code == 0
        assert f"pid {os.getpid()} holds the shared lock on the whole cache" in out
        assert (
            f"pid {os.getpid()} holds the exclusive lock on package 'setuptools-scm' "
            "(threads: holder; process age " in out
        )
        code, out, _ = run_main(capsys, "--cache-dir", str(tmp_path), "locks", "--json")
    holders = json.loads(out)
    assert {(h["package"], h["mode"], h["waiting"]) for h in holders} == {
        (None, "shared", False),
        ("setuptools-scm", "exclusive", False),
    }
    assert all(h["pid"] == os.getpid() and h["threads"] == ["holder"] for h in holders)
    assert all(h["process_age"] >= 0 for h in holders)


MULTI_LINE_HOLDER = """\
import sys
import pkgcache
with pkgcache.Cache(sys.argv[1]).exclusive("a"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="other processes: /proc/locks"
)
@pytest.mark.timeout(60)
def test_locks_prints_one_line_per_holder_with_its_age(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    with subprocess.Popen(
        [PY, "-c", MULTI_LINE_HOLDER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert read_line(holder.stdout) == "held\n"
            code, out, _ = run_main(capsys, "--cache-dir", str(root), "locks")
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(WAIT)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2  # the whole cache (shared) and 'a': one line each
    line = next(line for line in lines if "package 'a'" in line)
    assert line.startswith(
        f"pid {holder.pid} holds the exclusive lock on package 'a' (process age "
    )
    assert f" [{PY} -c $'import sys\\nimport pkgcache\\nwith " in line


# -- run -------------------------------------------------------------------------------
# Run by the command under ``pkgcache run``: exit 10 + the number of checks
# that failed, so a wrong lock shows up as a wrong exit code.
CHILD_CHECKS = """
import os, sys, pkgcache
cache = pkgcache.Cache(os.environ["PKGCACHE_DIR"])
def free(request):
    try:
        with request:
            return True
    except pkgcache.LockTimeout:
        return False
expect = {checks}
got = {{name: free(eval(name)) for name in expect}}
sys.exit(10 + sum(got[name] != expect[name] for name in expect))
"""


def child(checks: dict[str, bool]) -> list[str]:
    return [PY, "-c", CHILD_CHECKS.format(checks=checks)]


def test_run_holds_mixed_locks_while_the_command_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    checks = {
        'cache.reading("a", timeout=0)': True,
        'cache.exclusive("a", timeout=0)': False,
        'cache.reading("b", timeout=0)': False,
        'cache.exclusive("c", timeout=0)': True,
        "cache.reading(timeout=0)": True,
        "cache.exclusive(timeout=0)": False,
    }
    code, _, err = run_main(
        capsys,
        "--cache-dir",
        str(tmp_path),
        "run",
        "--read",
        "A",
        "--exclusive",
        "b",
        "--read",
        "b",
        "--",
        *child(checks),
    )
    assert (code, err) == (10, "")
    with pkgcache.Cache(tmp_path).exclusive(timeout=0):
        pass  # everything released


def test_run_exclusive_all_and_default_whole_cache_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = str(tmp_path)
    exclusive_all = {"cache.reading(timeout=0)": False}
    assert (
        main(
            ["--cache-dir", root, "run", "--exclusive-all", "--", *child(exclusive_all)]
        )
        == 10
    )
    whole_read = {
        "cache.exclusive(timeout=0)": False,
        'cache.exclusive("a", timeout=0)': True,
    }
    assert main(["--cache-dir", root, "run", "--", *child(whole_read)]) == 10


def test_run_passes_exit_codes_through(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = str(tmp_path)
    assert (
        main(["--cache-dir", root, "run", "--", PY, "-c", "raise SystemExit(7)"]) == 7
    )
    assert main(["--cache-dir", root, "run", "--", PY, "-c", "pass"]) == 0
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert main(["--cache-dir", root, "run", "--", PY, "-c", kill_self]) == 128 + 15
    code, _, err = run_main(
        capsys, "--cache-dir", root, "run", "--", "no-such-command-x"
    )
    assert code == 127
    assert err == "pkgcache: error: command not found: no-such-command-x\n"
    code, _, err = run_main(capsys, "--cache-dir", root, "run", "--", str(tmp_path))
    assert code == 126
    assert "cannot execute" in err


def test_run_timeout_is_exit_3_and_says_who_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = pkgcache.Cache(tmp_path)
    marker = tmp_path / "ran"
    command = [PY, "-c", f"open({str(marker)!r}, 'w')"]
    with held_in_thread(cache, "x", "a"):
        code, out, err = run_main(
            capsys,
            "--cache-dir",
            str(tmp_path),
            "run",
            "--read",
            "b",
            "--exclusive",
            "a",
            "--timeout",
            "0",
            "--",
            *command,
        )
    assert (code, out) == (3, "")
    assert err.startswith(
        "pkgcache: error: timed out after 0.000 s waiting for the exclusive lock "
        f"on package 'a' in {tmp_path}: pid {os.getpid()} holds the exclusive "
        "lock on package 'a' (threads: holder; process age "
    )
    assert err.count("\n") == 1
    assert not marker.exists()
    with cache.exclusive("a", "b", timeout=0):
        pass  # nothing left held by the failed run


# -- as a process --------------------------------------------------------------------


def pkgcache_process(root: Path, *argv: str, **kwargs: object) -> subprocess.Popen[str]:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(
        [PY, "-m", "pkgcache", "--cache-dir", str(root), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # not in the terminal's process group
        **kwargs,  # type: ignore[call-overload]
    )


@contextmanager
def killed_at_end(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Kill ``proc`` if the block fails before it exits."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)


def read_line(stream: object, timeout: float = WAIT) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output in time"
    return stream.readline()  # type: ignore[attr-defined,no-any-return]


def test_module_version_and_usage_error_as_process(tmp_path: Path) -> None:
    env = {**os.environ, "PKGCACHE_DIR": str(tmp_path / "env")}
    done = subprocess.run(
        [PY, "-m", "pkgcache", "dir"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"{tmp_path / 'env'}\n")
    done = subprocess.run(
        [PY, "-m", "pkgcache", "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"pkgcache {pkgcache.__version__}\n")
    done = subprocess.run(
        [PY, "-m", "pkgcache", "list", "../../etc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("pkgcache: error: argument PKG: invalid package")
    assert done.stderr.count("\n") == 1


WAIT_FOR_SIGNAL = """
import signal, sys
signal.signal(signal.SIGINT, lambda *_: sys.exit(42))
print("ready", flush=True)
while True:
    signal.pause()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("signum", "expected"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 42)],
)
def test_run_forwards_signals_and_releases(
    tmp_path: Path, signum: int, expected: int
) -> None:
    with (
        pkgcache_process(
            tmp_path, "run", "--exclusive", "a", "--", PY, "-c", WAIT_FOR_SIGNAL
        ) as proc,
        killed_at_end(proc),
    ):
        assert read_line(proc.stdout) == "ready\n"
        with pytest.raises(pkgcache.LockTimeout) as held:
            with pkgcache.Cache(tmp_path).exclusive("a", timeout=0):
                pass
        assert any(h.pid == proc.pid for h in held.value.holders)
        proc.send_signal(signum)
        # Forwarded: the command dies of SIGTERM (143) or exits 42 on SIGINT;
        # not forwarded, pkgcache would die of it itself and leave it running.
        assert proc.wait(WAIT) == expected
    with pkgcache.Cache(tmp_path).exclusive("a", timeout=0):
        pass


@pytest.mark.timeout(60)
def test_run_interrupted_while_waiting_never_runs_the_command(
    tmp_path: Path,
) -> None:
    cache = pkgcache.Cache(tmp_path)
    marker = tmp_path / "ran"
    with held_in_thread(cache, "x", "a"):
        with (
            pkgcache_process(
                tmp_path,
                "run",
                "--exclusive",
                "a",
                "--",
                PY,
                "-c",
                f"open({str(marker)!r}, 'w')",
            ) as proc,
            killed_at_end(proc),
        ):
            report = REPORT.match(read_line(proc.stderr).rstrip("\n"))
            assert report
            assert (report["mode"], report["what"]) == ("exclusive", "package 'a'")
            # Seen from the other process: no thread names, a process age.
            assert report["who"].startswith(
                f"pid {os.getpid()} holds the exclusive lock on package 'a' "
                "(process age "
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT) == 128 + signal.SIGTERM
            assert proc.stderr is not None
            assert "Traceback" not in proc.stderr.read()
    assert not marker.exists()
    with cache.exclusive("a", timeout=0):
        pass


# -- the store: info, list, clean, remove, prune ------------------------------------


def populate(root: Path, work: Path) -> pkgcache.Cache:
    """a: two sdists of 1000 and 2000 bytes; b: one wheel of 500 bytes."""
    cache = pkgcache.Cache(root)
    work.mkdir(exist_ok=True)
    files = {
        "a": [("a-1.0.tar.gz", 1000), ("a-2.0.tar.gz", 2000)],
        "b": [("b-1.0-py3-none-any.whl", 500)],
    }
    for package, names in files.items():
        with cache.exclusive(package) as txn:
            for name, size in names:
                (work / name).write_bytes(b"x" * size)
                txn.add(work / name, move=True)
    return cache


def test_info_and_list(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "cache"
    populate(root, tmp_path / "work")
    code, out, err = run_main(capsys, "--cache-dir", str(root), "info")
    assert (code, err) == (0, "")
    assert out.splitlines()[:4] == [
        f"cache:    {root}",
        "packages: 2",
        "entries:  3",
        "size:     3.4 KiB (3500 bytes)",
    ]
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "info", "--json")
    data = json.loads(out)
    assert {k: data[k] for k in ("root", "exists", "packages", "entries", "bytes")} == {
        "root": str(root),
        "exists": True,
        "packages": 2,
        "entries": 3,
        "bytes": 3500,
    }
    assert data["per_package"] == {
        "a": {"entries": 2, "bytes": 3000},
        "b": {"entries": 1, "bytes": 500},
    }
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "list")
    assert [line.split() for line in out.splitlines()] == [
        ["a", "1000", "B", "a-1.0.tar.gz"],
        ["a", "2.0", "KiB", "a-2.0.tar.gz"],
        ["b", "500", "B", "b-1.0-py3-none-any.whl"],
    ]
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "list", "B", "--json")
    [entry] = json.loads(out)
    assert entry["package"] == "b"
    assert entry["key"] == "b-1.0-py3-none-any.whl"
    assert (entry["kind"], entry["version"], entry["size"]) == ("wheel", "1.0", 500)
    assert entry["tags"] == ["py3-none-any"]
    assert Path(entry["path"]).read_bytes() == b"x" * 500
    # Like 'pip cache list --format=abspath': one path per line, nothing else.
    code, out, err = run_main(capsys, "--cache-dir", str(root), "list", "--paths")
    assert (code, err) == (0, "")
    paths = [Path(line) for line in out.splitlines()]
    assert [p.name for p in paths] == [
        "a-1.0.tar.gz",
        "a-2.0.tar.gz",
        "b-1.0-py3-none-any.whl",
    ]
    assert all(p.is_absolute() and p.is_file() for p in paths)
    # An empty result says so (on stderr: the output stays empty for scripts).
    code, out, err = run_main(capsys, "--cache-dir", str(root), "list", "zzz")
    assert (code, out) == (0, "")
    assert err == f"pkgcache: no entries of zzz in {root}\n"


def test_info_counts_staging_leftovers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    populate(root, tmp_path / "work")
    if not {"staging_entries", "staging_bytes"} <= set(
        attrs.fields_dict(pkgcache.CacheInfo)
    ):
        pytest.skip("this CacheInfo does not count staging leftovers yet")
    # What a writer killed with kill -9 leaves: a staging file nobody holds.
    (root / "tmp" / "a.dead-writer").write_bytes(b"x" * 9000)
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "info")
    assert code == 0
    assert out.splitlines()[4] == (
        "staging:  1 leftover, 8.8 KiB (9000 bytes); 'pkgcache prune' reaps "
        "those of dead writers"
    )
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "info", "--json")
    data = json.loads(out)
    assert (data["staging_entries"], data["staging_bytes"]) == (1, 9000)


def test_clean_packages_then_everything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    code, out, err = run_main(capsys, "--cache-dir", str(root), "clean", "A")
    assert (code, err) == (0, "")
    assert out == "cleaned a: removed 2 entries, freed 2.9 KiB\n"
    assert cache.info().per_package == {"b": (1, 500)}
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "clean", "--json")
    assert json.loads(out) == {
        "packages": ["b"],
        "exists": True,
        "entries_removed": 1,
        "bytes_freed": 500,
    }
    assert cache.info().entries == 0
    missing = tmp_path / "missing"
    code, out, _ = run_main(capsys, "--cache-dir", str(missing), "clean", "a")
    assert (code, out) == (0, f"nothing to clean: no cache at {missing}\n")
    assert not missing.exists()


@pytest.mark.timeout(60)
def test_clean_waits_for_the_holder_then_cleans(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with (
        held_in_thread(cache, "r", "a") as release,
        pkgcache_process(root, "clean", "a") as proc,
        killed_at_end(proc),
    ):
        report = REPORT.match(read_line(proc.stderr).rstrip("\n"))
        assert report
        assert report["who"].startswith(
            f"pid {os.getpid()} holds the shared lock on package 'a'"
        )
        assert cache.info().entries == 3  # it waits: nothing removed yet
        release.set()
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert out == "cleaned a: removed 2 entries, freed 2.9 KiB\n"
    assert "got the exclusive lock on package 'a'" in err.splitlines()[-1]
    assert cache.info().per_package == {"b": (1, 500)}


def test_remove_one_version_or_one_entry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    code, out, err = run_main(capsys, "--cache-dir", str(root), "remove", "A==1.0")
    assert (code, err) == (0, "")
    assert out == "removed a a-1.0.tar.gz (1000 B)\nremoved 1 entry, freed 1000 B\n"
    assert cache.info().per_package == {"a": (1, 2000), "b": (1, 500)}
    code, out, err = run_main(
        capsys,
        "--cache-dir",
        str(root),
        "remove",
        "b",
        "--key",
        "nope",
        "--json",
        "--key",
        "b-1.0-py3-none-any.whl",
    )
    assert code == 0
    data = json.loads(out)
    assert (data["package"], data["bytes_freed"]) == ("b", 500)
    assert [entry["key"] for entry in data["removed"]] == ["b-1.0-py3-none-any.whl"]
    assert cache.info().per_package == {"a": (1, 2000)}
    # Nothing matches: said on stderr, like 'pip cache remove', and exit 0.
    code, out, err = run_main(capsys, "--cache-dir", str(root), "remove", "a<2")
    assert (code, out) == (0, "removed 0 entries, freed 0 B\n")
    assert err == "pkgcache: no entry of 'a' matches <2\n"
    assert cache.info().per_package == {"a": (1, 2000)}


def test_remove_waits_for_the_package_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with held_in_thread(cache, "r", "b"):
        code, _, _ = run_main(
            capsys, "--cache-dir", str(root), "remove", "a>=2", "--timeout", "0"
        )
        assert code == 0
        code, _, err = run_main(
            capsys, "--cache-dir", str(root), "remove", "b==1", "--timeout", "0"
        )
        assert code == 3
        assert "waiting for the exclusive lock on package 'b'" in err
    assert cache.info().per_package == {"a": (1, 1000), "b": (1, 500)}


def test_clean_timeout_says_who_holds_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with held_in_thread(cache, "r", "a"):
        code, out, err = run_main(
            capsys, "--cache-dir", str(root), "clean", "a", "--timeout", "0"
        )
    assert (code, out) == (3, "")
    assert err.startswith(
        "pkgcache: error: timed out after 0.000 s waiting for the exclusive lock on "
        f"package 'a' in {root}: pid {os.getpid()} holds the shared lock on "
        "package 'a' (threads: holder; process age "
    )
    assert cache.info().entries == 3


def test_prune_reports_removed_freed_and_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    code, out, _ = run_main(
        capsys, "--cache-dir", str(root), "prune", "--older-than", "1d"
    )
    assert (code, out) == (
        0,
        "removed 0 entries, freed 0 B; reaped 0 staging leftovers\n",
    )
    with held_in_thread(cache, "r", "b"):
        code, out, err = run_main(
            capsys, "--cache-dir", str(root), "prune", "--max-size", "2500"
        )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "removed a a-1.0.tar.gz (1000 B)",
        "removed 1 entry, freed 1000 B; reaped 0 staging leftovers",
    ]
    with held_in_thread(cache, "r", "b"):
        code, out, err = run_main(
            capsys, "--cache-dir", str(root), "prune", "--max-size", "0", "--json"
        )
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert [entry["key"] for entry in data["removed"]] == ["a-2.0.tar.gz"]
    assert (data["bytes_freed"], data["skipped"], data["reaped"]) == (2000, ["b"], 0)
    assert cache.info().per_package == {"b": (1, 500)}
    missing = tmp_path / "missing"
    code, out, _ = run_main(capsys, "--cache-dir", str(missing), "prune")
    assert (code, out) == (0, f"nothing to prune: no cache at {missing}\n")
    assert not missing.exists()


# -- a uv cache: --uv ----------------------------------------------------------------

CHECK_UV_LOCKS = """
import sys
from pkgcache.uv import UvCache
uv = UvCache(sys.argv[1])
def free(request):
    try:
        with request:
            return True
    except Exception:
        return False
sys.exit(10 * free(uv.exclusive("a", timeout=0)) + free(uv.reading("a", timeout=0)))
"""


@pytest.mark.timeout(90)
def test_uv_option_locks_a_uv_cache_the_way_uvcache_does(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    uv_cache = make_uv_cache(tmp_path / "uv")
    before = sorted(p.name for p in uv_cache.iterdir())
    base = ["--uv", "--cache-dir", str(uv_cache)]
    code, out, _ = run_main(capsys, *base, "dir", "--json")
    assert json.loads(out) == {
        "cache_dir": str(uv_cache),
        "exists": True,
        "locks_dir": str(tmp_path / "uv.pkgcache-locks"),
    }
    # 'run --read a': a UvCache in the command sees 'a' shared (10*0 + 1), and
    # the command gets UV_CACHE_DIR.
    code = main(
        [*base, "run", "--read", "a", "--", PY, "-c", CHECK_UV_LOCKS, str(uv_cache)]
    )
    assert code == 1
    code = main(
        [
            *base,
            "run",
            "--",
            PY,
            "-c",
            "import os, sys; "
            f"sys.exit(os.environ['UV_CACHE_DIR'] != {str(uv_cache)!r})",
        ]
    )
    assert code == 0
    with held_in_thread(pkgcache.uv.UvCache(uv_cache).cache, "r", "a"):
        code, out, _ = run_main(capsys, *base, "locks")
        assert code == 0
        assert f"pid {os.getpid()} holds the shared lock on package 'a'" in out
        code, _, err = run_main(capsys, *base, "clean", "a", "--timeout", "0")
        assert code == 3
        assert "waiting for the exclusive lock on package 'a'" in err
    code, out, err = run_main(capsys, *base, "clean", "a")
    assert (code, err) == (0, "")
    assert out.startswith("cleaned a with uv: ")
    # Nothing but uv's own files in the uv cache: the locks live beside it.
    assert sorted(p.name for p in uv_cache.iterdir()) == before
    assert (tmp_path / "uv.pkgcache-locks" / "a.lock").is_file()
