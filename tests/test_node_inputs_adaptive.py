"""The input-driven neural ODE with adaptive methods and the continuous adjoint
(``resode._core.driven_*`` with ``method`` in dopri5/tsit5/bosh3, ``rtol``, ``atol``,
``first_step``, ``max_steps``, ``gradient``; ``driven_grids``): core vs the NumPy reference,
central differences, steps on the knots and piece boundaries, the adjoint's convergence to the
discrete gradient, errors, and ``NeuralODE(inputs=C, method="dopri5", gradient=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode import reference_driven as ref

FIELDS = ("outside", "inside", "bottleneck")
ADAPTIVE = ("dopri5", "tsit5", "bosh3")
TOL = {np.float64: 1e-10, np.float32: 1e-4}
Params = dict[str, np.ndarray]


def _params(field: str, K: int, D: int, C: int, rng: np.random.Generator) -> Params:
    if field == "bottleneck":
        p = {
            "W1": rng.normal(size=(K, 4, D + C)) * 0.5,
            "b1": rng.normal(size=(K, 4)),
            "W2": rng.normal(size=(K, D, 4)) * 0.5,
            "b2": rng.normal(size=(K, D)),
        }
    else:
        p = {"W": rng.normal(size=(K, D, D + C)) * 0.5, "b": rng.normal(size=(K, D))}
    p["P"], p["c"] = rng.normal(size=(3, D)), rng.normal(size=3)
    return p


def _problem(per_sample: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x0 (4, 3), U (4, 6, 2) with a missing value and padding, times (6,) or (4, 6)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(4, 3))
    U = rng.normal(size=(4, 6, 2))
    U[0, 2, 1] = np.nan
    U[1, 4:] = np.nan
    if per_sample:
        times = np.sort(rng.uniform(-0.3, 1.4, size=(4, 6)), axis=1)
        times[1, 4:] = np.nan
    else:
        times = np.linspace(-0.1, 1.2, 6)
    return x0, U, times


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> None:
    scale = max(1.0, float(np.max(np.abs(b))))
    assert np.max(np.abs(np.asarray(a, np.float64) - b)) <= tol * scale


def _field(p: Params) -> Params:
    return {k: v for k, v in p.items() if k not in ("P", "c")}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_core_matches_reference(
    dtype: type, field: str, method: str, per_sample: bool, gradient: str
) -> None:
    """Forward (final and at t), vjp (params, dx0, dU), logits and loss: 1e-10 in float64
    against the reference, 1e-4 in float32 against the float64 reference."""
    x0, U, times = _problem(per_sample)
    p = _params(field, 2, 3, 2, np.random.default_rng(1))
    pc = {k: v.astype(dtype) for k, v in p.items()}
    x0c, Uc = x0.astype(dtype), U.astype(dtype)
    opts: dict[str, Any] = {"T": 1.0, "field": field, "method": method, "rtol": 1e-6}
    tol = TOL[dtype]
    t = np.array([0.0, 0.33, 0.5, 1.0])
    states = _core.driven_solve(_field(pc), x0c, Uc, times, **opts, t=t)
    assert states.shape == (4, 4, 3) and states.dtype == dtype
    _close(states, ref.driven_solve(p, x0, U, times, **opts, t=t), tol)
    _close(_core.driven_logits(pc, x0c, Uc, times, **opts),
           ref.driven_logits(p, x0, U, times, **opts), tol)  # fmt: skip
    cot = np.random.default_rng(2).normal(size=(4, 4, 3))
    kw = {**opts, "t": t, "gradient": gradient}
    g, dx0, dU = _core.driven_vjp(_field(pc), x0c, Uc, times, cot.astype(dtype), **kw)
    rg, rdx0, rdU = ref.driven_vjp(_field(p), x0, U, times, cot, **kw)
    for k in rg:
        _close(g[k], rg[k], tol)
    _close(dx0, rdx0, tol)
    _close(dU, rdU, tol)
    assert np.all(dU[np.isnan(U)] == 0)
    y = np.array([0, 2, 1, 2])
    loss, g, dx0, dU = _core.driven_loss_and_grad(
        pc, x0c, Uc, y, times, **opts, weight_decay=0.1, gradient=gradient
    )
    rloss, rg, rdx0, rdU = ref.driven_loss_and_grad(
        p, x0, U, y, times, **opts, weight_decay=0.1, gradient=gradient
    )
    assert abs(loss - rloss) <= tol * max(1.0, abs(rloss))
    assert set(g) == set(p)
    for k in rg:
        _close(g[k], rg[k], tol)
    _close(dx0, rdx0, tol)
    _close(dU, rdU, tol)


@pytest.mark.parametrize("method", ["rk4", "midpoint"])
@pytest.mark.parametrize("field", FIELDS)
def test_fixed_step_adjoint_core_matches_reference(method: str, field: str) -> None:
    x0, U, times = _problem(True, seed=3)
    p = _params(field, 2, 3, 2, np.random.default_rng(4))
    opts: dict[str, Any] = {"T": 1.0, "field": field, "method": method, "substeps": 2}
    cot = np.random.default_rng(5).normal(size=(4, 3))
    g, dx0, dU = _core.driven_vjp(_field(p), x0, U, times, cot, **opts, gradient="adjoint")
    rg, rdx0, rdU = ref.driven_vjp(_field(p), x0, U, times, cot, **opts, gradient="adjoint")
    for k in rg:
        _close(g[k], rg[k], 1e-10)
    _close(dx0, rdx0, 1e-10)
    _close(dU, rdU, 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("method", ("rk4", *ADAPTIVE))
@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_loss_and_grad_without_dU_keeps_the_parameters_gradient_bitwise(
    dtype: type, field: str, method: str, gradient: str
) -> None:
    """return_dU=False (what training calls) skips the observations' cotangent: dU is None and
    the loss, the parameters' gradient and dx0 keep their bits."""
    rng = np.random.default_rng(8)
    x0, U, times = _problem(True, seed=9)
    p = {k: v.astype(dtype) for k, v in _params(field, 2, 3, 2, rng).items()}
    x0, U = x0.astype(dtype), U.astype(dtype)
    kw: dict[str, Any] = {"T": 1.0, "field": field, "method": method, "substeps": 2,
                          "rtol": 1e-5, "atol": 1e-7, "gradient": gradient,
                          "weight_decay": 0.1}  # fmt: skip
    y = np.array([0, 2, 1, 2])
    loss, g, dx0, dU = _core.driven_loss_and_grad(p, x0, U, y, times, **kw)
    loss2, g2, dx02, dU2 = _core.driven_loss_and_grad(p, x0, U, y, times, **kw, return_dU=False)
    assert dU is not None and dU.shape == U.shape and np.any(dU != 0)
    assert dU2 is None
    assert loss2 == loss
    assert set(g2) == set(g)
    for k in g:
        np.testing.assert_array_equal(g2[k], g[k])
    np.testing.assert_array_equal(dx02, dx0)


def _grid_problem() -> tuple[Params, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """A loose tolerance and a long first step: every accepted step is a whole interval
    between breakpoints, so the grid does not move under small perturbations."""
    rng = np.random.default_rng(6)
    x0 = rng.normal(size=(2, 3))
    U = rng.normal(size=(2, 6, 2))
    times = np.linspace(-0.1, 1.2, 6)
    p = _params("bottleneck", 2, 3, 2, rng)
    kw: dict[str, Any] = {"T": 1.0, "field": "bottleneck", "rtol": 100.0, "atol": 100.0,
                          "first_step": 1.0}  # fmt: skip
    return p, x0, U, times, kw


@pytest.mark.parametrize("method", ADAPTIVE)
def test_discrete_gradient_matches_central_differences(method: str) -> None:
    p, x0, U, times, kw = _grid_problem()
    kw["method"] = method
    breaks = np.unique(np.r_[0.0, 0.5, 1.0, times[(times > 0) & (times < 1)]])
    grids, counts = _core.driven_grids(_field(p), x0, U, times, **kw)
    for grid in grids:
        np.testing.assert_array_equal(grid, breaks)
    assert np.all(counts[:, 2] == 0)
    y = np.array([1, 2])
    _, g, dx0, dU = _core.driven_loss_and_grad(p, x0, U, y, times, **kw)

    def loss(q: Params, x: np.ndarray, u: np.ndarray) -> float:
        return float(_core.driven_loss_and_grad(q, x, u, y, times, **kw)[0])

    eps = 1e-6
    for key in ("W1", "b2", "P"):
        for idx in [(0,) * p[key].ndim, tuple(s - 1 for s in p[key].shape)]:
            plus = {k: v.copy() for k, v in p.items()}
            minus = {k: v.copy() for k, v in p.items()}
            plus[key][idx] += eps
            minus[key][idx] -= eps
            fd = (loss(plus, x0, U) - loss(minus, x0, U)) / (2 * eps)
            assert abs(fd - g[key][idx]) < 1e-7, (key, idx)
    for arr, grad in ((x0, dx0), (U, dU)):
        for idx in [(0,) * arr.ndim, (1, 2, 1)[: arr.ndim]]:
            d = np.zeros_like(arr)
            d[idx] = eps
            args_p = (x0 + d, U) if arr is x0 else (x0, U + d)
            args_m = (x0 - d, U) if arr is x0 else (x0, U - d)
            fd = (loss(p, *args_p) - loss(p, *args_m)) / (2 * eps)
            assert abs(fd - grad[idx]) < 1e-7


def test_steps_land_on_knots_piece_boundaries_and_output_times() -> None:
    x0, U, times = _problem(True)
    p = _params("outside", 3, 3, 2, np.random.default_rng(7))
    t = np.array([0.05, 0.77])
    # The error estimate cancels to ~1e-9 of the stages, so the core's and the reference's
    # round-off (summation order, tsit5's coefficients) move a step time between landings by
    # up to ~1e-6 after a tiny error; the landings themselves are exact.
    kw: dict[str, Any] = {"T": 1.0, "field": "outside", "method": "dopri5", "rtol": 1e-6}
    grids, counts = _core.driven_grids(_field(p), x0, U, times, **kw, t=t)
    rgrids, rcounts = ref.driven_grids(_field(p), x0, U, times, **kw, t=t)
    np.testing.assert_array_equal(counts, rcounts)
    lengths = [6, 4, 6, 6]
    for i, grid in enumerate(grids):
        np.testing.assert_allclose(grid, rgrids[i], rtol=0, atol=1e-5)
        assert grid[0] == 0.0 and grid[-1] == 1.0 and np.all(np.diff(grid) > 0)
        knots = times[i, : lengths[i]]
        must = np.r_[1 / 3, 2 / 3, t, knots[(knots > 0) & (knots < 1)]]
        assert np.all(np.isin(must, grid)), i
        assert counts[i, 1] == grid.size - 1
        assert counts[i, 0] == 7 * (counts[i, 1] + counts[i, 2]) + 2  # + the starting step


@pytest.mark.parametrize(("method", "order"), [("rk4", 4), ("midpoint", 2)])
def test_adjoint_converges_to_the_discrete_gradient_with_the_method_order(
    method: str, order: int
) -> None:
    """Both approximate the exact gradient: their difference shrinks as h^order."""
    rng = np.random.default_rng(8)
    times = np.linspace(0.0, 2.0, 5)
    U = np.sin(np.outer(times, [1.0, 2.0]))[None].repeat(2, axis=0)
    x0 = rng.normal(size=(2, 3))
    p = _field(_params("outside", 2, 3, 2, rng))
    v = rng.normal(size=(2, 3))
    gaps = [_gap(p, x0, U, times, v, method=method, substeps=s) for s in (4, 8, 16)]
    orders = np.log2(np.array(gaps[:-1]) / np.array(gaps[1:]))
    assert np.all(np.abs(orders - order) < 0.5), orders


def _gap(
    p: Params, x0: np.ndarray, U: np.ndarray, times: np.ndarray, v: np.ndarray, **kw: Any
) -> float:
    """The largest difference between the adjoint and the discrete gradient (all three)."""
    a = _core.driven_vjp(p, x0, U, times, v, T=2.0, field="outside", **kw)
    b = _core.driven_vjp(p, x0, U, times, v, T=2.0, field="outside", **kw, gradient="adjoint")
    gaps = [float(np.max(np.abs(a[0][k] - b[0][k]))) for k in p]
    return max(*gaps, float(np.max(np.abs(a[1] - b[1]))), float(np.max(np.abs(a[2] - b[2]))))


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_adjoint_converges_to_the_discrete_gradient_with_rtol(method: str) -> None:
    rng = np.random.default_rng(9)
    times = np.linspace(0.0, 2.0, 5)
    U = np.sin(np.outer(times, [1.0, 2.0]))[None]
    x0 = rng.normal(size=(1, 3))
    p = _field(_params("outside", 2, 3, 2, rng))
    v = rng.normal(size=(1, 3))
    gaps = [_gap(p, x0, U, times, v, method=method, rtol=r, atol=1e-12) for r in (1e-4, 1e-8)]
    assert gaps[1] < 1e-2 * gaps[0] and gaps[1] < 1e-5, gaps


def test_adaptive_agrees_with_fine_rk4() -> None:
    x0, U, times = _problem(False)
    p = _field(_params("inside", 2, 3, 2, np.random.default_rng(10)))
    kw: dict[str, Any] = {"T": 1.0, "field": "inside"}
    fine = _core.driven_solve(p, x0, U, times, **kw, method="rk4", substeps=64)
    x = _core.driven_solve(p, x0, U, times, **kw, method="dopri5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x, fine, rtol=0, atol=1e-8)


@pytest.mark.parametrize("impl", ["core", "reference"])
def test_step_size_failures(impl: str) -> None:
    x0, U, times = _problem(False)
    p = _field(_params("outside", 2, 3, 2, np.random.default_rng(11)))
    solve = _core.driven_solve if impl == "core" else ref.driven_solve
    error = resode.StepSizeError if impl == "core" else ref.StepSizeError
    with pytest.raises(error, match="sample 0"):
        solve(p, x0, U, times, T=1.0, field="outside", method="dopri5", max_steps=2)


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
    ],
)
def test_bad_options_name_the_argument(impl: str, kw: dict[str, Any], match: str) -> None:
    x0, U, times = _problem(False)
    p = _field(_params("outside", 2, 3, 2, np.random.default_rng(12)))
    solve = _core.driven_solve if impl == "core" else ref.driven_solve
    with pytest.raises(ValueError, match=match):
        solve(p, x0, U, times, **{"T": 1.0, "field": "outside", "method": "dopri5", **kw})


def test_bad_gradient_and_grids_method() -> None:
    x0, U, times = _problem(False)
    p = _field(_params("outside", 2, 3, 2, np.random.default_rng(13)))
    v = np.ones((4, 3))
    for vjp in (_core.driven_vjp, ref.driven_vjp):
        with pytest.raises(ValueError, match="gradient"):
            vjp(p, x0, U, times, v, T=1.0, field="outside", gradient="backsolve")
    for grids in (_core.driven_grids, ref.driven_grids):
        with pytest.raises(ValueError, match="method"):
            grids(p, x0, U, times, T=1.0, field="outside", method="rk4")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_model_runs_adaptive_methods_and_both_gradients(gradient: str, tmp_path: Path) -> None:
    """NeuralODE(inputs=C, method="dopri5", rtol=..., gradient=...): forward, trajectory,
    loss_and_grad against the reference, fit, and the model file."""
    rng = np.random.default_rng(14)
    X, U = rng.normal(size=(6, 2)), rng.normal(size=(6, 5, 2))
    times = np.linspace(0.0, 2.0, 5)
    y = np.arange(6) % 2
    model = resode.NeuralODE(2, inputs=2, method="dopri5", rtol=1e-6, atol=1e-8, T=2.0,
                             pieces=3, gradient=gradient, seed=0)  # fmt: skip
    x0 = np.asarray(X, np.float64)
    kw: dict[str, Any] = {"T": 2.0, "field": "outside", "method": "dopri5", "rtol": 1e-6,
                          "atol": 1e-8}  # fmt: skip
    np.testing.assert_allclose(model.forward(X, u=U, times=times),
                               ref.driven_logits(model.params, x0, U, times, **kw),
                               rtol=0, atol=1e-10)  # fmt: skip
    assert model.trajectory(X, u=U, times=times).shape == (4, 6, 2)
    loss, grads = model.loss_and_grad(X, y, u=U, times=times)
    rloss, rgrads, _, _ = ref.driven_loss_and_grad(model.params, x0, U, y, times, **kw,
                                                   gradient=gradient)  # fmt: skip
    assert abs(loss - rloss) < 1e-10
    for k in model.params:
        np.testing.assert_allclose(grads[k], rgrads[k], rtol=0, atol=1e-10)
    args = model.problem(X, y, u=U, times=times).core_args
    assert (args["rtol"], args["atol"], args["gradient"]) == (1e-6, 1e-8, gradient)
    history = resode.fit(model, X, y, u=U, times=times, epochs=15, progress=False,
                         optimizer=resode.optim.Adam(lr=5e-2), seed=0)  # fmt: skip
    assert history.loss[-1] < history.loss[0]
    path = model.save(tmp_path / "m.npz")
    loaded = resode.load(path)
    assert (loaded.method, loaded.rtol, loaded.gradient) == ("dopri5", 1e-6, gradient)
    np.testing.assert_array_equal(
        loaded.forward(X, u=U, times=times), model.forward(X, u=U, times=times)
    )


def test_model_with_inputs_refuses_batch_step_control() -> None:
    with pytest.raises(ValueError, match="step_control='sample'"):
        resode.NeuralODE(2, inputs=1, method="dopri5", step_control="batch")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_threads_do_not_change_results(gradient: str) -> None:
    """Per-sample step control and grouped accumulators: bitwise the same on 1 or 2 threads."""
    x0, U, times = _problem(True)
    U, x0, times = np.concatenate([U] * 5), np.concatenate([x0] * 5), np.concatenate([times] * 5)
    p = _params("inside", 2, 3, 2, np.random.default_rng(15))
    y = np.arange(20) % 3
    kw: dict[str, Any] = {"T": 1.0, "field": "inside", "method": "bosh3", "rtol": 1e-5}
    before = resode.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            resode.set_num_threads(n)
            results.append(_core.driven_loss_and_grad(p, x0, U, y, times, **kw, gradient=gradient))
    finally:
        resode.set_num_threads(before)
    (l1, g1, x1, u1), (l2, g2, x2, u2) = results
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(u1, u2)
