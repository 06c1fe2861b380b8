"""pyproject.toml's extras: ``all`` is every feature extra at once."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - a dependency below 3.11
    import tomli as tomllib

_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_all_extra_is_every_feature_extra() -> None:
    extras = tomllib.loads(_PYPROJECT.read_text())["project"]["optional-dependencies"]
    features = ("torch", "jax", "sweep", "plot", "sklearn")
    union = {requirement for name in features for requirement in extras[name]}
    assert set(extras["all"]) == union
    # test, docs, progress and timeseries are not features: test and docs are for contributors,
    # progress a no-op alias, timeseries the comparisons' torchcde and aeon's data sets
    assert set(extras) == {*features, "all", "test", "docs", "progress", "timeseries"}
