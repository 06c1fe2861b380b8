"""resode.torch: the custom operators (gradcheck, opcheck, torch.compile), the modules, zero
copies, dtype/device errors, threads, and a model trained end to end with torch.optim."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
import resode

torch = pytest.importorskip("torch")
import resode.torch as rt  # noqa: E402
from resode import _bridge  # noqa: E402

F64 = torch.float64
FIELDS = {"outside": None, "inside": None, "bottleneck": 3}


def _params(field: str, dtype: Any = F64, pieces: int = 2, D: int = 3) -> dict[str, Any]:
    model = resode.NeuralODE(D - 1, pieces=pieces, field=field, hidden=FIELDS[field], augment=1,
                             dtype=str(dtype).split(".")[-1], seed=4)  # fmt: skip
    names = resode.models.field_param_names(field)
    return {n: torch.tensor(model.params[n], requires_grad=True) for n in names}


def _X(N: int = 4, dim: int = 2, dtype: Any = F64) -> Any:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, dim, dtype=dtype, generator=g, requires_grad=True)


OPTS: dict[str, Any] = dict(T=0.8, substeps=2, activation="tanh", augment=1)


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("trajectory", [False, True])
def test_gradcheck_discrete(field: str, method: str, trajectory: bool) -> None:
    params = _params(field)
    names = list(params)

    def f(X: Any, *theta: Any) -> Any:
        return rt.odeint(dict(zip(names, theta)), X, field=field, method=method,
                         trajectory=trajectory, **OPTS)  # fmt: skip

    assert torch.autograd.gradcheck(f, (_X(), *params.values()), eps=1e-6, atol=1e-8, rtol=1e-6)


# (substeps, tolerance) of the adjoint's gradcheck: its gap to the discrete gradient on these
# models is at most about 0.015 (euler, dt = 0.025), 1e-3 (midpoint, dt = 0.1) and 3e-7 (rk4,
# dt = 0.1); the tolerances leave 2-4x room.
ADJOINT_CHECK = {"euler": (16, 0.03), "midpoint": (4, 2e-3), "rk4": (4, 1e-6)}
ORDER = {"euler": 1, "midpoint": 2, "rk4": 4}


def _jacobian(field: str, method: str, gradient: str, substeps: int, trajectory: bool) -> Any:
    """d(every output)/d(X and every field parameter), one backward pass per output."""
    params, X = _params(field), _X()
    out = rt.odeint(params, X, field=field, method=method, gradient=gradient,
                    trajectory=trajectory, **dict(OPTS, substeps=substeps)).reshape(-1)  # fmt: skip
    rows = []
    for i in range(out.numel()):
        grads = torch.autograd.grad(out[i], [X, *params.values()], retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("trajectory", [False, True])
def test_gradcheck_adjoint(field: str, method: str, trajectory: bool) -> None:
    """gradient="adjoint" is the continuous backsolve adjoint: the ODE's gradient, which the
    exact (discrete) gradient of the method approaches as C dt^order. gradcheck compares it
    with finite differences of the forward at the method's tolerance, and halving dt shrinks
    its gap to the discrete gradient by about 2^order (a wrong adjoint would not converge)."""
    params = _params(field)
    names = list(params)

    def f(X: Any, *theta: Any) -> Any:
        return rt.odeint(dict(zip(names, theta)), X, field=field, method=method,
                         gradient="adjoint", trajectory=trajectory,
                         **dict(OPTS, substeps=substeps))  # fmt: skip

    substeps, tol = ADJOINT_CHECK[method]
    assert torch.autograd.gradcheck(f, (_X(), *params.values()), eps=1e-6, atol=tol, rtol=0)
    gaps = [
        float((_jacobian(field, method, "adjoint", s, trajectory)
               - _jacobian(field, method, "discrete", s, trajectory)).abs().max())
        for s in (substeps // 2, substeps)
    ]  # fmt: skip
    assert gaps[1] < gaps[0] / (0.75 * 2 ** ORDER[method])


@pytest.mark.parametrize("trajectory", [False, True])
def test_adjoint_gradient_approaches_the_discrete_one(trajectory: bool) -> None:
    """The continuous adjoint is the ODE's gradient: within O(dt^4) of the exact discrete
    gradient of rk4, so the gap shrinks about 16x per halving of dt."""
    gaps = []
    for substeps in (2, 4):
        grads = {}
        for gradient in ("discrete", "adjoint"):
            params, X = _params("bottleneck"), _X()
            opts = dict(OPTS, substeps=substeps)
            out = rt.odeint(params, X, field="bottleneck", gradient=gradient,
                            trajectory=trajectory, **opts)  # fmt: skip
            (out**2).sum().backward()
            grads[gradient] = torch.cat([p.grad.flatten() for p in params.values()] + [X.grad[0]])
        gaps.append(float((grads["adjoint"] - grads["discrete"]).abs().max()))
    assert gaps[1] < gaps[0] / 8
    assert gaps[1] < 1e-4


def test_opcheck() -> None:
    params, X = _params("bottleneck"), _X()
    theta = list(params.values())
    args = (X, theta, "bottleneck", "tanh", "rk4", 0.2, 2, 1, "discrete", 0, False)
    torch.library.opcheck(rt._odeint_op, args)
    traj = (X, theta, "bottleneck", "relu", "midpoint", 0.2, 1, 1, "adjoint", 0, True)
    torch.library.opcheck(rt._odeint_op, traj)
    cot = torch.randn(4, 3, dtype=F64)
    detached = [t.detach() for t in theta]
    _, kept = rt._odeint_op(X.detach(), detached, *args[2:])
    assert kept.shape == (4, 4, 3)  # a narrow field: the states x_0..x_3 of 4 steps
    vjp_args = (X.detach(), detached, cot, kept, "bottleneck", "tanh", "rk4", 0.2, 2, 1,
                "discrete", 0)  # fmt: skip
    torch.library.opcheck(rt._odeint_vjp_op, vjp_args)


class _Classifier(torch.nn.Module):
    def __init__(self, dim: int, classes: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = torch.nn.Linear(dim, 6, dtype=F64)
        self.flow = rt.NeuralODE(6, T=1.0, pieces=4, field="bottleneck", hidden=12,
                                 activation="tanh", seed=seed)  # fmt: skip
        self.head = torch.nn.Linear(6, classes, dtype=F64)

    def forward(self, X: Any) -> Any:
        return self.head(self.flow(self.encoder(X)))


def test_torch_compile_fullgraph_gives_the_eager_result() -> None:
    model = _Classifier(4, 3)
    X = torch.randn(10, 4, dtype=F64)
    y = torch.arange(10) % 3

    def loss_and_grads(m: Any) -> tuple[Any, list[Any]]:
        m.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(X), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager_loss, eager_grads = loss_and_grads(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss, grads = loss_and_grads(compiled)
    assert torch.equal(loss, eager_loss)
    for g, e in zip(grads, eager_grads):
        assert torch.equal(g, e)


@pytest.mark.parametrize("dynamic", [True, None])
def test_torch_compile_serves_every_batch_size(dynamic: bool | None) -> None:
    """The fake keeps the batch size symbolic and the options' checks keep a symbolic T
    symbolic: dynamic=True compiles one graph, without graph breaks, for every batch size; the
    default compiles twice (the first size, then torch's automatic dynamic shapes), not once
    per size. Both give the eager values and gradients."""
    from torch._dynamo.utils import counters

    layer = rt.NeuralODE(2, T=0.8, pieces=2, substeps=2, field="bottleneck", hidden=3,
                         augment=1, seed=0)  # fmt: skip
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(layer.trajectory, backend="aot_eager", dynamic=dynamic,
                             fullgraph=bool(dynamic))  # fmt: skip
    for n in (8, 5, 3, 7):
        results = []
        for flow in (compiled, layer.trajectory):
            X = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(n))
            X.requires_grad_()
            layer.zero_grad()
            out = flow(X)
            (out**2).sum().backward()
            results.append([out.detach(), X.grad, *(p.grad for p in layer.parameters())])
        for got, want in zip(*results):
            assert torch.equal(got, want)
    assert counters["stats"]["unique_graphs"] == (1 if dynamic else 2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor
def test_torch_compile_with_inductor() -> None:
    model = _Classifier(4, 3)
    X = torch.randn(10, 4, dtype=F64)
    eager = model(X)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(X), eager, rtol=1e-12, atol=1e-12)


def test_train_a_torch_model_on_digits_to_90_percent() -> None:
    pytest.importorskip("sklearn")
    X, y = resode.datasets.digits(seed=0)
    Xtr, Xte, ytr, yte = resode.datasets.train_test_split(X, y, test_size=0.25, seed=0)
    Xtr, Xte = torch.tensor(Xtr), torch.tensor(Xte)
    ytr, yte = torch.tensor(ytr), torch.tensor(yte)
    model = _Classifier(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        for idx in torch.randperm(len(Xtr), generator=torch.Generator().manual_seed(1)).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((model(Xte).argmax(1) == yte).double().mean())
    assert accuracy >= 0.90


# --------------------------------------------------------------------------- modules


def test_modules_start_from_resode_parameters_bitwise() -> None:
    node = rt.NeuralODE(2, T=2.0, pieces=5, field="bottleneck", hidden=7, augment=1, seed=3)
    ref = resode.NeuralODE(2, T=2.0, pieces=5, field="bottleneck", hidden=7, augment=1, seed=3)
    for name, p in node.field_params().items():
        np.testing.assert_array_equal(p.detach().numpy(), ref.params[name])
    net = rt.ResNet(3, 4, h=0.5, field="inside", dtype=torch.float32, seed=1)
    ref_net = resode.ResNet(3, 4, h=0.5, field="inside", dtype="float32", seed=1)
    for name, p in net.field_params().items():
        assert p.dtype == torch.float32
        np.testing.assert_array_equal(p.detach().numpy(), ref_net.params[name])


def test_module_forward_and_trajectory_equal_resode() -> None:
    ref = resode.NeuralODE(2, T=1.5, pieces=3, substeps=2, method="midpoint", augment=1,
                           activation="relu", seed=0)  # fmt: skip
    node = rt.NeuralODE.from_resode(ref)
    X = np.random.default_rng(0).normal(size=(6, 2))
    traj = node.trajectory(torch.tensor(X)).detach().numpy()
    np.testing.assert_array_equal(traj, ref.trajectory(X))
    np.testing.assert_array_equal(node(torch.tensor(X)).detach().numpy(), traj[-1])
    resnet = resode.ResNet(2, 5, h=0.3, seed=2)
    np.testing.assert_array_equal(
        rt.ResNet.from_resode(resnet).trajectory(torch.tensor(X)).detach().numpy(),
        resnet.trajectory(X),
    )


def test_to_resode_carries_the_field_and_the_given_readout() -> None:
    node = rt.NeuralODE(2, pieces=3, augment=1, seed=0)
    with torch.no_grad():
        node.W.mul_(2.0)
    P = torch.ones(4, 3, dtype=F64)
    model = node.to_resode(P=P)
    assert model.classes == 4 and model.pieces == 3
    np.testing.assert_array_equal(model.params["W"], node.W.detach().numpy())
    np.testing.assert_array_equal(model.params["P"], np.ones((4, 3)))
    np.testing.assert_array_equal(model.params["c"], np.zeros(4))
    X = np.ones((2, 2))
    np.testing.assert_array_equal(model.trajectory(X)[-1], node(torch.tensor(X)).detach().numpy())
    with pytest.raises(ValueError, match=r"^P must have shape \(classes, 3\)"):
        node.to_resode(P=torch.ones(4, 2))


# --------------------------------------------------------------------------- boundary


def _keep(monkeypatch: pytest.MonkeyPatch, kept: str) -> None:
    """Makes the layers keep the stage tape, or the states, whatever the field's width."""
    limit = ("STAGE_TAPE_WORK", 0) if kept == "stages" else ("STAGE_TAPE_BYTES", 0)
    monkeypatch.setattr(_bridge, *limit)


@pytest.mark.parametrize("trajectory", [False, True])
@pytest.mark.parametrize("kept", ["stages", "states"])
def test_tensors_reach_the_core_without_copies(
    monkeypatch: pytest.MonkeyPatch, trajectory: bool, kept: str
) -> None:
    _keep(monkeypatch, kept)
    seen: dict[str, Any] = {}
    real_forward, real_vjp = _bridge.forward_with_states, _bridge.vjp_from_states

    def forward(flow: Any, X: np.ndarray, theta: list[np.ndarray]) -> Any:
        seen["X"], seen["theta"] = X, theta
        seen["out"], seen["kept"] = real_forward(flow, X, theta)
        return seen["out"], seen["kept"]

    def vjp(flow: Any, X: np.ndarray, theta: list[np.ndarray], cot: np.ndarray, kept: Any) -> Any:
        seen["kept_back"] = kept
        seen["grads"] = real_vjp(flow, X, theta, cot, kept)
        return seen["grads"]

    monkeypatch.setattr(_bridge, "forward_with_states", forward)
    monkeypatch.setattr(_bridge, "vjp_from_states", vjp)
    params, X = _params("outside"), _X()
    out = rt.odeint(params, X, field="outside", trajectory=trajectory, **OPTS)
    assert np.shares_memory(seen["X"], X.detach().numpy())
    for t, a in zip(params.values(), seen["theta"]):
        assert np.shares_memory(a, t.detach().numpy())
    assert out.data_ptr() == seen["out"].ctypes.data  # the core's output, not a copy
    out.sum().backward()
    # the backward reads the states the forward kept, not a copy (the trajectory: itself)
    assert seen["kept_back"].ctypes.data == seen["kept"].ctypes.data
    assert (seen["kept"] is seen["out"]) == (trajectory and kept == "states")
    _, dX = seen["grads"]
    assert X.grad.data_ptr() == dX.ctypes.data


def _count_core_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the calls of the core's sweeps the bridge makes."""
    calls: dict[str, int] = {}
    for name in ("trajectory", "vjp", "forward_states", "vjp_from_states"):
        real = getattr(_bridge._core, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(_bridge._core, name, counted)
    return calls


# (checkpoints, trajectory) of a flow of 4 steps: every state kept, 2 of them (stride 2), one
# (stride 4: one segment recomputed from x_0), more checkpoints than steps (every state)
KEPT = [(None, False), (None, True), (2, False), (2, True), (1, False), (9, False)]


def _old_gradients(params: dict, X: Any, cot: Any, **options: Any) -> tuple[list, Any]:
    """The gradients of the layers before issue 24: the core's vjp, which sweeps forward again
    from X (bitwise what the layers gave: they called exactly this)."""
    flow, names = _bridge.flow(params, tuple(X.shape), **options)
    theta = [params[n].detach().numpy() for n in names]
    return _bridge.vjp(flow, X.detach().numpy(), theta, cot.detach().numpy())


@pytest.mark.parametrize("compiled_op", [False, True])
@pytest.mark.parametrize(("checkpoints", "trajectory"), KEPT)
@pytest.mark.parametrize("kept", ["stages", "states"])
def test_a_training_step_sweeps_forward_once(
    monkeypatch: pytest.MonkeyPatch,
    checkpoints: int | None,
    trajectory: bool,
    compiled_op: bool,
    kept: str,
) -> None:
    """Forward and backward: one forward sweep (which keeps the stage tape or the states) and
    one reverse sweep from them; no second forward sweep inside the VJP. compiled_op: through
    the custom operators torch.compile runs (their autograd registration), else the eager
    Function. kept: the stage tape (where no checkpoints are asked for), or the states."""
    _keep(monkeypatch, kept)
    calls = _count_core_calls(monkeypatch)
    params, X = _params("bottleneck"), _X()
    options = dict(OPTS, method="rk4", field="bottleneck", gradient="discrete",
                   checkpoints=checkpoints, trajectory=trajectory)  # fmt: skip
    if compiled_op:
        flow, names = _bridge.flow(params, tuple(X.shape), **options)
        out, _ = rt._odeint_op(X, [params[n] for n in names], flow.field, flow.activation,
                               flow.method, flow.dt, flow.substeps, flow.augment, flow.gradient,
                               flow.checkpoints, flow.trajectory)  # fmt: skip
    else:
        out = rt.odeint(params, X, **options)
    assert calls == {"forward_states": 1}
    cot = torch.randn(out.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    out.backward(cot)
    assert calls == {"forward_states": 1, "vjp_from_states": 1}
    monkeypatch.undo()
    grads, dX = _old_gradients(params, X, cot, **options)
    assert torch.equal(X.grad, torch.from_numpy(dX))
    for p, g in zip(params.values(), grads):
        assert torch.equal(p.grad, torch.from_numpy(g))


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize(("checkpoints", "trajectory"), KEPT)
@pytest.mark.parametrize("kept", ["stages", "states"])
def test_gradients_from_the_kept_states_equal_the_former_ones_bitwise(
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    method: str,
    dtype: Any,
    checkpoints: int | None,
    trajectory: bool,
    kept: str,
) -> None:
    _keep(monkeypatch, kept)
    params, X = _params(field, dtype), _X(N=37, dtype=dtype)  # 37: more than one vector
    options = dict(OPTS, method=method, field=field, checkpoints=checkpoints,
                   trajectory=trajectory)  # fmt: skip
    out = rt.odeint(params, X, **options)
    cot = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    out.backward(cot)
    grads, dX = _old_gradients(params, X, cot, **options, gradient="discrete")
    assert torch.equal(X.grad, torch.from_numpy(dX))
    for p, g in zip(params.values(), grads):
        assert torch.equal(p.grad, torch.from_numpy(g))


@pytest.mark.parametrize("checkpoints", [None, 1])
def test_kept_states_past_the_tape_budget_give_the_former_gradients(
    monkeypatch: pytest.MonkeyPatch, checkpoints: int | None
) -> None:
    """A segment longer than the core's tape budget (256 MiB per thread; here 200 rk4 steps of
    a block of 240 samples of width 64, about 1.5 MB a step) is recomputed in pieces, with
    checkpoints inside it: the same gradients, bitwise (the states kept, not the stages)."""
    monkeypatch.setattr(_bridge, "STAGE_TAPE_BYTES", 0)
    model = resode.NeuralODE(64, pieces=200, T=2.0, seed=0)
    params = {n: torch.tensor(model.params[n], requires_grad=True) for n in ("W", "b")}
    X = torch.randn(240, 64, dtype=F64, generator=torch.Generator().manual_seed(0))
    X.requires_grad_(True)
    options = dict(T=2.0, checkpoints=checkpoints, gradient="discrete", trajectory=False)
    out = rt.odeint(params, X, **options)
    cot = torch.randn(out.shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    out.backward(cot)
    grads, dX = _old_gradients(params, X, cot, **options, substeps=1, method="rk4",
                               field="outside", activation="tanh", augment=0)  # fmt: skip
    assert torch.equal(X.grad, torch.from_numpy(dX))
    for p, g in zip(params.values(), grads):
        assert torch.equal(p.grad, torch.from_numpy(g))


def test_checkpoints_keep_at_most_that_many_states(monkeypatch: pytest.MonkeyPatch) -> None:
    params, X = _params("outside", pieces=5), _X()  # 10 steps
    theta = [t.detach() for t in params.values()]
    monkeypatch.setattr(_bridge, "STAGE_TAPE_WORK", 0)
    _, kept = rt._odeint_op(X.detach(), theta, "outside", "tanh", "rk4", 0.1, 2, 1,
                            "discrete", 0, False)  # fmt: skip
    assert kept.shape == (10, 3 + 7 * 3, 4)  # the stage tape: the state, X_2..4, K_1..4
    monkeypatch.setattr(_bridge, "STAGE_TAPE_BYTES", 10 * 24 * 4 * 8 - 1)  # one byte short
    for checkpoints, rows in [(0, 10), (3, 3), (4, 4), (6, 5), (1, 1), (10, 10), (20, 10)]:
        _, kept = rt._odeint_op(X.detach(), theta, "outside", "tanh", "rk4", 0.1, 2, 1,
                                "discrete", checkpoints, False)  # fmt: skip
        assert kept.shape == (rows, 4, 3), checkpoints
    _, kept = rt._odeint_op(X.detach(), theta, "outside", "tanh", "rk4", 0.1, 2, 1,
                            "adjoint", 0, False)  # fmt: skip
    assert kept.shape == (0, 4, 3)  # the adjoint keeps nothing


def test_the_stage_tape_is_kept_for_wide_fields_only() -> None:
    """Evaluating a narrow field again costs less than storing its stages and reading them
    back (see _bridge.STAGE_TAPE_WORK); a wide one is kept."""
    wide = {"W": np.zeros((10, 64, 64)), "b": np.zeros((10, 64))}
    flow, _ = _bridge.flow(wide, (240, 64), T=1.0, substeps=1, method="rk4", field="outside",
                           activation="tanh", augment=0, gradient="discrete", checkpoints=None,
                           trajectory=False)  # fmt: skip
    assert flow.kept(240, (10, 64, 64), 8) == (True, (10, 8 * 64, 240))
    assert flow.kept(240, (10, 3, 3), 8) == (False, (10, 240, 3))
    seed = dataclasses.replace(flow, field="bottleneck")
    assert seed.kept(2, (16, 50, 3), 8) == (False, (16, 2, 3))  # the seed model
    assert flow.kept(10**6, (10, 64, 64), 8)[0] is False  # over the 256 MiB budget


def test_mixed_dtypes_and_devices_are_refused() -> None:
    params = _params("outside")
    with pytest.raises(TypeError, match=r"^X and params must have one dtype \(no silent casts\)"):
        rt.odeint(params, _X(dtype=torch.float32), field="outside", **OPTS)
    with pytest.raises(TypeError, match=r"^X must be float32 or float64, got torch.int64"):
        rt.odeint(params, torch.zeros(4, 2, dtype=torch.int64), field="outside", **OPTS)
    with pytest.raises(ValueError, match=r"^X is on device 'meta': .*\.cpu\(\)$"):
        rt.odeint(params, torch.zeros(4, 2, dtype=F64, device="meta"), field="outside", **OPTS)
    with pytest.raises(ValueError, match=r"^X must have shape \(N, 2\)"):
        rt.odeint(params, torch.zeros(4, 3, dtype=F64), field="outside", **OPTS)
    with pytest.raises(TypeError, match=r"^X must be a torch.Tensor, got ndarray$"):
        rt.odeint(params, np.zeros((4, 2)), field="outside", **OPTS)


def test_float32_follows_the_tensors() -> None:
    params, X = _params("inside", dtype=torch.float32), _X(dtype=torch.float32)
    out = rt.odeint(params, X, field="inside", **OPTS)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert X.grad.dtype == torch.float32 and params["W"].grad.dtype == torch.float32
    p64 = {k: v.detach().double().requires_grad_() for k, v in params.items()}
    X64 = X.detach().double().requires_grad_()
    rt.odeint(p64, X64, field="inside", **OPTS).sum().backward()
    torch.testing.assert_close(params["W"].grad.double(), p64["W"].grad, rtol=1e-4, atol=1e-5)


def test_two_threads_train_two_models_like_one_after_the_other() -> None:
    X = torch.randn(64, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(64) % 3

    def train(seed: int) -> list[Any]:
        model = _Classifier(4, 3, seed=seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(15):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.flow.parameters()]

    # construct models serially (torch.manual_seed is global), train concurrently
    serial = [train(1), train(2)]
    results: dict[int, list[Any]] = {}
    models = {}
    for seed in (1, 2):
        models[seed] = _Classifier(4, 3, seed=seed)

    def worker(seed: int) -> None:
        model = models[seed]
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(15):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
        results[seed] = [p.detach().clone() for p in model.flow.parameters()]

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed, expected in zip((1, 2), serial):
        for got, want in zip(results[seed], expected):
            assert torch.equal(got, want)


def test_import_resode_imports_neither_torch_nor_jax() -> None:
    import subprocess
    import sys

    code = "import sys, resode; print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_resnet_module_steps_with_h_itself() -> None:
    """T / layers is not always h to the last bit (3 x 0.1 / 3): the module uses h, as
    resode.ResNet does, so the states agree bitwise."""
    ref = resode.ResNet(2, 3, h=0.1, field="inside", seed=1)
    X = np.random.default_rng(1).normal(size=(4, 2))
    got = rt.ResNet.from_resode(ref).trajectory(torch.tensor(X)).detach().numpy()
    np.testing.assert_array_equal(got, ref.trajectory(X))
