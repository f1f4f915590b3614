"""A small build farm on one uv cache: real uv, a real PEP 517 backend, offline.

Run it with ``python examples/build_farm.py`` (needs the ``uv`` package:
``pip install -e '.[farm]'``). Nothing is downloaded. The farm generates a
few packages, each an sdist with an in-tree PEP 517 backend and build
dependencies on the others, and builds them in a thread pool the way
Fromager does, twice (the second round rebuilds everything with new
contents). For each package a worker

1. creates a venv with ``uv venv``;
2. installs the build dependencies with real ``uv pip install`` from the
   farm's own wheelhouse (``--find-links``, wheels the farm built);
3. builds the wheel with the real backend (``build_wheel``, run in the venv);
4. publishes it into the wheelhouse and invalidates the package in uv's
   cache (``uv cache clean PKG``) while the others go on installing.

Two more threads install build dependencies in a loop, as other jobs of a
farm do. pkgcache's :class:`~pkgcache.uv.UvCache` locks per package: an
install holds ``reading()`` of what uv resolves, a clean waits for the users
of its package only, and publishing holds ``exclusive(pkg)``. A live
progress line shows the farm; the closing table says what waited for what.

``--no-locks`` runs the same farm with plain uv and ``uv cache clean
--force PKG`` and no pkgcache lock: cleans pull files from under running
installs, the motivating failure (``failed to read directory
.../archive-v0/...: No such file or directory``, or a package installed
with files missing).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pkgcache
from pkgcache.uv import UvCache, UvCommandError

# package -> its build dependencies (all built by the farm itself)
GRAPH: dict[str, list[str]] = {
    "demo-core": [],
    "demo-utils": ["demo-core"],
    "demo-text": ["demo-core", "demo-utils"],
    "demo-io": ["demo-core", "demo-utils"],
    "demo-net": ["demo-io", "demo-utils"],
    "demo-cli": ["demo-text", "demo-io"],
    "demo-web": ["demo-net", "demo-text", "demo-utils"],
    "demo-app": ["demo-cli", "demo-web", "demo-core"],
}
ROUNDS = 3
WORKERS = 3
INSTALLERS = 2
MODULES = 300  # modules per wheel: installs take long enough to overlap cleans

BACKEND = Path(__file__).with_name("farm_backend.py")

BUILD = """\
import sys
sys.path.insert(0, ".")
import farm_backend
print(farm_backend.build_wheel(sys.argv[1]))
"""


def module_of(package: str) -> str:
    return package.replace("-", "_")


def make_sdist(folder: Path, package: str, round_number: int) -> Path:
    """An sdist of ``package`` whose in-tree backend needs its build deps."""
    config = {
        "name": package,
        "version": "1.0",
        "module": module_of(package),
        "deps": GRAPH[package],
        "round": round_number,
        "modules": MODULES,
    }
    requires = ", ".join(f'"{dep}"' for dep in GRAPH[package])
    members = {
        "pyproject.toml": (
            f"[build-system]\nrequires = [{requires}]\n"
            'build-backend = "farm_backend"\nbackend-path = ["."]\n\n'
            f'[project]\nname = "{package}"\nversion = "1.0"\n'
        ),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n",
        "farm_backend.py": BACKEND.read_text(),
        "farm.json": json.dumps(config),
    }
    base = f"{module_of(package)}-1.0"
    path = folder / f"{base}-round{round_number}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


class Farm:
    """The shared state of one run: the uv cache, the wheelhouse, the tallies."""

    def __init__(self, root: Path, locks: bool) -> None:
        self.root = root
        self.locks = locks
        self.uv_cache = UvCache(root / "uv-cache", timeout=120)
        self.wheelhouse = root / "wheelhouse"
        self.wheelhouse.mkdir()
        self.mutex = threading.Lock()
        self.busy: collections.Counter[str] = collections.Counter()
        self.built = 0
        self.installs = 0
        self.cleans = 0
        self.failures: list[str] = []
        # (what waited, what it waited for) -> [count, seconds]
        self.waits: dict[tuple[str, str], list[float]] = collections.defaultdict(
            lambda: [0, 0.0]
        )

    @contextlib.contextmanager
    def doing(self, what: str) -> Iterator[None]:
        """Name this thread after its task, for the progress line and holders."""
        thread = threading.current_thread()
        thread.name = what
        with self.mutex:
            self.busy[kind(what)] += 1
        try:
            yield
        finally:
            with self.mutex:
                self.busy[kind(what)] -= 1

    def waiting(self, what: str, attempt: Callable[[float | None], object]) -> None:
        """Run ``attempt``; if its locks are busy, record who held them, then wait."""
        try:
            attempt(0)
            return
        except pkgcache.LockTimeout as busy:
            held = [h for h in busy.holders if not h.waiting]
            if busy.mode == "shared":  # an install waits for a writer only
                held = [h for h in held if h.mode == "exclusive"]
            blockers = {thread for holder in held for thread in holder.threads}
            # Readers only: a writer queued at the gate, served before later
            # readers (waiters are not named by thread).
            blockers = blockers or {"clean (queued first)"}
        start = time.perf_counter()
        attempt(None)
        waited = time.perf_counter() - start
        with self.mutex:
            for blocker in blockers:
                entry = self.waits[(kind(what), kind(blocker))]
                entry[0] += 1
                entry[1] += waited

    # -- the three uv operations ---------------------------------------------

    def venv(self, path: Path) -> Path:
        self.uv_cache.run("venv", "--quiet", "--python", sys.executable, str(path))
        return path / "bin" / "python"

    def install(self, python: Path, requirements: list[str], what: str) -> None:
        if not requirements:
            return
        links = ["--find-links", str(self.wheelhouse), "--no-index", "--quiet"]
        with self.doing(what):
            if self.locks:
                self.waiting(
                    what,
                    lambda timeout: self.uv_cache.pip_install(
                        *requirements, python=python, args=links, timeout=timeout
                    ),
                )
            else:
                self.uv_cache.run(
                    "pip", "install", "--python", str(python), *links, *requirements
                )
        missing = incomplete(python)
        with self.mutex:
            self.installs += 1
            if missing:
                self.failures.append(f"{what}: installed with files missing: {missing}")

    def publish(self, package: str, wheel: Path) -> None:
        """Put the wheel in the wheelhouse and drop the package from uv's cache."""
        what = f"clean {package}"
        with self.doing(what):
            if self.locks:

                def publish_and_clean(timeout: float | None) -> None:
                    with self.uv_cache.exclusive(package, timeout=timeout):
                        replace(wheel, self.wheelhouse)
                        self.uv_cache.clean(package)

                self.waiting(what, publish_and_clean)
            else:
                replace(wheel, self.wheelhouse)
                self.uv_cache.run("cache", "clean", "--force", package)
        with self.mutex:
            self.cleans += 1

    # -- a worker's job, and the extra installers ----------------------------

    def build(self, package: str, round_number: int) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"{package}-", dir=self.root / "work"))
        try:
            sdist = make_sdist(work, package, round_number)
            with tarfile.open(sdist) as archive:
                archive.extractall(work, filter="data")
            source = work / f"{module_of(package)}-1.0"
            python = self.venv(work / "venv")
            self.install(python, GRAPH[package], f"install build deps of {package}")
            with self.doing(f"build {package}"):
                out = work / "dist"
                out.mkdir()
                done = subprocess.run(
                    [python, "-c", BUILD, out],
                    cwd=source,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            self.publish(package, out / done.stdout.strip())
            with self.mutex:
                self.built += 1
        except (UvCommandError, subprocess.CalledProcessError) as exc:
            with self.mutex:
                self.failures.append(f"build {package}: {reason(exc)}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def install_in_a_loop(self, index: int, stop: threading.Event) -> None:
        rng = random.Random(index)
        count = 0
        shared = [deps for deps in GRAPH.values() if deps]
        while not stop.is_set():
            count += 1
            venv = self.root / "work" / f"job-{index}-{count}"
            deps = [d for d in rng.choice(shared) if self.has_wheel(d)]
            try:
                python = self.venv(venv)
                self.install(python, deps, f"job installing {', '.join(deps)}")
            except UvCommandError as exc:
                with self.mutex:
                    self.failures.append(f"job install: {reason(exc)}")
            shutil.rmtree(venv, ignore_errors=True)

    def has_wheel(self, package: str) -> bool:
        return (self.wheelhouse / f"{module_of(package)}-1.0-py3-none-any.whl").exists()


def replace(wheel: Path, folder: Path) -> None:
    staged = folder / f".{wheel.name}.part"
    shutil.copyfile(wheel, staged)
    os.replace(staged, folder / wheel.name)  # readers see the old or the new


def incomplete(python: Path) -> list[str]:
    """Installed packages with files of their RECORD missing."""
    broken = []
    for site in python.parent.parent.glob("lib/python*/site-packages"):
        for info in site.glob("*.dist-info"):
            lines = (info / "RECORD").read_text().splitlines()
            if not all((site / line.split(",")[0]).exists() for line in lines):
                broken.append(info.stem)
    return broken


def reason(exc: BaseException) -> str:
    text = getattr(exc, "stderr", "") or str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line for line in lines if "No such file" in line or "error" in line]
    return (causes or lines or [type(exc).__name__])[-1][:160]


def kind(what: str) -> str:
    """A task without its package: 'clean', 'install build deps', ..."""
    if what.endswith(")"):
        return what
    for prefix in ("install build deps", "job installing", "clean", "build"):
        if what.startswith(prefix):
            return {"job installing": "job install"}.get(prefix, prefix)
    return what


def run_rounds(farm: Farm, show: Callable[[str], None]) -> None:
    (farm.root / "work").mkdir()
    stop = threading.Event()
    jobs = [
        threading.Thread(target=farm.install_in_a_loop, args=(i, stop), name=f"job {i}")
        for i in range(INSTALLERS)
    ]
    with ThreadPoolExecutor(WORKERS) as pool:
        for round_number in range(1, ROUNDS + 1):
            if round_number == 1:
                # Dependency order: a package is built after its build deps.
                done: set[str] = set()
                while len(done) < len(GRAPH):
                    ready = [
                        p
                        for p in GRAPH
                        if p not in done and all(d in done for d in GRAPH[p])
                    ]
                    list(pool.map(lambda p: farm.build(p, 1), ready))
                    done.update(ready)
                for job in jobs:
                    job.start()
            else:
                # Rebuild everything at once: publishing meets installing.
                list(pool.map(lambda p, r=round_number: farm.build(p, r), GRAPH))
            show(f"round {round_number} done")
    stop.set()
    for job in jobs:
        job.join(120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--no-locks",
        action="store_true",
        help="plain uv and 'uv cache clean --force', no pkgcache lock",
    )
    args = parser.parse_args(argv)
    live = sys.stdout.isatty()
    with tempfile.TemporaryDirectory(prefix="pkgcache-farm-") as tmp:
        farm = Farm(Path(tmp), locks=not args.no_locks)
        mode = "without locks" if args.no_locks else "with pkgcache"
        print(
            f"build farm {mode}: {len(GRAPH)} packages x {ROUNDS} rounds, "
            f"{WORKERS} workers, {INSTALLERS} jobs installing build deps; "
            f"uv at {farm.uv_cache.uv}"
        )
        stop = threading.Event()

        def progress() -> None:
            while not stop.wait(0.1):
                with farm.mutex:
                    busy = +farm.busy  # the tasks running now
                    line = (
                        f"built {farm.built}/{len(GRAPH) * ROUNDS}, "
                        f"{farm.installs} installs, {farm.cleans} cleans, "
                        f"{len(farm.failures)} failures | now: "
                        + ", ".join(f"{n} {k}" for k, n in sorted(busy.items()))
                    )
                print(f"\r{line[:110]:<110}", end="", flush=True)

        def show(message: str) -> None:
            print(f"\r{message:<110}" if live else message, flush=True)

        ticker = threading.Thread(target=progress, daemon=True)
        if live:
            ticker.start()
        start = time.perf_counter()
        run_rounds(farm, show)
        elapsed = time.perf_counter() - start
        stop.set()
        if live:
            ticker.join(5)
        if live:
            print("\r" + " " * 110 + "\r", end="")
        print(
            f"built {farm.built} wheels, {farm.installs} installs, "
            f"{farm.cleans} cleans in {elapsed:.1f} s; {len(farm.failures)} failures"
        )
        for failure in farm.failures[:6]:
            print(f"  FAILED {failure}")
        if farm.locks:
            print_waits(farm)
        elif farm.failures:
            print(
                "without locks, cleans delete what running installs read: "
                "the motivating failure"
            )
        else:
            print("no failure this time: the race depends on timing; run it again")
        return 1 if farm.failures and farm.locks else 0


def print_waits(farm: Farm) -> None:
    print("what waited for what:")
    print(f"  {'waiter':22} {'waited for':22} {'times':>5} {'total ms':>9}")
    for (waiter, blocker), (count, seconds) in sorted(
        farm.waits.items(), key=lambda item: -item[1][1]
    ):
        print(f"  {waiter:22} {blocker:22} {int(count):5d} {seconds * 1000:9.0f}")
    if not farm.waits:
        print("  nothing waited")
    print(
        "  (a clean waits only for installs that resolved its package; "
        "installs of other packages never wait for it)"
    )


if __name__ == "__main__":
    sys.exit(main())
