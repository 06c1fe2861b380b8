"""Splitting a data set: :func:`train_test_split`."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ._common import SeedLike

__all__ = ["train_test_split"]


def train_test_split(
    X: ArrayLike, y: ArrayLike, test_size: float = 0.25, seed: SeedLike = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle and split ``(X, y)`` into a training and a test part.

    The test part has ``ceil(test_size * n)`` samples, clipped to ``[1, n - 1]`` so
    that neither part is empty. Not stratified. Dtypes are preserved; the results are
    new C-contiguous arrays.

    Parameters
    ----------
    X : array_like, shape (n, ...)
        Samples; split along the first axis.
    y : array_like, shape (n, ...)
        Targets, same length as ``X``.
    test_size : float, default 0.25
        Fraction of samples in the test part, ``0 < test_size < 1``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.

    Returns
    -------
    X_train, X_test : numpy.ndarray, shapes (n - n_test, ...) and (n_test, ...)
        The samples of each part, in ``X``'s dtype.
    y_train, y_test : numpy.ndarray, shapes (n - n_test, ...) and (n_test, ...)
        Their targets, in ``y``'s dtype.

    Raises
    ------
    ValueError
        If ``X`` and ``y`` differ in length, have fewer than 2 samples, or
        ``test_size`` is not in ``(0, 1)``.

    Examples
    --------
    >>> from resode.datasets import chess
    >>> X, y = chess(100, seed=0)
    >>> X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, seed=0)
    >>> X_tr.shape, X_te.shape, y_tr.shape, y_te.shape
    ((80, 2), (20, 2), (80,), (20,))
    """
    X_arr = np.asarray(X)
    y_arr = np.asarray(y)
    if X_arr.ndim == 0 or y_arr.ndim == 0:
        raise ValueError("X and y must be arrays with at least one dimension")
    n = X_arr.shape[0]
    if y_arr.shape[0] != n:
        raise ValueError(f"X and y must have the same length, got {n} and {y_arr.shape[0]}")
    if n < 2:
        raise ValueError(f"X must have at least 2 samples to split, got {n}")
    try:
        frac = float(test_size)
    except (TypeError, ValueError):
        raise ValueError(f"test_size must be a number in (0, 1), got {test_size!r}") from None
    if not 0.0 < frac < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    # The small tolerance keeps e.g. 0.07 * 100 = 7.000000000000001 from rounding up to 8.
    n_test = min(max(math.ceil(frac * n - 1e-9), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return (
        np.ascontiguousarray(X_arr[train_idx]),
        np.ascontiguousarray(X_arr[test_idx]),
        np.ascontiguousarray(y_arr[train_idx]),
        np.ascontiguousarray(y_arr[test_idx]),
    )
