"""Sphinx configuration for the pkgcache documentation."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

import pkgcache

project = "pkgcache"
author = "The pkgcache developers"
copyright = "2026, the pkgcache developers"
release = pkgcache.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
# deflist: the command and fixture lists are "term / : definition" lists.
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
# Types in the signatures, where methods have no ``self``: in the
# descriptions, the annotation of ``self`` in the store's methods showed.
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Every reference to a pkgcache name must resolve: a private class in a
# signature or a base list has no target, and fails the build (-W). Without
# intersphinx (the build works offline), other projects' names cannot
# resolve, and are let be; so is ``EntryKind``, the Literal of Entry.kind.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!pkgcache\b).*|EntryKind")]

html_theme = "furo"
html_title = f"pkgcache {release}"

# What the API reference must show beyond ``pkgcache.__all__`` (members a
# class inherits from a private base, once missing).
REQUIRED_MEMBERS = ("Cache.clean", "Cache.prune", "Cache.info", "Cache.holders")
# Pages whose definition lists must render as such (MyST deflist).
DEFINITION_LISTS = ("cli", "pytest-plugin")


def _public_bases(
    app: Sphinx, name: str, obj: Any, options: Any, bases: list[type]
) -> None:
    """Drop bases that live in private modules (the store's method mixins)."""
    bases[:] = [base for base in bases if not base.__module__.startswith("pkgcache._")]


def _check_pages(app: Sphinx, exception: Exception | None) -> None:
    """Fail the build on an incomplete API page, private names, flat lists."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    api = (outdir / "api.html").read_text(encoding="utf-8")
    names = [name for name in pkgcache.__all__ if not name.startswith("_")]
    wanted = [f"pkgcache.{name}" for name in (*names, *REQUIRED_MEMBERS)]
    missing = [name for name in wanted if f'id="{name}"' not in api]
    # Signatures as shown: a private name there (a default's repr, a type)
    # is no cross-reference, so nitpicky mode does not see it.
    signatures = " ".join(
        html.unescape(re.sub(r"<[^>]+>", "", signature))
        for signature in re.findall(r'<dt class="sig sig-object py".*?</dt>', api, re.S)
    )
    private = sorted(
        set(re.findall(r"(?<![\w.])_[A-Za-z]\w*|pkgcache\._\w+", signatures))
    )
    flat = [
        page
        for page in DEFINITION_LISTS
        if not re.search(
            r'<dl class="[^"]*myst', (outdir / f"{page}.html").read_text("utf-8")
        )
    ]
    # A warning fails the build under -W, as CI runs it.
    log = logging.getLogger("pkgcache-docs")
    if missing:
        log.warning("api.md does not document %s", ", ".join(missing))
    if private:
        log.warning("private names in API signatures: %s", ", ".join(private))
    if flat:
        log.warning("definition lists render as plain text in %s", ", ".join(flat))


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("build-finished", _check_pages)
