"""scikit-learn's early stopping for the estimators: the checks of its parameters and the
callback that keeps the best epoch's parameters."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["BestWeights", "check_early_stopping"]


class BestWeights:
    """Callback: scikit-learn's early stopping (``MLPRegressor(early_stopping=True)``).

    ``score(logs, model)`` is the estimator's score on the held-out validation split after
    each epoch. An epoch whose score is not above the best so far plus ``tol`` counts as no
    improvement; training stops when more than ``n_iter_no_change`` epochs in a row did not
    improve, as in scikit-learn. The parameters of the best-scoring epoch are kept and
    :meth:`restore` puts them back.
    """

    def __init__(
        self,
        score: Callable[[Mapping[str, float], Any], float],
        n_iter_no_change: int,
        tol: float,
    ) -> None:
        self.score, self.n_iter_no_change, self.tol = score, n_iter_no_change, tol
        self.scores: list[float] = []
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self.best_params: dict[str, np.ndarray] | None = None
        self.no_improvement = 0

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float], model: Any) -> bool:
        score = float(self.score(logs, model))
        self.scores.append(score)
        if score < self.best_score + self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_params = {k: np.array(v, copy=True) for k, v in model.params.items()}
        return self.no_improvement > self.n_iter_no_change

    def restore(self, model: Any) -> None:
        """Put the best epoch's parameters back into ``model`` (in place)."""
        if self.best_params is not None:
            for name, value in self.best_params.items():
                np.copyto(model.params[name], value)


def check_early_stopping(est: Any) -> None:
    """One-line errors that name the estimator's parameters."""
    if not isinstance(est.early_stopping, (bool, np.bool_)):
        raise TypeError(f"early_stopping must be True or False, got {est.early_stopping!r}")
    if not est.early_stopping:
        return
    vf = est.validation_fraction
    if not isinstance(vf, Real) or not 0.0 < float(vf) < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {vf!r}")
    n = est.n_iter_no_change
    if isinstance(n, bool) or not isinstance(n, Integral) or int(n) < 1:
        raise ValueError(f"n_iter_no_change must be an integer >= 1, got {n!r}")
    if not isinstance(est.tol, Real) or not float(est.tol) >= 0.0:
        raise ValueError(f"tol must be >= 0, got {est.tol!r}")
