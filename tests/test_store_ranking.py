"""``find()``'s choice as a pure function, on plain lists of candidates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

import pkgcache
from pkgcache._ranking import Candidate, best, best_of, by_version, parse_requirement
from pkgcache._ranking import ranks as ranks_of

ANY = Tag("py3", "none", "any")
LINUX = Tag("cp311", "cp311", "linux_x86_64")
RANKS = ranks_of([LINUX, ANY])


def wheel(key: str, version: str, *, build=(), tags=(ANY,)) -> Candidate:
    return Candidate(key, "wheel", Version(version), build, frozenset(tags))


def sdist(key: str, version: str) -> Candidate:
    return Candidate(key, "sdist", Version(version))


def choose(candidates, spec: str = "", **kwargs) -> str | None:
    kwargs.setdefault("ranks", RANKS)
    found = best(candidates, SpecifierSet(spec), **kwargs)
    return None if found is None else found.key


def test_the_highest_allowed_version_wins():
    candidates = [wheel("a", "1.0"), wheel("b", "2.0"), wheel("c", "1.5")]
    assert choose(candidates) == "b"
    assert choose(candidates, "<2") == "c"
    assert choose(candidates, ">3") is None
    assert choose([]) is None


def test_pre_releases_only_when_named_or_nothing_else_matches():
    candidates = [wheel("final", "1.0"), wheel("pre", "2.0rc1")]
    assert choose(candidates) == "final"
    assert choose(candidates, ">=2.0rc1") == "pre"  # the specifier names one
    assert choose(candidates, ">1") == "pre"  # no final release matches
    forced = SpecifierSet(">1", prereleases=False)
    assert best(candidates, forced, ranks=RANKS) is None


def test_then_build_tag_then_wheel_then_preferred_tag():
    assert choose([wheel("a", "1.0"), wheel("b", "1.0", build=(1, ""))]) == "b"
    assert choose([sdist("s", "1.0"), wheel("w", "1.0")]) == "w"
    any_wheel = wheel("any", "1.0")
    linux = wheel("linux", "1.0", tags=(LINUX,))
    assert choose([any_wheel, linux]) == "linux"
    assert choose([any_wheel, linux], ranks=ranks_of([ANY, LINUX])) == "any"


def test_then_the_shortest_key_then_sorted_order():
    name = "demo-1.0-py3-none-any.whl"
    keys = [f"zz/{name}", f"cuda/{name}", name, f"ab/{name}"]
    assert choose([wheel(key, "1.0") for key in keys]) == name
    assert choose([wheel(key, "1.0") for key in keys[:2] + keys[3:]]) == f"ab/{name}"


def test_kind_incompatible_wheels_and_excluded_keys():
    candidates = [
        wheel("new-but-foreign", "3.0", tags=(Tag("cp99", "cp99", "x"),)),
        sdist("sdist", "2.0"),
        wheel("wheel", "1.0"),
    ]
    assert choose(candidates) == "sdist"
    assert choose(candidates, kind="wheel") == "wheel"
    assert choose(candidates, kind="sdist") == "sdist"
    grouped = by_version(candidates)
    excluded = best_of(
        grouped, SpecifierSet(), kind=None, ranks=RANKS, exclude=frozenset({"sdist"})
    )
    assert excluded is not None
    assert excluded.key == "wheel"


def test_equal_versions_are_one_group():
    groups = by_version([wheel("a", "1.0"), wheel("b", "1.0.0"), wheel("c", "0.9")])
    assert [(str(v), [c.key for c in group]) for v, group in groups.items()] == [
        ("1.0", ["a", "b"]),
        ("0.9", ["c"]),
    ]


def test_requirements_parse_or_fail_clearly():
    assert parse_requirement("demo>=1").name == "demo"
    with pytest.raises(pkgcache.InvalidRequirement):
        parse_requirement("demo >>> 1")
    with pytest.raises(TypeError, match="str or Requirement"):
        parse_requirement(3)  # type: ignore[arg-type]


VERSIONS = st.sampled_from(
    [
        "0.9",
        "1.0",
        "1.0.0",
        "1.0.post1",
        "1.1rc1",
        "1.1",
        "2.0.dev1",
        "2.0a1",
        "2.0",
        "2.0+local",
        "2.1b2",
        "3.0rc1",
    ]
)
SPECIFIERS = st.sampled_from(
    (
        "",
        *[
            ">=1",
            "<2",
            "==1.0",
            "!=2.0",
            "~=1.0",
            ">1.1",
            "<=2.0a1",
            ">=2.0a1",
            ">=1,<2",
            "==2.*",
            ">2",
            "<1",
        ],
    )
)


@settings(max_examples=300, deadline=None)
@given(versions=st.lists(VERSIONS, max_size=8), spec=SPECIFIERS)
def test_the_version_chosen_is_the_highest_that_specifier_filter_keeps(versions, spec):
    """The early-stopping scan agrees with packaging's own filter."""
    specifier = SpecifierSet(spec)
    candidates = [wheel(f"k{i}", v) for i, v in enumerate(versions)]
    found = best(candidates, specifier, ranks=RANKS)
    allowed = list(specifier.filter(Version(v) for v in versions))
    if not allowed:
        assert found is None
    else:
        assert found is not None
        assert found.version == max(allowed)
