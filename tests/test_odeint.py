"""resode.odeint / odeint_vjp with a model in place of params, field inference from the keys,
and the message for a width mismatch that ``augment`` explains."""

from __future__ import annotations

import numpy as np
import pytest
import resode

X = np.random.default_rng(0).normal(size=(7, 2))


def _node() -> resode.NeuralODE:
    return resode.NeuralODE(
        2, T=2.0, pieces=4, substeps=3, method="midpoint", field="bottleneck", hidden=5,
        augment=1, activation="relu", gradient="adjoint", seed=0,
    )  # fmt: skip


def test_odeint_of_a_model_is_its_trajectory() -> None:
    node = _node()
    np.testing.assert_array_equal(resode.odeint(node, X), node.trajectory(X))
    resnet = resode.ResNet(2, 5, h=0.3, field="inside", augment=2, seed=1)
    np.testing.assert_array_equal(resode.odeint(resnet, X), resnet.trajectory(X))


def test_odeint_vjp_of_a_model_uses_its_gradient_settings() -> None:
    node = _node()
    v = np.random.default_rng(1).normal(size=(7, 3))
    grads, dX = resode.odeint_vjp(node, X, v)
    same = resode.odeint_vjp(
        node.params, X, v, T=2.0, substeps=3, method="midpoint", field="bottleneck",
        activation="relu", augment=1, gradient="adjoint",
    )  # fmt: skip
    for k in grads:
        np.testing.assert_array_equal(grads[k], same[0][k])
    np.testing.assert_array_equal(dX, same[1])


def test_options_with_a_model_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^T, method: taken from the model"):
        resode.odeint(_node(), X, T=1.0, method="rk4")
    with pytest.raises(ValueError, match=r"^gradient and checkpoints come from the model"):
        resode.odeint_vjp(_node(), X, np.ones((7, 3)), gradient="discrete")


def test_field_is_inferred_from_the_keys() -> None:
    node = _node()
    got = resode.odeint(node.params, X, T=2.0, substeps=3, method="midpoint",
                        activation="relu", augment=1)  # fmt: skip
    np.testing.assert_array_equal(got, node.trajectory(X))
    outside = resode.NeuralODE(2, pieces=3, seed=0)  # W, b: the default field, outside
    np.testing.assert_array_equal(resode.odeint(outside.params, X, T=1.0), outside.trajectory(X))
    with pytest.raises(ValueError, match=r"^params must hold W, b .* got keys \['W1', 'b1'\]"):
        resode.odeint({"W1": node.params["W1"], "b1": node.params["b1"]}, X, T=1.0)
    with pytest.raises(TypeError, match=r"^T is required with a params dict"):
        resode.odeint(outside.params, X)


def test_a_width_mismatch_that_augment_explains_says_so() -> None:
    params = _node().params  # D = 3
    with pytest.raises(ValueError, match=r"X has 2 columns but the parameters' width is D = 3 "
                       r"with augment = 0: .* pass augment=1"):  # fmt: skip
        resode.odeint(params, X, T=1.0)
