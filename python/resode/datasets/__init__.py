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

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ..data_files import load
from ._common import STYLES, SeedLike
from .boards import chess, chess3
from .bundled import digits
from .curves import moons, sine, spirals
from .spheres import concentric_spheres, tricolor
from .split import train_test_split

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


DATASETS: dict[str, Callable[..., tuple[NDArray[np.float64], NDArray[np.int64]]]] = {
    "spheres": concentric_spheres,
    "chess": chess,
    "chess3": chess3,
    "tricolor": tricolor,
    "moons": moons,
    "spirals": spirals,
}
"""Name -> generator for the command line; every generator takes ``(n, seed=...)``."""
