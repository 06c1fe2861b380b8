"""The loss terms leia has (issue 16): the hardtanh readout, the L1 penalty on the controls, the
weight decay on P (``decay_readout``) and the turnpike weight. Each against the NumPy oracle
(float64 rtol 1e-10, float32 1e-4, each gradient relative to its own largest entry), against
central finite differences of the loss the core computes, and through ``fit`` (the epoch in the
core equals the per-batch loop bitwise)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import resode
from resode import reference as ref

RTOL = {"float64": 1e-10, "float32": 1e-4}
TERMS: dict[str, dict[str, Any]] = {
    "hardtanh": {"readout": "hardtanh", "loss": "mse"},
    "hardtanh_ce": {"readout": "hardtanh"},
    "l1": {"l1": 0.03},
    "decay_readout": {"weight_decay": 0.02, "decay_readout": True},
    "turnpike_weight": {"turnpike": True, "turnpike_weight": 3.5},
    "leia": {
        "readout": "hardtanh",
        "loss": "mse",
        "turnpike": True,
        "turnpike_weight": 10.5,
        "weight_decay": 0.01,
        "decay_readout": True,
        "l1": 0.01,
    },
}


def _node(dtype: str = "float64", gradient: str = "discrete", **kw: Any) -> resode.NeuralODE:
    args: dict[str, Any] = dict(
        T=2.0,
        pieces=3,
        substeps=2,
        method="midpoint",
        classes=2,
        field="bottleneck",
        hidden=5,
        augment=1,
        activation="tanh",
        gradient=gradient,
        dtype=dtype,
        seed=4,
    )
    args.update(kw)
    model = resode.NeuralODE(2, **args)
    rng = np.random.default_rng(9)
    for key in model.params:  # a visibly nonlinear flow; logits on both sides of +-1
        model.params[key] *= 2.0 if key not in ("P", "c") else 1.0
    model.params["P"][...] = 1.5 * rng.standard_normal(model.params["P"].shape)
    return model


def _data(model: Any, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, 2))
    if model.loss == "mse":
        return X.astype(model.dtype), rng.choice([-1.0, 1.0], size=(n, model.classes))
    return X.astype(model.dtype), rng.integers(0, model.classes, n)


def _ref(model: Any, X: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    p64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    kw = dict(
        field=model.field,
        activation=model.activation,
        augment=model.augment,
        loss=model.loss,
        weight_decay=model.weight_decay,
        readout=model.readout,
        l1=model.l1,
        decay_readout=model.decay_readout,
    )
    if isinstance(model, resode.ResNet):
        return ref.resnet_loss_and_grad(p64, X.astype(np.float64), y, h=model.h, **kw)
    return ref.node_loss_and_grad(
        p64,
        X.astype(np.float64),
        y,
        T=model.T,
        substeps=model.substeps,
        method=model.method,
        turnpike=model.turnpike,
        turnpike_weight=model.turnpike_weight,
        gradient=model.gradient,
        **kw,
    )


def _assert_matches_reference(model: Any, X: np.ndarray, y: np.ndarray) -> None:
    rtol = RTOL[model.dtype.name]
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = _ref(model, X, y)
    assert abs(loss - rloss) <= rtol * abs(rloss), (loss, rloss)
    for key, g in grads.items():
        assert g.dtype == model.dtype
        err, scale = _relative_error(g, rgrads[key])
        assert err <= rtol * scale, f"{key}: {err:.2e} > {rtol:.0e} * {scale:.2e}"


# an all-zero reference gradient is compared with this scale instead of its own maximum (0)
ZERO_GRADIENT_SCALE = 1e-12


def _relative_error(g: np.ndarray, g_ref: np.ndarray) -> tuple[float, float]:
    """The largest deviation of ``g`` from ``g_ref`` and the scale it is measured against:
    ``g_ref``'s own largest entry (not the largest over all gradients, which would let a small
    gradient be wrong by its whole size), floored for an all-zero ``g_ref``."""
    err = float(np.max(np.abs(g.astype(np.float64) - g_ref)))
    scale = max(float(np.max(np.abs(g_ref))), ZERO_GRADIENT_SCALE)
    return err, scale


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("terms", sorted(TERMS))
def test_node_terms_match_reference(terms: str, dtype: str, gradient: str) -> None:
    model = _node(dtype, gradient, **TERMS[terms])
    X, y = _data(model)
    _assert_matches_reference(model, X, y)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("terms", ["hardtanh", "l1", "decay_readout"])
def test_resnet_terms_match_reference(terms: str, dtype: str) -> None:
    model = resode.ResNet(2, 4, h=0.5, classes=2, augment=1, dtype=dtype, seed=2, **TERMS[terms])
    model.params["P"][...] *= 4.0
    X, y = _data(model)
    _assert_matches_reference(model, X, y)


@pytest.mark.parametrize("terms", sorted(TERMS))
def test_node_terms_match_central_differences(terms: str) -> None:
    """The discrete gradient is the exact gradient of the loss the core computes: central
    differences of model.loss_and_grad's loss in a few coordinates of every parameter (away
    from the kinks of |theta| and of the clamp, which the data and weights here avoid)."""
    model = _node(**TERMS[terms])
    X, y = _data(model)
    _, grads = model.loss_and_grad(X, y)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for key, p in model.params.items():
        for flat in rng.choice(p.size, size=min(4, p.size), replace=False):
            idx = np.unravel_index(flat, p.shape)
            saved = p[idx]
            p[idx] = saved + eps
            up = model.loss_and_grad(X, y)[0]
            p[idx] = saved - eps
            down = model.loss_and_grad(X, y)[0]
            p[idx] = saved
            fd = (up - down) / (2 * eps)
            assert fd == pytest.approx(grads[key][idx], rel=1e-5, abs=1e-7), (key, idx)


def test_hardtanh_readout_clamps_outputs_and_zeroes_their_gradient() -> None:
    model = _node(readout="hardtanh", loss="mse")
    X, y = _data(model)
    z = model.forward(X)
    linear = _node(loss="mse").forward(X)
    np.testing.assert_array_equal(z, np.clip(linear, -1.0, 1.0))
    assert (np.abs(linear) > 1).any() and (np.abs(linear) < 1).any()
    # Samples whose outputs are all clamped give no gradient at all.
    clamped = (np.abs(linear) > 1).all(axis=1)
    assert clamped.any()
    _, grads = model.loss_and_grad(X[clamped], y[clamped])
    for g in grads.values():
        np.testing.assert_array_equal(g, 0.0)


def test_l1_subgradient_is_zero_at_zero_and_penalty_is_in_the_loss() -> None:
    base = _node()
    model = _node(l1=0.5)
    X, y = _data(model)
    model.params["W1"][0, 0, 0] = base.params["W1"][0, 0, 0] = 0.0
    loss0, g0 = base.loss_and_grad(X, y)
    loss1, g1 = model.loss_and_grad(X, y)
    field = ("W1", "b1", "W2", "b2")
    penalty = 0.5 * sum(float(np.abs(model.params[k]).sum()) for k in field)
    assert loss1 == pytest.approx(loss0 + penalty, rel=1e-12)
    assert g1["W1"][0, 0, 0] == g0["W1"][0, 0, 0]
    np.testing.assert_allclose(g1["W2"] - g0["W2"], 0.5 * np.sign(model.params["W2"]))
    np.testing.assert_array_equal(g1["P"], g0["P"])


def test_decay_readout_decays_P_but_not_c() -> None:
    base, model = _node(weight_decay=0.1), _node(weight_decay=0.1, decay_readout=True)
    X, y = _data(model)
    (_, g0), (_, g1) = base.loss_and_grad(X, y), model.loss_and_grad(X, y)
    np.testing.assert_allclose(g1["P"] - g0["P"], 0.2 * model.params["P"], atol=1e-14)
    np.testing.assert_array_equal(g1["c"], g0["c"])
    np.testing.assert_array_equal(g1["W1"], g0["W1"])


def test_turnpike_weight_scales_the_integral_only() -> None:
    base = _node(turnpike=True, weight_decay=0.05)
    model = _node(turnpike=True, turnpike_weight=2.0, weight_decay=0.05)
    X, y = _data(model)
    (l0, g0), (l2, g2) = base.loss_and_grad(X, y), model.loss_and_grad(X, y)
    reg = 0.05 * sum(float(np.square(model.params[k]).sum()) for k in ("W1", "b1", "W2", "b2"))
    assert l2 - reg == pytest.approx(2 * (l0 - reg), rel=1e-12)
    np.testing.assert_allclose(g2["P"], 2 * g0["P"], rtol=1e-12)


def test_new_options_are_validated_and_saved(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="readout"):
        _node(readout="tanh")
    with pytest.raises(ValueError, match="l1"):
        _node(l1=-1.0)
    with pytest.raises(TypeError, match="decay_readout"):
        _node(decay_readout=1)
    with pytest.raises(ValueError, match="turnpike_weight applies"):
        _node(turnpike_weight=2.0)
    with pytest.raises(ValueError, match="turnpike_weight"):
        _node(turnpike=True, turnpike_weight=0.0)
    model = _node(**TERMS["leia"])
    loaded = resode.load(model.save(tmp_path / "m.npz"))
    assert loaded.config == model.config
    assert loaded.config["readout"] == "hardtanh" and loaded.config["turnpike_weight"] == 10.5


@pytest.mark.parametrize("terms", ["leia", "l1", "hardtanh_ce"])
def test_fit_with_the_terms_equals_the_per_batch_loop(terms: str) -> None:
    """fit runs the epoch in the core: the same updates as loss_and_grad + Adam.step per batch."""
    from resode.optim import Adam

    X, y = resode.datasets.chess3(60, seed=0)
    kw = dict(TERMS[terms])
    targets: Any = y
    if kw.get("loss") == "mse":
        targets = np.where(np.eye(2)[y] > 0, 1.0, -1.0)
    a, b = _node(**kw), _node(**kw)
    opt_a, opt_b = Adam(lr=0.01), Adam(lr=0.01)
    resode.fit(a, X, targets, optimizer=opt_a, epochs=2, batch_size=25, seed=3, progress=False)
    for epoch in range(2):
        order = np.random.default_rng([3, epoch]).permutation(60)
        for lo in range(0, 60, 25):
            idx = order[lo : lo + 25]
            _, grads = b.loss_and_grad(X[idx], targets[idx])
            opt_b.step(b.params, grads)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def test_each_gradient_is_measured_against_its_own_scale() -> None:
    # a gradient of size 1e-6 that is wrong by its whole size, beside one of size 1: within
    # 1e-4 of the largest entry over both, but 100% off relative to itself
    g_ref = {"big": np.array([1.0, -0.5]), "small": np.array([1e-6, 0.0])}
    wrong = {"big": g_ref["big"].copy(), "small": np.zeros(2)}
    errors = [_relative_error(wrong[k], g_ref[k]) for k in g_ref]
    assert [err <= 1e-4 * scale for err, scale in errors] == [True, False]
    # an all-zero reference: the floor, not 0, so a 0 gradient passes and a visible one fails
    assert _relative_error(np.zeros(3), np.zeros(3)) == (0.0, ZERO_GRADIENT_SCALE)
    err, scale = _relative_error(np.full(3, 1e-9), np.zeros(3))
    assert err > 1e-4 * scale
