"""What the data set generators share: the seed type, the styles, argument checks, the class
sizes and the final stacking and shuffling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import numpy as np
from numpy.typing import NDArray

__all__ = ["STYLES", "SeedLike"]

SeedLike = Union[int, np.random.SeedSequence, np.random.Generator, None]
"""Anything accepted by :func:`numpy.random.default_rng` (``None`` = fresh entropy)."""

STYLES = ("resode", "leia")


def _check_noise(noise: object) -> float:
    """Return ``noise`` as a finite float >= 0 or raise ``ValueError``."""
    try:
        value = float(noise)  # type: ignore[arg-type]  # any object: TypeError caught below
    except (TypeError, ValueError):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}") from None
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return value


def _check_style(style: object) -> str:
    if style not in STYLES:
        raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
    return str(style)


def _class_counts(n: int, classes: int) -> list[int]:
    """Split ``n`` into ``classes`` counts; the remainder goes to the last classes."""
    base, rem = divmod(n, classes)
    return [base + (1 if c >= classes - rem else 0) for c in range(classes)]


def _finish(
    rng: np.random.Generator, parts: Sequence[NDArray[np.float64]]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Stack per-class samples, label them 0, 1, ... and shuffle."""
    X = np.concatenate(parts, axis=0)
    y = np.concatenate([np.full(len(p), c, dtype=np.int64) for c, p in enumerate(parts)])
    perm = rng.permutation(len(X))
    return np.ascontiguousarray(X[perm], dtype=np.float64), np.ascontiguousarray(y[perm])
