r"""Plain NumPy reference of the neural controlled differential equation (test oracle).

The fixed-step methods (``euler``, ``midpoint``, ``rk4``) are those of ``_reference_cde``
(its docstring states the paths, the model, the grid and the gradient). This module adds the
adaptive methods ``dopri5``, ``tsit5`` and ``bosh3`` (docs/adaptive.md's tableaux, error norm,
PI controller and starting step), per sample:

- Sample i's breakpoints are those of its fixed-step grid: its knots, and the piece
  boundaries and (with ``t``) output times strictly inside ``(t_{i,0}, T_i)``. A step of
  proposed size h from tau towards the next breakpoint q lands on
  ``q if tau + h >= q - 100 eps |q| else tau + h`` (diffrax's ``jump_ts``), so every
  breakpoint is a step end. A step uses the path interval and the piece of its breakpoint
  interval; stage i evaluates ``h dX/dt`` at ``tau + c_i h`` there, and its first stage is
  evaluated anew each step (no FSAL reuse: for linear paths dX/dt jumps at the knots).
- Error norm ``E = rms_d(err_d / (atol + rtol max(|z_d|, |z_new,d|)))`` over the S state
  components (NaN when ``z_new`` is not finite: a rejection); accepted when ``E <= 1``.
- Starting step (``first_step=None``): Hairer's heuristic, both of its field evaluations with
  dX/dt at ``t_{i,0}`` on the first path interval.
- Failures: ``max_steps`` attempts (accepted and rejected) or a step
  ``dt <= 4 eps |t_new|`` raise :class:`StepSizeError`; :class:`NonFiniteError` when the
  sample's last rejected trial was not finite.

The result is the replay of the accepted steps with the tableau's solution stages (the map of
the fixed-step code on that grid, so states at output times are grid states), and the
gradient is its exact VJP with the grid held constant (the controller is not differentiated),
as for resode's adaptive neural ODE.
"""

from __future__ import annotations

import numpy as np

from ._reference_cde import (
    _FIELD_KEYS,
    ACTIVATIONS,
    FIELDS,
    LOSSES,
    METHODS,
    Params,
    Tableau,
    _check,
    _data_loss_and_grad,
    _field_fwd,
    _field_vjp,
    _forward,
    _keyed_as,
    _Options,
    _options,
    _prepare,
    _rows,
    _Sample,
    _Step,
    _vjp,
)
from ._reference_paths import Weights, slope_weights
from ._reference_tableaux import EMBEDDED, Embedded
from .models.options import INTERPOLATIONS

__all__ = [
    "ACTIVATIONS", "ADAPTIVE_METHODS", "FIELDS", "INTERPOLATIONS", "LOSSES", "METHODS",
    "NonFiniteError", "StepSizeError", "cde_grids", "cde_logits", "cde_loss_and_grad",
    "cde_solve", "cde_vjp",
]  # fmt: skip

ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "tsit5", "bosh3")
_Opts = tuple[str, str, str | None, str]  # field, activation, output activation, interpolation
_EPS = float(np.finfo(np.float64).eps)


class StepSizeError(ValueError):
    """The adaptive controller failed for ``sample`` at time ``t`` (``max_steps`` attempts
    or a step below the resolution of ``t``); ``dt`` and ``error`` of the last attempt."""

    def __init__(self, sample: int, t: float, dt: float, error: float, reason: str) -> None:
        super().__init__(
            f"adaptive step size control failed for sample {sample} at t = {t!r}: {reason} "
            f"(last step dt = {dt!r}, error estimate {error!r})"
        )
        self.sample, self.t, self.dt, self.error = sample, t, dt, error


class NonFiniteError(StepSizeError, FloatingPointError):
    """A :class:`StepSizeError` whose sample's last rejected trial state was not finite."""


def _solution_tableau(method: str) -> Tableau:
    """The solution stages (all but the FSAL one) as a fixed-step tableau."""
    A, b, _, _ = EMBEDDED[method]
    return A[:-1], b[:-1]


def _stage(
    work: Params, z: np.ndarray, sample: _Sample, seg: _Step, tau: float, node: float, h: float,
    o: _Options,
) -> np.ndarray:  # fmt: skip
    """``K = G(z) h dX/dt(tau + node h)`` (1, S) on the segment's path interval and piece."""
    path = sample.path
    weights = slope_weights(path, seg.interval, tau + node * h, o.interpolation)
    v = sum(w * path.slopes[j] for j, w in weights)
    F, _ = _field_fwd(work, seg.piece, z, o)
    G = F.reshape(z.shape[1], path.x.shape[1])
    return np.asarray((G @ (h * v))[None, :])


def _trial(
    work: Params, z: np.ndarray, sample: _Sample, seg: _Step, tau: float, h: float,
    tab: Embedded, o: _Options, rtol: float, atol: float,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """A trial step: the new state and its error norm E (NaN if the state is not finite)."""
    A, b, e, _ = tab
    ks: list[np.ndarray] = []
    for row in A:
        y = z
        for a_il, k_l in zip(row, ks):
            if a_il != 0.0:
                y = y + a_il * k_l
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow: E = NaN, rejected
            ks.append(_stage(work, y, sample, seg, tau, sum(row), h, o))
    znew, err = z, np.zeros_like(z)
    with np.errstate(over="ignore", invalid="ignore"):
        for b_i, e_i, k_i in zip(b, e, ks):
            if b_i != 0.0:
                znew = znew + b_i * k_i
            if e_i != 0.0:
                err = err + e_i * k_i
    if not np.isfinite(znew).all():
        return znew, float("nan")
    scale = atol + rtol * np.maximum(np.abs(z), np.abs(znew)).astype(np.float64)
    return znew, float(np.sqrt(np.mean((err.astype(np.float64) / scale) ** 2)))


def _starting_step(
    work: Params, z: np.ndarray, sample: _Sample, seg: _Step, k: int, o: _Options,
    rtol: float, atol: float,
) -> float:  # fmt: skip
    """Hairer's starting step (docs/adaptive.md) with dX/dt at t_0."""
    t0 = float(sample.grid[0])
    f0 = _stage(work, z, sample, seg, t0, 0.0, 1.0, o).astype(np.float64)
    sc = atol + rtol * np.abs(z.astype(np.float64))
    d0 = float(np.sqrt(np.mean((z / sc) ** 2)))
    d1 = float(np.sqrt(np.mean((f0 / sc) ** 2)))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    x1 = z + (h0 * f0).astype(z.dtype)
    f1 = _stage(work, x1, sample, seg, t0, 0.0, 1.0, o).astype(np.float64)
    d2 = float(np.sqrt(np.mean(((f1 - f0) / sc) ** 2))) / h0
    dmax = max(d1, d2)
    h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / k)
    return min(100.0 * h0, h1)


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


def _adaptive_sample(
    work: Params, i: int, sample: _Sample, tab: Embedded, o: _Options, rtol: float,
    atol: float, first_step: float | None, max_steps: int,
) -> tuple[_Sample, tuple[int, int, int]]:  # fmt: skip
    """The accepted steps of sample i (``sample`` holds one step per breakpoint interval)
    and its counts (nfev, accepted, rejected)."""
    k = tab[3]
    breaks, segs = sample.grid, sample.steps
    z = sample.path.x[:1] @ work["A"].T + work["a"]
    nfev = 0
    if first_step is None:
        h, nfev = _starting_step(work, z, sample, segs[0], k, o, rtol, atol), 2
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
        s = segs[seg]
        znew, E = _trial(work, z, sample, s, tnow, dt, tab, o, rtol, atol)
        nfev += len(tab[0])
        ok, h, E_prev = _controller(E, E_prev, dt, k)
        if ok:
            steps.append(_Step(tnow, dt, s.piece, s.interval))
            z, tnow, accepted = znew, t_new, accepted + 1
            grid.append(tnow)
            seg += tnow == q
        else:
            rejected, bad_trial = rejected + 1, not np.isfinite(E)
    return _Sample(sample.path, steps, np.asarray(grid)), (nfev, accepted, rejected)


def _replay_sample(i: int, sample: _Sample, grid: np.ndarray) -> _Sample:
    """Sample i's steps on a given grid (checked: its ends, increasing, every breakpoint)."""
    breaks, g = sample.grid, np.asarray(grid, dtype=np.float64)
    ok = g.ndim == 1 and g.size >= 2 and g[0] == breaks[0] and g[-1] == breaks[-1]
    if not (ok and (np.diff(g) > 0).all() and np.isin(breaks, g).all()):
        raise ValueError(
            f"grid[{i}] must be strictly increasing from the sample's first to its last observed "
            "time and contain every knot, piece boundary and output time between them"
        )
    steps = []
    for p, q in zip(g[:-1], g[1:]):
        seg = sample.steps[int(np.searchsorted(breaks, p, side="right")) - 1]
        steps.append(_Step(float(p), float(q) - float(p), seg.piece, seg.interval))
    return _Sample(sample.path, steps, g)


def _adaptive_prepare(
    params: Params, U: np.ndarray, times: np.ndarray, t: np.ndarray | None, opts: _Opts,
    method: str, adaptive: tuple[float, float, float | None, int],
    grid: list[np.ndarray] | None = None, window: tuple[float, float] | None = None,
) -> tuple[Params, np.ndarray, list[_Sample], np.ndarray | None, np.ndarray, _Options]:  # fmt: skip
    """Checked inputs, every sample's accepted steps, the counts (N, 3) and the replay's
    options (the solution stages of ``method``)."""
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
    o = _options(params, *opts, "rk4", 1)._replace(window=window)
    work, Uw, segments, tout = _prepare(params, U, times, t, o)
    tab = EMBEDDED[method]
    samples, counts = [], []
    if grid is not None:  # a replay of given accepted grids
        if len(grid) != len(segments):
            raise ValueError(f"grid must hold one array of step times per sample ({len(segments)})")
        samples = [_replay_sample(i, s, g) for i, (s, g) in enumerate(zip(segments, grid))]
        counts = [(0, len(s.steps), 0) for s in samples]
    for i, sample in enumerate(segments if grid is None else []):
        s, c = _adaptive_sample(work, i, sample, tab, o, rtol, atol, first_step, int(max_steps))
        samples.append(s)
        counts.append(c)
    replay = o._replace(tableau=_solution_tableau(method))
    return work, Uw, samples, tout, np.asarray(counts, dtype=np.int64), replay


def _f_and_vjp(
    work: Params,
    z: np.ndarray,
    abar: np.ndarray,
    sample: _Sample,
    step: _Step,
    time: float,
    o: _Options,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray, Weights]:
    """``f = G(z) v(time)`` (1, S), ``J^T abar`` (1, S), ``(df/dtheta)^T abar`` (piece's
    arrays), ``(df/dv)^T abar = G^T abar`` (C,) and the slope weights of ``v``."""
    path = sample.path
    weights = slope_weights(path, step.interval, time, o.interpolation)
    v = sum(w * path.slopes[j] for j, w in weights)
    F, cache = _field_fwd(work, step.piece, z, o)
    G = F.reshape(z.shape[1], path.x.shape[1])
    Fbar = (abar[0][:, None] * v[None, :]).reshape(1, -1)
    jta, pgrads = _field_vjp(work, step.piece, cache, Fbar, o)
    return (G @ v)[None, :], jta, pgrads, G.T @ abar[0], weights


def _adjoint_step(
    work: Params, z1: np.ndarray, a1: np.ndarray, sample: _Sample, step: _Step, o: _Options,
    grads: dict[str, np.ndarray], slopes_bar: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One backward step of the continuous adjoint from ``tau + h`` to ``tau`` with the
    step's tableau: ``(z, a)' = (G(z) v, -J^T a)`` integrated with step ``-h``, and the
    quadratures ``g += h sum_i b_i (df/dtheta)(Z_i)^T A_i``, ``slopes_bar += h sum_i b_i
    (dv/dslopes)^T G(Z_i)^T A_i`` of its stages."""
    A, b = o.tableau
    h = step.h
    kz: list[np.ndarray] = []
    ka: list[np.ndarray] = []  # J^T A_i: a' = -J^T a, so A_i = a1 + h sum a_il ka_l
    for row in A:
        Z, Aa = z1, a1
        for a_il, kz_l, ka_l in zip(row, kz, ka):
            if a_il != 0.0:
                Z, Aa = Z - (h * a_il) * kz_l, Aa + (h * a_il) * ka_l
        time = step.tau + h - sum(row) * h
        f, jta, pgrads, vbar, weights = _f_and_vjp(work, Z, Aa, sample, step, time, o)
        kz.append(f)
        ka.append(jta)
        i = len(kz) - 1
        if b[i] != 0.0:
            for key, g in pgrads.items():
                grads[key][step.piece] += (h * b[i]) * g
            for j, w in weights:
                slopes_bar[j] += (h * b[i] * float(w)) * vbar
    z0, a0 = z1, a1
    for b_i, kz_i, ka_i in zip(b, kz, ka):
        if b_i != 0.0:
            z0, a0 = z0 - (h * b_i) * kz_i, a0 + (h * b_i) * ka_i
    return z0, a0


def _adjoint(
    work: Params, U: np.ndarray, samples: list[_Sample], tout: np.ndarray | None,
    cotangent: np.ndarray, o: _Options,
) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """The continuous adjoint (backsolve) over each sample's grid reversed: grads of A, a and
    the field (working dtype) and dU, as :func:`_vjp` computes the discrete ones."""
    grads = {key: np.zeros_like(value) for key, value in work.items()}
    dU = np.zeros_like(U)
    for i, sample in enumerate(samples):
        z = _forward(work, sample, o)[-1]
        bars = [np.zeros_like(z) for _ in range(len(sample.steps) + 1)]
        if tout is None:
            bars[-1] = bars[-1] + cotangent[i]
        else:
            for r, j in enumerate(_rows(sample, tout)):
                bars[j] = bars[j] + cotangent[r, i]
        path = sample.path
        slopes_bar = np.zeros_like(path.slopes)
        a = bars[-1]
        for j in reversed(range(len(sample.steps))):
            z, a = _adjoint_step(work, z, a, sample, sample.steps[j], o, grads, slopes_bar)
            a = a + bars[j]
        grads["A"] += a.T @ path.x[:1]  # z0 = A x_0 + a
        grads["a"] += a[0]
        xbar = np.zeros_like(path.x)
        xbar[0] += (a @ work["A"])[0]
        dt = np.diff(path.t).astype(U.dtype)[:, None]
        xbar[1:] += slopes_bar / dt
        xbar[:-1] -= slopes_bar / dt
        dU[i, : path.x.shape[0]] = np.einsum("ckj,kc->jc", path.fill.astype(U.dtype), xbar)
    return grads, dU


def _solved(
    params: Params, U: np.ndarray, times: np.ndarray, t: np.ndarray | None,
    opts: _Opts, method: str, substeps: int,
    adaptive: tuple[float, float, float | None, int], grid: list[np.ndarray] | None,
    window: tuple[float, float] | None,
) -> tuple[Params, np.ndarray, list[_Sample], np.ndarray | None, _Options]:  # fmt: skip
    """Checked inputs and every sample's steps, for a fixed-step or an adaptive method."""
    if method in ADAPTIVE_METHODS:
        work, Uw, samples, tout, _, o = _adaptive_prepare(
            params, U, times, t, opts, method, adaptive, grid, window
        )
        return work, Uw, samples, tout, o
    if grid is not None:
        raise ValueError("grid is for the adaptive methods (dopri5, tsit5, bosh3)")
    o = _options(params, *opts, method, substeps)._replace(window=window)
    work, Uw, samples, tout = _prepare(params, U, times, t, o)
    return work, Uw, samples, tout, o


def _opts(field: str, activation: str, rho: str | None, interpolation: str) -> _Opts:
    return field, activation, rho, interpolation


def cde_solve(
    params: Params, U: np.ndarray, times: np.ndarray, *, field: str, activation: str = "tanh",
    output_activation: str | None = None, interpolation: str = "cubic", method: str = "rk4",
    substeps: int = 1, t: np.ndarray | None = None, rtol: float = 1e-7, atol: float = 1e-9,
    first_step: float | None = None, max_steps: int = 100000, grid: list[np.ndarray] | None = None,
    window: tuple[float, float] | None = None,
) -> np.ndarray:  # fmt: skip
    """States of the neural CDE at each sample's end time ``T_i``, or at the times ``t``.

    Parameters
    ----------
    params, U, times, field, activation, output_activation, interpolation, substeps, t
        As ``_reference_cde.cde_solve`` (``substeps``: fixed-step methods only).
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}
    rtol, atol, first_step, max_steps : float, float, float or None, int
        The adaptive methods' tolerances, first step (None: Hairer's heuristic) and the
        most attempted steps per sample (module docstring).
    grid : list of ndarray, optional
        Adaptive methods: replay these accepted step times (one array per sample, as
        :func:`cde_grids` returns) without error control.
    window : (float, float), optional
        ``(t_start, t_end)``: the K pieces split it equally (a time before or after it takes
        the first or last piece); default the call's ``[min_i t_{i,0}, max_i T_i]``.

    Returns
    -------
    ndarray
        (N, S), or (R, N, S) with ``t``.

    Raises
    ------
    ValueError
        Naming the argument; StepSizeError / NonFiniteError (ValueErrors) when the step
        size control fails.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = {"A": rng.normal(size=(2, 3)), "a": np.zeros(2),
    ...      "W": 0.1 * rng.normal(size=(1, 6, 2)), "b": np.zeros((1, 6))}
    >>> cde_solve(p, rng.normal(size=(4, 5, 3)), np.arange(5.0), field="outside",
    ...           method="dopri5").shape
    (4, 2)
    """
    opts = _opts(field, activation, output_activation, interpolation)
    adaptive = (rtol, atol, first_step, max_steps)
    work, _, samples, tout, o = _solved(
        params, U, times, t, opts, method, substeps, adaptive, grid, window
    )
    states = [_forward(work, sample, o) for sample in samples]
    if tout is None:
        return np.stack([z[-1][0] for z in states])
    rows = [[z[j][0] for j in _rows(sample, tout)] for z, sample in zip(states, samples)]
    return np.stack([np.stack(r) for r in rows], axis=1)


def cde_grids(
    params: Params, U: np.ndarray, times: np.ndarray, *, field: str, activation: str = "tanh",
    output_activation: str | None = None, interpolation: str = "cubic", method: str = "dopri5",
    substeps: int = 1, t: np.ndarray | None = None, rtol: float = 1e-7, atol: float = 1e-9,
    first_step: float | None = None, max_steps: int = 100000,
    window: tuple[float, float] | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:  # fmt: skip
    """Each sample's accepted step times (float64, ``t_{i,0}`` .. ``T_i``) and the counts
    (N, 3) int64 of function evaluations, accepted and rejected steps of an adaptive method;
    the arguments as :func:`cde_solve`.

    Examples
    --------
    >>> p = {"A": np.ones((2, 1)), "a": np.zeros(2), "W": np.zeros((1, 2, 2)), "b": np.ones((1, 2))}
    >>> grids, counts = cde_grids(p, np.ones((1, 3, 1)), np.arange(3.0), field="inside",
    ...                           first_step=1.0)
    >>> grids[0], counts.shape
    (array([0., 1., 2.]), (1, 3))
    """
    _check("method", method, ADAPTIVE_METHODS)
    opts = _opts(field, activation, output_activation, interpolation)
    adaptive = (rtol, atol, first_step, max_steps)
    _, _, samples, _, counts, _ = _adaptive_prepare(
        params, U, times, t, opts, method, adaptive, None, window
    )
    return [s.grid for s in samples], counts


def cde_vjp(
    params: Params, U: np.ndarray, times: np.ndarray, cotangent: np.ndarray, *, field: str,
    activation: str = "tanh", output_activation: str | None = None, interpolation: str = "cubic",
    method: str = "rk4", substeps: int = 1, t: np.ndarray | None = None, rtol: float = 1e-7,
    atol: float = 1e-9, first_step: float | None = None, max_steps: int = 100000,
    grid: list[np.ndarray] | None = None, gradient: str = "discrete",
    window: tuple[float, float] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """VJP of :func:`cde_solve`: the exact reverse sweep of the discrete map (for an adaptive
    method through its accepted steps, the grid held constant), or the continuous adjoint.

    Parameters
    ----------
    params, U, times, field, activation, output_activation, interpolation, method, substeps, t
        As :func:`cde_solve`; also ``rtol``, ``atol``, ``first_step``, ``max_steps``, ``grid``,
        ``window``.
    cotangent : ndarray, shape (N, S) or (R, N, S)
        On what :func:`cde_solve` returns.
    gradient : {"discrete", "adjoint"}, default "discrete"
        ``"adjoint"``: backsolve ``(z, a)' = (G(z) dX/dt, -J^T a)`` from ``z(T_i)`` over the
        sample's step grid reversed (the forward's accepted grid for an adaptive method) with
        the same tableau, ``a`` jumping by the cotangent at output times; the parameters' and
        the path's gradients are the quadratures of its stages. It converges to the discrete
        gradient as the steps shrink; it is not the gradient of the computed solution.

    Returns
    -------
    grads : dict of ndarray
        Keyed, shaped and typed as ``params``.
    dU : ndarray, shape (N, L, C)
        Exactly 0 where ``U`` is NaN.

    Examples
    --------
    >>> p = {"A": np.ones((2, 3)), "a": np.zeros(2), "W": np.ones((1, 6, 2)), "b": np.ones((1, 6))}
    >>> grads, dU = cde_vjp(p, np.ones((4, 5, 3)), np.arange(5.0), np.ones((4, 2)),
    ...                     field="inside", method="bosh3")
    >>> grads["W"].shape, dU.shape
    ((1, 6, 2), (4, 5, 3))
    """
    _check("gradient", gradient, ("discrete", "adjoint"))
    opts = _opts(field, activation, output_activation, interpolation)
    adaptive = (rtol, atol, first_step, max_steps)
    work, Uw, samples, tout, o = _solved(
        params, U, times, t, opts, method, substeps, adaptive, grid, window
    )
    shape: tuple[int, ...] = (Uw.shape[0], work["a"].size)
    shape = shape if tout is None else (tout.size, *shape)
    v = np.asarray(cotangent)
    if v.shape != shape:
        raise ValueError(f"cotangent must have the shape {shape} of cde_solve's output")
    sweep = _vjp if gradient == "discrete" else _adjoint
    grads, dU = sweep(work, Uw, samples, tout, v.astype(Uw.dtype, copy=False), o)
    return _keyed_as(params, grads), dU.astype(np.asarray(U).dtype, copy=False)


def cde_logits(
    params: Params, U: np.ndarray, times: np.ndarray, *, field: str, activation: str = "tanh",
    output_activation: str | None = None, interpolation: str = "cubic", method: str = "rk4",
    substeps: int = 1, rtol: float = 1e-7, atol: float = 1e-9, first_step: float | None = None,
    max_steps: int = 100000, grid: list[np.ndarray] | None = None,
    window: tuple[float, float] | None = None,
) -> np.ndarray:  # fmt: skip
    """Logits ``z(T_i) P^T + c``, (N, O); the arguments as :func:`cde_solve`."""
    zT = cde_solve(
        params, U, times, field=field, activation=activation,
        output_activation=output_activation, interpolation=interpolation, method=method,
        substeps=substeps, rtol=rtol, atol=atol, first_step=first_step, max_steps=max_steps,
        grid=grid, window=window,
    )  # fmt: skip
    P, c = (np.asarray(params[key]).astype(zT.dtype, copy=False) for key in ("P", "c"))
    return np.asarray(zT @ P.T + c)


def cde_loss_and_grad(
    params: Params, U: np.ndarray, y: np.ndarray, times: np.ndarray, *, field: str,
    activation: str = "tanh", output_activation: str | None = None, interpolation: str = "cubic",
    method: str = "rk4", substeps: int = 1, loss: str = "cross_entropy", weight_decay: float = 0.0,
    rtol: float = 1e-7, atol: float = 1e-9, first_step: float | None = None,
    max_steps: int = 100000, grid: list[np.ndarray] | None = None, gradient: str = "discrete",
    window: tuple[float, float] | None = None,
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Data loss of :func:`cde_logits` plus ``weight_decay`` times the squared field arrays,
    and its gradient (grads keyed as ``params``, dU); ``gradient`` as :func:`cde_vjp`, the
    other arguments as ``_reference_cde.cde_loss_and_grad`` and :func:`cde_solve`.
    """
    _check("loss", loss, LOSSES)
    _check("gradient", gradient, ("discrete", "adjoint"))
    opts = _opts(field, activation, output_activation, interpolation)
    adaptive = (rtol, atol, first_step, max_steps)
    work, Uw, samples, _, o = _solved(
        params, U, times, None, opts, method, substeps, adaptive, grid, window
    )
    zT = np.stack([_forward(work, sample, o)[-1][0] for sample in samples])
    P, c = (np.asarray(params[key]).astype(zT.dtype, copy=False) for key in ("P", "c"))
    value, g = _data_loss_and_grad(zT @ P.T + c, y, loss)
    sweep = _vjp if gradient == "discrete" else _adjoint
    grads, dU = sweep(work, Uw, samples, None, g @ P, o)
    grads["P"], grads["c"] = g.T @ zT, g.sum(axis=0)
    for key in _FIELD_KEYS[field]:
        theta = np.asarray(params[key])
        value += float(weight_decay) * float(np.sum(np.square(theta)))
        grads[key] = grads[key] + (2 * float(weight_decay)) * theta.astype(zT.dtype)
    return value, _keyed_as(params, grads), dU.astype(np.asarray(U).dtype, copy=False)
