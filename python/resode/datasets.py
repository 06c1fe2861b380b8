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

# style="leia": the laws of leia's data/dataloaders.py (github.com/borjanG/leia).
# Tricolor's radii (classes 0, 1, 2), drawn by random_point_in_sphere.
_LEIA_TRICOLOR_RADII = ((0.0, 0.5), (0.75, 1.25), (1.5, 2.0))
# The noise of random_point_in_sphere: one N(0, 0.15) scalar added to every coordinate.
_LEIA_NOISE = 0.15
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


def _noise_for(noise: object, leia: bool) -> float:
    """``noise`` checked; ``None`` is the style's default (leia 0.15, resode 0)."""
    if noise is None:
        return _LEIA_NOISE if leia else 0.0
    return _check_noise(noise)


def _add_noise(
    rng: np.random.Generator,
    data: tuple[NDArray[np.float64], NDArray[np.int64]],
    noise: float,
    leia: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Gaussian noise of standard deviation ``noise``: independent on every coordinate, or
    (leia) one draw per point added to all its coordinates, as leia's random_point_in_sphere
    adds ``Normal(0, scale).sample()``, a scalar. None when 0, so ``noise=0`` draws exactly
    the noiseless data."""
    X, y = data
    if noise > 0.0:
        X += rng.normal(scale=noise, size=(X.shape[0], 1) if leia else X.shape)
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


# --------------------------------------------------------------------------- data sets


def concentric_spheres(
    n: int,
    dim: int = 2,
    inner: tuple[float, float] = (0.0, 0.5),
    outer: tuple[float, float] = (1.0, 1.5),
    seed: SeedLike = None,
    noise: float | None = None,
    *,
    style: str = "resode",
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two concentric classes: a ball (or shell) inside a shell, in ``dim`` dimensions.

    Class 0 is uniform (in volume) in ``inner[0] <= |x| <= inner[1]``, class 1 uniform
    in ``outer[0] <= |x| <= outer[1]``. A point is drawn as a normalised Gaussian
    direction times the radius ``(r_min**dim + u * (r_max**dim - r_min**dim))**(1/dim)``
    with ``u ~ U[0, 1)``. The classic "not linearly separable and not separable by a
    homeomorphism of the plane" data set for neural ODEs.

    ``style="leia"`` draws as leia's ``ConcentricSphere`` (``data/dataloaders.py``, function
    ``random_point_in_sphere``): the radius is ``r_min + (r_max - r_min) * u**(1/dim)``
    (uniform in volume for a ball, ``r_min = 0``, only; in a shell the density of the radius
    is 0 at ``r_min`` and grows outwards), and the noise is one ``N(0, noise)`` number per
    point added to all its coordinates (a shift along ``(1, ..., 1)``), ``noise = 0.15`` by
    default as leia hard-codes it. leia's defaults in ``pickle_dataset.py`` are this
    function's ``inner`` and ``outer``; the class sizes stay balanced here (leia takes
    them as arguments).

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
    noise : float or None, default None
        Standard deviation of Gaussian noise added after sampling: independent on every
        coordinate (style "resode"; default 0, which draws exactly the noiseless data), or
        leia's law above (style "leia"; default 0.15).
    style : {"resode", "leia"}, default "resode"
        resode's radius law and noise, or leia's.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, dim)
        C-contiguous sample coordinates.
    y : numpy.ndarray of int64, shape (n,)
        Labels in ``{0, 1}``.

    Raises
    ------
    ValueError
        On ``n < 1``, ``dim < 1``, ``noise < 0``, an unknown ``style``, or invalid /
        overlapping ``inner`` / ``outer``.

    Examples
    --------
    >>> X, y = concentric_spheres(100, dim=3, seed=0)
    >>> X.shape, int(y.sum())
    ((100, 3), 50)
    """
    n = int_at_least("n", n, 1)
    dim = int_at_least("dim", dim, 1)
    leia = _check_style(style) == "leia"
    noise = _noise_for(noise, leia)
    inner_r = _check_radii("inner", inner)
    outer_r = _check_radii("outer", outer)
    if inner_r[1] > outer_r[0]:
        raise ValueError(
            f"inner and outer must not overlap (need inner[1] <= outer[0]), "
            f"got inner={inner!r}, outer={outer!r}"
        )
    rng = np.random.default_rng(seed)
    counts = _class_counts(n, 2)
    sample = _sample_shell_leia if leia else _sample_shell
    parts = [sample(rng, counts[0], dim, *inner_r), sample(rng, counts[1], dim, *outer_r)]
    return _add_noise(rng, _finish(rng, parts), noise, leia)


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


def tricolor(
    n: int, seed: SeedLike = None, *, noise: float | None = None, style: str = "resode"
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Three concentric classes in the plane.

    Style "resode": class 0 is the disc ``|x| < 0.5``, class 1 the annulus
    ``0.7 <= |x| <= 1.0`` and class 2 the annulus ``1.2 <= |x| <= 1.5``; each uniform in area.
    ``noise`` adds independent Gaussian jitter to every coordinate (default 0).

    Style "leia": leia's ``Tricolor`` (``data/dataloaders.py``, class ``Tricolor``, each
    point drawn by ``random_point_in_sphere(2, r_min, r_max)``): the disc ``|x| <= 0.5`` and
    the annuli ``0.75 <= |x| <= 1.25`` and ``1.5 <= |x| <= 2``, the radius
    ``r = r_min + (r_max - r_min) sqrt(u)`` (uniform in area for the disc; in an annulus the
    density is 0 at the inner radius and grows outwards) times a normalised Gaussian
    direction, plus one ``N(0, noise)`` number per point added to both coordinates (a shift
    along ``(1, 1)``), ``noise = 0.15`` by default as leia hard-codes it.

    Either style: class ``c`` gets ``n // 3`` points plus one if ``c >= 3 - n % 3`` (leia's
    ``Tricolor`` takes the three counts as arguments).

    Parameters
    ----------
    n : int
        Number of samples, ``n >= 1``.
    seed : int, numpy.random.Generator or None
        Seed for :func:`numpy.random.default_rng`; ``None`` gives fresh randomness.
    noise : float or None, default None
        Standard deviation of the noise, ``>= 0``; ``None``: 0 (resode) or 0.15 (leia).
        ``noise=0`` draws exactly the noiseless data.
    style : {"resode", "leia"}, default "resode"
        resode's radii, area law and noise, or leia's.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 2)
        C-contiguous sample coordinates.
    y : numpy.ndarray of int64, shape (n,)
        Labels in ``{0, 1, 2}``.

    Raises
    ------
    ValueError
        On ``n < 1``, ``noise < 0`` or an unknown ``style``.

    Examples
    --------
    >>> X, y = tricolor(300, seed=0)
    >>> np.bincount(y).tolist()
    [100, 100, 100]
    """
    n = int_at_least("n", n, 1)
    leia = _check_style(style) == "leia"
    noise = _noise_for(noise, leia)
    rng = np.random.default_rng(seed)
    counts = _class_counts(n, 3)
    radii = _LEIA_TRICOLOR_RADII if leia else _TRICOLOR_RADII
    sample = _sample_shell_leia if leia else _sample_shell
    parts = [sample(rng, m, 2, *r) for m, r in zip(counts, radii)]
    return _add_noise(rng, _finish(rng, parts), noise, leia)


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
