"""Guarding an external tool with pkgcache locks.

Run it with ``python examples/guard_external_tool.py``. Tools that know
nothing of pkgcache (an installer, a cleaner, a script in another language)
take part in the lock protocol in two ways:

1. from a shell: ``pkgcache run --read PKG -- COMMAND ...`` holds the locks
   while the command runs and exits with the command's exit code;
2. from Python: ``with cache.reading(PKG): subprocess.run(...)``.

The "tools" here are two small Python scripts standing in for
``uv pip install`` (reads every file of a package in a tool's own cache
folder) and ``uv cache clean PKG`` (deletes that package's folder). The
cleaner runs under ``exclusive(PKG)``, the installer under ``reading(PKG)``,
so an install never sees a half-deleted package: it waits, and
``pkgcache run`` says who it waits for, then when it got the lock.
"""

from __future__ import annotations

import select
import subprocess
import sys
import tempfile
from pathlib import Path

import pkgcache

PACKAGE = "setuptools-scm"

# Stand-in for an installer: read every file of the package, fail loudly
# if the folder vanishes half-way.
INSTALLER = """
import pathlib, sys
folder = pathlib.Path(sys.argv[1])
files = sorted(folder.iterdir())
total = sum(len(f.read_bytes()) for f in files)
print(f"installed {folder.name}: {len(files)} files, {total} bytes")
"""

# Stand-in for a cleaner: delete the package's folder.
CLEANER = """
import pathlib, shutil, sys
shutil.rmtree(sys.argv[1])
print(f"cleaned {pathlib.Path(sys.argv[1]).name}")
"""


def populate(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for version in ("7.1.0", "8.2.0"):
        name = f"setuptools_scm-{version}-py3-none-any.whl"
        (folder / name).write_bytes(b"wheel bytes " * 1000)


def pkgcache_command(root: Path, *argv: str) -> list[str]:
    # ``pkgcache ...`` once installed; ``python -m pkgcache`` works everywhere.
    return [sys.executable, "-m", "pkgcache", "--cache-dir", str(root), *argv]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pkgcache-guard-") as tmp:
        root = Path(tmp, "locks")  # the pkgcache cache: its lock files
        tool_folder = Path(tmp, "tool-cache", PACKAGE)  # the tool's own files
        cache = pkgcache.Cache(root)
        with cache.exclusive(PACKAGE):
            populate(tool_folder)
        install = [sys.executable, "-c", INSTALLER, str(tool_folder)]
        clean = [sys.executable, "-c", CLEANER, str(tool_folder)]

        # 1. From a shell: the command runs while pkgcache holds the lock.
        print("$ pkgcache run --read setuptools-scm -- <installer>")
        done = subprocess.run(
            pkgcache_command(root, "run", "--read", PACKAGE, "--", *install),
            check=False,
        )
        print(f"  exit code {done.returncode}")

        # 2. From Python: the context manager around subprocess.
        print("with cache.reading('setuptools-scm'): subprocess.run(<installer>)")
        with cache.reading(PACKAGE):
            subprocess.run(install, check=True)

        # 3. An install started while a clean holds the package waits for it,
        #    and says who it waits for; then it finds the package gone
        #    (cleanly) instead of half-deleted.
        print("a clean holds the package; an install starts meanwhile:")
        with cache.exclusive(PACKAGE):
            waiting_install = subprocess.Popen(
                pkgcache_command(root, "run", "--read", PACKAGE, "--", *install),
                stderr=subprocess.PIPE,
                text=True,
            )
            assert waiting_install.stderr is not None
            # pkgcache says who is in the way once it has waited a moment:
            # from then on the install is queued behind our exclusive lock.
            ready, _, _ = select.select([waiting_install.stderr], [], [], 60)
            if not ready:
                waiting_install.kill()
                raise SystemExit("the install never reported waiting")
            print(f"  {waiting_install.stderr.readline().strip()}")
            subprocess.run(clean, check=True)
            populate(tool_folder)  # a fresh copy, as a rebuild would
            print("  re-populated; releasing the exclusive lock")
        # The install runs only now.
        _, errors = waiting_install.communicate(timeout=60)
        sys.stderr.write(errors)
        print(f"  install exit code {waiting_install.returncode}")

        # 4. Who holds what, as tooling sees it.
        with cache.reading(PACKAGE):
            done = subprocess.run(
                pkgcache_command(root, "locks"),
                capture_output=True,
                text=True,
                check=True,
            )
        print("$ pkgcache locks   (while this script reads setuptools-scm)")
        for line in done.stdout.splitlines():
            print(f"  {line}")
        return waiting_install.returncode


if __name__ == "__main__":
    sys.exit(main())
