"""Data sets along curves: :func:`moons` and :func:`spirals` (two classes in the plane) and
:func:`sine` (a 1-D regression problem)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .._validation import int_at_least
from ._common import SeedLike, _check_noise, _class_counts, _finish

__all__ = ["moons", "sine", "spirals"]


# Spirals: angle range (radians) and the radius reached at the largest angle.
_SPIRAL_THETA_MIN = 0.5 * math.pi
_SPIRAL_THETA_MAX = 3.0 * math.pi
_SPIRAL_R_MAX = 1.5


def moons(
    n: int, noise: float = 0.1, seed: SeedLike = None
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two interleaving half circles (same formula as scikit-learn's ``make_moons``).

    Class 0 (``n // 2`` points) lies on ``(cos t, sin t)``, class 1 (the rest) on
    ``(1 - cos t, 0.5 - sin t)``, with ``t`` evenly spaced in ``[0, pi]``; independent
    Gaussian noise of standard deviation ``noise`` is added to every coordinate.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``.
    noise : float, default 0.1
        Standard deviation of the Gaussian noise, ``noise >= 0``.
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
        On ``n < 1`` or ``noise < 0``.

    Examples
    --------
    >>> X, y = moons(100, noise=0.0, seed=0)
    >>> bool(np.allclose(np.hypot(*X[y == 0].T), 1.0))
    True
    """
    n = int_at_least("n", n, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    n0, n1 = _class_counts(n, 2)
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n1)
    parts = [
        np.stack([np.cos(t0), np.sin(t0)], axis=1),
        np.stack([1.0 - np.cos(t1), 1.0 - np.sin(t1) - 0.5], axis=1),
    ]
    X, y = _finish(rng, parts)
    if noise > 0.0:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


def spirals(
    n: int, noise: float = 0.1, seed: SeedLike = None
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two interleaved Archimedean spirals.

    Class 0 is ``r(theta) * (cos theta, sin theta)`` with ``r = 1.5 * theta / (3 pi)``
    and ``theta`` in ``[pi/2, 3 pi]`` (1.25 turns, radius 0.25 .. 1.5); class 1 is the
    same curve rotated by ``pi``. ``theta`` is drawn as
    ``sqrt(theta_min**2 + u * (theta_max**2 - theta_min**2))`` so the density along the
    curve is roughly uniform in arc length. Adjacent arms of the two classes are 0.5
    apart. Independent Gaussian noise of standard deviation ``noise`` is added.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``; ``n // 2`` are class 0, the rest class 1.
    noise : float, default 0.1
        Standard deviation of the Gaussian noise, ``noise >= 0``.
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
        On ``n < 1`` or ``noise < 0``.

    Examples
    --------
    >>> X, y = spirals(500, noise=0.0, seed=0)
    >>> r = np.hypot(X[:, 0], X[:, 1])
    >>> bool((r >= 0.25 - 1e-12).all() and (r <= 1.5 + 1e-12).all())
    True
    """
    n = int_at_least("n", n, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    parts = []
    for c, m in enumerate(_class_counts(n, 2)):
        u = rng.random(m)
        theta = np.sqrt(_SPIRAL_THETA_MIN**2 + u * (_SPIRAL_THETA_MAX**2 - _SPIRAL_THETA_MIN**2))
        r = _SPIRAL_R_MAX * theta / _SPIRAL_THETA_MAX
        phase = theta + c * np.pi
        parts.append(np.stack([r * np.cos(phase), r * np.sin(phase)], axis=1))
    X, y = _finish(rng, parts)
    if noise > 0.0:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


def sine(
    n: int, noise: float = 0.0, seed: SeedLike = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A 1-D regression problem: ``y = sin(x) + noise * N(0, 1)``, ``x`` uniform in ``[-pi, pi]``.

    Parameters
    ----------
    n : int
        Number of samples, >= 1.
    noise : float, default 0.0
        Standard deviation of the Gaussian noise added to ``y``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 1)
        The inputs ``x``, uniform in ``[-pi, pi]``.
    y : numpy.ndarray of float64, shape (n,)
        The targets ``sin(x)`` plus noise.

    Examples
    --------
    >>> X, y = sine(100, seed=0)
    >>> X.shape, y.shape, bool(abs(y - np.sin(X[:, 0])).max() == 0)
    ((100, 1), (100,), True)
    """
    n = int_at_least("n", n, 1)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-math.pi, math.pi, size=(n, 1))
    y = np.sin(X[:, 0]) + (noise * rng.standard_normal(n) if noise > 0 else 0.0)
    return np.ascontiguousarray(X), np.ascontiguousarray(y, dtype=np.float64)
