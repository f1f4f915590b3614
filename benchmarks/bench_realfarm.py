"""Issue 11: a real build farm on one uv cache, with real sdists, backends and uv.

**Setup needs the network once**: ``--fetch`` (or the first run) downloads
18 real sdists and the wheels of their build backends from the package
registry with ``pip download`` into ``benchmarks/downloads/realfarm/`` (not
committed). Every run after that is offline: uv installs with
``--find-links <wheelhouse> --no-index``.

A thread pool does Fromager's loop for every sdist, in a shuffled (loose)
order: unpack, ``uv venv``, install the build requirements (``[build-system]
requires``, then what ``get_requires_for_build_wheel`` asks for), build the
wheel with the real PEP 517 backend, publish it into the wheelhouse (the
``--find-links`` folder, replacing the registry wheel of the same name) and
invalidate the package in uv's cache. Optional extra threads install shared
build requirements into fresh venvs in a loop meanwhile.

Schemes, side by side in one run (each round runs them all, in turn, each
on a fresh uv cache and wheelhouse):

``uv-lock``
    Fromager today: plain ``uv pip install`` and ``uv cache clean PKG``;
    uv's whole-cache lock makes every clean wait for every install.
``pkgcache``
    :class:`pkgcache.uv.UvCache` with its safe default: ``pip_install``
    locks what uv resolves; publish and ``clean(pkg)`` under
    ``exclusive(pkg)``.
``pkgcache-closure``
    the same, passing the resolved closure by hand (``packages=``, from
    ``uv pip compile`` at setup): the cost the default is measured against.
``no-locks``
    ``uv cache clean --force PKG`` with no lock at all: the motivating bug.
``no-invalidation``
    never cleans: the lower bound (later installs get stale wheels).

Every install is checked: the files in each installed ``RECORD`` exist
(``incomplete`` otherwise), and a package that the farm published before the
install started carries the farm's marker file (``stale`` otherwise; the farm
adds ``FARM_BUILD`` to the ``.dist-info`` of every wheel it builds).

Run: ``python -m benchmarks.bench_realfarm [--workers 4] [--installers 0 2]
[--rounds 1]``; ``python -m benchmarks --only realfarm`` runs it with the
other benchmarks (it is left out of a plain ``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from benchmarks._common import describe, machine, save, table
from pkgcache.uv import UvCache, UvCommandError, find_uv

DOWNLOADS = Path(__file__).resolve().parent / "downloads" / "realfarm"
DEFAULT_SVG = Path(__file__).resolve().parent.parent / "docs/_static/realfarm.svg"

# The 18 sdists the farm builds (versions pinned so runs compare).
SDISTS = {
    "certifi": "2026.10.18",
    "exceptiongroup": "1.3.2",
    "filelock": "3.18.0",
    "flit-core": "4.2.0",
    "hatchling": "1.33.0",
    "idna": "3.20",
    "iniconfig": "2.3.1",
    "more-itertools": "11.2.1",
    "packaging": "26.4",
    "pathspec": "1.1.1",
    "platformdirs": "4.3.8",
    "pluggy": "1.7.0",
    "setuptools-scm": "10.3.4",
    "six": "1.17.0",
    "trove-classifiers": "2026.9.21.13",
    "typing-extensions": "4.16.0",
    "vcs-versioning": "2.6.0",
    "zipp": "4.1.2",
}
# Registry wheels of every build requirement (with their dependencies).
BACKEND_WHEELS = (
    "setuptools==84.2.1",
    "setuptools-scm[toml]==10.3.4",
    "vcs-versioning==2.6.0",
    "packaging==26.4",
    "flit-core==4.2.0",
    "flit-core==3.12.0",
    "flit-scm==1.7.0",
    "hatchling==1.33.0",
    "hatch-vcs==0.5.0",
    "calver==2025.10.20",
    "coherent.licensed==0.5.2",
    "wheel==0.48.0",
    "typing-extensions==4.16.0",
)
SCHEMES = ("uv-lock", "pkgcache", "pkgcache-closure", "no-locks", "no-invalidation")
MARKER = "FARM_BUILD"
LEGACY = {
    "requires": ["setuptools>=40.8.0"],
    "backend": "setuptools.build_meta:__legacy__",
}


# -- setup: the one download -----------------------------------------------------


def fetch(folder: Path = DOWNLOADS) -> Path:
    """Download the sdists and backend wheels once (the only network use)."""
    sdists, wheels = folder / "sdists", folder / "wheels"
    done = folder / "complete"
    if done.exists():
        return folder
    print(f"downloading {len(SDISTS)} sdists and backend wheels into {folder} ...")
    pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check"]
    for name, version in SDISTS.items():
        subprocess.run(
            [
                *pip,
                "--no-deps",
                "--no-binary",
                name,
                "-d",
                sdists,
                f"{name}=={version}",
            ],
            check=True,
        )
    for requirement in BACKEND_WHEELS:
        subprocess.run(
            [*pip, "--only-binary", ":all:", "-d", wheels, requirement], check=True
        )
    done.write_text("ok\n")
    return folder


# -- what each sdist needs -----------------------------------------------------


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    path: Path
    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...]


def read_sdists(folder: Path) -> list[Sdist]:
    import tomllib

    found = []
    for path in sorted((folder / "sdists").glob("*.tar.gz")):
        with tarfile.open(path) as archive:
            top = archive.getnames()[0].split("/")[0]
            try:
                member = archive.extractfile(f"{top}/pyproject.toml")
                data = tomllib.loads(member.read().decode()) if member else {}
            except KeyError:
                data = {}
        system = data.get("build-system", {})
        project, _, version = top.rpartition("-")
        found.append(
            Sdist(
                re.sub(r"[-_.]+", "-", project).lower(),
                version,
                path,
                tuple(system.get("requires", LEGACY["requires"])),
                system.get("build-backend", LEGACY["backend"]),
                tuple(system.get("backend-path", ())),
            )
        )
    return found


_HOOK = """\
import importlib, json, os, sys
hook, backend, backend_path, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
sys.path[:0] = [os.path.abspath(p) for p in backend_path]
module, _, attribute = backend.partition(":")
target = importlib.import_module(module)
for part in filter(None, attribute.split(".")):
    target = getattr(target, part)
if hook == "requires":
    function = getattr(target, "get_requires_for_build_wheel", None)
    print(json.dumps(function({}) if function else []))
else:
    print(json.dumps(target.build_wheel(out, {})))
"""


def call_hook(python: Path, sdist: Sdist, source: Path, hook: str, out: Path) -> Any:
    done = subprocess.run(
        [python, "-c", _HOOK, hook, sdist.backend, json.dumps(sdist.backend_path), out],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{sdist.name}: {hook} failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mark(wheel: Path) -> None:
    """Add ``<dist-info>/FARM_BUILD`` (and its RECORD line): a farm-built wheel."""
    with zipfile.ZipFile(wheel) as source:
        items = [(info, source.read(info)) for info in source.infolist()]
    record = next(i for i, _ in items if i.filename.endswith(".dist-info/RECORD"))
    marker = record.filename.rsplit("/", 1)[0] + "/" + MARKER
    data = b"pkgcache real-farm benchmark\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    line = f"{marker},sha256={digest.decode()},{len(data)}\n".encode()
    temporary = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
        for info, content in items:
            target.writestr(info, line + content if info is record else content)
        target.writestr(marker, data)
    os.replace(temporary, wheel)


def check_venv(python: Path, published: dict[str, str]) -> list[str]:
    """Problems of an environment: files missing, stale farm packages.

    ``published`` maps each package the farm had published when the install
    started to the version it built (``flit-core`` 3.12 stays the registry
    wheel: only 4.2.0 is rebuilt).
    """
    problems = []
    for site in python.parent.parent.glob("lib/python*/site-packages"):
        for info in site.glob("*.dist-info"):
            project, _, version = info.stem.rpartition("-")
            name = re.sub(r"[-_.]+", "-", project).lower()
            try:
                lines = (info / "RECORD").read_text().splitlines()
            except FileNotFoundError:
                problems.append(f"incomplete: {info.name} has no RECORD")
                continue
            missing = [
                p
                for p in (ln.split(",")[0] for ln in lines)
                if p and not (site / p).exists()
            ]
            if missing:
                problems.append(
                    f"incomplete: {info.name}: {len(missing)} files missing"
                )
            if published.get(name) == version and not (info / MARKER).exists():
                problems.append(f"stale: {info.name} is the registry wheel")
    return problems


# -- the schemes -------------------------------------------------------------------


@dataclass
class Tally:
    """What one farm run did, and how long its installs and cleans took."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    failures: list[str] = field(default_factory=list)
    install_s: list[float] = field(default_factory=list)
    clean_s: list[float] = field(default_factory=list)
    installs: int = 0
    builds: int = 0

    def add(self, what: str, seconds: float) -> None:
        with self.lock:
            (self.install_s if what == "install" else self.clean_s).append(seconds)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


class Scheme:
    """How a farm installs, publishes and invalidates on one uv cache."""

    def __init__(
        self, name: str, cache: Path, wheelhouse: Path, closures: Closures
    ) -> None:
        self.name = name
        self.uv_cache = UvCache(cache, uv=find_uv(), timeout=300)
        self.wheelhouse = wheelhouse
        self.closures = closures
        self.links = ["--find-links", str(wheelhouse), "--no-index", "--quiet"]

    def venv(self, path: Path) -> Path:
        self.uv_cache.run("venv", "--quiet", "--python", sys.executable, str(path))
        return path / "bin" / "python"

    def install(self, python: Path, requirements: Sequence[str]) -> None:
        if self.name == "pkgcache":
            self.uv_cache.pip_install(*requirements, python=python, args=self.links)
        elif self.name == "pkgcache-closure":
            self.uv_cache.pip_install(
                *requirements,
                python=python,
                args=self.links,
                packages=self.closures.get(requirements),
            )
        else:
            self.uv_cache.run(
                "pip", "install", "--python", str(python), *self.links, *requirements
            )

    @contextlib.contextmanager
    def publishing(self, name: str) -> Iterator[None]:
        if self.name.startswith("pkgcache"):
            with self.uv_cache.exclusive(name):
                yield
        else:
            yield

    def invalidate(self, name: str) -> None:
        if self.name.startswith("pkgcache"):
            self.uv_cache.clean(name)
        elif self.name == "uv-lock":
            self.uv_cache.run("cache", "clean", name)
        elif self.name == "no-locks":
            self.uv_cache.run("cache", "clean", "--force", name)


def build_one(
    scheme: Scheme, sdist: Sdist, work: Path, tally: Tally, published: dict[str, str]
) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"{sdist.name}-", dir=work))
    with tarfile.open(sdist.path) as archive:
        archive.extractall(folder, filter="data")
    source = next(folder.iterdir())
    python = scheme.venv(folder / "venv")
    if sdist.requires:  # flit-core and hatchling build themselves
        timed_install(scheme, python, list(sdist.requires), tally, published)
    # What the backend asks for beyond [build-system] requires, markers
    # evaluated as a frontend does (no extras are being built).
    extra = [
        text
        for text in call_hook(python, sdist, source, "requires", folder)
        if (marker := Requirement(text).marker) is None
        or marker.evaluate({"extra": ""})
    ]
    if extra:
        timed_install(scheme, python, extra, tally, published)
    out = folder / "dist"
    out.mkdir()
    wheel = out / call_hook(python, sdist, source, "build", out)
    mark(wheel)
    with scheme.publishing(sdist.name):
        staged = scheme.wheelhouse / f".{wheel.name}.part"
        shutil.copyfile(wheel, staged)
        os.replace(staged, scheme.wheelhouse / wheel.name)
        started = time.perf_counter()
        scheme.invalidate(sdist.name)
        tally.add("clean", time.perf_counter() - started)
        with tally.lock:
            published[sdist.name] = sdist.version
            tally.builds += 1
    shutil.rmtree(folder, ignore_errors=True)


def timed_install(
    scheme: Scheme,
    python: Path,
    requirements: list[str],
    tally: Tally,
    published: dict[str, str],
) -> None:
    with tally.lock:
        before = dict(published)
    started = time.perf_counter()
    scheme.install(python, requirements)
    tally.add("install", time.perf_counter() - started)
    with tally.lock:
        tally.installs += 1
    for problem in check_venv(python, before):
        tally.fail(f"install {' '.join(requirements)}: {problem}")


def run_farm(
    scheme: Scheme,
    sdists: list[Sdist],
    workers: int,
    installers: int,
    seed: int,
    work: Path,
) -> dict[str, Any]:
    tally = Tally()
    published: dict[str, str] = {}
    order = list(sdists)
    random.Random(seed).shuffle(order)
    requirement_sets = sorted({s.requires for s in sdists if s.requires})
    finished = threading.Event()

    def extra_installs(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        count = 0
        while not finished.is_set():
            count += 1
            venv = work / f"extra-{index}-{count}"
            try:
                python = scheme.venv(venv)
                timed_install(
                    scheme, python, list(rng.choice(requirement_sets)), tally, published
                )
            except (UvCommandError, OSError) as exc:
                tally.fail(f"extra install: {last_line(exc)}")
            shutil.rmtree(venv, ignore_errors=True)

    def build(sdist: Sdist) -> None:
        try:
            build_one(scheme, sdist, work, tally, published)
        except (UvCommandError, RuntimeError, OSError) as exc:
            tally.fail(f"build {sdist.name}: {last_line(exc)}")

    extra = [
        threading.Thread(target=extra_installs, args=(i,)) for i in range(installers)
    ]
    started = time.perf_counter()
    for thread in extra:
        thread.start()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(build, order))
    makespan = time.perf_counter() - started
    finished.set()
    for thread in extra:
        thread.join(600)
    return {
        "makespan_s": makespan,
        "failures": tally.failures,
        "builds": tally.builds,
        "installs": tally.installs,
        "install_s": sum(tally.install_s),
        "clean_s": sum(tally.clean_s),
        "max_clean_s": max(tally.clean_s, default=0.0),
    }


def last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if (
            "error" in line.lower()
            or "No such file" in line
            or "invalid" in line.lower()
        ):
            return line.strip()[:200]
    return (lines[-1] if lines else type(exc).__name__)[:200]


class Closures:
    """What a caller passes as ``packages=``: each set's closure, by hand.

    ``uv pip compile`` (no cache) resolves it. The build requirements are
    compiled at setup; what a backend asks for on top is compiled on first
    use (inside the farm's time, against the published wheelhouse).
    """

    def __init__(self, wheelhouse: Path, sdists: list[Sdist]) -> None:
        self.wheelhouse = wheelhouse
        self.known: dict[tuple[str, ...], list[str]] = {}
        self.lock = threading.Lock()
        for sdist in sdists:
            if sdist.requires:
                self.get(sdist.requires)

    def get(self, requires: Sequence[str]) -> list[str]:
        key = tuple(requires)
        with self.lock:
            if key not in self.known:
                done = subprocess.run(
                    [
                        find_uv(),
                        "pip",
                        "compile",
                        "--no-cache",
                        "--quiet",
                        "--no-header",
                        "--no-annotate",
                        "--find-links",
                        str(self.wheelhouse),
                        "--no-index",
                        "--python",
                        sys.executable,
                        "-",
                    ],
                    input="\n".join(requires) + "\n",
                    capture_output=True,
                    text=True,
                    check=True,
                )
                names = [
                    line.split("==")[0].strip()
                    for line in done.stdout.splitlines()
                    if "==" in line
                ]
                self.known[key] = names
            return self.known[key]


# -- the run -------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_realfarm", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--installers",
        type=int,
        nargs="+",
        default=[0, 2],
        help="extra installer threads (one run per value)",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--fetch", action="store_true", help="only download (the one network use)"
    )
    parser.add_argument("--downloads", type=Path, default=DOWNLOADS)
    parser.add_argument(
        "--svg", type=Path, default=None, help=f"write the plot (e.g. {DEFAULT_SVG})"
    )
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None, *, save_results: bool = True
) -> dict[str, Any]:
    args = parse_args(argv)
    folder = fetch(args.downloads)
    if args.fetch:
        return {}
    sdists = read_sdists(folder)
    closures = Closures(folder / "wheels", sdists)
    print(f"real farm: {describe(machine())}")
    version = subprocess.run(
        [find_uv(), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    print(
        f"{len(sdists)} sdists, {args.workers} workers, extra installers "
        f"{args.installers}, {args.rounds} round(s), uv {version}"
    )
    samples: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="pkgcache-realfarm-") as tmp:
        for round_number in range(args.rounds):
            for installers in args.installers:
                for scheme_name in args.schemes:
                    base = Path(tmp, f"{scheme_name}-{installers}-{round_number}")
                    wheelhouse = base / "wheelhouse"
                    shutil.copytree(folder / "wheels", wheelhouse)
                    work = base / "work"
                    work.mkdir()
                    scheme = Scheme(
                        scheme_name, base / "uv-cache", wheelhouse, closures
                    )
                    outcome = run_farm(
                        scheme,
                        sdists,
                        args.workers,
                        installers,
                        args.seed + round_number,
                        work,
                    )
                    samples.setdefault(f"{scheme_name}/{installers}", []).append(
                        outcome
                    )
                    print(
                        f"  {scheme_name:17} +{installers} installers: {outcome['makespan_s']:6.2f} s, "
                        f"{outcome['builds']} built, {outcome['installs']} installs, "
                        f"{len(outcome['failures'])} failures"
                    )
                    shutil.rmtree(base, ignore_errors=True)
    summary = summarize(samples)
    rows = [
        [
            key,
            f"{row['makespan_s']:.2f}",
            f"{row['install_s']:.1f}",
            f"{row['clean_s']:.1f}",
            f"{row['max_clean_s']:.2f}",
            f"{row['installs']}",
            f"{row['failed']}",
        ]
        for key, row in summary.items()
    ]
    print(
        table(
            [
                "scheme/extra installers",
                "makespan s",
                "in installs s",
                "in cleans s",
                "longest clean s",
                "installs",
                "failures",
            ],
            rows,
        )
    )
    for key, runs in samples.items():
        messages = sorted({m for run in runs for m in run["failures"]})
        for message in messages[:4]:
            print(f"  {key}: {message}")
    ratios = paired_ratios(samples, args.installers)
    for name, row in ratios.items():
        print(
            f"  {name}: median {row['median']:.3f}, "
            f"range {row['min']:.3f}-{row['max']:.3f} over {row['rounds']} round(s)"
        )
    result = {
        "ratios": ratios,
        "parameters": {
            "workers": args.workers,
            "installers": args.installers,
            "rounds": args.rounds,
            "seed": args.seed,
            "sdists": len(sdists),
        },
        "summary": summary,
        "runs": samples,
    }
    if save_results:
        print(f"saved {save(result, 'realfarm')}")
    if args.svg is not None:
        args.svg.parent.mkdir(parents=True, exist_ok=True)
        args.svg.write_text(render_svg(summary, args))
        print(f"plot: {args.svg}")
    return result


def paired_ratios(
    samples: dict[str, list[dict[str, Any]]], installers: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Round-by-round makespan ratios of the schemes run side by side."""
    pairs = [
        ("pkgcache", "pkgcache-closure"),
        ("uv-lock", "pkgcache"),
    ]
    ratios = {}
    for load in installers:
        for top, bottom in pairs:
            a, b = samples.get(f"{top}/{load}"), samples.get(f"{bottom}/{load}")
            if not a or not b:
                continue
            values = [
                x["makespan_s"] / y["makespan_s"] for x, y in zip(a, b, strict=True)
            ]
            ratios[f"{top} / {bottom}, +{load} installers"] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "rounds": len(values),
            }
    return ratios


def render_svg(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Makespan and time in cleans per scheme and load, as horizontal bars."""
    width, left, bar, gap = 860, 190, 18, 6
    longest = max(row["makespan_s"] for row in summary.values()) or 1.0
    most_clean = max(row["clean_s"] for row in summary.values()) or 1.0
    panel = (width - left - 60) / 2
    out = [
        f'<text x="{left}" y="20" font-weight="bold">Real build farm: '
        f"{args.workers} workers, 18 sdists, real uv (median of {args.rounds} "
        "round(s); lower is better)</text>",
        f'<text x="{left}" y="42">makespan (s)</text>',
        f'<text x="{left + panel + 40}" y="42">time in cleans, summed (s)</text>',
    ]
    y = 52
    for key, row in summary.items():
        scheme = key.split("/")[0]
        fill = {"pkgcache": "#4c78a8", "uv-lock": "#e15759"}.get(scheme, "#9d9d9d")
        failed = f"  ({row['failed']} failed)" if row["failed"] else ""
        label = f"{scheme} +{key.split('/')[1]}"
        out.append(
            f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{label}</text>'
        )
        w1 = 0.8 * panel * row["makespan_s"] / longest
        w2 = 0.8 * panel * row["clean_s"] / most_clean
        x2 = left + panel + 40
        out.append(
            f'<rect x="{left}" y="{y}" width="{w1:.1f}" height="{bar}" fill="{fill}"/>'
        )
        out.append(
            f'<text x="{left + w1 + 4:.1f}" y="{y + 13}">{row["makespan_s"]:.1f}{failed}</text>'
        )
        out.append(
            f'<rect x="{x2}" y="{y}" width="{w2:.1f}" height="{bar}" fill="{fill}"/>'
        )
        out.append(
            f'<text x="{x2 + w2 + 4:.1f}" y="{y + 13}">{row["clean_s"]:.1f}</text>'
        )
        y += bar + gap
    height = y + 10
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        '<rect width="100%" height="100%" fill="white"/>'
    )
    return head + "".join(out) + "</svg>\n"


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for key, runs in samples.items():
        summary[key] = {
            "makespan_s": statistics.median(r["makespan_s"] for r in runs),
            "install_s": statistics.median(r["install_s"] for r in runs),
            "clean_s": statistics.median(r["clean_s"] for r in runs),
            "max_clean_s": max(r["max_clean_s"] for r in runs),
            "installs": sum(r["installs"] for r in runs),
            "failed": sum(len(r["failures"]) for r in runs),
            "runs": len(runs),
        }
    return summary


if __name__ == "__main__":
    main()
