"""Entry keys, and what an entry's file name says about it.

A key is a relative POSIX path inside a package's folder of the store
(``"setuptools_scm-8.2.0-py3-none-any.whl"``, ``"cuda/build"``). It is
validated before it touches the file system, so a key can never name a
parent folder, an absolute path, or one of the store's own files (whose
names start with ``.``).
"""

from __future__ import annotations

import functools
import os
import re
from typing import NamedTuple

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from ._errors import InvalidArtifact, InvalidKey
from ._records import EntryKind

__all__ = [
    "MAX_KEY_LENGTH",
    "ArtifactName",
    "artifact_name",
    "check_artifact",
    "key_parts",
]

#: Longest key, in bytes of its file-system (UTF-8) form; one component is at
#: most ``MAX_COMPONENT`` bytes. Counted in bytes, not characters: a
#: 200-character key of ``é`` is 400 bytes, past the 255-byte name limit of
#: common file systems, and once failed with ``ENAMETOOLONG`` deep inside.
MAX_KEY_LENGTH = 1000
MAX_COMPONENT = 200

# NUL and the other C0 control characters, DEL, and the backslash (a path
# separator on Windows, so "a\\..\\b" must not pass as one component).
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")

_SDIST_SUFFIXES = (".tar.gz", ".zip")


def key_parts(key: object) -> tuple[str, ...]:
    """Validate ``key`` and return its components.

    Raises:
        InvalidKey: not a ``str``; empty; absolute; a ``..``, ``.`` or empty
            component; a component starting with ``.`` (reserved for the
            store's own files); a NUL, control character or backslash; not
            encodable as a file name; longer than ``MAX_KEY_LENGTH`` bytes, or
            a component longer than ``MAX_COMPONENT`` bytes (UTF-8).
    """
    if not isinstance(key, str):
        raise InvalidKey(key, f"expected a str, got {type(key).__name__}")
    if not key:
        raise InvalidKey(key, "empty")
    try:
        size = len(os.fsencode(key))
    except UnicodeEncodeError:
        raise InvalidKey(key, "not encodable as a file name") from None
    if size > MAX_KEY_LENGTH:
        raise InvalidKey(key, f"longer than {MAX_KEY_LENGTH} bytes (UTF-8)")
    if _FORBIDDEN.search(key):
        raise InvalidKey(key, "contains a NUL, control character or backslash")
    if key.startswith("/"):
        raise InvalidKey(key, "an absolute path; keys are relative")
    parts = tuple(key.split("/"))
    for part in parts:
        if not part:
            raise InvalidKey(key, "an empty path component ('//' or a trailing '/')")
        if part in (".", ".."):
            raise InvalidKey(key, f"a {part!r} component")
        if part.startswith("."):
            raise InvalidKey(key, "a component starts with '.' (reserved for pkgcache)")
        if len(os.fsencode(part)) > MAX_COMPONENT:
            raise InvalidKey(
                key, f"a component is longer than {MAX_COMPONENT} bytes (UTF-8)"
            )
    return parts


class ArtifactName(NamedTuple):
    """What a file name says: kind, version, build tag, wheel tags.

    A named tuple, so a listing can unpack it without attribute lookups.
    """

    kind: EntryKind
    version: Version | None = None
    build_tag: tuple[int, str] | tuple[()] = ()
    tags: frozenset[Tag] = frozenset()


_FILE = ArtifactName("file")


@functools.lru_cache(maxsize=65536)
def artifact_name(package: NormalizedName, filename: str) -> ArtifactName:
    """Classify a stored file name of ``package`` (never raises).

    A name that parses as a wheel or sdist of ``package`` is one; anything
    else (including a planted file) is a plain ``"file"``.
    """
    try:
        if filename.endswith(".whl"):
            name, version, build, tags = parse_wheel_filename(filename)
            if name == package:
                return ArtifactName("wheel", version, build, tags)
        elif filename.endswith(_SDIST_SUFFIXES):
            name, version = parse_sdist_filename(filename)
            if name == package:
                return ArtifactName("sdist", version)
    except (InvalidWheelFilename, InvalidSdistFilename):
        pass
    return _FILE


def check_artifact(package: NormalizedName, filename: str) -> ArtifactName:
    """Classify a file name about to be stored; refuse a misnamed artifact.

    A ``.whl`` must parse as a wheel of ``package``; a ``.tar.gz`` or
    ``.zip`` as an sdist of ``package``. Other names are plain files.

    Raises:
        InvalidArtifact: the name does not parse, or names another package.
    """
    if filename.endswith(".whl"):
        what, parse = "a wheel", parse_wheel_filename
    elif filename.endswith(_SDIST_SUFFIXES):
        what, parse = "an sdist", parse_sdist_filename  # type: ignore[assignment]
    else:
        return _FILE
    try:
        name = parse(filename)[0]
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise InvalidArtifact(f"{filename!r} is not {what} file name: {exc}") from exc
    if name != package:
        raise InvalidArtifact(
            f"{filename!r} is {what} of {name!r}, not of {package!r}; store it "
            f"under its own package"
        )
    return artifact_name(package, filename)
