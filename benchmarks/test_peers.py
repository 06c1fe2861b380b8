"""resode against its peers on one thread, float64, the same mathematics: PyTorch (eager,
autograd through the RK4 stages = the discrete gradient) and JAX (a jitted `value_and_grad` of
the RK4 loop written with `lax.scan` and written unrolled). Each peer's loss and gradient are
checked against resode's before it is timed. A peer that is not installed is skipped
(`pip install torch==2.13.0 jax`; neither is a dependency of resode).

The "best peer" of benchmarks/README.md is the fastest of these per workload."""

from __future__ import annotations

import os

# One XLA thread, set before JAX is imported (XLA reads the flags once).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
import pytest
import resode
from resode.bench import SEED_NODE

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover
    jax = None

IMPLS = ["resode", "pytorch", "jax-scan", "jax-unrolled"]


@pytest.fixture(autouse=True)
def _peers_one_thread():
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _need(impl: str) -> None:
    if impl == "pytorch" and torch is None:
        pytest.skip("torch is not installed")
    if impl.startswith("jax") and jax is None:
        pytest.skip("jax is not installed")


# --------------------------------------------------------------------------- PyTorch


def _torch_params(model):
    return {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}


def _torch_node_step(p, X, y, steps, dt):
    """One loss_and_grad of the seed NODE in PyTorch: rk4 with piecewise-constant weights."""
    x = torch.cat([X, torch.zeros(X.shape[0], 1, dtype=X.dtype)], dim=1)

    def f(k, x):
        return torch.relu(x @ p["W1"][k].T + p["b1"][k]) @ p["W2"][k].T + p["b2"][k]

    for k in range(steps):  # substeps = 1: step k uses piece k
        k1 = f(k, x)
        k2 = f(k, x + dt / 2 * k1)
        k3 = f(k, x + dt / 2 * k2)
        k4 = f(k, x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    loss = torch.nn.functional.cross_entropy(x @ p["P"].T + p["c"], y)
    grads = torch.autograd.grad(loss, list(p.values()))
    return loss.item(), grads


def _torch_resnet_step(p, X, y, h):
    x = X
    for k in range(p["W"].shape[0]):
        x = x + h * torch.tanh(x @ p["W"][k].T + p["b"][k])
    loss = torch.nn.functional.cross_entropy(x @ p["P"].T + p["c"], y)
    return loss.item(), torch.autograd.grad(loss, list(p.values()))


# --------------------------------------------------------------------------- JAX


def _cross_entropy(z, y):
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])


def _jax_node_loss(dt: float, scan: bool):
    def f(w, x):
        W1, b1, W2, b2 = w
        return jax.nn.relu(x @ W1.T + b1) @ W2.T + b2

    def rk4(x, w):
        k1 = f(w, x)
        k2 = f(w, x + dt / 2 * k1)
        k3 = f(w, x + dt / 2 * k2)
        k4 = f(w, x + dt * k3)
        return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None

    def loss(p, X, y):
        x = jnp.concatenate([X, jnp.zeros((X.shape[0], 1), X.dtype)], axis=1)
        pieces = (p["W1"], p["b1"], p["W2"], p["b2"])
        if scan:
            x, _ = jax.lax.scan(rk4, x, pieces)
        else:
            for k in range(p["W1"].shape[0]):
                x, _ = rk4(x, tuple(a[k] for a in pieces))
        return _cross_entropy(x @ p["P"].T + p["c"], y)

    return loss


def _jax_resnet_loss(h: float, scan: bool):
    def layer(x, w):
        return x + h * jnp.tanh(x @ w[0].T + w[1]), None

    def loss(p, X, y):
        x = X
        if scan:
            x, _ = jax.lax.scan(layer, x, (p["W"], p["b"]))
        else:
            for k in range(p["W"].shape[0]):
                x, _ = layer(x, (p["W"][k], p["b"][k]))
        return _cross_entropy(x @ p["P"].T + p["c"], y)

    return loss


def _jax_step(loss_fn, model, X, y):
    """The jitted value_and_grad, checked against resode, as a callable that blocks."""
    p = {k: jnp.asarray(v) for k, v in model.params.items()}
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    step = jax.jit(jax.value_and_grad(loss_fn))
    loss, grads = step(p, Xj, yj)
    ours, our_grads = model.loss_and_grad(X, y)
    assert abs(float(loss) - ours) <= 1e-10 * abs(ours)
    for k, g in grads.items():
        np.testing.assert_allclose(np.asarray(g), our_grads[k], rtol=1e-7, atol=1e-11)
    return lambda: jax.block_until_ready(step(p, Xj, yj))


# --------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("N", [2, 150, 1000])
def test_seed_node_vs_peers(benchmark, run, N, impl):
    _need(impl)
    benchmark.group = f"peers: seed NODE N={N} float64"
    model = resode.NeuralODE(2, **SEED_NODE, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 2))
    y = (np.linalg.norm(X, axis=1) > 1.2).astype(np.int64)
    if impl == "resode":
        run(lambda: model.loss_and_grad(X, y))
    elif impl == "pytorch":
        p, Xt, yt = _torch_params(model), torch.tensor(X), torch.tensor(y)
        loss, grads = _torch_node_step(p, Xt, yt, model.steps, model.dt)
        ours, our_grads = model.loss_and_grad(X, y)  # same mathematics: check before timing
        assert abs(loss - ours) <= 1e-10 * abs(ours)
        np.testing.assert_allclose(grads[0].numpy(), our_grads["W1"], rtol=1e-8, atol=1e-12)
        run(lambda: _torch_node_step(p, Xt, yt, model.steps, model.dt))
    else:
        loss_fn = _jax_node_loss(model.dt, scan=impl == "jax-scan")
        run(_jax_step(loss_fn, model, X, y))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("D", [2, 16, 64])
def test_resnet_vs_peers(benchmark, run, D, impl):
    _need(impl)
    benchmark.group = f"peers: resnet L=100 N=1000 D={D} float64"
    model = resode.ResNet(D, 100, h=0.1, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, D))
    y = rng.integers(0, 2, 1000)
    if impl == "resode":
        run(lambda: model.loss_and_grad(X, y), slow=D == 64)
    elif impl == "pytorch":
        p, Xt, yt = _torch_params(model), torch.tensor(X), torch.tensor(y)
        loss, _ = _torch_resnet_step(p, Xt, yt, 0.1)
        assert abs(loss - model.loss_and_grad(X, y)[0]) <= 1e-10 * abs(loss)
        run(lambda: _torch_resnet_step(p, Xt, yt, 0.1), slow=D == 64)
    else:
        loss_fn = _jax_resnet_loss(0.1, scan=impl == "jax-scan")
        run(_jax_step(loss_fn, model, X, y), slow=D == 64)
