"""Neural CDE training epochs in resode, torchcde and diffrax: the workloads and one epoch in
each, shared by ``benchmarks/test_cde.py`` (pytest-benchmark) and ``benchmarks/cde_table.py``
(the table of benchmarks/README.md).

The model is torchcde's example (``example/time_series_classification.py`` of torchcde):
``z(t_0) = A x_0 + a``, ``dz/dt = tanh(W2 relu(W1 z + b1) + b2) dX/dt`` reshaped to
``(state, channels)``, the path ``X`` the Hermite cubic with backward differences through the
observations at times ``0, 1, ..., L-1``, logits ``P z(T) + c`` at each sample's own end,
mean cross-entropy. Integration: the classical RK4 tableau, one step per observation interval
(the step grid is the knots), float64, the exact discrete gradient in all three (autograd
through the solver, not an adjoint). An epoch is one pass in batches in a fixed order: per
batch, the loss and its gradient, then an Adam step (PyTorch semantics, lr 1e-3).

- resode: ``NeuralCDE.loss_and_grad`` and ``resode.optim.Adam.step`` per batch (the
  interpolation is rebuilt from ``U`` in every call).
- torchcde 0.2.5: the interpolation coefficients computed once before the epochs (as its
  example does), ``cdeint(adjoint=False)`` on torchdiffeq's fixed grid (the knots, through
  ``grid_constructor``) with torchdiffeq's classical RK4 step (its ``method="rk4"`` is the
  3/8 rule), ``.backward()``, ``torch.optim.Adam``. Unequal lengths as torchcde's README says:
  the padding is filled forward and each sample's state is read at its own last observation.
- diffrax: ``ControlTerm(...).to_ode()`` on ``CubicInterpolation`` of
  ``backward_hermite_coefficients`` (computed once), the classical RK4 tableau as an
  ``AbstractERK``, ``StepTo`` the knots, ``vmap`` over the samples, a jitted
  ``value_and_grad`` and Adam update per batch (``RecursiveCheckpointAdjoint``, its default).

Every peer's loss and gradients at the initial weights are checked against resode's
(``check``) before anything is timed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

# One XLA thread, set before JAX is imported (XLA reads the flags once).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np
import resode

IMPLS = ("resode", "torchcde", "diffrax")
LR = 1e-3


@dataclass
class Workload:
    """A data set and the model trained on it: ``U`` (N, L, C) with NaN padding, labels."""

    name: str
    U: np.ndarray
    y: np.ndarray
    state: int
    hidden: int
    batch: int
    classes: int = field(init=False)

    def __post_init__(self) -> None:
        self.classes = int(self.y.max()) + 1

    def model(self, seed: int = 0) -> resode.NeuralCDE:
        return resode.NeuralCDE(
            self.U.shape[2],
            self.state,
            field="bottleneck",
            hidden=self.hidden,
            activation="relu",
            output_activation="tanh",
            classes=self.classes,
            interpolation="cubic",
            method="rk4",
            seed=seed,
        )

    def batches(self) -> list[np.ndarray]:
        n = self.U.shape[0]
        return [np.arange(s, min(s + self.batch, n)) for s in range(0, n, self.batch)]

    @property
    def lengths(self) -> np.ndarray:
        observed = ~np.isnan(self.U).all(axis=2)
        return self.U.shape[1] - np.argmax(observed[:, ::-1], axis=1)


def spirals(n: int = 128, length: int = 100, seed: int = 0) -> Workload:
    """torchcde's example data: spirals, half clockwise, channels (t, x, y) with t in
    [0, 4 pi]; state 8, hidden 128, batches of 32."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 4 * math.pi, length)
    start = rng.uniform(0, 2 * math.pi, n)[:, None]
    x = np.cos(start + t) / (1 + 0.5 * t)
    x[: n // 2] *= -1
    y = np.sin(start + t) / (1 + 0.5 * t)
    x += 0.01 * rng.standard_normal(x.shape)
    y += 0.01 * rng.standard_normal(y.shape)
    U = np.stack([np.broadcast_to(t, x.shape), x, y], axis=2)
    labels = (np.arange(n) < n // 2).astype(np.int64)
    order = rng.permutation(n)
    return Workload("spirals", U[order], labels[order], state=8, hidden=128, batch=32)


def japanese_vowels_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """aeon's bundled JapaneseVowels ``split``: ``U`` (N, 29, 1 + 12), the observation index
    over 10 as the first channel (torchcde's advice: time as a channel), NaN-padded; labels
    0..8."""
    from aeon.datasets import load_japanese_vowels

    series, labels = load_japanese_vowels(split=split)
    U = np.full((len(series), 29, 13), np.nan)
    for i, s in enumerate(series):
        U[i, : s.shape[1], 0] = np.arange(s.shape[1]) / 10.0
        U[i, : s.shape[1], 1:] = s.T
    return U, labels.astype(np.int64) - 1


def japanese_vowels() -> Workload:
    """The training split (270 series, lengths 7-26); state 16, hidden 32, batches of 32."""
    U, y = japanese_vowels_arrays("train")
    return Workload("JapaneseVowels", U, y, state=16, hidden=32, batch=32)


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "spirals": spirals,
    "JapaneseVowels": japanese_vowels,
}


# --------------------------------------------------------------------------- resode


def resode_epoch(work: Workload) -> Callable[[], float]:
    """An epoch of resode: ``loss_and_grad`` and an Adam step per batch; returns the last loss."""
    model = work.model()
    optimizer = resode.optim.Adam(lr=LR)
    parts = [(work.U[rows], work.y[rows]) for rows in work.batches()]

    def epoch() -> float:
        loss = math.nan
        for U, y in parts:
            loss, grads = model.loss_and_grad(U, y)
            optimizer.step(model.params, grads)
        return loss

    return epoch


def resode_loss_and_grad(work: Workload) -> tuple[float, dict[str, np.ndarray]]:
    rows = work.batches()[0]
    return work.model().loss_and_grad(work.U[rows], work.y[rows])


# --------------------------------------------------------------------------- torchcde


def _classic_rk4() -> Any:
    """torchdiffeq's fixed-grid solver with its classical RK4 step (``rk4_step_func``), under
    the name ``rk4_classic``."""
    import importlib

    from torchdiffeq._impl.misc import Perturb
    from torchdiffeq._impl.rk_common import rk4_step_func
    from torchdiffeq._impl.solvers import FixedGridODESolver

    class ClassicRK4(FixedGridODESolver):
        order = 4

        def _step_func(self, func, t0, dt, t1, y0):
            f0 = func(t0, y0, perturb=Perturb.NEXT if self.perturb else Perturb.NONE)
            return rk4_step_func(func, t0, dt, t1, y0, f0=f0, perturb=self.perturb), f0

    importlib.import_module("torchdiffeq._impl.odeint").SOLVERS["rk4_classic"] = ClassicRK4


def _torch_setup(work: Workload) -> tuple[Any, dict[str, Any], list[tuple[Any, Any, Any]]]:
    import torch
    import torchcde

    _classic_rk4()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in work.model().params.items()}
    coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(torch.tensor(work.U))
    last = torch.tensor(work.lengths - 1)
    y = torch.tensor(work.y)
    parts = [(coeffs[rows], y[rows], last[rows]) for rows in work.batches()]
    return torchcde, params, parts


def _torch_loss(torchcde: Any, p: dict[str, Any], coeffs: Any, y: Any, last: Any) -> Any:
    import torch

    S = p["A"].shape[0]

    def f(t: Any, z: Any) -> Any:
        hid = torch.relu(z @ p["W1"][0].T + p["b1"][0])
        return torch.tanh(hid @ p["W2"][0].T + p["b2"][0]).view(z.shape[0], S, -1)

    X = torchcde.CubicSpline(coeffs)
    z0 = X.evaluate(X.interval[0]) @ p["A"].T + p["a"]
    grid = X.grid_points
    zs = torchcde.cdeint(X, f, z0, grid, adjoint=False, method="rk4_classic",
                         options=dict(grid_constructor=lambda f, y0, t: grid))  # fmt: skip
    zT = zs[torch.arange(zs.shape[0]), last]  # each sample at its own last observation
    return torch.nn.functional.cross_entropy(zT @ p["P"].T + p["c"], y)


def torchcde_epoch(work: Workload) -> Callable[[], float]:
    import torch

    torchcde, params, parts = _torch_setup(work)
    optimizer = torch.optim.Adam(params.values(), lr=LR)

    def epoch() -> float:
        loss = math.nan
        for coeffs, y, last in parts:
            optimizer.zero_grad()
            out = _torch_loss(torchcde, params, coeffs, y, last)
            out.backward()
            optimizer.step()
            loss = out.item()
        return loss

    return epoch


def torchcde_loss_and_grad(work: Workload) -> tuple[float, dict[str, np.ndarray]]:
    torchcde, params, parts = _torch_setup(work)
    loss = _torch_loss(torchcde, params, *parts[0])
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in params.items()}


# --------------------------------------------------------------------------- diffrax


def _diffrax_loss(work: Workload) -> tuple[Callable[..., Any], list[tuple[Any, Any, Any]]]:
    import diffrax
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    class ClassicRK4(diffrax.AbstractERK):
        tableau = diffrax.ButcherTableau(
            c=np.array([0.5, 0.5, 1.0]),
            b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
            b_error=np.zeros(4),
            a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
        )
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    L, S = work.U.shape[1], work.state
    ts = jnp.arange(L, dtype=jnp.float64)

    def coefficients(U: np.ndarray) -> Any:
        one = lambda u: diffrax.backward_hermite_coefficients(  # noqa: E731
            ts, u, fill_forward_nans_at_end=True
        )
        return jax.vmap(one)(jnp.asarray(U))

    def field(t: Any, z: Any, p: dict[str, Any]) -> Any:
        hid = jax.nn.relu(p["W1"][0] @ z + p["b1"][0])
        return jnp.tanh(p["W2"][0] @ hid + p["b2"][0]).reshape(S, -1)

    def solve_one(p: dict[str, Any], coeffs: Any, last: Any) -> Any:
        control = diffrax.CubicInterpolation(ts, coeffs)
        term = diffrax.ControlTerm(field, control).to_ode()
        z0 = p["A"] @ control.evaluate(ts[0]) + p["a"]
        sol = diffrax.diffeqsolve(term, ClassicRK4(), t0=ts[0], t1=ts[-1], dt0=None, y0=z0,
                                  args=p, stepsize_controller=diffrax.StepTo(ts),
                                  saveat=diffrax.SaveAt(ts=ts))  # fmt: skip
        return sol.ys[last]

    def loss(p: dict[str, Any], coeffs: Any, y: Any, last: Any) -> Any:
        zT = jax.vmap(solve_one, in_axes=(None, 0, 0))(p, coeffs, last)
        logits = zT @ p["P"].T + p["c"]
        picked = jnp.take_along_axis(logits, y[:, None], 1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    coeffs = coefficients(work.U)
    last, y = jnp.asarray(work.lengths - 1), jnp.asarray(work.y)
    parts = [
        (jax.tree.map(lambda c, r=rows: c[r], coeffs), y[rows], last[rows])
        for rows in work.batches()
    ]
    return loss, parts


def diffrax_epoch(work: Workload) -> Callable[[], float]:
    import jax
    import jax.numpy as jnp

    loss_fn, parts = _diffrax_loss(work)

    @jax.jit
    def step(params, m, v, t, coeffs, y, last):  # Adam, PyTorch semantics
        loss, g = jax.value_and_grad(loss_fn)(params, coeffs, y, last)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        lr = LR * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        params = jax.tree.map(lambda p, m, v: p - lr * m / (jnp.sqrt(v) + 1e-8), params, m, v)
        return params, m, v, loss

    state: dict[str, Any] = {"p": {k: jnp.asarray(v) for k, v in work.model().params.items()}}
    state["m"] = jax.tree.map(jnp.zeros_like, state["p"])
    state["v"] = jax.tree.map(jnp.zeros_like, state["p"])
    state["t"] = 1

    def epoch() -> float:
        loss = math.nan
        for part in parts:
            p, m, v, out = step(state["p"], state["m"], state["v"], state["t"], *part)
            state.update(p=p, m=m, v=v, t=state["t"] + 1)
            loss = float(jax.block_until_ready(out))
        return loss

    return epoch


def diffrax_loss_and_grad(work: Workload) -> tuple[float, dict[str, np.ndarray]]:
    import jax
    import jax.numpy as jnp

    loss_fn, parts = _diffrax_loss(work)
    params = {k: jnp.asarray(v) for k, v in work.model().params.items()}
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, *parts[0])
    return float(loss), {k: np.asarray(g) for k, g in grads.items()}


# --------------------------------------------------------------------------- checks


EPOCHS: dict[str, Callable[[Workload], Callable[[], float]]] = {
    "resode": resode_epoch,
    "torchcde": torchcde_epoch,
    "diffrax": diffrax_epoch,
}
LOSS_AND_GRAD = {
    "resode": resode_loss_and_grad,
    "torchcde": torchcde_loss_and_grad,
    "diffrax": diffrax_loss_and_grad,
}
MODULES = {"resode": (), "torchcde": ("torch", "torchcde"), "diffrax": ("jax", "diffrax")}


def missing(impl: str) -> str | None:
    """The first module ``impl`` needs that is not installed (aeon for JapaneseVowels aside)."""
    import importlib.util

    for name in MODULES[impl]:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def check(work: Workload, impl: str) -> None:
    """``impl``'s loss and gradients on the first batch equal resode's (same mathematics)."""
    ours, our_grads = resode_loss_and_grad(work)
    loss, grads = LOSS_AND_GRAD[impl](work)
    assert abs(loss - ours) <= 1e-10 * abs(ours), (impl, loss, ours)
    for k, g in our_grads.items():
        scale = float(np.abs(g).max())
        err = float(np.abs(grads[k] - g).max())
        assert err <= 1e-8 * scale, (impl, k, err, scale)
