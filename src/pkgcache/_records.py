"""The immutable records the artifact store returns."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs
from packaging.tags import Tag
from packaging.version import Version

__all__ = ["CacheInfo", "CleanReport", "Entry", "EntryKind", "PruneReport"]

#: What an entry holds: a wheel, an sdist, a folder tree, or any other file.
EntryKind = Literal["wheel", "sdist", "tree", "file"]


def _version_repr(version: Version | None) -> str:
    return "None" if version is None else str(version)


def _time_repr(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@attrs.frozen
class Entry:
    """One stored artifact, as seen when it was listed.

    Its ``repr`` shows the package, key, kind, version, size and creation
    time (UTC); the path, tags and last use are attributes.

    Attributes:
        package: canonical project name.
        key: the entry's relative POSIX path inside its package, e.g.
            ``"cuda/setuptools_scm-8.2.0-1-py3-none-any.whl"``.
        path: where the entry is on disk; valid while the lock that listed it
            is held.
        kind: ``"wheel"`` or ``"sdist"`` when the key's file name parses as
            one of this package, ``"tree"`` for a folder published with
            :meth:`CacheTransaction.add_tree`, else ``"file"``.
        version: the version in a wheel or sdist file name, else ``None``.
        build_tag: a wheel's build tag (``(1, "")``), else ``()``.
        tags: a wheel's compatibility tags, else empty.
        size: bytes (for a tree, the sum of its files).
        created: when it was published (seconds since the epoch).
        last_used: when it was last returned by ``find()`` or ``path()``
            (or published); what :meth:`Cache.prune` sorts by.
    """

    package: str
    key: str
    path: Path = attrs.field(repr=False)
    kind: EntryKind
    version: Version | None = attrs.field(repr=_version_repr)
    build_tag: tuple[int, str] | tuple[()] = attrs.field(repr=False)
    tags: frozenset[Tag] = attrs.field(repr=False)
    size: int
    created: float = attrs.field(repr=_time_repr)
    last_used: float = attrs.field(repr=False)


@attrs.frozen
class CleanReport:
    """What :meth:`Cache.clean` removed.

    Attributes:
        packages: canonical names of the packages cleaned.
        entries_removed: number of entries removed.
        bytes_freed: their total size.
    """

    packages: tuple[str, ...]
    entries_removed: int
    bytes_freed: int


@attrs.frozen
class PruneReport:
    """What :meth:`Cache.prune` removed, freed and skipped.

    Attributes:
        removed: the entries removed, least recently used first.
        bytes_freed: their total size.
        skipped: packages that had something to remove but were busy (held
            by another thread or process), so were left alone.
        reaped: staging or trash leftovers of dead writers deleted.
    """

    removed: tuple[Entry, ...]
    bytes_freed: int
    skipped: tuple[str, ...]
    reaped: int


@attrs.frozen
class CacheInfo:
    """Sizes of the store, from one pass over it.

    Attributes:
        root: the cache folder.
        packages: packages with at least one entry.
        entries: entries in all (damaged ones included).
        bytes: their total size.
        per_package: ``{name: (entries, bytes)}`` for each such package.
        damaged: entries that fail their check (see :doc:`store`): skipped
            by ``find()`` and ``entries()``, removed by the next
            :meth:`Cache.prune`.
        staging_entries: files and folders in ``<root>/tmp/``: writes under
            way, and leftovers of writers that died (reaped by
            :meth:`Cache.prune` and :meth:`Cache.clean`).
        staging_bytes: their total size.
    """

    root: Path
    packages: int
    entries: int
    bytes: int
    per_package: Mapping[str, tuple[int, int]] = attrs.field(hash=False)
    damaged: int
    staging_entries: int
    staging_bytes: int
