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
from typing import Literal, NamedTuple

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
#: Candidates grouped by version, in any order.
Versions = Mapping[Version, Sequence["Candidate"]]


class Candidate(NamedTuple):
    """A stored wheel or sdist, as its key's file name describes it.

    A named tuple: listing a package builds one per file, and a tuple costs
    a tenth of a frozen class to create.
    """

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


def by_version(candidates: Iterable[Candidate]) -> dict[Version, list[Candidate]]:
    """Group ``candidates`` by version (what :func:`best_of` takes)."""
    groups: dict[Version, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.version, []).append(candidate)
    return groups


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

    One pass, in any order: a version not above the best one so far is
    passed over with one comparison, before the specifier is asked (asking
    it about every version of a package with thousands of them cost tens of
    milliseconds). Keys in ``exclude`` are not candidates.
    """
    # None: pre-releases only if no final release is allowed (PEP 440).
    allow_pre = specifier.prereleases
    final: tuple[Version, Candidate] | None = None  # the best allowed so far
    pre: tuple[Version, Candidate] | None = None  # the best pre-release kept aside
    for version, group in versions.items():
        aside = version.is_prerelease and not allow_pre
        if aside:
            if allow_pre is False or final is not None:
                continue
            if pre is not None and not version > pre[0]:
                continue
        elif final is not None and not version > final[0]:
            continue
        if not specifier.contains(version, prereleases=True):
            continue
        chosen = _best_in_version(group, kind, ranks, exclude)
        if chosen is None:
            continue
        if aside:
            pre = (version, chosen)
        else:
            final = (version, chosen)
    if final is not None:
        return final[1]
    return None if pre is None else pre[1]


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
