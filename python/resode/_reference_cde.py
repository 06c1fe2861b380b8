r"""Plain NumPy reference of the neural controlled differential equation (test oracle): one
sample at a time, row vectors, a hand-written backward pass; fixed steps (see reference_cde).

Paths (``_reference_paths``, shared with ``_reference_driven``): sample i's rows
``0..L_i-1`` with NaNs filled linearly in time, ``linear`` or ``cubic`` (torchcde's Hermite
cubic with backward differences, its ``b = m_k``, ``2c = 4 (delta_k - m_k) / dt_k``,
``3d = 3 (m_k - delta_k) / dt_k^2``). The field reads ``dX/dt``, a weighted sum of the slopes
``delta_k``.

Model. ``z(t_0) = A x_0 + a``, ``dz/dt = G_k(z) dX/dt``, ``G_k(z) = reshape(F_k(z), (S, C))``
(row ``d*C + c``), ``rho`` the ``output_activation`` (identity if None)::

    outside     rho(sigma(W[k] z + b[k]))                 W (K, S*C, S), b (K, S*C)
    inside      rho(W[k] sigma(z) + b[k])                 W (K, S*C, S), b (K, S*C)
    bottleneck  rho(W2[k] sigma(W1[k] z + b1[k]) + b2[k]) W1 (K, H, S), W2 (K, S*C, H)

The K pieces split the window (``window``, default ``[min_i t_{i,0}, max_i T_i]``) equally;
a time before (after) it takes the first (last) piece. Sample i's breakpoints are its
knots, and the piece boundaries and (with ``t``) output times strictly inside
``(t_{i,0}, T_i)``; ``substeps`` equal steps per interval between them. A step on
``[tau, tau + h]`` takes the piece and the path interval containing ``tau + h/2``; stage j
evaluates ``dX/dt`` on that interval at ``tau + c_j h``, ``c_j = sum_l a_jl``.

Gradient: the exact VJP of this discrete map. A step's stages ``Y_i = z + h sum_l a_il K_l``,
``K_i = G(Y_i) v_i`` (``v_i = dX/dt``) are reversed as::

    Kbar_i = h b_i zbar + sum_{m>i} h a_mi Ybar_m,   zbar <- zbar + sum_i Ybar_i
    Fbar_i = Kbar_i (x) v_i,   Ybar_i = J_i^T Fbar_i,   vbar_i = G(Y_i)^T Kbar_i

and ``vbar_i`` flows back through the slopes and the fill to ``U``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._reference_paths import (
    Path,
    Weights,
    observed_lengths,
    sample_knots,
    sample_path,
    slope_weights,
)
from .models.options import INTERPOLATIONS

ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
FIELDS: tuple[str, ...] = ("outside", "inside", "bottleneck")
LOSSES: tuple[str, ...] = ("cross_entropy", "mse")
METHODS: tuple[str, ...] = ("euler", "midpoint", "rk4")

Params = dict[str, np.ndarray]
Tableau = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]
Cache = tuple[np.ndarray, ...]
Stage = tuple[Cache, np.ndarray, np.ndarray, Weights]  # cache, G, v, slope weights

_LEAKY_SLOPE = 0.01
_FIELD_KEYS: dict[str, tuple[str, ...]] = {"outside": ("W", "b"), "inside": ("W", "b")}
_FIELD_KEYS["bottleneck"] = ("W1", "b1", "W2", "b2")
# rows of the strictly lower-triangular A (row i has i entries), weights b
_TABLEAUX: dict[str, Tableau] = {
    "euler": (((),), (1.0,)),
    "midpoint": (((), (0.5,)), (0.0, 1.0)),
    "rk4": (((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 2 / 6, 2 / 6, 1 / 6)),
}


class _Options(NamedTuple):
    field: str
    act: str
    rho: str  # output activation; "identity" for None
    interpolation: str
    tableau: Tableau
    substeps: int
    window: tuple[float, float] | None = None  # the pieces' window; None: the observations'


class _Step(NamedTuple):
    tau: float
    h: float
    piece: int
    interval: int


class _Sample(NamedTuple):
    path: Path
    steps: list[_Step]
    grid: np.ndarray  # float64 (len(steps) + 1,), the step ends; breakpoints exact


def _check(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")


def _act_and_grad(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma(x), sigma'(x))``, as ``resode.reference.activation`` / ``activation_grad``."""
    if name == "tanh":
        s = np.tanh(x)
        return s, 1 - s * s
    if name == "relu":
        return np.maximum(x, 0), (x > 0).astype(x.dtype)
    if name == "sigmoid":
        e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
        s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return s, s * (1 - s)
    if name == "leaky_relu":
        slope = np.where(x > 0, 1.0, _LEAKY_SLOPE).astype(x.dtype)
        return x * slope, slope
    return x.copy(), np.ones_like(x)  # identity (names are checked in _options)


# --------------------------------------------------------------------------- fields


def _field_fwd(params: Params, k: int, z: np.ndarray, o: _Options) -> tuple[np.ndarray, Cache]:
    """``F_k(z)`` (1, S*C) for z (1, S), and the cache of its VJP."""
    if o.field == "outside":
        hid, dhid = _act_and_grad(o.act, z @ params["W"][k].T + params["b"][k])
        F, dF = _act_and_grad(o.rho, hid)
        return F, (z, dhid * dF)  # rho(sigma(pre)): d/dpre = sigma'(pre) rho'(sigma(pre))
    if o.field == "inside":
        sz, dsz = _act_and_grad(o.act, z)
        F, dF = _act_and_grad(o.rho, sz @ params["W"][k].T + params["b"][k])
        return F, (sz, dsz, dF)
    hid, dhid = _act_and_grad(o.act, z @ params["W1"][k].T + params["b1"][k])
    F, dF = _act_and_grad(o.rho, hid @ params["W2"][k].T + params["b2"][k])
    return F, (z, hid, dhid, dF)


def _field_vjp(
    params: Params, k: int, cache: Cache, Fbar: np.ndarray, o: _Options
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(J^T Fbar (1, S), {key: (dF/dtheta_k)^T Fbar})`` at the cached point."""
    if o.field == "outside":
        z, dpre = cache
        u = Fbar * dpre
        return u @ params["W"][k], {"W": u.T @ z, "b": u.sum(axis=0)}
    if o.field == "inside":
        sz, dsz, dF = cache
        u = Fbar * dF
        return (u @ params["W"][k]) * dsz, {"W": u.T @ sz, "b": u.sum(axis=0)}
    z, hid, dhid, dF = cache
    u2 = Fbar * dF
    u1 = (u2 @ params["W2"][k]) * dhid
    grads = {"W1": u1.T @ z, "b1": u1.sum(axis=0), "W2": u2.T @ hid, "b2": u2.sum(axis=0)}
    return u1 @ params["W1"][k], grads


# --------------------------------------------------------------------------- the grid


def _window(window: tuple[float, float]) -> tuple[float, float]:
    w = np.asarray(window, dtype=np.float64)
    lo, hi = (float(w[0]), float(w[-1])) if w.shape == (2,) else (np.nan, np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"window must be (t_start, t_end), finite, t_start < t_end: {window}")
    return lo, hi


def _sample_steps(
    knots: np.ndarray, bounds: np.ndarray, tout: np.ndarray, substeps: int
) -> tuple[list[_Step], np.ndarray]:
    """Sample's steps and step-end grid: ``substeps`` steps per interval of its breakpoints
    (knots, piece boundaries and output times strictly inside ``(t_0, T_i)``)."""
    t0, T = float(knots[0]), float(knots[-1])
    inside = [float(s) for s in np.concatenate([bounds, tout]) if t0 < s < T]
    breaks = np.unique(np.concatenate([knots, np.asarray(inside, dtype=np.float64)]))
    steps, grid = [], [t0]
    for p, q in zip(breaks[:-1], breaks[1:]):
        h = (float(q) - float(p)) / substeps
        for j in range(substeps):
            tau = float(p) + j * h
            mid = tau + h / 2
            piece = int(np.searchsorted(bounds, mid, side="right"))
            interval = int(np.searchsorted(knots, mid, side="right")) - 1  # t_k < mid < t_{k+1}
            steps.append(_Step(tau, h, piece, interval))
            grid.append(float(q) if j == substeps - 1 else tau + h)
    return steps, np.asarray(grid)


def _samples(
    U: np.ndarray, times: np.ndarray, pieces: int, t: np.ndarray | None, o: _Options
) -> list[_Sample]:
    """Every sample's path, steps and grid; checks ``times`` and ``t``."""
    lengths = observed_lengths(U)
    knots = [sample_knots(times, i, n) for i, n in enumerate(lengths)]
    lo, hi = min(float(k[0]) for k in knots), max(float(k[-1]) for k in knots)
    w_lo, w_hi = (lo, hi) if o.window is None else _window(o.window)
    bounds = w_lo + np.arange(1, pieces) * ((w_hi - w_lo) / pieces)
    tout = np.zeros(0) if t is None else t
    if tout.size and (not (np.diff(tout) >= 0).all() or not lo <= tout[0] <= tout[-1] <= hi):
        raise ValueError(f"t must be sorted and within [{lo!r}, {hi!r}]")
    out = []
    for i, k in enumerate(knots):
        steps, grid = _sample_steps(k, bounds, tout, o.substeps)
        out.append(_Sample(sample_path(U[i, : lengths[i]], k), steps, grid))
    return out


# --------------------------------------------------------------------------- Runge-Kutta


def _rk_step(
    params: Params, z: np.ndarray, sample: _Sample, step: _Step, o: _Options
) -> tuple[np.ndarray, list[Stage]]:
    """One step ``z -> z + h sum_i b_i K_i``, ``K_i = G(Y_i) v_i``; returns the new state and
    per stage ``(field cache, G (S, C), v (C,), slope weights of v)``."""
    A, b = o.tableau
    path = sample.path
    ks: list[np.ndarray] = []
    caches: list[Stage] = []
    for row in A:
        y = z
        for a_il, k_l in zip(row, ks):
            if a_il != 0.0:
                y = y + (step.h * a_il) * k_l
        time = step.tau + sum(row) * step.h  # the stage's node c_i = sum_l a_il
        weights = slope_weights(path, step.interval, time, o.interpolation)
        v = sum(w * path.slopes[j] for j, w in weights)
        F, cache = _field_fwd(params, step.piece, y, o)
        G = F.reshape(z.shape[1], path.x.shape[1])  # row d*C + c -> G[d, c]
        ks.append((G @ v)[None, :])
        caches.append((cache, G, v, weights))
    z_next = z
    for b_i, k_i in zip(b, ks):
        if b_i != 0.0:
            z_next = z_next + (step.h * b_i) * k_i
    return z_next, caches


def _rk_step_vjp(
    params: Params, z: np.ndarray, zbar: np.ndarray, sample: _Sample, step: _Step, o: _Options,
    grads: dict[str, np.ndarray], slopes_bar: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Reverse of one step: the cotangent on its start state; parameter cotangents add into
    ``grads`` and path cotangents into ``slopes_bar`` (L_i - 1, C)."""
    A, b = o.tableau
    _, caches = _rk_step(params, z, sample, step, o)  # recompute the stages
    ybars: list[np.ndarray | None] = [None] * len(b)
    for i in reversed(range(len(b))):
        kbar = (step.h * b[i]) * zbar
        for m in range(i + 1, len(b)):
            if A[m][i] != 0.0 and (ybar_m := ybars[m]) is not None:
                kbar = kbar + (step.h * A[m][i]) * ybar_m
        cache, G, v, weights = caches[i]
        Fbar = (kbar[0][:, None] * v[None, :]).reshape(1, -1)  # d K / d G[d, c] = v_c
        vbar = G.T @ kbar[0]
        for j, w in weights:
            slopes_bar[j] += float(w) * vbar
        ybars[i], pgrads = _field_vjp(params, step.piece, cache, Fbar, o)
        for key, g in pgrads.items():
            grads[key][step.piece] += g
    for ybar in ybars:
        zbar = zbar + ybar
    return zbar


# --------------------------------------------------------------------------- drivers


def _options(
    params: Params, field: str, act: str, rho: str | None, interp: str, method: str, substeps: int
) -> _Options:
    """The checked options (``rho`` None: the identity)."""
    for name, value, allowed in (
        ("field", field, FIELDS), ("activation", act, ACTIVATIONS), ("method", method, METHODS),
        ("output_activation", rho, (None, *ACTIVATIONS)), ("interpolation", interp, INTERPOLATIONS),
    ):  # fmt: skip
        _check(name, value, allowed)
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or substeps < 1:
        raise ValueError(f"substeps must be a positive integer, got {substeps!r}")
    missing = [key for key in ("A", "a", *_FIELD_KEYS[field]) if key not in params]
    if missing:
        raise ValueError(f"params: missing {missing} for field {field!r}")
    rho_name = "identity" if rho is None else rho
    return _Options(field, act, rho_name, interp, _TABLEAUX[method], int(substeps))


def _prepare(
    params: Params, U: np.ndarray, times: np.ndarray, t: np.ndarray | None, o: _Options
) -> tuple[Params, np.ndarray, list[_Sample], np.ndarray | None]:
    """Working-dtype params and U, the samples, and the output times (float64) or None."""
    U = np.asarray(U)
    if U.ndim != 3 or not np.issubdtype(U.dtype, np.floating):
        raise ValueError(f"U must be a float array (N, L, C), got {U.dtype} {U.shape}")
    keys = ("A", "a", *_FIELD_KEYS[o.field])
    dtype = np.result_type(U, *(params[key] for key in keys))
    S, C = np.shape(params["A"])
    if C != U.shape[2] or np.shape(params["a"]) != (S,):
        raise ValueError(f"params: A must be (state, {U.shape[2]}) and a (state,)")
    work = {key: np.asarray(params[key]).astype(dtype, copy=False) for key in keys}
    U = U.astype(dtype, copy=False)
    times = np.asarray(times)
    if times.shape not in ((U.shape[1],), U.shape[:2]):
        raise ValueError(f"times must be (L,) or (N, L) = {U.shape[:2]}, got {times.shape}")
    times = times.astype(dtype).astype(np.float64)  # the values U's dtype holds
    tout = None if t is None else np.asarray(t, dtype=np.float64)
    if tout is not None and tout.ndim != 1:
        raise ValueError(f"t must be a 1-D array of output times, got shape {tout.shape}")
    pieces = int(np.shape(work[_FIELD_KEYS[o.field][0]])[0])
    return work, U, _samples(U, times, pieces, tout, o), tout


def _forward(params: Params, sample: _Sample, o: _Options) -> list[np.ndarray]:
    """States (1, S) at the sample's grid points."""
    z = sample.path.x[:1] @ params["A"].T + params["a"]
    states = [z]
    for step in sample.steps:
        z = _rk_step(params, z, sample, step, o)[0]
        states.append(z)
    return states


def _rows(sample: _Sample, tout: np.ndarray) -> list[int]:
    """Grid index of the state at each output time (before t_0: 0; after T_i: the last)."""
    g = sample.grid
    idx = [0 if s <= g[0] else int(np.searchsorted(g, min(s, g[-1]))) for s in tout]
    assert all(g[j] == s or j in (0, len(g) - 1) for j, s in zip(idx, tout))
    return idx


def _vjp(
    work: Params, U: np.ndarray, samples: list[_Sample], tout: np.ndarray | None,
    cotangent: np.ndarray, o: _Options,
) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Grads (working dtype) of A, a and the field, and dU (N, L, C)."""
    grads = {key: np.zeros_like(value) for key, value in work.items()}
    dU = np.zeros_like(U)
    for i, sample in enumerate(samples):
        states = _forward(work, sample, o)
        bars = [np.zeros_like(states[0]) for _ in states]
        if tout is None:
            bars[-1] = bars[-1] + cotangent[i]
        else:
            for r, j in enumerate(_rows(sample, tout)):
                bars[j] = bars[j] + cotangent[r, i]
        path = sample.path
        slopes_bar = np.zeros_like(path.slopes)
        zbar = bars[-1]
        for j in reversed(range(len(sample.steps))):
            step = sample.steps[j]
            zbar = _rk_step_vjp(work, states[j], zbar, sample, step, o, grads, slopes_bar)
            zbar = zbar + bars[j]
        grads["A"] += zbar.T @ path.x[:1]  # z0 = A x_0 + a
        grads["a"] += zbar[0]
        xbar = np.zeros_like(path.x)
        xbar[0] += (zbar @ work["A"])[0]
        dt = np.diff(path.t).astype(U.dtype)[:, None]
        xbar[1:] += slopes_bar / dt  # delta_k = (x_{k+1} - x_k) / dt_k
        xbar[:-1] -= slopes_bar / dt
        dU[i, : path.x.shape[0]] = np.einsum("ckj,kc->jc", path.fill.astype(U.dtype), xbar)
    return grads, dU


def _keyed_as(params: Params, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Grads with exactly the keys, shapes and dtypes of ``params`` (zeros elsewhere)."""
    out = {}
    for key, value in params.items():
        p = np.asarray(value)
        out[key] = np.asarray(grads.get(key, np.zeros(p.shape))).astype(p.dtype).reshape(p.shape)
    return out


def _data_loss_and_grad(z: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
    """As ``resode.reference.data_loss`` and ``data_loss_grad`` for logits z (N, O)."""
    n = z.shape[0]
    if loss == "cross_entropy":
        rows = np.arange(n)
        labels = np.asarray(y).astype(np.intp, copy=False)
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        esum = e.sum(axis=1, keepdims=True)
        value = float(np.mean(zmax[:, 0] + np.log(esum[:, 0]) - z[rows, labels]))
        g = e / esum
        g[rows, labels] -= 1
        return value, g / n
    r = z - np.asarray(y).astype(z.dtype, copy=False)  # mse: mean over all N * O entries
    return float(np.mean(r * r)), (2 / r.size) * r


def cde_solve(
    params: Params, U: np.ndarray, times: np.ndarray, *, field: str, activation: str = "tanh",
    output_activation: str | None = None, interpolation: str = "cubic", method: str = "rk4",
    substeps: int = 1, t: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """States of the neural CDE at each sample's end time ``T_i``, or at the times ``t``.

    Parameters
    ----------
    params : dict of ndarray
        ``"A"`` (S, C), ``"a"`` (S,) and the field's arrays (leading axis: pieces); other
        keys are ignored.
    U : ndarray, shape (N, L, C), float32 or float64
        Observations; NaN for missing values and trailing padding.
    times : ndarray, shape (L,) or (N, L)
        Strictly increasing over each sample's observed rows.
    field, activation, output_activation, interpolation, method, substeps : str, int
        The model and its solver (module docstring).
    t : ndarray, shape (R,), optional
        Sorted output times within ``[min_i t_{i,0}, max_i T_i]``.

    Returns
    -------
    ndarray
        (N, S), or (R, N, S) with ``t``; the dtype of ``U`` and the params combined.

    Raises
    ------
    ValueError
        Naming the argument: an unknown option, a bad shape, a sample with fewer than 2
        observed rows or a channel never observed, times not increasing, ``t`` out of range.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = {"A": rng.normal(size=(2, 3)), "a": np.zeros(2),
    ...      "W": 0.1 * rng.normal(size=(1, 6, 2)), "b": np.zeros((1, 6))}
    >>> cde_solve(p, rng.normal(size=(4, 5, 3)), np.arange(5.0), field="outside").shape
    (4, 2)
    """
    o = _options(params, field, activation, output_activation, interpolation, method, substeps)
    work, _, samples, tout = _prepare(params, U, times, t, o)
    states = [_forward(work, sample, o) for sample in samples]
    if tout is None:
        return np.stack([z[-1][0] for z in states])
    rows = [[z[j][0] for j in _rows(sample, tout)] for z, sample in zip(states, samples)]
    return np.stack([np.stack(r) for r in rows], axis=1)


def cde_vjp(
    params: Params, U: np.ndarray, times: np.ndarray, cotangent: np.ndarray, *, field: str,
    activation: str = "tanh", output_activation: str | None = None, interpolation: str = "cubic",
    method: str = "rk4", substeps: int = 1, t: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Exact VJP of the discrete :func:`cde_solve` (a reverse sweep through its steps).

    Parameters
    ----------
    params, U, times, field, activation, output_activation, interpolation, method, substeps, t
        As :func:`cde_solve`.
    cotangent : ndarray, shape (N, S) or (R, N, S)
        On what :func:`cde_solve` returns.

    Returns
    -------
    grads : dict of ndarray
        Keyed, shaped and typed as ``params`` (zeros for keys the solve does not use).
    dU : ndarray, shape (N, L, C)
        Dtype of ``U``; exactly 0 where ``U`` is NaN (padding included).

    Raises
    ------
    ValueError
        As :func:`cde_solve`, or a cotangent of another shape.

    Examples
    --------
    >>> p = {"A": np.ones((2, 3)), "a": np.zeros(2), "W": np.ones((1, 6, 2)), "b": np.ones((1, 6))}
    >>> grads, dU = cde_vjp(p, np.ones((4, 5, 3)), np.arange(5.0), np.ones((4, 2)), field="inside")
    >>> grads["W"].shape, dU.shape
    ((1, 6, 2), (4, 5, 3))
    """
    o = _options(params, field, activation, output_activation, interpolation, method, substeps)
    work, Uw, samples, tout = _prepare(params, U, times, t, o)
    shape: tuple[int, ...] = (Uw.shape[0], work["a"].size)
    shape = shape if tout is None else (tout.size, *shape)
    v = np.asarray(cotangent)
    if v.shape != shape:
        raise ValueError(f"cotangent must have the shape {shape} of cde_solve's output")
    grads, dU = _vjp(work, Uw, samples, tout, v.astype(Uw.dtype, copy=False), o)
    return _keyed_as(params, grads), dU.astype(np.asarray(U).dtype, copy=False)


def cde_loss_and_grad(
    params: Params, U: np.ndarray, y: np.ndarray, times: np.ndarray, *, field: str,
    activation: str = "tanh", output_activation: str | None = None, interpolation: str = "cubic",
    method: str = "rk4", substeps: int = 1, loss: str = "cross_entropy", weight_decay: float = 0.0,
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Data loss of :func:`cde_logits` plus ``weight_decay * sum(theta^2)`` over the field's
    arrays (not A, a, P, c), and its exact discrete gradient.

    Parameters
    ----------
    params, U, times, field, activation, output_activation, interpolation, method, substeps
        As :func:`cde_solve`; ``params`` also holds ``"P"`` (O, S) and ``"c"`` (O,).
    y : ndarray, shape (N,) or (N, O)
        Integer labels ``0..O-1`` (``"cross_entropy"``) or targets (``"mse"``).
    loss : {"cross_entropy", "mse"}
        As ``resode.reference.data_loss``: the mean cross-entropy over samples, or the mean
        of ``(z - y)^2`` over all ``N * O`` entries.
    weight_decay : float

    Returns
    -------
    loss : float
    grads : dict of ndarray
        Keyed, shaped and typed as ``params``.
    dU : ndarray, shape (N, L, C)
        As in :func:`cde_vjp`.

    Raises
    ------
    ValueError
        As :func:`cde_solve`, or an unknown ``loss``.

    Examples
    --------
    >>> p = {"A": np.ones((2, 3)), "a": np.zeros(2), "W": np.ones((1, 6, 2)), "b": np.ones((1, 6)),
    ...      "P": np.eye(2), "c": np.zeros(2)}
    >>> loss, grads, dU = cde_loss_and_grad(p, np.ones((2, 5, 3)), [0, 1], np.arange(5.0),
    ...                                     field="outside")
    >>> round(loss, 6), sorted(grads) == sorted(p), dU.shape
    (0.693147, True, (2, 5, 3))
    """
    _check("loss", loss, LOSSES)
    o = _options(params, field, activation, output_activation, interpolation, method, substeps)
    work, Uw, samples, _ = _prepare(params, U, times, None, o)
    zT = np.stack([_forward(work, sample, o)[-1][0] for sample in samples])
    P, c = (np.asarray(params[key]).astype(zT.dtype, copy=False) for key in ("P", "c"))
    value, g = _data_loss_and_grad(zT @ P.T + c, y, loss)
    grads, dU = _vjp(work, Uw, samples, None, g @ P, o)
    grads["P"], grads["c"] = g.T @ zT, g.sum(axis=0)
    for key in _FIELD_KEYS[field]:
        theta = np.asarray(params[key])
        value += float(weight_decay) * float(np.sum(np.square(theta)))
        grads[key] = grads[key] + (2 * float(weight_decay)) * theta.astype(zT.dtype)
    return value, _keyed_as(params, grads), dU.astype(np.asarray(U).dtype, copy=False)
