"""Argument checks at the Python boundary: every array is converted once, here, to a
C-contiguous array of the model's dtype; every error names the argument and what was expected.
Shapes of parameters and finiteness are checked again by the compiled core."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from typing import TypeGuard

    from ._typing import FloatArray

__all__ = [
    "as_features",
    "as_float_array",
    "as_labels",
    "check_choice",
    "check_int",
    "check_positive",
    "int_at_least",
    "resolve_dtype",
]


def resolve_dtype(dtype: Any) -> np.dtype[np.floating[Any]]:
    """np.float32 or np.float64 for `dtype` (a name or a NumPy dtype); ValueError otherwise."""
    try:
        dt: np.dtype[Any] = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


_Choice = TypeVar("_Choice", bound=str)


def check_choice(name: str, value: object, choices: Sequence[_Choice]) -> _Choice:
    """Return `value` if it is one of `choices`; ValueError naming the argument otherwise."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")
    return cast(_Choice, value)  # `value in choices`: one of the Literal's strings


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return `value` as an int >= minimum; TypeError for non-integers, ValueError if too small."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def int_at_least(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an ``int >= minimum``; ``ValueError`` naming ``name`` otherwise
    (non-integers included: the data-set and optimiser arguments' convention)."""
    try:
        # any object: operator.index raises the TypeError caught below
        ivalue = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        ivalue = None
    if ivalue is None or ivalue < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return ivalue


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return `value` as a finite float > 0 (>= 0 with allow_zero)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return v


def _is_ready(value: object, dtype: np.dtype[Any]) -> TypeGuard[FloatArray]:
    """Already a C-contiguous ndarray of exactly `dtype` (nothing to convert or check)."""
    return type(value) is np.ndarray and value.dtype == dtype and value.flags.c_contiguous


def _as_real_array(name: str, value: Any) -> np.ndarray[Any, np.dtype[Any]]:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be a rectangular array of numbers: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _convert(
    name: str, arr: np.ndarray[Any, np.dtype[Any]], dtype: np.dtype[np.floating[Any]]
) -> FloatArray:
    """C-contiguous `arr` in `dtype`; finite values beyond the range of `dtype` (float64 data
    for a float32 model) are refused instead of silently becoming Inf."""
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= dtype.itemsize:
        return np.ascontiguousarray(arr, dtype=dtype)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=dtype)
    if np.isinf(out).any() and not np.isinf(arr[np.isinf(out)]).all():
        limit = np.finfo(dtype).max
        raise ValueError(f"{name} has values beyond the {dtype} range (|x| <= {limit:.3g})")
    return out


def as_float_array(
    name: str, value: Any, dtype: np.dtype[np.floating[Any]], ndim: int | None = None
) -> FloatArray:
    """Convert to a C-contiguous array of `dtype` (no copy if it already is one).

    Refuses complex, object and string data with a TypeError (nothing is truncated silently).
    """
    if _is_ready(value, dtype) and (ndim is None or value.ndim == ndim):
        return value  # the common case, a training loop's own arrays: no conversion to do
    arr = _as_real_array(name, value)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return _convert(name, arr, dtype)


def as_features(X: Any, dim: int, dtype: np.dtype[np.floating[Any]]) -> FloatArray:
    """`X` as a C-contiguous (N, dim) array of `dtype`, N >= 1 (the core checks finiteness)."""
    if _is_ready(X, dtype) and X.ndim == 2 and X.shape[1] == dim and X.shape[0] >= 1:
        return X
    arr = _as_real_array("X", X)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"X must have shape (N, {dim}), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"X must have shape (N, {dim}) with N >= 1, got shape {arr.shape}")
    return _convert("X", arr, dtype)


def as_labels(
    y: Any, n: int, classes: int, *, core_checks_range: bool = False
) -> npt.NDArray[np.int64]:
    """Integer class labels (n,) in [0, classes) as int64; integral floats are accepted.

    With ``core_checks_range`` (the labels go straight to ``_core``, which checks every label
    before any work and names the first bad one), signed-integer labels skip the range check
    here: it is two reductions, measurable on a 2-sample call.
    """
    arr = _as_real_array("y", y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) to match X, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or np.any(arr != np.round(arr)):
            raise ValueError("y must hold integer class labels, got non-integer values")
    # check the range on the values as given, before any cast (no wrap-around, no warning)
    checked_later = core_checks_range and arr.dtype.kind == "i"
    if arr.size and not checked_later and (arr.min() < 0 or arr.max() >= classes):
        bad = arr[(arr < 0) | (arr >= classes)][0]
        shown = int(bad) if arr.dtype.kind in "iu" else bad
        raise ValueError(f"y must hold labels in [0, {classes}), got {shown}")
    labels = arr.astype(np.int64, copy=False)
    return labels
