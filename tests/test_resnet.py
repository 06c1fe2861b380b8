"""The C++ ResNet (resode.ResNet -> resode._core) against the NumPy oracle (resode.reference),
against central finite differences, and against the API contract of issue 2 (params dict,
seeding, input conversion, prediction helpers).

Tolerances are relative to the largest entry of the reference array:
``max|cpp - ref| <= rtol * max|ref|``; float64 rtol 1e-12, float32 rtol 1e-5 (the float32 model
is compared with the reference run in float64 on the same float32 numbers cast up).
"""

from __future__ import annotations

import numpy as np
import pytest
import resode
from resode import reference as ref

FIELDS = ("outside", "inside", "bottleneck")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
LOSSES = ("cross_entropy", "mse")
RTOL = {"float64": 1e-12, "float32": 1e-5}


# --------------------------------------------------------------------------- helpers


def assert_close(actual, expected, rtol, what="", scale=None):
    """``max|actual - expected| <= rtol * max|expected|`` (shape must match); ``scale``
    replaces ``max|expected|`` when given."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    assert np.all(np.isfinite(a)), f"{what}: non-finite values"
    if scale is None:
        scale = float(np.max(np.abs(e))) if e.size else 0.0
    err = float(np.max(np.abs(a - e))) if e.size else 0.0
    assert err <= rtol * max(scale, 1e-300), (
        f"{what}: max|diff| = {err:.3e} > {rtol:.0e} * max|ref| ({scale:.3e})"
    )


def assert_grads_close(grads, expected, dtype, what="grad"):
    """Every gradient array against the reference. float64: relative to each array's own
    max; float32: relative to the largest gradient entry of all arrays, since a gradient that
    is a cancelling sum (e.g. dc = mean(softmax - onehot)) carries the rounding of its terms."""
    assert set(grads) == set(expected)
    overall = max(float(np.max(np.abs(g))) for g in expected.values())
    for key, g in grads.items():
        assert g.dtype == np.dtype(dtype), key
        own = float(np.max(np.abs(expected[key])))
        scale = own if dtype == "float64" else overall
        assert_close(g, expected[key], RTOL[dtype], f"{what} {key}", scale=scale)


def make_targets(rng, N, classes, loss):
    if loss == "cross_entropy":
        y = rng.integers(0, classes, N)
        y[: min(N, classes)] = np.arange(min(N, classes))  # every class present when N allows
        return y
    return rng.standard_normal((N, classes))


def as64(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def ref_kwargs(model):
    return {
        "field": model.field,
        "activation": model.activation,
        "h": model.h,
        "augment": model.augment,
    }


# (N, dim, augment, layers, classes, hidden, h, weight_decay)
SHAPES = {
    "N1-dim1": (1, 1, 0, 1, 2, 3, 0.5, 0.0),
    "N7-dim1-aug2-C3": (7, 1, 2, 3, 3, 2, 0.7, 0.01),
    "N33-dim3-C4": (33, 3, 0, 4, 4, 5, 0.3, 0.1),
    "N37-dim9-aug2": (37, 9, 2, 3, 3, 13, 0.4, 1e-3),  # D = 11: SIMD tiles plus edges
    "N21-dim17-aug3": (21, 17, 3, 2, 2, 9, 0.3, 0.0),  # D = 20: a full float32 tile + edge
    "N517-dim2-aug1": (517, 2, 1, 5, 2, 4, 0.25, 1e-3),  # several sample blocks
}


def build(field, activation, loss, dtype, shape, seed=0):
    N, dim, augment, layers, classes, hidden, h, wd = SHAPES[shape]
    model = resode.ResNet(
        dim,
        layers,
        classes=classes,
        field=field,
        activation=activation,
        hidden=hidden if field == "bottleneck" else None,
        augment=augment,
        h=h,
        loss=loss,
        weight_decay=wd,
        dtype=dtype,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 100)
    # Inputs of order 1 and a classifier of order 1, so the losses are not trivially flat.
    X = rng.standard_normal((N, dim)).astype(dtype)
    model.params["P"][...] = rng.standard_normal(model.params["P"].shape)
    model.params["c"][...] = 0.5 * rng.standard_normal(model.params["c"].shape)
    y = make_targets(rng, N, classes, loss)
    if loss == "mse":
        y = y.astype(dtype)
    return model, X, y


# --------------------------------------------------------------------------- C++ vs reference


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("field", FIELDS)
def test_matches_reference(field, activation, loss, dtype, shape):
    model, X, y = build(field, activation, loss, dtype, shape)
    rtol = RTOL[dtype]
    p64 = as64(model.params)
    X64 = X.astype(np.float64)
    y64 = y.astype(np.float64) if loss == "mse" else y
    kw = ref_kwargs(model)

    traj = model.trajectory(X)
    assert traj.dtype == np.dtype(dtype)
    assert_close(traj, ref.resnet_trajectory(p64, X64, **kw), rtol, "trajectory")

    logits = model.forward(X)
    assert logits.dtype == np.dtype(dtype)
    assert_close(logits, ref.resnet_forward(p64, X64, **kw), rtol, "logits")

    loss_value, grads = model.loss_and_grad(X, y)
    ref_value, ref_grads = ref.resnet_loss_and_grad(
        p64, X64, y64, loss=loss, weight_decay=model.weight_decay, **kw
    )
    assert isinstance(loss_value, float)
    assert abs(loss_value - ref_value) <= rtol * abs(ref_value), (loss_value, ref_value)
    assert grads.keys() == model.params.keys()
    assert_grads_close(grads, ref_grads, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("N", [2, 3, 4, 5, 8, 15, 16, 17, 31, 33, 255, 256, 257, 513])
def test_sample_counts_around_vector_and_block_edges(N, dtype):
    """The core vectorises over samples in blocks: partial vectors and partial blocks."""
    model, _, _ = build("bottleneck", "sigmoid", "cross_entropy", dtype, "N7-dim1-aug2-C3")
    rng = np.random.default_rng(N)
    X = rng.standard_normal((N, 1)).astype(dtype)
    y = rng.integers(0, 3, N)
    p64, X64, kw = as64(model.params), X.astype(np.float64), ref_kwargs(model)
    assert_close(model.trajectory(X), ref.resnet_trajectory(p64, X64, **kw), RTOL[dtype], "traj")
    assert_close(model.forward(X), ref.resnet_forward(p64, X64, **kw), RTOL[dtype], "logits")
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref.resnet_loss_and_grad(
        p64, X64, y, loss="cross_entropy", weight_decay=model.weight_decay, **kw
    )
    assert abs(loss - rloss) <= RTOL[dtype] * abs(rloss)
    assert_grads_close(grads, rgrads, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("D", [128, 136, 256])
@pytest.mark.parametrize("field", FIELDS)
def test_wide_states_match_reference(field, D, dtype):
    """Wide states take the large-D product paths: dW += G X^T through a transposed copy of X
    whose row stride is padded off multiples of 1 KiB (D = 128 in float64, 256 in both);
    D = 136 is the unpadded case. N = 70 is two blocks at these widths."""
    model = resode.ResNet(
        D - 2,
        2,
        classes=3,
        field=field,
        activation="tanh",
        augment=2,
        hidden=D if field == "bottleneck" else None,
        h=0.5,
        dtype=dtype,
        seed=D,
    )
    rng = np.random.default_rng(D)
    X = rng.standard_normal((70, D - 2)).astype(dtype)
    y = rng.integers(0, 3, 70)
    p64, X64, kw = as64(model.params), X.astype(np.float64), ref_kwargs(model)
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref.resnet_loss_and_grad(
        p64, X64, y, loss="cross_entropy", weight_decay=model.weight_decay, **kw
    )
    assert abs(loss - rloss) <= RTOL[dtype] * abs(rloss)
    assert_grads_close(grads, rgrads, dtype)


# --------------------------------------------------------------------------- finite differences


def fd_check(model, X, y, n_entries=4, eps=1e-6, tol=1e-7, seed=0):
    """Central differences of ``model.loss_and_grad(X, y)[0]`` at a few random entries of
    every parameter, against the analytic gradient; error relative to max |gradient|."""
    _, grads = model.loss_and_grad(X, y)
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    rng = np.random.default_rng(seed)
    checked = 0
    for key, p in model.params.items():
        flat = p.reshape(-1)  # a view: edits reach model.params
        picks = rng.choice(flat.size, size=min(n_entries, flat.size), replace=False)
        for i in picks:
            orig = flat[i]
            flat[i] = orig + eps
            f_plus = model.loss_and_grad(X, y)[0]
            flat[i] = orig - eps
            f_minus = model.loss_and_grad(X, y)[0]
            flat[i] = orig
            numeric = (f_plus - f_minus) / (2 * eps)
            analytic = float(grads[key].reshape(-1)[i])
            err = abs(numeric - analytic)
            assert err <= tol * scale, (
                f"{key}[{i}]: analytic {analytic:.12e} vs central difference {numeric:.12e}"
            )
            checked += 1
    assert checked >= len(model.params)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])  # smooth: no kinks
@pytest.mark.parametrize("field", FIELDS)
def test_gradient_matches_finite_differences(field, activation, loss):
    model, X, y = build(field, activation, loss, "float64", "N7-dim1-aug2-C3", seed=3)
    fd_check(model, X, y)
    model, X, y = build(field, activation, loss, "float64", "N33-dim3-C4", seed=4)
    fd_check(model, X, y)


# --------------------------------------------------------------------------- params dict


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("field", FIELDS)
def test_param_and_grad_keys_shapes_dtypes(field, dtype):
    L, dim, augment, H, C = 3, 2, 1, 5, 4
    model = resode.ResNet(
        dim,
        L,
        classes=C,
        field=field,
        hidden=H if field == "bottleneck" else None,
        augment=augment,
        dtype=dtype,
        seed=0,
    )
    D = dim + augment
    if field == "bottleneck":
        shapes = {"W1": (L, H, D), "b1": (L, H), "W2": (L, D, H), "b2": (L, D)}
    else:
        shapes = {"W": (L, D, D), "b": (L, D)}
    shapes.update({"P": (C, D), "c": (C,)})
    assert {k: v.shape for k, v in model.params.items()} == shapes
    assert all(v.dtype == np.dtype(dtype) for v in model.params.values())

    X = np.random.default_rng(1).standard_normal((6, dim))
    y = np.array([0, 1, 2, 3, 0, 1])
    loss, grads = model.loss_and_grad(X, y)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert set(grads) == set(model.params)
    for key, p in model.params.items():
        assert isinstance(grads[key], np.ndarray)
        assert grads[key].shape == p.shape, key
        assert grads[key].dtype == p.dtype, key
    assert model.trajectory(X).shape == (L + 1, 6, D)
    assert model.forward(X).shape == (6, C)


def test_same_seed_same_params_different_seed_different():
    a = resode.ResNet(3, 4, field="bottleneck", hidden=5, seed=7)
    b = resode.ResNet(3, 4, field="bottleneck", hidden=5, seed=7)
    c = resode.ResNet(3, 4, field="bottleneck", hidden=5, seed=8)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
        assert not np.array_equal(a.params[key], c.params[key]), key
    a32 = resode.ResNet(3, 4, dtype="float32", seed=7)
    b32 = resode.ResNet(3, 4, dtype="float32", seed=7)
    for key in a32.params:
        np.testing.assert_array_equal(a32.params[key], b32.params[key])
    # Unseeded models draw fresh parameters.
    u, v = resode.ResNet(3, 4), resode.ResNet(3, 4)
    assert not np.array_equal(u.params["W"], v.params["W"])


def test_init_is_not_degenerate():
    model = resode.ResNet(4, 3, classes=3, seed=0)
    for key, p in model.params.items():
        assert np.all(np.isfinite(p)), key
        assert np.std(p) > 0, key


@pytest.mark.parametrize("field", FIELDS)
def test_params_edited_in_place_are_used(field):
    model, X, y = build(field, "tanh", "cross_entropy", "float64", "N33-dim3-C4")
    kw = ref_kwargs(model)
    before = model.forward(X)
    first = "W1" if field == "bottleneck" else "W"
    model.params[first][1] *= 3.0
    model.params["P"][0, 0] += 1.0
    model.params["c"][...] = [0.1, -0.2, 0.3, 0.4]
    after = model.forward(X)
    assert not np.allclose(before, after)
    p64 = as64(model.params)
    assert_close(after, ref.resnet_forward(p64, X, **kw), 1e-12, "logits after edit")
    assert_close(model.trajectory(X), ref.resnet_trajectory(p64, X, **kw), 1e-12, "trajectory")
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref.resnet_loss_and_grad(
        p64, X, y, loss="cross_entropy", weight_decay=model.weight_decay, **kw
    )
    assert loss == pytest.approx(rloss, rel=1e-12)
    for key in rgrads:
        assert_close(grads[key], rgrads[key], 1e-12, f"grad {key}")


@pytest.mark.parametrize("field", FIELDS)
def test_params_replaced_are_used(field):
    model, X, y = build(field, "sigmoid", "mse", "float64", "N7-dim1-aug2-C3")
    kw = ref_kwargs(model)
    rng = np.random.default_rng(5)
    # Replace single entries of the dict by new arrays (one Fortran-ordered, one a strided view).
    for key in list(model.params):
        new = rng.standard_normal(model.params[key].shape) * 0.5
        if new.ndim == 3:
            new = np.asfortranarray(new)
        elif new.ndim == 1:
            new = np.repeat(new, 2)[::2]
        model.params[key] = new
    p64 = as64(model.params)
    assert_close(model.forward(X), ref.resnet_forward(p64, X, **kw), 1e-12, "logits")
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref.resnet_loss_and_grad(
        p64, X, y, loss="mse", weight_decay=model.weight_decay, **kw
    )
    assert loss == pytest.approx(rloss, rel=1e-12)
    for key in rgrads:
        assert grads[key].shape == model.params[key].shape
        assert_close(grads[key], rgrads[key], 1e-12, f"grad {key}")
    # Replace the whole dict.
    other = resode.ResNet(
        1,
        3,
        classes=3,
        field=field,
        activation="sigmoid",
        hidden=2 if field == "bottleneck" else None,
        augment=2,
        h=model.h,
        loss="mse",
        seed=99,
    )
    model.params = {k: v.copy() for k, v in other.params.items()}
    np.testing.assert_array_equal(model.forward(X), other.forward(X))


# --------------------------------------------------------------------------- input conversion


def _all_outputs(model, X, y):
    loss, grads = model.loss_and_grad(X, y)
    return model.trajectory(X), model.forward(X), loss, grads


def assert_same_outputs(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    for key in a[3]:
        np.testing.assert_array_equal(a[3][key], b[3][key])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "variant",
    ["list", "fortran", "strided", "int64", "int32", "float32", "float64", "readonly"],
)
def test_input_variants_give_the_clean_result(variant, dtype):
    model, _, _ = build("outside", "tanh", "cross_entropy", dtype, "N33-dim3-C4")
    rng = np.random.default_rng(11)
    base = rng.integers(-3, 4, size=(33, 3)).astype(np.float64)  # exactly representable
    if variant == "float32":
        base = rng.standard_normal((33, 3)).astype(np.float32).astype(np.float64)
    y = np.arange(33) % 4
    clean = np.ascontiguousarray(base, dtype=dtype)
    if variant == "list":
        X = base.tolist()
    elif variant == "fortran":
        X = np.asfortranarray(base)
    elif variant == "strided":
        big = np.zeros((66, 7))
        big[::2, 1::2] = base
        X = big[::2, 1::2]
        assert not X.flags.c_contiguous
    elif variant in ("int64", "int32"):
        X = base.astype(variant)
    elif variant == "readonly":
        X = base.copy()
        X.flags.writeable = False
    else:
        X = base.astype(variant)
    expected = _all_outputs(model, clean, y)
    assert_same_outputs(_all_outputs(model, X, y), expected)


@pytest.mark.parametrize(
    "variant", ["list", "int32", "uint8", "float_integral", "strided", "column_slice"]
)
def test_label_variants_give_the_clean_result(variant):
    model, X, y = build("inside", "tanh", "cross_entropy", "float64", "N33-dim3-C4")
    expected = model.loss_and_grad(X, y)
    if variant == "list":
        yv = y.tolist()
    elif variant in ("int32", "uint8"):
        yv = y.astype(variant)
    elif variant == "float_integral":
        yv = y.astype(np.float64)
    elif variant == "strided":
        yv = np.repeat(y, 3)[::3]
    else:
        yv = np.stack([y, y], axis=1)[:, 1]
    loss, grads = model.loss_and_grad(X, yv)
    assert loss == expected[0]
    for key in grads:
        np.testing.assert_array_equal(grads[key], expected[1][key])


@pytest.mark.parametrize("variant", ["list", "fortran", "float32", "strided"])
def test_mse_target_variants_give_the_clean_result(variant):
    model, X, y = build("bottleneck", "tanh", "mse", "float64", "N33-dim3-C4")
    y = y.astype(np.float32).astype(np.float64)
    expected = model.loss_and_grad(X, y)
    if variant == "list":
        yv = y.tolist()
    elif variant == "fortran":
        yv = np.asfortranarray(y)
    elif variant == "float32":
        yv = y.astype(np.float32)
    else:
        big = np.zeros((33, 8))
        big[:, ::2] = y
        yv = big[:, ::2]
    loss, grads = model.loss_and_grad(X, yv)
    assert loss == expected[0]
    for key in grads:
        np.testing.assert_array_equal(grads[key], expected[1][key])


def test_inputs_are_not_modified():
    model, X, y = build("outside", "relu", "cross_entropy", "float64", "N33-dim3-C4")
    X0, y0 = X.copy(), y.copy()
    p0 = {k: v.copy() for k, v in model.params.items()}
    model.loss_and_grad(X, y)
    model.forward(X)
    model.trajectory(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    for key in p0:
        np.testing.assert_array_equal(model.params[key], p0[key])


def test_returned_grads_are_independent_between_calls():
    model, X, y = build("outside", "tanh", "cross_entropy", "float64", "N7-dim1-aug2-C3")
    _, g1 = model.loss_and_grad(X, y)
    keep = {k: v.copy() for k, v in g1.items()}
    model.params["W"] *= 2
    _, g2 = model.loss_and_grad(X, y)
    for key in keep:
        np.testing.assert_array_equal(g1[key], keep[key])
    assert not np.array_equal(g1["W"], g2["W"])


# --------------------------------------------------------------------------- trajectory, predict


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_starts_at_augmented_input_and_ends_at_logits(dtype):
    model, X, _ = build("bottleneck", "leaky_relu", "mse", dtype, "N7-dim1-aug2-C3")
    traj = model.trajectory(X)
    np.testing.assert_array_equal(traj[0, :, :1], X)
    np.testing.assert_array_equal(traj[0, :, 1:], 0)
    z = traj[-1].astype(np.float64) @ as64(model.params)["P"].T + model.params["c"]
    assert_close(model.forward(X), z, RTOL[dtype], "logits from final state")


def test_layers_are_applied_in_order_by_hand():
    # x^{k+1} = x^k + h sigma(W_k x^k + b_k), written out sample by sample.
    model = resode.ResNet(2, 3, field="outside", activation="tanh", h=0.7, seed=1)
    X = np.random.default_rng(2).standard_normal((4, 2))
    p = model.params
    for n in range(4):
        x = X[n].copy()
        for k in range(3):
            x = x + 0.7 * np.tanh(p["W"][k] @ x + p["b"][k])
        np.testing.assert_allclose(model.trajectory(X)[-1, n], x, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(model.forward(X)[n], p["P"] @ x + p["c"], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("classes", [2, 3, 4])
def test_predict_proba_score_consistent_with_forward(classes, dtype):
    model = resode.ResNet(3, 2, classes=classes, field="inside", dtype=dtype, seed=classes)
    rng = np.random.default_rng(classes)
    model.params["P"][...] = 3 * rng.standard_normal(model.params["P"].shape)
    X = rng.standard_normal((50, 3))
    z = model.forward(X).astype(np.float64)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    assert proba.shape == (50, classes)
    assert np.all(proba >= 0) and np.all(proba <= 1)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=RTOL[dtype] * 10)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True), rtol=RTOL[dtype] * 10)
    pred = model.predict(X)
    assert pred.shape == (50,)
    assert np.issubdtype(pred.dtype, np.integer)
    np.testing.assert_array_equal(pred, np.argmax(z, axis=1))
    np.testing.assert_array_equal(pred, np.argmax(proba, axis=1))
    y = rng.integers(0, classes, 50)
    expected = float(np.mean(pred == y))
    assert model.score(X, y) == pytest.approx(expected, abs=1e-15)
    assert model.score(X, pred) == 1.0
    assert model.score(X, np.eye(classes)[y]) == pytest.approx(expected, abs=1e-15)


def test_predict_proba_is_stable_for_huge_logits():
    model = resode.ResNet(1, 1, classes=2, field="inside", activation="identity", seed=0)
    model.params["P"][...] = [[1e4], [-1e4]]
    proba = model.predict_proba(np.array([[50.0], [-50.0]]))
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_weight_decay_adds_exactly_its_term():
    model, X, y = build("bottleneck", "tanh", "cross_entropy", "float64", "N33-dim3-C4")
    wd = 0.37
    plain = resode.ResNet(3, 4, classes=4, field="bottleneck", hidden=5, h=0.3, seed=0)
    decayed = resode.ResNet(
        3, 4, classes=4, field="bottleneck", hidden=5, h=0.3, weight_decay=wd, seed=0
    )
    plain.params = {k: v.copy() for k, v in model.params.items()}
    decayed.params = {k: v.copy() for k, v in model.params.items()}
    l0, g0 = plain.loss_and_grad(X, y)
    l1, g1 = decayed.loss_and_grad(X, y)
    field_keys = ("W1", "b1", "W2", "b2")
    penalty = wd * sum(float(np.sum(model.params[k] ** 2)) for k in field_keys)
    assert l1 - l0 == pytest.approx(penalty, rel=1e-12)
    for key in g0:
        extra = 2 * wd * model.params[key] if key in field_keys else 0.0
        assert_close(g1[key] - g0[key], np.broadcast_to(extra, g0[key].shape) + 0.0, 1e-10, key)
