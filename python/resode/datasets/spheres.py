"""Concentric data sets: :func:`concentric_spheres` (a ball inside a shell, any dimension) and
:func:`tricolor` (three concentric regions of the plane), in resode's law or leia's."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import SupportsFloat

import numpy as np
from numpy.typing import NDArray

from .._validation import int_at_least
from ._common import SeedLike, _check_noise, _check_style, _class_counts, _finish

__all__ = ["concentric_spheres", "tricolor"]

# Tricolor: radii of the three concentric regions (class 0, 1, 2).
_TRICOLOR_RADII = ((0.0, 0.5), (0.7, 1.0), (1.2, 1.5))

# style="leia": the laws of leia's data/dataloaders.py (github.com/borjanG/leia).
# Tricolor's radii (classes 0, 1, 2), drawn by random_point_in_sphere.
_LEIA_TRICOLOR_RADII = ((0.0, 0.5), (0.75, 1.25), (1.5, 2.0))
# The noise of random_point_in_sphere: one N(0, 0.15) scalar added to every coordinate.
_LEIA_NOISE = 0.15


def _check_radii(name: str, radii: Iterable[SupportsFloat]) -> tuple[float, float]:
    """Return ``radii`` as ``(r_min, r_max)`` with ``0 <= r_min < r_max < inf``."""
    try:
        r_min, r_max = (float(r) for r in radii)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (r_min, r_max), got {radii!r}") from None
    if not (math.isfinite(r_min) and math.isfinite(r_max) and 0.0 <= r_min < r_max):
        raise ValueError(f"{name} must satisfy 0 <= r_min < r_max < inf, got {radii!r}")
    return r_min, r_max


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
    radius = r_min + (r_max - r_min) * rng.random((m, 1)) ** (1.0 / dim)
    points: NDArray[np.float64] = direction / norm * radius
    return points


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
