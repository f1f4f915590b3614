"""Keep the benchmarks from rotting: run each one at a tiny scale.

Nothing here checks a time (benchmarks are not tests); each run must finish
and report every contender it promises.
"""

from __future__ import annotations

import pytest

pytest.importorskip("filelock")
pytest.importorskip("fasteners")

from benchmarks import __main__ as cli
from benchmarks import bench_realfarm
from benchmarks._common import SCALES

from tests.wheels import make_sdist, make_wheel

TINY = SCALES["tiny"]


@pytest.mark.timeout(60)
def test_uncontended(tmp_path, capsys):
    result = cli.BENCHMARKS["uncontended"](TINY, str(tmp_path))
    ratios = result["uncontended_ratios"]
    assert set(ratios) == {"reading(pkg)", "exclusive(pkg)", "reading()", "exclusive()"}
    assert all(r["pkgcache/raw"] > 0 for r in ratios.values())
    assert "pkgcache/raw" in capsys.readouterr().out


@pytest.mark.timeout(60)
def test_throughput(tmp_path):
    result = cli.BENCHMARKS["throughput"](TINY, str(tmp_path))["throughput"]
    assert set(result) == {f"{m}-{n}" for m in ("threads", "processes") for n in (1, 2)}
    for row in result.values():
        assert min(row["pkgcache_ops_s"]) > 0
        assert min(row["flock_ops_s"]) > 0


@pytest.mark.timeout(60)
def test_writer_wait(tmp_path):
    result = cli.BENCHMARKS["writer-wait"](TINY, str(tmp_path))["writer_wait"]
    assert set(result) == {"pkgcache", "flock", "portalocker"}
    for row in result.values():
        assert row["waits_ms"], "the writer got the lock at least once"
        assert row["reader_ops_s"] > 0


@pytest.mark.timeout(60)
def test_handover(tmp_path):
    result = cli.BENCHMARKS["handover"](TINY, str(tmp_path))["handover"]
    assert "pkgcache / processes" in result
    assert "pkgcache timeout=60 / threads" in result
    assert "fasteners / threads" not in result  # lockf cannot exclude threads
    for row in result.values():
        # The waiter cannot hold the lock before the holder released it.
        assert min(row["samples_us"]) > 0


@pytest.mark.timeout(60)
def test_fairness(tmp_path):
    result = cli.BENCHMARKS["fairness"](TINY, str(tmp_path))["fairness"]
    assert set(result) == {
        f"{k} / {m}" for k in ("pkgcache", "flock") for m in ("threads", "processes")
    }
    for row in result.values():
        assert len(row["counts"]) == TINY.fair_workers
        assert sum(row["counts"]) > 0


def test_cli_rejects_unknown_benchmark(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--only", "nonsense"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_store(tmp_path, capsys):
    result = cli.BENCHMARKS["store"](TINY, str(tmp_path))["store"]
    assert result["add_find"]["adds"] > 0
    assert result["prune"]["removed"] > 0
    assert "prune() removing" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_buildfarm(tmp_path):
    summary = cli.BENCHMARKS["buildfarm"](TINY, str(tmp_path))["buildfarm"]["summary"]
    assert set(summary) == {"pkgcache", "whole-cache", "uv-flock", "no-locks"}
    assert all(s["makespan_s"] > 0 for s in summary.values())


@pytest.mark.timeout(120)
def test_realfarm_offline(tmp_path):
    """The real-farm loop on two generated sdists (the real run downloads 18)."""
    pytest.importorskip("uv")
    downloads = tmp_path / "downloads"
    make_wheel(downloads / "wheels", "dep", "1.0")  # the "registry" wheel
    make_sdist(downloads / "sdists", "dep", "1.0")
    make_sdist(downloads / "sdists", "app", "1.0", requires=["dep"])
    (downloads / "complete").write_text("ok\n")  # nothing to download
    argv = ["--downloads", str(downloads), "--installers", "1", "--rounds", "1"]
    result = bench_realfarm.main(argv, save_results=False)
    summary = result["summary"]
    assert set(summary) == {f"{scheme}/1" for scheme in bench_realfarm.SCHEMES}
    for key, row in summary.items():
        assert row["makespan_s"] > 0
        if not key.startswith(("no-locks", "no-invalidation")):
            assert row["failed"] == 0, result["runs"][key]
