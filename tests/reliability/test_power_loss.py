"""Power loss after a publish, on a real file system.

A fresh ext4 image is loop-mounted (``commit=1``: the journal commits every
second, so a power cut that keeps the metadata but loses the data happens
within the test's few seconds instead of after ext4's default five). A
spawn process stores an old state (durably: the default), then, without
any ``sync``, adds new wheels, replaces a wheel and a tree, publishes a
new tree and a wheel in a new sub-folder, moves a file in and removes one.
Meanwhile and after, the test copies the image file, which holds exactly
what the block device has received: each copy is the disk after a power
cut at that instant. Each copy is mounted (the journal replay is the
reboot) and read, raw and through pkgcache:

* every entry is absent, the old version or the new one, byte for byte
  (trees: every file), never anything else;
* an entry whose ``add()`` returned before the cut is the new version;
* ``find()`` never returns a torn entry, and returns the newest wheel once
  its ``add()`` returned.

``PKGCACHE_POWERLOSS_DURABLE=0`` runs the same with ``Cache(durable=False)``:
it fails (0-byte wheels and trees on the copies taken a second or more
after the publish), which is what the durable publish prevents.

Linux only, as root, with loop devices, ``mkfs.ext4``, ``mount`` and ``cp``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pkgcache
from tests.helpers import SPAWN

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="needs root (loop devices, mount)",
    ),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("mkfs.ext4", "mount", "umount", "cp")),
        reason="needs mkfs.ext4, mount, umount and cp",
    ),
]

WAIT = 30.0
DURABLE = os.environ.get("PKGCACHE_POWERLOSS_DURABLE", "1") != "0"
PKG = "demo"
# Copies of the disk taken after the last publish returned, seconds later:
# at once, after the journal committed (1 s), and after two more commits.
AFTER = (0.0, 1.5, 3.0)
ABSENT = "absent"


def content(label: str, size: int) -> bytes:
    seed = hashlib.sha256(label.encode()).digest()
    return seed * (size // len(seed))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel(version: str) -> str:
    return f"{PKG}-{version}-py3-none-any.whl"


CUDA = f"cuda/{wheel('3.0')}"
FILES = {
    "0.9": content("0.9", 50_000),
    "1.0 old": content("1.0 old", 100_000),
    "1.0 new": content("1.0 new", 100_000),
    "2.0": content("2.0", 100_000),
    "3.0": content("3.0 in cuda", 70_000),
    "4.0": content("4.0 moved", 90_000),
}
TREES = {
    "old tree": {"f.txt": content("tree old", 50_000)},
    "old tree replaced": {"f.txt": content("tree old replaced", 60_000)},
    "new tree": {"a.bin": content("a", 80_000), "sub/b.bin": content("b", 30_000)},
}
# What each state looks like on disk: a sha256, or {file: sha256} for a tree.
STATES: dict[str, Any] = {label: digest(data) for label, data in FILES.items()}
STATES |= {
    label: {name: digest(data) for name, data in files.items()}
    for label, files in TREES.items()
}

# key -> (the operation that changes it, states until it returned, states after)
# Until an operation returned, its effect may or may not be on the disk. A
# removal is not made durable: the removed entry may come back whole.
EXPECTED = {
    wheel("0.9"): ("remove 0.9", {"0.9", ABSENT}, {"0.9", ABSENT}),
    wheel("1.0"): ("replace 1.0", {"1.0 old", "1.0 new"}, {"1.0 new"}),
    wheel("2.0"): ("add 2.0", {ABSENT, "2.0"}, {"2.0"}),
    CUDA: ("add cuda/3.0", {ABSENT, "3.0"}, {"3.0"}),
    wheel("4.0"): ("move 4.0", {ABSENT, "4.0"}, {"4.0"}),
    "tree-new": ("add tree-new", {ABSENT, "new tree"}, {"new tree"}),
    "tree-old": (
        "replace tree-old",
        {"old tree", ABSENT, "old tree replaced"},
        {"old tree replaced"},
    ),
}


def fill(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def publisher(root: str, durable: bool, conn) -> None:
    """Store the old state (durably), wait for "go", publish; report times."""
    src = Path(root).parent / "src"
    src.mkdir()
    for version in ("0.9", "1.0 old"):
        (src / wheel(version.split()[0])).write_bytes(FILES[version])
    with pkgcache.Cache(root).exclusive(PKG, timeout=WAIT) as txn:
        txn.add(src / wheel("0.9"))
        txn.add(src / wheel("1.0"))
        with txn.add_tree("tree-old") as staging:
            fill(staging, TREES["old tree"])
    for version in ("1.0 new", "2.0", "3.0", "4.0"):
        (src / wheel(version.split()[0])).write_bytes(FILES[version])
    cache = pkgcache.Cache(root, durable=durable)
    conn.send("ready")
    assert conn.recv() == "go"
    with cache.exclusive(PKG, timeout=WAIT) as txn:
        steps = [
            ("add 2.0", lambda: txn.add(src / wheel("2.0"))),
            ("replace 1.0", lambda: txn.add(src / wheel("1.0"))),
            ("add tree-new", lambda: tree(txn, "tree-new", "new tree")),
            ("replace tree-old", lambda: tree(txn, "tree-old", "old tree replaced")),
            ("add cuda/3.0", lambda: txn.add(src / wheel("3.0"), key=CUDA)),
            ("remove 0.9", lambda: txn.remove(wheel("0.9"))),
            ("move 4.0", lambda: txn.add(src / wheel("4.0"), move=True)),
        ]
        for label, step in steps:
            step()
            conn.send((label, time.monotonic()))
    conn.send("finished")


def tree(txn: pkgcache.CacheTransaction, key: str, label: str) -> None:
    with txn.add_tree(key) as staging:
        fill(staging, TREES[label])


def inspector(roots: list[str], conn) -> None:
    """What a reader sees after each reboot: raw files, and through pkgcache."""
    conn.send([inspect(root) for root in roots])


def inspect(root: str) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    base = Path(root, "packages", PKG)
    for folder, dirs, files in os.walk(base):
        here = Path(folder)
        if ".pkgcache-tree" in files:
            raw[str(here.relative_to(base))] = {
                str(path.relative_to(here)): digest(path.read_bytes())
                for path in sorted(here.rglob("*"))
                if path.is_file() and path.name != ".pkgcache-tree"
            }
            dirs[:] = []
            continue
        for name in files:
            raw[str((here / name).relative_to(base))] = digest(
                (here / name).read_bytes()
            )
    listed: dict[str, Any] = {}
    cache = pkgcache.Cache(root)
    with cache.reading(PKG, timeout=WAIT) as view:
        for entry in view.entries(PKG):
            listed[entry.key] = raw.get(entry.key)
        found = view.find(PKG)
        best = None if found is None else (found.key, digest(found.path.read_bytes()))
    return {"raw": raw, "entries": listed, "find": best}


def run(*command: str | Path) -> None:
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"{command}: {result.stderr.strip()}")


@pytest.fixture
def loop_fs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 64 MiB ext4 image, loop-mounted; yields the mount point."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    with open(image, "wb") as handle:
        handle.truncate(64 * 2**20)
    run("mkfs.ext4", "-q", "-F", image)
    mount.mkdir()
    try:
        run("mount", "-o", "loop,commit=1", image, mount)
    except RuntimeError as exc:
        pytest.skip(f"cannot loop-mount an ext4 image here: {exc}")
    try:
        yield mount
    finally:
        run("umount", mount)


def state_of(found: Any) -> str:
    for label, state in STATES.items():
        if state == found:
            return label
    return ABSENT if found is None else f"torn: {found}"


def in_a_child(target: Any, *args: Any) -> Any:
    parent, child = SPAWN.Pipe()
    process = SPAWN.Process(target=target, args=(*args, child))
    process.start()
    return process, parent


@pytest.mark.timeout(180)
def test_every_entry_is_absent_old_or_new_after_a_power_cut(loop_fs, tmp_path):
    image = tmp_path / "disk.img"
    process, conn = in_a_child(publisher, str(loop_fs / "cache"), DURABLE)
    snapshots: list[tuple[Path, float]] = []

    def snapshot() -> None:
        copy = tmp_path / f"cut-{len(snapshots)}.img"
        taken = time.monotonic()  # the cut is at the start of the copy
        run("cp", "--sparse=always", image, copy)
        snapshots.append((copy, taken))

    done: dict[str, float] = {}
    try:
        assert conn.poll(WAIT * 2), "the publisher did not get ready"
        assert conn.recv() == "ready"
        conn.send("go")
        finished = False
        while not finished:  # cut the power again and again while it works
            snapshot()
            while conn.poll(0 if snapshots else WAIT):
                message = conn.recv()
                if message == "finished":
                    finished = True
                    break
                done[message[0]] = message[1]
            assert len(snapshots) < 1000, "the publisher never finished"
        last = max(done.values())
        pause = threading.Event()  # never set: waits are the cut instants
        for delay in AFTER:
            pause.wait(max(0.0, last + delay - time.monotonic()))
            snapshot()
    finally:
        process.join(WAIT)
    assert process.exitcode == 0
    assert set(done) == {operation for operation, _, _ in EXPECTED.values()}

    mounts = []
    try:
        for number, (copy, _) in enumerate(snapshots):
            mount = tmp_path / f"cut-{number}"
            mount.mkdir()
            run("mount", "-o", "loop", copy, mount)  # replays the journal: reboots
            mounts.append(mount)
        reader, answer = in_a_child(inspector, [str(m / "cache") for m in mounts])
        assert answer.poll(WAIT * 2), "the reader did not answer"
        reports = answer.recv()
        reader.join(WAIT)
    finally:
        for mount in mounts:
            run("umount", mount)
    problems = []
    for number, ((_, taken), report) in enumerate(zip(snapshots, reports, strict=True)):
        problems += check(number, taken, done, report)
    kind = "durable" if DURABLE else "durable=False"
    assert problems == [], f"{kind}, {len(snapshots)} cuts:\n" + "\n".join(problems)
    during = sum(taken < max(done.values()) for _, taken in snapshots)
    print(f"{len(snapshots)} power cuts checked ({kind}), {during} during the publish")


def check(
    number: int, taken: float, done: dict[str, float], report: dict[str, Any]
) -> list[str]:
    """Every way the copy ``number`` breaks the promise, one line each."""
    problems = []
    where = f"cut {number} ({'after' if taken > max(done.values()) else 'during'})"
    unknown = set(report["raw"]) - set(EXPECTED)
    if unknown:
        problems.append(f"{where}: unexpected files {sorted(unknown)}")
    for key, (operation, before, after) in EXPECTED.items():
        returned = done[operation] < taken
        allowed = after if returned else before
        raw = state_of(report["raw"].get(key))
        if raw not in allowed:
            problems.append(f"{where}: {key} on disk is {raw}, not {sorted(allowed)}")
        if key in report["entries"]:
            listed = state_of(report["entries"][key])
            if listed not in allowed or listed == ABSENT:
                problems.append(f"{where}: entries() gave {key} as {listed}")
    found = report["find"]
    if found is None:
        problems.append(f"{where}: find() found nothing (1.0 is always there)")
    else:
        key, sha = found
        state = state_of(sha)
        _, before, after = EXPECTED.get(key, ("", set(), set()))
        if state not in (before | after) - {ABSENT}:
            problems.append(f"{where}: find() returned {key} as {state}")
        if done["move 4.0"] < taken and key != wheel("4.0"):
            problems.append(f"{where}: find() returned {key}, not the stored 4.0")
    return problems
