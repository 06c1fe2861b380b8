"""Every script in examples/ runs to the end (each well under 30 s), in a scratch folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "resnet_step_by_step.py",
        "seed_turnpike.py",
        "regression_csv.py",
        "sklearn_grid_search.py",
        "leia_chess3.py",
    }


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    if script.stem == "sklearn_grid_search":
        pytest.importorskip("sklearn")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,  # generous: CI also runs them under AddressSanitizer
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "an example prints what it did"
