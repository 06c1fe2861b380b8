r"""The paths of the NumPy references (test oracle): the observations of a time series as a
piecewise linear or cubic path, shared by the neural CDE's (``reference_cde``, which reads
the path's derivative) and the input-driven neural ODE's (``reference_driven``, its value).

``U`` (N, L, C) at ``times`` (L,) or (N, L). Sample i's length ``L_i`` is 1 + the index of
its last row with a non-NaN channel (later rows are padding). In rows ``0..L_i-1`` a NaN of
channel c is filled linearly in time between that channel's nearest observations, with the
first (last) observed value before (after) them, as torchcde. The filled ``x_k = M^c u`` is
linear in ``U`` and ``M^c`` has zero columns at NaNs, so ``dU = M^T xbar`` is 0 there.

With slopes ``delta_k = (x_{k+1} - x_k) / dt_k`` and ``theta = (tau - t_k) / dt_k`` on
``[t_k, t_{k+1}]``, ``linear`` is the chord, ``cubic`` torchcde's Hermite cubic with backward
differences (end derivatives ``m_k = delta_{k-1}``, ``m_0 = delta_0``, ``m_{k+1} = delta_k``)::

    linear  X = x_k + dt_k theta delta_k                    dX/dt = delta_k
    cubic   X = x_k + dt_k ((theta - B) m_k + B delta_k)    dX/dt = (1 - w) m_k + w delta_k

with ``B = 2 theta^2 - theta^3`` and ``w = dB/dtheta = 4 theta - 3 theta^2``. Both are
weighted sums of the slopes: the functions below return the weights ``(j, w_j)``, which the
backward passes reuse to send a cotangent of ``X`` or ``dX/dt`` to the slopes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

Weights = list[tuple[int, float]]  # (slope index j, weight w_j): sum_j w_j slopes[j]


class Path(NamedTuple):
    """One sample's path: knots (L_i,) float64, fill matrices (C, L_i, L_i), values x
    (L_i, C) and slopes (L_i - 1, C) in the working dtype."""

    t: np.ndarray
    fill: np.ndarray
    x: np.ndarray
    slopes: np.ndarray


def observed_lengths(U: np.ndarray) -> np.ndarray:
    """``L_i`` = 1 + index of the last row with a non-NaN channel, (N,) ints."""
    observed = (~np.isnan(U)).any(axis=2)
    if not observed.any(axis=1).all():
        raise ValueError("U: every sample needs at least one observed (non-NaN) row")
    lengths: np.ndarray = U.shape[1] - np.argmax(observed[:, ::-1], axis=1)
    if (lengths < 2).any():
        raise ValueError("U: every sample needs at least 2 observed rows (L_i >= 2)")
    return lengths


def sample_knots(times: np.ndarray, i: int, n: int) -> np.ndarray:
    """Sample i's knots: the first ``n`` of its ``times`` ((L,) or (N, L) float64), checked
    finite and strictly increasing."""
    knots: np.ndarray = (times[i] if times.ndim == 2 else times)[:n]
    if not np.isfinite(knots).all() or (np.diff(knots) <= 0).any():
        raise ValueError("times must be finite and strictly increasing over observed rows")
    return knots


def fill_matrix(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(L, L) matrix M of one channel u (L,): the filled values are ``M @ nan_to_num(u)``."""
    obs = np.flatnonzero(~np.isnan(u))
    if obs.size == 0:
        raise ValueError("U: a channel of a sample has no observed value")
    M = np.zeros((u.size, u.size))
    for k in range(u.size):
        j = int(np.searchsorted(obs, k))  # obs[j-1] < k <= obs[j]
        if j < obs.size and obs[j] == k:
            M[k, k] = 1.0
        elif j == 0 or j == obs.size:  # before the first / after the last observation
            M[k, obs[min(j, obs.size - 1)]] = 1.0
        else:
            p, q = obs[j - 1], obs[j]
            ratio = (t[k] - t[p]) / (t[q] - t[p])
            M[k, p], M[k, q] = 1.0 - ratio, ratio
    return M


def sample_path(u: np.ndarray, t: np.ndarray) -> Path:
    """The path of one sample's observed rows u (L_i, C) at knots t (L_i,) float64."""
    fill = np.stack([fill_matrix(u[:, c], t) for c in range(u.shape[1])])
    x = np.einsum("ckj,jc->kc", fill.astype(u.dtype), np.nan_to_num(u))
    dt = np.diff(t).astype(u.dtype)[:, None]
    return Path(t, fill, x, (x[1:] - x[:-1]) / dt)


def slope_weights(path: Path, interval: int, time: float, interpolation: str) -> Weights:
    """``dX/dt(time) = sum w_j slopes[j]`` on ``interval``: the list of ``(j, w_j)``."""
    if interpolation == "linear" or interval == 0:
        return [(interval, 1.0)]  # cubic on the first interval: m_0 = delta_0
    dt = float(path.t[interval + 1] - path.t[interval])
    theta = (time - float(path.t[interval])) / dt
    w = 4 * theta - 3 * theta * theta
    return [(interval - 1, 1.0 - w), (interval, w)]


def value_weights(path: Path, interval: int, time: float, interpolation: str) -> Weights:
    """``X(time) = x[base_row] + sum w_j slopes[j]`` on ``interval``; no weights outside the
    window (``interval`` -1 before it, ``L_i - 1`` after it: base 0, ``L_i - 1``)."""
    if interval < 0 or interval >= path.t.size - 1:
        return []
    dt = float(path.t[interval + 1] - path.t[interval])
    theta = (time - float(path.t[interval])) / dt
    if interpolation == "linear" or interval == 0:
        return [(interval, dt * theta)]
    B = 2 * theta * theta - theta**3
    return [(interval - 1, dt * (theta - B)), (interval, dt * B)]


def base_row(path: Path, interval: int) -> int:
    """The row of ``x`` that :func:`value_weights` adds to: ``interval`` clipped to the
    knots (the path is constant outside its window)."""
    return max(0, min(interval, path.t.size - 1))


def path_value(path: Path, interval: int, time: float, interpolation: str) -> np.ndarray:
    """``X(time)`` (C,) in the working dtype, ``time`` on ``interval`` (or outside)."""
    u = path.x[base_row(path, interval)].copy()
    for j, w in value_weights(path, interval, time, interpolation):
        u = u + path.x.dtype.type(w) * path.slopes[j]
    out: np.ndarray = u
    return out
