"""Sphinx configuration: MyST Markdown pages, furo theme, autodoc with numpydoc docstrings."""

import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "aiida-cgcnn"
author = "aiida-cgcnn developers"
copyright = "aiida-cgcnn developers"
release = _version("aiida-cgcnn")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "clihelp",  # docs/_ext/clihelp.py: `--help` text generated from the command line itself
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# MyST: $...$ and $$...$$ maths, ::: fences, definition lists, heading anchors for [](#links)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# numpydoc-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"aiida-cgcnn {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]  # wide tables fit the column (see the file)

# torch has no intersphinx inventory here: its types in annotations cannot resolve, wherever autodoc puts them
nitpick_ignore_regex = [("py:class", r"torch\..*")]
