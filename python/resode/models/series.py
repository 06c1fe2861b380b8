"""The checks of time-series inputs (:class:`resode.NeuralCDE`, :func:`resode.cdeint`): the
observations ``U`` ``(N, L, channels)``, their ``times`` and the output times ``t``.

A sample's length ``L_i`` is 1 + the index of its last row with a non-NaN channel; the rows
after it are padding. Inside a sample a NaN is a missing value (filled by the core)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_float_array

__all__ = [
    "add_time_channel",
    "as_series",
    "as_times",
    "as_window",
    "check_paths",
    "default_output_times",
    "observation_window",
    "series_lengths",
]

_FLOAT64 = np.dtype(np.float64)


def as_series(U: Any, channels: int | None, dtype: np.dtype) -> np.ndarray:
    """``U`` as a C-contiguous ``(N, L, channels)`` array of ``dtype`` with ``N, L >= 1``
    (``channels=None``: any number of channels >= 1); NaN entries are kept (missing values)."""
    arr = as_float_array("U", U, dtype)
    expected = "(N, L, channels)" if channels is None else f"(N, L, {channels})"
    if arr.ndim != 3:
        raise ValueError(
            f"U must be 3-D {expected} (samples, observations, channels), got shape {arr.shape}"
        )
    if channels is not None and arr.shape[2] != channels:
        raise ValueError(
            f"U must have {channels} channels (shape {expected}), got shape {arr.shape}"
        )
    if min(arr.shape) < 1:
        raise ValueError(f"U must have non-zero extents {expected}, got shape {arr.shape}")
    return arr


def as_times(times: Any, n: int, length: int) -> np.ndarray:
    """``times`` as float64, ``(L,)`` shared or ``(N, L)`` per sample; None means
    ``0, 1, ..., L-1``. NaN is allowed where the series are padded (checked by
    :func:`check_paths` and the core)."""
    if times is None:
        return np.arange(length, dtype=np.float64)
    arr = as_float_array("times", times, _FLOAT64)
    if arr.shape not in ((length,), (n, length)):
        raise ValueError(
            f"times must have shape ({length},) (shared) or ({n}, {length}) (per sample) to "
            f"match U (N, L, channels) = ({n}, {length}, ...), got shape {arr.shape}"
        )
    return arr


def as_window(window: Any) -> tuple[float, float]:
    """``window`` as ``(t_start, t_end)``: two finite numbers, ``t_start < t_end`` (the
    observation window a neural CDE's pieces split)."""
    try:
        bounds = np.asarray(window, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"window must be (t_start, t_end), two numbers, got {window!r}") from None
    if bounds.shape != (2,) or not np.isfinite(bounds).all() or bounds[0] >= bounds[1]:
        raise ValueError(
            f"window must be (t_start, t_end), finite with t_start < t_end, got {window!r}"
        )
    return float(bounds[0]), float(bounds[1])


def series_lengths(U: np.ndarray) -> np.ndarray:
    """Each sample's length ``L_i`` (int64 ``(N,)``): 1 + its last row with a non-NaN value;
    0 for a sample with none."""
    observed = ~np.isnan(U).all(axis=2)  # (N, L): rows with at least one value
    last = U.shape[1] - np.argmax(observed[:, ::-1], axis=1)
    return np.where(observed.any(axis=1), last, 0).astype(np.int64)


def observation_window(U: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """``(min_i t_{i,0}, max_i T_i)`` of checked series (:func:`check_paths`): the first
    time and the end time ``T_i`` (the time of the last observed row) over the samples."""
    lengths = series_lengths(U)
    grid = np.broadcast_to(times, U.shape[:2])
    ends = grid[np.arange(U.shape[0]), lengths - 1]
    return float(grid[:, 0].min()), float(ends.max())


def check_paths(U: np.ndarray, times: np.ndarray, name: str = "U") -> None:
    """ValueError naming ``U`` or ``times`` unless every sample is a usable path: no Inf, at
    least 2 observed rows, every channel observed at least once, its times finite and strictly
    increasing over its rows ``0 .. L_i - 1``. (The core checks the same, batch by batch;
    :func:`resode.fit` checks the whole set first so that bad data never trains a model part
    of the way.) ``name`` is the argument the messages name (``"u"`` for a neural ODE's
    inputs)."""
    if np.isinf(U).any():
        raise ValueError(f"{name} contains Inf (NaN marks a missing value; Inf is refused)")
    lengths = series_lengths(U)
    short = np.flatnonzero(lengths < 2)
    if short.size:
        i = int(short[0])
        raise ValueError(
            f"{name}: sample {i} has {int(lengths[i])} observed rows; a path needs at least 2"
        )
    unobserved = np.argwhere(np.isnan(U).all(axis=1))  # (sample, channel) never observed
    if unobserved.size:
        i, c = (int(v) for v in unobserved[0])
        raise ValueError(f"{name}: channel {c} of sample {i} has no observation")
    inside = np.arange(U.shape[1]) < lengths[:, None]  # (N, L): the samples' own rows
    grid = np.broadcast_to(times, inside.shape)
    if not np.isfinite(grid[inside]).all():
        raise ValueError(f"times must be finite on every observed row of {name}")
    with np.errstate(invalid="ignore"):  # inf - inf on padded rows: masked out below
        steps = np.diff(grid, axis=1)
    bad = np.argwhere(inside[:, 1:] & ~(steps > 0))
    if bad.size:
        i, k = (int(v) for v in bad[0])
        which = f"times[{k}], times[{k + 1}]" if times.ndim == 1 else f"times[{i}, {k}:{k + 2}]"
        raise ValueError(
            f"times must be strictly increasing over each sample's observed rows; {which} of "
            f"sample {i} are {grid[i, k]!r}, {grid[i, k + 1]!r}"
        )


def default_output_times(U: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The observation times of shared ``times`` up to the longest sample's end: the default
    output times of :meth:`resode.NeuralCDE.trajectory` (ValueError for per-sample times)."""
    if times.ndim != 1:
        raise ValueError(
            "t is required with per-sample times (N, L): give the output times (1-D, sorted, "
            "within [min t_0, max T_i])"
        )
    return np.array(times[: int(series_lengths(U).max())], dtype=np.float64)


def add_time_channel(U: Any, times: Any = None) -> np.ndarray:
    """Return ``U`` with the observation times as a new first channel (torchcde's advice).

    A neural CDE sees the observations only through the increments of its path, so the
    elapsed time enters the model only when it is a channel of the path.

    Parameters
    ----------
    U : array_like, shape (N, L, C)
        The observations; NaN for missing values and for the padding of shorter series.
    times : array_like, shape (L,) or (N, L), optional
        The observation times; default the observation index ``0, 1, ..., L-1``.

    Returns
    -------
    numpy.ndarray, shape (N, L, C + 1), float64
        Channel 0 holds each row's time on the sample's own rows ``0 .. L_i - 1`` and NaN
        on its padding (so padding stays padding); channels ``1..C`` are ``U``.

    Raises
    ------
    ValueError
        If ``U`` is not 3-D or ``times`` does not match it.

    Examples
    --------
    >>> import numpy as np
    >>> U = np.array([[[1.0], [2.0], [np.nan]]])
    >>> add_time_channel(U)[0, :, 0].tolist()
    [0.0, 1.0, nan]
    """
    arr = as_series(U, None, _FLOAT64)
    grid = np.broadcast_to(as_times(times, arr.shape[0], arr.shape[1]), arr.shape[:2])
    inside = np.arange(arr.shape[1]) < series_lengths(arr)[:, None]
    first = np.where(inside, grid, np.nan)[:, :, None]
    return np.ascontiguousarray(np.concatenate([first, arr], axis=2))
