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
