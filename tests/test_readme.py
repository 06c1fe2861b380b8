"""The README's interop examples run as printed (section "Using resode from PyTorch and JAX")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor
def test_interop_examples_run() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    pytest.importorskip("sklearn")
    blocks = _blocks("Using resode from PyTorch and JAX")
    assert len(blocks) == 2
    for code in blocks:
        namespace: dict[str, object] = {}
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["batched"].shape == (10, 10, 3)  # type: ignore[attr-defined]


ROOT = README.parent
# Paths of the repository as the README names them (``examples/x.py``, ``docs/images/y.png``, ...).
_REPO_PATH = re.compile(r"\b(?:examples|docs|benchmarks|tests|cpp|python|src)/[\w./-]*\w")


def test_every_repository_path_the_readme_names_exists() -> None:
    named = set(_REPO_PATH.findall(README.read_text(encoding="utf-8")))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README.md names files that do not exist: {missing}"
    assert "examples/resnet_step_by_step.py" in named  # the pattern finds what it should


def test_license_file_is_the_bsd_3_clause_license_pyproject_declares() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib before 3.11
    declared = re.search(r"^license = (.*)$", pyproject, flags=re.M)
    assert declared and declared.group(1) in ('{ text = "BSD-3-Clause" }', '"BSD-3-Clause"')
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the resode developers" in text
    assert "Neither the name of the copyright holder" in text  # the third clause
