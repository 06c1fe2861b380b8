"""The core's elementwise activations (resode._core.activation / activation_grad) against NumPy.

The core evaluates tanh and sigmoid with its own vectorisable exp, so they are checked over the
whole float range, tails included. Oracles are plain NumPy: ``np.tanh``; the stable sigmoid
``1/(1+e^-x)`` for x >= 0 and ``e^x/(1+e^x)`` for x < 0; ``tanh' = 1/cosh^2``;
``sigmoid' = e^-|x| / (1 + e^-|x|)^2``; relu; leaky_relu with slope 0.01; identity.

Values must be accurate elementwise to a few ulp *relative* (rtol 1e-15, no absolute slack),
down to 1e-300 and out to 1e300. Derivatives get rtol 1e-15 plus an absolute 1e-15 (~4.5 ulp of
1, the derivatives' scale): the conventional ``1 - tanh^2`` and ``s (1 - s)`` forms carry the
rounding of ``tanh`` and ``s`` in absolute terms, which is harmless for the chain rule.
float32: values rtol 1e-6 against the float64 truth rounded once to float32; derivatives rtol
1e-6 plus an absolute 5e-7 (~4 ulp of 1 in float32), the same convention.
Kinks: relu'(0) = 0, leaky_relu'(0) = 0.01.
"""

from __future__ import annotations

import numpy as np
import pytest
from resode import _core

ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def expected_value(name, x):
    x = np.asarray(x, dtype=np.float64)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "relu":
        return np.where(x > 0, x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, 0.01 * x)
    return x.copy()


def expected_grad(name, x):
    x = np.asarray(x, dtype=np.float64)
    if name == "tanh":
        with np.errstate(over="ignore"):  # cosh overflows to inf beyond |x| ~ 710: 1/inf = 0
            return 1 / np.cosh(x) ** 2
    if name == "sigmoid":
        e = np.exp(-np.abs(x))
        return e / (1 + e) ** 2
    if name == "relu":
        return np.where(x > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, 0.01)
    return np.ones_like(x)


SPECIAL = np.array([0.0, 1e-300, 1e-8, 0.6, 0.624, 0.626, 1.0, 20.0, 700.0, 1e300])
SPECIAL64 = np.concatenate([SPECIAL, -SPECIAL[1:]])
SPECIAL32 = np.array([0.0, 1e-30, 1e-8, 0.6, 1.0, 20.0, 80.0, 1e30, 3e38])
SPECIAL32 = np.concatenate([SPECIAL32, -SPECIAL32[1:]]).astype(np.float32)


def wide_sample():
    rng = np.random.default_rng(0)
    mags = np.logspace(-300, 300, 4001)
    return np.concatenate(
        [SPECIAL64, mags, -mags, rng.uniform(-1, 1, 4000), rng.uniform(-40, 40, 4000)]
    )


def assert_elementwise(actual, expected, x, rtol, atol, what):
    actual = np.asarray(actual, dtype=np.float64)
    bad = ~(np.abs(actual - expected) <= rtol * np.abs(expected) + atol)
    if bad.any():
        i = np.flatnonzero(bad)[:5]
        rows = ", ".join(f"x={x[j]!r}: got {actual[j]!r}, expected {expected[j]!r}" for j in i)
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} wrong, e.g. {rows}")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_values_float64(name):
    x = wide_sample()
    got = _core.activation(name, x)
    assert got.dtype == np.float64 and got.shape == x.shape
    assert_elementwise(got, expected_value(name, x), x, 1e-15, 0.0, f"{name}(x)")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivatives_float64(name):
    x = wide_sample()
    got = _core.activation_grad(name, x)
    assert got.dtype == np.float64 and got.shape == x.shape
    assert_elementwise(got, expected_grad(name, x), x, 1e-15, 1e-15, f"{name}'(x)")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_special_points_float64(name):
    """The points of the brief on their own, so a failure names them."""
    x = SPECIAL64
    assert_elementwise(_core.activation(name, x), expected_value(name, x), x, 1e-15, 0.0, name)
    assert_elementwise(
        _core.activation_grad(name, x), expected_grad(name, x), x, 1e-15, 1e-15, name + "'"
    )


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_float32(name):
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            SPECIAL32,
            rng.uniform(-30, 30, 3000).astype(np.float32),
            np.logspace(-30, 30, 500).astype(np.float32),
        ]
    )
    x = np.concatenate([x, -x])
    got = _core.activation(name, x)
    grad = _core.activation_grad(name, x)
    assert got.dtype == np.float32 and grad.dtype == np.float32
    x64 = x.astype(np.float64)
    # The float64 truth rounded once to float32 (underflow to float32 denormals or 0 included).
    value = expected_value(name, x64).astype(np.float32).astype(np.float64)
    deriv = expected_grad(name, x64).astype(np.float32).astype(np.float64)
    assert_elementwise(got, value, x64, 1e-6, 0.0, f"float32 {name}")
    # 5e-7 ~ 4 ulp of 1 in float32: 1 - a^2 and a (1 - a) formed in float32.
    assert_elementwise(grad, deriv, x64, 1e-6, 5e-7, f"float32 {name}'")
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kinks_and_fixed_points(dtype):
    z = np.array([0.0, -0.0], dtype=dtype)
    for name, value, grad in [
        ("relu", 0.0, 0.0),
        ("leaky_relu", 0.0, 0.01),
        ("tanh", 0.0, 1.0),
        ("sigmoid", 0.5, 0.25),
        ("identity", 0.0, 1.0),
    ]:
        np.testing.assert_array_equal(_core.activation(name, z), np.array([value] * 2, dtype))
        np.testing.assert_allclose(
            _core.activation_grad(name, z), np.array([grad] * 2, dtype), rtol=1e-7, err_msg=name
        )
    x = np.array([-3.0, -1e-20, 1e-20, 2.5], dtype=dtype)
    np.testing.assert_array_equal(_core.activation_grad("relu", x), np.array([0, 0, 1, 1], dtype))
    np.testing.assert_allclose(
        _core.activation_grad("leaky_relu", x), np.array([0.01, 0.01, 1, 1], dtype), rtol=1e-7
    )
    np.testing.assert_array_equal(_core.activation("identity", x), x)
    np.testing.assert_array_equal(_core.activation_grad("identity", x), np.ones(4, dtype))


def test_saturation_is_exact_and_finite():
    x = np.array([-1e300, -800.0, -50.0, 50.0, 800.0, 1e300])
    t = _core.activation("tanh", x)
    np.testing.assert_array_equal(t, [-1, -1, -1, 1, 1, 1])
    s = _core.activation("sigmoid", x)
    np.testing.assert_array_equal(s[3:], [1, 1, 1])
    assert np.all(np.isfinite(_core.activation_grad("tanh", x)))
    assert np.all(np.isfinite(_core.activation_grad("sigmoid", x)))
    np.testing.assert_array_equal(_core.activation_grad("tanh", x), 0)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("layout", ["0d", "3d", "fortran", "strided", "empty", "readonly"])
def test_shapes_and_layouts(name, layout):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 5, 6))
    if layout == "0d":
        x = np.array(0.3)
    elif layout == "3d":
        x = base
    elif layout == "fortran":
        x = np.asfortranarray(base)
    elif layout == "strided":
        x = base[::2, 1::2, ::3]
    elif layout == "empty":
        x = np.zeros((0, 3))
    else:
        x = base.copy()
        x.flags.writeable = False
    got = _core.activation(name, x)
    grad = _core.activation_grad(name, x)
    assert got.shape == x.shape and grad.shape == x.shape
    clean = np.ascontiguousarray(x).reshape(-1)
    np.testing.assert_array_equal(np.asarray(got).reshape(-1), _core.activation(name, clean))
    np.testing.assert_array_equal(np.asarray(grad).reshape(-1), _core.activation_grad(name, clean))


def test_input_is_not_modified():
    x = np.linspace(-3, 3, 11)
    keep = x.copy()
    for name in ACTIVATIONS:
        _core.activation(name, x)
        _core.activation_grad(name, x)
    np.testing.assert_array_equal(x, keep)
