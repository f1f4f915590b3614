"""Budgets, seeds, the outside-the-root watch and spawn targets of the tier.

Everything a ``spawn`` child runs lives here, at module level.

``PKGCACHE_SOAK_SECONDS`` sets how long each timed scenario runs (default
``DEFAULT_SOAK`` seconds, so the whole tier stays short in CI); a soak run
sets it to minutes. ``PKGCACHE_SEED`` replays a randomized run: every
scenario prints the seed it used.
"""

from __future__ import annotations

import contextlib
import hashlib
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


def kernel_modes_of(path: os.PathLike[str] | str) -> set[str]:
    """The modes in which the kernel says this process holds ``path`` (flock)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return set()
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pid = str(os.getpid())
    modes = set()
    with open("/proc/locks") as table:
        for line in table:
            fields = line.split()
            # "<n>: FLOCK ADVISORY WRITE|READ <pid> <maj:min:inode> ..."; a
            # waiter has "->" after the number.
            if (
                len(fields) > 5
                and fields[1] == "FLOCK"
                and fields[4] == pid
                and fields[5] == file_id
            ):
                modes.add("exclusive" if fields[3] == "WRITE" else "shared")
    return modes


def _lock_descriptors(root: str) -> int:
    """Descriptors of this process open on lock or gate files under ``root``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(root) and target.endswith((".lock", ".gate"))
    return count


def _fd_exhaustion(root: str, limit: int, result: Any) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Lowered after import: the idle bound pkgcache computed (256 locks) no
    # longer fits, and only running out can tell it.
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    cache = pkgcache.Cache(root)
    report: dict[str, Any] = {}
    # 1. Many packages one after the other: idle locks are shed, nothing fails.
    peak = 0
    for i in range(limit * 2):
        with cache.exclusive(f"pkg{i}", timeout=WAIT):
            pass
        peak = max(peak, _lock_descriptors(root))
    report["peak_descriptors"] = peak
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
    report["descriptors_after"] = _lock_descriptors(root)
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


# -- the store: deterministic contents, checks, crash injection --------------------

STORE_PACKAGES = ("alpha", "beta", "gamma")


def content_for(key: str) -> bytes:
    """The only bytes an entry ``key`` may ever hold (size varies by key)."""
    seed = hashlib.sha256(key.encode()).digest()
    return seed * (1 + seed[0] * 64)  # 32 B .. ~260 KiB


def store_key(rng: random.Random, package: str) -> str:
    """A random key: a wheel, an sdist, a plain file or a file in a variant."""
    version = f"1.{rng.randrange(4)}.{rng.randrange(3)}"
    return rng.choice(
        (
            f"{package}-{version}-py3-none-any.whl",
            f"{package}-{version}.tar.gz",
            f"blob-{rng.randrange(4)}.bin",
            f"cuda/{package}-{version}-1-py3-none-any.whl",
        )
    )


def tree_key(rng: random.Random) -> str:
    return f"build/{rng.randrange(3)}"


def fill_tree(staging: Path, key: str) -> None:
    """Write a tree whose files are all derived from ``key`` (manifest last)."""
    names = [f"f{i}" for i in range(1 + len(key) % 4)]
    for name in names:
        (staging / name).write_bytes(content_for(f"{key}/{name}"))
    (staging / "sub").mkdir()
    (staging / "sub" / "deep").write_bytes(content_for(f"{key}/sub/deep"))
    (staging / "MANIFEST").write_text("\n".join([*names, "sub/deep"]))


def check_entry(entry: pkgcache.Entry) -> None:
    """Raise AssertionError unless ``entry`` is whole and holds the right bytes."""
    path = Path(entry.path)
    if entry.kind == "tree":
        manifest = (path / "MANIFEST").read_text().split("\n")
        for name in manifest:
            expected = content_for(f"{entry.key}/{name}")
            got = (path / name).read_bytes()
            assert got == expected, f"tree {entry.package}/{entry.key}: {name} wrong"
        return
    got = path.read_bytes()
    expected = content_for(entry.key)
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest(), (
        f"{entry.package}/{entry.key}: {len(got)} bytes, expected {len(expected)}"
    )


def source_file(src_dir: Path, key: str, *, fresh: bool) -> Path:
    """A source file holding ``content_for(key)``, named like the key.

    ``fresh`` gives a file of its own (for ``move=True``); otherwise one
    shared file per key, written atomically by whoever needs it first.
    """
    name = key.rpartition("/")[2]
    unique = f"{os.getpid()}-{random.randrange(2**64)}"
    folder = src_dir / (unique if fresh else key.replace("/", "_"))
    path = folder / name
    if not fresh and path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{name}.{unique}"
    part.write_bytes(content_for(key))
    os.replace(part, path)
    return path


def store_operation(
    cache: pkgcache.Cache, rng: random.Random, src_dir: Path, counts: Counter[str]
) -> None:
    """One random store operation (writers' side)."""
    package = rng.choice(STORE_PACKAGES)
    roll = rng.random()
    if roll < 0.40:
        key = store_key(rng, package)
        move = rng.random() < 0.3
        src = source_file(src_dir, key, fresh=move)
        with cache.exclusive(package, timeout=WAIT) as txn:
            txn.add(src, key=key, move=move)
        counts["add-move" if move else "add"] += 1
    elif roll < 0.60:
        key = tree_key(rng)
        with (
            cache.exclusive(package, timeout=WAIT) as txn,
            txn.add_tree(key) as staging,
        ):
            fill_tree(Path(staging), key)
        counts["add_tree"] += 1
    elif roll < 0.70:
        with cache.exclusive(package, timeout=WAIT) as txn:
            txn.remove(store_key(rng, package))
        counts["remove"] += 1
    elif roll < 0.80:
        cache.clean(package, timeout=WAIT)
        counts["clean(pkg)"] += 1
    elif roll < 0.84:
        cache.clean(timeout=WAIT)
        counts["clean()"] += 1
    else:
        cache.prune(max_bytes=rng.randrange(2_000_000), timeout=WAIT)
        counts["prune"] += 1


def check_store(cache: pkgcache.Cache) -> int:
    """Every visible entry is whole and right; return how many were checked."""
    checked = 0
    with cache.reading(*STORE_PACKAGES, timeout=WAIT) as view:
        for package in STORE_PACKAGES:
            for entry in view.entries(package):
                check_entry(entry)
                checked += 1
    return checked


def crash_driver(root: str, src_dir: str, seed: int, kills: int, result: Any) -> None:
    """Fork writers and SIGKILL each at a random moment; check after each.

    Runs in a spawn process (single-threaded, so forking it is safe). After
    every kill: every lock can be taken at once, every visible entry is
    whole, and a prune leaves ``tmp/`` empty (the dead writer's staging
    folders are reaped).
    """
    import signal as _signal

    rng = random.Random(seed)
    cache = pkgcache.Cache(root)
    src = Path(src_dir)
    report: Counter[str] = Counter()
    try:
        for _ in range(kills):
            read_end, write_end = os.pipe()
            writer_seed = rng.randrange(2**32)
            pid = os.fork()
            if pid == 0:  # the writer: work until killed
                os.close(read_end)
                code = 1
                try:
                    local = random.Random(writer_seed)
                    counts: Counter[str] = Counter()
                    os.write(write_end, b"r")
                    while True:
                        store_operation(cache, local, src, counts)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            os.close(write_end)
            assert os.read(read_end, 1) == b"r"
            # A random moment of the writer's work (injection, not a sync).
            time.sleep(rng.random() * 0.03)
            os.kill(pid, _signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            os.close(read_end)
            if os.WIFEXITED(status):
                raise AssertionError(f"a writer died by itself: {status}")
            report["kills"] += 1
            # Every lock can be taken at once, the whole cache included.
            with cache.exclusive(timeout=5.0):
                pass
            with cache.exclusive(*STORE_PACKAGES, timeout=5.0):
                pass
            report["entries checked"] += check_store(cache)
            leftovers = (
                os.listdir(os.path.join(root, "tmp"))
                if os.path.isdir(os.path.join(root, "tmp"))
                else []
            )
            report["leftovers"] += len(leftovers)
            pruned = cache.prune(timeout=5.0)
            report["reaped"] += pruned.reaped
            remaining = (
                os.listdir(os.path.join(root, "tmp"))
                if os.path.isdir(os.path.join(root, "tmp"))
                else []
            )
            assert remaining == [], f"prune left {remaining} in tmp/"
        result.put(("ok", dict(report)))
    except BaseException as exc:
        import traceback

        result.put(("error", traceback.format_exc(), dict(report)))
        raise SystemExit(1) from exc


def store_torture_worker(
    root: str,
    src_dir: str,
    seed: int,
    *,
    readers: int,
    writers: int,
    seconds: float,
    start: Any,
    result: Any,
) -> None:
    """Reader and writer threads on the store; report counts and errors.

    Readers ``find()`` (or list) under ``reading(pkg)`` and read every byte
    of what they get, checking it against the only content its key may
    hold: a vanished, partial or wrong file is an error.
    """
    cache = pkgcache.Cache(root)
    src = Path(src_dir)
    start.wait(WAIT)
    deadline = time.monotonic() + seconds
    counts: Counter[str] = Counter()
    errors: list[str] = []
    mutex = threading.Lock()

    def reader(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        local: Counter[str] = Counter()
        try:
            while time.monotonic() < deadline:
                package = rng.choice(STORE_PACKAGES)
                with cache.reading(package, timeout=WAIT) as view:
                    if rng.random() < 0.6:
                        found = view.find(package, kind=rng.choice(("wheel", "sdist")))
                        entries = [] if found is None else [found]
                        local["find"] += 1
                    else:
                        entries = view.entries(package)
                        local["entries"] += 1
                    for entry in entries:
                        check_entry(entry)
                        local["entry read"] += 1
        except BaseException as exc:
            errors.append(f"reader: {exc!r}")
        with mutex:
            counts.update(local)

    def writer(index: int) -> None:
        rng = random.Random(seed * 100 + 50 + index)
        local: Counter[str] = Counter()
        try:
            while time.monotonic() < deadline:
                store_operation(cache, rng, src, local)
        except BaseException as exc:
            errors.append(f"writer: {exc!r}")
        with mutex:
            counts.update(local)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + WAIT)
        if thread.is_alive():
            errors.append("a thread never finished its last operation")
    result.put((dict(counts), errors))
