"""fit's ``record`` option: the final states of a fixed subset of the training points."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models import Model, NeuralODE

__all__ = ["FeatureRecorder"]


class FeatureRecorder:
    """fit's record option: the final states of a fixed subset of the training points."""

    def __init__(self, model: Model, X: np.ndarray, y: np.ndarray, every: int) -> None:
        self.model, self.X, self.every = model, X, every
        self.features: dict[str, Any] = {"epoch": [], "states": [], "X": X, "y": y}

    @classmethod
    def create(
        cls, model: Model, X: np.ndarray, y: np.ndarray, record: Any, every: Any, seed: int
    ) -> FeatureRecorder | None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"record_every must be an integer >= 1, got {every!r}")
        if record is None:
            return None
        if model.kind == "cde":
            raise ValueError(
                "record applies to the models of points (ResNet, NeuralODE), not to a NeuralCDE"
            )
        if isinstance(model, NeuralODE) and model.inputs > 0:
            raise ValueError("record applies to the models without inputs, not to inputs > 0")
        n = X.shape[0]
        if isinstance(record, (int, np.integer)) and not isinstance(record, bool):
            if not 1 <= record <= n:
                raise ValueError(f"record must be in [1, {n}] (points of X), got {record}")
            rows = np.sort(np.random.default_rng(seed).permutation(n)[: int(record)])
        else:
            rows = np.asarray(record)
            if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu":
                raise ValueError("record must be an int or a non-empty sequence of row indices")
            if rows.min() < 0 or rows.max() >= n:
                raise ValueError(f"record indices must be in [0, {n})")
        return cls(model, X[rows], y[rows], int(every))

    def take(self, epoch: int) -> None:
        self.features["epoch"].append(epoch)
        self.features["states"].append(np.asarray(self.model.trajectory(self.X)[-1]))
