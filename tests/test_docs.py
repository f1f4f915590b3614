"""The documentation says what the code does: its program runs, its texts match."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import pkgcache
from pkgcache._cli import build_parser

DOCS = Path(__file__).resolve().parent.parent / "docs"
WAIT = 90


def code_blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


@pytest.mark.timeout(WAIT + 10)
def test_the_tutorial_program_runs(tmp_path: Path) -> None:
    program = next(
        block
        for block in code_blocks("tutorial.md", "python")
        if "ThreadPoolExecutor" in block
    )
    (tmp_path / "builder.py").write_text(program)
    runs = [
        subprocess.run(
            [sys.executable, "builder.py", str(tmp_path / "cache")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        for _ in range(2)  # a second run on the same cache works as well
    ]
    shown = next(
        block
        for block in code_blocks("tutorial.md", "console")
        if "builder.py" in block
    )
    expected = [line for line in shown.splitlines() if not line.startswith("$")]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == expected
    with pkgcache.Cache(tmp_path / "cache").reading("setuptools-scm") as view:
        assert [e.key for e in view.entries("setuptools-scm")] == [
            "setuptools_scm-1.0-py3-none-any.whl"
        ]


def test_the_tutorial_shows_the_real_timeout_message() -> None:
    [block] = [b for b in code_blocks("tutorial.md", "python") if "LockTimeout" in b]
    shown = " ".join(
        line.strip().removeprefix("# ")
        for line in block.splitlines()
        if line.strip().startswith("# ")
    )
    holder = pkgcache.Holder(
        package="setuptools-scm",
        pid=4242,
        mode="shared",
        waiting=False,
        command="uv pip install setuptools-scm==8.2.0",
        threads=(),
        path="/var/cache/builder/locks/setuptools-scm.lock",
        process_age=41.2,
    )
    error = pkgcache.LockTimeout(
        root="/var/cache/builder",
        package="setuptools-scm",
        mode="exclusive",
        waited=30.001,
        holders=[holder],
    )
    assert shown == str(error)


def test_the_cli_table_names_every_command_beside_uv_and_pip() -> None:
    text = (DOCS / "cli.md").read_text()
    table = text.split("## Commands at a glance", 1)[1].split("\n\n")[1]
    header, _, *rows = table.splitlines()
    assert header == "| `pkgcache` | `uv cache` | `pip cache` | what it does |"
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert all(len(row) == 4 for row in cells)
    documented = {row[0].split()[1].strip("`") for row in cells}
    parser = build_parser()
    [commands] = [
        action.choices
        for action in parser._actions
        if isinstance(action.choices, dict)  # the sub-commands
    ]
    assert documented == {*commands, "--version"}


def test_the_landing_page_is_short_and_hides_the_tables_of_contents() -> None:
    text = (DOCS / "index.md").read_text()
    toctrees = re.findall(r"```\{toctree\}\n(.*?)```", text, re.DOTALL)
    assert toctrees
    assert all(":hidden:" in toctree for toctree in toctrees)
    prose = text.split("```{toctree}")[0]
    assert len(prose.split()) < 400  # read in a minute


def test_no_page_installs_an_unreleased_package_from_an_index() -> None:
    for page in [*DOCS.glob("*.md"), DOCS.parent / "README.md"]:
        assert not re.search(r"pip install\s+pkgcache\b", page.read_text()), page
