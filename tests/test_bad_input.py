"""Bad input never crashes and never returns garbage: every case raises ValueError (TypeError for
non-numeric data) with a message naming the argument (issues 2 and 3, "Bad input").

The cases are tables of (id, call, exception type, regex on the message); each regex names the
argument at fault. The raw ``resode._core`` entry points are held to the same standard: they
may be called directly and must validate on their own.
"""

from __future__ import annotations

import numpy as np
import pytest
import resode
from resode import _core

# --------------------------------------------------------------------------- fixtures


def resnet(**kw):
    args = {"classes": 3, "seed": 0}
    args.update(kw)
    return resode.ResNet(2, 3, **args)


def node(**kw):
    args = {"classes": 3, "pieces": 2, "substeps": 2, "seed": 0}
    args.update(kw)
    return resode.NeuralODE(2, **args)


X = np.random.default_rng(0).standard_normal((5, 2))
Y = np.array([0, 1, 2, 0, 1])
T_MSE = np.random.default_rng(1).standard_normal((5, 3))


def _with_param(model, key, value=None, index=None, delete=False):
    """The model with params[key] replaced, edited at ``index``, or deleted."""
    if delete:
        del model.params[key]
    elif index is not None:
        model.params[key][index] = value
    else:
        model.params[key] = value
    return model


def call_with_param(factory, key, method="loss_and_grad", **edit):
    def run():
        model = _with_param(factory(), key, **edit)
        if method == "loss_and_grad":
            return model.loss_and_grad(X, Y)
        return getattr(model, method)(X)

    return run


# --------------------------------------------------------------------------- constructors


CONSTRUCTOR_CASES = [
    ("resnet-layers0", lambda: resode.ResNet(2, 0), ValueError, "layers"),
    ("resnet-layers-neg", lambda: resode.ResNet(2, -1), ValueError, "layers"),
    ("resnet-layers-float", lambda: resode.ResNet(2, 2.5), (TypeError, ValueError), "layers"),
    ("resnet-dim0", lambda: resode.ResNet(0, 2), ValueError, "dim"),
    ("resnet-h0", lambda: resode.ResNet(2, 2, h=0.0), ValueError, r"\bh\b"),
    ("resnet-h-neg", lambda: resode.ResNet(2, 2, h=-0.1), ValueError, r"\bh\b"),
    ("resnet-h-nan", lambda: resode.ResNet(2, 2, h=float("nan")), ValueError, r"\bh\b"),
    ("resnet-h-inf", lambda: resode.ResNet(2, 2, h=float("inf")), ValueError, r"\bh\b"),
    ("resnet-field", lambda: resode.ResNet(2, 2, field="sideways"), ValueError, "field"),
    (
        "resnet-activation",
        lambda: resode.ResNet(2, 2, activation="swish"),
        ValueError,
        "activation",
    ),
    (
        "resnet-activation-case",
        lambda: resode.ResNet(2, 2, activation="Tanh"),
        ValueError,
        "activation",
    ),
    ("resnet-loss", lambda: resode.ResNet(2, 2, loss="hinge"), ValueError, "loss"),
    (
        "resnet-hidden-missing",
        lambda: resode.ResNet(2, 2, field="bottleneck"),
        ValueError,
        "hidden",
    ),
    (
        "resnet-hidden0",
        lambda: resode.ResNet(2, 2, field="bottleneck", hidden=0),
        ValueError,
        "hidden",
    ),
    ("resnet-augment-neg", lambda: resode.ResNet(2, 2, augment=-1), ValueError, "augment"),
    (
        "resnet-weight-decay-neg",
        lambda: resode.ResNet(2, 2, weight_decay=-1e-3),
        ValueError,
        "weight_decay",
    ),
    ("resnet-dtype-int32", lambda: resode.ResNet(2, 2, dtype="int32"), ValueError, "dtype"),
    ("resnet-dtype-float16", lambda: resode.ResNet(2, 2, dtype="float16"), ValueError, "dtype"),
    ("resnet-dtype-complex", lambda: resode.ResNet(2, 2, dtype=np.complex128), ValueError, "dtype"),
    ("resnet-dtype-garbage", lambda: resode.ResNet(2, 2, dtype="not-a-dtype"), ValueError, "dtype"),
    ("node-T0", lambda: resode.NeuralODE(2, T=0.0), ValueError, r"\bT\b"),
    ("node-T-neg", lambda: resode.NeuralODE(2, T=-1.0), ValueError, r"\bT\b"),
    ("node-T-inf", lambda: resode.NeuralODE(2, T=float("inf")), ValueError, r"\bT\b"),
    ("node-pieces0", lambda: resode.NeuralODE(2, pieces=0), ValueError, "pieces"),
    ("node-substeps0", lambda: resode.NeuralODE(2, substeps=0), ValueError, "substeps"),
    ("node-method", lambda: resode.NeuralODE(2, method="rk45"), ValueError, "method"),
    ("node-gradient", lambda: resode.NeuralODE(2, gradient="backprop"), ValueError, "gradient"),
    ("node-checkpoints0", lambda: resode.NeuralODE(2, checkpoints=0), ValueError, "checkpoints"),
    (
        "node-checkpoints-neg",
        lambda: resode.NeuralODE(2, checkpoints=-3),
        ValueError,
        "checkpoints",
    ),
    ("node-field", lambda: resode.NeuralODE(2, field="outer"), ValueError, "field"),
    ("node-activation", lambda: resode.NeuralODE(2, activation="gelu"), ValueError, "activation"),
    ("node-loss", lambda: resode.NeuralODE(2, loss="l1"), ValueError, "loss"),
    ("node-hidden-missing", lambda: resode.NeuralODE(2, field="bottleneck"), ValueError, "hidden"),
    ("node-dtype-int32", lambda: resode.NeuralODE(2, dtype="int32"), ValueError, "dtype"),
]


@pytest.mark.parametrize(
    ("call", "exc", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in CONSTRUCTOR_CASES],
)
def test_constructor_rejects(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


# --------------------------------------------------------------------------- X, y


def _ragged():
    return [[1.0, 2.0], [3.0]]


X_CASES = [
    ("1d", X[:, 0], ValueError, "X"),
    ("3d", X[None], ValueError, "X"),
    ("scalar", 3.0, ValueError, "X"),
    ("width3", np.ones((5, 3)), ValueError, "X"),
    ("width1", np.ones((5, 1)), ValueError, "X"),
    ("empty", np.zeros((0, 2)), ValueError, "X"),
    ("nan", np.where(np.arange(10).reshape(5, 2) == 7, np.nan, X), ValueError, "X"),
    ("inf", np.where(np.arange(10).reshape(5, 2) == 0, np.inf, X), ValueError, "X"),
    ("neg-inf", np.where(np.arange(10).reshape(5, 2) == 9, -np.inf, X), ValueError, "X"),
    ("complex", X.astype(np.complex128), TypeError, "X"),
    ("complex-list", [[1 + 2j, 0.0]] * 5, TypeError, "X"),
    ("strings", np.array([["a", "b"]] * 5), TypeError, "X"),
    ("string-numbers", np.array([["1.0", "2.0"]] * 5), TypeError, "X"),
    ("object", np.array([[None, {}]] * 5, dtype=object), TypeError, "X"),
    ("ragged", _ragged(), (ValueError, TypeError), "X"),
]


@pytest.mark.parametrize("entry", ["forward", "trajectory", "predict", "loss_and_grad"])
@pytest.mark.parametrize("kind", ["resnet", "node"])
@pytest.mark.parametrize(
    ("bad_x", "exc", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in X_CASES]
)
def test_bad_X(bad_x, exc, fragment, kind, entry):
    model = resnet() if kind == "resnet" else node()
    with pytest.raises(exc, match=fragment):
        if entry == "loss_and_grad":
            n = len(bad_x) if isinstance(bad_x, list) or np.ndim(bad_x) else 1
            model.loss_and_grad(bad_x, np.arange(n) % 3)
        else:
            getattr(model, entry)(bad_x)


def test_empty_X_message_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"^X must have shape \(N, 2\) with N >= 1") as info:
        resnet().forward(np.zeros((0, 2)))
    assert "{" not in str(info.value), f"unformatted message: {info.value}"
    assert "(0, 2)" in str(info.value)


Y_CASES = [
    ("short", Y[:4], ValueError, r"\by\b"),
    ("long", np.append(Y, 0), ValueError, r"\by\b"),
    ("2d-labels", Y[:, None], ValueError, r"\by\b"),
    ("negative", np.array([0, 1, -1, 0, 1]), ValueError, r"\by\b"),
    ("equal-classes", np.array([0, 1, 3, 0, 1]), ValueError, r"\by\b"),
    ("huge", np.array([0, 1, 2**40, 0, 1]), ValueError, r"\by\b"),
    ("non-integer-float", np.array([0.0, 1.5, 2.0, 0.0, 1.0]), ValueError, r"\by\b"),
    ("nan-label", np.array([0.0, np.nan, 2.0, 0.0, 1.0]), ValueError, r"\by\b"),
    ("complex", Y.astype(np.complex128), TypeError, r"\by\b"),
    ("strings", np.array(["0", "1", "2", "0", "1"]), TypeError, r"\by\b"),
    ("scalar", 1, ValueError, r"\by\b"),
]


@pytest.mark.parametrize("kind", ["resnet", "node"])
@pytest.mark.parametrize(
    ("bad_y", "exc", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in Y_CASES]
)
def test_bad_labels(bad_y, exc, fragment, kind):
    model = resnet() if kind == "resnet" else node()
    with pytest.raises(exc, match=fragment):
        model.loss_and_grad(X, bad_y)


MSE_CASES = [
    ("labels-1d", Y.astype(np.float64), ValueError, r"\by\b"),
    ("too-few-columns", T_MSE[:, :2], ValueError, r"\by\b"),
    ("too-many-columns", np.ones((5, 4)), ValueError, r"\by\b"),
    ("transposed", T_MSE.T, ValueError, r"\by\b"),
    ("short", T_MSE[:4], ValueError, r"\by\b"),
    ("nan", np.where(np.arange(15).reshape(5, 3) == 4, np.nan, T_MSE), ValueError, r"\by\b"),
    ("inf", np.where(np.arange(15).reshape(5, 3) == 9, np.inf, T_MSE), ValueError, r"\by\b"),
    ("complex", T_MSE.astype(np.complex128), TypeError, r"\by\b"),
]


@pytest.mark.parametrize("kind", ["resnet", "node"])
@pytest.mark.parametrize(
    ("bad_t", "exc", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in MSE_CASES]
)
def test_bad_mse_targets(bad_t, exc, fragment, kind):
    model = resnet(loss="mse") if kind == "resnet" else node(loss="mse")
    with pytest.raises(exc, match=fragment):
        model.loss_and_grad(X, bad_t)


def test_score_with_wrong_length_labels():
    with pytest.raises(ValueError, match=r"\by\b"):
        resnet().score(X, Y[:3])


# --------------------------------------------------------------------------- params


def _factory(kind, field):
    def make():
        if kind == "resnet":
            return resnet(field=field, hidden=4 if field == "bottleneck" else None)
        return node(field=field, hidden=4 if field == "bottleneck" else None)

    return make


PARAM_CASES = [
    # (id, field, key, edit kwargs, exception, fragment)
    ("nan-W", "outside", "W", {"index": (0, 0, 0), "value": np.nan}, ValueError, "W"),
    ("inf-b", "outside", "b", {"index": (1, 0), "value": np.inf}, ValueError, r"\bb\b"),
    ("nan-P", "inside", "P", {"index": (0, 1), "value": np.nan}, ValueError, "P"),
    ("inf-c", "inside", "c", {"index": (2,), "value": -np.inf}, ValueError, r"\bc\b"),
    ("nan-W2", "bottleneck", "W2", {"index": (0, 0, 0), "value": np.nan}, ValueError, "W2"),
    ("nan-b1", "bottleneck", "b1", {"index": (1, 3), "value": np.nan}, ValueError, "b1"),
    ("shape-W-2d", "outside", "W", {"value": np.ones((2, 2))}, ValueError, "W"),
    ("shape-b", "outside", "b", {"value": np.ones((3, 3))}, ValueError, r"\bb\b"),
    ("shape-b-1d", "inside", "b", {"value": np.ones(2)}, ValueError, r"\bb\b"),
    ("shape-P", "outside", "P", {"value": np.ones((3, 5))}, ValueError, "P"),
    ("shape-c", "outside", "c", {"value": np.ones(4)}, ValueError, r"\bc\b"),
    ("shape-c-2d", "outside", "c", {"value": np.ones((3, 1))}, ValueError, r"\bc\b"),
    ("shape-W2", "bottleneck", "W2", {"value": np.ones((3, 2, 5))}, ValueError, "W2"),
    ("shape-b2", "bottleneck", "b2", {"value": np.ones((3, 4))}, ValueError, "b2"),
    ("missing-b", "outside", "b", {"delete": True}, ValueError, r"\bb\b"),
    ("missing-P", "inside", "P", {"delete": True}, ValueError, "P"),
    ("missing-W2", "bottleneck", "W2", {"delete": True}, ValueError, "W2"),
    ("complex-W", "outside", "W", {"value": np.ones((3, 2, 2), complex)}, TypeError, "W"),
    ("string-c", "outside", "c", {"value": np.array(["a", "b", "c"])}, TypeError, r"\bc\b"),
]


@pytest.mark.parametrize("method", ["forward", "loss_and_grad"])
@pytest.mark.parametrize("kind", ["resnet", "node"])
@pytest.mark.parametrize(
    ("field", "key", "edit", "exc", "fragment"),
    [pytest.param(*c[1:], id=c[0]) for c in PARAM_CASES],
)
def test_bad_params(field, key, edit, exc, fragment, kind, method):
    value = edit.get("value")
    if (
        kind == "node"
        and key in ("W", "W1")
        and "index" not in edit
        and value is not None
        and value.ndim == 3
    ):
        edit = dict(edit)  # pieces = 2 for the node: keep the same faults in its shapes
        shape = list(edit["value"].shape)
        shape[0] = 2 if shape[0] == 3 else shape[0]
        edit["value"] = np.ones(shape, dtype=edit["value"].dtype)
    if (
        kind == "node"
        and key in ("b", "b2")
        and "index" not in edit
        and value is not None
        and value.ndim == 2
    ):
        edit = dict(edit)
        edit["value"] = np.ones((2, edit["value"].shape[1]))
    run = call_with_param(_factory(kind, field), key, method=method, **edit)
    with pytest.raises(exc, match=fragment):
        run()


# The first field parameter (W or W1) has a wrong extent. The model knows its layers/pieces, D
# and hidden, so the error must blame that parameter, not a correct one checked against it.
WRONG_EXTENT_CASES = [
    ("W-width", "outside", "W", lambda K: np.ones((K, 3, 3)), "W"),
    ("W-leading-axis", "inside", "W", lambda K: np.ones((K + 4, 2, 2)), "W"),
    ("W1-width", "bottleneck", "W1", lambda K: np.ones((K, 4, 3)), "W1"),
]


@pytest.mark.parametrize("kind", ["resnet", "node"])
@pytest.mark.parametrize(
    ("field", "key", "make", "fragment"),
    [pytest.param(*c[1:], id=c[0]) for c in WRONG_EXTENT_CASES],
)
def test_wrong_extent_of_the_first_field_param_is_blamed_on_it(field, key, make, fragment, kind):
    model = _factory(kind, field)()
    model.params[key] = make(model.params[key].shape[0])
    with pytest.raises(ValueError, match=fragment):
        model.forward(X)
    with pytest.raises(ValueError, match=fragment):
        model.loss_and_grad(X, Y)


@pytest.mark.parametrize("kind", ["resnet", "node"])
@pytest.mark.parametrize("fault", ["layers", "hidden"])
def test_consistently_reshaped_params_are_rejected(fault, kind):
    """Params that agree with each other but not with the model (more layers / pieces than
    the model has, or another hidden width) are params of the wrong shape, not a new model."""
    if fault == "layers":
        model = _factory(kind, "outside")()
        K = model.params["W"].shape[0] + 4
        model.params["W"] = np.zeros((K, 2, 2))
        model.params["b"] = np.zeros((K, 2))
        fragment = r"\bW\b|\bb\b|layers|pieces"
    else:
        model = _factory(kind, "bottleneck")()
        K = model.params["W1"].shape[0]
        model.params["W1"] = np.zeros((K, 6, 2))
        model.params["b1"] = np.zeros((K, 6))
        model.params["W2"] = np.zeros((K, 2, 6))
        fragment = "W1|b1|W2|hidden"
    with pytest.raises(ValueError, match=fragment):
        model.forward(X)
    with pytest.raises(ValueError, match=fragment):
        model.loss_and_grad(X, Y)


def test_nan_param_set_in_place_as_the_issue_describes():
    model = resnet()
    model.params["W"][0, 0, 0] = np.nan
    for call in (
        lambda: model.forward(X),
        lambda: model.loss_and_grad(X, Y),
        lambda: model.trajectory(X),
        lambda: model.predict(X),
    ):
        with pytest.raises(ValueError, match=r"^W contains NaN or Inf"):
            call()


# --------------------------------------------------------------------------- odeint, odeint_vjp


PARAMS = resode.NeuralODE(2, pieces=2, seed=0).params
FIELD_PARAMS = {"W": PARAMS["W"], "b": PARAMS["b"]}
COT = np.ones((5, 2))


def _odeint(**kw):
    args = {"params": FIELD_PARAMS, "X": X, "T": 1.0}
    args.update(kw)
    return lambda: resode.odeint(args.pop("params"), args.pop("X"), **args)


def _vjp(**kw):
    args = {"params": FIELD_PARAMS, "X": X, "cotangent": COT, "T": 1.0}
    args.update(kw)
    return lambda: resode.odeint_vjp(
        args.pop("params"), args.pop("X"), args.pop("cotangent"), **args
    )


FUNCTIONAL_CASES = [
    ("odeint-T0", _odeint(T=0.0), ValueError, r"\bT\b"),
    ("odeint-T-neg", _odeint(T=-2.0), ValueError, r"\bT\b"),
    ("odeint-substeps0", _odeint(substeps=0), ValueError, "substeps"),
    ("odeint-method", _odeint(method="heun"), ValueError, "method"),
    ("odeint-field", _odeint(field="outer"), ValueError, "field"),
    ("odeint-activation", _odeint(activation="softplus"), ValueError, "activation"),
    ("odeint-augment-neg", _odeint(augment=-1), ValueError, "augment"),
    ("odeint-augment-too-big", _odeint(augment=2, X=np.ones((5, 0))), ValueError, "augment|X"),
    ("odeint-missing-b", _odeint(params={"W": PARAMS["W"]}), ValueError, r"\bb\b"),
    ("odeint-bottleneck-keys", _odeint(field="bottleneck"), ValueError, "W1|b1|W2|b2"),
    ("odeint-W-2d", _odeint(params={"W": np.ones((2, 2)), "b": PARAMS["b"]}), ValueError, "W"),
    (
        "odeint-b-shape",
        _odeint(params={"W": PARAMS["W"], "b": np.ones((3, 2))}),
        ValueError,
        r"\bb\b",
    ),
    (
        "odeint-W-nan",
        _odeint(params={"W": np.full((2, 2, 2), np.nan), "b": PARAMS["b"]}),
        ValueError,
        "W",
    ),
    ("odeint-X-width", _odeint(X=np.ones((5, 3))), ValueError, "X"),
    ("odeint-X-nan", _odeint(X=np.full((5, 2), np.nan)), ValueError, "X"),
    ("odeint-X-complex", _odeint(X=X.astype(complex)), TypeError, "X"),
    ("odeint-X-empty", _odeint(X=np.ones((0, 2))), ValueError, "X"),
    ("vjp-gradient", _vjp(gradient="exact"), ValueError, "gradient"),
    ("vjp-checkpoints0", _vjp(checkpoints=0), ValueError, "checkpoints"),
    ("vjp-cotangent-shape", _vjp(cotangent=np.ones((5, 3))), ValueError, "cotangent"),
    ("vjp-cotangent-rows", _vjp(cotangent=np.ones((4, 2))), ValueError, "cotangent"),
    ("vjp-cotangent-nan", _vjp(cotangent=np.full((5, 2), np.nan)), ValueError, "cotangent"),
    ("vjp-cotangent-complex", _vjp(cotangent=COT.astype(complex)), TypeError, "cotangent"),
    ("vjp-T0", _vjp(T=0.0), ValueError, r"\bT\b"),
    ("vjp-method", _vjp(method="rk3"), ValueError, "method"),
    ("vjp-X-width", _vjp(X=np.ones((5, 1))), ValueError, "X"),
]


@pytest.mark.parametrize(
    ("call", "exc", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in FUNCTIONAL_CASES]
)
def test_functional_api_rejects(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


# --------------------------------------------------------------------------- the raw core


D = 2
THETA = [np.asarray(PARAMS["W"]), np.asarray(PARAMS["b"])]  # outside, 2 pieces, D = 2
P = np.ones((3, D))
C = np.zeros(3)
SWEEP = {"field": "outside", "activation": "tanh", "method": "rk4", "dt": 0.5}


def core_traj(**kw):
    args = {"X": X, "theta": THETA, **SWEEP}
    args.update(kw)
    return lambda: _core.trajectory(args.pop("X"), args.pop("theta"), **args)


def core_logits(**kw):
    args = {"X": X, "theta": THETA, "P": P, "c": C, **SWEEP}
    args.update(kw)
    return lambda: _core.logits(
        args.pop("X"), args.pop("theta"), args.pop("P"), args.pop("c"), **args
    )


def core_lg(**kw):
    args = {"X": X, "y": Y, "theta": THETA, "P": P, "c": C, **SWEEP}
    args.update(kw)
    return lambda: _core.loss_and_grad(
        args.pop("X"), args.pop("y"), args.pop("theta"), args.pop("P"), args.pop("c"), **args
    )


def core_vjp(**kw):
    args = {"X": X, "cotangent": COT, "theta": THETA, **SWEEP}
    args.update(kw)
    return lambda: _core.vjp(args.pop("X"), args.pop("cotangent"), args.pop("theta"), **args)


T32 = [t.astype(np.float32) for t in THETA]
NAN_W = [np.where(THETA[0] > 0, np.nan, THETA[0]), THETA[1]]

CORE_CASES = [
    # shapes
    ("traj-theta-count1", core_traj(theta=THETA[:1]), ValueError, "theta"),
    ("traj-theta-count4", core_traj(theta=THETA * 2), ValueError, "theta"),
    ("traj-bottleneck-count2", core_traj(field="bottleneck"), ValueError, "theta"),
    ("traj-W-2d", core_traj(theta=[THETA[0][0], THETA[1]]), ValueError, "W"),
    ("traj-W-nonsquare", core_traj(theta=[np.ones((2, 3, 2)), THETA[1]]), ValueError, "W"),
    ("traj-W-empty", core_traj(theta=[np.ones((0, 2, 2)), np.ones((0, 2))]), ValueError, "W"),
    ("traj-b-shape", core_traj(theta=[THETA[0], np.ones((3, 2))]), ValueError, r"\bb\b"),
    ("traj-X-width", core_traj(X=np.ones((5, 3))), ValueError, "X"),
    ("traj-X-1d", core_traj(X=np.ones(5)), ValueError, "X"),
    ("traj-X-empty", core_traj(X=np.ones((0, 2))), ValueError, "X"),
    ("logits-P-shape", core_logits(P=np.ones((3, 3))), ValueError, "P"),
    ("logits-P-empty", core_logits(P=np.ones((0, 2)), c=np.ones(0)), ValueError, "P"),
    ("logits-c-shape", core_logits(c=np.ones(2)), ValueError, r"\bc\b"),
    ("lg-y-length", core_lg(y=Y[:3]), ValueError, r"\by\b"),
    ("lg-y-2d-labels", core_lg(y=Y[:, None]), ValueError, r"\by\b"),
    ("lg-y-range", core_lg(y=np.array([0, 1, 3, 0, 1])), ValueError, r"\by\b"),
    ("lg-y-negative", core_lg(y=np.array([0, 1, -1, 0, 1])), ValueError, r"\by\b"),
    ("lg-y-float-labels", core_lg(y=Y.astype(float)), (TypeError, ValueError), r"\by\b"),
    ("lg-mse-y-shape", core_lg(loss="mse", y=np.ones((5, 2))), ValueError, r"\by\b"),
    (
        "lg-mse-y-int",
        core_lg(loss="mse", y=np.ones((5, 3), dtype=int)),
        (TypeError, ValueError),
        r"\by\b",
    ),
    ("vjp-cotangent-shape", core_vjp(cotangent=np.ones((5, 3))), ValueError, "cotangent"),
    # dtypes
    ("traj-theta32-X64", core_traj(theta=T32), (TypeError, ValueError), "W|dtype"),
    ("traj-theta64-X32", core_traj(X=X.astype(np.float32)), (TypeError, ValueError), "W|dtype"),
    ("traj-b32-only", core_traj(theta=[THETA[0], T32[1]]), (TypeError, ValueError), r"\bb\b"),
    ("traj-X-int", core_traj(X=np.ones((5, 2), dtype=int)), (TypeError, ValueError), "X"),
    ("traj-X-complex", core_traj(X=X.astype(complex)), (TypeError, ValueError), "X"),
    ("traj-X-float16", core_traj(X=X.astype(np.float16)), (TypeError, ValueError), "X"),
    ("logits-P32", core_logits(P=P.astype(np.float32)), (TypeError, ValueError), "P"),
    ("lg-c32", core_lg(c=C.astype(np.float32)), (TypeError, ValueError), r"\bc\b"),
    (
        "vjp-cotangent32",
        core_vjp(cotangent=COT.astype(np.float32)),
        (TypeError, ValueError),
        "cotangent",
    ),
    ("traj-theta-not-arrays", core_traj(theta=["a", "b"]), (TypeError, ValueError), None),
    ("traj-theta-not-list", core_traj(theta=3), (TypeError, ValueError), None),
    # non-finite
    ("traj-X-nan", core_traj(X=np.full((5, 2), np.nan)), ValueError, "X"),
    ("traj-W-nan", core_traj(theta=NAN_W), ValueError, "W"),
    ("logits-P-inf", core_logits(P=np.full((3, 2), np.inf)), ValueError, "P"),
    ("logits-c-nan", core_logits(c=np.full(3, np.nan)), ValueError, r"\bc\b"),
    ("lg-X-inf", core_lg(X=np.full((5, 2), -np.inf)), ValueError, "X"),
    ("lg-mse-y-nan", core_lg(loss="mse", y=np.full((5, 3), np.nan)), ValueError, r"\by\b"),
    ("vjp-cotangent-nan", core_vjp(cotangent=np.full((5, 2), np.nan)), ValueError, "cotangent"),
    ("vjp-W-nan", core_vjp(theta=NAN_W), ValueError, "W"),
    # options
    ("traj-field", core_traj(field="outer"), ValueError, "field"),
    ("traj-activation", core_traj(activation="elu"), ValueError, "activation"),
    ("traj-method", core_traj(method="rk5"), ValueError, "method"),
    ("traj-dt0", core_traj(dt=0.0), ValueError, "dt"),
    ("traj-dt-neg", core_traj(dt=-0.1), ValueError, "dt"),
    ("traj-dt-nan", core_traj(dt=float("nan")), ValueError, "dt"),
    ("traj-dt-inf", core_traj(dt=float("inf")), ValueError, "dt"),
    ("traj-substeps0", core_traj(substeps=0), ValueError, "substeps"),
    ("traj-substeps-neg", core_traj(substeps=-2), ValueError, "substeps"),
    ("traj-augment-neg", core_traj(augment=-1), ValueError, "augment"),
    ("traj-augment-D", core_traj(augment=2, X=np.ones((5, 0))), ValueError, "augment|X"),
    ("lg-loss", core_lg(loss="hinge"), ValueError, "loss"),
    ("lg-gradient", core_lg(gradient="exact"), ValueError, "gradient"),
    ("lg-checkpoints-neg", core_lg(checkpoints=-1), ValueError, "checkpoints"),
    ("lg-weight-decay-neg", core_lg(weight_decay=-1.0), ValueError, "weight_decay"),
    ("lg-weight-decay-nan", core_lg(weight_decay=float("nan")), ValueError, "weight_decay"),
    ("vjp-gradient", core_vjp(gradient="exact"), ValueError, "gradient"),
    ("vjp-checkpoints-neg", core_vjp(checkpoints=-5), ValueError, "checkpoints"),
]


@pytest.mark.parametrize(
    ("call", "exc", "fragment"), [pytest.param(*c[1:], id=c[0]) for c in CORE_CASES]
)
def test_core_rejects(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


@pytest.mark.parametrize("name", ["relu", "identity"])
def test_core_activation_rejects(name):
    with pytest.raises(ValueError, match="activation"):
        _core.activation("swish", np.ones(3))
    with pytest.raises(ValueError, match="activation"):
        _core.activation_grad("", np.ones(3))
    with pytest.raises(TypeError, match=r"^x must be a float32 or float64 array, got dtype int"):
        _core.activation(name, np.ones(3, dtype=int))
    with pytest.raises(TypeError, match=r"^x must be a float32 or float64 array, got dtype compl"):
        _core.activation_grad(name, np.ones(3, dtype=complex))


def test_set_num_threads_rejects_zero_and_negative():
    for n in (0, -1):
        with pytest.raises(ValueError, match="thread"):
            resode.set_num_threads(n)


def test_core_accepts_non_contiguous_arrays_of_the_right_dtype():
    """Not bad input: strided float64 views are fine and give the contiguous result."""
    expected = _core.trajectory(X, THETA, **SWEEP)
    Xs = np.asfortranarray(X)
    theta_s = [np.asfortranarray(THETA[0]), np.repeat(THETA[1], 2, axis=1)[:, ::2]]
    np.testing.assert_array_equal(_core.trajectory(Xs, theta_s, **SWEEP), expected)


def test_errors_leave_the_model_usable():
    model = resnet()
    good = model.loss_and_grad(X, Y)
    for bad in (np.full((5, 2), np.nan), np.ones((5, 3)), X.astype(complex)):
        with pytest.raises((ValueError, TypeError)):
            model.loss_and_grad(bad, Y)
    again = model.loss_and_grad(X, Y)
    assert again[0] == good[0]
    for key in good[1]:
        np.testing.assert_array_equal(again[1][key], good[1][key])


def test_params_that_are_not_a_dict_are_named() -> None:
    model = resode.NeuralODE(2, seed=0)
    X, y = np.zeros((3, 2)), np.array([0, 1, 0])
    model.params = None
    for call in (lambda: model.forward(X), lambda: model.loss_and_grad(X, y)):
        with pytest.raises(TypeError, match=r"^params must be a dict of arrays .* got NoneType"):
            call()
    with pytest.raises(TypeError, match=r"^model.params must be a dict of arrays"):
        resode.fit(model, X, y, epochs=1, progress=False)
    with pytest.raises(TypeError, match=r"^model.params must be a dict of arrays"):
        model.save("unused.npz")


def test_save_into_a_missing_folder_names_the_users_path(tmp_path) -> None:
    target = tmp_path / "missing" / "model.npz"
    with pytest.raises(
        FileNotFoundError, match=r"cannot write .*missing/model.npz: no such folder"
    ):
        resode.NeuralODE(2, seed=0).save(target)
    assert not (tmp_path / "missing").exists()
