"""Budgets, seeds, the outside-the-root watch and spawn targets of the tier.

Everything a ``spawn`` child runs lives here, at module level.

``PKGCACHE_SOAK_SECONDS`` sets how long each timed scenario runs (default
``DEFAULT_SOAK`` seconds, so the whole tier stays short in CI); a soak run
sets it to minutes. ``PKGCACHE_SEED`` replays a randomized run: every
scenario prints the seed it used.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pkgcache

DEFAULT_SOAK = 2.0
WAIT = 30.0  # bound for anything that must happen


def soak_seconds() -> float:
    """Seconds each timed scenario runs."""
    return float(os.environ.get("PKGCACHE_SOAK_SECONDS", DEFAULT_SOAK))


def scaled(count: int) -> int:
    """A repetition count scaled like the soak time (never below ``count``)."""
    return max(count, int(count * soak_seconds() / DEFAULT_SOAK))


def make_seed() -> int:
    """The run's seed: ``PKGCACHE_SEED`` or a fresh one; printed for replay."""
    env = os.environ.get("PKGCACHE_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(2**32)
    print(f"PKGCACHE_SEED={seed}")
    return seed


# -- nothing outside the root ----------------------------------------------------


def snapshot(folder: Path, skip: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """``relative path -> (mode, size, mtime_ns, first bytes)`` outside ``skip``.

    Never follows links (a link is recorded as a link), never opens FIFOs.
    """
    result: dict[str, tuple[int, int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = here / name
            if path == skip:
                continue
            st = os.lstat(path)
            content = b""
            if os.path.isfile(path) and not os.path.islink(path):
                content = path.read_bytes()[:4096]
            result[str(path.relative_to(folder))] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
                content,
            )
    return result


class OutsideWatch:
    """A sentinel file and a snapshot of everything around a cache root.

    ``check()`` fails if anything outside the root was created, changed,
    truncated or deleted since the watch started.
    """

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder = folder
        self.root = root
        self.sentinel = folder / "sentinel.txt"
        self.sentinel.write_text("precious")
        self.outside_dir = folder / "outside-dir"
        self.outside_dir.mkdir()
        (self.outside_dir / "kept.txt").write_text("also precious")
        self.before = snapshot(folder, root)

    def check(self) -> None:
        after = snapshot(self.folder, self.root)
        assert after == self.before, _describe_change(self.before, after)


def _describe_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"outside the root: added {added}, removed {removed}, changed {changed}"


# -- the lock torture ---------------------------------------------------------------

PACKAGES = ("alpha", "beta", "gamma", "delta")


def lock_torture_worker(
    root: str,
    log_dir: str,
    seed: int,
    *,
    threads: int,
    seconds: float,
    start: Any,
) -> None:
    """Threads mixing every kind of lock call; each appends enter/exit records.

    Records are ``thread op mode packages enter_ns exit_ns`` lines in this
    process's own file; ``enter`` is read after the locks are granted and
    ``exit`` before they are released, so the recorded interval lies inside
    the real hold and two records that overlap prove a real overlap.
    """
    cache = pkgcache.Cache(root)
    start.wait(WAIT)
    deadline = time.monotonic() + seconds
    errors: list[BaseException] = []
    counts: Counter[str] = Counter()
    records: list[str] = []
    mutex = threading.Lock()

    def run(index: int) -> None:
        rng = random.Random(seed * 1000 + os.getpid() % 1000 * 10 + index)
        local: list[str] = []
        local_counts: Counter[str] = Counter()
        try:
            while time.monotonic() < deadline:
                _one_lock_operation(cache, rng, local, local_counts, index)
        except BaseException as exc:
            errors.append(exc)
        with mutex:
            records.extend(local)
            counts.update(local_counts)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + WAIT)
        if worker.is_alive():
            errors.append(RuntimeError("a worker thread never finished"))
    path = Path(log_dir, f"{os.getpid()}.log")
    lines = [f"count {op} {n}" for op, n in sorted(counts.items())]
    lines += [f"error {exc!r}".replace("\n", " ") for exc in errors]
    path.write_text("\n".join(records + lines) + "\n")


def _one_lock_operation(
    cache: pkgcache.Cache,
    rng: random.Random,
    records: list[str],
    counts: Counter[str],
    index: int,
) -> None:
    roll = rng.random()
    exclusive = rng.random() < 0.4
    if roll < 0.06:
        packages: tuple[str, ...] = ()
    else:
        packages = tuple(rng.sample(PACKAGES, rng.choice((1, 1, 1, 2, 3))))
        # Any spelling reaches the same lock.
        packages = tuple(p.upper() if rng.random() < 0.2 else p for p in packages)
    timeout = rng.choice((WAIT, WAIT, WAIT, 0.0, 0.001))
    call = cache.exclusive if exclusive else cache.reading
    mode = "x" if exclusive else "r"
    op = f"{mode}{len(packages)}"
    try:
        with call(*packages, timeout=timeout):
            enter = time.monotonic_ns()
            nested = _maybe_nested(cache, rng, packages, exclusive)
            _work(rng)
            leave = time.monotonic_ns()
    except pkgcache.LockTimeout:
        if timeout == WAIT:
            raise
        counts["timeout"] += 1
        return
    canonical = ",".join(sorted(pkgcache.canonical_name(p) for p in packages)) or "*"
    records.append(f"{os.getpid()}.{index} {mode} {canonical} {enter} {leave}")
    if nested:
        records.append(nested)
        counts["nested"] += 1
    counts[op] += 1


def _maybe_nested(
    cache: pkgcache.Cache,
    rng: random.Random,
    packages: tuple[str, ...],
    exclusive: bool,
) -> str | None:
    """Re-enter a held lock, or take a later one in order, inside the block."""
    if not packages or rng.random() > 0.15:
        return None
    held = sorted(pkgcache.canonical_name(p) for p in packages)
    # Re-entering in the same mode never waits.
    with (cache.exclusive if exclusive else cache.reading)(*packages, timeout=0):
        pass
    later = [p for p in PACKAGES if p > held[-1]]
    if not later:
        return None
    name = rng.choice(later)
    with cache.reading(name, timeout=WAIT):
        enter = time.monotonic_ns()
        _work(rng)
        leave = time.monotonic_ns()
    return f"{os.getpid()}.n r {name} {enter} {leave}"


def _work(rng: random.Random) -> None:
    """Simulated work while holding a lock (not synchronization)."""
    roll = rng.random()
    if roll < 0.5:
        return
    if roll < 0.9:
        for _ in range(rng.randrange(200)):
            pass
        return
    time.sleep(rng.random() * 0.002)


def read_torture_logs(
    log_dir: Path,
) -> tuple[list[tuple[str, str, tuple[str, ...], int, int]], Counter[str], list[str]]:
    """Parse every worker log: hold records, operation counts, errors."""
    holds = []
    counts: Counter[str] = Counter()
    errors = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "count":
                op, n = rest.split()
                counts[op] += int(n)
            elif kind == "error":
                errors.append(f"{path.name}: {rest}")
            elif line:
                who, mode, names, enter, leave = line.split()
                packages = () if names == "*" else tuple(names.split(","))
                holds.append((who, mode, packages, int(enter), int(leave)))
    return holds, counts, errors


def overlapping_conflicts(
    holds: list[tuple[str, str, tuple[str, ...], int, int]],
) -> list[str]:
    """Every pair of recorded holds that the lock table says must not overlap.

    Per lock file, a sweep over the intervals in time order: an exclusive
    hold may overlap nothing, a shared one only other shared ones.
    """
    per_lock: dict[str, list[tuple[int, int, str, str]]] = {}
    for who, mode, packages, enter, leave in holds:
        if not packages:  # the whole-cache lock
            per_lock.setdefault("*", []).append((enter, leave, mode, who))
        else:
            # Package holds take the root lock shared.
            per_lock.setdefault("*", []).append((enter, leave, "r", who))
            for name in packages:
                per_lock.setdefault(name, []).append((enter, leave, mode, who))
    found = []
    for name, intervals in per_lock.items():
        intervals.sort()
        # Only the latest-ending exclusive and latest-ending shared matter.
        last_x: tuple[int, int, str, str] | None = None
        last_r: tuple[int, int, str, str] | None = None
        for interval in intervals:
            enter, _, mode, _ = interval
            rivals = [last_x] if mode == "r" else [last_x, last_r]
            for rival in rivals:
                if rival is not None and rival[1] > enter and rival[3] != interval[3]:
                    found.append(f"{name}: {rival} overlaps {interval}")
            if mode == "x":
                if last_x is None or interval[1] > last_x[1]:
                    last_x = interval
            elif last_r is None or interval[1] > last_r[1]:
                last_r = interval
    return found


# -- process life -----------------------------------------------------------------


def hold_then_exit(root: str, mode: str, packages: list[str], how: str) -> None:
    """Take a lock and leave the process without releasing it."""
    cache = pkgcache.Cache(root)
    request = cache.exclusive if mode == "x" else cache.reading
    request(*packages, timeout=WAIT).__enter__()  # never exited
    if how == "os._exit":
        os._exit(0)
    if how == "sys.exit":
        raise SystemExit(0)
    if how == "abort":
        os.abort()
    raise RuntimeError("an unhandled exception while holding")


def fd_exhaustion(root: str, limit: int, result: Any) -> None:
    """Under a low descriptor limit: bounded idle table, clear error, recovery."""
    try:
        _fd_exhaustion(root, limit, result)
    except BaseException as exc:
        result.put({"crash": repr(exc)})
        raise


def _fd_exhaustion(root: str, limit: int, result: Any) -> None:
    import resource

    from pkgcache import _cache

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    cache = pkgcache.Cache(root)
    report: dict[str, Any] = {"max_idle": _cache._table.max_idle}
    # 1. Many packages one after the other: the idle table stays bounded.
    peak = 0
    for i in range(limit * 2):
        with cache.exclusive(f"pkg{i}", timeout=WAIT):
            pass
        peak = max(peak, _cache._table.open_count())
    report["peak_idle"] = peak
    report["max_idle_after"] = _cache._table.max_idle
    # 2. Holding ever more at once until the descriptors run out.
    stack = contextlib.ExitStack()
    held = 0
    try:
        for i in range(limit * 2):
            stack.enter_context(cache.reading(f"held{i}", timeout=WAIT))
            held += 1
        report["error"] = None
    except pkgcache.CacheError as exc:
        report["error"] = ("CacheError", str(exc))
    except OSError as exc:  # the failure this scenario guards against
        report["error"] = ("raw " + type(exc).__name__, str(exc))
    report["held"] = held
    stack.close()
    # 3. After letting go, everything works again.
    with cache.exclusive(*(f"again{i}" for i in range(3)), timeout=WAIT):
        pass
    with cache.exclusive(timeout=WAIT):
        pass
    report["recovered"] = True
    report["open_after"] = _cache._table.open_count()
    result.put(report)


# -- permissions (run as an unprivileged user when the tests run as root) ----------

NOBODY = 65534


def try_calls(
    root: str, calls: list[tuple[str, tuple[str, ...]]], drop: bool
) -> list[str]:
    """Run lock calls; return ``"ok"`` or the exception's class name for each.

    With ``drop``, become user and group ``nobody`` first, so permission bits
    bind even when the tests run as root.
    """
    if drop:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    cache = pkgcache.Cache(root)
    outcomes = []
    for mode, packages in calls:
        request = cache.exclusive if mode == "x" else cache.reading
        try:
            with request(*packages, timeout=1):
                outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


def try_calls_child(
    root: str, calls: list[tuple[str, tuple[str, ...]]], drop: bool, result: Any
) -> None:
    """Spawn target for :func:`try_calls`."""
    result.put(try_calls(root, calls, drop))


# -- fork ---------------------------------------------------------------------------


def fork_probe(root: str, packages: list[str], held_by_parent: list[str]) -> int:
    """In a forked child: take free locks, fail to take the parent's; exit code."""
    cache = pkgcache.Cache(root)
    for name in held_by_parent:
        try:
            with cache.exclusive(name, timeout=0):
                return 10  # the child got a lock its parent holds
        except pkgcache.LockTimeout:
            pass
    with cache.exclusive(*packages, timeout=WAIT):
        pass
    with cache.reading(*packages, timeout=WAIT):
        pass
    return 0
