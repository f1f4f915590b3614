"""Which stored wheel or sdist ``find()`` returns: pure functions over candidates.

The rule, in order:

1. Keep wheels with at least one tag in the supported tags, and sdists
   (``kind`` keeps only one of the two).
2. Keep the versions the specifier allows, with PEP 440's pre-release rule:
   a pre-release only if the specifier names one, or if no final release
   is allowed.
3. Take the highest version; then the highest build tag; then a wheel
   over an sdist; then the most preferred tag (earliest in the tags);
   then the shortest key; then the first key in sorted order.

Nothing here touches the file system: the store hands in what it listed
(see :class:`pkgcache._store.Store`), and tests hand in plain lists.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import attrs
from packaging.requirements import InvalidRequirement as _PackagingInvalidRequirement
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.version import Version

from ._errors import InvalidRequirement

__all__ = [
    "Candidate",
    "best",
    "best_of",
    "by_version",
    "interpreter_ranks",
    "parse_requirement",
    "ranks",
]

#: ``{tag: rank}``, 0 for the most preferred tag.
Ranks = Mapping[Tag, int]
#: Candidates grouped by version, highest version first.
Versions = Sequence[tuple[Version, Sequence["Candidate"]]]


@attrs.frozen
class Candidate:
    """A stored wheel or sdist, as its key's file name describes it."""

    key: str
    kind: Literal["wheel", "sdist"]
    version: Version
    build_tag: tuple[int, str] | tuple[()] = ()
    tags: frozenset[Tag] = frozenset()


def ranks(tags: Iterable[Tag]) -> dict[Tag, int]:
    """``{tag: position}`` of the first time each tag appears in ``tags``."""
    ranked: dict[Tag, int] = {}
    for rank, tag in enumerate(tags):
        ranked.setdefault(tag, rank)
    return ranked


@functools.lru_cache(maxsize=1)
def interpreter_ranks() -> dict[Tag, int]:
    """The ranks of :func:`packaging.tags.sys_tags` (computed once)."""
    return ranks(sys_tags())


def parse_requirement(requirement: str | Requirement) -> Requirement:
    """``requirement`` as a :class:`~packaging.requirements.Requirement`.

    Raises:
        InvalidRequirement: a string that is not PEP 508.
        TypeError: neither a string nor a requirement.
    """
    if isinstance(requirement, Requirement):
        return requirement
    if not isinstance(requirement, str):
        raise TypeError(
            "requirement must be a str or Requirement, not "
            f"{type(requirement).__name__}"
        )
    try:
        return Requirement(requirement)
    except _PackagingInvalidRequirement as exc:
        raise InvalidRequirement(str(exc)) from exc


def by_version(
    candidates: Iterable[Candidate],
) -> list[tuple[Version, list[Candidate]]]:
    """Group ``candidates`` by version, highest first (what :func:`best_of` takes)."""
    groups: dict[Version, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.version, []).append(candidate)
    return sorted(groups.items(), key=lambda item: item[0], reverse=True)


def best(
    candidates: Iterable[Candidate],
    specifier: SpecifierSet,
    *,
    kind: str | None = None,
    ranks: Ranks,
) -> Candidate | None:
    """The candidate ``find()`` returns, or ``None`` (see the module's rule)."""
    return best_of(by_version(candidates), specifier, kind=kind, ranks=ranks)


def best_of(
    versions: Versions,
    specifier: SpecifierSet,
    *,
    kind: str | None,
    ranks: Ranks,
    exclude: frozenset[str] = frozenset(),
) -> Candidate | None:
    """:func:`best` over candidates already grouped by :func:`by_version`.

    Stops at the first version that decides: asking the specifier about
    every version of a package with thousands of them cost tens of
    milliseconds. Keys in ``exclude`` are not candidates.
    """
    # None: pre-releases only if no final release is allowed (PEP 440).
    allow_pre = specifier.prereleases
    fallback: Candidate | None = None
    for version, group in versions:
        if fallback is not None and version.is_prerelease:
            continue  # a lower pre-release never beats the one kept
        chosen = _best_in_version(group, kind, ranks, exclude)
        if chosen is None or not specifier.contains(version, prereleases=True):
            continue
        if not version.is_prerelease or allow_pre:
            return chosen
        if allow_pre is None and fallback is None:
            fallback = chosen
    return fallback


def _best_in_version(
    group: Sequence[Candidate], kind: str | None, ranks: Ranks, exclude: frozenset[str]
) -> Candidate | None:
    best_candidate: Candidate | None = None
    best_order: tuple[object, ...] = ()
    # Shortest key first, then sorted order: among equals the first one wins.
    for candidate in sorted(group, key=lambda c: (len(c.key), c.key)):
        if candidate.key in exclude or (kind is not None and candidate.kind != kind):
            continue
        rank = 0
        if candidate.kind == "wheel":
            rank = min(
                (ranks[tag] for tag in candidate.tags if tag in ranks), default=-1
            )
            if rank < 0:
                continue  # no tag this interpreter supports
        # Higher is better: build tag, then a wheel, then the preferred tag.
        order = (candidate.build_tag, candidate.kind == "wheel", -rank)
        if best_candidate is None or order > best_order:
            best_candidate, best_order = candidate, order
    return best_candidate
