"""The README is the short front door and what it shows holds: its paths exist, its performance
table is the measured one, its links lead to pages of the guide, and the interop examples that
moved to the guide's frameworks page run as printed. (Every ```python block of the README and
of docs/ runs in tests/test_docs_code.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FRAMEWORKS = ROOT / "docs" / "guide" / "frameworks.md"
BENCHMARKS = ROOT / "benchmarks" / "README.md"


def _section(path: Path, title: str) -> str:
    """The text of the section ``## title`` of a Markdown file (up to the next ``## ``)."""
    text = path.read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor
def test_interop_examples_run() -> None:
    # the PyTorch and JAX examples (in the README before, now on the guide's frameworks page)
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    pytest.importorskip("sklearn")
    blocks = [*_python_blocks(_section(FRAMEWORKS, "PyTorch")),
              *_python_blocks(_section(FRAMEWORKS, "JAX"))]  # fmt: skip
    assert len(blocks) == 2
    for code in blocks:
        namespace: dict[str, object] = {}
        exec(compile(code, str(FRAMEWORKS), "exec"), namespace)
    assert namespace["batched"].shape == (10, 10, 3)  # type: ignore[attr-defined]


def test_the_readme_is_a_short_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    headings = re.findall(r"^## (.*)$", text, flags=re.M)
    for needed in ("How fast", "Quick start", "In Python", "What it does", "Citation", "License"):
        assert needed in headings, (needed, headings)
    quick = _section(README, "Quick start")  # the two commands
    assert 'pip install ".[plot,test]" && resode demo' in quick
    assert "python -m pytest" in quick
    assert len(_python_blocks(text)) == 1  # one short example; the guide has the rest


ROOT_PATHS = re.compile(r"\b(?:examples|docs|benchmarks|tests|cpp|python|src)/[\w./-]*\w")


def test_every_repository_path_the_readme_names_exists() -> None:
    named = set(ROOT_PATHS.findall(README.read_text(encoding="utf-8")))
    named -= {"docs/_build/html"}  # the site's output folder, made by the build command
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"
    assert "docs/guide/models.md" in named  # the pattern finds what it should


def test_the_readme_links_into_every_page_of_the_guide() -> None:
    links = set(re.findall(r"\]\((docs/[^)#]+\.md)\)", README.read_text(encoding="utf-8")))
    guide = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs" / "guide").glob("*.md")}
    assert guide - {"docs/guide/index.md"} <= links, sorted(guide - links)
    assert "docs/getting_started.md" in links


def test_the_performance_table_is_the_measured_one() -> None:
    # every resode figure of the README's table is in benchmarks/README.md, and the table
    # names its machine, date and command
    section = _section(README, "How fast")
    assert "2026-12-04" in section and "AVX2" in section and "benchmarks/test_peers.py" in section
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    resode_ms = [cells[1].strip() for cells in rows[1:]]  # the header row first
    assert len(resode_ms) == 5, rows
    measured = BENCHMARKS.read_text(encoding="utf-8")
    for figure in resode_ms:
        assert re.search(rf"\| {re.escape(figure)} \|", measured), figure


def test_license_file_is_the_bsd_3_clause_license_pyproject_declares() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib before 3.11
    declared = re.search(r"^license = (.*)$", pyproject, flags=re.M)
    assert declared and declared.group(1) in ('{ text = "BSD-3-Clause" }', '"BSD-3-Clause"')
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the resode developers" in text
    assert "Neither the name of the copyright holder" in text  # the third clause
    assert "BSD 3-Clause" in _section(README, "License")
