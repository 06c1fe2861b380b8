"""The C++ neural ODE (resode.NeuralODE, resode.odeint, resode.odeint_vjp) against the NumPy
oracle, against finite differences, against exact flows and known convergence orders, and
against the contract of issue 3 (time grid, checkpoints, adjoint, memory, non-finite states).

Tolerances as in test_resnet: ``max|cpp - ref| <= rtol * max|ref|``, float64 rtol 1e-12, float32
rtol 1e-5 (float32 gradients relative to the largest gradient entry of the call).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import resode
import scipy.linalg
from resode import reference as ref

FIELDS = ("outside", "inside", "bottleneck")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
METHODS = ("euler", "midpoint", "rk4")
ORDER = {"euler": 1, "midpoint": 2, "rk4": 4}
RTOL = {"float64": 1e-12, "float32": 1e-5}


# --------------------------------------------------------------------------- helpers


def assert_close(actual, expected, rtol, what="", scale=None):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    assert np.all(np.isfinite(a)), f"{what}: non-finite values"
    if scale is None:
        scale = float(np.max(np.abs(e)))
    err = float(np.max(np.abs(a - e)))
    assert err <= rtol * max(scale, 1e-300), (
        f"{what}: max|diff| = {err:.3e} > {rtol:.0e} * {scale:.3e}"
    )


def assert_grads_close(grads, expected, dtype, what="grad"):
    """float64: each array relative to its own max; float32: relative to the largest entry of
    all arrays (cancelling sums carry the rounding of their terms)."""
    assert set(grads) == set(expected), (set(grads), set(expected))
    overall = max(float(np.max(np.abs(g))) for g in expected.values())
    for key, g in grads.items():
        assert g.dtype == np.dtype(dtype), key
        own = float(np.max(np.abs(expected[key])))
        scale = own if dtype == "float64" else overall
        assert_close(g, expected[key], RTOL[dtype], f"{what} {key}", scale=scale)


def max_rel_gap(g1, g2):
    scale = max(float(np.max(np.abs(g))) for g in g2.values())
    return max(float(np.max(np.abs(g1[k] - g2[k]))) for k in g2) / scale


def make_node(
    field="outside",
    activation="tanh",
    method="rk4",
    *,
    dim=2,
    augment=1,
    pieces=3,
    substeps=2,
    T=1.5,
    classes=3,
    loss="cross_entropy",
    weight_decay=0.01,
    turnpike=False,
    gradient="discrete",
    checkpoints=None,
    dtype="float64",
    N=24,
    hidden=4,
    scale=1.5,
    seed=0,
):
    """A NeuralODE with weights scaled up (a visibly nonlinear flow), a random classifier, and
    matching data (X, y)."""
    model = resode.NeuralODE(
        dim,
        T=T,
        pieces=pieces,
        substeps=substeps,
        method=method,
        classes=classes,
        field=field,
        activation=activation,
        hidden=hidden if field == "bottleneck" else None,
        augment=augment,
        loss=loss,
        weight_decay=weight_decay,
        turnpike=turnpike,
        gradient=gradient,
        checkpoints=checkpoints,
        dtype=dtype,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1000)
    for key in model.params:
        if key not in ("P", "c"):
            model.params[key] *= scale
    model.params["P"][...] = rng.standard_normal(model.params["P"].shape)
    model.params["c"][...] = 0.5 * rng.standard_normal(model.params["c"].shape)
    X = rng.standard_normal((N, dim)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, classes, N)
        y[: min(N, classes)] = np.arange(min(N, classes))
    else:
        y = rng.standard_normal((N, classes)).astype(dtype)
    return model, X, y


def as64(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def sweep_kwargs(model):
    return {
        "T": model.T,
        "substeps": model.substeps,
        "method": model.method,
        "field": model.field,
        "activation": model.activation,
        "augment": model.augment,
    }


def ref_loss_and_grad(model, X, y, gradient=None):
    y64 = y.astype(np.float64) if model.loss == "mse" else y
    return ref.node_loss_and_grad(
        as64(model.params),
        X.astype(np.float64),
        y64,
        loss=model.loss,
        weight_decay=model.weight_decay,
        turnpike=model.turnpike,
        gradient=gradient or model.gradient,
        **sweep_kwargs(model),
    )


def field_keys(field):
    return ("W1", "b1", "W2", "b2") if field == "bottleneck" else ("W", "b")


def compare_with_reference(model, X, y, dtype):
    rtol = RTOL[dtype]
    p64, X64 = as64(model.params), X.astype(np.float64)
    kw = sweep_kwargs(model)
    traj = model.trajectory(X)
    assert traj.shape == (model.pieces * model.substeps + 1, X.shape[0], model.D)
    assert traj.dtype == np.dtype(dtype)
    assert_close(traj, ref.odeint(p64, X64, **kw), rtol, "trajectory")
    assert_close(model.forward(X), ref.node_forward(p64, X64, **kw), rtol, "logits")
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref_loss_and_grad(model, X, y)
    assert isinstance(loss, float)
    assert abs(loss - rloss) <= rtol * abs(rloss), (loss, rloss)
    assert_grads_close(grads, rgrads, dtype)


# --------------------------------------------------------------------------- C++ vs reference


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("turnpike", [False, True], ids=["terminal", "turnpike"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("field", FIELDS)
def test_matches_reference(field, activation, method, turnpike, gradient):
    model, X, y = make_node(field, activation, method, turnpike=turnpike, gradient=gradient)
    compare_with_reference(model, X, y, "float64")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("turnpike", [False, True], ids=["terminal", "turnpike"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", FIELDS)
def test_mse_matches_reference(field, method, turnpike, gradient):
    model, X, y = make_node(
        field,
        "sigmoid",
        method,
        dim=3,
        augment=0,
        substeps=1,
        pieces=2,
        classes=2,
        loss="mse",
        weight_decay=0.0,
        turnpike=turnpike,
        gradient=gradient,
        N=20,
    )
    compare_with_reference(model, X, y, "float64")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("turnpike", [False, True], ids=["terminal", "turnpike"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", FIELDS)
def test_float32_matches_reference(field, method, turnpike, gradient):
    model, X, y = make_node(
        field, "tanh", method, turnpike=turnpike, gradient=gradient, dtype="float32", N=40
    )
    compare_with_reference(model, X, y, "float32")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_state_matches_reference(dtype, gradient):
    # D = 19 and H = 21 exercise the SIMD tiles of the core's small GEMMs and their edges.
    model, X, y = make_node(
        "bottleneck",
        "tanh",
        "rk4",
        dim=17,
        augment=2,
        hidden=21,
        N=45,
        scale=1.0,
        dtype=dtype,
        gradient=gradient,
    )
    compare_with_reference(model, X, y, dtype)
    model, X, y = make_node(
        "outside",
        "sigmoid",
        "midpoint",
        dim=19,
        augment=0,
        N=45,
        scale=1.0,
        dtype=dtype,
        gradient=gradient,
        turnpike=True,
    )
    compare_with_reference(model, X, y, dtype)


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("width", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("field", ["bottleneck", "outside"])
def test_fused_narrow_fields_match_reference(field, width, activation, dtype, gradient):
    # Narrow states take the fused kernels of fused_fields.hpp: on AVX-512 CPUs the bottleneck
    # field for D <= 4 (forward pass for piecewise-linear activations, VJP for all) in passes
    # of 1..8 hidden units by width, and the outside field's VJP for D <= 3; on AVX2 CPUs (and
    # under RESODE_ISA=avx2, as CI runs it) the two-pass bottleneck VJP, passes of 1..12
    # units. hidden = 11 leaves a remainder at every pass size. Wider states, and everything
    # else on AVX2, are the generic path.
    # N = 37 is one padded block; 250 is two blocks.
    for N in (37, 250):
        model, X, y = make_node(
            field,
            activation,
            "rk4",
            dim=width - 1 if width > 1 else 1,
            augment=1 if width > 1 else 0,
            hidden=11,
            N=N,
            scale=1.0,
            dtype=dtype,
            gradient=gradient,
            turnpike=N == 37,
            seed=width,
        )
        compare_with_reference(model, X, y, dtype)


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("N", [1, 2, 3, 5, 9])
@pytest.mark.parametrize(
    "shape",
    [("outside", 2, 0), ("bottleneck", 3, 21), ("outside", 19, 0), ("inside", 17, 0)],
    ids=["narrow", "wide-hidden", "wide-state", "inside-wide"],
)
def test_tiny_sample_counts_in_every_product_shape(shape, N, dtype, gradient):
    # Fewer samples than a SIMD vector: the weight gradients sum over the real samples only,
    # along the wide side of the product (or in plain loops when both sides are narrow), and
    # blocks are padded to one vector. Every branch against the reference.
    field, dim, hidden = shape
    model, X, y = make_node(
        field,
        "tanh",
        "rk4",
        dim=dim,
        augment=0,
        hidden=hidden or 4,
        N=N,
        scale=1.0,
        dtype=dtype,
        gradient=gradient,
        turnpike=N % 2 == 1,
        seed=N,
    )
    compare_with_reference(model, X, y, dtype)


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_several_sample_blocks_match_reference(gradient):
    model, X, y = make_node("inside", "tanh", "rk4", N=700, turnpike=True, gradient=gradient)
    compare_with_reference(model, X, y, "float64")


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("N", [1, 3, 15, 17, 240, 241, 255, 257, 481])
def test_sample_counts_around_vector_and_block_edges(N, gradient):
    model, X, y = make_node(
        "outside", "tanh", "rk4", N=N, classes=2, turnpike=True, gradient=gradient, seed=N
    )
    compare_with_reference(model, X, y % 2, "float64")
    if gradient == "discrete":
        _, g0 = model.loss_and_grad(X, y % 2)
        model.checkpoints = 4
        _, g1 = model.loss_and_grad(X, y % 2)
        for key in g0:  # the README promises the same gradient bit for bit
            np.testing.assert_array_equal(g1[key], g0[key], err_msg=f"checkpointed {key}")


def test_adjoint_reports_the_discretised_loss():
    model, X, y = make_node("outside", "tanh", "rk4", turnpike=True)
    loss_d, _ = model.loss_and_grad(X, y)
    model.gradient = "adjoint"
    loss_a, _ = model.loss_and_grad(X, y)
    assert loss_a == pytest.approx(loss_d, rel=1e-14)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_turnpike_loss_is_the_trapezoid_rule_of_the_trajectory(loss):
    model, X, y = make_node("bottleneck", "relu", "midpoint", turnpike=True, loss=loss)
    traj = model.trajectory(X)
    P, c = model.params["P"], model.params["c"]

    def data_loss(x):
        z = x @ P.T + c
        if loss == "mse":
            return float(np.mean((z - y) ** 2))
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
        return float(np.mean(lse - z[np.arange(len(y)), y]))

    values = [data_loss(x) for x in traj]
    dt = model.T / (model.pieces * model.substeps)
    expected = dt * (values[0] / 2 + sum(values[1:-1]) + values[-1] / 2)
    expected += model.weight_decay * sum(
        float(np.sum(model.params[k] ** 2)) for k in field_keys(model.field)
    )
    assert model.loss_and_grad(X, y)[0] == pytest.approx(expected, rel=1e-12)
    model.turnpike = False
    terminal = (
        data_loss(traj[-1]) + expected - dt * (values[0] / 2 + sum(values[1:-1]) + values[-1] / 2)
    )
    assert model.loss_and_grad(X, y)[0] == pytest.approx(terminal, rel=1e-12)


# --------------------------------------------------------------------------- the integrators


@pytest.mark.parametrize("method", METHODS)
def test_steps_by_hand_with_piece_indexing(method):
    """Every step written out: step j uses piece j // substeps; classic RK4 weights."""
    pieces, substeps, T = 3, 2, 1.2
    dt = T / (pieces * substeps)
    model, X, _ = make_node("outside", "tanh", method, pieces=pieces, substeps=substeps, T=T)
    W, b = model.params["W"], model.params["b"]
    x = np.concatenate([X, np.zeros((X.shape[0], 1))], axis=1)
    traj = model.trajectory(X)
    np.testing.assert_array_equal(traj[0], x)
    for j in range(pieces * substeps):
        k = j // substeps

        def f(v, k=k):
            return np.tanh(v @ W[k].T + b[k])

        if method == "euler":
            x = x + dt * f(x)
        elif method == "midpoint":
            x = x + dt * f(x + dt / 2 * f(x))
        else:
            k1 = f(x)
            k2 = f(x + dt / 2 * k1)
            k3 = f(x + dt / 2 * k2)
            k4 = f(x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        assert_close(traj[j + 1], x, 1e-13, f"state {j + 1}")


def exact_linear_flow(W, b, X, T):
    """x' = W_k x + b_k piecewise on equal pieces of [0, T], by matrix exponentials."""
    pieces, D = W.shape[0], W.shape[1]
    x = X.copy()
    for k in range(pieces):
        A = np.zeros((D + 1, D + 1))
        A[:D, :D], A[:D, D] = W[k], b[k]
        M = scipy.linalg.expm((T / pieces) * A)
        x = x @ M[:D, :D].T + M[:D, D]
    return x


@pytest.mark.parametrize(
    ("method", "substeps"),
    [("euler", (8, 16, 32, 64)), ("midpoint", (4, 8, 16, 32)), ("rk4", (2, 4, 8, 16))],
    ids=METHODS,
)
def test_convergence_order_on_the_linear_field(method, substeps):
    rng = np.random.default_rng(0)
    D, pieces, T = 3, 2, 1.0
    params = {"W": rng.standard_normal((pieces, D, D)), "b": rng.standard_normal((pieces, D))}
    X = rng.standard_normal((5, D))
    exact = exact_linear_flow(params["W"], params["b"], X, T)
    errors = []
    for s in substeps:
        traj = resode.odeint(
            params, X, T=T, substeps=s, method=method, field="inside", activation="identity"
        )
        errors.append(float(np.max(np.abs(traj[-1] - exact))))
    dts = T / (pieces * np.array(substeps))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - ORDER[method]) <= 0.3, (slope, errors)
    assert errors[-1] < 1e-2 * np.max(np.abs(exact))


@pytest.mark.parametrize(
    ("method", "turnpike", "substeps", "order"),
    [
        ("euler", False, (8, 16, 32, 64), 1),
        ("midpoint", False, (4, 8, 16, 32), 2),
        ("rk4", False, (4, 8, 16, 32), 4),
        ("euler", True, (8, 16, 32, 64), 1),
        ("midpoint", True, (4, 8, 16, 32), 2),
        ("rk4", True, (2, 4, 8, 16), 2),  # the trapezoid rule of the discrete loss
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
@pytest.mark.parametrize("field", ["outside", "bottleneck"])
def test_adjoint_gap_shrinks_at_the_method_order(field, method, turnpike, substeps, order):
    gaps = []
    for s in substeps:
        model, X, y = make_node(
            field,
            "tanh",
            method,
            dim=3,
            augment=0,
            pieces=2,
            substeps=s,
            T=2.0,
            weight_decay=0.0,
            turnpike=turnpike,
            N=16,
            hidden=5,
            scale=2.0,
            seed=1,
        )
        _, discrete = model.loss_and_grad(X, y)
        model.gradient = "adjoint"
        _, adjoint = model.loss_and_grad(X, y)
        gaps.append(max_rel_gap(adjoint, discrete))
    assert min(gaps) > 1e-11, gaps  # well above round-off, or the fit means nothing
    dts = 2.0 / (2 * np.array(substeps))
    slope = np.polyfit(np.log(dts), np.log(gaps), 1)[0]
    ratios = [gaps[i] / gaps[i + 1] for i in range(len(gaps) - 1)]
    assert abs(slope - order) <= 0.3, (slope, ratios, gaps)
    assert 2 ** (order - 0.5) <= ratios[-1] <= 2 ** (order + 0.5), ratios


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_euler_node_equals_resnet(field, loss):
    L, h = 4, 0.3
    activation = {"outside": "tanh", "inside": "leaky_relu", "bottleneck": "sigmoid"}[field]
    common = {
        "classes": 3,
        "field": field,
        "activation": activation,
        "hidden": 5 if field == "bottleneck" else None,
        "augment": 1,
        "loss": loss,
        "weight_decay": 0.02,
    }
    net = resode.ResNet(2, L, h=h, seed=3, **common)
    node = resode.NeuralODE(2, T=L * h, pieces=L, method="euler", seed=4, **common)
    node.params = {k: v.copy() for k, v in net.params.items()}
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 2))
    y = rng.integers(0, 3, 30) if loss == "cross_entropy" else rng.standard_normal((30, 3))
    assert_close(node.trajectory(X), net.trajectory(X), 1e-12, "trajectory")
    assert_close(node.forward(X), net.forward(X), 1e-12, "logits")
    ln, gn = node.loss_and_grad(X, y)
    lr, gr = net.loss_and_grad(X, y)
    assert ln == pytest.approx(lr, rel=1e-12)
    assert_grads_close(gn, gr, "float64")


# --------------------------------------------------------------------------- finite differences


def fd_check(loss_fn, arrays, grads, n_entries=3, eps=1e-6, tol=1e-7, seed=0):
    """Central differences of the scalar ``loss_fn()`` at a few random entries of each array
    of ``arrays`` (perturbed in place) against ``grads``; error relative to max |grad|."""
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    rng = np.random.default_rng(seed)
    for key, arr in arrays.items():
        flat = arr.reshape(-1)
        assert np.shares_memory(flat, arr)
        for i in rng.choice(flat.size, size=min(n_entries, flat.size), replace=False):
            orig = flat[i]
            flat[i] = orig + eps
            f_plus = loss_fn()
            flat[i] = orig - eps
            f_minus = loss_fn()
            flat[i] = orig
            numeric = (f_plus - f_minus) / (2 * eps)
            analytic = float(grads[key].reshape(-1)[i])
            assert abs(numeric - analytic) <= tol * scale, (
                f"{key}[{i}]: analytic {analytic:.12e} vs central difference {numeric:.12e}"
            )


SMOOTH = {"outside": "tanh", "inside": "sigmoid", "bottleneck": "tanh"}


@pytest.mark.parametrize("turnpike", [False, True], ids=["terminal", "turnpike"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", FIELDS)
def test_discrete_gradient_matches_finite_differences(field, method, turnpike):
    loss = "mse" if field == "inside" else "cross_entropy"
    model, X, y = make_node(
        field, SMOOTH[field], method, turnpike=turnpike, loss=loss, N=12, substeps=2, pieces=2
    )
    _, grads = model.loss_and_grad(X, y)
    fd_check(lambda: model.loss_and_grad(X, y)[0], model.params, grads)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("turnpike", [False, True], ids=["terminal", "turnpike"])
@pytest.mark.parametrize("K", [1, 2, 3, 5, 11, 12, 13, 100])
def test_checkpoints_give_the_same_gradient(K, turnpike):
    # steps = 12; N = 300 with D = 3, H = 4 spans two sample blocks.
    model, X, y = make_node(
        "bottleneck", "tanh", "rk4", pieces=3, substeps=4, turnpike=turnpike, N=300
    )
    loss0, g0 = model.loss_and_grad(X, y)
    model.checkpoints = K
    loss1, g1 = model.loss_and_grad(X, y)
    assert loss1 == loss0  # bit for bit, as the README promises
    for key in g0:
        np.testing.assert_array_equal(g1[key], g0[key], err_msg=f"grad {key}, checkpoints={K}")


@pytest.mark.parametrize("K", [1, 2, 4, 7, 8, 9])
def test_checkpoints_in_the_constructor_and_vjp(K):
    model, X, y = make_node("outside", "sigmoid", "midpoint", pieces=4, substeps=2, N=30)
    _, g0 = model.loss_and_grad(X, y)
    twin = resode.NeuralODE(
        2,
        T=model.T,
        pieces=4,
        substeps=2,
        method="midpoint",
        classes=3,
        activation="sigmoid",
        augment=1,
        weight_decay=model.weight_decay,
        checkpoints=K,
        seed=0,
    )
    twin.params = {k: v.copy() for k, v in model.params.items()}
    _, g1 = twin.loss_and_grad(X, y)
    for key in g0:
        np.testing.assert_array_equal(g1[key], g0[key], err_msg=f"grad {key}")
    cot = np.random.default_rng(1).standard_normal((30, 3))
    kw = sweep_kwargs(model)
    d0, dX0 = resode.odeint_vjp(model.params, X, cot, **kw)
    d1, dX1 = resode.odeint_vjp(model.params, X, cot, checkpoints=K, **kw)
    np.testing.assert_array_equal(dX1, dX0, err_msg="dX")
    for key in d0:
        np.testing.assert_array_equal(d1[key], d0[key], err_msg=f"vjp {key}")


# --------------------------------------------------------------------------- odeint, odeint_vjp


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", FIELDS)
def test_odeint_matches_reference(field, method, dtype):
    model, X, _ = make_node(field, "tanh", method, dtype=dtype, substeps=3)
    kw = sweep_kwargs(model)
    traj = resode.odeint(model.params, X, **kw)
    assert traj.shape == (3 * 3 + 1, X.shape[0], 3)
    assert traj.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(traj, model.trajectory(X))
    expected = ref.odeint(as64(model.params), X.astype(np.float64), **kw)
    assert_close(traj, expected, RTOL[dtype], "odeint")
    # Only the field parameters matter: P and c may be absent.
    only_field = {k: model.params[k] for k in field_keys(field)}
    np.testing.assert_array_equal(resode.odeint(only_field, X, **kw), traj)


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", FIELDS)
def test_odeint_vjp_matches_reference(field, method, gradient):
    for dtype in ("float64", "float32"):
        model, X, _ = make_node(field, "sigmoid", method, dtype=dtype, N=15)
        cot = np.random.default_rng(2).standard_normal((15, 3)).astype(dtype)
        kw = sweep_kwargs(model)
        grads, dX = resode.odeint_vjp(model.params, X, cot, gradient=gradient, **kw)
        rgrads, rdX = ref.odeint_vjp(
            as64(model.params),
            X.astype(np.float64),
            cot.astype(np.float64),
            gradient=gradient,
            **kw,
        )
        assert set(grads) == set(field_keys(field))
        for key in grads:
            assert grads[key].shape == model.params[key].shape
        assert dX.shape == X.shape
        assert dX.dtype == np.dtype(dtype)
        assert_grads_close(grads, rgrads, dtype, "vjp")
        assert_close(dX, rdX, RTOL[dtype], "dX")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", FIELDS)
def test_odeint_vjp_matches_finite_differences(field, method):
    model, X, _ = make_node(field, "tanh", method, N=6, pieces=2, substeps=2)
    params = {k: model.params[k].copy() for k in field_keys(field)}
    X = X.copy()
    cot = np.random.default_rng(3).standard_normal((6, 3))
    kw = sweep_kwargs(model)

    def phi():
        return float(np.sum(cot * resode.odeint(params, X, **kw)[-1]))

    grads, dX = resode.odeint_vjp(params, X, cot, **kw)
    fd_check(phi, {**params, "X": X}, {**grads, "X": dX}, n_entries=4)


def test_odeint_vjp_dX_drops_the_augmented_columns():
    model, X, _ = make_node("outside", "tanh", "rk4", dim=2, augment=3, N=5)
    cot = np.ones((5, 5))
    _, dX = resode.odeint_vjp(model.params, X, cot, **sweep_kwargs(model))
    _, rdX = ref.odeint_vjp(model.params, X, cot, **sweep_kwargs(model))
    assert dX.shape == (5, 2)
    assert_close(dX, rdX, 1e-12, "dX")


# --------------------------------------------------------------------------- memory


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import resode

    gradient, steps, K = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) or None
    resode.set_num_threads(2)
    N, D = 1024, 16
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    y = rng.integers(0, 2, N)

    def run(steps):  # 2 pieces: the parameters stay tiny, only the step count grows
        model = resode.NeuralODE(D, T=1.0, pieces=2, substeps=steps // 2, method="euler",
                                 gradient=gradient, checkpoints=K, seed=0)
        return model.loss_and_grad(X, y)

    def kib(field):  # from /proc/self/status, in KiB
        with open("/proc/self/status") as f:
            return int(next(s for s in f if s.startswith(field + ":")).split()[1])

    run(50)  # warm-up: libraries, thread pool, first allocations
    # The high-water mark so far may be well above the current RSS (imports and the warm-up
    # free what they used): reset it (Linux >= 4.0), so peak - base is this run's growth.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = kib("VmRSS")
    loss, _ = run(steps)
    peak = kib("VmHWM")
    print(json.dumps({"base_kib": base, "peak_kib": peak, "loss": loss}))
    """
)


def _peak_rss_mib(gradient, steps, checkpoints=0):
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, gradient, str(steps), str(checkpoints)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    line = [s for s in out.stdout.splitlines() if s.startswith("{")][-1]
    result = json.loads(line)
    return result["peak_kib"] / 1024, (result["peak_kib"] - result["base_kib"]) / 1024


@pytest.mark.skipif(
    os.environ.get("RESODE_SANITIZED") == "1",
    reason="AddressSanitizer reserves and quarantines memory: RSS and huge mmaps mean nothing",
)
@pytest.mark.skipif(
    sys.platform != "linux",
    reason="reads /proc/self/status and resets the peak with /proc/self/clear_refs",
)
def test_adjoint_memory_does_not_grow_with_steps():
    small, _ = _peak_rss_mib("adjoint", 50)
    large, growth = _peak_rss_mib("adjoint", 2000)
    assert large - small < 20, f"adjoint peak RSS {small:.1f} MiB at 50 steps, {large:.1f} at 2000"
    assert growth < 20
    # The probe can see memory: 2001 stored states of a 256 x 16 block are 63 MiB per thread.
    _, full_growth = _peak_rss_mib("discrete", 2000)
    assert full_growth > 40, f"discrete gradient grew only {full_growth:.1f} MiB"
    # Checkpoints (K = 45: 45 + 45 + 1 states instead of 2001) use far less than full storage.
    _, ckpt_growth = _peak_rss_mib("discrete", 2000, checkpoints=45)
    assert ckpt_growth < full_growth / 4, (ckpt_growth, full_growth)


# --------------------------------------------------------------------------- non-finite states


def _blowup_node(**kw):
    """x' = w x with w = 1e101 (inside + identity, b = 0), euler, dt = 0.1: the state is
    multiplied by ~1e100 per step, so x_1 = 1e100, x_2 = 1e200, x_3 = 1e300 and x_4 = inf:
    step 3 (from t = 0.3 to t = 0.4) is the first whose result is not finite."""
    model = resode.NeuralODE(
        1,
        T=1.0,
        pieces=5,
        substeps=2,
        method="euler",
        field="inside",
        activation="identity",
        **kw,
    )
    model.params["W"][...] = 1e101
    model.params["b"][...] = 0.0
    return model


def assert_names_step_and_time(message, step=3, dt=0.1):
    m = re.search(r"(?:step|layer)\D{0,3}(\d+)", message)
    assert m, f"no step index in {message!r}"
    t = re.search(r"\bt\s*=\s*([-+0-9.eE]+)", message)
    assert t, f"no time in {message!r}"
    index, time = int(m.group(1)), float(t.group(1).rstrip("."))
    # Either 0-based step `step` (time at its start or end) or 1-based `step + 1`.
    allowed = {(step, step * dt), (step, (step + 1) * dt), (step + 1, (step + 1) * dt)}
    assert any(index == i and abs(time - s) < 1e-9 for i, s in allowed), message


NODE_ENTRIES = [
    "trajectory",
    "forward",
    "predict",
    "discrete",
    "adjoint",
    "checkpoints",
    "turnpike",
    "odeint",
    "odeint_vjp",
    "odeint_vjp_adjoint",
]


def _call(model, entry, X, y):
    kw = sweep_kwargs(model)
    if entry == "trajectory":
        return model.trajectory(X)
    if entry == "forward":
        return model.forward(X)
    if entry == "predict":
        return model.predict(X)
    if entry == "odeint":
        return resode.odeint(model.params, X, **kw)
    if entry.startswith("odeint_vjp"):
        gradient = "adjoint" if entry.endswith("adjoint") else "discrete"
        cot = np.ones((X.shape[0], model.D))
        return resode.odeint_vjp(model.params, X, cot, gradient=gradient, **kw)
    if entry == "adjoint":
        model.gradient = "adjoint"
    elif entry == "checkpoints":
        model.checkpoints = 3
    elif entry == "turnpike":
        model.turnpike = True
    return model.loss_and_grad(X, y)


@pytest.mark.parametrize("entry", NODE_ENTRIES)
def test_non_finite_state_raises_naming_step_and_time(entry):
    model = _blowup_node()
    X, y = np.array([[1.0], [0.5]]), np.array([0, 1])
    with pytest.raises(resode.NonFiniteError) as info:
        _call(model, entry, X, y)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, FloatingPointError)
    assert_names_step_and_time(str(info.value))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("entry", ["trajectory", "forward", "discrete", "adjoint", "odeint_vjp"])
def test_non_finite_state_in_one_late_sample_is_found(entry, threads):
    resode.set_num_threads(threads)
    model = _blowup_node()
    X = np.zeros((1000, 1))  # x = 0 stays 0 ...
    X[900] = 1.0  # ... except in one sample of the last block
    y = np.zeros(1000, dtype=int)
    with pytest.raises(resode.NonFiniteError) as info:
        _call(model, entry, X, y)
    assert_names_step_and_time(str(info.value))


def _float32_overflow_node(**kw):
    """A float32 NODE whose state overflows at step 2: f = W x with W = 1e18 gives x_1 = 1e17,
    x_2 = 1e34, W x_2 = 1e52 > float32 max (3.4e38), all finite in float64."""
    model = resode.NeuralODE(
        1,
        T=1.0,
        pieces=5,
        substeps=2,
        method="euler",
        field="inside",
        activation="identity",
        dtype="float32",
        **kw,
    )
    model.params["W"][...] = 1e18
    model.params["b"][...] = 0.0
    return model


def _huge_step_resnet():
    """A ResNet whose state overflows at layer 1: h = 1e200, f = W x with W = I."""
    net = resode.ResNet(2, 5, h=1e200, field="outside", activation="identity", seed=0)
    net.params["W"][...] = np.eye(2)
    net.params["b"][...] = 0.0
    return net


def test_non_finite_float32_overflows_earlier():
    model = _float32_overflow_node()
    X = np.ones((3, 1), dtype=np.float32)
    twin = resode.NeuralODE(
        1, T=1.0, pieces=5, substeps=2, method="euler", field="inside", activation="identity"
    )
    twin.params = as64(model.params)
    assert np.all(np.isfinite(twin.trajectory(X)[:4]))
    with pytest.raises(resode.NonFiniteError) as info:
        model.forward(X)
    assert_names_step_and_time(str(info.value), step=2)


@pytest.mark.parametrize("checkpoints", [None, 2])
def test_non_finite_step_is_exact_in_the_discrete_gradient(checkpoints):
    """With every state on its tape (checkpoints=None) the discrete gradient checks the last state
    once and looks the first non-finite one up; with checkpoints it checks every step. Both
    name the step that forward() names (float32 overflow at step 2, see above)."""
    model = _float32_overflow_node(checkpoints=checkpoints)
    X = np.ones((3, 1), dtype=np.float32)
    with pytest.raises(resode.NonFiniteError) as info:
        model.loss_and_grad(X, np.zeros(3, dtype=int))
    assert_names_step_and_time(str(info.value), step=2)
    net = _huge_step_resnet()
    with pytest.raises(resode.NonFiniteError) as info:
        net.loss_and_grad(np.ones((3, 2)), np.zeros(3, dtype=int))
    assert_names_step_and_time(str(info.value), step=1, dt=1e200)


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_non_finite_state_raises_for_every_method(method):
    model = _blowup_node()
    model.method = method
    with pytest.raises(resode.NonFiniteError, match=r"(step|layer)"):
        model.loss_and_grad(np.ones((4, 1)), np.zeros(4, dtype=int))


@pytest.mark.parametrize("entry", ["trajectory", "forward", "loss_and_grad", "predict"])
def test_non_finite_resnet_raises_naming_layer(entry):
    net = resode.ResNet(1, 10, h=0.1, field="inside", activation="identity", seed=0)
    net.params["W"][...] = 1e101
    net.params["b"][...] = 0.0
    X, y = np.array([[1.0], [2.0]]), np.array([1, 0])
    with pytest.raises(resode.NonFiniteError) as info:
        net.loss_and_grad(X, y) if entry == "loss_and_grad" else getattr(net, entry)(X)
    assert_names_step_and_time(str(info.value))


def test_non_finite_resnet_with_huge_step_size():
    net = _huge_step_resnet()
    with pytest.raises(resode.NonFiniteError) as info:
        net.forward(np.ones((3, 2)))
    assert_names_step_and_time(str(info.value), step=1, dt=1e200)


def test_unstable_adjoint_backsolve_raises_instead_of_returning_nan():
    # Forward Euler of x' = -1900 x with dt = 1e-3 contracts (factor -0.9 per step); the
    # backsolve re-integrates x backward and grows by 2.9 per step: 2.9^1000 overflows.
    model = resode.NeuralODE(
        1,
        T=1.0,
        pieces=1,
        substeps=1000,
        method="euler",
        field="inside",
        activation="identity",
        gradient="adjoint",
        seed=0,
    )
    model.params["W"][...] = -1900.0
    model.params["b"][...] = 0.0
    X, y = np.ones((4, 1)), np.array([0, 1, 0, 1])
    with pytest.raises(resode.NonFiniteError):
        model.loss_and_grad(X, y)


def test_model_recovers_after_a_non_finite_error():
    model = _blowup_node()
    X, y = np.array([[1.0], [0.5]]), np.array([0, 1])
    with pytest.raises(resode.NonFiniteError):
        model.loss_and_grad(X, y)
    model.params["W"][...] = 0.3
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref_loss_and_grad(model, X, y)
    assert loss == pytest.approx(rloss, rel=1e-12)
    assert_grads_close(grads, rgrads, "float64")
