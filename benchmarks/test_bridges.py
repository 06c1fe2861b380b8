"""resode inside PyTorch and JAX models (resode.torch, resode.jax) against the same models on
the peers' own solvers, one thread, float64: one training step of the seed model (dim 2 + 1
augmented, bottleneck 50, relu, T = 5, 16 pieces, rk4) with a linear head, cross-entropy and an
Adam step, N = 1000 and N = 2.

- PyTorch: ``resode.torch.NeuralODE`` + ``nn.Linear`` + ``.backward()`` + ``torch.optim.Adam``;
  the same model on ``torchdiffeq.odeint(method="rk4")`` (one call per piece: the controls
  change at the piece boundaries, where a single call's stages could not tell which piece a
  time belongs to; torchdiffeq's rk4 is the 3/8 rule, the same work), and a hand-written RK4
  loop.
- JAX (jitted steps, Adam written out): ``resode.jax.odeint``; diffrax's ``diffeqsolve`` with
  the classical RK4 tableau as an ``AbstractERK`` at ``ConstantStepSize`` over the same grid
  (``RecursiveCheckpointAdjoint``, its default); a ``lax.scan`` RK4 loop.
- The bridge's own cost: the flow's forward and VJP through ``resode.torch`` / ``resode.jax``
  against the same two core calls from NumPy.

Needs ``pip install torch==2.13.0 jax torchdiffeq diffrax``; a missing one skips its rows."""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
import pytest
import resode
from resode import _bridge
from resode.bench import SEED_NODE

try:
    import resode.torch as rt
    import torch
except ImportError:  # pragma: no cover
    torch = None
try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import resode.jax as rj
except ImportError:  # pragma: no cover
    jax = None

STEPS, T = SEED_NODE["pieces"], SEED_NODE["T"]
DT = T / STEPS


def _need(*modules: str) -> None:
    import importlib.util

    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed")


def _data(N: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 2))
    return X, (np.linalg.norm(X, axis=1) > 1.2).astype(np.int64)


@pytest.fixture(autouse=True)
def _torch_one_thread():
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- PyTorch


def _torch_step(flow, X, y, seed=0):
    """A training step (closure) of flow -> Linear(3, 2) -> cross-entropy -> Adam."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(3, 2, dtype=torch.float64)
    params = [*flow.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(flow(Xt)), yt)
        loss.backward()
        opt.step()
        return loss

    return step


class _TorchFlow(torch.nn.Module if torch else object):  # type: ignore[misc]
    """The seed flow with resode's initial parameters, integrated by `solver`."""

    def __init__(self, solver: str) -> None:
        super().__init__()
        init = resode.NeuralODE(2, **SEED_NODE, seed=0).params
        for n in ("W1", "b1", "W2", "b2"):
            self.register_parameter(n, torch.nn.Parameter(torch.tensor(init[n])))
        self.solver = solver

    def f(self, k, x):
        return torch.relu(x @ self.W1[k].T + self.b1[k]) @ self.W2[k].T + self.b2[k]

    def forward(self, X):
        x = torch.cat([X, torch.zeros(X.shape[0], 1, dtype=X.dtype)], dim=1)
        if self.solver == "torchdiffeq":
            import torchdiffeq

            for k in range(STEPS):
                t = torch.tensor([k * DT, (k + 1) * DT], dtype=X.dtype)
                x = torchdiffeq.odeint(lambda t, x, k=k: self.f(k, x), x, t, method="rk4")[-1]
            return x
        for k in range(STEPS):  # classical RK4, one step per piece
            k1 = self.f(k, x)
            k2 = self.f(k, x + DT / 2 * k1)
            k3 = self.f(k, x + DT / 2 * k2)
            k4 = self.f(k, x + DT * k3)
            x = x + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x


@pytest.mark.parametrize("impl", ["resode-torch", "torch-rk4-loop", "torchdiffeq"])
@pytest.mark.parametrize("N", [2, 1000])
def test_torch_training_step(benchmark, run, N, impl):
    _need("torch", *(["torchdiffeq"] if impl == "torchdiffeq" else []))
    benchmark.group = f"bridges: torch training step, seed NODE N={N}"
    X, y = _data(N)
    if impl == "resode-torch":
        flow = rt.NeuralODE(2, **SEED_NODE, seed=0)
    else:
        flow = _TorchFlow("torchdiffeq" if impl == "torchdiffeq" else "loop")
    run(_torch_step(flow, X, y))


def _digits_step(flow, N, seed=0):
    """A training step (closure) of scikit-learn's digits (the first N images, pixels / 16)
    through Linear(64, 2) -> flow -> Linear(3, 10) -> cross-entropy -> Adam: the encoder's
    gradient needs the flow's cotangent of its input."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(64, 2, dtype=torch.float64)
    head = torch.nn.Linear(3, 10, dtype=torch.float64)
    params = [*encoder.parameters(), *flow.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    Xt, yt = torch.tensor(X[:N] / 16.0), torch.tensor(y[:N])

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(flow(encoder(Xt))), yt)
        loss.backward()
        opt.step()
        return loss

    return step


@pytest.mark.parametrize("impl", ["resode-torch", "torch-rk4-loop"])
@pytest.mark.parametrize("N", [256])
def test_digits_encoder_flow_head(benchmark, run, N, impl):
    """Issue 24's framework-layer row: digits through an encoder, the seed flow and a head,
    one torch training step, resode's layer against the same flow written in plain torch."""
    _need("torch", "sklearn")
    benchmark.group = f"bridges: digits encoder -> flow -> head, torch training step, N={N}"
    flow = rt.NeuralODE(2, **SEED_NODE, seed=0) if impl == "resode-torch" else _TorchFlow("loop")
    run(_digits_step(flow, N))


# --------------------------------------------------------------------------- JAX


def _adam_step(loss_fn):
    """A jitted step: value_and_grad of loss_fn(params, X, y) and an Adam update."""

    @jax.jit
    def step(params, m, v, t, X, y):
        loss, g = jax.value_and_grad(loss_fn)(params, X, y)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        lr = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        params = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-8), params, m, v)
        return params, m, v, loss

    return step


def _cross_entropy(z, y):
    return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])


def _jax_f(w, x):
    W1, b1, W2, b2 = w
    return jax.nn.relu(x @ W1.T + b1) @ W2.T + b2


def _rk4(x, w):
    k1 = _jax_f(w, x)
    k2 = _jax_f(w, x + DT / 2 * k1)
    k3 = _jax_f(w, x + DT / 2 * k2)
    k4 = _jax_f(w, x + DT * k3)
    return x + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4), None


def _jax_flow(solver: str):
    names = ("W1", "b1", "W2", "b2")
    if solver == "resode-jax":
        return lambda p, X: rj.odeint({n: p[n] for n in names}, X, T=T, field="bottleneck",
                                      activation="relu", augment=1)  # fmt: skip

    def augmented(X):
        return jnp.concatenate([X, jnp.zeros((X.shape[0], 1), X.dtype)], axis=1)

    if solver == "jax-scan":
        return lambda p, X: jax.lax.scan(_rk4, augmented(X), tuple(p[n] for n in names))[0]
    import diffrax

    class RK4(diffrax.AbstractERK):
        tableau = diffrax.ButcherTableau(
            c=np.array([0.5, 0.5, 1.0]),
            b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
            b_error=np.zeros(4),
            a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
        )
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    def piece(x, w):
        term = diffrax.ODETerm(lambda t, x, w: _jax_f(w, x))
        sol = diffrax.diffeqsolve(term, RK4(), t0=0.0, t1=DT, dt0=DT, y0=x, args=w,
                                  stepsize_controller=diffrax.ConstantStepSize())  # fmt: skip
        return sol.ys[-1], None

    return lambda p, X: jax.lax.scan(piece, augmented(X), tuple(p[n] for n in names))[0]


@pytest.mark.parametrize("impl", ["resode-jax", "jax-scan", "diffrax"])
@pytest.mark.parametrize("N", [2, 1000])
def test_jax_training_step(benchmark, run, N, impl):
    _need("jax", *(["diffrax"] if impl == "diffrax" else []))
    benchmark.group = f"bridges: JAX training step, seed NODE N={N}"
    X, y = _data(N)
    init = resode.NeuralODE(2, **SEED_NODE, seed=0).params
    params = {k: jnp.asarray(v) for k, v in init.items()}
    flow = _jax_flow(impl)

    def loss(p, X, y):
        return _cross_entropy(flow(p, X) @ p["P"].T + p["c"], y)

    if impl != "resode-jax":  # same mathematics as the resode layer: check before timing
        ours = jax.value_and_grad(loss)(params, X, y)
        resode_flow = _jax_flow("resode-jax")

        def resode_loss(p, X, y):
            return _cross_entropy(resode_flow(p, X) @ p["P"].T + p["c"], y)

        ref = jax.value_and_grad(resode_loss)(params, X, y)
        assert abs(float(ours[0]) - float(ref[0])) <= 1e-10 * abs(float(ref[0]))
    step = _adam_step(loss)
    zeros = jax.tree.map(jnp.zeros_like, params)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    jax.block_until_ready(step(params, zeros, zeros, 1, Xj, yj))
    run(lambda: jax.block_until_ready(step(params, zeros, zeros, 1, Xj, yj)))


# --------------------------------------------------------------------------- the bridge's cost


@pytest.mark.parametrize("impl", ["numpy", "torch", "torch_floor", "jax"])
@pytest.mark.parametrize("N", [2, 1000])
def test_bridge_overhead(benchmark, run, N, impl):
    """The flow's forward and VJP (cotangent on the final state) through each bridge;
    ``torch_floor``: PyTorch's own cost of an ``autograd.Function`` with the layer's inputs,
    saved tensors and gradients that computes nothing (what no torch layer can go below)."""
    _need(*([impl.split("_")[0]] if impl != "numpy" else []))
    benchmark.group = f"bridges: flow forward + VJP, seed NODE N={N}"
    X, _ = _data(N)
    init = resode.NeuralODE(2, **SEED_NODE, seed=0).params
    names = ("W1", "b1", "W2", "b2")
    v = np.ones((N, 3))
    opts = dict(T=T, field="bottleneck", activation="relu", augment=1)
    if impl == "numpy":
        flow, _ = _bridge.flow(init, X.shape, substeps=1, method="rk4", gradient="discrete",
                               checkpoints=None, trajectory=False, **opts)  # fmt: skip
        theta = [init[n] for n in names]

        def step():  # what a layer's training step runs: one forward sweep, one reverse sweep
            _, kept = _bridge.forward_with_states(flow, X, theta)
            _bridge.vjp_from_states(flow, X, theta, v, kept)

        run(step)
    elif impl == "torch":
        layer = rt.NeuralODE(2, **SEED_NODE, seed=0)
        Xt, vt = torch.tensor(X, requires_grad=True), torch.tensor(v)

        def step():
            layer(Xt).backward(vt)

        run(step)
    elif impl == "torch_floor":
        params = list(rt.NeuralODE(2, **SEED_NODE, seed=0).field_params().values())
        Xt, vt = torch.tensor(X, requires_grad=True), torch.tensor(v)
        nothing = _function_computing_nothing()
        run(lambda: nothing.apply(Xt, *params).backward(vt))
    else:
        p = {n: jnp.asarray(init[n]) for n in names}
        vjp = jax.jit(lambda p, X, v: jax.vjp(lambda p, X: rj.odeint(p, X, **opts), p, X)[1](v))
        Xj, vj = jnp.asarray(X), jnp.asarray(v)
        jax.block_until_ready(vjp(p, Xj, vj))
        run(lambda: jax.block_until_ready(vjp(p, Xj, vj)))


def _function_computing_nothing() -> type:
    """An ``autograd.Function`` shaped as resode.torch's (X and the field's parameters in, the
    final states out, every input saved, a gradient for each) that computes nothing."""

    class Nothing(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, *theta):
            ctx.save_for_backward(X, *theta)
            return X.new_zeros((X.shape[0], X.shape[1] + SEED_NODE["augment"]))

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            return tuple(torch.zeros_like(t) for t in ctx.saved_tensors)

    return Nothing
