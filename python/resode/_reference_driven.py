r"""Plain NumPy reference of the input-driven neural ODE (test oracle): one sample at a time,
row vectors, a hand-written backward pass; fixed steps (``reference_driven`` adds the adaptive
methods and the continuous adjoint, and ``resode.reference`` re-exports it).

Model. State ``x`` of width ``D`` (``D = dim + augment``: the model pads its inputs before this
level), inputs ``u(t)`` of ``C`` channels::

    x(0) = x0,   dx/dt = f_k([x; u(t)])   on [0, T]

with ``f_k`` the field of piece k (``K`` equal pieces of ``[0, T]``), acting on the
concatenation ``v = [x; u]`` of width ``D + C``::

    outside     sigma(W[k] v + b[k])                W (K, D, D + C), b (K, D)
    inside      W[k] sigma(v) + b[k]                W (K, D, D + C), b (K, D)
    bottleneck  W2[k] sigma(W1[k] v + b1[k]) + b2[k] W1 (K, H, D + C), W2 (K, D, H)

(``inside`` applies ``sigma`` to the whole concatenation, inputs included.)

Paths. ``U`` (N, L, C) observed at ``times`` (L,) or (N, L), exactly as the neural CDE's
paths (``_reference_paths``, shared with ``_reference_cde``): length ``L_i``, NaN fill, slopes
``delta_k``; the field reads the path's value ``u(t)``, ``linear`` or ``cubic`` (torchcde's
Hermite cubic with backward differences). Outside its observation window ``[t_{i,0}, T_i]``
the path is held constant: its first filled row before ``t_{i,0}``, its last after ``T_i``.

Grid. Sample i's breakpoints are today's ``t_j = T j / (pieces * substeps)`` plus its knots
``t_{i,k}`` strictly inside ``(0, T)`` (and, with ``t``, the requested times strictly inside);
every interval between consecutive breakpoints is one step. A step on ``[tau, tau + h]`` takes
the piece and the path interval (or "before" / "after" the window) containing ``tau + h/2``;
stage j evaluates ``u`` on that interval at ``tau + c_j h``.

Gradient: the exact VJP of this discrete map, to every parameter, ``x0`` and ``U``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._reference_paths import (
    Path,
    Weights,
    base_row,
    observed_lengths,
    path_value,
    sample_knots,
    sample_path,
    value_weights,
)
from .models.options import INTERPOLATIONS

Params = dict[str, np.ndarray]
Tableau = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]
Cache = tuple[np.ndarray, ...]

ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
FIELDS: tuple[str, ...] = ("outside", "inside", "bottleneck")
METHODS: tuple[str, ...] = ("euler", "midpoint", "rk4")
_LEAKY_SLOPE = 0.01
_TABLEAUX: dict[str, Tableau] = {
    "euler": (((),), (1.0,)),
    "midpoint": (((), (0.5,)), (0.0, 1.0)),
    "rk4": (((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 2 / 6, 2 / 6, 1 / 6)),
}


class _Options(NamedTuple):
    field: str
    act: str
    interpolation: str
    tableau: Tableau


class _Step(NamedTuple):
    tau: float
    h: float
    piece: int
    interval: int  # -1: before the window, L_i - 1: after it


def _check(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")


def _act_and_grad(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if name == "tanh":
        s = np.tanh(x)
        return s, 1 - s * s
    if name == "relu":
        return np.maximum(x, 0), (x > 0).astype(x.dtype)
    if name == "sigmoid":
        e = np.exp(-np.abs(x))
        s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return s, s * (1 - s)
    if name == "leaky_relu":
        slope = np.where(x > 0, 1.0, _LEAKY_SLOPE).astype(x.dtype)
        return x * slope, slope
    return x.copy(), np.ones_like(x)


def _field_fwd(params: Params, k: int, v: np.ndarray, o: _Options) -> tuple[np.ndarray, Cache]:
    """``f_k(v)`` (1, D) for v = [x; u] (1, D + C), and the cache of its VJP."""
    if o.field == "outside":
        F, dF = _act_and_grad(o.act, v @ params["W"][k].T + params["b"][k])
        return F, (v, dF)
    if o.field == "inside":
        sv, dsv = _act_and_grad(o.act, v)
        return sv @ params["W"][k].T + params["b"][k], (sv, dsv)
    hid, dhid = _act_and_grad(o.act, v @ params["W1"][k].T + params["b1"][k])
    return hid @ params["W2"][k].T + params["b2"][k], (v, hid, dhid)


def _field_vjp(
    params: Params, k: int, cache: Cache, Fbar: np.ndarray, o: _Options
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(J^T Fbar (1, D + C), {key: (df/dtheta_k)^T Fbar})``."""
    if o.field == "outside":
        v, dF = cache
        g = Fbar * dF
        return g @ params["W"][k], {"W": g.T @ v, "b": g.sum(axis=0)}
    if o.field == "inside":
        sv, dsv = cache
        return (Fbar @ params["W"][k]) * dsv, {"W": Fbar.T @ sv, "b": Fbar.sum(axis=0)}
    v, hid, dhid = cache
    g1 = (Fbar @ params["W2"][k]) * dhid
    grads = {"W1": g1.T @ v, "b1": g1.sum(axis=0), "W2": Fbar.T @ hid, "b2": Fbar.sum(axis=0)}
    return g1 @ params["W1"][k], grads


def _steps(T: float, steps: int, pieces: int, knots: np.ndarray, tout: np.ndarray) -> list[_Step]:
    base = T * np.arange(steps + 1) / steps
    inside = [float(s) for s in np.concatenate([knots, tout]) if 0.0 < s < T]
    breaks = np.unique(np.concatenate([base, np.asarray(inside, dtype=np.float64)]))
    bounds = T * np.arange(1, pieces) / pieces
    out = []
    for p, q in zip(breaks[:-1], breaks[1:]):
        tau, h = float(p), float(q) - float(p)
        mid = tau + h / 2
        piece = int(np.searchsorted(bounds, mid, side="right"))
        interval = int(np.searchsorted(knots, mid, side="right")) - 1
        out.append(_Step(tau, h, piece, interval))
    return out


def _rk_stages(
    params: Params, x: np.ndarray, path: Path, step: _Step, o: _Options
) -> list[tuple[np.ndarray, Cache, Weights]]:
    a, _ = o.tableau
    h = x.dtype.type(step.h)
    Ks: list[np.ndarray] = []
    out = []
    for row in a:
        Y = x.copy()
        for ail, K in zip(row, Ks):
            if ail != 0.0:
                Y = Y + h * x.dtype.type(ail) * K
        time = step.tau + sum(row) * step.h
        u = path_value(path, step.interval, time, o.interpolation)
        K, cache = _field_fwd(params, step.piece, np.concatenate([Y, u[None, :]], axis=1), o)
        Ks.append(K)
        out.append((K, cache, value_weights(path, step.interval, time, o.interpolation)))
    return out


def _rk_step(params: Params, x: np.ndarray, path: Path, step: _Step, o: _Options) -> np.ndarray:
    _, b = o.tableau
    h = x.dtype.type(step.h)
    new = x.copy()
    for bi, (K, _, _) in zip(b, _rk_stages(params, x, path, step, o)):
        if bi != 0.0:
            new = new + h * x.dtype.type(bi) * K
    out: np.ndarray = new
    return out


def _rk_step_vjp(
    params: Params,
    x: np.ndarray,
    path: Path,
    step: _Step,
    o: _Options,
    xbar: np.ndarray,
    grads: Params,
    xvals_bar: np.ndarray,
    slopes_bar: np.ndarray,
) -> np.ndarray:
    """The cotangent of the step's start; adds to grads, xvals_bar (L_i, C), slopes_bar."""
    a, b = o.tableau
    stages = _rk_stages(params, x, path, step, o)
    s = len(stages)
    h = x.dtype.type(step.h)
    D = x.shape[1]
    Ybar: list[np.ndarray] = [np.zeros_like(x)] * s
    out = xbar.copy()
    for i in range(s - 1, -1, -1):
        Kbar = h * x.dtype.type(b[i]) * xbar
        for m in range(i + 1, s):
            if a[m][i] != 0.0:
                Kbar = Kbar + h * x.dtype.type(a[m][i]) * Ybar[m]
        _, cache, weights = stages[i]
        vbar, g = _field_vjp(params, step.piece, cache, Kbar, o)
        for key, value in g.items():
            grads[key][step.piece] += value
        Ybar[i] = vbar[:, :D]
        ubar = vbar[0, D:]
        xvals_bar[base_row(path, step.interval)] += ubar
        for j, w in weights:
            slopes_bar[j] += x.dtype.type(w) * ubar
        out = out + Ybar[i]
    result: np.ndarray = out
    return result


def _options(field: str, activation: str, interpolation: str, method: str) -> _Options:
    _check("field", field, FIELDS)
    _check("activation", activation, ACTIVATIONS)
    _check("interpolation", interpolation, INTERPOLATIONS)
    _check("method", method, METHODS)
    return _Options(field, activation, interpolation, _TABLEAUX[method])


def _prepare(
    params: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, field: str, t: object
) -> tuple[Params, np.ndarray, np.ndarray, list[Path], np.ndarray]:
    dtype = np.asarray(x0).dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"x0 must be float32 or float64, got {dtype}")
    x0 = np.asarray(x0, dtype=dtype)
    U = np.asarray(U, dtype=dtype)
    if x0.ndim != 2 or U.ndim != 3 or U.shape[0] != x0.shape[0]:
        raise ValueError(f"x0 must be (N, D) and U (N, L, C); got {x0.shape} and {U.shape}")
    ts = np.asarray(times, dtype=np.float64)
    if ts.shape not in ((U.shape[1],), U.shape[:2]):
        raise ValueError(f"times must be (L,) or (N, L); got {ts.shape} for U {U.shape}")
    keys = ("W1", "b1", "W2", "b2") if field == "bottleneck" else ("W", "b")
    p = {k: np.asarray(params[k], dtype=dtype) for k in keys}
    lengths = observed_lengths(U)
    paths = []
    for i, n in enumerate(lengths):
        paths.append(sample_path(U[i, :n], sample_knots(ts, i, n)))
    tout = np.zeros(0) if t is None else np.asarray(t, dtype=np.float64)
    return p, x0, U, paths, tout


def _grid(T: float, p: Params, substeps: int, path: Path, tout: np.ndarray) -> list[_Step]:
    pieces = next(iter(p.values())).shape[0]  # the leading axis of W (or W1)
    return _steps(T, pieces * substeps, pieces, path.t, tout)


def _forward(
    p: Params, x0: np.ndarray, path: Path, steps: list[_Step], o: _Options
) -> list[np.ndarray]:
    xs = [x0]
    for step in steps:
        xs.append(_rk_step(p, xs[-1], path, step, o))
    return xs


def _rows(steps: list[_Step], tout: np.ndarray) -> list[int]:
    """The state index read by each output time (the grid holds every t_r inside (0, T))."""
    ends = np.array([s.tau for s in steps] + [steps[-1].tau + steps[-1].h])
    return [int(np.argmin(np.abs(ends - tr))) for tr in tout]


def _check_t(tout: np.ndarray, T: float) -> None:
    if tout.size and (tout.ndim != 1 or (np.diff(tout) <= 0).any() or tout[0] < 0 or tout[-1] > T):
        raise ValueError(f"t must be strictly increasing within [0, {T!r}]")


def driven_solve(
    params: Params,
    x0: np.ndarray,
    U: np.ndarray,
    times: np.ndarray,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    t: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``x_i(T)`` (N, D), or with ``t`` the states at those times (len(t), N, D).

    ``params`` holds the field's arrays; ``pieces`` is their leading axis.
    """
    o = _options(field, activation, interpolation, method)
    p, x0, U, paths, tout = _prepare(params, x0, U, times, field, t)
    _check_t(tout, T)
    out = []
    for i, path in enumerate(paths):
        steps = _grid(T, p, substeps, path, tout)
        xs = _forward(p, x0[i : i + 1], path, steps, o)
        out.append(np.stack([xs[r][0] for r in _rows(steps, tout)]) if t is not None else xs[-1][0])
    return np.stack(out, axis=1 if t is not None else 0)


def _sample_vjp(
    p: Params,
    x0: np.ndarray,
    path: Path,
    steps: list[_Step],
    o: _Options,
    cot_rows: list[tuple[int, np.ndarray]],
    grads: Params,
) -> tuple[np.ndarray, np.ndarray]:
    """(x0bar (1, D), U-rows cotangent (L_i, C)) given cotangents on states (index, (1, D))."""
    xs = _forward(p, x0, path, steps, o)
    xbar = np.zeros_like(x0)
    for r, c in cot_rows:
        if r == len(steps):
            xbar = xbar + c
    xvals_bar = np.zeros_like(path.x)
    slopes_bar = np.zeros_like(path.slopes)
    for j in range(len(steps) - 1, -1, -1):
        xbar = _rk_step_vjp(p, xs[j], path, steps[j], o, xbar, grads, xvals_bar, slopes_bar)
        for r, c in cot_rows:
            if r == j:
                xbar = xbar + c
    dt = np.diff(path.t).astype(x0.dtype)[:, None]
    v = slopes_bar / dt
    xvals_bar[1:] += v
    xvals_bar[:-1] -= v
    dU = np.einsum("ckj,kc->jc", path.fill.astype(x0.dtype), xvals_bar)
    return xbar, dU


def driven_vjp(
    params: Params,
    x0: np.ndarray,
    U: np.ndarray,
    times: np.ndarray,
    cotangent: np.ndarray,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    t: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """VJP of :func:`driven_solve`: ``(grads keyed as params, dx0 (N, D), dU like U)``
    (``dU`` is 0 where ``U`` is NaN)."""
    o = _options(field, activation, interpolation, method)
    p, x0, U, paths, tout = _prepare(params, x0, U, times, field, t)
    _check_t(tout, T)
    cot = np.asarray(cotangent, dtype=x0.dtype)
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx0 = np.zeros_like(x0)
    dU = np.zeros_like(U)
    for i, path in enumerate(paths):
        steps = _grid(T, p, substeps, path, tout)
        if t is None:
            rows = [(len(steps), cot[i : i + 1])]
        else:
            rows = [(r, cot[q, i : i + 1]) for q, r in enumerate(_rows(steps, tout))]
        xb, ub = _sample_vjp(p, x0[i : i + 1], path, steps, o, rows, grads)
        dx0[i] = xb[0]
        dU[i, : ub.shape[0]] = ub
    dU[np.isnan(U)] = 0
    return grads, dx0, dU


def driven_logits(
    params: Params,
    x0: np.ndarray,
    U: np.ndarray,
    times: np.ndarray,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
) -> np.ndarray:
    """Logits ``x_i(T) P^T + c`` (N, O); ``params`` also holds ``P`` (O, D) and ``c`` (O,)."""
    xT = driven_solve(
        params,
        x0,
        U,
        times,
        T=T,
        field=field,
        activation=activation,
        interpolation=interpolation,
        method=method,
        substeps=substeps,
    )
    dtype = xT.dtype
    logits: np.ndarray = xT @ np.asarray(params["P"], dtype).T + np.asarray(params["c"], dtype)
    return logits


def _data_loss_and_grad(z: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, np.ndarray]:
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
    r = z - np.asarray(y).astype(z.dtype, copy=False)
    return float(np.mean(r * r)), (2 / r.size) * r


def driven_loss_and_grad(
    params: Params,
    x0: np.ndarray,
    U: np.ndarray,
    y: np.ndarray,
    times: np.ndarray,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
) -> tuple[float, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Data loss of the logits plus ``weight_decay * |field|^2``: ``(loss, grads keyed as
    params incl. P and c, dx0, dU)``."""
    _check("loss", loss, ("cross_entropy", "mse"))
    opts = {
        "T": T,
        "field": field,
        "activation": activation,
        "interpolation": interpolation,
        "method": method,
        "substeps": substeps,
    }
    xT = driven_solve(params, x0, U, times, **opts)  # type: ignore[arg-type]
    dtype = xT.dtype
    P, c = np.asarray(params["P"], dtype), np.asarray(params["c"], dtype)
    value, g = _data_loss_and_grad(xT @ P.T + c, y, loss)
    g = g.astype(dtype)
    grads, dx0, dU = driven_vjp(params, x0, U, times, g @ P, **opts)  # type: ignore[arg-type]
    for k in grads:
        w = np.asarray(params[k], dtype)
        value += weight_decay * float(np.sum(w.astype(np.float64) ** 2))
        grads[k] = grads[k] + dtype.type(2 * weight_decay) * w
    grads["P"], grads["c"] = g.T @ xT, g.sum(axis=0)
    return value, grads, dx0, dU
