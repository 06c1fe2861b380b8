"""The scores of a model's predictions that :class:`resode.models.Model` and the training loop
share: R^2 (per output column, averaged) and the sign agreement of a +-1 classifier."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["is_sign_target", "r2_from_sums", "r2_score", "sign_agreement", "target_spread"]


def r2_score(y: np.ndarray, z: np.ndarray) -> float:
    """Coefficient of determination of predictions ``z`` for targets ``y``, both ``(N, C)``:
    ``1 - SS_res / SS_tot`` per column, averaged over the columns (a constant column counts
    1 when predicted exactly and 0 otherwise, as scikit-learn's ``r2_score``)."""
    y64, z64 = np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
    ss_res = np.sum((y64 - z64) ** 2, axis=0)
    return r2_from_sums(ss_res, target_spread(y64))


def target_spread(y: np.ndarray) -> npt.NDArray[np.float64]:
    """``SS_tot = sum_i (y_ij - mean_j)^2`` per column ``j`` of targets ``y`` ``(N, C)``, in
    float64 (two passes: no cancellation)."""
    y64 = np.asarray(y, dtype=np.float64)
    spread: npt.NDArray[np.float64] = np.sum((y64 - y64.mean(axis=0)) ** 2, axis=0)
    return spread


def r2_from_sums(ss_res: np.ndarray, ss_tot: np.ndarray) -> float:
    """``1 - SS_res / SS_tot`` per column, averaged over the columns, from the squared errors
    and the targets' spread (:func:`target_spread`); a constant column counts 1 when predicted
    exactly and 0 otherwise, as scikit-learn's ``r2_score``."""
    ss_res, ss_tot = np.asarray(ss_res, dtype=np.float64), np.asarray(ss_tot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(r2))


def sign_agreement(y: np.ndarray, z: np.ndarray) -> float:
    """The fraction of samples whose output ``z > 0`` exactly when their target ``y`` is +1
    (``y`` in {-1, +1}), both ``(N, 1)`` or ``(N,)``: the accuracy of a +-1 classifier."""
    return float(np.mean((np.ravel(z) > 0) == (np.ravel(y) > 0)))


def is_sign_target(y: Any) -> bool:
    """Whether every entry of ``y`` is -1 or +1 (and there is one)."""
    values = np.asarray(y)
    return bool(values.size and values.dtype.kind in "iuf" and np.isin(values, (-1, 1)).all())
