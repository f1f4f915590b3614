"""pkgcache.uv against the real uv: who waits for whom, and the motivating race.

Offline: every wheel and sdist is built by the test (tests/wheels.py) and
installed with ``--find-links DIR --no-index`` into a fresh ``uv venv``, with
``UV_CACHE_DIR`` in a temporary folder. Whether a uv process is waiting for
a lock is read from the kernel (``/proc/locks``, via ``UvCache.holders``).
"""

from __future__ import annotations

import http.server
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import pkgcache
from pkgcache.uv import (
    LOCKS_SUFFIX,
    UvCache,
    UvCommandError,
    UvNotFoundError,
    find_uv,
)
from tests.helpers import SPAWN, WAIT, thread_holding
from tests.wheels import make_blocking_sdist, make_wheel

try:
    UV: str | None = find_uv()
except pkgcache.CacheError:
    UV = None

needs_uv = pytest.mark.skipif(
    UV is None, reason="uv is not installed (pip install -e '.[test]' installs it)"
)
needs_proc_locks = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="seeing a waiting uv process needs /proc/locks (Linux)",
)

PACKAGE = "setuptools-scm"
VERSIONS = ("7.1.0", "8.2.0", "9.0.0")


# -- helpers (module level: spawn children import them) ------------------------


def new_venv(uv_cache: UvCache, target: Path) -> Path:
    """A fresh ``uv venv`` of the test interpreter; returns its python."""
    uv_cache.run("venv", "--quiet", "--python", sys.executable, str(target))
    return target / "bin" / "python"


def installed_version(venv_python: Path, package: str) -> str | None:
    """The version of ``package`` in the venv, read from its dist-info."""
    prefix = package.replace("-", "_") + "-"
    for site in venv_python.parent.parent.glob("lib/python*/site-packages"):
        for entry in site.iterdir():
            if entry.name.startswith(prefix) and entry.name.endswith(".dist-info"):
                return entry.name[len(prefix) : -len(".dist-info")]
    return None


def install_versions(
    cache_path: str,
    uv: str,
    wheelhouse: str,
    venvs: str,
    *,
    worker: str,
    barrier: Any,
    results: Any,
) -> None:
    """Install each version of PACKAGE into its own fresh venv, through pkgcache.

    Puts ``(worker, failures)`` on ``results``: each failure names the
    version and what went wrong.
    """
    uv_cache = UvCache(cache_path, uv=uv, timeout=WAIT)
    failures = []
    barrier.wait(timeout=WAIT)
    for version in VERSIONS:
        try:
            python = new_venv(uv_cache, Path(venvs, f"{worker}-{version}"))
            uv_cache.pip_install(
                f"{PACKAGE}=={version}",
                python=python,
                args=["--find-links", wheelhouse, "--no-index"],
            )
            found = installed_version(python, PACKAGE)
            if found != version:
                failures.append(f"{version}: installed {found}")
        except (pkgcache.CacheError, OSError) as exc:
            failures.append(f"{version}: {exc}")
    results.put((worker, failures))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll an external process's state (uv sends no event) until true."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


def uv_waits_for_root(uv_cache: UvCache, pid: int) -> bool:
    return any(
        holder.pid == pid and holder.waiting and holder.package is None
        for holder in uv_cache.holders()
    )


def start_uv(uv_cache: UvCache, *args: str) -> subprocess.Popen[str]:
    """Start a plain uv command (no pkgcache lock) on the cache."""
    assert uv_cache.uv
    return subprocess.Popen(
        [uv_cache.uv, *args],
        env=uv_cache.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=WAIT)
    assert process.returncode == 0, output
    return output


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    for version in VERSIONS:
        make_wheel(folder, PACKAGE, version)
    make_wheel(folder, "other", "1.0")
    return folder


@pytest.fixture
def uv_cache(tmp_path: Path) -> UvCache:
    assert UV is not None
    return UvCache(tmp_path / "uv-cache", uv=UV, timeout=WAIT)


def find_links(wheelhouse: Path) -> list[str]:
    return ["--find-links", str(wheelhouse), "--no-index"]


@pytest.fixture
def blocking_build(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    """A wheelhouse with an sdist of ``slow`` whose build waits for the test."""
    address = f"\0pkgcache-test-{uuid.uuid4().hex}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(address)
    server.listen(1)
    server.settimeout(WAIT)
    folder = tmp_path / "slow-wheelhouse"
    make_blocking_sdist(folder, "slow", "1.0", address)
    try:
        yield folder, server
    finally:
        server.close()


# -- layout (no uv needed) -----------------------------------------------------


def test_only_dot_lock_is_created_inside_the_uv_cache(tmp_path: Path) -> None:
    root = tmp_path / "uv-cache"
    uv_cache = UvCache(root, uv="uv-is-not-run-here")
    assert uv_cache.locks_dir == Path(str(root.resolve()) + LOCKS_SUFFIX)
    with uv_cache.reading("Setuptools_SCM"), uv_cache.exclusive("other"):
        pass
    with uv_cache.exclusive():
        pass
    assert sorted(os.listdir(root)) == [".lock"]
    assert {"setuptools-scm.lock", "other.lock", ".root.gate"} <= set(
        os.listdir(uv_cache.locks_dir)
    )
    assert uv_cache.cache.lock_path() == root.resolve() / ".lock"
    assert uv_cache.cache.lock_path("other") == uv_cache.locks_dir / "other.lock"


def test_locks_inside_the_uv_cache_are_refused(tmp_path: Path) -> None:
    with pytest.raises(pkgcache.UnsafePathError, match="uv cache prune"):
        UvCache(tmp_path, locks_dir=tmp_path / "locks", uv="uv")
    with pytest.raises(pkgcache.UnsafePathError):
        UvCache(tmp_path, locks_dir=tmp_path, uv="uv")


def test_a_chosen_locks_folder_is_used(tmp_path: Path) -> None:
    uv_cache = UvCache(tmp_path / "c", locks_dir=tmp_path / "mine", uv="uv")
    with uv_cache.exclusive("a"):
        assert (tmp_path / "mine" / "a.lock").exists()


def test_one_locks_folder_serves_one_uv_cache(tmp_path: Path) -> None:
    with UvCache(tmp_path / "a", locks_dir=tmp_path / "locks", uv="uv").reading():
        pass
    other = UvCache(tmp_path / "b", locks_dir=tmp_path / "locks", uv="uv")
    with pytest.raises(pkgcache.UnsafePathError, match="already serve"):
        with other.reading():
            pass


def test_requirements_without_a_name_need_packages(tmp_path: Path) -> None:
    uv_cache = UvCache(tmp_path / "c", uv="uv")
    with pytest.raises(pkgcache.InvalidPackageName, match="packages="):
        uv_cache.pip_install("./some/path")
    with pytest.raises(ValueError, match="clean_all"):
        uv_cache.clean()


# -- with the real uv ----------------------------------------------------------


@needs_uv
def test_a_failing_uv_command_raises_with_uv_message(uv_cache: UvCache) -> None:
    with pytest.raises(UvCommandError) as caught:
        uv_cache.run("pip", "install", "--no-index", "--python", sys.executable, "x")
    assert isinstance(caught.value, subprocess.CalledProcessError)
    assert caught.value.returncode != 0
    assert "uv said" in str(caught.value)


@needs_uv
def test_discovers_the_cache_from_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "from-env"))
    assert UvCache(uv=UV).path == (tmp_path / "from-env").resolve()


@needs_uv
@needs_proc_locks
@pytest.mark.timeout(60)
def test_uv_install_waits_for_exclusive_and_runs_under_reading(
    uv_cache: UvCache, wheelhouse: Path, tmp_path: Path
) -> None:
    python = new_venv(uv_cache, tmp_path / "venv")
    install = (
        "pip",
        "install",
        "--python",
        str(python),
        *find_links(wheelhouse),
        f"{PACKAGE}==8.2.0",
    )
    with uv_cache.exclusive():
        process = start_uv(uv_cache, *install)
        wait_until(
            lambda: uv_waits_for_root(uv_cache, process.pid),
            "uv waits for the whole-cache lock",
        )
        assert process.poll() is None
        assert installed_version(python, PACKAGE) is None
    finish(process)
    assert installed_version(python, PACKAGE) == "8.2.0"

    # Under reading() of the same package, uv runs to the end at once.
    with uv_cache.reading(PACKAGE):
        finish(start_uv(uv_cache, *install, "--reinstall"))


@needs_uv
@needs_proc_locks
@pytest.mark.timeout(60)
def test_uv_cache_clean_waits_for_reading(
    uv_cache: UvCache, wheelhouse: Path, tmp_path: Path
) -> None:
    python = new_venv(uv_cache, tmp_path / "venv")
    uv_cache.pip_install(
        f"{PACKAGE}==7.1.0", python=python, args=find_links(wheelhouse)
    )
    entries = uv_cache.path / "archive-v0"
    assert any(entries.iterdir())
    with uv_cache.reading():
        process = start_uv(uv_cache, "cache", "clean", PACKAGE)
        wait_until(
            lambda: uv_waits_for_root(uv_cache, process.pid),
            "uv cache clean waits for the whole-cache lock",
        )
        assert any(entries.iterdir()), "uv cleaned while reading() was held"
    assert "Removed" in finish(process)
    assert not any(entries.iterdir())


@needs_uv
@pytest.mark.timeout(60)
def test_prune_and_clean_all_keep_the_locks(
    uv_cache: UvCache, wheelhouse: Path, tmp_path: Path
) -> None:
    python = new_venv(uv_cache, tmp_path / "venv")
    uv_cache.pip_install("other", python=python, args=find_links(wheelhouse))
    with uv_cache.exclusive("other"):
        pass
    lock = uv_cache.cache.lock_path()
    before = lock.stat().st_ino
    uv_cache.prune()
    uv_cache.clean_all()
    assert (uv_cache.locks_dir / "other.lock").exists()
    assert lock.stat().st_ino == before, "uv replaced .lock: holders would split"
    assert not (uv_cache.path / "archive-v0").exists()


@needs_uv
@needs_proc_locks
@pytest.mark.timeout(60)
def test_clean_of_a_package_does_not_wait_for_installs_of_others(
    uv_cache: UvCache,
    wheelhouse: Path,
    tmp_path: Path,
    blocking_build: tuple[Path, socket.socket],
) -> None:
    slow_wheelhouse, server = blocking_build
    python = new_venv(uv_cache, tmp_path / "venv")
    uv_cache.pip_install(
        f"{PACKAGE}==7.1.0", python=python, args=find_links(wheelhouse)
    )
    slow_venv = new_venv(uv_cache, tmp_path / "slow-venv")
    installing: queue.Queue[BaseException | None] = queue.Queue()

    def install_slow() -> None:
        try:
            # Named: the first default install of an sdist holds every clean
            # off (see the next test); this one shows the per-package locks.
            uv_cache.pip_install(
                "slow",
                python=slow_venv,
                args=find_links(slow_wheelhouse),
                packages=["slow"],
            )
            installing.put(None)
        except BaseException as exc:
            installing.put(exc)
            raise

    installer = threading.Thread(target=install_slow)
    installer.start()
    connection, _ = server.accept()  # the real install of "slow" is building
    try:
        assert connection.recv(16) == b"building"
        # pkgcache: the clean of setuptools-scm goes through at once.
        result = uv_cache.clean(PACKAGE, timeout=WAIT)
        assert "Removed" in result.stderr
        assert installer.is_alive()
        assert installed_version(slow_venv, "slow") is None
        # ... while a clean of the package being installed is held off.
        with pytest.raises(pkgcache.LockTimeout):
            uv_cache.clean("slow", timeout=0.05)
        # uv's own scheme: a plain clean waits for the unrelated install.
        plain = start_uv(uv_cache, "cache", "clean", "other")
        wait_until(
            lambda: uv_waits_for_root(uv_cache, plain.pid),
            "a plain uv cache clean waits for the install of another package",
        )
    finally:
        connection.sendall(b"go")
        connection.close()
    assert installing.get(timeout=WAIT) is None
    installer.join(timeout=WAIT)
    finish(plain)
    assert installed_version(slow_venv, "slow") == "1.0"


@needs_uv
@pytest.mark.timeout(60)
def test_a_first_install_that_builds_holds_every_clean_off(
    uv_cache: UvCache,
    wheelhouse: Path,
    tmp_path: Path,
    blocking_build: tuple[Path, socket.socket],
) -> None:
    slow_wheelhouse, server = blocking_build
    python = new_venv(uv_cache, tmp_path / "venv")
    uv_cache.pip_install(
        f"{PACKAGE}==7.1.0", python=python, args=find_links(wheelhouse)
    )
    done: queue.Queue[BaseException | None] = queue.Queue()

    def install_slow() -> None:
        try:
            uv_cache.pip_install(
                "slow",
                python=new_venv(uv_cache, tmp_path / "slow"),
                args=find_links(slow_wheelhouse),
            )
            done.put(None)
        except BaseException as exc:
            done.put(exc)

    installer = threading.Thread(target=install_slow)
    installer.start()
    connection, _ = server.accept()
    try:
        assert connection.recv(16) == b"building"
        # The build's dependencies are resolved only now: no clean may run.
        with pytest.raises(pkgcache.LockTimeout, match="uv-clean"):
            uv_cache.clean(PACKAGE, timeout=0.05)
    finally:
        connection.sendall(b"go")
        connection.close()
    assert done.get(timeout=WAIT) is None
    installer.join(WAIT)


@needs_uv
@pytest.mark.timeout(90)
def test_the_motivating_race_has_no_failures(
    uv_cache: UvCache, wheelhouse: Path, tmp_path: Path
) -> None:
    """Threads and processes install versions of one package; another cleans it."""
    assert UV is not None
    venvs = tmp_path / "venvs"
    venvs.mkdir()
    threads, processes = 2, 2
    barrier = SPAWN.Barrier(threads + processes + 1)
    results = SPAWN.Queue()
    common = (str(uv_cache.path), UV, str(wheelhouse), str(venvs))
    workers: list[Any] = [
        threading.Thread(
            target=install_versions,
            args=common,
            kwargs={"worker": f"thread{i}", "barrier": barrier, "results": results},
        )
        for i in range(threads)
    ]
    workers += [
        SPAWN.Process(
            target=install_versions,
            args=common,
            kwargs={"worker": f"process{i}", "barrier": barrier, "results": results},
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    removed = cleans = 0
    failures: dict[str, list[str]] = {}
    barrier.wait(timeout=WAIT)
    deadline = time.monotonic() + 60
    while len(failures) < len(workers):
        assert time.monotonic() < deadline, f"workers did not finish: {failures}"
        outcome = uv_cache.clean(PACKAGE)
        cleans += 1
        removed += "Removed" in outcome.stderr
        try:
            worker_name, worker_failures = results.get_nowait()
        except queue.Empty:
            continue
        failures[worker_name] = worker_failures
    for worker in workers:
        worker.join(timeout=WAIT)
    assert all(not found for found in failures.values()), failures
    # After every install, so at least this one finds entries to remove.
    removed += "Removed" in uv_cache.clean(PACKAGE).stderr
    assert removed >= 1, f"{cleans + 1} cleans never removed anything"


@needs_uv
def test_uv_is_found_on_path_without_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert UV is not None
    monkeypatch.setitem(sys.modules, "uv", None)  # the import fails
    monkeypatch.setenv("PATH", str(Path(UV).parent))
    assert Path(find_uv()).samefile(UV)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(UvNotFoundError):
        find_uv()


# -- safe by default: transitive dependencies, and cleans that never race ------

BIG = {f"leaf/m{i:03d}.py": b"VALUE = 1\n" * 40 for i in range(250)}


def record_complete(venv_python: Path, package: str) -> bool:
    """Every file the installed RECORD of ``package`` lists is in the venv."""
    prefix = package.replace("-", "_") + "-"
    for site in venv_python.parent.parent.glob("lib/python*/site-packages"):
        for info in site.glob(f"{prefix}*.dist-info"):
            lines = (info / "RECORD").read_text().splitlines()
            return all((site / line.split(",")[0]).exists() for line in lines)
    return False


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``top`` depends on ``leaf``, a wheel of many files; ``other`` on nothing."""
    folder = tmp_path_factory.mktemp("chain")
    make_wheel(folder, "top", "1.0", requires=["leaf"])
    make_wheel(folder, "leaf", "1.0", files=BIG)
    make_wheel(folder, "other", "1.0")
    return folder


@needs_uv
@pytest.mark.timeout(60)
def test_install_holds_what_it_resolved_transitively(
    uv_cache: UvCache, chain: Path, tmp_path: Path
) -> None:
    python = new_venv(uv_cache, tmp_path / "venv")
    # Someone else holds leaf exclusively: the install of top waits for it,
    # although top is all it names, from the first install on.
    for _ in range(2):
        with thread_holding(uv_cache.cache, "x", ("leaf",)):
            with pytest.raises(pkgcache.LockTimeout) as caught:
                uv_cache.pip_install(
                    "top", python=python, args=find_links(chain), timeout=0.2
                )
        assert caught.value.package == "leaf"
        assert installed_version(python, "top") is None
    result = uv_cache.pip_install("top", python=python, args=find_links(chain))
    assert record_complete(python, "leaf")
    assert "DEBUG" not in result.stderr  # the resolver's log is not handed back
    assert "+ leaf==1.0" in result.stderr
    # The override locks exactly what it names.
    with thread_holding(uv_cache.cache, "x", ("leaf",)):
        uv_cache.pip_install(
            "top",
            python=new_venv(uv_cache, tmp_path / "override"),
            args=find_links(chain),
            packages=["top"],
        )


@needs_uv
@pytest.mark.timeout(60)
def test_an_install_whose_resolution_grew_is_repaired(
    uv_cache: UvCache, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "top", "1.0", requires=["leaf"])
    make_wheel(wheels, "leaf", "1.0")
    uv_cache.pip_install(
        "top", python=new_venv(uv_cache, tmp_path / "v1"), args=find_links(wheels)
    )
    # A release of top with a new dependency: the next install locks what
    # it learned (top, leaf), uv picks more, and the install is repaired
    # under locks of the new package too: clean it, reinstall it.
    make_wheel(wheels, "top", "2.0", requires=["leaf", "newdep"])
    make_wheel(wheels, "newdep", "1.0")
    python = new_venv(uv_cache, tmp_path / "v2")
    with thread_holding(uv_cache.cache, "x", ("newdep",)):
        with pytest.raises(pkgcache.LockTimeout) as caught:
            uv_cache.pip_install(
                "top", python=python, args=find_links(wheels), timeout=0.2
            )
    assert caught.value.package == "newdep"
    uv_cache.pip_install("top", python=python, args=find_links(wheels))
    assert installed_version(python, "newdep") == "1.0"
    assert record_complete(python, "newdep")
    # Learned: the next install waits for newdep before running uv.
    python = new_venv(uv_cache, tmp_path / "v3")
    with thread_holding(uv_cache.cache, "x", ("newdep",)):
        with pytest.raises(pkgcache.LockTimeout) as caught:
            uv_cache.pip_install(
                "top", python=python, args=find_links(wheels), timeout=0.2
            )
    assert caught.value.package == "newdep"
    assert installed_version(python, "top") is None


@needs_uv
@pytest.mark.timeout(60)
def test_a_learned_install_asks_uv_once(chain: Path, tmp_path: Path) -> None:
    """No dry run once learned, a requirement whose marker is false included."""
    log = tmp_path / "uv-calls"
    wrapper = tmp_path / "uv"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {UV} "$@"\n')
    wrapper.chmod(0o755)
    uv_cache = UvCache(tmp_path / "uv-cache", uv=wrapper, timeout=WAIT)
    requirements = ("top", 'absent; python_version < "3"')
    for index in range(2):
        python = new_venv(uv_cache, tmp_path / f"v{index}")
        calls = len(log.read_text().splitlines())
        uv_cache.pip_install(*requirements, python=python, args=find_links(chain))
        installs = log.read_text().splitlines()[calls:]
        assert installed_version(python, "leaf") == "1.0"
    assert len(installs) == 1, installs
    assert "--dry-run" not in installs[0]


def install_top_in_a_loop(
    uv_cache: UvCache, chain: Path, venvs: Path, worker: str, count: int
) -> list[str]:
    failures = []
    for index in range(count):
        python = new_venv(uv_cache, venvs / f"{worker}-{index}")
        try:
            uv_cache.pip_install("top", python=python, args=find_links(chain))
        except pkgcache.CacheError as exc:
            failures.append(f"{worker}-{index}: {str(exc).splitlines()[-1]}")
            continue
        if not record_complete(python, "leaf"):
            failures.append(f"{worker}-{index}: leaf installed with files missing")
    return failures


@needs_uv
@pytest.mark.timeout(90)
def test_installs_never_fail_while_a_transitive_dependency_is_cleaned(
    uv_cache: UvCache, chain: Path, tmp_path: Path
) -> None:
    """Installs of ``top`` pull ``leaf``; another thread cleans ``leaf`` in a loop."""
    venvs = tmp_path / "venvs"
    stop = threading.Event()
    cleans: list[int] = []

    def clean_leaf() -> None:
        while not stop.is_set():
            cleans.append("Removed" in uv_cache.clean("leaf").stderr)

    cleaner = threading.Thread(target=clean_leaf)
    cleaner.start()
    with ThreadPoolExecutor(2) as pool:
        try:
            outcomes = list(
                pool.map(
                    lambda worker: install_top_in_a_loop(
                        uv_cache, chain, venvs, worker, 8
                    ),
                    ["a", "b"],
                )
            )
        finally:
            stop.set()
            cleaner.join(WAIT)
    failures = [failure for outcome in outcomes for failure in outcome]
    assert not failures, failures
    assert sum(cleans) >= 1, "no clean ever removed leaf: nothing was tested"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A wheel folder served over HTTP on the loopback, for remote find-links."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


@needs_uv
@pytest.mark.timeout(60)
def test_an_install_from_remote_find_links_holds_every_clean_off(
    uv_cache: UvCache,
    served: tuple[Path, str],
    tmp_path: Path,
    blocking_build: tuple[Path, socket.socket],
) -> None:
    """uv caches remote find-links pages in one bucket every clean deletes.

    Measured without the guard: 8 of 75 installs from a served folder failed
    beside cleans of another package ("failed to write to file
    .../flat-index-v7/html/.tmp...: No such file or directory").
    """
    folder, url = served
    slow_wheelhouse, server = blocking_build
    for sdist in slow_wheelhouse.iterdir():
        shutil.copy(sdist, folder)
    python = new_venv(uv_cache, tmp_path / "venv")
    done: queue.Queue[BaseException | None] = queue.Queue()

    def install_slow() -> None:
        try:
            # Named: only the remote find-links can take the guard here.
            uv_cache.pip_install(
                "slow",
                python=python,
                args=["--find-links", url, "--no-index"],
                packages=["slow"],
            )
            done.put(None)
        except BaseException as exc:
            done.put(exc)

    installer = threading.Thread(target=install_slow)
    installer.start()
    connection, _ = server.accept()
    try:
        assert connection.recv(16) == b"building"
        with pytest.raises(pkgcache.LockTimeout, match="uv-clean"):
            uv_cache.clean("other", timeout=0.05)
    finally:
        connection.sendall(b"go")
        connection.close()
    assert done.get(timeout=WAIT) is None
    installer.join(WAIT)
    assert installed_version(python, "slow") == "1.0"


@needs_uv
@pytest.mark.timeout(90)
def test_cleans_of_different_packages_never_race(
    uv_cache: UvCache, tmp_path: Path
) -> None:
    """Rounds of simultaneous cleans of different packages, beside installs."""
    names = [f"big{i}" for i in range(5)]
    wheels = tmp_path / "wheels"
    for name in names:
        files = {f"{name}/m{i:03d}.py": b"VALUE = 1\n" * 40 for i in range(150)}
        make_wheel(wheels, name, "1.0", files=files)
    make_wheel(wheels, "other", "1.0")
    failures: list[str] = []
    stop = threading.Event()

    def install_others() -> None:
        index = 0
        while not stop.is_set():
            index += 1
            python = new_venv(uv_cache, tmp_path / f"other-{index}")
            uv_cache.pip_install("other", python=python, args=find_links(wheels))

    barrier = threading.Barrier(len(names))

    def clean(name: str) -> None:
        barrier.wait(WAIT)
        try:
            uv_cache.clean(name)
        except UvCommandError as exc:
            failures.append(str(exc).splitlines()[-1])

    installer = threading.Thread(target=install_others)
    installer.start()
    try:
        for round_number in range(4):
            python = new_venv(uv_cache, tmp_path / f"all-{round_number}")
            uv_cache.pip_install(*names, python=python, args=find_links(wheels))
            cleaners = [threading.Thread(target=clean, args=(n,)) for n in names]
            for cleaner in cleaners:
                cleaner.start()
            for cleaner in cleaners:
                cleaner.join(WAIT)
    finally:
        stop.set()
        installer.join(WAIT)
    assert not failures, failures


@pytest.mark.timeout(60)
def test_exclusive_with_reading_holds_the_dependencies_shared(
    uv_cache: UvCache,
) -> None:
    """The builder's pattern on a uv cache: write my package, read my deps."""
    other = UvCache(uv_cache.path, locks_dir=uv_cache.locks_dir, uv=UV, timeout=0)
    with uv_cache.exclusive("zzz-mine", reading=["aaa-dep"]) as txn:
        assert txn.packages == ("zzz-mine",)
        assert txn.reading == ("aaa-dep",)
        outcomes: dict[str, str] = {}

        def probe() -> None:
            for name, take in [
                ("read dep", lambda: other.reading("aaa-dep")),
                ("write dep", lambda: other.exclusive("aaa-dep")),
                ("read mine", lambda: other.reading("zzz-mine")),
            ]:
                try:
                    with take():
                        outcomes[name] = "granted"
                except pkgcache.LockTimeout:
                    outcomes[name] = "busy"

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(WAIT)
    assert outcomes == {
        "read dep": "granted",
        "write dep": "busy",
        "read mine": "busy",
    }
