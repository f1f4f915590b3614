"""The ``pkgcache`` command: in process through ``main()``, and as a process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import pkgcache
from pkgcache import _cli
from pkgcache._cli import main, parse_duration, parse_size

WAIT = 30.0
PY = sys.executable


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


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
        (["run"], "run needs a command"),
        (["run", "--"], "run needs a command"),
        (["run", "--exclusive-all", "--read", "a", "--", "true"], "covers every"),
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
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", [["info"], ["list"], ["list", "a"], ["locks"]])
def test_read_commands_on_a_missing_cache_fail_without_creating_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    root = tmp_path / "missing"
    code, out, err = run_main(capsys, "--cache-dir", str(root), *command)
    assert (code, out) == (1, "")
    assert (
        err
        == f"pkgcache: error: no cache at {root} (nothing has been cached there yet)\n"
    )
    assert not root.exists()


def test_a_file_as_cache_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a cache")
    for command in (["locks"], ["run", "--", "true"]):
        code, out, err = run_main(
            capsys, "--cache-dir", str(tmp_path / "file"), *command
        )
        assert (code, out) == (1, "")
        assert err.count("\n") == 1
        assert "pkgcache: error: " in err
        assert "Traceback" not in err
    assert (tmp_path / "file").read_text() == "not a cache"


@pytest.mark.parametrize(
    "command",
    [
        ["info"],
        ["list"],
        ["locks"],
        ["clean"],
        ["clean", "a"],
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
        f"pkgcache: error: {tmp_path} is not a pkgcache cache (no locks/ or .lock "
        "in it); refusing to add cache files to it\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_empty_folder_or_a_uv_style_cache_is_usable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--cache-dir", str(tmp_path), "run", "--", PY, "-c", "pass"]) == 0
    assert (tmp_path / "locks").is_dir()
    uv_style = tmp_path / "uv"
    uv_style.mkdir()
    (uv_style / ".lock").touch()
    (uv_style / "wheels-v5").mkdir()
    code, out, _ = run_main(capsys, "--cache-dir", str(uv_style), "locks")
    assert (code, out) == (0, "no locks held\n")


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
        assert f"pid {os.getpid()} holds shared lock on whole cache" in out
        assert (
            f"pid {os.getpid()} holds exclusive lock on 'setuptools-scm' "
            "(threads: holder)" in out
        )
        code, out, _ = run_main(capsys, "--cache-dir", str(tmp_path), "locks", "--json")
    holders = json.loads(out)
    assert {(h["package"], h["mode"], h["waiting"]) for h in holders} == {
        (None, "shared", False),
        ("setuptools-scm", "exclusive", False),
    }
    assert all(h["pid"] == os.getpid() and h["threads"] == ["holder"] for h in holders)


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
        assert "timed out" in err
        assert "exclusive lock on package 'a'" in err
        assert "threads: holder" in err
        assert err.count("\n") == 1
        # With a deadline in the future it first says who it waits for.
        code, _, err = run_main(
            capsys,
            "--cache-dir",
            str(tmp_path),
            "run",
            "--exclusive",
            "a",
            "--timeout",
            "0.05",
            "--",
            *command,
        )
        assert code == 3
        first, second = err.splitlines()
        assert first.startswith("pkgcache: waiting for a: pid ")
        assert "holds exclusive lock on 'a' (threads: holder)" in first
        assert second.startswith("pkgcache: error: timed out")
    assert not marker.exists()
    with cache.exclusive("a", "b", timeout=0):
        pass  # nothing left held by the failed runs


# -- as a process --------------------------------------------------------------------


def pkgcache_process(root: Path, *argv: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "pkgcache", "--cache-dir", str(root), *argv],
        stdin=subprocess.DEVNULL,
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


def test_module_and_usage_error_as_process(tmp_path: Path) -> None:
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
            line = read_line(proc.stderr)
            assert line.startswith("pkgcache: waiting for a: ")
            assert f"pid {os.getpid()} holds exclusive lock on 'a'" in line
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT) == 128 + signal.SIGTERM
            assert proc.stderr is not None
            assert "Traceback" not in proc.stderr.read()
    assert not marker.exists()
    with cache.exclusive("a", timeout=0):
        pass


# -- the store: info, list, clean, prune -----------------------------------------


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
    assert out.splitlines()[1:] == [
        "packages: 2",
        "entries:  3",
        "size:     3.4 KiB (3500 bytes)",
    ]
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "info", "--json")
    assert json.loads(out) == {
        "root": str(root),
        "packages": 2,
        "entries": 3,
        "bytes": 3500,
        "per_package": {
            "a": {"entries": 2, "bytes": 3000},
            "b": {"entries": 1, "bytes": 500},
        },
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
    assert run_main(capsys, "--cache-dir", str(root), "list", "zzz") == (0, "", "")


def test_clean_packages_then_everything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    code, out, err = run_main(capsys, "--cache-dir", str(root), "clean", "A")
    assert (code, err) == (0, "")
    assert out == "cleaned a: removed 2 entries, freed 2.9 KiB\n"
    assert cache.info().per_package == {"b": (1, 500)}
    code, out, _ = run_main(capsys, "--cache-dir", str(root), "clean")
    assert out == "cleaned the whole cache: removed 1 entries, freed 500 B\n"
    assert cache.info().entries == 0
    missing = tmp_path / "missing"
    code, out, _ = run_main(capsys, "--cache-dir", str(missing), "clean", "a")
    assert (code, out) == (0, f"nothing to clean: no cache at {missing}\n")
    assert not missing.exists()


def test_clean_timeout_says_who_holds_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with held_in_thread(cache, "r", "a"):
        code, out, err = run_main(
            capsys, "--cache-dir", str(root), "clean", "a", "--timeout", "0.05"
        )
    assert (code, out) == (3, "")
    waiting, error = err.splitlines()
    assert waiting == (
        f"pkgcache: waiting for a: pid {os.getpid()} holds shared lock on 'a' "
        f"(threads: holder) [{waiting.split('[', 1)[1]}"
    )
    assert error.startswith("pkgcache: error: timed out after ")
    assert "exclusive lock on package 'a'" in error
    assert cache.info().entries == 3


@pytest.mark.timeout(60)
def test_clean_waits_for_the_holder_then_cleans(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = populate(root, tmp_path / "work")
    with (
        held_in_thread(cache, "r", "a") as release,
        pkgcache_process(root, "clean", "a") as proc,
        killed_at_end(proc),
    ):
        line = read_line(proc.stderr)
        assert line.startswith(f"pkgcache: waiting for a: pid {os.getpid()} ")
        assert cache.info().entries == 3  # it waits: nothing removed yet
        release.set()
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert out == "cleaned a: removed 2 entries, freed 2.9 KiB\n"
    assert err == ""  # the one line about the wait, read above, and nothing else
    assert cache.info().per_package == {"b": (1, 500)}


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
            capsys, "--cache-dir", str(root), "prune", "--max-size", "0"
        )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "removed a a-1.0.tar.gz (1000 B)",
        "removed a a-2.0.tar.gz (2.0 KiB)",
        "removed 2 entries, freed 2.9 KiB; reaped 0 staging leftovers",
        "skipped (in use): b",
    ]
    assert cache.info().per_package == {"b": (1, 500)}
    missing = tmp_path / "missing"
    code, out, _ = run_main(capsys, "--cache-dir", str(missing), "prune")
    assert (code, out) == (0, f"nothing to prune: no cache at {missing}\n")
    assert not missing.exists()
