"""Package names: validation and canonical form.

A package name reaches the file system only as ``<canonical name>.lock`` (and
as a folder name in the store). Canonical names (PEP 503, via
:func:`packaging.utils.canonicalize_name`) consist of ``a-z``, ``0-9`` and
single ``-`` characters, so once a string has passed :func:`canonical_name` it
cannot name a parent folder, an absolute path, a hidden file or an option.
"""

from __future__ import annotations

import re
import sys

from packaging.utils import NormalizedName, canonicalize_name

from ._errors import InvalidPackageName

__all__ = ["canonical_name", "canonical_names"]

# PEP 508 project names: ASCII letters and digits, with ".", "-" and "_"
# allowed inside (never at either end).
_VALID_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")

# Lock files are "<name>.lock": keep the whole file name well under the
# 255-byte limit of common file systems.
MAX_NAME_LENGTH = 200

# Device names Windows reserves in every folder, with any extension.
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)


def canonical_name(name: str) -> NormalizedName:
    """Return the canonical form of a project name, or raise.

    ``Setuptools_SCM``, ``setuptools.scm`` and ``setuptools-scm`` all give
    ``setuptools-scm``, and so share one lock and one store folder.

    Raises:
        InvalidPackageName: ``name`` is not a ``str`` or not a valid project
            name (empty, ``..``, a path, a NUL byte, leading ``-``, too long).
    """
    if not isinstance(name, str):
        raise InvalidPackageName(name, f"expected a str, got {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidPackageName(name, f"longer than {MAX_NAME_LENGTH} characters")
    if not _VALID_NAME.match(name):
        raise InvalidPackageName(
            name,
            "a project name is ASCII letters and digits, with '.', '-' or '_' "
            "between them (PEP 508)",
        )
    canonical = canonicalize_name(name)
    if sys.platform == "win32" and canonical in _WINDOWS_RESERVED:
        raise InvalidPackageName(name, "reserved device name on Windows")
    return canonical


def canonical_names(names: tuple[str, ...]) -> tuple[NormalizedName, ...]:
    """Validate and canonicalize several names; return them sorted, deduplicated.

    The sorted order is the global lock order between packages.
    """
    return tuple(sorted({canonical_name(name) for name in names}))
