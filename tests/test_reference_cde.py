"""Tests of the neural CDE's NumPy reference (python/resode/reference_cde.py).

Gradients against central differences in float64 (every parameter and ``U``; NaNs inside the
series, unequal lengths, per-sample times, pieces > 1, all fields, both interpolations, an
output activation, the ``t=`` output); the paths and the NaN fill by hand; convergence orders;
the step grid (knots, piece boundaries, output times); and agreement with torchcde's
``cdeint`` on shared weights (states and autograd gradients).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from resode import reference as ref
from resode import reference_cde as rc

FD_EPS = 1e-6
FD_TOL = 1e-7  # max |analytic - numeric| relative to the largest gradient entry
FIELDS = {"outside": None, "inside": None, "bottleneck": 3}

Params = dict[str, np.ndarray]


def make_params(
    rng: np.random.Generator, field: str, S: int, C: int, K: int = 1, O: int = 3
) -> Params:
    """Random params of scale ~0.5/sqrt(S): states stay O(1) on paths of unit slope."""
    s = 0.5 / math.sqrt(S)
    H = FIELDS[field]
    if H is None:
        shapes = {"W": (K, S * C, S), "b": (K, S * C)}
    else:
        shapes = {"W1": (K, H, S), "b1": (K, H), "W2": (K, S * C, H), "b2": (K, S * C)}
    params = {key: s * rng.standard_normal(shape) for key, shape in shapes.items()}
    params |= {"A": rng.standard_normal((S, C)), "a": 0.3 * rng.standard_normal(S)}
    params |= {"P": rng.standard_normal((O, S)), "c": rng.standard_normal(O)}
    return params


def make_series(rng: np.random.Generator, N: int = 3, L: int = 6, C: int = 2) -> np.ndarray:
    """Series with NaNs inside (also in the first row of a channel) and unequal lengths."""
    U = 0.5 * rng.standard_normal((N, L, C))
    U[0, 2, 1] = U[1, 0, 0] = U[2, 3, 0] = np.nan
    U[1, 4:, :] = np.nan  # sample 1: length 4
    U[2, 5, :] = np.nan  # sample 2: length 5
    U[2, 4, 1] = np.nan  # a NaN in the last observed row: filled with the last value
    return U


def make_times(rng: np.random.Generator, N: int = 3, L: int = 6) -> np.ndarray:
    """Per-sample times, strictly increasing with gaps in [0.5, 1.0]; NaN on sample 1's
    padding, a (meaningless) time on sample 2's."""
    times = rng.uniform(0.0, 0.5, size=(N, 1)) + np.cumsum(rng.uniform(0.5, 1.0, (N, L)), axis=1)
    times[1, 4:] = np.nan
    return times


def window(times: np.ndarray) -> tuple[float, float]:
    """[min t_0, max T_i] of make_series' samples (lengths 6, 4, 5) at per-sample times."""
    return float(np.min(times[:, 0])), max(times[0, 5], times[1, 3], times[2, 4])


def fd_grad(fun: Callable[[Params], float], arrays: Params) -> Params:
    """Central differences of ``fun`` wrt every non-NaN entry of every array (NaN: 0)."""
    out = {}
    for key, value in arrays.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            if np.isnan(value[idx]):
                continue
            pert = {k: v.copy() for k, v in arrays.items()}
            pert[key][idx] = value[idx] + FD_EPS
            f_plus = fun(pert)
            pert[key][idx] = value[idx] - FD_EPS
            g[idx] = (f_plus - fun(pert)) / (2 * FD_EPS)
        out[key] = g
    return out


def assert_grads_close(analytic: Params, numeric: Params) -> None:
    scale = max(float(np.abs(g).max()) for g in numeric.values())
    for key, g in numeric.items():
        assert analytic[key].shape == g.shape, key
        err = float(np.abs(analytic[key] - g).max()) / scale
        assert err < FD_TOL, f"{key}: relative error {err:.2e}"


def make_keys(field: str) -> tuple[str, ...]:
    return ("W", "b") if FIELDS[field] is None else ("W1", "b1", "W2", "b2")


# --------------------------------------------------------------------------- gradients

CASES = [(f, i, "rk4") for f in FIELDS for i in rc.INTERPOLATIONS]
CASES += [("outside", i, m) for i in rc.INTERPOLATIONS for m in ("euler", "midpoint")]


@pytest.mark.parametrize(("field", "interpolation", "method"), CASES)
@pytest.mark.parametrize("with_t", [False, True])
def test_vjp_matches_central_differences(
    field: str, interpolation: str, method: str, with_t: bool
) -> None:
    """cde_vjp wrt every field array, A, a and U (NaNs, unequal lengths, per-sample times,
    2 pieces, 2 substeps); dU is exactly 0 at NaN entries."""
    rng = np.random.default_rng(CASES.index((field, interpolation, method)))
    U, times = make_series(rng), make_times(rng)
    params = {k: v for k, v in make_params(rng, field, 3, 2, K=2).items() if k not in ("P", "c")}
    kw: dict[str, Any] = dict(field=field, interpolation=interpolation, method=method)
    kw |= dict(substeps=2, output_activation="tanh" if field != "inside" else None)
    if with_t:  # output times before, inside and after the samples' windows
        lo, hi = window(times)
        kw["t"] = np.array([lo, lo + 0.05, lo + 0.4 * (hi - lo), lo + 0.7 * (hi - lo), hi])
    out = rc.cde_solve(params, U, times, **kw)
    assert out.shape == ((5, 3, 3) if with_t else (3, 3))
    v = rng.standard_normal(out.shape)
    grads, dU = rc.cde_vjp(params, U, times, v, **kw)
    assert grads.keys() == params.keys() and dU.shape == U.shape
    assert np.all(dU[np.isnan(U)] == 0.0)  # exactly
    arrays = {**params, "U": U}

    def objective(q: Params) -> float:
        p = {k: val for k, val in q.items() if k != "U"}
        return float(np.sum(v * rc.cde_solve(p, q["U"], times, **kw)))

    assert_grads_close({**grads, "U": dU}, fd_grad(objective, arrays))


@pytest.mark.parametrize("loss", rc.LOSSES)
@pytest.mark.parametrize("field", ["outside", "bottleneck"])
def test_loss_and_grad_matches_central_differences(loss: str, field: str) -> None:
    """Loss = reference.data_loss of the logits + weight decay on the field's arrays only."""
    rng = np.random.default_rng(7)
    U, times = make_series(rng), make_times(rng)[0]  # shared times
    params = make_params(rng, field, 3, 2, K=2)
    y = rng.integers(0, 3, 3) if loss == "cross_entropy" else rng.standard_normal((3, 3))
    kw: dict[str, Any] = dict(field=field, interpolation="cubic", loss=loss, weight_decay=0.03)
    value, grads, dU = rc.cde_loss_and_grad(params, U, y, times, **kw)
    logits = rc.cde_logits(params, U, times, field=field)
    decay = 0.03 * sum(float(np.sum(params[k] ** 2)) for k in make_keys(field))
    assert value == pytest.approx(ref.data_loss(logits, y, loss) + decay, rel=1e-14)
    assert np.all(dU[np.isnan(U)] == 0.0)

    def objective(q: Params) -> float:
        p = {k: val for k, val in q.items() if k != "U"}
        return rc.cde_loss_and_grad(p, q["U"], y, times, **kw)[0]

    assert_grads_close({**grads, "U": dU}, fd_grad(objective, {**params, "U": U}))


def test_float32_follows_float64() -> None:
    rng = np.random.default_rng(3)
    U, times = make_series(rng), make_times(rng)
    params = make_params(rng, "bottleneck", 3, 2, K=2)
    kw: dict[str, Any] = dict(field="bottleneck", substeps=2)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    z32 = rc.cde_solve(p32, U.astype(np.float32), times.astype(np.float32), **kw)
    assert z32.dtype == np.float32
    np.testing.assert_allclose(z32, rc.cde_solve(params, U, times, **kw), rtol=1e-4, atol=1e-5)
    v = rng.standard_normal(z32.shape)
    g32, dU32 = rc.cde_vjp(p32, U.astype(np.float32), times, v, **kw)
    g64, dU64 = rc.cde_vjp(params, U, times, v, **kw)
    assert dU32.dtype == np.float32 and g32["W1"].dtype == np.float32
    np.testing.assert_allclose(dU32, dU64, rtol=1e-4, atol=1e-5)
    for key in g64:
        np.testing.assert_allclose(g32[key], g64[key], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- paths and grid


def identity_model(C: int, K: int = 1) -> Params:
    """S = C, A = I, a = 0 and the constant field G = I: dz/dt = dX/dt, so z(t) = X(t)
    wherever the method integrates dX/dt exactly."""
    eye = np.eye(C).reshape(1, C * C)
    return {
        "A": np.eye(C),
        "a": np.zeros(C),
        "W": np.zeros((K, C * C, C)),
        "b": np.repeat(eye, K, 0),
    }


IDENTITY: dict[str, Any] = dict(field="outside", activation="identity")


def test_nan_fill_by_hand() -> None:
    """Inside a sample a NaN is filled linearly in time between the channel's neighbours,
    with the first (last) observation before (after) them; trailing all-NaN rows are
    padding. Linear paths are integrated exactly by every method: z(t_k) = x_k."""
    nan = np.nan
    U = np.array([[[nan, 1.0], [2.0, nan], [nan, nan], [8.0, 4.0], [nan, 0.0], [nan, nan]]])
    times = np.array([0.0, 1.0, 3.0, 4.0, 6.0, 7.0])
    filled = np.array([[2.0, 1.0], [2.0, 1.75], [6.0, 3.25], [8.0, 4.0], [8.0, 0.0]])
    for method in rc.METHODS:
        z = rc.cde_solve(identity_model(2), U, times, **IDENTITY, interpolation="linear",
                         method=method, t=times[:5])  # fmt: skip
        np.testing.assert_allclose(z[:, 0], filled, rtol=0, atol=1e-14)
        # between the knots too, and with substeps: X is linear there
        t = np.array([0.5, 2.0, 2.9, 5.5])
        z = rc.cde_solve(identity_model(2), U, times, **IDENTITY, interpolation="linear",
                         method=method, substeps=3, t=t)  # fmt: skip
        X = np.stack([np.interp(t, times[:5], filled[:, c]) for c in range(2)], axis=1)
        np.testing.assert_allclose(z[:, 0], X, rtol=0, atol=1e-14)
    # z(T) = x_4 = (U[3, 0], U[4, 1]): dU is the transpose of the fill, 0 at the NaNs
    _, dU = rc.cde_vjp(identity_model(2), U, times, np.array([[1.0, 10.0]]), **IDENTITY,
                       interpolation="linear")  # fmt: skip
    expected = np.zeros_like(U)
    expected[0, 3, 0], expected[0, 4, 1] = 1.0, 10.0
    np.testing.assert_allclose(dU, expected, rtol=0, atol=1e-14)
    assert np.all(dU[np.isnan(U)] == 0.0)


def test_cubic_path_by_hand() -> None:
    """Hermite cubic with backward differences: on [t_k, t_{k+1}] the cubic with values
    x_k, x_{k+1} and slopes m_k = (x_k - x_{k-1}) / (t_k - t_{k-1}) (m_0 = m_1),
    m_{k+1}; rk4 (Simpson on the quadratic dX/dt) integrates it exactly."""
    times = np.array([0.0, 1.0, 3.0, 3.5])
    x = np.array([0.0, 1.0, 5.0, 4.0])
    m = np.array([1.0, 1.0, 2.0, -2.0])  # backward differences, m_0 = m_1

    def hermite(s: float) -> float:
        k = min(int(np.searchsorted(times, s, side="right")) - 1, 2)
        dt, u = times[k + 1] - times[k], (s - times[k]) / (times[k + 1] - times[k])
        h00, h01 = 2 * u**3 - 3 * u**2 + 1, -2 * u**3 + 3 * u**2  # the Hermite basis
        h10, h11 = u**3 - 2 * u**2 + u, u**3 - u**2
        return float(h00 * x[k] + h10 * dt * m[k] + h01 * x[k + 1] + h11 * dt * m[k + 1])

    t = np.array([0.0, 0.3, 1.0, 1.5, 2.9, 3.2, 3.5])
    z = rc.cde_solve(identity_model(1), x.reshape(1, 4, 1), times, **IDENTITY, t=t)
    np.testing.assert_allclose(z[:, 0, 0], [hermite(s) for s in t], rtol=0, atol=1e-13)


def test_samples_are_independent_and_times_may_be_shared() -> None:
    """With one piece each sample's state depends on its own rows only: padding and the
    other samples change nothing, and shared times equal per-sample copies of them."""
    rng = np.random.default_rng(11)
    U, times = make_series(rng), make_times(rng)
    params = make_params(rng, "outside", 3, 2)
    kw: dict[str, Any] = dict(field="outside", substeps=2)
    batch = rc.cde_solve(params, U, times, **kw)
    for i, n in enumerate((6, 4, 5)):
        alone = rc.cde_solve(params, U[i : i + 1, :n], times[i, :n], **kw)
        np.testing.assert_array_equal(batch[i], alone[0])
    shared = rc.cde_solve(params, U, times[0], **kw)
    np.testing.assert_array_equal(shared, rc.cde_solve(params, U, np.tile(times[0], (3, 1)), **kw))


def test_steps_land_on_piece_boundaries_and_output_times() -> None:
    """Piece k's weights act on [t_lo + k w, t_lo + (k+1) w] exactly: a second piece with a
    zero field freezes the state at the boundary, which equals the one-piece solve's output
    at that time (the same step grid, with the boundary as an output time)."""
    rng = np.random.default_rng(5)
    U, times = make_series(rng), make_times(rng)
    lo, hi = window(times)
    one = make_params(rng, "outside", 3, 2, K=1)
    two = {**one, **{k: np.concatenate([one[k], 0 * one[k]]) for k in ("W", "b")}}
    kw: dict[str, Any] = dict(field="outside", activation="tanh", substeps=3)
    frozen = rc.cde_solve(two, U, times, **kw)
    boundary = lo + 1 * ((hi - lo) / 2)  # as the contract forms it: t_lo + j (t_hi - t_lo) / K
    at_boundary = rc.cde_solve(one, U, times, t=np.array([boundary]), **kw)[0]
    np.testing.assert_array_equal(frozen, at_boundary)
    z_t = rc.cde_solve(one, U, times, t=np.array([lo, hi]), **kw)
    z0 = [rc.cde_solve(one, U[i : i + 1], times[i], t=times[i, :1], **kw)[0, 0] for i in range(3)]
    np.testing.assert_array_equal(z_t[0], np.stack(z0))  # before a start: z(t_0)
    np.testing.assert_array_equal(z_t[1], rc.cde_solve(one, U, times, **kw))  # after: z(T_i)


@pytest.mark.parametrize(
    ("method", "order", "n"), [("euler", 1, 32), ("midpoint", 2, 8), ("rk4", 4, 8)]
)
@pytest.mark.parametrize("interpolation", rc.INTERPOLATIONS)
def test_convergence_order_on_a_smooth_path(
    method: str, order: int, n: int, interpolation: str
) -> None:
    """Steps land on the knots, and between them dX/dt is polynomial (the Hermite cubic's,
    continuous at the knots, or the linear path's constant): the observed order in
    ``substeps``, ``log2(|z_n - z_2n| / |z_2n - z_4n|)``, is the method's."""
    rng = np.random.default_rng(2)
    s = np.linspace(0.0, 3.0, 7)
    U = np.stack([np.stack([np.sin(s + p), np.cos(2 * s - p)], axis=1) for p in (0.0, 1.0)])
    params = make_params(rng, "bottleneck", 3, 2)
    params |= {k: 3 * params[k] for k in ("W1", "b1", "W2", "b2")}  # away from the linear regime
    kw: dict[str, Any] = dict(field="bottleneck", method=method, output_activation="tanh")
    kw["interpolation"] = interpolation
    z = [rc.cde_solve(params, U, s, substeps=m, **kw) for m in (n, 2 * n, 4 * n)]
    observed = math.log2(np.abs(z[0] - z[1]).max() / np.abs(z[1] - z[2]).max())
    assert observed == pytest.approx(order, abs=0.25)


BAD_INPUTS = [  # (what to change, the argument the error names)
    (dict(U=np.full((2, 4, 2), np.nan)), "U"),  # a sample without an observed row
    (dict(row=(0, slice(1, None))), "U"),  # a sample with 1 observed row
    (dict(channel=(1, 0)), "U"),  # a channel never observed in a sample
    (dict(times=np.array([0.0, 1.0, 1.0, 2.0])), "times"),
    (dict(times=np.zeros((3, 4))), "times"),
    (dict(t=np.array([-1.0, 0.5])), "t"),
    (dict(t=np.array([1.0, 0.5])), "t"),
    (dict(t=np.array([0.5, np.nan])), "t"),
    (dict(interpolation="spline"), "interpolation"),
    (dict(method="rk45"), "method"),
    (dict(field="mlp"), "field"),
    (dict(output_activation="softplus"), "output_activation"),
    (dict(substeps=0), "substeps"),
    (dict(params="no W"), "params"),
    (dict(cotangent=np.ones((2, 2))), "cotangent"),
]


@pytest.mark.parametrize(("change", "name"), BAD_INPUTS)
def test_bad_input_names_the_argument(change: dict[str, Any], name: str) -> None:
    rng = np.random.default_rng(0)
    params = make_params(rng, "outside", 3, 2)
    U, times = rng.standard_normal((2, 4, 2)), np.arange(4.0)
    change = dict(change)  # the parametrised dict is shared: pop from a copy
    if "row" in change:
        U[change.pop("row")] = np.nan
    if "channel" in change:
        sample, channel = change.pop("channel")
        U[sample, :, channel] = np.nan
    if change.pop("params", None):
        del params["W"]
    kw: dict[str, Any] = dict(U=U, times=times, field="outside", cotangent=np.ones((2, 3)))
    kw |= change
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        rc.cde_vjp(params, **kw)


def test_unknown_loss_names_the_argument() -> None:
    rng = np.random.default_rng(0)
    U, y = rng.standard_normal((2, 4, 2)), np.array([0, 1])
    with pytest.raises(ValueError, match="loss"):
        rc.cde_loss_and_grad(make_params(rng, "outside", 3, 2), U, y, np.arange(4.0),
                             field="outside", loss="hinge")  # fmt: skip


# --------------------------------------------------------------------------- torchcde


def torch_field(params: dict[str, Any], field: str, S: int, C: int) -> Any:
    """torchcde's vector field ``f(t, z) -> (batch, S, C)``: ours, in torch, with tanh inside
    and tanh on the output (torchcde's example field)."""
    import torch

    def f(t: Any, z: Any) -> Any:
        if field == "outside":
            F = torch.tanh(torch.tanh(z @ params["W"][0].T + params["b"][0]))
        elif field == "inside":
            F = torch.tanh(torch.tanh(z) @ params["W"][0].T + params["b"][0])
        else:
            hid = torch.tanh(z @ params["W1"][0].T + params["b1"][0])
            F = torch.tanh(hid @ params["W2"][0].T + params["b2"][0])
        return F.view(z.shape[0], S, C)  # row d*C + c -> [d, c]

    return f


def classic_rk4_solver() -> Any:
    """torchdiffeq's fixed-grid solver with its classic RK4 step (``rk4_step_func``): its
    ``method="rk4"`` takes ``rk4_alt_step_func``, the 3/8 rule, another tableau."""
    from torchdiffeq._impl.misc import Perturb
    from torchdiffeq._impl.rk_common import rk4_step_func
    from torchdiffeq._impl.solvers import FixedGridODESolver

    class ClassicRK4(FixedGridODESolver):  # type: ignore[misc]
        order = 4

        def _step_func(self, func: Any, t0: Any, dt: Any, t1: Any, y0: Any) -> Any:
            f0 = func(t0, y0, perturb=Perturb.NEXT if self.perturb else Perturb.NONE)
            return rk4_step_func(func, t0, dt, t1, y0, f0=f0, perturb=self.perturb), f0

    return ClassicRK4


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("interpolation", rc.INTERPOLATIONS)
@pytest.mark.parametrize(("method", "substeps"), [("euler", 1), ("midpoint", 2), ("rk4", 1)])
def test_agrees_with_torchcde(
    field: str, interpolation: str, method: str, substeps: int, monkeypatch: Any
) -> None:
    """States at the knots and autograd gradients (params and U) of torchcde's ``cdeint``
    (``adjoint=False``) on shared float64 weights, equal lengths, shared irregular times,
    NaNs inside: ``linear_interpolation_coeffs`` + ``LinearInterpolation`` and
    ``hermite_cubic_coefficients_with_backward_differences`` + ``CubicSpline``.

    Fixed steps on the knots (``substeps`` per interval through ``grid_constructor``), with
    torchdiffeq's ``euler`` and ``midpoint``, and for rk4 its classic step function
    (torchdiffeq's ``method="rk4"`` is the 3/8 rule). ``perturb=True`` evaluates a step's
    first and last stages just inside the step: at a knot torchcde's ``bucketize`` takes the
    interval on the left, the contract the one of the step (the linear path's dX/dt jumps
    there)."""
    torch = pytest.importorskip("torch")
    torchcde = pytest.importorskip("torchcde")
    solvers = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS  # the method names
    monkeypatch.setitem(solvers, "rk4_classic", classic_rk4_solver())
    rng = np.random.default_rng(list(FIELDS).index(field))
    N, L, C, S = 3, 6, 2, 3
    U = 0.7 * rng.standard_normal((N, L, C))
    U[0, 0, 1] = U[1, 3, 0] = U[1, 4, 0] = U[2, 5, 1] = np.nan
    times = np.cumsum(rng.uniform(0.5, 1.0, L))
    params = {k: v for k, v in make_params(rng, field, S, C).items() if k not in ("P", "c")}
    kw: dict[str, Any] = dict(field=field, output_activation="tanh", substeps=substeps)
    kw |= dict(interpolation=interpolation, method=method, t=times)
    ours = rc.cde_solve(params, U, times, **kw)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    Ut, tt = torch.tensor(U, requires_grad=True), torch.tensor(times)
    if interpolation == "linear":
        X = torchcde.LinearInterpolation(torchcde.linear_interpolation_coeffs(Ut, t=tt), t=tt)
    else:
        coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(Ut, t=tt)
        X = torchcde.CubicSpline(coeffs, t=tt)
    grid = np.concatenate([np.linspace(a, b, substeps + 1)[:-1] for a, b in zip(times, times[1:])])
    grid = torch.tensor(np.append(grid, times[-1]))
    options = dict(grid_constructor=lambda f, y0, t: grid, perturb=True)
    z0 = X.evaluate(tt[0]) @ tp["A"].T + tp["a"]
    name = "rk4_classic" if method == "rk4" else method
    func = torch_field(tp, field, S, C)
    zs = torchcde.cdeint(X, func, z0, tt, adjoint=False, method=name, options=options)
    theirs = zs.detach().numpy().transpose(1, 0, 2)  # (N, L, S) -> (L, N, S)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)

    v = rng.standard_normal(ours.shape)
    (zs * torch.tensor(v.transpose(1, 0, 2))).sum().backward()
    grads, dU = rc.cde_vjp(params, U, times, v, **kw)
    expected = {k: t.grad.numpy() for k, t in tp.items()} | {"U": Ut.grad.numpy()}
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for key, g in ({**grads, "U": dU}).items():
        assert np.abs(g - expected[key]).max() <= 1e-11 * scale, key
