"""Adaptive Runge-Kutta (issue 15, section 5): one ``loss_and_grad`` of the seed model
(bottleneck 50, relu, dim 2 + 1 augmented, T = 5, 16 pieces, cross-entropy of a linear head)
at rtol = 1e-6, atol = 1e-8, one thread, float64, N = 150 and N = 1000
(``resode.datasets.concentric_spheres``).

- resode: ``NeuralODE(method="dopri5" | "tsit5", step_control="sample" | "batch")``, the
  discrete gradient on the accepted steps.
- torchdiffeq: ``odeint`` (autograd through the solver) and ``odeint_adjoint``, method
  "dopri5", one call per piece over [k T/16, (k+1) T/16] (the weights change at the piece
  boundaries), ``.backward()``.
- diffrax: ``diffeqsolve(Tsit5(), stepsize_controller=PIDController(rtol, atol),
  adjoint=RecursiveCheckpointAdjoint())`` per piece inside a ``lax.scan``, a jitted
  ``value_and_grad``.

All start from resode's weights (``seed=0``); each peer's loss is checked against resode's
(dopri5, per-sample control) to 1e-5 relative before it is timed: they take other steps.

Function evaluations (``extra_info``): ``nfev`` counts sample-evaluations of the field (one
field evaluation on a batch of N samples counts N), so per-sample and batch step control and the
peers compare. resode: ``model.stats["nfev"]`` (the adaptive forward solve, rejected steps and
the two of the first-step heuristic included; the replay and the reverse sweep are not counted).
torchdiffeq: calls of the field module, forward and backward (``calls_fwd``, ``calls_bwd``;
autograd through ``odeint`` evaluates no field in the backward pass, ``odeint_adjoint``'s
backward calls it once per stage of the adjoint solve), times N. diffrax: per piece
``6 * sol.stats["num_steps"] + 3`` (Tsit5 is FSAL: 6 new stages per attempted step, one
evaluation at the solver's init and two in the initial step selection), times N; the
recomputation inside ``RecursiveCheckpointAdjoint``'s backward is not counted.

The second test compares per-sample and batch control: samples that are all alike, the seed
data, and the same with one stiff sample (a field that is fast only far from the origin).

Needs ``pip install torch==2.13.0 torchdiffeq jax diffrax`` for the peers; a missing one skips
its rows."""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import importlib.util

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

RTOL, ATOL = 1e-6, 1e-8
PIECES, T = SEED_NODE["pieces"], SEED_NODE["T"]
DT = T / PIECES
NAMES = ("W1", "b1", "W2", "b2")


def _need(*modules: str) -> None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed")


@pytest.fixture(autouse=True)
def _torch_one_thread():
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(method: str = "dopri5", control: str = "sample") -> resode.NeuralODE:
    return resode.NeuralODE(2, **SEED_NODE, method=method, rtol=RTOL, atol=ATOL,
                            step_control=control, seed=0)  # fmt: skip


def _data(N: int) -> tuple[np.ndarray, np.ndarray]:
    return resode.datasets.concentric_spheres(N, seed=0)


def _record(benchmark, N: int, loss: float, nfev: int, **extra) -> None:
    benchmark.extra_info.update(N=N, loss=float(loss), nfev=int(nfev),
                                nfev_per_sample=nfev / N, **extra)  # fmt: skip


def _resode_info(model) -> dict:
    s = model.stats
    return dict(accepted=int(s["accepted"]), rejected=int(s["rejected"]),
                nfev_median=float(s["nfev_median"]), nfev_max=int(s["nfev_max"]))  # fmt: skip


# --------------------------------------------------------------------------- torchdiffeq


class _TorchPieces(torch.nn.Module if torch else object):  # type: ignore[misc]
    """The seed field, one module per piece (odeint_adjoint's backward needs each piece's own
    module and parameters); every call of a piece's field is counted in ``calls``."""

    def __init__(self, params: dict) -> None:
        super().__init__()
        self.calls = [0]
        self.pieces = torch.nn.ModuleList(
            _TorchField(*(params[n][k] for n in NAMES), self.calls) for k in range(PIECES)
        )
        self.P = torch.nn.Parameter(torch.tensor(params["P"]))
        self.c = torch.nn.Parameter(torch.tensor(params["c"]))

    def loss(self, X, y, adjoint: bool):
        import torchdiffeq

        solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
        x = torch.cat([X, torch.zeros(X.shape[0], 1, dtype=X.dtype)], dim=1)
        for k, f in enumerate(self.pieces):
            t = torch.tensor([k * DT, (k + 1) * DT], dtype=X.dtype)
            opts = dict(adjoint_params=tuple(f.parameters())) if adjoint else {}
            x = solve(f, x, t, rtol=RTOL, atol=ATOL, method="dopri5", **opts)[-1]
        return torch.nn.functional.cross_entropy(x @ self.P.T + self.c, y)


class _TorchField(torch.nn.Module if torch else object):  # type: ignore[misc]
    def __init__(self, W1, b1, W2, b2, calls) -> None:
        super().__init__()
        for n, v in zip(NAMES, (W1, b1, W2, b2)):
            self.register_parameter(n, torch.nn.Parameter(torch.tensor(v)))
        self.calls = calls

    def forward(self, t, x):
        self.calls[0] += 1
        return torch.relu(x @ self.W1.T + self.b1) @ self.W2.T + self.b2


# --------------------------------------------------------------------------- diffrax


def _diffrax_loss():
    import diffrax

    def f(t, x, w):
        W1, b1, W2, b2 = w
        return jax.nn.relu(x @ W1.T + b1) @ W2.T + b2

    def piece(x, w):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(f), diffrax.Tsit5(), t0=0.0, t1=DT, dt0=None, y0=x, args=w,
            stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
        )  # fmt: skip
        return sol.ys[-1], (sol.stats["num_steps"], sol.stats["num_accepted_steps"])

    def loss(p, X, y):
        x = jnp.concatenate([X, jnp.zeros((X.shape[0], 1), X.dtype)], axis=1)
        x, (steps, accepted) = jax.lax.scan(piece, x, tuple(p[n] for n in NAMES))
        z = x @ p["P"].T + p["c"]
        ce = jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0]
        return jnp.mean(ce), (jnp.sum(steps), jnp.sum(accepted))

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


# --------------------------------------------------------------------------- against the peers

IMPLS = ["resode-dopri5-sample", "resode-dopri5-batch", "resode-tsit5-sample",
         "resode-tsit5-batch", "torchdiffeq", "torchdiffeq-adjoint", "diffrax-tsit5"]  # fmt: skip


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("N", [150, 1000])
def test_adaptive_vs_peers(benchmark, run, N, impl):
    if impl.startswith("torchdiffeq"):
        _need("torch", "torchdiffeq")
    elif impl.startswith("diffrax"):
        _need("jax", "diffrax")
    benchmark.group = f"adaptive: seed NODE N={N} rtol=1e-6 float64"
    X, y = _data(N)
    ref = _model()
    ours = ref.loss_and_grad(X, y)[0]
    if impl.startswith("resode"):
        _, method, control = impl.split("-")
        model = _model(method, control)
        loss = model.loss_and_grad(X, y)[0]
        _record(benchmark, N, loss, model.stats["nfev"], **_resode_info(model))
        run(lambda: model.loss_and_grad(X, y), slow=N > 150)
    elif impl.startswith("torchdiffeq"):
        adjoint = impl.endswith("adjoint")
        m = _TorchPieces(ref.params)
        Xt, yt = torch.tensor(X), torch.tensor(y)
        loss = m.loss(Xt, yt, adjoint)
        fwd = m.calls[0]
        loss.backward()
        bwd = m.calls[0] - fwd
        assert abs(loss.item() - ours) <= 1e-5 * abs(ours), (loss.item(), ours)
        _record(benchmark, N, loss.item(), (fwd + bwd) * N, calls_fwd=fwd, calls_bwd=bwd)

        def step():
            m.zero_grad()
            m.loss(Xt, yt, adjoint).backward()

        run(step, slow=True)
    else:
        p = {k: jnp.asarray(v) for k, v in ref.params.items()}
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        step = _diffrax_loss()
        (loss, (steps, accepted)), _ = jax.block_until_ready(step(p, Xj, yj))
        assert abs(float(loss) - ours) <= 1e-5 * abs(ours), (float(loss), ours)
        nfev = (6 * int(steps) + 3 * PIECES) * N
        _record(benchmark, N, float(loss), nfev, num_steps=int(steps), accepted=int(accepted))
        run(lambda: jax.block_until_ready(step(p, Xj, yj)), slow=True)


# --------------------------------------------------------------------------- step control


def _stiff_params(params: dict, omega: float = 20.0, c: float = 10.0) -> dict:
    """The seed weights with 4 of the 50 hidden units of every piece replaced by a soft-threshold
    rotation, dx1 = -omega s(x2), dx2 = omega s(x1) with s(u) = relu(u - c) - relu(-u - c): zero
    where |x1|, |x2| < c (the data and its trajectories stay within 1.5), a fast rotation (period
    about 2 pi / omega, kinks at |x_i| = c) for a sample that starts far out."""
    p = {k: v.copy() for k, v in params.items()}
    for j, (axis, sign) in enumerate([(0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0)]):
        p["W1"][:, j, :] = 0.0
        p["W1"][:, j, axis] = sign
        p["b1"][:, j] = -c
        p["W2"][:, :, j] = 0.0
    p["W2"][:, 1, 0], p["W2"][:, 1, 1] = omega, -omega  # dx2 = omega s(x1)
    p["W2"][:, 0, 2], p["W2"][:, 0, 3] = -omega, omega  # dx1 = -omega s(x2)
    return p


CASES = ["alike", "seed", "alike+1stiff", "seed+1stiff"]


def _case(case: str) -> tuple[np.ndarray, np.ndarray]:
    """N = 1000: "alike" is the first seed sample 1000 times (every sample takes the same
    steps), "seed" the seed data; "+1stiff" puts sample 0 at 50 (1, 1) / sqrt 2."""
    X, y = _data(1000)
    if case.startswith("alike"):
        X, y = np.repeat(X[:1], 1000, axis=0), np.repeat(y[:1], 1000)
    if case.endswith("stiff"):
        X = X.copy()
        X[0] = 50.0 / np.sqrt(2.0)
    return X, y


@pytest.mark.parametrize("control", ["sample", "batch"])
@pytest.mark.parametrize("case", CASES)
def test_step_control(benchmark, run, case, control):
    benchmark.group = f"adaptive: step control, dopri5 N=1000, {case}"
    X, y = _case(case)
    model = _model("dopri5", control)
    model.params = _stiff_params(model.params)
    loss = model.loss_and_grad(X, y)[0]
    s = model.stats
    if control == "sample" and case.endswith("stiff"):  # only sample 0 is stiff
        assert s["nfev_per_sample"][0] > 10 * np.median(s["nfev_per_sample"][1:])
    _record(benchmark, 1000, loss, s["nfev"], **_resode_info(model),
            nfev_sample0=int(s["nfev_per_sample"][0]))  # fmt: skip
    run(lambda: model.loss_and_grad(X, y), slow=True)
