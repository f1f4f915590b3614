import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pkgcache
from pkgcache._names import canonical_name

BAD_NAMES = [
    "",
    "..",
    ".",
    "a/b",
    "a\\b",
    "a\0b",
    "/etc/passwd",
    "-rf",
    "a-",
    "_a",
    "a b",
    "é",
    "x" * 201,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_raise_value_error(name):
    with pytest.raises(pkgcache.InvalidPackageName) as info:
        canonical_name(name)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, pkgcache.CacheError)


@pytest.mark.parametrize("name", [None, 3, b"abc"])
def test_non_strings_are_invalid(name):
    with pytest.raises(pkgcache.InvalidPackageName):
        canonical_name(name)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Setuptools_SCM", "setuptools-scm"),
        ("setuptools.scm", "setuptools-scm"),
        ("A", "a"),
        ("zope.Interface", "zope-interface"),
    ],
)
def test_canonical_form(name, canonical):
    assert canonical_name(name) == canonical


@pytest.mark.timeout(60)
@given(st.text(max_size=30))
def test_invalid_names_never_touch_the_disk(tmp_path_factory, name):
    root = tmp_path_factory.mktemp("root")
    cache = pkgcache.Cache(root / "cache")
    try:
        canonical = canonical_name(name)
    except pkgcache.InvalidPackageName:
        with pytest.raises(pkgcache.InvalidPackageName):
            cache.reading(name)
        with pytest.raises(pkgcache.InvalidPackageName):
            cache.exclusive("ok", name)
        assert os.listdir(root) == []
    else:
        assert set(canonical) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        with cache.exclusive(name):
            pass
        assert sorted(os.listdir(root / "cache" / "locks")) == sorted(
            [".root.gate", f"{canonical}.lock", f"{canonical}.gate"]
        )
