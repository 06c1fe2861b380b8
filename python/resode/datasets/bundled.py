"""Data sets that ship with other packages: scikit-learn's :func:`digits`."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ._common import SeedLike

__all__ = ["digits"]


def digits(seed: SeedLike = None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load scikit-learn's bundled 8 x 8 handwritten digits, scaled to ``[0, 1]``.

    Requires scikit-learn (``pip install resode[sklearn]``); the data ships with it,
    nothing is downloaded.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        ``None`` (default): scikit-learn's order. Otherwise the samples are shuffled with
        :func:`numpy.random.default_rng` (same seed, same order), like the other data sets.

    Returns
    -------
    X : numpy.ndarray of float64, shape (1797, 64)
        C-contiguous pixel intensities divided by 16, in ``[0, 1]``.
    y : numpy.ndarray of int64, shape (1797,)
        Labels in ``{0, ..., 9}``.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.

    Examples
    --------
    >>> X, y = digits()
    >>> X.shape, int(y.max())
    ((1797, 64), 9)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "resode.datasets.digits() needs scikit-learn; install it with "
            "`pip install resode[sklearn]` (or `pip install scikit-learn`)"
        ) from exc
    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(y))
        X, y = X[order], y[order]
    return np.ascontiguousarray(X), np.ascontiguousarray(y)
