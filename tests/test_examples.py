"""Every example runs as-is and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "exclusive() waits for everyone" in out


@pytest.mark.timeout(TIMEOUT + 10)
def test_guard_external_tool() -> None:
    out = run_example("examples/guard_external_tool.py").stdout
    assert out.count("installed setuptools-scm: 2 files, 24000 bytes") == 3
    assert "pkgcache: waiting for setuptools-scm: pid " in out
    assert "holds exclusive lock on 'setuptools-scm'" in out
    # The waiting install ran after the clean and the re-population.
    assert out.index("cleaned setuptools-scm") < out.rindex("installed setuptools")
    assert "install exit code 0" in out
    assert "holds shared lock on 'setuptools-scm'" in out


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
