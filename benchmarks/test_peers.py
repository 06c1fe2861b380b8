"""resode against PyTorch (eager, autograd through the RK4 stages = the discrete gradient) on the
seed's neural ODE and the ResNet workloads, one thread each. Skipped without torch
(`pip install torch`; not a dependency of resode)."""

from __future__ import annotations

import numpy as np
import pytest
import resode
from resode.bench import SEED_NODE

torch = pytest.importorskip("torch")

SEED = SEED_NODE  # the seed experiment (dim 2), as in `resode bench`


@pytest.fixture(autouse=True)
def _torch_one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _torch_params(model):
    return {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}


def _torch_node_step(p, X, y, steps, dt):
    """One loss_and_grad of the seed NODE in PyTorch: rk4 with piecewise-constant weights."""
    x = torch.cat([X, torch.zeros(X.shape[0], 1, dtype=X.dtype)], dim=1)

    def f(k, x):
        return torch.relu(x @ p["W1"][k].T + p["b1"][k]) @ p["W2"][k].T + p["b2"][k]

    for j in range(steps):
        k = j  # substeps = 1: piece j
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


@pytest.mark.parametrize("impl", ["resode", "pytorch"])
@pytest.mark.parametrize("N", [150, 1000])
def test_seed_node_vs_pytorch(benchmark, run, N, impl):
    benchmark.group = f"peers: seed NODE N={N} float64"
    model = resode.NeuralODE(2, **SEED, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 2))
    y = (np.linalg.norm(X, axis=1) > 1.2).astype(np.int64)
    if impl == "resode":
        run(lambda: model.loss_and_grad(X, y))
        return
    p, Xt, yt = _torch_params(model), torch.tensor(X), torch.tensor(y)
    loss, grads = _torch_node_step(p, Xt, yt, model.steps, model.dt)
    ours, our_grads = model.loss_and_grad(X, y)  # same mathematics: check before timing
    assert abs(loss - ours) <= 1e-10 * abs(ours)
    np.testing.assert_allclose(grads[0].numpy(), our_grads["W1"], rtol=1e-8, atol=1e-12)
    run(lambda: _torch_node_step(p, Xt, yt, model.steps, model.dt))


@pytest.mark.parametrize("impl", ["resode", "pytorch"])
@pytest.mark.parametrize("D", [2, 16, 64])
def test_resnet_vs_pytorch(benchmark, run, D, impl):
    benchmark.group = f"peers: resnet L=100 N=1000 D={D} float64"
    model = resode.ResNet(D, 100, h=0.1, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, D))
    y = rng.integers(0, 2, 1000)
    if impl == "resode":
        run(lambda: model.loss_and_grad(X, y))
        return
    p, Xt, yt = _torch_params(model), torch.tensor(X), torch.tensor(y)
    loss, _ = _torch_resnet_step(p, Xt, yt, 0.1)
    assert abs(loss - model.loss_and_grad(X, y)[0]) <= 1e-10 * abs(loss)
    run(lambda: _torch_resnet_step(p, Xt, yt, 0.1))
