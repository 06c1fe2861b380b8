"""Tests for resode.optim (SGD / Adam on dicts of NumPy arrays, LR schedules)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable

import numpy as np
import pytest
from resode import optim

Params = dict[str, np.ndarray]


# --------------------------------------------------------------------------- helpers


def _quadratic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SPD ``A`` (10 x 10, eigenvalues 1..5), ``b`` and the minimiser ``A^-1 b``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    a = q @ np.diag(np.linspace(1.0, 5.0, 10)) @ q.T
    b = rng.standard_normal(10)
    return a, b, np.linalg.solve(a, b)


def _flat(p: Params) -> np.ndarray:
    return np.concatenate([p["W"].ravel(), p["b"]])


def _quad_grads(a: np.ndarray, b: np.ndarray, p: Params) -> Params:
    """Gradient of ``0.5 x^T A x - b^T x`` with ``x = concat(W.ravel(), b)``."""
    g = a @ _flat(p) - b
    return {"W": g[:6].reshape(2, 3), "b": g[6:]}


def _fresh_params(dtype: type = np.float64) -> Params:
    return {"W": np.zeros((2, 3), dtype=dtype), "b": np.zeros(4, dtype=dtype)}


def _noisy_grads(p: Params, i: int) -> Params:
    """Deterministic, parameter-dependent gradients that differ at every step."""
    rng = np.random.default_rng(1000 + i)
    return {k: (v + rng.standard_normal(v.shape)).astype(v.dtype) for k, v in p.items()}


OPTIMIZERS: dict[str, Callable[[], optim.Optimizer]] = {
    "sgd": lambda: optim.SGD(lr=0.05),
    "sgd_momentum": lambda: optim.SGD(lr=0.05, momentum=0.9, schedule=optim.StepLR(2, 0.5)),
    "sgd_nesterov": lambda: optim.SGD(
        lr=0.05, momentum=0.8, nesterov=True, schedule=optim.CosineLR(6, 0.1)
    ),
    "adam": lambda: optim.Adam(lr=0.01, schedule=optim.CosineLR(5)),
    "adam_betas": lambda: optim.Adam(lr=0.02, betas=(0.5, 0.9), eps=1e-6),
}


# --------------------------------------------------------------------------- convergence


@pytest.mark.parametrize(
    ("make", "steps"),
    [
        (lambda: optim.SGD(lr=0.2), 300),
        (lambda: optim.SGD(lr=0.1, momentum=0.9), 500),
        (lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=True), 500),
        (lambda: optim.Adam(lr=0.02), 1000),
    ],
    ids=["sgd", "momentum", "nesterov", "adam"],
)
def test_converges_on_convex_quadratic(make: Callable[[], optim.Optimizer], steps: int) -> None:
    a, b, x_star = _quadratic()
    p = _fresh_params()
    opt = make()
    for _ in range(steps):
        opt.step(p, _quad_grads(a, b, p))
    np.testing.assert_allclose(_flat(p), x_star, rtol=0, atol=1e-6)
    assert opt.step_count == steps


def test_adam_converges_with_cosine_schedule() -> None:
    a, b, x_star = _quadratic(seed=1)
    p = _fresh_params()
    opt = optim.Adam(lr=0.05, schedule=optim.CosineLR(total_epochs=20, min_factor=0.05))
    for _ in range(20):  # 20 "epochs" of 50 steps
        for _ in range(50):
            opt.step(p, _quad_grads(a, b, p))
        opt.epoch_end()
    np.testing.assert_allclose(_flat(p), x_star, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- exact updates


P0 = np.array([1.0, -2.0, 0.5])
G1 = np.array([0.3, -1.0, 2.0])
G2 = np.array([-0.7, 0.4, 1.5])


def test_sgd_plain_two_steps() -> None:
    lr = 0.1
    p = {"w": P0.copy()}
    opt = optim.SGD(lr=lr)
    opt.step(p, {"w": G1})
    np.testing.assert_allclose(p["w"], P0 - lr * G1, rtol=1e-15)
    opt.step(p, {"w": G2})
    np.testing.assert_allclose(p["w"], P0 - lr * G1 - lr * G2, rtol=1e-15)
    assert opt.state_dict().keys() == {"step", "epoch"}  # no momentum buffers


def test_sgd_momentum_two_steps() -> None:
    lr, mu = 0.1, 0.9
    p = {"w": P0.copy()}
    opt = optim.SGD(lr=lr, momentum=mu)
    opt.step(p, {"w": G1})
    buf1 = G1
    p1 = P0 - lr * buf1
    np.testing.assert_allclose(p["w"], p1, rtol=1e-15)
    opt.step(p, {"w": G2})
    buf2 = mu * buf1 + G2
    np.testing.assert_allclose(p["w"], p1 - lr * buf2, rtol=1e-14)
    np.testing.assert_allclose(opt.state_dict()["buf/w"], buf2, rtol=1e-15)


def test_sgd_nesterov_two_steps() -> None:
    lr, mu = 0.1, 0.9
    p = {"w": P0.copy()}
    opt = optim.SGD(lr=lr, momentum=mu, nesterov=True)
    opt.step(p, {"w": G1})
    buf1 = G1
    p1 = P0 - lr * (G1 + mu * buf1)
    np.testing.assert_allclose(p["w"], p1, rtol=1e-15)
    opt.step(p, {"w": G2})
    buf2 = mu * buf1 + G2
    np.testing.assert_allclose(p["w"], p1 - lr * (G2 + mu * buf2), rtol=1e-14)


def test_sgd_first_step_does_not_alias_gradient() -> None:
    g = G1.copy()
    opt = optim.SGD(lr=0.1, momentum=0.9)
    opt.step({"w": P0.copy()}, {"w": g})
    opt.step({"w": P0.copy()}, {"w": g})
    np.testing.assert_array_equal(g, G1)  # the buffer is a copy, g is untouched


def test_adam_first_step_is_about_lr_sign_g() -> None:
    lr, eps = 0.01, 1e-8
    p = {"w": P0.copy()}
    opt = optim.Adam(lr=lr, eps=eps)
    opt.step(p, {"w": G1})
    # m_hat = g, v_hat = g^2  =>  p1 = p0 - lr * g / (|g| + eps)
    np.testing.assert_allclose(p["w"], P0 - lr * G1 / (np.abs(G1) + eps), rtol=1e-14)
    np.testing.assert_allclose(p["w"], P0 - lr * np.sign(G1), rtol=0, atol=1e-9)


def test_adam_two_steps_by_hand() -> None:
    lr, (b1, b2), eps = 0.05, (0.8, 0.95), 1e-6
    p = {"w": P0.copy()}
    opt = optim.Adam(lr=lr, betas=(b1, b2), eps=eps)
    opt.step(p, {"w": G1})
    opt.step(p, {"w": G2})
    m, v, x = np.zeros(3), np.zeros(3), P0.copy()
    for t, g in ((1, G1), (2, G2)):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        x = x - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(p["w"], x, rtol=1e-13)
    state = opt.state_dict()
    np.testing.assert_allclose(state["m/w"], m, rtol=1e-15)
    np.testing.assert_allclose(state["v/w"], v, rtol=1e-15)
    assert int(state["step"]) == 2


def test_updates_in_place() -> None:
    w = P0.copy()
    params = {"w": w}
    for opt in (optim.SGD(lr=0.1, momentum=0.5), optim.Adam(lr=0.1)):
        opt.step(params, {"w": G1})
        assert params["w"] is w
    assert not np.array_equal(w, P0)


def test_grads_as_lists_and_0d_params() -> None:
    p = {"w": np.array([1.0, 2.0]), "s": np.array(3.0)}
    optim.SGD(lr=0.5).step(p, {"w": [1.0, 1.0], "s": 2.0})
    np.testing.assert_array_equal(p["w"], [0.5, 1.5])
    assert p["s"].shape == ()
    assert float(p["s"]) == 2.0


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("grad_dtype", [np.float32, np.float64])
def test_float32_params_stay_float32(name: str, grad_dtype: type) -> None:
    p = _fresh_params(np.float32)
    opt = OPTIMIZERS[name]()
    for i in range(3):
        grads = {k: v.astype(grad_dtype) for k, v in _noisy_grads(p, i).items()}
        opt.step(p, grads)
    assert all(v.dtype == np.float32 for v in p.values())
    state = opt.state_dict()
    assert all(v.dtype == np.float32 for k, v in state.items() if "/" in k)


def test_float32_matches_float64_roughly() -> None:
    p32, p64 = _fresh_params(np.float32), _fresh_params(np.float64)
    o32, o64 = optim.Adam(lr=0.01), optim.Adam(lr=0.01)
    for i in range(10):
        g = _noisy_grads(p64, i)
        o32.step(p32, g)
        o64.step(p64, g)
    for k in p64:
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- schedules


def test_step_lr_factors() -> None:
    s = optim.StepLR(step_size=3, gamma=0.5)
    assert [s(e) for e in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert s.factor(30) == 0.5**10
    assert optim.StepLR(10).factor(25) == pytest.approx(0.01, rel=1e-12)
    assert s.config() == {"name": "StepLR", "step_size": 3, "gamma": 0.5}


def test_cosine_lr_factors() -> None:
    s = optim.CosineLR(total_epochs=10, min_factor=0.1)
    assert s(0) == 1.0
    assert s(5) == pytest.approx(0.55, abs=1e-15)
    assert s(10) == pytest.approx(0.1, abs=1e-15)
    assert s(50) == s(10)  # clamped after total_epochs
    for e in range(11):
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * e / 10)) / 2
        assert s(e) == pytest.approx(expected, abs=1e-15)
    factors = [s(e) for e in range(11)]
    assert all(x > y for x, y in zip(factors, factors[1:]))
    assert optim.CosineLR(4).factor(4) == pytest.approx(0.0, abs=1e-15)
    assert s.config() == {"name": "CosineLR", "total_epochs": 10, "min_factor": 0.1}


def test_optimizer_lr_follows_schedule_and_epoch_end() -> None:
    opt = optim.SGD(lr=0.2, schedule=optim.StepLR(2, gamma=0.1))
    lrs = []
    for _ in range(5):
        lrs.append(opt.lr)
        opt.epoch_end()
    np.testing.assert_allclose(lrs, [0.2, 0.2, 0.02, 0.02, 0.002], rtol=1e-12)
    assert opt.epoch == 5
    assert optim.Adam(lr=0.3).lr == 0.3


def test_schedule_scales_the_update() -> None:
    p = {"w": np.zeros(2)}
    opt = optim.SGD(lr=1.0, schedule=optim.StepLR(1, gamma=0.5))
    opt.epoch_end()
    opt.step(p, {"w": np.ones(2)})
    np.testing.assert_array_equal(p["w"], [-0.5, -0.5])


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda: optim.StepLR(0), "step_size"),
        (lambda: optim.StepLR(2.5), "step_size"),
        (lambda: optim.StepLR(2, gamma=0.0), "gamma"),
        (lambda: optim.StepLR(2, gamma=-1.0), "gamma"),
        (lambda: optim.CosineLR(0), "total_epochs"),
        (lambda: optim.CosineLR(5, min_factor=-0.1), "min_factor"),
        (lambda: optim.CosineLR(5, min_factor=1.5), "min_factor"),
        (lambda: optim.StepLR(2)(-1), "epoch"),
        (lambda: optim.CosineLR(2).factor(-1), "epoch"),
    ],
)
def test_schedule_bad_arguments(make: Callable[[], object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        make()


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_config_json_round_trip(name: str) -> None:
    opt = OPTIMIZERS[name]()
    cfg = opt.config()
    cfg2 = json.loads(json.dumps(cfg))
    rebuilt = optim.from_config(cfg2)
    assert type(rebuilt) is type(opt)
    assert rebuilt.config() == cfg
    assert rebuilt.schedule == opt.schedule
    assert rebuilt.lr == opt.lr
    assert repr(rebuilt) == repr(opt)


def test_config_contents() -> None:
    cfg = optim.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-7, schedule=optim.StepLR(5)).config()
    assert cfg == {
        "name": "Adam",
        "lr": 0.01,
        "betas": [0.8, 0.99],
        "eps": 1e-7,
        "schedule": {"name": "StepLR", "step_size": 5, "gamma": 0.1},
    }
    assert optim.SGD().config() == {
        "name": "SGD",
        "lr": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "schedule": None,
    }


@pytest.mark.parametrize(
    "cfg",
    [
        {"name": "RMSprop", "lr": 0.1},
        {"lr": 0.1},
        {"name": "SGD", "lr": 0.1, "bogus": 1},
        {"name": "SGD", "lr": -0.1},
        {"name": "SGD", "schedule": {"name": "Linear"}},
        {"name": "SGD", "schedule": {"name": "StepLR"}},
    ],
)
def test_from_config_bad(cfg: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"name|config|lr"):
        optim.from_config(cfg)


# --------------------------------------------------------------------------- state


def _train(opt: optim.Optimizer, p: Params, start: int, stop: int, per_epoch: int = 3) -> None:
    for i in range(start, stop):
        opt.step(p, _noisy_grads(p, i))
        if (i + 1) % per_epoch == 0:
            opt.epoch_end()


def _npz_round_trip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_resume_is_bitwise_identical(name: str, dtype: type) -> None:
    # Uninterrupted run.
    p_ref = _fresh_params(dtype)
    opt_ref = OPTIMIZERS[name]()
    _train(opt_ref, p_ref, 0, 20)

    # Interrupted: 8 steps, save params + optimiser (npz without pickle, JSON config).
    p = _fresh_params(dtype)
    opt = OPTIMIZERS[name]()
    _train(opt, p, 0, 8)
    state = _npz_round_trip(opt.state_dict())
    cfg = json.loads(json.dumps(opt.config()))
    saved_params = _npz_round_trip(p)
    del opt, p

    resumed = optim.from_config(cfg)
    resumed.load_state_dict(state)
    assert resumed.step_count == 8
    assert resumed.epoch == 2
    _train(resumed, saved_params, 8, 20)

    for k in p_ref:
        assert saved_params[k].dtype == dtype
        np.testing.assert_array_equal(saved_params[k], p_ref[k])
    for k, v in opt_ref.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v)
    assert resumed.lr == opt_ref.lr


def test_state_dict_layout() -> None:
    p = _fresh_params()
    adam = optim.Adam()
    adam.step(p, _noisy_grads(p, 0))
    adam.epoch_end()
    state = adam.state_dict()
    assert set(state) == {"step", "epoch", "m/W", "m/b", "v/W", "v/b"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["step"].shape == ()
    assert state["step"].dtype == np.int64
    assert int(state["step"]) == 1
    assert int(state["epoch"]) == 1
    assert state["m/W"].shape == (2, 3)

    sgd = optim.SGD(momentum=0.9)
    sgd.step(p, _noisy_grads(p, 0))
    assert set(sgd.state_dict()) == {"step", "epoch", "buf/W", "buf/b"}


def test_state_dict_returns_copies() -> None:
    p = _fresh_params()
    opt = optim.Adam()
    opt.step(p, _noisy_grads(p, 0))
    state = opt.state_dict()
    before = state["m/W"].copy()
    opt.step(p, _noisy_grads(p, 1))
    np.testing.assert_array_equal(state["m/W"], before)  # not changed by later steps
    state["m/W"][:] = 123.0
    assert not np.array_equal(opt.state_dict()["m/W"], state["m/W"])


def test_load_state_dict_copies_input() -> None:
    p = _fresh_params()
    opt = optim.SGD(lr=0.1, momentum=0.9)
    opt.step(p, _noisy_grads(p, 0))
    state = opt.state_dict()
    other = optim.SGD(lr=0.1, momentum=0.9)
    other.load_state_dict(state)
    other.step(p, _noisy_grads(p, 1))
    np.testing.assert_array_equal(state["buf/W"], opt.state_dict()["buf/W"])


def test_key_names_with_slashes() -> None:
    p = {"layer1/W": np.ones(2), "layer1/b": np.ones(1)}
    g = {k: np.full_like(v, 0.5) for k, v in p.items()}
    opt = optim.Adam(lr=0.1)
    opt.step(p, g)
    state = opt.state_dict()
    assert {"m/layer1/W", "v/layer1/b"} <= set(state)
    other = optim.Adam(lr=0.1)
    other.load_state_dict(state)
    p2 = {k: v.copy() for k, v in p.items()}
    opt.step(p, g)
    other.step(p2, g)
    for k in p:
        np.testing.assert_array_equal(p2[k], p[k])


@pytest.mark.parametrize(
    ("make", "state", "match"),
    [
        (optim.Adam, {"epoch": np.array(0)}, "step"),
        (optim.Adam, {"step": np.array(0)}, "epoch"),
        (optim.Adam, {"step": np.array(1), "epoch": np.array(0), "buf/W": np.ones(2)}, "buf/W"),
        (optim.Adam, {"step": np.array(1), "epoch": np.array(0), "m/W": np.ones(2)}, "'v'"),
        (
            optim.Adam,
            {"step": np.array(1), "epoch": np.array(0), "m/W": np.ones(2), "v/b": np.ones(2)},
            r"'[Wb]'",
        ),
        (optim.Adam, {"step": np.array(-1), "epoch": np.array(0)}, "step"),
        (optim.Adam, {"step": np.array(1), "epoch": np.array(0), "junk": np.ones(1)}, "junk"),
        (
            lambda: optim.SGD(lr=0.1, momentum=0.9),
            {"step": np.array(1), "epoch": np.array(0), "m/W": np.ones(2)},
            "m/W",
        ),
        (optim.SGD, {"step": np.array(1), "epoch": np.array(0), "buf/W": np.ones(2)}, "momentum"),
    ],
)
def test_load_state_dict_bad(
    make: Callable[[], optim.Optimizer], state: dict[str, np.ndarray], match: str
) -> None:
    opt = make()
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert opt.step_count == 0  # unchanged on failure


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (lambda: optim.SGD(lr=0.0), "lr"),
        (lambda: optim.SGD(lr=-0.1), "lr"),
        (lambda: optim.SGD(lr=float("nan")), "lr"),
        (lambda: optim.SGD(lr="0.1"), "lr"),
        (lambda: optim.SGD(momentum=-0.5), "momentum"),
        (lambda: optim.SGD(momentum=float("inf")), "momentum"),
        (lambda: optim.SGD(nesterov=True), "nesterov"),
        (lambda: optim.SGD(momentum=0.9, nesterov="yes"), "nesterov"),
        (lambda: optim.SGD(schedule=0.5), "schedule"),
        (lambda: optim.Adam(lr=0.0), "lr"),
        (lambda: optim.Adam(betas=(1.0, 0.999)), r"betas\[0\]"),
        (lambda: optim.Adam(betas=(0.9, 1.0)), r"betas\[1\]"),
        (lambda: optim.Adam(betas=(-0.1, 0.999)), r"betas\[0\]"),
        (lambda: optim.Adam(betas=(0.9,)), "betas"),
        (lambda: optim.Adam(betas=0.9), "betas"),
        (lambda: optim.Adam(eps=0.0), "eps"),
        (lambda: optim.Adam(eps=-1e-8), "eps"),
        (lambda: optim.Adam(schedule=lambda e: 1.0), "schedule"),
    ],
)
def test_constructor_bad_arguments(make: Callable[[], object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        make()


def test_valid_edge_arguments() -> None:
    optim.Adam(betas=(0.0, 0.0))
    optim.SGD(momentum=0.0)
    optim.SGD(momentum=0.5, nesterov=np.bool_(True))


@pytest.mark.parametrize("make", [optim.SGD, lambda: optim.SGD(momentum=0.9), optim.Adam])
def test_step_mismatched_keys_and_shapes(make: Callable[[], optim.Optimizer]) -> None:
    opt = make()
    p = _fresh_params()
    g = _noisy_grads(p, 0)
    with pytest.raises(ValueError, match="'b'"):
        opt.step(p, {"W": g["W"]})
    with pytest.raises(ValueError, match="'extra'"):
        opt.step(p, {**g, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="'W'"):
        opt.step(p, {"W": np.zeros((3, 2)), "b": g["b"]})
    with pytest.raises(ValueError, match="'b'"):
        opt.step({**p, "b": np.zeros(4, dtype=np.int64)}, g)
    read_only = p["W"].copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="'W'"):
        opt.step({**p, "W": read_only}, g)
    assert opt.step_count == 0  # nothing applied
    np.testing.assert_array_equal(_flat(p), 0.0)


@pytest.mark.parametrize("make", [lambda: optim.SGD(momentum=0.9), optim.Adam])
def test_step_keys_must_match_existing_state(make: Callable[[], optim.Optimizer]) -> None:
    opt = make()
    p = _fresh_params()
    opt.step(p, _noisy_grads(p, 0))
    q = {"W": p["W"], "c": np.zeros(4)}
    with pytest.raises(ValueError, match=r"'[bc]'"):
        opt.step(q, _noisy_grads(q, 1))
    r = {"W": np.zeros((3, 2)), "b": p["b"]}
    with pytest.raises(ValueError, match="'W'"):
        opt.step(r, _noisy_grads(r, 1))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_strided_params_are_updated_like_contiguous_ones(name: str) -> None:
    base = np.arange(24.0).reshape(4, 6) / 7.0
    strided = {"W": base.copy()[:, ::2], "b": np.asfortranarray(base[:3, :3])}
    contiguous = {k: np.ascontiguousarray(v) for k, v in strided.items()}
    views = dict(strided)
    opt_a, opt_b = OPTIMIZERS[name](), OPTIMIZERS[name]()
    for i in range(3):
        opt_a.step(strided, _noisy_grads(contiguous, i))
        opt_b.step(contiguous, _noisy_grads(contiguous, i))
    for k in strided:
        assert strided[k] is views[k]  # updated in place
        np.testing.assert_array_equal(strided[k], contiguous[k])


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_params_of_other_float_dtypes_are_refused(dtype: type) -> None:
    with pytest.raises(TypeError, match=r"^params\['w'\] must be float32 or float64, got "):
        optim.Adam().step({"w": np.zeros(2, dtype=dtype)}, {"w": np.ones(2)})
