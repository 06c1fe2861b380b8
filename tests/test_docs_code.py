"""Every ```python block of README.md and docs/**/*.md runs as printed.

Each page's blocks run in order in one namespace (a later block may use what an earlier one
defined), in a fresh temporary working directory, so the files they write land there. A block
may be skipped only when it truly cannot run here (it needs a cluster, say): a comment
``<!-- skip-test: REASON -->`` on the line just before its opening fence says so, with the
reason. The blocks are kept small (few samples, few epochs), so this file runs in well under a
minute.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the pages people read; the site's build output and generated folders are not sources
GENERATED = {"_build", "auto_examples", "generated"}
PAGES = sorted(
    [ROOT / "README.md"]
    + [p for p in (ROOT / "docs").rglob("*.md") if not GENERATED & set(p.parts)]
)
# A fence opening a python block, with the line before it (a skip marker, or anything else).
_FENCE = re.compile(r"^(?P<before>[^\n]*)\n```python\n(?P<code>.*?)^```\s*$", re.M | re.S)
_SKIP = re.compile(r"^<!-- skip-test: (?P<reason>\S.*?) -->$")
# What each optional dependency is imported as (a page that needs one skips without it).
_OPTIONAL = ("torch", "jax", "dask", "distributed", "sklearn", "matplotlib", "dask_jobqueue")


@dataclass(frozen=True)
class Block:
    """One ```python block of a page: its code, first line number and skip reason (if any)."""

    code: str
    line: int
    skip: str | None


def blocks(text: str) -> list[Block]:
    """The python blocks of a Markdown page, in order."""
    found = []
    for match in _FENCE.finditer("\n" + text):
        before = match.group("before").splitlines()[-1:] or [""]
        skip = _SKIP.match(before[0].strip())
        line = ("\n" + text)[: match.start("code")].count("\n")
        found.append(Block(match.group("code"), line, skip.group("reason") if skip else None))
    return found


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


PAGES_WITH_CODE = [p for p in PAGES if blocks(p.read_text(encoding="utf-8"))]


def test_the_pages_have_code_and_the_extractor_finds_it() -> None:
    # the pattern finds what it should: the README and the guide show code
    names = {_rel(p) for p in PAGES_WITH_CODE}
    assert {"README.md", "docs/getting_started.md", "docs/guide/models.md"} <= names, names
    sample = "text\n<!-- skip-test: needs a cluster -->\n```python\nx = 1\n```\n"
    sample += "\n```python\ny\n```\n"
    first, second = blocks(sample)
    assert (first.code, first.skip, first.line) == ("x = 1\n", "needs a cluster", 4)
    assert (second.code, second.skip) == ("y\n", None)


def test_skip_markers_are_few_and_give_a_reason() -> None:
    # skipping is the exception: every marker names why, and most blocks run
    every = [b for p in PAGES for b in blocks(p.read_text(encoding="utf-8"))]
    skipped = [b for b in every if b.skip]
    assert len(skipped) <= 3, [b.code[:60] for b in skipped]
    assert len(every) >= 15


@pytest.fixture
def scratch(tmp_path: Path) -> object:
    """A temporary working directory, restored afterwards (the blocks write files there), and
    torch's thread count restored (a page sets it; conftest restores resode's)."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads or os.cpu_count() or 1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor and dask
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[_rel(p) for p in PAGES_WITH_CODE])
def test_page_code_runs(page: Path, scratch: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no window: the blocks only save figures
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks(page.read_text(encoding="utf-8")):
        if block.skip:
            continue
        for module in _OPTIONAL:
            if re.search(rf"^\s*(import|from) {module}\b", block.code, flags=re.M):
                pytest.importorskip(module)
        code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        exec(code, namespace)


# {func}`resode.fit`, {class}`text <resode.NeuralODE>`: MyST roles naming Python objects
_PY_ROLE = re.compile(r"\{(?:func|class|mod|meth|attr|exc|data)\}`(?:[^`<]*<)?~?([\w.]+)>?`")


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` names an importable module or an attribute chain below one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:]:
                target = getattr(target, name)
        except AttributeError:
            return False
        return True
    return False


def test_every_python_role_of_the_pages_names_an_existing_object() -> None:
    # the site's build fails on such a reference too; this finds it without Sphinx
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    named = {m for p in PAGES for m in _PY_ROLE.findall(p.read_text(encoding="utf-8"))}
    assert {"resode.fit", "resode.NeuralODE", "resode.optim.Adam"} <= named
    missing = sorted(name for name in named if not _resolves(name))
    assert not missing, missing
    assert not _resolves("resode.no_such_function")


# The site's code column shows 72 characters at 1280 px (pydata-sphinx-theme); longer lines
# are cut and need a scroll bar. ruff leaves these pages' code as written (fmt: off), so this
# test keeps it within the column. The README (GitHub's wider column) and program output
# (```text) are exempt. Getting started and the user guide only: the home page and the
# references are the site's own.
SITE_COLUMNS = 72
GUIDE = ROOT / "docs" / "guide"
GUIDE_PAGES = [ROOT / "docs" / "getting_started.md", *sorted(GUIDE.glob("*.md"))]


def test_the_code_of_the_site_pages_fits_their_column() -> None:
    too_long = [
        f"{_rel(page)}: {line}"
        for page in GUIDE_PAGES
        for lang, body in re.findall(
            r"^```(\w+)\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.S | re.M
        )
        if lang != "text"
        for line in body.splitlines()
        if len(line) > SITE_COLUMNS
    ]
    assert not too_long, too_long
