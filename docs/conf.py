# SPDX-License-Identifier: MIT
"""Sphinx configuration: ``make docs`` builds docs/_build/html with warnings as errors."""

from __future__ import annotations

import pylibssh_server

project = "pylibssh_server"
author = "pylibssh_server developers"
copyright = "pylibssh_server developers"
release = version = pylibssh_server.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
# The README, included piece by piece in the guide, links to repository files.
suppress_warnings = ["myst.xref_missing"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"pylibssh_server {release}"
