"""Sphinx configuration for the pkgcache documentation."""

from __future__ import annotations

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
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# No intersphinx: the build must work without network access.
nitpicky = False

html_theme = "furo"
html_title = f"pkgcache {release}"
