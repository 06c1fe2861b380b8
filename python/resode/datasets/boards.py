"""Checkerboards: :func:`chess` (2 x 2) and :func:`chess3` (3 x 3, resode's board or leia's)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .._validation import int_at_least
from ._common import SeedLike, _check_style, _class_counts, _finish

__all__ = ["chess", "chess3"]

# Geometry of the checkerboards: the square [-_HALF, _HALF]^2, with bands of half-width
# _GAP removed around the internal cell boundaries.
_HALF = 1.4
_GAP = 0.1

# style="leia": the laws of leia's data/dataloaders.py (github.com/borjanG/leia).
# Chess3's nine cells (x1, y1, x2, y2, label) in leia's order, each drawn by
# random_point_in_square(x1, y1, x2, y2) (x ~ U[x1, x2], y ~ U[y1, y2]); leia's MSE target -1 is
# label 0, +1 is label 1. Copied as leia has them, including the middle-left cell's right edge
# at x = -0.35 where the other cells of that column stop at -0.37.
_LEIA_CHESS3_CELLS = (
    (-0.9, -0.9, -0.37, -0.37, 0),
    (-0.28, -0.9, 0.28, -0.37, 1),
    (0.37, -0.9, 0.9, -0.37, 0),
    (-0.9, -0.28, -0.35, 0.28, 1),
    (-0.28, -0.28, 0.28, 0.28, 0),
    (0.37, -0.28, 0.9, 0.28, 1),
    (-0.9, 0.37, -0.37, 0.9, 0),
    (-0.28, 0.37, 0.28, 0.9, 1),
    (0.37, 0.37, 0.9, 0.9, 0),
)


def _sample_rects(
    rng: np.random.Generator, rects: Sequence[tuple[float, float, float, float]], m: int
) -> NDArray[np.float64]:
    """``m`` points uniform (in area) in a union of disjoint rectangles ``(x0, x1, y0, y1)``."""
    r = np.asarray(rects, dtype=np.float64)
    area = (r[:, 1] - r[:, 0]) * (r[:, 3] - r[:, 2])
    which = rng.choice(len(r), size=m, p=area / area.sum())
    u = rng.random((m, 2))
    x = r[which, 0] + u[:, 0] * (r[which, 1] - r[which, 0])
    y = r[which, 2] + u[:, 1] * (r[which, 3] - r[which, 2])
    return np.stack([x, y], axis=1)


def _checkerboard_intervals(k: int) -> list[tuple[float, float]]:
    """Per-axis cell intervals of a ``k x k`` board on ``[-_HALF, _HALF]`` minus gap bands."""
    width = 2.0 * _HALF / k
    intervals = []
    for i in range(k):
        lo = -_HALF + i * width + (_GAP if i > 0 else 0.0)
        hi = -_HALF + (i + 1) * width - (_GAP if i < k - 1 else 0.0)
        intervals.append((lo, hi))
    return intervals


def _checkerboard(n: int, k: int, seed: SeedLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``k x k`` checkerboard, label ``(i + j) % 2`` for cell ``(i, j)``, balanced classes."""
    n = int_at_least("n", n, 1)
    rng = np.random.default_rng(seed)
    intervals = _checkerboard_intervals(k)
    rects: list[list[tuple[float, float, float, float]]] = [[], []]
    for i, (x0, x1) in enumerate(intervals):
        for j, (y0, y1) in enumerate(intervals):
            rects[(i + j) % 2].append((x0, x1, y0, y1))
    counts = _class_counts(n, 2)
    parts = [_sample_rects(rng, rects[c], counts[c]) for c in range(2)]
    return _finish(rng, parts)


def _chess3_leia(n: int, seed: SeedLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """leia's Chess3: ``n // 9`` points uniform in each of its nine cells (the remainder to the
    last cells in leia's order), labelled by the cell."""
    n = int_at_least("n", n, 1)
    rng = np.random.default_rng(seed)
    parts: list[list[NDArray[np.float64]]] = [[], []]
    for (x1, y1, x2, y2, label), m in zip(_LEIA_CHESS3_CELLS, _class_counts(n, 9)):
        parts[label].append(_sample_rects(rng, [(x1, x2, y1, y2)], m))
    return _finish(rng, [np.concatenate(p) for p in parts])


def chess(n: int, seed: SeedLike = None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """2 x 2 checkerboard on ``[-1.4, 1.4]^2`` with a gap around the axes.

    Points are uniform in the square minus the bands ``|x| < 0.1`` and ``|y| < 0.1``;
    the label is ``(x > 0) XOR (y > 0)``. Each class is sampled directly (uniform in
    its two quadrants), which has the same distribution as rejection sampling but gives
    exactly balanced classes: ``n // 2`` points of class 0, the rest class 1.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 2)
        C-contiguous sample coordinates.
    y : numpy.ndarray of int64, shape (n,)
        Labels in ``{0, 1}``.

    Raises
    ------
    ValueError
        On ``n < 1``.

    Examples
    --------
    >>> X, y = chess(400, seed=1)
    >>> bool(((X[:, 0] > 0) ^ (X[:, 1] > 0) == y).all())
    True
    """
    return _checkerboard(n, 2, seed)


def chess3(
    n: int, seed: SeedLike = None, *, style: str = "resode"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """3 x 3 checkerboard with gaps around the internal cell boundaries.

    Style "resode": the board ``[-1.4, 1.4]^2``, cells of width ``2.8 / 3``; bands of
    half-width 0.1 around the internal cell boundaries ``x, y = +-1.4 / 3`` are empty. Cell
    ``(i, j)`` (``i`` along x, ``j`` along y, counted from the lower-left corner) has label
    ``(i + j) % 2``. Each class is uniform over its own cells (five cells for class 0, four
    for class 1) and classes are exactly balanced: ``n // 2`` points of class 0, the rest
    class 1.

    Style "leia": leia's ``Chess3`` (``data/dataloaders.py``, class ``Chess3``, each point
    drawn by ``random_point_in_square``). The board is ``[-0.9, 0.9]^2`` and the cells are
    ``[-0.9, -0.37]``, ``[-0.28, 0.28]`` and ``[0.37, 0.9]`` along each axis (gaps of 0.09,
    the open bands ``-0.37 < t < -0.28`` and ``0.28 < t < 0.37``), except that leia's
    middle-left cell reaches ``x = -0.35`` (``[-0.9, -0.35] x [-0.28, 0.28]``; kept as leia
    has it). Every cell gets ``n // 9`` points uniform in the cell (leia drops the remainder,
    ``Chess3(n)`` has ``9 * (n // 9)`` points; here it goes to the last cells in leia's order),
    so class 0 holds about 5/9 of the points. The label is ``(i + j) % 2`` as above: leia's MSE
    target -1 (corners and centre) is label 0, +1 is label 1. No noise, as in leia.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.
    style : {"resode", "leia"}, default "resode"
        resode's board with balanced classes, or leia's board and law.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 2)
        C-contiguous sample coordinates.
    y : numpy.ndarray of int64, shape (n,)
        Labels in ``{0, 1}``.

    Raises
    ------
    ValueError
        On ``n < 1`` or an unknown ``style``.

    Examples
    --------
    >>> X, y = chess3(300, seed=2)
    >>> X.shape, sorted(set(y.tolist()))
    ((300, 2), [0, 1])
    >>> X, y = chess3(900, seed=2, style="leia")
    >>> bool(abs(X).max() <= 0.9), np.bincount(y).tolist()
    (True, [500, 400])
    """
    if _check_style(style) == "leia":
        return _chess3_leia(n, seed)
    return _checkerboard(n, 3, seed)
