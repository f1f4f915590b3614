"""The motivating race, automated.

Reader processes (several threads each) find() a version of one package
under reading(pkg) and check every byte they read, while a writer process
cleans the package and adds its versions back, over and over. Zero errors
and zero wrong bytes are allowed. Meanwhile a worker on another package
must keep making progress while a clean of the first package waits.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from pkgcache import Cache

from .helpers import SPAWN
from .store_helpers import other_worker, race_reader, race_writer
from .wheels import make_wheel

WAIT = 30.0
PKG = "setuptools-scm"
OTHER = "packaging"
READERS, THREADS = 2, 3
# Enough rounds that cleans and reads interleave many times (counts, not time).
READS, CYCLES = 200, 20


def wait_for(counter, target: int, stalled: threading.Event) -> None:
    """Wait until a shared counter reaches ``target`` (bounded)."""
    for _ in range(int(WAIT / 0.01)):
        if counter.value >= target:
            return
        stalled.wait(0.01)  # a bounded poll of a counter, not a synchronization
    pytest.fail(f"counter stuck at {counter.value} < {target}")


@pytest.mark.timeout(120)
def test_readers_never_see_a_partial_or_vanished_entry(tmp_path: Path):
    root = tmp_path / "cache"
    cache = Cache(root, timeout=WAIT)
    sources = [
        make_wheel(
            tmp_path / "src", PKG, version, files={"data.bin": bytes([i]) * 200_000}
        )
        for i, version in enumerate(["7.1.0", "8.2.0"], 1)
    ]
    digests = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sources
    }
    other = make_wheel(tmp_path / "other", OTHER, "24.0")

    stop = SPAWN.Event()
    reads, cycles, progress = (SPAWN.Value("i", 0) for _ in range(3))
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=race_reader,
            args=(str(root), PKG, digests, THREADS, stop, reads, results),
        )
        for _ in range(READERS)
    ]
    processes.append(
        SPAWN.Process(
            target=race_writer,
            args=(str(root), PKG, [str(s) for s in sources], stop, cycles, results),
        )
    )
    processes.append(
        SPAWN.Process(
            target=other_worker,
            args=(str(root), OTHER, str(other), stop, progress, results),
        )
    )
    for process in processes:
        process.start()
    never = threading.Event()
    errors: list[str] = []
    try:
        wait_for(reads, READS, never)
        wait_for(cycles, CYCLES, never)

        # A clean of PKG that must wait: this thread holds PKG shared.
        with cache.reading(PKG):
            cleaned = threading.Event()

            def clean() -> None:
                cache.clean(PKG, timeout=WAIT)
                cleaned.set()

            cleaner = threading.Thread(target=clean)
            cleaner.start()
            start = progress.value
            wait_for(progress, start + 20, never)  # the other package moves on
            assert not cleaned.is_set()  # while the clean still waits
        cleaner.join(WAIT)
        assert cleaned.is_set()
        final_reads = reads.value
        wait_for(reads, final_reads + 20, never)  # readers resume after it
    finally:
        stop.set()
        for _ in processes:
            errors += results.get(timeout=WAIT * 2)
        for process in processes:
            process.join(WAIT)
    assert errors == []
    assert all(process.exitcode == 0 for process in processes)
