"""resode.torch.odeint(..., u=U) and resode.torch.NeuralODE(..., inputs=C), the input-driven
neural ODE x' = f_theta(t)([x; u(t)]) as a PyTorch layer: values and gradients (parameters, X
and U) bitwise those of resode.NeuralODE(inputs=C) and the core's driven_solve / driven_vjp,
gradcheck, the custom operators (opcheck, torch.compile with fullgraph and dynamic shapes),
zero copies, an encoder trained through U, float32 and float64, and the errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import resode

torch = pytest.importorskip("torch")
import resode.torch as rt  # noqa: E402
from resode import _core, _driven_bridge, _torch_driven  # noqa: E402

F64, F32 = torch.float64, torch.float32
FIELDS = {"outside": None, "inside": None, "bottleneck": 4}


def _layer(field: str = "outside", dtype: Any = F64, **options: Any) -> Any:
    opts = {"T": 2.0, "pieces": 3, "substeps": 2, "augment": 1, "inputs": 2, **options}
    return rt.NeuralODE(2, field=field, hidden=FIELDS[field], dtype=dtype, seed=3, **opts)


def _data(dtype: Any = F64, N: int = 4, L: int = 6) -> tuple[Any, Any, Any]:
    """X (N, 2), U (N, L, 2) with a missing value inside a series, one in a first row, and
    padding (lengths 6, 4, 5, 6), per-sample times (N, L) increasing inside [0, T], NaN on the
    padding."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 2))
    U = rng.normal(size=(N, L, 2))
    U[0, 2, 1] = np.nan
    U[1, 4:] = np.nan
    U[2, 0, 0] = np.nan
    U[2, 5:] = np.nan
    times = np.cumsum(rng.uniform(0.1, 0.4, size=(N, L)), axis=1)
    times[1, 4:] = np.nan
    return (torch.tensor(X, dtype=dtype), torch.tensor(U, dtype=dtype),
            torch.tensor(times, dtype=dtype))  # fmt: skip


def _np(params: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in params.items()}


def _core_options(layer: Any) -> dict[str, Any]:
    m = layer.to_resode()
    names = ("T", "field", "activation", "interpolation", "method", "substeps")
    return {name: getattr(m, name) for name in names}


def _x0(X: Any, augment: int = 1) -> np.ndarray:
    x = X.detach().numpy()
    return np.concatenate([x, np.zeros((x.shape[0], augment), x.dtype)], axis=1)


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("trajectory", [False, True])
def test_values_and_gradients_equal_the_cores_bitwise(
    field: str, dtype: Any, per_sample: bool, trajectory: bool
) -> None:
    layer = _layer(field, dtype)
    X, U, times = _data(dtype)
    if not per_sample:
        times = times[0]
    X.requires_grad_()
    U.requires_grad_()
    out = layer.trajectory(X, U, times) if trajectory else layer(X, U, times)
    t = 2.0 * np.arange(7) / 6 if trajectory else None  # the step grid j T / steps
    x0 = _x0(X)
    want = _core.driven_solve(_np(layer.field_params()), x0, U.detach().numpy(), times.numpy(),
                              t=t, **_core_options(layer))  # fmt: skip
    assert out.dtype == dtype and out.shape == want.shape
    assert np.array_equal(out.detach().numpy(), want)
    cot = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    out.backward(cot)
    grads, dx0, dU = _core.driven_vjp(_np(layer.field_params()), x0, U.detach().numpy(),
                                      times.numpy(), cot.numpy(), t=t,
                                      **_core_options(layer))  # fmt: skip
    assert np.array_equal(U.grad.numpy(), dU)
    assert np.array_equal(X.grad.numpy(), dx0[:, :2])
    assert U.grad[torch.isnan(U)].abs().sum() == 0  # no gradient to a missing value
    for name, p in layer.field_params().items():
        assert np.array_equal(p.grad.numpy(), grads[name]), name


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_the_module_equals_resodes_neural_ode(field: str) -> None:
    """The same weights (seed) as resode.NeuralODE(inputs=C): its trajectory, bitwise."""
    layer = _layer(field, interpolation="linear", method="midpoint")
    model = resode.NeuralODE(2, field=field, hidden=FIELDS[field], seed=3, T=2.0, pieces=3,
                             substeps=2, augment=1, inputs=2, interpolation="linear",
                             method="midpoint")  # fmt: skip
    for name, p in layer.field_params().items():
        assert np.array_equal(p.detach().numpy(), model.params[name])
    X, U, times = _data()
    want = model.trajectory(X.numpy(), u=U.numpy(), times=times.numpy())
    assert np.array_equal(layer.trajectory(X, U, times).detach().numpy(), want)
    assert np.array_equal(layer(X, U, times).detach().numpy(), want[-1])
    back = rt.NeuralODE.from_resode(model)
    assert torch.equal(back(X, U, times), layer(X, U, times))
    assert back.to_resode().config == model.config


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize(("interpolation", "method"), [("cubic", "rk4"), ("linear", "midpoint"),
                                                       ("cubic", "euler")])  # fmt: skip
@pytest.mark.parametrize("trajectory", [False, True])
def test_gradcheck(field: str, interpolation: str, method: str, trajectory: bool) -> None:
    """Central differences on every parameter, on X and on U (no NaN: gradcheck perturbs
    every entry)."""
    layer = _layer(field, interpolation=interpolation, method=method)
    X, U, times = _data(N=3, L=5)
    U = torch.nan_to_num(U, nan=0.5).requires_grad_()
    X.requires_grad_()
    names = list(layer.field_params())
    theta = [p.detach().clone().requires_grad_() for p in layer.field_params().values()]
    options = dict(T=2.0, substeps=2, method=method, field=field, augment=1,
                   interpolation=interpolation, trajectory=trajectory)  # fmt: skip

    def f(X: Any, U: Any, *theta: Any) -> Any:
        return rt.odeint(dict(zip(names, theta)), X, u=U, times=times[0], **options)

    assert torch.autograd.gradcheck(f, (X, U, *theta), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_opcheck() -> None:
    layer = _layer("bottleneck")
    X, U, times = _data()
    theta = [p.detach() for p in layer.field_params().values()]
    options = (2.0, "bottleneck", "tanh", "cubic", "rk4", 2, 1, False)
    torch.library.opcheck(_torch_driven._driven_op, (X, U, times, theta, *options))
    traj = (2.0, "bottleneck", "relu", "linear", "euler", 1, 1, True)
    torch.library.opcheck(_torch_driven._driven_op, (X, U, times[0], theta, *traj))
    cot = torch.randn(4, 3, dtype=F64)
    torch.library.opcheck(_torch_driven._driven_vjp_op, (X, U, times, theta, cot, *options))


class _Classifier(torch.nn.Module):
    """An encoder (raw inputs -> the driven ODE's input channels), the flow, a readout."""

    def __init__(self, dtype: Any = F64) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(3, 2, dtype=dtype)
        self.node = _layer("bottleneck", dtype)
        self.head = torch.nn.Linear(3, 2, dtype=dtype)

    def forward(self, X: Any, V: Any, times: Any) -> Any:
        return self.head(self.node(X, self.encoder(V), times))


def _inputs(N: int = 6, L: int = 7, dtype: Any = F64) -> tuple[Any, Any, Any, Any]:
    g = torch.Generator().manual_seed(N)
    X = torch.randn(N, 2, dtype=dtype, generator=g)
    V = torch.randn(N, L, 3, dtype=dtype, generator=g)
    times = torch.linspace(0.0, 2.0, L, dtype=dtype)
    # the label is the sign of the inputs' mean: learnable through u only
    y = (V.mean(dim=(1, 2)) > 0).long()
    return X, V, times, y


def _loss_and_grads(model: Any, fn: Any, data: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    X, V, times, y = data
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(fn(X, V, times), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_torch_compile_fullgraph_gives_the_eager_result() -> None:
    model = _Classifier()
    data = _inputs()
    eager = _loss_and_grads(model, model, data)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss, grads = _loss_and_grads(model, compiled, data)
    assert torch.equal(loss, eager[0])
    for g, e in zip(grads, eager[1]):
        assert torch.equal(g, e)


def test_torch_compile_serves_every_batch_size() -> None:
    """dynamic=True: one graph without graph breaks for every batch size (the fake keeps N
    symbolic), with times=None and the trajectory."""
    from torch._dynamo.utils import counters

    layer = _layer("outside")
    fn = torch.compile(lambda X, U: layer.trajectory(X, U), backend="aot_eager", dynamic=True,
                       fullgraph=True)  # fmt: skip
    torch._dynamo.reset()
    counters.clear()
    for n in (5, 3, 7):
        results = []
        for f in (fn, lambda X, U: layer.trajectory(X, U)):
            g = torch.Generator().manual_seed(n)
            X = torch.randn(n, 2, dtype=F64, generator=g).requires_grad_()
            U = torch.randn(n, 4, 2, dtype=F64, generator=g).requires_grad_()
            layer.zero_grad()
            out = f(X, U)
            (out**2).sum().backward()
            results.append([out.detach(), X.grad, U.grad, *(p.grad for p in layer.parameters())])
        for got, want in zip(*results):
            assert torch.equal(got, want)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor
def test_torch_compile_with_inductor() -> None:
    model = _Classifier()
    X, V, times, _ = _inputs()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(X, V, times), model(X, V, times), rtol=1e-12,
                               atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("dtype", [F64, F32])
def test_tensors_reach_the_core_without_copies(monkeypatch: pytest.MonkeyPatch, dtype: Any) -> None:
    seen: dict[str, Any] = {}
    real_solve, real_vjp = _driven_bridge.solve, _driven_bridge.vjp

    def solve(flow: Any, theta: Any, X: Any, U: Any, times: Any) -> Any:
        seen["theta"], seen["X"], seen["U"], seen["times"] = theta, X, U, times
        seen["out"] = real_solve(flow, theta, X, U, times)
        return seen["out"]

    def vjp(flow: Any, theta: Any, X: Any, U: Any, times: Any, cot: Any) -> Any:
        seen["U_back"] = U
        seen["grads"] = real_vjp(flow, theta, X, U, times, cot)
        return seen["grads"]

    monkeypatch.setattr(_driven_bridge, "solve", solve)
    monkeypatch.setattr(_driven_bridge, "vjp", vjp)
    layer = _layer("bottleneck", dtype, augment=0)
    X, U, times = _data(dtype)
    X.requires_grad_()
    U.requires_grad_()
    out = layer(X, U, times)
    assert np.shares_memory(seen["X"], X.detach().numpy())
    assert np.shares_memory(seen["U"], U.detach().numpy())
    assert np.shares_memory(seen["times"], times.numpy())
    for p, a in zip(layer.field_params().values(), seen["theta"]):
        assert np.shares_memory(a, p.detach().numpy())
    assert out.data_ptr() == seen["out"].ctypes.data  # the core's output, not a copy
    out.sum().backward()
    assert seen["U_back"] is seen["U"]  # the forward's views, kept
    dtheta, dX, dU = seen["grads"]
    assert U.grad.data_ptr() == dU.ctypes.data
    assert X.grad.data_ptr() == dX.ctypes.data
    for p, g in zip(layer.field_params().values(), dtheta):
        assert p.grad.data_ptr() == g.ctypes.data


def test_a_training_step_calls_the_core_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward: one driven_solve; backward: one driven_vjp (from the inputs kept)."""
    calls: list[str] = []
    for name in ("driven_solve", "driven_vjp"):
        real = getattr(_core, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(_core, name, counted)
    model = _Classifier()
    _loss_and_grads(model, model, _inputs())
    assert calls == ["driven_solve", "driven_vjp"]


def test_an_encoder_upstream_trains_through_u() -> None:
    """The encoder's gradient flows through dU: non-zero, equal to central differences of the
    loss, and Adam steps on the whole model lower the loss."""
    model = _Classifier()
    data = _inputs()
    X, V, times, y = data
    loss, _ = _loss_and_grads(model, model, data)
    W = model.encoder.weight
    grad = W.grad.clone()
    assert grad.abs().min() > 0
    numeric = torch.zeros_like(W)
    h = 1e-6
    with torch.no_grad():
        for idx in np.ndindex(*W.shape):
            W[idx] += h
            up = torch.nn.functional.cross_entropy(model(X, V, times), y)
            W[idx] -= 2 * h
            down = torch.nn.functional.cross_entropy(model(X, V, times), y)
            W[idx] += h
            numeric[idx] = (up - down) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-7, atol=1e-10)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        optimiser.zero_grad()
        step = torch.nn.functional.cross_entropy(model(X, V, times), y)
        step.backward()
        optimiser.step()
    assert float(step.detach()) < 0.5 * float(loss)


def test_float32_gradients_agree_with_float64() -> None:
    m64, m32 = _Classifier(F64), _Classifier(F32)
    m32.load_state_dict({k: v.to(F32) for k, v in m64.state_dict().items()})
    data = _inputs()
    _, g64 = _loss_and_grads(m64, m64, data)
    _, g32 = _loss_and_grads(m32, m32, (*(a.to(F32) for a in data[:3]), data[3]))
    for a, b in zip(g32, g64):
        assert a.dtype == F32
        torch.testing.assert_close(a.to(F64), b, rtol=1e-4, atol=1e-5)


def test_times_default_to_the_observation_index() -> None:
    layer = _layer()
    X, U, _ = _data()
    a = layer(X, U)
    assert torch.equal(a, layer(X, U, torch.arange(6, dtype=F64)))
    assert torch.equal(a, layer(X, U, np.arange(6)))  # an integer NumPy array


def test_the_functional_form_ignores_other_keys() -> None:
    layer = _layer("bottleneck")
    X, U, times = _data()
    params = {**layer.field_params(), "P": torch.zeros(2, 3, dtype=F64)}
    out = rt.odeint(params, X, T=2.0, substeps=2, field="bottleneck", augment=1, u=U,
                    times=times)  # fmt: skip
    assert torch.equal(out, layer(X, U, times))


def test_bad_arguments_are_refused() -> None:
    layer = _layer()
    X, U, times = _data()
    params = dict(layer.field_params())
    with pytest.raises(TypeError, match=r"^X, u and params must have one dtype"):
        layer(X, U.to(F32))
    with pytest.raises(ValueError, match=r"^u must be given for a model with inputs: shape "
                       r"\(N, L, 2\) \(inputs=2\)$"):  # fmt: skip
        layer(X)
    with pytest.raises(ValueError, match=r"^u must have shape \(N, L, 2\) \(inputs=2\), "
                       r"got \(4, 6, 1\)$"):  # fmt: skip
        layer(X, U[..., :1])
    with pytest.raises(ValueError, match=r"^u must have shape \(4, L, C\)"):
        layer(X, U[:3])
    with pytest.raises(ValueError, match=r"^times must have shape \(6,\) \(shared\) or \(4, 6\)"):
        layer(X, U, times[:, :5])
    with pytest.raises(ValueError, match=r"^u is on device 'meta'"):
        layer(X, U.to("meta"))
    with pytest.raises(TypeError, match=r"^times must hold real numbers"):
        layer(X, U, torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        layer(X, U, times.flip(1))
    with pytest.raises(ValueError, match=r"^u and times apply to a NeuralODE with inputs > 0"):
        rt.NeuralODE(2, seed=0)(X, U)
    with pytest.raises(ValueError, match=r"^params\['W'\] must have shape \(3, 3, 6\)"):
        rt.odeint(params, X, T=1.0, augment=1, u=torch.zeros(4, 6, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"^u \(inputs\) runs with gradient='discrete'"):
        rt.odeint(params, X, T=1.0, augment=1, u=U, gradient="adjoint")
    with pytest.raises(ValueError, match=r"^times and interpolation apply with inputs u only"):
        rt.odeint(params, X, T=1.0, augment=1, times=times)
    with pytest.raises(ValueError, match=r"^interpolation must be one of"):
        rt.odeint(params, X, T=1.0, augment=1, u=U, interpolation="spline")
    with pytest.raises(ValueError, match=r"inputs > 0 runs with gradient='discrete' here"):
        rt.NeuralODE(2, inputs=2, gradient="adjoint")


@pytest.mark.parametrize("dtype", [F64, F32])
def test_no_copy_of_u_shows_in_numpys_allocations(dtype: Any) -> None:
    """tests/test_no_copies.py's technique: NumPy reports its allocations to tracemalloc, so a
    copy of U on the way into the core would show in the peak. The forward allocates its
    output (N, D) only; the backward dU (the size of U), dX and the cotangent (each of the
    output's size) and the parameters' gradients."""
    import tracemalloc

    layer = rt.NeuralODE(2, pieces=2, inputs=2, dtype=dtype, seed=0)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20_000, 2, dtype=dtype, generator=g)
    U = torch.randn(20_000, 8, 2, dtype=dtype, generator=g).requires_grad_()
    layer(X, U).sum().backward()  # warm-up: first-call allocations do not count
    U.grad = None
    tracemalloc.start()
    try:
        out = layer(X, U)
        _, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out.sum().backward()
        _, backward_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size, out_size = U.numel() * U.element_size(), out.numel() * out.element_size()
    assert forward_peak < out_size + size // 4, forward_peak
    assert backward_peak < size + 2 * out_size + size // 4, backward_peak
