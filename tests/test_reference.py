"""Tests of the NumPy reference (python/resode/reference.py).

Every gradient is checked against central finite differences in float64; the adjoint
gradient, the ODE solvers and the ResNet are checked against their known convergence
orders, exact solutions and each other.
"""

import importlib.util
import itertools
import math
import pathlib

import numpy as np
import pytest
import scipy.linalg

try:
    from resode import reference as ref
except ImportError:
    _p = pathlib.Path(__file__).resolve().parents[1] / "python" / "resode" / "reference.py"
    _s = importlib.util.spec_from_file_location("resode_reference", _p)
    ref = importlib.util.module_from_spec(_s)
    _s.loader.exec_module(ref)

FD_EPS = 1e-6
FD_TOL = 1e-7  # max |analytic - numeric| relative to the largest gradient entry


# --------------------------------------------------------------------------- helpers


def make_params(rng, field, K, D, H=4, classes=3, dtype=np.float64):
    """Random params with field weights of scale ~0.5/sqrt(D) so nothing blows up."""
    s = 0.5 / math.sqrt(D)
    if field == "bottleneck":
        shapes = {"W1": (K, H, D), "b1": (K, H), "W2": (K, D, H), "b2": (K, D)}
    else:
        shapes = {"W": (K, D, D), "b": (K, D)}
    params = {key: s * rng.standard_normal(shape) for key, shape in shapes.items()}
    params["P"] = rng.standard_normal((classes, D))
    params["c"] = rng.standard_normal(classes)
    return {key: v.astype(dtype) for key, v in params.items()}


def make_data(rng, N, dim, classes, loss):
    X = rng.standard_normal((N, dim))
    if loss == "cross_entropy":
        y = rng.integers(0, classes, N)
    else:
        y = rng.standard_normal((N, classes))
    return X, y


def fd_grad(fun, arrays, eps=FD_EPS):
    """Central finite differences of the scalar ``fun(arrays)`` wrt every entry of every
    array in the dict ``arrays``."""
    out = {}
    for key, value in arrays.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            pert = {k: v.copy() for k, v in arrays.items()}
            pert[key][idx] = value[idx] + eps
            f_plus = fun(pert)
            pert[key][idx] = value[idx] - eps
            f_minus = fun(pert)
            g[idx] = (f_plus - f_minus) / (2 * eps)
        out[key] = g
    return out


def assert_grads_close(analytic, numeric, tol=FD_TOL):
    assert analytic.keys() == numeric.keys()
    scale = max(float(np.abs(g).max()) for g in numeric.values())
    scale = max(scale, 1e-12)
    for key in numeric:
        assert analytic[key].shape == numeric[key].shape, key
        err = float(np.abs(analytic[key] - numeric[key]).max()) / scale
        assert err < tol, f"{key}: relative error {err:.2e}"


def check_loss_grad_fd(loss_and_grad, params, X, y, **kw):
    """Check every gradient of ``loss_and_grad(params, X, y, **kw)`` against FD."""
    value, grads = loss_and_grad(params, X, y, **kw)
    assert isinstance(value, float)
    assert grads.keys() == params.keys()
    numeric = fd_grad(lambda q: loss_and_grad(q, X, y, **kw)[0], params)
    assert_grads_close(grads, numeric)


def max_gap(g1, g2):
    return max(float(np.abs(g1[key] - g2[key]).max()) for key in g1)


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("name", ref.ACTIVATIONS)
def test_activation_grad_matches_fd(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(50) * 3
    x = x[np.abs(x) > 1e-3]  # stay off the kinks of relu / leaky_relu
    numeric = (ref.activation(name, x + FD_EPS) - ref.activation(name, x - FD_EPS)) / (2 * FD_EPS)
    np.testing.assert_allclose(ref.activation_grad(name, x), numeric, rtol=1e-7, atol=1e-9)
    x32 = x.astype(np.float32)
    assert ref.activation(name, x32).dtype == np.float32
    assert ref.activation_grad(name, x32).dtype == np.float32


def test_activation_values():
    x = np.array([-2.0, -0.0, 0.0, 3.0])
    np.testing.assert_array_equal(ref.activation("relu", x), [0, 0, 0, 3])
    np.testing.assert_array_equal(ref.activation_grad("relu", x), [0, 0, 0, 1])
    np.testing.assert_allclose(ref.activation("leaky_relu", x), [-0.02, 0, 0, 3])
    np.testing.assert_allclose(ref.activation_grad("leaky_relu", x), [0.01, 0.01, 0.01, 1])
    np.testing.assert_array_equal(ref.activation("identity", x), x)
    np.testing.assert_allclose(ref.activation("sigmoid", x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    big = np.array([-1000.0, -50.0, 50.0, 1000.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        s = ref.activation("sigmoid", big)
        ds = ref.activation_grad("sigmoid", big)
        s32 = ref.activation("sigmoid", big.astype(np.float32))
    np.testing.assert_allclose(s, [0.0, math.exp(-50), 1 - math.exp(-50), 1.0], rtol=1e-12)
    assert s32.dtype == np.float32 and np.all(np.isfinite(s32))
    assert np.all(np.isfinite(ds)) and ds[0] == 0.0


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_data_loss_grad_matches_fd(loss):
    rng = np.random.default_rng(1)
    N, classes = 4, 3
    z = rng.standard_normal((N, classes))
    _, y = make_data(rng, N, 1, classes, loss)
    g = ref.data_loss_grad(z, y, loss)
    numeric = fd_grad(lambda a: ref.data_loss(a["z"], y, loss), {"z": z})["z"]
    np.testing.assert_allclose(g, numeric, rtol=1e-7, atol=1e-10)


def test_data_loss_values():
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    y = np.array([0, 2])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        value = ref.data_loss(z, y, "cross_entropy")
        g = ref.data_loss_grad(z, y, "cross_entropy")
    assert value == pytest.approx(math.log(3) / 2, rel=1e-14)
    np.testing.assert_allclose(g, [[0, 0, 0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-15)
    t = np.ones((2, 3))
    assert ref.data_loss(z[1:], t[1:], "mse") == pytest.approx(1.0)
    assert ref.data_loss(np.zeros((2, 3)), np.full((2, 3), 2.0), "mse") == pytest.approx(4.0)


@pytest.mark.parametrize("field", ref.FIELDS)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
def test_field_formula(field, activation):
    rng = np.random.default_rng(2)
    D, K, k = 3, 2, 1
    p = make_params(rng, field, K, D, H=5)
    x = rng.standard_normal((4, D))
    f = ref.field(p, k, x, field=field, activation=activation)
    for n in range(x.shape[0]):  # per-sample column-vector formulas
        xn = x[n]
        if field == "outside":
            expected = ref.activation(activation, p["W"][k] @ xn + p["b"][k])
        elif field == "inside":
            expected = p["W"][k] @ ref.activation(activation, xn) + p["b"][k]
        else:
            hid = ref.activation(activation, p["W1"][k] @ xn + p["b1"][k])
            expected = p["W2"][k] @ hid + p["b2"][k]
        np.testing.assert_allclose(f[n], expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("method", ref.METHODS)
def test_single_step_matches_hand_written(method):
    rng = np.random.default_rng(3)
    p = make_params(rng, "outside", 1, 3)
    X = rng.standard_normal((5, 3))
    dt = 0.7

    def f(x):
        return ref.field(p, 0, x, field="outside", activation="tanh")

    if method == "euler":
        expected = X + dt * f(X)
    elif method == "midpoint":
        expected = X + dt * f(X + dt / 2 * f(X))
    else:  # classic RK4, not the 3/8 rule
        k1 = f(X)
        k2 = f(X + dt / 2 * k1)
        k3 = f(X + dt / 2 * k2)
        k4 = f(X + dt * k3)
        expected = X + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    traj = ref.odeint(p, X, T=dt, method=method, field="outside", activation="tanh")
    assert traj.shape == (2, 5, 3)
    np.testing.assert_array_equal(traj[0], X)
    np.testing.assert_allclose(traj[1], expected, rtol=1e-14, atol=1e-15)


# --------------------------------------------------------------------------- ResNet


@pytest.mark.parametrize("loss", ref.LOSSES)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("field", ref.FIELDS)
def test_resnet_grad_matches_fd(field, activation, loss):
    rng = np.random.default_rng(10)
    N, dim, augment, L, classes = 5, 2, 1, 3, 3
    p = make_params(rng, field, L, dim + augment, classes=classes)
    X, y = make_data(rng, N, dim, classes, loss)
    check_loss_grad_fd(
        ref.resnet_loss_and_grad,
        p,
        X,
        y,
        field=field,
        activation=activation,
        h=0.7,
        augment=augment,
        loss=loss,
        weight_decay=0.05,
    )


@pytest.mark.parametrize("field", ref.FIELDS)
@pytest.mark.parametrize(
    "N, dim, augment, L, classes", [(1, 1, 0, 1, 2), (1, 1, 2, 2, 3), (3, 1, 3, 1, 2)]
)
def test_resnet_grad_small_shapes(field, N, dim, augment, L, classes):
    rng = np.random.default_rng(11)
    for loss in ref.LOSSES:
        p = make_params(rng, field, L, dim + augment, H=2, classes=classes)
        X, y = make_data(rng, N, dim, classes, loss)
        check_loss_grad_fd(
            ref.resnet_loss_and_grad,
            p,
            X,
            y,
            field=field,
            activation="tanh",
            augment=augment,
            loss=loss,
            weight_decay=0.1,
        )


def test_resnet_forward_and_trajectory():
    rng = np.random.default_rng(12)
    L, h, field = 3, 0.4, "bottleneck"
    p = make_params(rng, field, L, 4, H=3)
    X = rng.standard_normal((6, 2))
    traj = ref.resnet_trajectory(p, X, field=field, activation="sigmoid", h=h, augment=2)
    assert traj.shape == (L + 1, 6, 4)
    x = np.hstack([X, np.zeros((6, 2))])
    np.testing.assert_array_equal(traj[0], x)
    for k in range(L):
        x = x + h * ref.field(p, k, x, field=field, activation="sigmoid")
        np.testing.assert_allclose(traj[k + 1], x, rtol=1e-14, atol=1e-15)
    logits = ref.resnet_forward(p, X, field=field, activation="sigmoid", h=h, augment=2)
    np.testing.assert_allclose(logits, x @ p["P"].T + p["c"], rtol=1e-14, atol=1e-15)


def test_weight_decay_applies_to_field_params_only():
    rng = np.random.default_rng(13)
    p = make_params(rng, "bottleneck", 2, 3)
    X, y = make_data(rng, 4, 3, 3, "cross_entropy")
    kw = {"field": "bottleneck", "activation": "tanh"}
    v0, g0 = ref.resnet_loss_and_grad(p, X, y, **kw)
    v1, g1 = ref.resnet_loss_and_grad(p, X, y, weight_decay=0.3, **kw)
    field_keys = ("W1", "b1", "W2", "b2")
    assert v1 - v0 == pytest.approx(0.3 * sum(np.sum(p[key] ** 2) for key in field_keys))
    for key in field_keys:
        np.testing.assert_allclose(g1[key] - g0[key], 0.6 * p[key], rtol=1e-12, atol=1e-15)
    for key in ("P", "c"):
        np.testing.assert_array_equal(g1[key], g0[key])


@pytest.mark.parametrize("field", ref.FIELDS)
def test_resnet_equals_euler_odeint(field):
    rng = np.random.default_rng(14)
    L, h, augment = 4, 0.3, 1
    p = make_params(rng, field, L, 3)
    X, y = make_data(rng, 5, 2, 3, "cross_entropy")
    common = {"field": field, "activation": "tanh", "augment": augment}
    ode = dict(T=L * h, substeps=1, method="euler", **common)
    np.testing.assert_allclose(
        ref.resnet_trajectory(p, X, h=h, **common), ref.odeint(p, X, **ode), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        ref.resnet_forward(p, X, h=h, **common), ref.node_forward(p, X, **ode), atol=1e-12
    )
    vr, gr = ref.resnet_loss_and_grad(p, X, y, h=h, weight_decay=0.1, **common)
    vn, gn = ref.node_loss_and_grad(p, X, y, weight_decay=0.1, **ode)
    assert vr == pytest.approx(vn, abs=1e-12)
    assert max_gap(gr, gn) < 1e-12


# --------------------------------------------------------------------------- neural ODE


@pytest.mark.parametrize("turnpike", [False, True])
@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("activation", ref.ACTIVATIONS)
@pytest.mark.parametrize("field", ref.FIELDS)
def test_node_discrete_grad_matches_fd(field, activation, method, turnpike):
    rng = np.random.default_rng(20)
    N, dim, augment, pieces, classes = 4, 2, 1, 2, 3
    p = make_params(rng, field, pieces, dim + augment, classes=classes)
    for loss in ref.LOSSES:
        X, y = make_data(rng, N, dim, classes, loss)
        check_loss_grad_fd(
            ref.node_loss_and_grad,
            p,
            X,
            y,
            T=1.3,
            substeps=2,
            method=method,
            field=field,
            activation=activation,
            augment=augment,
            loss=loss,
            weight_decay=0.1,
            turnpike=turnpike,
            gradient="discrete",
        )


@pytest.mark.parametrize("turnpike", [False, True])
@pytest.mark.parametrize(
    "N, dim, augment, pieces, substeps, classes", [(1, 1, 0, 1, 3, 2), (1, 1, 2, 3, 1, 2)]
)
def test_node_discrete_grad_small_shapes(N, dim, augment, pieces, substeps, classes, turnpike):
    rng = np.random.default_rng(21)
    for field, loss in zip(ref.FIELDS, itertools.cycle(ref.LOSSES)):
        p = make_params(rng, field, pieces, dim + augment, H=2, classes=classes)
        X, y = make_data(rng, N, dim, classes, loss)
        check_loss_grad_fd(
            ref.node_loss_and_grad,
            p,
            X,
            y,
            T=0.9,
            substeps=substeps,
            method="rk4",
            field=field,
            activation="sigmoid",
            augment=augment,
            loss=loss,
            weight_decay=0.2,
            turnpike=turnpike,
        )


@pytest.mark.parametrize("loss", ref.LOSSES)
def test_turnpike_value_is_trapezoid(loss):
    rng = np.random.default_rng(22)
    p = make_params(rng, "inside", 2, 3)
    X, y = make_data(rng, 5, 3, 3, loss)
    kw = {"T": 1.5, "substeps": 3, "method": "midpoint", "field": "inside", "activation": "tanh"}
    traj = ref.odeint(p, X, **kw)
    ls = [ref.data_loss(x @ p["P"].T + p["c"], y, loss) for x in traj]
    dt = 1.5 / 6
    expected = dt * (ls[0] / 2 + sum(ls[1:-1]) + ls[-1] / 2) + 0.1 * (
        np.sum(p["W"] ** 2) + np.sum(p["b"] ** 2)
    )
    for gradient in ("discrete", "adjoint"):
        value, _ = ref.node_loss_and_grad(
            p, X, y, loss=loss, turnpike=True, weight_decay=0.1, gradient=gradient, **kw
        )
        assert value == pytest.approx(expected, rel=1e-13)
    terminal, _ = ref.node_loss_and_grad(p, X, y, loss=loss, **kw)
    assert terminal == pytest.approx(ls[-1], rel=1e-13)


@pytest.mark.parametrize("turnpike", [False, True])
@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("field", ref.FIELDS)
def test_adjoint_converges_to_discrete(field, method, turnpike):
    """The adjoint and discrete gradients differ by O(dt^p) for a terminal loss and by
    O(dt^min(p, 2)) with the (trapezoid) turnpike loss."""
    rng = np.random.default_rng(23)
    pieces = 2
    p = make_params(rng, field, pieces, 3)
    X, y = make_data(rng, 6, 2, 3, "cross_entropy")
    gaps = []
    for substeps in (4, 8):  # steps = 8, 16
        kw = {"T": 1.0, "substeps": substeps, "method": method, "field": field}
        kw.update(activation="tanh", augment=1, turnpike=turnpike, weight_decay=0.1)
        vd, gd = ref.node_loss_and_grad(p, X, y, gradient="discrete", **kw)
        va, ga = ref.node_loss_and_grad(p, X, y, gradient="adjoint", **kw)
        assert va == vd  # the same discretised loss value
        assert ga.keys() == gd.keys()
        gaps.append(max_gap(gd, ga))
    order = {"euler": 1, "midpoint": 2, "rk4": 4}[method]
    if turnpike:
        order = min(order, 2)
    ratio = gaps[0] / gaps[1]
    assert 0.75 * 2**order < ratio < 1.3 * 2**order, (gaps, ratio)
    if method == "rk4" and not turnpike:
        assert ratio > 10


@pytest.mark.parametrize("method", ref.METHODS)
@pytest.mark.parametrize("field", ref.FIELDS)
def test_odeint_vjp_matches_fd(field, method):
    rng = np.random.default_rng(24)
    N, dim, augment, pieces = 3, 2, 2, 2
    D = dim + augment
    p = make_params(rng, field, pieces, D)
    field_params = {key: v for key, v in p.items() if key not in ("P", "c")}
    X = rng.standard_normal((N, dim))
    cot = rng.standard_normal((N, D))
    kw = {
        "T": 1.1,
        "substeps": 2,
        "method": method,
        "field": field,
        "activation": "tanh",
        "augment": augment,
    }
    grads, dX = ref.odeint_vjp(field_params, X, cot, **kw)
    assert grads.keys() == field_params.keys()
    assert dX.shape == (N, dim)

    def objective(arrays):
        q = {key: arrays[key] for key in field_params}
        return float(np.sum(cot * ref.odeint(q, arrays["X"], **kw)[-1]))

    numeric = fd_grad(objective, {**field_params, "X": X})
    assert_grads_close({**grads, "X": dX}, numeric)


@pytest.mark.parametrize("field", ref.FIELDS)
def test_odeint_vjp_adjoint_converges(field):
    rng = np.random.default_rng(25)
    p = make_params(rng, field, 2, 3)
    X = rng.standard_normal((4, 2))
    cot = rng.standard_normal((4, 3))
    gaps = []
    for substeps in (4, 8):
        kw = {"T": 1.0, "substeps": substeps, "method": "rk4", "field": field, "activation": "tanh"}
        gd, dXd = ref.odeint_vjp(p, X, cot, augment=1, gradient="discrete", **kw)
        ga, dXa = ref.odeint_vjp(p, X, cot, augment=1, gradient="adjoint", **kw)
        assert "P" not in ga and "c" not in ga
        gaps.append(max(max_gap(gd, ga), float(np.abs(dXd - dXa).max())))
    assert gaps[0] / gaps[1] > 10, gaps


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_odeint_convergence_order_linear(method, order):
    """f = W x + b (inside field, identity activation) against expm of [[W, b], [0, 0]]."""
    rng = np.random.default_rng(26)
    pieces, D, T = 2, 3, 1.0
    p = make_params(rng, "inside", pieces, D)
    X = rng.standard_normal((5, D))
    xa = np.hstack([X, np.ones((5, 1))])  # row vectors [x, 1]
    for k in range(pieces):
        M = np.zeros((D + 1, D + 1))
        M[:D, :D], M[:D, D] = p["W"][k], p["b"][k]
        xa = xa @ scipy.linalg.expm(T / pieces * M).T
    exact = xa[:, :D]
    base = {"euler": 16, "midpoint": 8, "rk4": 4}[method]
    errors = []
    for substeps in (base, 2 * base):
        traj = ref.odeint(
            p, X, T=T, substeps=substeps, method=method, field="inside", activation="identity"
        )
        assert traj.shape == (pieces * substeps + 1, 5, D)
        errors.append(float(np.abs(traj[-1] - exact).max()))
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - order) < 0.2, (errors, observed)


# --------------------------------------------------------------------------- dtypes, API


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("field", ref.FIELDS)
def test_float32_inputs_stay_float32(field, gradient):
    rng = np.random.default_rng(30)
    p64 = make_params(rng, field, 2, 3)
    X64, y = make_data(rng, 5, 2, 3, "cross_entropy")
    p32 = {key: v.astype(np.float32) for key, v in p64.items()}
    X32 = X64.astype(np.float32)
    kw = {"T": 1.0, "substeps": 2, "field": field, "activation": "tanh", "augment": 1}
    lkw = {**kw, "weight_decay": 0.1, "turnpike": True, "gradient": gradient}
    v32, g32 = ref.node_loss_and_grad(p32, X32, y, **lkw)
    v64, g64 = ref.node_loss_and_grad(p64, X64, y, **lkw)
    assert isinstance(v32, float) and v32 == pytest.approx(v64, rel=1e-5)
    for key, value in p32.items():
        assert g32[key].dtype == np.float32 and g32[key].shape == value.shape
        np.testing.assert_allclose(g32[key], g64[key], rtol=1e-3, atol=1e-5)
    assert ref.odeint(p32, X32, **kw).dtype == np.float32
    assert ref.node_forward(p32, X32, **kw).dtype == np.float32
    cot = np.ones((5, 3), dtype=np.float32)
    gv, dX = ref.odeint_vjp(p32, X32, cot, gradient=gradient, **kw)
    assert dX.dtype == np.float32 and all(g.dtype == np.float32 for g in gv.values())
    rkw = {"field": field, "activation": "relu", "augment": 1, "loss": "mse", "weight_decay": 0.1}
    _, gr = ref.resnet_loss_and_grad(p32, X32, np.zeros((5, 3), np.float32), **rkw)
    assert all(gr[key].dtype == np.float32 for key in p32)
    assert (
        ref.resnet_trajectory(p32, X32, field=field, activation="relu", augment=1).dtype
        == np.float32
    )


def test_public_names():
    assert ref.ACTIVATIONS == ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
    assert ref.FIELDS == ("outside", "inside", "bottleneck")
    assert ref.LOSSES == ("cross_entropy", "mse")
    assert ref.METHODS == ("euler", "midpoint", "rk4")


def test_unknown_names_raise():
    rng = np.random.default_rng(31)
    p = make_params(rng, "outside", 1, 2)
    X, y = make_data(rng, 2, 2, 3, "cross_entropy")
    kw = {"T": 1.0, "field": "outside", "activation": "tanh"}
    with pytest.raises(ValueError):
        ref.activation("softplus", X)
    with pytest.raises(ValueError):
        ref.node_forward(p, X, T=1.0, field="middle", activation="tanh")
    with pytest.raises(ValueError):
        ref.node_forward(p, X, method="rk45", **kw)
    with pytest.raises(ValueError):
        ref.node_loss_and_grad(p, X, y, loss="hinge", **kw)
    with pytest.raises(ValueError):
        ref.node_loss_and_grad(p, X, y, gradient="magic", **kw)
