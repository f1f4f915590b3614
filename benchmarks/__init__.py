"""pkgcache lock benchmarks: ``python -m benchmarks`` runs them all.

Usage (from the repository root, after ``pip install -e '.[bench]'``)::

    python -m benchmarks                   # everything, about 3 minutes
    python -m benchmarks --quick           # smaller samples, under a minute
    python -m benchmarks --only handover   # one benchmark (repeatable)
    python -m benchmarks --dir PATH        # put the lock files under PATH

Benchmarks: ``uncontended`` and ``throughput`` (issue 2, in
:mod:`benchmarks.bench_locks`), ``writer-wait``, ``handover`` and
``fairness`` (issue 4, in :mod:`benchmarks.bench_waiting`), ``buildfarm``
and ``store``. ``realfarm`` (issue 11, :mod:`benchmarks.bench_realfarm`:
real sdists, backends and uv) runs only when named with ``--only``: its
first run downloads from the package registry (the only network use). Each measures
pkgcache beside the raw system call it is built on and beside portalocker,
filelock and fasteners, in the same run, prints tables and a description of
the machine, and writes every number to ``benchmarks/results/`` as JSON.
Benchmarks are not tests: nothing here asserts a time. ``docs/performance.md``
has the numbers and how to read them.
"""
