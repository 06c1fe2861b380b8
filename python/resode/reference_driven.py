r"""Plain NumPy reference of the input-driven neural ODE (test oracle), every method and both
gradients. ``resode.reference`` re-exports it.

The model, paths, fixed-step grid and exact discrete gradient are those of
``_reference_driven`` (``euler``, ``midpoint``, ``rk4``). This module adds:

Adaptive methods (``dopri5``, ``tsit5``, ``bosh3``). Each sample runs on its own: with
``K_i = f_k([x + h sum_{l<i} a_il K_l; u(tau + c_i h)])``, ``x_next = x + h sum_i b_i K_i``,
``err = h sum_i e_i K_i`` and ``E = rms(err / (atol + rtol max(|x|, |x_next|)))`` (NaN if
``x_next`` is not finite), the PI controller of docs/adaptive.md accepts (``E <= 1``) or
rejects the step and sets the next ``h``. Steps are clipped to land on every breakpoint of the
``substeps = 1`` grid (piece boundaries, the sample's knots, the output times): a step takes
the piece and path interval of the break interval it lies in. The starting step is Hairer's,
both of its evaluations reading ``u(0)``. The result is the solution on the accepted grid and
the ``"discrete"`` gradient is its exact reverse sweep with the grid held constant.

The continuous adjoint (``gradient="adjoint"``, backsolve). From ``x(T)`` of the forward on
the sample's grid (fixed or accepted) the system ``x' = f(x, u(t))``, ``a' = -J_x^T a`` is
integrated backwards over the same grid with the same tableau (step ``-h``, stage s at
``tau + h - c_s h``); ``dtheta += h sum_s b_s (df/dtheta)^T A_s`` and
``du(tau + h - c_s h) += h b_s J_u^T A_s`` (pulled back through the path to ``U``), ``a(0)``
is ``dx0``, and an output time's cotangent is added to ``a`` when the run passes it.
"""

from __future__ import annotations

import numpy as np

from ._reference_driven import (
    ACTIVATIONS,
    FIELDS,
    METHODS,
    Params,
    Tableau,
    _check,
    _check_t,
    _data_loss_and_grad,
    _field_fwd,
    _field_vjp,
    _forward,
    _grid,
    _Options,
    _options,
    _prepare,
    _rk_stages,
    _rows,
    _sample_vjp,
    _Step,
)
from ._reference_paths import Path, base_row, path_value, value_weights
from ._reference_tableaux import EMBEDDED, Embedded
from .models.options import INTERPOLATIONS
from .reference_cde import NonFiniteError, StepSizeError

__all__ = [
    "ACTIVATIONS", "ADAPTIVE_METHODS", "FIELDS", "INTERPOLATIONS", "METHODS",
    "NonFiniteError", "StepSizeError", "driven_grids", "driven_logits", "driven_loss_and_grad",
    "driven_solve", "driven_vjp",
]  # fmt: skip

ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "tsit5", "bosh3")
_Adaptive = tuple[float, float, float | None, int]  # rtol, atol, first_step, max_steps
_Sample = tuple[Path, list[_Step]]
_EPS = float(np.finfo(np.float64).eps)


def _f(p: Params, x: np.ndarray, path: Path, seg: _Step, time: float, o: _Options) -> np.ndarray:
    """``f_k([x; u(time)])`` (1, D) on the segment's piece and path interval."""
    u = path_value(path, seg.interval, time, o.interpolation)
    F, _ = _field_fwd(p, seg.piece, np.concatenate([x, u[None, :]], axis=1), o)
    return F


def _rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(v))))


def _starting_step(
    p: Params, x0: np.ndarray, path: Path, seg: _Step, k: int, o: _Options, rtol: float,
    atol: float,
) -> float:  # fmt: skip
    """Hairer's starting step (docs/adaptive.md) from x0 at 0, u held at u(0)."""
    f0 = _f(p, x0, path, seg, seg.tau, o).astype(np.float64)
    sc = atol + rtol * np.abs(x0.astype(np.float64))
    d0, d1 = _rms(x0 / sc), _rms(f0 / sc)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    x1 = x0 + x0.dtype.type(h0) * f0.astype(x0.dtype)
    f1 = _f(p, x1, path, seg, seg.tau, o).astype(np.float64)
    d2 = _rms((f1 - f0) / sc) / h0
    dmax = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / k)
    return min(100.0 * h0, h1)


def _trial(
    p: Params, x: np.ndarray, path: Path, step: _Step, tab: Embedded, o: _Options,
    rtol: float, atol: float,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """A trial step: the new state and its error norm E (NaN if the state is not finite)."""
    A, b, e, _ = tab
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow: E = NaN, rejected
        stages = _rk_stages(p, x, path, step, o._replace(tableau=(A, b)))
        h = x.dtype.type(step.h)
        xnew, acc = x, np.zeros_like(x)
        for b_i, e_i, (K, _, _) in zip(b, e, stages):
            if b_i != 0.0:
                xnew = xnew + h * x.dtype.type(b_i) * K
            if e_i != 0.0:
                acc = acc + x.dtype.type(e_i) * K
        err = (h * acc).astype(np.float64)
    if not np.isfinite(xnew).all():
        return xnew, float("nan")
    scale = atol + rtol * np.maximum(np.abs(x), np.abs(xnew)).astype(np.float64)
    return xnew, _rms(err / scale)


def _controller(E: float, E_prev: float, dt: float, k: int) -> tuple[bool, float, float]:
    """docs/adaptive.md's PI controller: (accepted, next h, new E_prev)."""
    if np.isfinite(E) and E <= 1.0:
        factor = 10.0
        if E > 0.0:
            factor = 0.9 * max(E, 1e-10) ** (-0.85 / k) * E_prev ** (0.2 / k)
            factor = min(max(factor, 0.2), 10.0)
        return True, dt * factor, max(E, 1e-4)
    factor = min(1.0, max(0.2, 0.9 * E ** (-1.0 / k))) if np.isfinite(E) else 0.2
    return False, dt * factor, E_prev


def _breaks(T: float, pieces: int, path: Path, tout: np.ndarray) -> np.ndarray:
    """The substeps = 1 grid's breakpoints (as ``_reference_driven._steps``)."""
    base = T * np.arange(pieces + 1) / pieces
    inside = [float(s) for s in np.concatenate([path.t, tout]) if 0.0 < s < T]
    return np.unique(np.concatenate([base, np.asarray(inside, dtype=np.float64)]))


def _adaptive_sample(
    p: Params, i: int, x0: np.ndarray, path: Path, segs: list[_Step], breaks: np.ndarray,
    tab: Embedded, o: _Options, adaptive: _Adaptive,
) -> tuple[list[_Step], np.ndarray, tuple[int, int, int]]:  # fmt: skip
    """Sample i's accepted steps, their times and (nfev, accepted, rejected)."""
    rtol, atol, first_step, max_steps = adaptive
    k = tab[3]
    x, nfev = x0, 0
    if first_step is None:
        h, nfev = _starting_step(p, x, path, segs[0], k, o, rtol, atol), 2
    else:
        h = float(first_step)
    tnow, E_prev, E, seg = float(breaks[0]), 1.0, float("nan"), 0
    steps, grid, accepted, rejected, bad_trial = [], [tnow], 0, 0, False
    while seg + 1 < len(breaks):
        q = float(breaks[seg + 1])
        t_new = q if tnow + h >= q - 100 * _EPS * abs(q) else tnow + h
        dt = t_new - tnow
        too_many = accepted + rejected >= max_steps
        if too_many or dt <= 4 * _EPS * abs(t_new):
            reason = "max_steps steps did not reach T" if too_many else "step below resolution"
            error = NonFiniteError if bad_trial else StepSizeError
            raise error(i, tnow, dt, E, reason)
        step = _Step(tnow, dt, segs[seg].piece, segs[seg].interval)
        xnew, E = _trial(p, x, path, step, tab, o, rtol, atol)
        nfev += len(tab[0])
        ok, h, E_prev = _controller(E, E_prev, dt, k)
        if ok:
            steps.append(step)
            x, tnow, accepted = xnew, t_new, accepted + 1
            grid.append(tnow)
            seg += tnow == q
        else:
            rejected, bad_trial = rejected + 1, not np.isfinite(E)
    return steps, np.asarray(grid), (nfev, accepted, rejected)


def _check_adaptive(adaptive: _Adaptive) -> None:
    rtol, atol, first_step, max_steps = adaptive
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol must not both be 0")
    if first_step is not None and not (np.isfinite(first_step) and first_step > 0):
        raise ValueError(f"first_step must be finite and > 0 (or None), got {first_step!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")


class _Run:
    """Checked inputs and every sample's steps (fixed, or an adaptive run's accepted ones)."""

    def __init__(
        self, params: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, T: float,
        field: str, activation: str, interpolation: str, method: str, substeps: int,
        t: np.ndarray | None, adaptive: _Adaptive,
    ) -> None:  # fmt: skip
        _check("method", method, METHODS + ADAPTIVE_METHODS)
        adaptive_method = method in ADAPTIVE_METHODS
        o = _options(field, activation, interpolation, "rk4" if adaptive_method else method)
        self.p, self.x0, self.U, paths, self.tout = _prepare(params, x0, U, times, field, t)
        _check_t(self.tout, T)
        self.samples: list[_Sample] = []
        self.grids: list[np.ndarray] = []
        counts: list[tuple[int, int, int]] = []
        if not adaptive_method:
            self.o = o
            self.samples = [(pa, _grid(T, self.p, substeps, pa, self.tout)) for pa in paths]
            self.counts = np.zeros((0, 3), dtype=np.int64)
            return
        _check_adaptive(adaptive)
        tab = EMBEDDED[method]
        pieces = next(iter(self.p.values())).shape[0]
        for i, path in enumerate(paths):
            segs = _grid(T, self.p, 1, path, self.tout)
            breaks = _breaks(T, pieces, path, self.tout)
            steps, grid, c = _adaptive_sample(
                self.p, i, self.x0[i : i + 1], path, segs, breaks, tab, o, adaptive
            )
            self.samples.append((path, steps))
            self.grids.append(grid)
            counts.append(c)
        A, b, _, _ = tab
        solution: Tableau = (A[:-1], b[:-1])  # the FSAL stage feeds the error estimate only
        self.o = o._replace(tableau=solution)
        self.counts = np.asarray(counts, dtype=np.int64)

    def states(self, i: int) -> list[np.ndarray]:
        path, steps = self.samples[i]
        return _forward(self.p, self.x0[i : i + 1], path, steps, self.o)

    def output(self, t: object) -> np.ndarray:
        out = []
        for i, (_, steps) in enumerate(self.samples):
            xs = self.states(i)
            out.append(np.stack([xs[r][0] for r in _rows(steps, self.tout)]) if t is not None
                       else xs[-1][0])  # fmt: skip
        return np.stack(out, axis=1 if t is not None else 0)

    def cot_rows(self, i: int, cot: np.ndarray) -> list[tuple[int, np.ndarray]]:
        steps = self.samples[i][1]
        if self.tout.size == 0:
            return [(len(steps), cot[i : i + 1])]
        return [(r, cot[q, i : i + 1]) for q, r in enumerate(_rows(steps, self.tout))]

    def vjp(self, cot: np.ndarray, gradient: str) -> tuple[Params, np.ndarray, np.ndarray]:
        grads = {k: np.zeros_like(v) for k, v in self.p.items()}
        dx0, dU = np.zeros_like(self.x0), np.zeros_like(self.U)
        for i, (path, steps) in enumerate(self.samples):
            rows = self.cot_rows(i, cot)
            x0 = self.x0[i : i + 1]
            if gradient == "discrete":
                xb, ub = _sample_vjp(self.p, x0, path, steps, self.o, rows, grads)
            else:
                xb, ub = self.adjoint(i, rows, grads)
            dx0[i] = xb[0]
            dU[i, : ub.shape[0]] = ub
        dU[np.isnan(self.U)] = 0
        return grads, dx0, dU

    def adjoint(
        self, i: int, rows: list[tuple[int, np.ndarray]], grads: Params
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample i's backsolve: (a(0) (1, D), its dU rows (L_i, C))."""
        path, steps = self.samples[i]
        x = self.states(i)[-1]
        bars = [np.zeros_like(x) for _ in range(len(steps) + 1)]
        for r, c in rows:
            bars[r] = bars[r] + c
        xvals_bar, slopes_bar = np.zeros_like(path.x), np.zeros_like(path.slopes)
        a = bars[-1]
        for j in reversed(range(len(steps))):
            x, a = _adjoint_step(self.p, x, a, path, steps[j], self.o, grads, xvals_bar,
                                 slopes_bar)  # fmt: skip
            a = a + bars[j]
        dt = np.diff(path.t).astype(x.dtype)[:, None]
        xvals_bar[1:] += slopes_bar / dt
        xvals_bar[:-1] -= slopes_bar / dt
        return a, np.einsum("ckj,kc->jc", path.fill.astype(x.dtype), xvals_bar)


def _adjoint_step(
    p: Params, x1: np.ndarray, a1: np.ndarray, path: Path, step: _Step, o: _Options,
    grads: Params, xvals_bar: np.ndarray, slopes_bar: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One backward step from ``tau + h`` to ``tau``: ``(x, a)' = (f, -J_x^T a)`` with step
    ``-h``, and the quadratures of its stages into grads, xvals_bar and slopes_bar."""
    A, b = o.tableau
    D = x1.shape[1]
    h = float(step.h)
    kx: list[np.ndarray] = []
    ka: list[np.ndarray] = []  # J_x^T A_s: a' = -J_x^T a, so A_s = a1 + h sum a_sl ka_l
    for s, row in enumerate(A):
        X, Aa = x1, a1
        for a_sl, kx_l, ka_l in zip(row, kx, ka):
            if a_sl != 0.0:
                X, Aa = X - (h * a_sl) * kx_l, Aa + (h * a_sl) * ka_l
        time = step.tau + h - sum(row) * h
        u = path_value(path, step.interval, time, o.interpolation)
        F, cache = _field_fwd(p, step.piece, np.concatenate([X, u[None, :]], axis=1), o)
        vbar, g = _field_vjp(p, step.piece, cache, Aa, o)
        kx.append(F)
        ka.append(vbar[:, :D])
        if b[s] != 0.0:
            wgt = h * b[s]
            for key, value in g.items():
                grads[key][step.piece] += x1.dtype.type(wgt) * value
            ubar = x1.dtype.type(wgt) * vbar[0, D:]
            xvals_bar[base_row(path, step.interval)] += ubar
            for j, w in value_weights(path, step.interval, time, o.interpolation):
                slopes_bar[j] += x1.dtype.type(w) * ubar
    x0, a0 = x1, a1
    for b_s, kx_s, ka_s in zip(b, kx, ka):
        if b_s != 0.0:
            x0, a0 = x0 - (h * b_s) * kx_s, a0 + (h * b_s) * ka_s
    return x0.astype(x1.dtype), a0.astype(x1.dtype)


def driven_solve(
    params: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, *, T: float, field: str,
    activation: str = "tanh", interpolation: str = "cubic", method: str = "rk4",
    substeps: int = 1, t: np.ndarray | None = None, rtol: float = 1e-7, atol: float = 1e-9,
    first_step: float | None = None, max_steps: int = 100000,
) -> np.ndarray:  # fmt: skip
    """Return ``x_i(T)`` (N, D), or with ``t`` the states at those times (len(t), N, D).

    ``method`` is a fixed-step method (``substeps`` steps per break interval) or an adaptive
    one (``rtol``, ``atol``, ``first_step`` (None: Hairer's), ``max_steps``; module
    docstring); ``params`` holds the field's arrays, ``pieces`` their leading axis.
    """
    run = _Run(params, x0, U, times, T, field, activation, interpolation, method, substeps, t,
               (rtol, atol, first_step, max_steps))  # fmt: skip
    return run.output(t)


def driven_grids(
    params: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, *, T: float, field: str,
    activation: str = "tanh", interpolation: str = "cubic", method: str = "dopri5",
    t: np.ndarray | None = None, rtol: float = 1e-7, atol: float = 1e-9,
    first_step: float | None = None, max_steps: int = 100000,
) -> tuple[list[np.ndarray], np.ndarray]:  # fmt: skip
    """Each sample's accepted step times (float64, 0 .. T) and the counts (N, 3) int64 of
    function evaluations, accepted and rejected steps of an adaptive method."""
    _check("method", method, ADAPTIVE_METHODS)
    run = _Run(params, x0, U, times, T, field, activation, interpolation, method, 1, t,
               (rtol, atol, first_step, max_steps))  # fmt: skip
    return run.grids, run.counts


def driven_vjp(
    params: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, cotangent: np.ndarray, *,
    T: float, field: str, activation: str = "tanh", interpolation: str = "cubic",
    method: str = "rk4", substeps: int = 1, t: np.ndarray | None = None, rtol: float = 1e-7,
    atol: float = 1e-9, first_step: float | None = None, max_steps: int = 100000,
    gradient: str = "discrete",
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:  # fmt: skip
    """VJP of :func:`driven_solve`: ``(grads keyed as params, dx0 (N, D), dU like U)`` (``dU``
    is 0 where ``U`` is NaN): the exact reverse sweep (``"discrete"``; an adaptive method's
    grid held constant) or the continuous adjoint (``"adjoint"``, module docstring)."""
    _check("gradient", gradient, ("discrete", "adjoint"))
    run = _Run(params, x0, U, times, T, field, activation, interpolation, method, substeps, t,
               (rtol, atol, first_step, max_steps))  # fmt: skip
    return run.vjp(np.asarray(cotangent, dtype=run.x0.dtype), gradient)


def driven_logits(
    params: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, *, T: float, field: str,
    activation: str = "tanh", interpolation: str = "cubic", method: str = "rk4",
    substeps: int = 1, rtol: float = 1e-7, atol: float = 1e-9, first_step: float | None = None,
    max_steps: int = 100000,
) -> np.ndarray:  # fmt: skip
    """Logits ``x_i(T) P^T + c`` (N, O); ``params`` also holds ``P`` (O, D) and ``c`` (O,)."""
    xT = driven_solve(params, x0, U, times, T=T, field=field, activation=activation,
                      interpolation=interpolation, method=method, substeps=substeps, rtol=rtol,
                      atol=atol, first_step=first_step, max_steps=max_steps)  # fmt: skip
    dtype = xT.dtype
    logits: np.ndarray = xT @ np.asarray(params["P"], dtype).T + np.asarray(params["c"], dtype)
    return logits


def driven_loss_and_grad(
    params: Params, x0: np.ndarray, U: np.ndarray, y: np.ndarray, times: np.ndarray, *,
    T: float, field: str, activation: str = "tanh", interpolation: str = "cubic",
    method: str = "rk4", substeps: int = 1, loss: str = "cross_entropy",
    weight_decay: float = 0.0, rtol: float = 1e-7, atol: float = 1e-9,
    first_step: float | None = None, max_steps: int = 100000, gradient: str = "discrete",
) -> tuple[float, dict[str, np.ndarray], np.ndarray, np.ndarray]:  # fmt: skip
    """Data loss of the logits plus ``weight_decay * |field|^2``: ``(loss, grads keyed as
    params incl. P and c, dx0, dU)``; ``gradient`` as :func:`driven_vjp`."""
    _check("loss", loss, ("cross_entropy", "mse"))
    _check("gradient", gradient, ("discrete", "adjoint"))
    run = _Run(params, x0, U, times, T, field, activation, interpolation, method, substeps, None,
               (rtol, atol, first_step, max_steps))  # fmt: skip
    xT = run.output(None)
    dtype = xT.dtype
    P, c = np.asarray(params["P"], dtype), np.asarray(params["c"], dtype)
    value, g = _data_loss_and_grad(xT @ P.T + c, y, loss)
    g = g.astype(dtype)
    grads, dx0, dU = run.vjp(g @ P, gradient)
    for k in grads:
        w = np.asarray(params[k], dtype)
        value += weight_decay * float(np.sum(w.astype(np.float64) ** 2))
        grads[k] = grads[k] + dtype.type(2 * weight_decay) * w
    grads["P"], grads["c"] = g.T @ xT, g.sum(axis=0)
    return value, grads, dx0, dU
