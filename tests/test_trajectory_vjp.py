"""Cotangents on every state: ``odeint_vjp(..., cotangent=(steps + 1, N, D))`` is the VJP of
``X -> (x_0, ..., x_steps)``, the whole trajectory ``odeint`` returns. Checked against
``resode.reference`` (discrete sweep and continuous adjoint with jumps), against central finite
differences of ``odeint`` itself, and against the final-state VJP it generalises."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import resode
from resode import reference

FIELDS = {"outside": None, "inside": None, "bottleneck": 4}
OPTIONS: dict[str, Any] = dict(T=1.5, substeps=2, method="rk4", activation="tanh", augment=1)


def _setup(
    field: str, dtype: Any = np.float64, pieces: int = 3
) -> tuple[dict, np.ndarray, np.ndarray]:
    model = resode.NeuralODE(
        2, pieces=pieces, field=field, hidden=FIELDS[field], augment=1, dtype=dtype, seed=2
    )
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 2)).astype(dtype)
    steps = pieces * OPTIONS["substeps"]
    v = rng.normal(size=(steps + 1, 6, 3)).astype(dtype)
    params = {k: model.params[k] for k in resode.models.field_param_names(field)}
    return params, X, v


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_state_cotangent_matches_the_reference(field: str, gradient: str, dtype: Any) -> None:
    params, X, v = _setup(field, dtype)
    grads, dX = resode.odeint_vjp(params, X, v, field=field, gradient=gradient, **OPTIONS)
    p64 = {k: a.astype(np.float64) for k, a in params.items()}
    ref_grads, ref_dX = reference.odeint_vjp(
        p64, X.astype(np.float64), v.astype(np.float64), field=field, gradient=gradient,
        **OPTIONS,
    )  # fmt: skip
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for k in grads:
        assert grads[k].dtype == dtype
        assert _rel(grads[k].astype(np.float64), ref_grads[k]) < tol, k
    assert _rel(dX.astype(np.float64), ref_dX) < tol


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_every_state_cotangent_matches_finite_differences(field: str) -> None:
    """The discrete VJP is the exact derivative of sum_j <v_j, x_j> over odeint's states."""
    params, X, v = _setup(field)
    grads, dX = resode.odeint_vjp(params, X, v, field=field, **OPTIONS)

    def objective(p: dict, x: np.ndarray) -> float:
        return float(np.sum(v * resode.odeint(p, x, field=field, **OPTIONS)))

    rng = np.random.default_rng(0)
    eps = 1e-6
    for name, a in params.items():
        for flat in rng.choice(a.size, size=3, replace=False):
            idx = np.unravel_index(flat, a.shape)
            up = {k: b.copy() for k, b in params.items()}
            down = {k: b.copy() for k, b in params.items()}
            up[name][idx] += eps
            down[name][idx] -= eps
            fd = (objective(up, X) - objective(down, X)) / (2 * eps)
            assert abs(fd - grads[name][idx]) <= 1e-7 * max(1.0, abs(fd)), (name, idx)
    for idx in [(0, 0), (3, 1), (5, 0)]:
        up, down = X.copy(), X.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (objective(params, up) - objective(params, down)) / (2 * eps)
        assert abs(fd - dX[idx]) <= 1e-7 * max(1.0, abs(fd)), idx


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_a_cotangent_on_the_last_state_only_is_the_final_state_vjp(gradient: str) -> None:
    params, X, v = _setup("bottleneck")
    last = np.zeros_like(v)
    last[-1] = v[-1]
    every = resode.odeint_vjp(params, X, last, field="bottleneck", gradient=gradient, **OPTIONS)
    final = resode.odeint_vjp(params, X, v[-1], field="bottleneck", gradient=gradient, **OPTIONS)
    for k in final[0]:
        np.testing.assert_array_equal(every[0][k], final[0][k])
    np.testing.assert_array_equal(every[1], final[1])


def test_every_state_vjp_is_the_sum_of_per_state_vjps() -> None:
    """Linearity in v: each row of the cotangent enters once, at its own state."""
    params, X, v = _setup("outside", pieces=2)
    total, total_dX = resode.odeint_vjp(params, X, v, field="outside", **OPTIONS)
    summed = {k: np.zeros_like(a) for k, a in params.items()}
    summed_dX = np.zeros_like(X)
    for j in range(v.shape[0]):
        one = np.zeros_like(v)
        one[j] = v[j]
        grads, dX = resode.odeint_vjp(params, X, one, field="outside", **OPTIONS)
        for k in grads:
            summed[k] += grads[k]
        summed_dX += dX
    for k in total:
        np.testing.assert_allclose(total[k], summed[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(total_dX, summed_dX, rtol=1e-12, atol=1e-14)


def test_adjoint_approaches_discrete_as_steps_shrink() -> None:
    """Both are derivatives of the same ODE functional sum_j <v_j, x(t_j)> as dt -> 0."""
    gaps = []
    for substeps in (2, 4, 8):
        params, X, _ = _setup("inside", pieces=2)
        v = np.random.default_rng(1).normal(size=(3, 6, 3))  # on x(0), x(T/2), x(T)
        every = np.zeros((2 * substeps + 1, 6, 3))
        every[[0, substeps, 2 * substeps]] = v
        opts = dict(OPTIONS, substeps=substeps)
        d = resode.odeint_vjp(params, X, every, field="inside", gradient="discrete", **opts)
        a = resode.odeint_vjp(params, X, every, field="inside", gradient="adjoint", **opts)
        gaps.append(_rel(a[0]["W"], d[0]["W"]))
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < gaps[0] / 100  # fourth order: 2**4 per halving


def test_resnet_states_take_a_cotangent_each() -> None:
    resnet = resode.ResNet(2, 4, h=0.5, field="inside", seed=3)
    X = np.random.default_rng(2).normal(size=(5, 2))
    v = np.random.default_rng(3).normal(size=(5, 5, 2))  # L + 1 states
    grads, dX = resode.odeint_vjp(resnet, X, v)
    ref_grads, ref_dX = reference.odeint_vjp(
        {"W": resnet.params["W"], "b": resnet.params["b"]}, X, v, T=2.0, method="euler",
        field="inside", activation="tanh",
    )  # fmt: skip
    for k in ref_grads:
        assert _rel(grads[k], ref_grads[k]) < 1e-12
    assert _rel(dX, ref_dX) < 1e-12


def test_a_cotangent_of_another_shape_is_refused() -> None:
    params, X, v = _setup("outside")
    with pytest.raises(
        ValueError,
        match=r"^cotangent must have shape \(6, 3\) \(the final state\) "
        r"or \(7, 6, 3\) \(every state of the step grid\), got shape \(6, 6, 3\)$",
    ):
        resode.odeint_vjp(params, X, v[1:], field="outside", **OPTIONS)
