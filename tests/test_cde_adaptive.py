"""Adaptive methods (dopri5, tsit5, bosh3) for the neural CDE, in the core
(``resode._core.cde_*`` with ``method``, ``rtol``, ``atol``, ``first_step``, ``max_steps``,
``grid``) and in the NumPy reference (``resode.reference_cde``): the same accepted steps and
results, the exact discrete gradient through the accepted steps (central differences of the
replay on the frozen grid), per-sample step control with steps on every knot and piece
boundary, convergence as rtol shrinks, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode import reference_cde as rc

Params = dict[str, np.ndarray]
ADAPTIVE = ("dopri5", "tsit5", "bosh3")


def make_params(
    rng: np.random.Generator, field: str, S: int, C: int, *, pieces: int = 2, outputs: int = 0
) -> Params:
    """Random parameters of a CDE with state S and C channels (a readout of `outputs` rows)."""
    O, H = S * C, 3
    p: Params = {"A": 0.5 * rng.normal(size=(S, C)), "a": 0.2 * rng.normal(size=S)}
    if field == "bottleneck":
        p["W1"] = 0.6 * rng.normal(size=(pieces, H, S))
        p["b1"] = 0.2 * rng.normal(size=(pieces, H))
        p["W2"] = 0.5 * rng.normal(size=(pieces, O, H))
        p["b2"] = 0.2 * rng.normal(size=(pieces, O))
    else:
        p["W"] = 0.5 * rng.normal(size=(pieces, O, S))
        p["b"] = 0.2 * rng.normal(size=(pieces, O))
    if outputs:
        p["P"] = rng.normal(size=(outputs, S))
        p["c"] = 0.1 * rng.normal(size=outputs)
    return p


def make_series(
    rng: np.random.Generator, N: int = 3, L: int = 6, C: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (N, L, C) with a gap inside, a missing first value and a shorter sample; shared
    times (L,) and per-sample times (N, L), irregular."""
    U = rng.normal(size=(N, L, C))
    U[0, 2, 0] = np.nan
    U[1, 0, C - 1] = np.nan
    U[1, L - 2 :, :] = np.nan
    times = np.cumsum(rng.uniform(0.3, 1.0, size=L))
    own = np.cumsum(rng.uniform(0.3, 1.0, size=(N, L)), axis=1) + rng.uniform(-0.5, 0.5, (N, 1))
    return U, times, own


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


CASES = [
    ("outside", "cubic", "dopri5", None, False),
    ("inside", "linear", "tsit5", "tanh", True),
    ("bottleneck", "cubic", "bosh3", None, True),
    ("outside", "linear", "bosh3", "tanh", False),
]


@pytest.mark.parametrize(("field", "interpolation", "method", "rho", "own"), CASES)
def test_core_matches_reference(
    field: str, interpolation: str, method: str, rho: str | None, own: bool
) -> None:
    """The same accepted steps (counts equal; grids equal up to round-off times the
    controller's gain) and, on the core's grid, the same states, logits, VJP (incl. dU and
    output times) and loss gradient to 1e-10."""
    rng = np.random.default_rng(1)
    U, times, own_times = make_series(rng)
    tt = own_times if own else times
    p = make_params(rng, field, 3, 2, outputs=2)
    kw: dict[str, Any] = dict(field=field, interpolation=interpolation, method=method,
                              output_activation=rho, rtol=1e-6, atol=1e-8)  # fmt: skip
    lo = float(np.min(tt[:, 0] if own else tt[0]))
    t = np.array([lo, lo + 0.37, lo + 1.91])
    grids, counts = _core.cde_grids(p, U, tt, **kw, t=t)
    grids_r, counts_r = rc.cde_grids(p, U, tt, **kw, t=t)
    np.testing.assert_array_equal(counts, counts_r)
    for g, gr in zip(grids, grids_r):
        np.testing.assert_allclose(g, gr, rtol=1e-4)
    z = _core.cde_solve(p, U, tt, **kw, t=t)
    assert rel(z, rc.cde_solve(p, U, tt, **kw, t=t)) < 1e-8  # each on its own grid
    assert rel(z, rc.cde_solve(p, U, tt, **kw, t=t, grid=grids)) < 1e-10
    end_grids = _core.cde_grids(p, U, tt, **kw)[0]
    logits_r = rc.cde_logits(p, U, tt, **kw, grid=end_grids)
    assert rel(_core.cde_logits(p, U, tt, **kw), logits_r) < 1e-10
    v = rng.normal(size=z.shape)
    grads, dU = _core.cde_vjp(p, U, tt, v, **kw, t=t)
    grads_r, dU_r = rc.cde_vjp(p, U, tt, v, **kw, t=t, grid=grids)
    assert rel(dU, dU_r) < 1e-10
    for key in p:
        assert rel(grads[key], grads_r[key]) < 1e-10 or not np.any(grads_r[key]), key
    y = np.array([0, 1, 1])
    loss, g2, dU2 = _core.cde_loss_and_grad(p, U, y, tt, **kw, weight_decay=0.01)
    loss_r, g2_r, dU2_r = rc.cde_loss_and_grad(p, U, y, tt, **kw, weight_decay=0.01, grid=end_grids)
    assert abs(loss - loss_r) < 1e-10 * abs(loss_r)
    assert rel(dU2, dU2_r) < 1e-10
    for key in p:
        assert rel(g2[key], g2_r[key]) < 1e-10, key


def test_float32_follows_float64() -> None:
    rng = np.random.default_rng(2)
    U, times, _ = make_series(rng)
    p = make_params(rng, "bottleneck", 3, 2)
    kw: dict[str, Any] = dict(field="bottleneck", method="dopri5", rtol=1e-4, atol=1e-6)
    z64 = _core.cde_solve(p, U, times, **kw)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    z32 = _core.cde_solve(p32, U.astype(np.float32), times, **kw)
    assert z32.dtype == np.float32
    assert rel(z32, z64) < 1e-4
    assert rel(rc.cde_solve(p32, U.astype(np.float32), times, **kw), z64) < 1e-4
    v = np.ones_like(z64)
    g64, dU64 = _core.cde_vjp(p, U, times, v, **kw)
    g32, dU32 = _core.cde_vjp(p32, U.astype(np.float32), times, v.astype(np.float32), **kw)
    assert rel(dU32, dU64) < 1e-3
    for key in p:
        assert rel(g32[key], g64[key]) < 1e-3


@pytest.mark.parametrize("method", ADAPTIVE)
def test_vjp_matches_central_differences_of_the_replay(method: str) -> None:
    """The discrete gradient is the exact gradient of the map on the frozen accepted grid
    (step acceptance is not differentiable: the grid of the unperturbed run is replayed)."""
    rng = np.random.default_rng(3)
    U, _, own = make_series(rng)
    p = make_params(rng, "outside", 3, 2)
    kw: dict[str, Any] = dict(field="outside", method=method, output_activation="tanh")
    t = np.array([own[:, 0].min() + 0.5, own[:, 0].min() + 1.5])
    grids, _ = _core.cde_grids(p, U, own, **kw, t=t, rtol=1e-5)
    v = rng.normal(size=(2, 3, 3))
    grads, dU = _core.cde_vjp(p, U, own, v, **kw, t=t, grid=grids)
    observed = ~np.isnan(U)
    assert np.all(dU[~observed] == 0)
    direction = {k: rng.normal(size=a.shape) for k, a in p.items()}
    dUdir = np.where(observed, rng.normal(size=U.shape), 0.0)

    def value(eps: float) -> float:
        q = {k: a + eps * direction[k] for k, a in p.items()}
        x = _core.cde_solve(q, U + eps * dUdir, own, **kw, t=t, grid=grids)
        return float(np.sum(x * v))

    eps = 1e-6
    fd = (value(eps) - value(-eps)) / (2 * eps)
    exact = sum(float(np.sum(grads[k] * direction[k])) for k in p)
    exact += float(np.nansum(dU * dUdir))
    assert abs(fd - exact) < 1e-7 * max(abs(exact), 1.0)
    # without grid: the run's own grid, bitwise the same gradient
    grads_run, dU_run = _core.cde_vjp(p, U, own, v, **kw, t=t, rtol=1e-5)
    np.testing.assert_array_equal(dU_run, dU)
    for key in p:
        np.testing.assert_array_equal(grads_run[key], grads[key])


def test_reference_vjp_matches_central_differences_of_its_replay() -> None:
    rng = np.random.default_rng(4)
    U, times, _ = make_series(rng)
    p = make_params(rng, "bottleneck", 3, 2)
    kw: dict[str, Any] = dict(field="bottleneck", method="dopri5", interpolation="linear")
    grids, _ = rc.cde_grids(p, U, times, **kw, rtol=1e-5)
    v = rng.normal(size=(3, 3))
    grads, dU = rc.cde_vjp(p, U, times, v, **kw, grid=grids)
    direction = {k: rng.normal(size=a.shape) for k, a in p.items()}
    dUdir = np.where(np.isnan(U), 0.0, rng.normal(size=U.shape))

    def value(eps: float) -> float:
        q = {k: a + eps * direction[k] for k, a in p.items()}
        return float(np.sum(rc.cde_solve(q, U + eps * dUdir, times, **kw, grid=grids) * v))

    fd = (value(1e-6) - value(-1e-6)) / 2e-6
    exact = sum(float(np.sum(grads[k] * direction[k])) for k in p) + float(np.sum(dU * dUdir))
    assert abs(fd - exact) < 1e-7 * max(abs(exact), 1.0)


def test_per_sample_steps_land_on_knots_and_piece_boundaries() -> None:
    """Each sample its own grid (different step counts), every knot of its own path and every
    piece boundary inside its span among its accepted times; with one piece a sample's
    result does not depend on the batch."""
    rng = np.random.default_rng(5)
    U, _, own = make_series(rng, N=4, L=7)
    U[2] *= 4.0  # a rougher path: more steps
    p = make_params(rng, "outside", 3, 2, pieces=3)
    kw: dict[str, Any] = dict(field="outside", method="tsit5", rtol=1e-6, atol=1e-8)
    grids, counts = _core.cde_grids(p, U, own, **kw)
    assert len(set(counts[:, 1].tolist())) > 1  # accepted steps differ per sample
    lengths = [int(np.max(np.flatnonzero(~np.isnan(u).all(axis=1)))) + 1 for u in U]
    lo = min(own[i, 0] for i in range(4))
    hi = max(own[i, n - 1] for i, n in enumerate(lengths))
    bounds = [lo + j * (hi - lo) / 3 for j in (1, 2)]
    for i, (g, n) in enumerate(zip(grids, lengths)):
        assert np.all(np.isin(own[i, :n], g))  # every knot, first and last included
        assert len(g) == counts[i, 1] + 1
        for b in bounds:
            if own[i, 0] < b < own[i, n - 1]:
                assert b in g
    one = {k: v[:1] if k in ("W", "b") else v for k, v in p.items()}  # pieces=1: no window
    z = _core.cde_solve(one, U, own, **kw)
    for i in range(4):
        alone = _core.cde_solve(one, U[i : i + 1], own[i : i + 1], **kw)
        np.testing.assert_array_equal(alone[0], z[i])


@pytest.mark.parametrize(("method", "order"), [("dopri5", 5), ("tsit5", 5), ("bosh3", 3)])
def test_error_shrinks_with_rtol(method: str, order: int) -> None:
    """Against a tight-tolerance solution, the error falls as rtol shrinks; the steps grow
    in number about as rtol^(-1/order) (the error per unit step constant)."""
    rng = np.random.default_rng(6)
    L = 6
    times = np.linspace(0.0, 3.0, L)
    U = np.sin(np.outer(np.arange(1, 3), times)).T[None]  # (1, L, 2), a smooth path
    p = make_params(rng, "outside", 3, 2, pieces=1)
    p["W"] *= 3.0
    kw: dict[str, Any] = dict(field="outside", method=method, atol=1e-14)
    exact = _core.cde_solve(p, U, times, **kw, rtol=1e-13)
    errors, steps = [], []
    for rtol in (1e-4, 1e-6, 1e-8):
        errors.append(float(np.max(np.abs(_core.cde_solve(p, U, times, **kw, rtol=rtol) - exact))))
        steps.append(int(_core.cde_grids(p, U, times, **kw, rtol=rtol)[1][0, 1]))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6
    growth = np.log(steps[2] / steps[0]) / np.log(100.0)  # steps ~ rtol^(-1/order)
    assert 0.5 / order < growth < 2.5 / order  # measured: dopri5 0.36, tsit5 0.37, bosh3 0.66


def test_adaptive_agrees_with_fine_rk4() -> None:
    rng = np.random.default_rng(7)
    U, times, _ = make_series(rng)
    p = make_params(rng, "inside", 3, 2)
    fine = _core.cde_solve(p, U, times, field="inside", method="rk4", substeps=200)
    z = _core.cde_solve(p, U, times, field="inside", method="dopri5", rtol=1e-10, atol=1e-12)
    assert rel(z, fine) < 1e-8


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_step_size_failures(impl: str) -> None:
    solve = _core.cde_solve if impl == "core" else rc.cde_solve
    error = resode.StepSizeError if impl == "core" else rc.StepSizeError
    rng = np.random.default_rng(8)
    U, times, _ = make_series(rng)
    p = make_params(rng, "outside", 3, 2)
    with pytest.raises(error, match="sample 0"):
        solve(p, U, times, field="outside", method="dopri5", max_steps=3)
    huge = {k: v * 1e3 if k in ("W", "b") else v for k, v in p.items()}
    U_big = U * 1e150
    nonfinite = resode.NonFiniteError if impl == "core" else rc.NonFiniteError
    with pytest.raises((nonfinite, error)):
        solve(huge, U_big, times, field="outside", method="bosh3", output_activation=None,
              activation="identity", first_step=1.0, max_steps=50)  # fmt: skip


@pytest.mark.parametrize("impl", ["core", "reference"])
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rtol": -1.0}, "rtol"),
        ({"atol": float("nan")}, "atol"),
        ({"rtol": 0.0, "atol": 0.0}, "rtol and atol"),
        ({"first_step": 0.0}, "first_step"),
        ({"max_steps": 0}, "max_steps"),
        ({"method": "rk45"}, "method"),
        ({"grid": [np.array([0.0, 1.0])] * 3}, "grid"),
        ({"method": "rk4", "grid": [np.array([0.0, 1.0])] * 3}, "grid"),
    ],
)
def test_bad_options_name_the_argument(impl: str, kw: dict[str, Any], match: str) -> None:
    rng = np.random.default_rng(9)
    U, times, _ = make_series(rng)
    p = make_params(rng, "outside", 3, 2)
    solve = _core.cde_solve if impl == "core" else rc.cde_solve
    options = {"field": "outside", "method": "dopri5", **kw}
    with pytest.raises(ValueError, match=match):
        solve(p, U, times, **options)


def test_model_and_cdeint_take_the_adaptive_options(tmp_path: Path) -> None:
    """NeuralCDE(method="tsit5", rtol=...) passes its options to the core (forward,
    trajectory, loss_and_grad), cdeint/cdeint_vjp take them, and a saved model keeps them."""
    rng = np.random.default_rng(10)
    U, times, _ = make_series(rng)
    model = resode.NeuralCDE(2, 3, method="tsit5", rtol=1e-5, atol=1e-7, max_steps=5000, seed=0)
    options = model.core_options()
    assert (options["rtol"], options["atol"], options["max_steps"]) == (1e-5, 1e-7, 5000)
    params = {k: v for k, v in model.params.items() if k not in ("P", "c")}
    z = resode.cdeint(params, U, times, method="tsit5", rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(z, _core.cde_solve(params, U, times, **options))
    assert rel(model.forward(U, times), z @ model.params["P"].T + model.params["c"]) < 1e-12
    loss, grads, dU = model.loss_and_grad(U, [0, 1, 1], times, return_dU=True)
    loss_r, grads_r, dU_r = rc.cde_loss_and_grad(
        model.params, U, np.array([0, 1, 1]), times, **options,
        grid=_core.cde_grids(model.params, U, times, **options)[0],
    )  # fmt: skip
    assert abs(loss - loss_r) < 1e-10 and rel(dU, dU_r) < 1e-10
    for key in grads:
        assert rel(grads[key], grads_r[key]) < 1e-10, key
    v = np.ones_like(z)
    g, dU1 = resode.cdeint_vjp(params, U, times, v, method="tsit5", rtol=1e-5, atol=1e-7)
    g_core, dU_core = _core.cde_vjp(params, U, times, v, **options)
    np.testing.assert_array_equal(dU1, dU_core)
    for key in g:
        np.testing.assert_array_equal(g[key], g_core[key])
    again = resode.load(model.save(tmp_path / "cde.npz"))
    assert again.core_options() == options
    np.testing.assert_array_equal(again.forward(U, times), model.forward(U, times))
    with pytest.raises(ValueError, match="rtol apply to the adaptive methods"):
        resode.cdeint(params, U, times, method="rk4", rtol=1e-3)
    with pytest.raises(ValueError, match="rtol"):
        resode.NeuralCDE(2, 3, method="dopri5", rtol=-1.0)


# --------------------------------------------------------------------------- the adjoint


@pytest.mark.parametrize(
    ("field", "method", "own"),
    [("outside", "rk4", False), ("bottleneck", "midpoint", True), ("inside", "dopri5", True)],
)
def test_adjoint_core_matches_reference(field: str, method: str, own: bool) -> None:
    """gradient="adjoint": the core's backsolve equals the reference's to 1e-10 (fixed-step
    grids, and an adaptive method's accepted grid), output times and the loss included."""
    rng = np.random.default_rng(11)
    U, times, own_times = make_series(rng)
    tt = own_times if own else times
    p = make_params(rng, field, 3, 2, outputs=2)
    kw: dict[str, Any] = dict(field=field, method=method, output_activation="tanh")
    kw.update(substeps=2) if method != "dopri5" else kw.update(rtol=1e-5)
    lo = float(np.min(tt[:, 0] if own else tt[0]))
    t = np.array([lo + 0.4, lo + 1.3])
    ref_kw = dict(kw)
    if method == "dopri5":
        ref_kw["grid"] = _core.cde_grids(p, U, tt, **kw, t=t)[0]
    v = rng.normal(size=(2, 3, 3))
    grads, dU = _core.cde_vjp(p, U, tt, v, **kw, t=t, gradient="adjoint")
    grads_r, dU_r = rc.cde_vjp(p, U, tt, v, **ref_kw, t=t, gradient="adjoint")
    assert rel(dU, dU_r) < 1e-10
    assert np.all(dU[np.isnan(U)] == 0)
    for key in p:
        assert rel(grads[key], grads_r[key]) < 1e-10 or not np.any(grads_r[key]), key
    if method == "dopri5":
        ref_kw["grid"] = _core.cde_grids(p, U, tt, **kw)[0]
    y = np.array([1, 0, 1])
    loss, g2, dU2 = _core.cde_loss_and_grad(p, U, y, tt, **kw, weight_decay=0.1, gradient="adjoint")
    loss_r, g2_r, dU2_r = rc.cde_loss_and_grad(
        p, U, y, tt, **ref_kw, weight_decay=0.1, gradient="adjoint"
    )
    assert abs(loss - loss_r) < 1e-10 * abs(loss_r) and rel(dU2, dU2_r) < 1e-10
    for key in p:
        assert rel(g2[key], g2_r[key]) < 1e-10, key


def _gap(p: Params, U: np.ndarray, times: np.ndarray, v: np.ndarray, **kw: Any) -> float:
    """The largest difference between the adjoint and the discrete gradient (params and U)."""
    gd, dUd = _core.cde_vjp(p, U, times, v, field="outside", **kw)
    ga, dUa = _core.cde_vjp(p, U, times, v, field="outside", **kw, gradient="adjoint")
    return max(
        max(float(np.max(np.abs(gd[k] - ga[k]))) for k in p), float(np.max(np.abs(dUd - dUa)))
    )


@pytest.mark.parametrize(("method", "order"), [("rk4", 4), ("midpoint", 2)])
def test_adjoint_converges_to_the_discrete_gradient_with_the_method_order(
    method: str, order: int
) -> None:
    """Both are consistent approximations of the exact gradient of the CDE: their difference
    shrinks as h^order when the steps halve (a smooth cubic path)."""
    rng = np.random.default_rng(12)
    times = np.linspace(0.0, 3.0, 6)
    U = np.sin(np.outer(times, [1.0, 2.0]))[None].repeat(2, axis=0)
    U[1] *= 0.5
    p = make_params(rng, "outside", 3, 2)
    v = rng.normal(size=(2, 3))
    gaps = [_gap(p, U, times, v, method=method, substeps=s) for s in (4, 8, 16)]
    orders = np.log2(np.array(gaps[:-1]) / np.array(gaps[1:]))
    assert np.all(np.abs(orders - order) < 0.5), orders


def test_adaptive_adjoint_converges_to_the_discrete_gradient_with_rtol() -> None:
    rng = np.random.default_rng(13)
    times = np.linspace(0.0, 3.0, 6)
    U = np.sin(np.outer(times, [1.0, 2.0]))[None]
    p = make_params(rng, "outside", 3, 2)
    v = rng.normal(size=(1, 3))
    gaps = [_gap(p, U, times, v, method="dopri5", rtol=r, atol=1e-12) for r in (1e-4, 1e-7)]
    assert gaps[1] < 1e-2 * gaps[0] and gaps[1] < 1e-5


def test_model_trains_with_the_adjoint() -> None:
    rng = np.random.default_rng(14)
    U, times, _ = make_series(rng)
    model = resode.NeuralCDE(2, 3, method="bosh3", rtol=1e-6, gradient="adjoint", seed=1)
    loss, grads = model.loss_and_grad(U, [0, 1, 0], times)
    params = model.params
    loss_c, grads_c, _ = _core.cde_loss_and_grad(
        params, U, np.array([0, 1, 0]), times, **model.core_options(), gradient="adjoint"
    )
    assert loss == loss_c
    for key in params:
        np.testing.assert_array_equal(grads[key], grads_c[key])
    v = np.ones((3, 3))
    g, dU = resode.cdeint_vjp(model, U, times, v, gradient="adjoint")
    g_c, dU_c = _core.cde_vjp(
        {k: a for k, a in params.items() if k not in ("P", "c")}, U, times, v,
        **model.core_options(), gradient="adjoint",
    )  # fmt: skip
    np.testing.assert_array_equal(dU, dU_c)
    for key in g_c:
        np.testing.assert_array_equal(g[key], g_c[key])
    with pytest.raises(ValueError, match="gradient"):
        _core.cde_vjp(params, U, times, v, field="outside", gradient="backsolve")
    with pytest.raises(ValueError, match="gradient"):
        resode.NeuralCDE(2, 3, gradient="backsolve")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_results_do_not_depend_on_the_thread_count(gradient: str) -> None:
    rng = np.random.default_rng(15)
    U, _, own = make_series(rng, N=40, L=5)
    p = make_params(rng, "outside", 4, 2, outputs=2)
    y = rng.integers(0, 2, 40)
    kw: dict[str, Any] = dict(field="outside", method="tsit5", rtol=1e-5, gradient=gradient)
    before = _core.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            _core.set_num_threads(n)
            results.append(_core.cde_loss_and_grad(p, U, y, own, **kw))
    finally:
        _core.set_num_threads(before)
    (l1, g1, dU1), (l2, g2, dU2) = results
    assert l1 == l2
    np.testing.assert_array_equal(dU1, dU2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


def test_adjoint_float32_follows_float64() -> None:
    rng = np.random.default_rng(16)
    U, times, _ = make_series(rng)
    p = make_params(rng, "inside", 3, 2)
    kw: dict[str, Any] = dict(field="inside", method="rk4", substeps=2, gradient="adjoint")
    v = rng.normal(size=(3, 3))
    g64, dU64 = _core.cde_vjp(p, U, times, v, **kw)
    p32 = {k: a.astype(np.float32) for k, a in p.items()}
    U32, v32 = U.astype(np.float32), v.astype(np.float32)
    g32, dU32 = _core.cde_vjp(p32, U32, times, v32, **kw)
    g32r, dU32r = rc.cde_vjp(p32, U32, times, v32, **kw)
    assert dU32.dtype == np.float32 and rel(dU32, dU64) < 1e-4 and rel(dU32r, dU64) < 1e-4
    for key in p:
        assert rel(g32[key], g64[key]) < 1e-4 and rel(g32r[key], g64[key]) < 1e-4, key
