"""Whole-store maintenance: ``clean``, ``prune`` and ``info``.

Built on the public lock API: each function takes the locks it needs with
``reading()`` / ``exclusive()`` in ``with`` blocks, and has the lock-free
:class:`~pkgcache._store.Store` do the file work. A package is tried with
``exclusive(pkg, timeout=0)``: a package busy in another thread or process
is skipped, never waited for (see :meth:`pkgcache.Cache.prune`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, Protocol

from packaging.utils import NormalizedName

from ._errors import LockOrderError, LockTimeout, LockUpgradeError, UnsafePathError
from ._names import canonical_names
from ._records import CacheInfo, CleanReport, Entry, PruneReport
from ._store import Seen, Store
from ._timeouts import DEFAULT_TIMEOUT, DefaultTimeout, _resolve_timeout

__all__ = ["clean", "info", "prune"]

logger = logging.getLogger("pkgcache")

Timeout = float | DefaultTimeout | None


class Hold(Protocol):
    """What a ``with`` block of the lock API gives back, as used here."""

    def _verify(self) -> None: ...


class Locks(Protocol):
    """The public lock methods of :class:`pkgcache.Cache` used here."""

    @property
    def root(self) -> Path: ...

    @property
    def timeout(self) -> float | None: ...

    def reading(
        self, *packages: str, timeout: Timeout = DEFAULT_TIMEOUT
    ) -> AbstractContextManager[Hold]: ...

    def exclusive(
        self, *packages: str, timeout: Timeout = DEFAULT_TIMEOUT
    ) -> AbstractContextManager[Hold]: ...


@contextlib.contextmanager
def _try_exclusive(locks: Locks, package: NormalizedName) -> Iterator[Hold | None]:
    """Hold ``package`` exclusively if that needs no waiting, else ``None``.

    A package this thread holds shared is busy (``LockUpgradeError``); one it
    holds exclusively is re-entered, and its own staging stays untouched
    (the store knows its live names).
    """
    with contextlib.ExitStack() as stack:
        try:
            hold = stack.enter_context(locks.exclusive(package, timeout=0))
        except (LockTimeout, LockOrderError, LockUpgradeError):
            hold = None
        yield hold


def clean(
    locks: Locks, store: Store, packages: tuple[str, ...], timeout: Timeout
) -> CleanReport:
    """See :meth:`pkgcache.Cache.clean`."""
    if not packages:
        with locks.exclusive(timeout=timeout) as hold:
            cleared, removed, freed = store.clear_all(verify=hold._verify)
        return CleanReport(tuple(cleared), removed, freed)
    names = canonical_names(packages)
    seconds = _resolve_timeout(timeout, locks.timeout)
    deadline = None if seconds is None else time.monotonic() + seconds
    removed = freed = 0
    for name in names:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        with locks.exclusive(name, timeout=left) as hold:
            entries, size = store.clear(name, verify=hold._verify)
        removed += entries
        freed += size
    return CleanReport(names, removed, freed)


def info(locks: Locks, store: Store, timeout: Timeout) -> CacheInfo:
    """See :meth:`pkgcache.Cache.info`."""
    per_package: dict[str, tuple[int, int]] = {}
    damaged = 0
    with locks.reading(timeout=timeout):
        for name in store.package_names():
            try:
                seen = store.survey(name)
            except UnsafePathError:
                continue
            if seen:
                per_package[name] = (len(seen), sum(item.size for item in seen))
                damaged += sum(item.damage is not None for item in seen)
        staging_entries, staging_bytes = store.staging_usage()
    return CacheInfo(
        root=locks.root,
        packages=len(per_package),
        entries=sum(count for count, _ in per_package.values()),
        bytes=sum(size for _, size in per_package.values()),
        per_package=MappingProxyType(per_package),
        damaged=damaged,
        staging_entries=staging_entries,
        staging_bytes=staging_bytes,
    )


class _Candidate(NamedTuple):
    """An entry prune may remove; sorts least recently used first."""

    last_used: float
    package: NormalizedName
    key: str
    size: int
    damaged: bool


def prune(
    locks: Locks,
    store: Store,
    max_bytes: int | None,
    older_than: float | None,
    timeout: Timeout,
) -> PruneReport:
    """See :meth:`pkgcache.Cache.prune`."""
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
        raise ValueError(f"max_bytes must be None or an int >= 0, not {max_bytes!r}")
    if older_than is not None and (
        not isinstance(older_than, (int, float)) or not older_than >= 0
    ):
        raise ValueError(f"older_than must be None or seconds >= 0, not {older_than!r}")
    removed: list[Entry] = []
    skipped: set[str] = set()
    reaped = 0
    with locks.reading(timeout=timeout):
        now = time.time()
        seen: list[_Candidate] = []
        for package in store.package_names():
            with contextlib.suppress(UnsafePathError):
                seen.extend(
                    _Candidate(
                        s.last_used, package, s.key, s.size, s.damage is not None
                    )
                    for s in store.survey(package)
                )
        seen.sort()  # least recently used first
        total = sum(candidate.size for candidate in seen)
        leftovers: set[NormalizedName] = store.leftover_owners()
        done: set[tuple[str, str]] = set()
        for _ in range(3):
            chosen = _choose(
                seen,
                done,
                skipped,
                total,
                max_bytes=max_bytes,
                older_than=older_than,
                now=now,
            )
            visit = {candidate.package for candidate in chosen} | (leftovers - skipped)
            leftovers = set()
            if not visit:
                break
            by_package: dict[str, dict[str, _Candidate]] = {name: {} for name in visit}
            for candidate in chosen:
                by_package[candidate.package][candidate.key] = candidate
                done.add((candidate.package, candidate.key))
            for name in sorted(visit):
                with _try_exclusive(locks, name) as hold:
                    if hold is None:
                        skipped.add(name)
                        continue
                    gone = _prune_package(store, name, by_package[name], hold)
                    reaped += store.reap(name)
                removed.extend(gone)
                total -= sum(entry.size for entry in gone)
            if max_bytes is None or total <= max_bytes:
                break
    removed.sort(key=lambda e: (e.last_used, e.package, e.key))
    return PruneReport(
        removed=tuple(removed),
        bytes_freed=sum(entry.size for entry in removed),
        skipped=tuple(sorted(skipped)),
        reaped=reaped,
    )


def _choose(
    seen: list[_Candidate],
    done: set[tuple[str, str]],
    skipped: set[str],
    total: int,
    *,
    max_bytes: int | None,
    older_than: float | None,
    now: float,
) -> list[_Candidate]:
    """The entries to remove next: damaged ones, then least recently used."""
    cutoff = None if older_than is None else now - older_than
    chosen = []
    for candidate in seen:
        if (candidate.package, candidate.key) in done or candidate.package in skipped:
            continue
        if (
            candidate.damaged
            or (cutoff is not None and candidate.last_used < cutoff)
            or (max_bytes is not None and total > max_bytes)
        ):
            chosen.append(candidate)
            total -= candidate.size
    return chosen


def _prune_package(
    store: Store,
    package: NormalizedName,
    chosen: dict[str, _Candidate],
    hold: Hold,
) -> list[Entry]:
    """Under ``package``'s exclusive lock: remove chosen entries not used since."""
    gone: list[Entry] = []
    if not chosen:
        return gone
    current: list[Seen] = store.survey(package)
    for seen in current:
        picked = chosen.get(seen.key)
        if picked is None:
            continue
        if seen.damage is None and seen.last_used > picked.last_used:
            continue  # used since the scan: no longer the oldest
        if store.remove(package, seen.key, verify=hold._verify):
            if seen.damage is not None:
                logger.warning(
                    "pkgcache: removed damaged entry %s/%s (%s)",
                    package,
                    seen.key,
                    seen.damage,
                )
            gone.append(store.describe(package, seen))
    return gone
