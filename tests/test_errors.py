"""Every public exception survives pickling, and reads well."""

from __future__ import annotations

import errno
import pickle
import subprocess
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import pytest

import pkgcache
import pkgcache.uv
from pkgcache import Holder
from tests.helpers import SPAWN, WAIT

HOLDER = Holder(
    package="packaging",
    pid=31892,
    mode="exclusive",
    waiting=False,
    command="pkgcache run --exclusive packaging -- sleep 3",
    threads=(),
    path="/var/cache/builder/locks/packaging.lock",
    process_age=3.25,
)

# One instance of every public exception, built the way pkgcache raises it.
SAMPLES: dict[type[BaseException], Callable[[], BaseException]] = {
    pkgcache.CacheError: lambda: pkgcache.CacheError("something failed"),
    pkgcache.CachePermissionError: lambda: pkgcache.CachePermissionError(
        "cannot create /c/locks: the cache is read-only"
    ),
    pkgcache.EntryNotFound: lambda: pkgcache.EntryNotFound("a", "a-1.0.tar.gz"),
    pkgcache.EntryDamaged: lambda: pkgcache.EntryDamaged(
        "a", "a-1.0-py3-none-any.whl", "its size is 0 bytes, 2,048 recorded"
    ),
    pkgcache.InvalidArtifact: lambda: pkgcache.InvalidArtifact("'x.whl' is bad"),
    pkgcache.InvalidKey: lambda: pkgcache.InvalidKey("../x", "leaves the package"),
    pkgcache.InvalidPackageName: lambda: pkgcache.InvalidPackageName(
        "../etc", "not a valid project name"
    ),
    pkgcache.InvalidRequirement: lambda: pkgcache.InvalidRequirement("bad ==="),
    pkgcache.InvalidLockServer: lambda: pkgcache.InvalidLockServer(
        "unsupported lock server 'mysql://h/db': expected a postgresql:// URL"
    ),
    pkgcache.LockLost: lambda: pkgcache.LockLost(
        "postgresql lock on package 'a' of cache 0a1b2c3d was lost"
    ),
    pkgcache.LockServerError: lambda: pkgcache.LockServerError(
        "cannot connect to the lock server postgresql://u:***@db/locks: refused"
    ),
    pkgcache.LockOrderError: lambda: pkgcache.LockOrderError("out of order"),
    pkgcache.LockTimeout: lambda: pkgcache.LockTimeout(
        root="/var/cache/builder",
        package="packaging",
        mode="exclusive",
        waited=30.0,
        holders=[HOLDER],
    ),
    pkgcache.LockUpgradeError: lambda: pkgcache.LockUpgradeError("no upgrade"),
    pkgcache.NotACacheError: lambda: pkgcache.NotACacheError(
        "/home/me", "it holds other files (notes.txt)"
    ),
    pkgcache.NotLockedError: lambda: pkgcache.NotLockedError("not held"),
    pkgcache.SourceNotFound: lambda: pkgcache.SourceNotFound(
        errno.ENOENT, "cannot store /x: no such file", "/x"
    ),
    pkgcache.SourcePermissionError: lambda: pkgcache.SourcePermissionError(
        errno.EACCES, "cannot store /x: permission denied", "/x"
    ),
    pkgcache.StoreWriteError: lambda: pkgcache.StoreWriteError(
        errno.ENOSPC, "cannot add: No space left on device"
    ),
    pkgcache.UnsafePathError: lambda: pkgcache.UnsafePathError(
        "/c/locks/a.lock", "it is a symbolic link"
    ),
    pkgcache.uv.UvCommandError: lambda: pkgcache.uv.UvCommandError(
        2, ["uv", "cache", "clean"], "", "error: boom"
    ),
    pkgcache.uv.UvNotFoundError: lambda: pkgcache.uv.UvNotFoundError("no uv"),
}


def public_exceptions() -> set[type[BaseException]]:
    found = set()
    for module in (pkgcache, pkgcache.uv):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                found.add(value)
    return found


def test_every_public_exception_has_a_sample() -> None:
    # A new public exception must be added to SAMPLES, and so be tested.
    assert public_exceptions() == set(SAMPLES)


def state(exc: BaseException) -> tuple[object, ...]:
    return (type(exc), str(exc), exc.args, vars(exc))


@pytest.mark.parametrize("cls", sorted(SAMPLES, key=lambda cls: cls.__name__))
def test_round_trip(cls: type[BaseException]) -> None:
    exc = SAMPLES[cls]()
    assert type(exc) is cls
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(exc, protocol))
        assert state(copy) == state(exc)


def test_extra_attributes_survive() -> None:
    exc = pkgcache.InvalidPackageName("a/b", "a path")
    exc.add_note("while cleaning")
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.__notes__ == ["while cleaning"]
    assert (copy.name, copy.reason) == ("a/b", "a path")


def test_lock_timeout_reads_as_sentences() -> None:
    exc = SAMPLES[pkgcache.LockTimeout]()
    assert str(exc) == (
        "timed out after 30.000 s waiting for the exclusive lock on package "
        "'packaging' in /var/cache/builder: pid 31892 holds the exclusive lock "
        "on package 'packaging' (process age 3.2 s) "
        "[pkgcache run --exclusive packaging -- sleep 3]"
    )
    alone = pkgcache.LockTimeout(
        root="/c", package=None, mode="shared", waited=0.0, holders=()
    )
    assert str(alone) == (
        "timed out after 0.000 s waiting for the shared lock on the whole cache "
        "in /c: no holder could be identified"
    )


def raise_lock_timeout(root: str) -> None:
    """In a pool worker: time out on a lock the parent holds."""
    with pkgcache.Cache(root).exclusive("a", timeout=0):
        pass


@pytest.mark.timeout(60)
def test_a_process_pool_sends_a_lock_timeout_back(tmp_path) -> None:
    cache = pkgcache.Cache(tmp_path / "cache")
    with (
        cache.reading("a"),
        ProcessPoolExecutor(1, mp_context=SPAWN) as pool,
    ):
        future = pool.submit(raise_lock_timeout, str(cache.root))
        with pytest.raises(pkgcache.LockTimeout) as caught:
            future.result(WAIT)
    assert caught.value.package == "a"
    assert caught.value.mode == "exclusive"
    assert caught.value.root == str(cache.root)
    [holder] = caught.value.holders
    assert holder.mode == "shared"
    assert isinstance(caught.value, TimeoutError)


def test_uv_command_error_keeps_the_process_fields() -> None:
    exc = SAMPLES[pkgcache.uv.UvCommandError]()
    copy = pickle.loads(pickle.dumps(exc))
    assert isinstance(copy, subprocess.CalledProcessError)
    assert (copy.returncode, copy.cmd, copy.stderr) == (2, exc.cmd, "error: boom")
