"""Every example runs as-is and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pkgcache

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 90


def run_example(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PKGCACHE_DIR"}
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.timeout(TIMEOUT + 10)
def test_workers() -> None:
    out = run_example("examples/workers.py").stdout
    assert "361 locks taken" in out  # 9 workers x 40 rounds + one exclusive()
    assert "what waited for what" in out
    assert "exclusive() waits for everyone" in out


@pytest.mark.timeout(TIMEOUT + 10)
def test_build_farm() -> None:
    pytest.importorskip("uv", reason="the farm runs the real uv (the farm extra)")
    out = run_example("examples/build_farm.py").stdout
    assert "built 24 wheels" in out
    assert "; 0 failures" in out
    assert "FAILED" not in out
    assert "what waited for what:" in out


@pytest.mark.timeout(TIMEOUT + 10)
def test_fromager_style_builder(tmp_path: Path) -> None:
    out = run_example("examples/fromager_style_builder.py", str(tmp_path)).stdout
    assert "built 14 wheels of 7 packages in 2 rounds" in out
    assert "installed 28 build dependencies from the cache" in out
    assert "removed 7 stale wheels" in out
    assert "clean('pytest'): removed 1 entries" in out
    assert "cache now: 6 packages, 6 entries" in out
    # The wheels it left are valid: every file matches the RECORD.
    cache = pkgcache.Cache(tmp_path)
    packages = ["setuptools", "wheel", "setuptools-scm", "packaging", "pluggy"]
    with cache.reading(*packages, "iniconfig", "pytest") as view:
        assert view.entries("pytest") == []
        wheels = [e.path for p in [*packages, "iniconfig"] for e in view.entries(p)]
        assert len(wheels) == 6
        for wheel in wheels:
            check_wheel(wheel)


def check_wheel(wheel: Path) -> None:
    """Every file of ``wheel`` is in its RECORD and the METADATA is there."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        listed = [
            line.split(",")[0] for line in archive.read(record).decode().splitlines()
        ]
        assert sorted(listed) == sorted(names)
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        assert "Version: 1.0.0" in archive.read(metadata).decode()


@pytest.mark.timeout(TIMEOUT + 10)
def test_guard_external_tool() -> None:
    out = run_example("examples/guard_external_tool.py").stdout
    assert out.count("installed setuptools-scm: 2 files, 24000 bytes") == 3
    assert "has waited" in out
    assert "for the shared lock on package 'setuptools-scm' in " in out
    assert "holds the exclusive lock on package 'setuptools-scm'" in out
    # The waiting install ran after the clean and the re-population.
    assert out.index("cleaned setuptools-scm") < out.rindex("installed setuptools")
    assert "install exit code 0" in out
    assert "holds the shared lock on package 'setuptools-scm'" in out


@pytest.mark.timeout(TIMEOUT + 10)
def test_pytest_module_with_plugin() -> None:
    done = run_example(
        "-m",
        "pytest",
        "examples/test_with_plugin.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
    )
    assert "3 passed" in done.stdout.splitlines()[-1]
