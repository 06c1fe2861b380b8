"""Toy data sets for ResNet / neural-ODE experiments, and :func:`load` for users' own files.

Every generator is pure NumPy and seeded through :func:`numpy.random.default_rng`:
``seed=None`` gives fresh randomness, the same integer seed gives bitwise identical
data. Each generator returns ``(X, y)`` where ``X`` is a C-contiguous ``float64``
array of shape ``(n, dim)`` and ``y`` an ``int64`` array of shape ``(n,)`` with labels
``0 .. classes - 1``. The samples are shuffled, and the classes are balanced: each class
gets ``n // classes`` points and the remainder goes to the highest-numbered classes
(for two classes: one extra point for class 1).

Examples
--------
>>> from resode import datasets
>>> X, y = datasets.moons(200, noise=0.05, seed=0)
>>> X.shape, X.dtype, y.dtype
((200, 2), dtype('float64'), dtype('int64'))
>>> X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, seed=0)
>>> len(X_train), len(X_test)
(150, 50)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import int_at_least
from .data_files import load

__all__ = [
    "DATASETS",
    "STYLES",
    "SeedLike",
    "chess",
    "chess3",
    "concentric_spheres",
    "digits",
    "load",
    "moons",
    "sine",
    "spirals",
    "train_test_split",
    "tricolor",
]

SeedLike = Union[int, np.random.SeedSequence, np.random.Generator, None]
"""Anything accepted by :func:`numpy.random.default_rng` (``None`` = fresh entropy)."""

# Geometry of the checkerboards: the square [-_HALF, _HALF]^2, with bands of half-width
# _GAP removed around the internal cell boundaries.
_HALF = 1.4
_GAP = 0.1

# Spirals: angle range (radians) and the radius reached at the largest angle.
_SPIRAL_THETA_MIN = 0.5 * math.pi
_SPIRAL_THETA_MAX = 3.0 * math.pi
_SPIRAL_R_MAX = 1.5

# Tricolor: radii of the three concentric regions (class 0, 1, 2).
_TRICOLOR_RADII = ((0.0, 0.5), (0.7, 1.0), (1.2, 1.5))
# leia's Tricolor (style="leia"): its radii, and its radius law r_min + (r_max - r_min) u^(1/dim).
_LEIA_TRICOLOR_RADII = ((0.0, 0.5), (0.75, 1.25), (1.5, 2.0))

STYLES = ("resode", "leia")


# --------------------------------------------------------------------------- helpers


def _check_noise(noise: object) -> float:
    """Return ``noise`` as a finite float >= 0 or raise ``ValueError``."""
    try:
        value = float(noise)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}") from None
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return value


def _check_radii(name: str, radii: object) -> tuple[float, float]:
    """Return ``radii`` as ``(r_min, r_max)`` with ``0 <= r_min < r_max < inf``."""
    try:
        r_min, r_max = (float(r) for r in radii)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (r_min, r_max), got {radii!r}") from None
    if not (math.isfinite(r_min) and math.isfinite(r_max) and 0.0 <= r_min < r_max):
        raise ValueError(f"{name} must satisfy 0 <= r_min < r_max < inf, got {radii!r}")
    return r_min, r_max


def _check_style(style: object) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    return str(style)


def _add_noise(
    rng: np.random.Generator, data: tuple[NDArray[np.float64], NDArray[np.int64]], noise: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Gaussian noise of standard deviation ``noise`` on every coordinate (none when 0, so
    ``noise=0`` draws exactly the data of earlier versions)."""
    X, y = data
    if noise > 0.0:
        X += rng.normal(scale=noise, size=X.shape)
    return X, y


def _class_counts(n: int, classes: int) -> list[int]:
    """Split ``n`` into ``classes`` counts; the remainder goes to the last classes."""
    base, rem = divmod(n, classes)
    return [base + (1 if c >= classes - rem else 0) for c in range(classes)]


def _sample_shell(
    rng: np.random.Generator, m: int, dim: int, r_min: float, r_max: float
) -> NDArray[np.float64]:
    """``m`` points uniform (in volume) in the shell ``r_min <= |x| <= r_max`` of R^dim."""
    direction = rng.standard_normal((m, dim))
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    # A zero Gaussian vector has probability zero; guard anyway against division by zero.
    norm[norm == 0.0] = 1.0
    direction /= norm
    u = rng.random((m, 1))
    radius = (r_min**dim + u * (r_max**dim - r_min**dim)) ** (1.0 / dim)
    return direction * radius


def _sample_shell_leia(
    rng: np.random.Generator, m: int, dim: int, r_min: float, r_max: float
) -> NDArray[np.float64]:
    """leia's law: radius ``r_min + (r_max - r_min) u^(1/dim)``: uniform in volume for a ball
    (``r_min = 0``) only; in a shell the density of r is 0 at r_min and grows outwards."""
    direction = rng.standard_normal((m, dim))
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    norm[norm == 0.0] = 1.0
    return direction / norm * (r_min + (r_max - r_min) * rng.random((m, 1)) ** (1.0 / dim))


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


def _finish(
    rng: np.random.Generator, parts: Sequence[NDArray[np.float64]]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Stack per-class samples, label them 0, 1, ... and shuffle."""
    X = np.concatenate(parts, axis=0)
    y = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in enumerate(parts)])
    perm = rng.permutation(len(X))
    return np.ascontiguousarray(X[perm], dtype=np.float64), np.ascontiguousarray(y[perm])


def _checkerboard_intervals(k: int) -> list[tuple[float, float]]:
    """Per-axis cell intervals of a ``k x k`` board on ``[-_HALF, _HALF]`` minus gap bands."""
    width = 2.0 * _HALF / k
    intervals = []
    for i in range(k):
        lo = -_HALF + i * width + (_GAP if i > 0 else 0.0)
        hi = -_HALF + (i + 1) * width - (_GAP if i < k - 1 else 0.0)
        intervals.append((lo, hi))
    return intervals


def _checkerboard(
    n: int, k: int, seed: SeedLike, style: str = "resode"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``k x k`` checkerboard, label ``(i + j) % 2`` for cell ``(i, j)``: balanced classes, or
    (style "leia") the same number of points in every cell."""
    n = int_at_least("n", n, 1)
    rng = np.random.default_rng(seed)
    intervals = _checkerboard_intervals(k)
    rects: list[list[tuple[float, float, float, float]]] = [[], []]
    for i, (x0, x1) in enumerate(intervals):
        for j, (y0, y1) in enumerate(intervals):
            rects[(i + j) % 2].append((x0, x1, y0, y1))
    if _check_style(style) == "leia":
        cells = [(c, rect) for c in range(2) for rect in rects[c]]
        per_cell = [
            _sample_rects(rng, [rect], m) for (_, rect), m in zip(cells, _class_counts(n, k * k))
        ]
        parts = [
            np.concatenate([p for (c, _), p in zip(cells, per_cell) if c == cls])
            for cls in range(2)
        ]
        return _finish(rng, parts)
    counts = _class_counts(n, 2)
    parts = [_sample_rects(rng, rects[c], counts[c]) for c in range(2)]
    return _finish(rng, parts)


# --------------------------------------------------------------------------- data sets


def concentric_spheres(
    n: int,
    dim: int = 2,
    inner: tuple[float, float] = (0.0, 0.5),
    outer: tuple[float, float] = (1.0, 1.5),
    seed: SeedLike = None,
    noise: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two concentric classes: a ball (or shell) inside a shell, in ``dim`` dimensions.

    Class 0 is uniform (in volume) in ``inner[0] <= |x| <= inner[1]``, class 1 uniform
    in ``outer[0] <= |x| <= outer[1]``. A point is drawn as a normalised Gaussian
    direction times the radius ``(r_min**dim + u * (r_max**dim - r_min**dim))**(1/dim)``
    with ``u ~ U[0, 1)``. The classic "not linearly separable and not separable by a
    homeomorphism of the plane" data set for neural ODEs.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``; ``n // 2`` are class 0, the rest class 1.
    dim : int, default 2
        Dimension of the ambient space, ``dim >= 1``.
    inner, outer : tuple of float
        ``(r_min, r_max)`` of each class, ``0 <= r_min < r_max``, and the inner region
        must lie inside the outer one (``inner[1] <= outer[0]``).
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.
    noise : float, default 0.0
        Standard deviation of Gaussian noise added to every coordinate after sampling (leia
        uses 0.15); 0 draws exactly the noiseless data.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, dim)
        C-contiguous sample coordinates.
    y : numpy.ndarray of int64, shape (n,)
        Labels in ``{0, 1}``.

    Raises
    ------
    ValueError
        On ``n < 1``, ``dim < 1``, ``noise < 0``, or invalid / overlapping ``inner`` /
        ``outer``.

    Examples
    --------
    >>> X, y = concentric_spheres(100, dim=3, seed=0)
    >>> X.shape, int(y.sum())
    ((100, 3), 50)
    """
    n = int_at_least("n", n, 1)
    dim = int_at_least("dim", dim, 1)
    noise = _check_noise(noise)
    inner_r = _check_radii("inner", inner)
    outer_r = _check_radii("outer", outer)
    if inner_r[1] > outer_r[0]:
        raise ValueError(
            f"inner and outer must not overlap (need inner[1] <= outer[0]), "
            f"got inner={inner!r}, outer={outer!r}"
        )
    rng = np.random.default_rng(seed)
    counts = _class_counts(n, 2)
    parts = [
        _sample_shell(rng, counts[0], dim, *inner_r),
        _sample_shell(rng, counts[1], dim, *outer_r),
    ]
    return _add_noise(rng, _finish(rng, parts), noise)


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
    """3 x 3 checkerboard on ``[-1.4, 1.4]^2`` with gaps around the internal boundaries.

    Cells have width ``2.8 / 3``; bands of half-width 0.1 around the internal cell
    boundaries ``x, y = +-1.4 / 3`` are empty. Cell ``(i, j)`` (``i`` along x, ``j``
    along y, counted from the lower-left corner) has label ``(i + j) % 2``. Each class is
    uniform over its own cells (five cells for class 0, four for class 1) and classes
    are exactly balanced: ``n // 2`` points of class 0, the rest class 1.

    ``style="leia"`` follows the sampling law of leia's ``Chess`` data set (which is 2 x 2:
    ``n // 4`` points uniform in each cell, the cells ``[0.1, 1.4]`` away from the axes) on
    the same 3 x 3 board: every cell gets ``n // 9`` points (the remainder to the last
    cells), so class 0 holds about 5/9 of the points.

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.
    style : {"resode", "leia"}, default "resode"
        Balanced classes, or the same number of points per cell.

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
    >>> X, y = chess3(300, seed=2)
    >>> X.shape, sorted(set(y.tolist()))
    ((300, 2), [0, 1])
    """
    return _checkerboard(n, 3, seed, style)


def tricolor(
    n: int, seed: SeedLike = None, *, noise: float = 0.0, style: str = "resode"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Three concentric classes in the plane.

    Class 0 is the disc ``|x| < 0.5``, class 1 the annulus ``0.7 <= |x| <= 1.0`` and
    class 2 the annulus ``1.2 <= |x| <= 1.5``; each uniform in area. Class ``c`` gets
    ``n // 3`` points plus one if ``c >= 3 - n % 3``.

    ``style="leia"`` draws leia's ``Tricolor``: the disc ``|x| <= 0.5`` and the annuli
    ``0.75 <= |x| <= 1.25`` and ``1.5 <= |x| <= 2``, with leia's radius law
    ``r = r_min + (r_max - r_min) sqrt(u)`` (uniform in area for the disc; in an annulus the
    density is 0 at the inner radius and grows outwards).

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.
    noise : float, default 0.0
        Standard deviation of Gaussian noise added to every coordinate (leia uses 0.15).
    style : {"resode", "leia"}, default "resode"
        resode's radii and area law, or leia's.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 2)
        C-contiguous sample coordinates.
    y : numpy.ndarray of int64, shape (n,)
        Labels in ``{0, 1, 2}``.

    Raises
    ------
    ValueError
        On ``n < 1``.

    Examples
    --------
    >>> X, y = tricolor(300, seed=0)
    >>> np.bincount(y).tolist()
    [100, 100, 100]
    """
    n = int_at_least("n", n, 1)
    noise = _check_noise(noise)
    leia = _check_style(style) == "leia"
    rng = np.random.default_rng(seed)
    counts = _class_counts(n, 3)
    radii = _LEIA_TRICOLOR_RADII if leia else _TRICOLOR_RADII
    sample = _sample_shell_leia if leia else _sample_shell
    parts = [sample(rng, m, 2, *r) for m, r in zip(counts, radii)]
    return _add_noise(rng, _finish(rng, parts), noise)


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


def digits(seed: SeedLike = None) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """scikit-learn's bundled 8 x 8 handwritten digits, scaled to ``[0, 1]``.

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
    >>> X, y = digits()  # doctest: +SKIP
    >>> X.shape, int(y.max())  # doctest: +SKIP
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

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 1)
    y : numpy.ndarray of float64, shape (n,)

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
    y_train, y_test : numpy.ndarray, shapes (n - n_test, ...) and (n_test, ...)

    Raises
    ------
    ValueError
        If ``X`` and ``y`` differ in length, have fewer than 2 samples, or
        ``test_size`` is not in ``(0, 1)``.

    Examples
    --------
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


DATASETS: dict[str, Callable[..., tuple[NDArray[np.float64], NDArray[np.int64]]]] = {
    "spheres": concentric_spheres,
    "chess": chess,
    "chess3": chess3,
    "tricolor": tricolor,
    "moons": moons,
    "spirals": spirals,
}
"""Name -> generator for the command line; every generator takes ``(n, seed=...)``."""
