"""The input-driven neural ODE ``NeuralODE(dim, inputs=C)``: core vs NumPy reference, central
differences (parameters, x0 and U), order of convergence, the window rule, errors, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode import reference_driven as ref

FIELDS = ("outside", "inside", "bottleneck")
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def _params(field: str, K: int, D: int, C: int, rng: np.random.Generator) -> dict[str, Any]:
    if field == "bottleneck":
        H = 4
        p = {
            "W1": rng.normal(size=(K, H, D + C)) * 0.5,
            "b1": rng.normal(size=(K, H)),
            "W2": rng.normal(size=(K, D, H)) * 0.5,
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
    U[0, 2, 1] = np.nan  # missing
    U[1, 4:] = np.nan  # padding: sample 1 ends at its row 3
    if per_sample:  # windows that start before 0, inside (0, T), end inside or after T
        times = np.sort(rng.uniform(-0.3, 1.4, size=(4, 6)), axis=1)
        times[1, 4:] = np.nan  # times on padding rows are ignored
    else:
        times = np.linspace(-0.1, 1.2, 6)
    return x0, U, times


def _cast(d: dict[str, Any], dtype: type) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=dtype) for k, v in d.items()}


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> None:
    scale = max(1.0, float(np.max(np.abs(b))))
    assert np.max(np.abs(np.asarray(a, np.float64) - b)) <= tol * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_core_matches_reference(
    dtype: type, field: str, interpolation: str, per_sample: bool
) -> None:
    rng = np.random.default_rng(1)
    x0, U, times = _problem(per_sample)
    p = _cast(_params(field, 2, 3, 2, rng), dtype)
    x0, U = x0.astype(dtype), U.astype(dtype)
    opts: dict[str, Any] = {
        "T": 1.0,
        "field": field,
        "interpolation": interpolation,
        "method": "rk4",
        "substeps": 2,
    }
    tol = TOL[dtype]
    r64 = _cast(p, np.float64)
    x64, U64 = x0.astype(np.float64), U.astype(np.float64)
    _close(
        _core.driven_solve(p, x0, U, times, **opts),
        ref.driven_solve(r64, x64, U64, times, **opts),
        tol,
    )
    t = np.array([0.0, 0.33, 0.5, 1.0])
    states = _core.driven_solve(p, x0, U, times, **opts, t=t)
    assert states.shape == (4, 4, 3) and states.dtype == dtype
    _close(states, ref.driven_solve(r64, x64, U64, times, **opts, t=t), tol)
    _close(
        _core.driven_logits(p, x0, U, times, **opts),
        ref.driven_logits(r64, x64, U64, times, **opts),
        tol,
    )
    cot = np.random.default_rng(2).normal(size=(4, 4, 3)).astype(dtype)
    g, dx0, dU = _core.driven_vjp(p, x0, U, times, cot, **opts, t=t)
    rg, rdx0, rdU = ref.driven_vjp(r64, x64, U64, times, cot.astype(np.float64), **opts, t=t)
    for k in rg:
        _close(g[k], rg[k], tol)
    _close(dx0, rdx0, tol)
    _close(dU, rdU, tol)
    y = np.array([0, 2, 1, 2])
    loss, g, dx0, dU = _core.driven_loss_and_grad(p, x0, U, y, times, **opts, weight_decay=0.1)
    rloss, rg, rdx0, rdU = ref.driven_loss_and_grad(
        r64, x64, U64, y, times, **opts, weight_decay=0.1
    )
    assert abs(loss - rloss) <= tol * max(1.0, abs(rloss))
    assert set(g) == set(p)
    for k in rg:
        _close(g[k], rg[k], tol)
    _close(dU, rdU, tol)
    assert np.all(dU[np.isnan(U)] == 0)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_central_differences(field: str, loss: str) -> None:
    """The core's gradient of the loss w.r.t. every parameter, x0 and U."""
    rng = np.random.default_rng(3)
    x0, U, times = _problem(True, seed=4)
    p = _params(field, 2, 3, 2, rng)
    y: np.ndarray = np.array([0, 1, 2, 1]) if loss == "cross_entropy" else rng.normal(size=(4, 3))
    opts: dict[str, Any] = {
        "T": 1.0,
        "field": field,
        "interpolation": "cubic",
        "method": "rk4",
        "substeps": 2,
        "loss": loss,
        "weight_decay": 0.05,
    }

    def f(p: dict[str, np.ndarray], x0: np.ndarray, U: np.ndarray) -> float:
        return float(_core.driven_loss_and_grad(p, x0, U, y, times, **opts)[0])

    _, g, dx0, dU = _core.driven_loss_and_grad(p, x0, U, y, times, **opts)
    eps = 1e-6
    for k, v in p.items():
        for idx in [(0,) * v.ndim, tuple(s - 1 for s in v.shape)]:
            up, dn = {a: b.copy() for a, b in p.items()}, {a: b.copy() for a, b in p.items()}
            up[k][idx] += eps
            dn[k][idx] -= eps
            assert abs((f(up, x0, U) - f(dn, x0, U)) / (2 * eps) - g[k][idx]) < 1e-7
    for idx in [(0, 1, 0), (0, 3, 1), (1, 3, 1), (2, 5, 0), (3, 0, 1)]:
        up, dn = U.copy(), U.copy()
        up[idx] += eps
        dn[idx] -= eps
        assert abs((f(p, x0, up) - f(p, x0, dn)) / (2 * eps) - dU[idx]) < 1e-7
    up, dn = x0.copy(), x0.copy()
    up[2, 1] += eps
    dn[2, 1] -= eps
    assert abs((f(p, up, U) - f(p, dn, U)) / (2 * eps) - dx0[2, 1]) < 1e-7
    assert dU[0, 2, 1] == 0 and np.all(dU[1, 4:] == 0)  # missing value, padding


@pytest.mark.parametrize("interpolation", ["cubic", "linear"])
def test_rk4_order_four(interpolation: str) -> None:
    """A smooth input sampled irregularly: the error of x(T) shrinks like h^4 (the knots lie on
    the grid of substeps=4, so each refinement halves every step)."""
    rng = np.random.default_rng(5)
    times = np.array([0.0, 0.25, 0.5, 1.0, 1.25, 2.0])
    U = np.stack([np.sin(2 * times), np.cos(times)], axis=-1)[None].repeat(2, axis=0)
    x0 = rng.normal(size=(2, 3))
    p = _params("outside", 2, 3, 2, rng)
    opts: dict[str, Any] = {
        "T": 2.0,
        "field": "outside",
        "interpolation": interpolation,
        "method": "rk4",
    }
    exact = _core.driven_solve(p, x0, U, times, **opts, substeps=512)
    errors = [
        np.max(np.abs(_core.driven_solve(p, x0, U, times, **opts, substeps=m) - exact))
        for m in (4, 8, 16)
    ]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 3.8) & (orders < 4.3)), orders


def test_inputs_held_constant_outside_window() -> None:
    """u before t_0 is the first row, after T_i the last: the same as observing them at 0, T."""
    rng = np.random.default_rng(6)
    p = _params("outside", 3, 3, 2, rng)
    x0 = rng.normal(size=(1, 3))
    U = rng.normal(size=(1, 3, 2))
    times = np.array([0.3, 0.55, 0.8])
    wide = np.concatenate([U[:, :1], U, U[:, -1:]], axis=1)
    opts: dict[str, Any] = {"T": 1.0, "field": "outside", "interpolation": "linear", "substeps": 3}
    inside = _core.driven_solve(p, x0, U, times, **opts)
    padded = _core.driven_solve(p, x0, wide, np.array([0.0, 0.3, 0.55, 0.8, 1.0]), **opts)
    np.testing.assert_allclose(inside, padded, rtol=1e-13, atol=1e-13)


def test_grid_lands_on_knots() -> None:
    """A knot inside a step: the step grid is cut there (exact for a kinked linear input)."""
    p = {"W": np.zeros((1, 1, 2)), "b": np.zeros((1, 1))}
    p["W"][0, 0, 1] = 1.0  # x' = tanh(u): with |u| small, nearly linear; exact integral below
    U = np.array([[[0.0], [1e-4], [0.0]]])
    times = np.array([0.0, 0.37, 1.0])
    x = _core.driven_solve(
        p,
        np.zeros((1, 1)),
        U,
        times,
        T=1.0,
        field="outside",
        interpolation="linear",
        method="midpoint",
    )
    # midpoint on [0, 0.37] and [0.37, 1] integrates each linear piece of tanh(u) ~ u exactly
    assert abs(x[0, 0] - 0.5 * 1e-4) < 1e-12


def _model(**kw: Any) -> resode.NeuralODE:
    return resode.NeuralODE(2, inputs=2, T=1.0, pieces=3, augment=1, seed=0, **kw)


def test_model_matches_reference() -> None:
    model = _model(field="bottleneck", hidden=4, weight_decay=0.01, classes=3)
    assert model.param_shapes["W1"] == (3, 4, 5) and model.param_shapes["W2"] == (3, 3, 4)
    x0, U, times = _problem(True)
    X = x0[:, :2]
    y = np.array([0, 1, 2, 0])
    loss, grads = model.loss_and_grad(X, y, u=U, times=times)
    xa = np.concatenate([X, np.zeros((4, 1))], axis=1)
    opts: dict[str, Any] = {"T": 1.0, "field": "bottleneck", "interpolation": "cubic"}
    rloss, rg, _, _ = ref.driven_loss_and_grad(
        model.params, xa, U, y, times, **opts, weight_decay=0.01
    )
    assert abs(loss - rloss) < 1e-10
    assert set(grads) == set(model.params)
    for k in rg:
        np.testing.assert_allclose(grads[k], rg[k], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        model.forward(X, u=U, times=times),
        ref.driven_logits(model.params, xa, U, times, **opts),
        rtol=1e-10,
    )
    assert model.predict(X, u=U, times=times).shape == (4,)
    np.testing.assert_allclose(model.predict_proba(X, u=U, times=times).sum(axis=1), 1.0)
    assert 0.0 <= model.score(X, y, u=U, times=times) <= 1.0
    traj = model.trajectory(X, u=U, times=times)
    assert traj.shape == (4, 4, 3)  # the grid t_j = j T / 3
    np.testing.assert_allclose(
        traj[-1], ref.driven_solve(model.params, xa, U, times, **opts), rtol=1e-10
    )


def test_times_default_is_row_index() -> None:
    model = resode.NeuralODE(1, inputs=1, T=3.0, pieces=3, seed=1)
    U = np.random.default_rng(0).normal(size=(2, 4, 1))
    np.testing.assert_array_equal(
        model.forward(np.ones((2, 1)), u=U),
        model.forward(np.ones((2, 1)), u=U, times=np.arange(4.0)),
    )


def test_inputs_zero_is_unchanged() -> None:
    """inputs=0 (the default): the same parameters, config and outputs as before, bitwise."""
    X = np.random.default_rng(0).normal(size=(5, 2))
    for kw in ({}, {"field": "bottleneck", "hidden": 3}, {"method": "dopri5"}):
        a = resode.NeuralODE(2, seed=3, augment=1, **kw)
        b = resode.NeuralODE(2, seed=3, augment=1, inputs=0, **kw)
        assert "inputs" not in a.config and "interpolation" not in a.config
        expected = resode.models.init_params(a.field, a.pieces, a.D, a.hidden or a.D, 2, a.dtype, 3)
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], expected[k])
            np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.forward(X), b.forward(X))


def test_bad_inputs() -> None:
    model = _model()
    X = np.ones((2, 2))
    U = np.zeros((2, 3, 2))
    with pytest.raises(ValueError, match="u must be given"):
        model.forward(X)
    with pytest.raises(ValueError, match="u must have shape"):
        model.forward(X, u=np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match="times"):
        model.forward(X, u=U, times=[0.0, 0.5, 0.4])
    with pytest.raises(ValueError, match="times must have shape"):
        model.forward(X, u=U, times=[0.0, 0.5])
    bad = U.copy()
    bad[1] = np.nan
    with pytest.raises(ValueError, match="U: sample 1"):
        model.forward(X, u=bad)
    with pytest.raises(ValueError, match="u and times apply"):
        resode.NeuralODE(2).forward(X, u=U)
    with pytest.raises(ValueError, match="checkpoints"):
        resode.NeuralODE(2, inputs=2, checkpoints=2)
    with pytest.raises(ValueError, match="turnpike"):
        resode.NeuralODE(2, inputs=2, turnpike=True)
    with pytest.raises(ValueError, match="interpolation applies"):
        resode.NeuralODE(2, interpolation="linear")
    with pytest.raises(ValueError, match="interpolation"):
        resode.NeuralODE(2, inputs=1, interpolation="quadratic")
    with pytest.raises(ValueError, match="inputs"):
        resode.NeuralODE(2, inputs=-1)
    with pytest.raises(ValueError, match="t must lie within"):
        model.trajectory(X, u=U, times=[0.0, 0.5, 1.0], t=[0.0, 2.0])
    with pytest.raises(ValueError, match="u must be given"):
        model.problem(X, [0, 1])
    with pytest.raises(ValueError, match="u and times apply"):
        resode.NeuralODE(2).problem(X, [0, 1], u=U)
    with pytest.raises(ValueError, match="u must be given"):
        resode.fit(model, X, [0, 1], epochs=1)


def test_save_load(tmp_path: Path) -> None:
    model = _model(interpolation="linear", classes=3)
    x0, U, times = _problem(True)
    X = x0[:, :2]
    path = model.save(tmp_path / "driven.npz")
    loaded = resode.load(path)
    assert isinstance(loaded, resode.NeuralODE)
    assert loaded.inputs == 2 and loaded.interpolation == "linear"
    assert loaded.config == model.config
    np.testing.assert_array_equal(
        loaded.forward(X, u=U, times=times), model.forward(X, u=U, times=times)
    )


def test_threads_do_not_change_results() -> None:
    """Groups of samples accumulate their own gradients, reduced in group order."""
    rng = np.random.default_rng(7)
    x0, U, times = _problem(True)
    U = np.concatenate([U] * 5)
    x0, times = np.concatenate([x0] * 5), np.concatenate([times] * 5)
    p = _params("inside", 2, 3, 2, rng)
    y = np.arange(20) % 3
    before = resode.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            resode.set_num_threads(n)
            results.append(_core.driven_loss_and_grad(p, x0, U, y, times, T=1.0, field="inside"))
    finally:
        resode.set_num_threads(before)
    (l1, g1, x1, u1), (l2, g2, x2, u2) = results
    np.testing.assert_array_equal(x1, x2)
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    np.testing.assert_array_equal(u1, u2)


def test_float32_model() -> None:
    model = resode.NeuralODE(2, inputs=1, dtype="float32", seed=0, pieces=2)
    U = np.random.default_rng(0).normal(size=(3, 4, 1))
    logits = model.forward(np.ones((3, 2)), u=U)
    assert logits.dtype == np.float32
    loss, grads = model.loss_and_grad(np.ones((3, 2)), [0, 1, 0], u=U)
    assert np.isfinite(loss)
    assert grads["W"].dtype == np.float32 and grads["W"].shape == (2, 2, 3)
