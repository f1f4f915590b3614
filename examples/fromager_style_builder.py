"""A Fromager-style wheel builder: a thread pool sharing one pkgcache cache.

Run it with ``python examples/fromager_style_builder.py [CACHE_DIR]`` (a
temporary folder by default). It builds a small dependency graph of packages
in a ``ThreadPoolExecutor``, the way Fromager rebuilds a package and all its
dependencies from source. Each worker:

1. installs its build dependencies from the cache under
   ``reading(*build_deps)``: it finds each wheel, checks every file against
   the wheel's RECORD and unpacks it; nobody can remove them meanwhile;
2. builds a real, small, valid wheel of its package (a zip with
   ``METADATA``, ``WHEEL`` and ``RECORD`` in its ``.dist-info``);
3. publishes it under ``exclusive(pkg)`` with ``txn.add(wheel, move=True)``
   and removes the package's stale wheels (``txn.remove``).

The first round builds in dependency order. The second round rebuilds every
package at once with a new build tag, so dependents read a package while it
is being republished: they wait for its lock, never see a half-written or
vanished wheel. Finally one package is invalidated with ``cache.clean``.
The summary says how many wheels were built, how often workers waited for a
lock and for how long.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pkgcache

# package -> its build dependencies
GRAPH: dict[str, list[str]] = {
    "setuptools": [],
    "wheel": ["setuptools"],
    "setuptools-scm": ["setuptools", "wheel"],
    "packaging": ["setuptools", "wheel"],
    "pluggy": ["setuptools", "setuptools-scm"],
    "iniconfig": ["setuptools", "setuptools-scm"],
    "pytest": ["setuptools", "setuptools-scm", "packaging", "pluggy", "iniconfig"],
}
VERSION = "1.0.0"
WORKERS = 4

H = TypeVar("H")


class Stats:
    """Counts of builds and lock waits, shared by the workers."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.built = 0
        self.installed = 0
        self.removed = 0
        self.waits: list[tuple[str, float]] = []

    @contextmanager
    def locked(
        self, what: str, request: Callable[[float | None], AbstractContextManager[H]]
    ) -> Iterator[H]:
        """Enter ``request``; if it must wait, count and time the wait."""
        with ExitStack() as stack:
            try:
                handle = stack.enter_context(request(0))  # free now: no wait
            except pkgcache.LockTimeout:
                start = time.perf_counter()
                handle = stack.enter_context(request(60))
                with self.mutex:
                    self.waits.append((what, time.perf_counter() - start))
            yield handle


def dist_name(package: str) -> str:
    return package.replace("-", "_")


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(package: str, build_tag: str, deps: list[str], out: Path) -> Path:
    """Write a small valid wheel of ``package`` into ``out``; return its path."""
    dist = dist_name(package)
    info = f"{dist}-{VERSION}.dist-info"
    files = {
        f"{dist}/__init__.py": f'__version__ = "{VERSION}"\n'.encode(),
        f"{info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {package}\n"
            f"Version: {VERSION}\n" + "".join(f"Requires-Dist: {dep}\n" for dep in deps)
        ).encode(),
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\n"
            "Generator: fromager-style-builder\n"
            "Root-Is-Purelib: true\n"
            "Tag: py3-none-any\n" + (f"Build: {build_tag}\n" if build_tag else "")
        ).encode(),
    }
    record = "".join(
        f"{name},{record_hash(data)},{len(data)}\n" for name, data in files.items()
    )
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    tag = f"-{build_tag}" if build_tag else ""
    wheel = out / f"{dist}-{VERSION}{tag}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def install_wheel(wheel: Path, target: Path) -> None:
    """Unpack ``wheel`` into ``target`` after checking it against its RECORD."""
    data = wheel.read_bytes()  # one read: the bytes checked are the bytes used
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        record_name = next(n for n in archive.namelist() if n.endswith("/RECORD"))
        for line in archive.read(record_name).decode().splitlines():
            name, digest, _ = line.rsplit(",", 2)
            if digest and record_hash(archive.read(name)) != digest:
                raise RuntimeError(f"{wheel.name}: {name} does not match RECORD")
        archive.extractall(target)


def build(
    cache: pkgcache.Cache, package: str, build_tag: str, work: Path, stats: Stats
) -> None:
    deps = GRAPH[package]
    env = Path(tempfile.mkdtemp(prefix=f"{package}-env-", dir=work))
    # 1. Install build dependencies: nobody can remove them while we read.
    with stats.locked(
        f"reading({', '.join(deps)})",
        lambda timeout: cache.reading(*deps, timeout=timeout),
    ) as view:
        for dep in deps:
            entry = view.find(dep, kind="wheel")
            if entry is None:
                raise RuntimeError(f"{package}: build dependency {dep} is missing")
            install_wheel(entry.path, env)
            with stats.mutex:
                stats.installed += 1
    # 2. Build, outside any lock.
    wheel = build_wheel(package, build_tag, deps, env)
    # 3. Publish; drop the stale builds of this package.
    with stats.locked(
        f"exclusive({package})",
        lambda timeout: cache.exclusive(package, timeout=timeout),
    ) as txn:
        stale = [entry.key for entry in txn.entries(package)]
        added = txn.add(wheel, move=True)
        for key in stale:
            if key != added.key:
                txn.remove(key)
        with stats.mutex:
            stats.built += 1
            stats.removed += len(stale) - (added.key in stale)


def run_round(
    pool: ThreadPoolExecutor,
    cache: pkgcache.Cache,
    build_tag: str,
    work: Path,
    stats: Stats,
    *,
    in_order: bool,
) -> None:
    """Build every package; ``in_order`` waits for a package's dependencies."""
    done: set[str] = set()
    running: dict[Future[Any], str] = {}
    todo = list(GRAPH)
    while todo or running:
        for package in list(todo):
            if not in_order or all(dep in done for dep in GRAPH[package]):
                todo.remove(package)
                future = pool.submit(build, cache, package, build_tag, work, stats)
                running[future] = package
        finished, _ = wait(running, timeout=120, return_when=FIRST_COMPLETED)
        if not finished:
            raise RuntimeError("a build did not finish in time")
        for future in finished:
            future.result()  # re-raise a worker's error
            done.add(running.pop(future))


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="pkgcache-builder-") as tmp:
        root = Path(argv[1]) if len(argv) > 1 else Path(tmp, "cache")
        work = Path(tmp, "work")  # beside the cache: move=True is a rename
        work.mkdir()
        cache = pkgcache.Cache(root)
        stats = Stats()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            run_round(pool, cache, "", work, stats, in_order=True)
            # Rebuild everything at once: readers meet writers.
            run_round(pool, cache, "1", work, stats, in_order=False)
        elapsed = time.perf_counter() - start

        with cache.reading(*GRAPH) as view:
            wheels = {name: [e.path.name for e in view.entries(name)] for name in GRAPH}
        report = cache.clean("pytest")  # invalidate one package
        info = cache.info()

        print(f"cache: {root}")
        print(f"built {stats.built} wheels of {len(GRAPH)} packages in 2 rounds")
        print(f"installed {stats.installed} build dependencies from the cache")
        print(f"removed {stats.removed} stale wheels")
        for name, files in wheels.items():
            print(f"  {name:15} {', '.join(files)}")
        total_wait = sum(seconds for _, seconds in stats.waits)
        print(
            f"waits for a lock: {len(stats.waits)}, {total_wait * 1000:.1f} ms in all"
        )
        for what, seconds in sorted(stats.waits, key=lambda w: -w[1])[:5]:
            print(f"  {seconds * 1000:8.2f} ms  {what}")
        print(
            f"clean('pytest'): removed {report.entries_removed} entries, "
            f"freed {report.bytes_freed} bytes"
        )
        print(
            f"cache now: {info.packages} packages, {info.entries} entries, "
            f"{info.bytes} bytes"
        )
        print(f"time: {elapsed:.2f} s")
        ok = stats.built == 2 * len(GRAPH) and all(len(f) == 1 for f in wheels.values())
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
