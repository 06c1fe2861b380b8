"""The array types of resode's signatures (aliases for type checkers and readers).

The string choices (fields, methods, activations, ...) are ``Literal`` aliases next to their
tuples in ``resode.models.options``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ArrayLike", "FloatArray", "IntArray"]

FloatArray = npt.NDArray[np.floating[Any]]
"""A NumPy array of float32 or float64 (a model's dtype)."""

IntArray = npt.NDArray[np.int64]
"""A NumPy array of int64 (class labels, per-sample counts)."""

ArrayLike = npt.ArrayLike
"""Anything ``numpy.asarray`` turns into an array of numbers (arrays, nested lists, ...)."""
