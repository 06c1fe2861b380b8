"""Sphinx configuration of resode's documentation site.

Build it (docs/README.md) from the repository root, warnings as errors:

    pip install ".[docs]"
    python -m sphinx -n -W --keep-going -b html docs docs/_build/html

The pages are Markdown (MyST) except the API reference (reStructuredText: autosummary tables
whose per-name pages are generated into docs/api/generated/); the command-line reference is
generated from resode's own parser (docs/_ext/resode_cli_docs.py) and the gallery from
examples/ by sphinx-gallery (docs/_ext/resode_gallery.py: its file scraper and arguments).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the docs extra needs Sphinx >= 8.1, itself Python >= 3.10
    import tomli as tomllib

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
# a checkout whose compiled core was copied into python/resode (the developers' guide) builds
# its own sources; an installed resode is used otherwise
if any((ROOT / "python" / "resode").glob("_core*.so")):
    sys.path.insert(0, str(ROOT / "python"))

import resode  # noqa: E402

# ---------------------------------------------------------------------------- project

project = "resode"
author = "the resode developers"
copyright = "the resode developers, BSD-3-Clause"
release = resode.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax copied into the site (no CDN): the pages' equations render offline too
    "sphinx-mathjax-offline",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
    "resode_cli_docs",
    "resode_api_coverage",
    "resode_xref",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "README.md",  # how to build the site, for people browsing docs/ (not a page of it)
    "images",  # the README's pictures (docs/make_images.py draws them); pages link them
    "make_images.py",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "sg_execution_times.rst",
]
templates_path = ["_templates"]

# Warnings are errors (-W) and every cross-reference must resolve (-n, nitpicky).
nitpicky = True
# The build runs offline (CI reaches package registries only), so there is no intersphinx: the
# names of Python, NumPy, PyTorch, JAX, matplotlib, Dask and scikit-learn that docstrings and
# signatures mention stay plain text instead of links. resode's own names must all resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|torch|jax|jnp|matplotlib|dask|distributed|sklearn|pandas)(\..*)?"),
    (r"py:.*", r"(os|pathlib|collections\.abc|typing|argparse|dataclasses|enum)\..*"),
    (r"py:class", r"(int|float|str|bool|bytes|dict|list|tuple|set|object|type|None|callable)"),
    (r"py:class", r"(Path|PathLike|Tensor|Array|ArrayLike|NDArray|Generator|Figure|Axes)"),
    (r"py:exc", r"(ValueError|TypeError|KeyError|RuntimeError|ImportError|OSError)"),
    (r"py:exc", r"(FileNotFoundError|FileExistsError|KeyboardInterrupt|ArithmeticError)"),
    (r"py:class", r"(Exception|RuntimeError|ArithmeticError|ValueError|NamedTuple|Protocol)"),
    (r"py:.*", r"(optional|array-like|array_like|sequence|mapping|iterable|default)"),
]

# ---------------------------------------------------------------------------- MyST

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3

# ---------------------------------------------------------------------------- API reference

autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc sections give each type, with shapes and dtypes
autodoc_default_options = {"member-order": "bysource"}
autodoc_member_order = "bysource"
add_module_names = False
# the modules whose public names (__all__) must each have an entry (docs/_ext/resode_api_coverage)
resode_api_modules = [
    "resode",
    "resode.io",
    "resode.training",
    "resode.optim",
    "resode.datasets",
    "resode.plot",
    "resode.sklearn",
    "resode.sweep",
    "resode.torch",
    "resode.jax",
    "resode.reference",
]


def _mock_missing(*modules: str) -> list[str]:
    """The optional frameworks that are not installed: autodoc imports mocks of them, so the
    API pages of resode.torch and resode.jax build without torch or jax (docs extra)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


autodoc_mock_imports = _mock_missing("torch", "jax")


def _skip_member(app: object, what: str, name: str, obj: object, skip: bool, options: object):
    """Leave out scikit-learn's metadata-routing setters (``set_fit_request`` and the like),
    which scikit-learn adds to every estimator class: they are not resode's API."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_member)  # type: ignore[attr-defined]


# A class page documents each public method and property in full (docs/_templates/autosummary/
# class.rst: resode's own members, inherited ones included, not those of torch.nn.Module or
# scikit-learn's BaseEstimator) and the page's table of contents lists them; numpydoc's own
# member tables would repeat that list.
numpydoc_show_class_members = False
numpydoc_attributes_as_param_list = False
numpydoc_xref_param_type = False


def _numpydoc_validation() -> tuple[set[str], set[str]]:
    """The numpydoc checks and exclusions of pyproject.toml's [tool.numpydoc_validation]: its
    ``checks`` list is the one definition (tests/test_docstrings.py reads it too); none when
    the table is absent."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        table = tomllib.load(f).get("tool", {}).get("numpydoc_validation", {})
    return set(table.get("checks", [])), set(table.get("exclude", []))


def _data_names(modules: list[str]) -> set[str]:
    """Patterns of the public constants and type aliases of ``modules``: the docstring numpydoc
    would validate for ``DATASETS`` is that of ``dict`` (tests/test_docstrings.py validates
    functions, classes, methods and properties only)."""
    import inspect

    from resode_api_coverage import public_names

    patterns = set()
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # torch or jax missing: mocked, and it has no constants
            continue
        for name in public_names(module):
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value)):
                patterns.add(rf"^{re.escape(module_name)}\.{re.escape(name)}$")
    return patterns


def _attribute_names(modules: list[str]) -> set[str]:
    """Patterns of the members of public classes other than their methods and properties
    defined in resode (attributes such as ``NeuralODE.rtol``, documented by a ``#:`` comment)."""
    import inspect

    from resode_api_coverage import public_names

    patterns = set()
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in public_names(module):
            cls = getattr(module, name)
            if not inspect.isclass(cls):
                continue
            validated = {
                member
                for klass in cls.__mro__
                if klass.__module__.startswith("resode")
                for member, value in vars(klass).items()
                if isinstance(value, (property, classmethod, staticmethod))
                or inspect.isfunction(value)
            }
            others = rf"(?!(?:{'|'.join(sorted(validated))})$)" if validated else ""
            patterns.add(rf"^{re.escape(module_name)}\.{re.escape(name)}\.{others}[^.]+$")
    return patterns


numpydoc_validation_checks, _excluded = _numpydoc_validation()
# Validated: what tests/test_docstrings.py validates, the functions and classes of the modules
# it lists, with their methods and properties. Not: resode.io and resode.training (documented
# here for their links; outside that list), special members such as ``__call__``, constants and
# attributes.
numpydoc_validation_exclude = (
    _excluded
    | {r"^resode\.(io|training)\.", r"\.__\w+__$"}
    | _data_names(resode_api_modules)
    | _attribute_names(resode_api_modules)
)

# ---------------------------------------------------------------------------- gallery

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r".*\.py",  # execute every script
    "ignore_pattern": r"(__init__|conftest)\.py",
    "image_scrapers": ("matplotlib", "resode_gallery.scrape_files"),
    "reset_argv": "resode_gallery.reset_argv",
    "within_subsection_order": "FileNameSortKey",
    # an example that raises fails the build at its end, after the others ran
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "capture_repr": (),  # what the scripts print, not the Paths that plot functions return
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "thumbnail_size": (320, 224),
    "first_notebook_cell": None,
    "show_signature": False,
}
missing_frameworks = _mock_missing("torch", "jax")
if missing_frameworks:  # such examples are shown with their code but not run (docs extra)
    import resode_gallery

    sphinx_gallery_conf["filename_pattern"] = resode_gallery.runnable_pattern(
        ROOT / "examples", missing_frameworks
    )

# ---------------------------------------------------------------------------- HTML

html_theme = "pydata_sphinx_theme"
html_title = f"resode {release}"
html_static_path = ["_static"]
html_css_files = ["resode.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "collapse_navigation": True,
}
html_sidebars = {"index": [], "cli": [], "getting_started": []}
html_context = {"default_mode": "light"}
