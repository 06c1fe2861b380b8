"""resode.torch.NeuralCDE and resode.torch.cdeint: values and gradients (parameters and U)
bitwise those of the core's cde_solve / cde_vjp, gradcheck, the custom operators (opcheck,
torch.compile with fullgraph), zero copies, an encoder trained through the layer, float32 and
float64, and the errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import resode

torch = pytest.importorskip("torch")
import resode.torch as rt  # noqa: E402
from resode import _cde_bridge, _core, _torch_cde  # noqa: E402

F64, F32 = torch.float64, torch.float32
FIELDS = {"outside": None, "inside": None, "bottleneck": 4}
OPTIONS: dict[str, Any] = dict(activation="tanh", output_activation="tanh",
                               interpolation="cubic", method="rk4", substeps=2)  # fmt: skip


def _layer(field: str = "outside", dtype: Any = F64, **options: Any) -> Any:
    opts = {**OPTIONS, **options}
    return rt.NeuralCDE(2, 3, field=field, hidden=FIELDS[field], pieces=2, dtype=dtype, seed=3,
                        **opts)  # fmt: skip


def _series(dtype: Any = F64, N: int = 4, L: int = 6) -> tuple[Any, Any]:
    """U (N, L, 2) with a missing value inside a series, one in a first row, and padding
    (lengths 6, 4, 5, 6); per-sample times (N, L) increasing, NaN on the padding."""
    rng = np.random.default_rng(0)
    U = rng.normal(size=(N, L, 2))
    U[0, 2, 1] = np.nan
    U[1, 4:] = np.nan
    U[2, 0, 0] = np.nan
    U[2, 5:] = np.nan
    times = np.cumsum(rng.uniform(0.3, 1.0, size=(N, L)), axis=1)
    times[1, 4:] = np.nan
    return torch.tensor(U, dtype=dtype), torch.tensor(times, dtype=dtype)


def _np(params: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in params.items()}


def _core_options(layer: Any) -> dict[str, Any]:
    return layer.options()


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("with_t", [False, True])
def test_values_and_gradients_equal_the_cores_bitwise(
    field: str, dtype: Any, per_sample: bool, with_t: bool
) -> None:
    layer = _layer(field, dtype)
    U, times = _series(dtype)
    if not per_sample:
        times = times[0]
    t = torch.tensor([0.5, 1.5, 2.0], dtype=dtype) if with_t else None
    U.requires_grad_()
    out = layer(U, times, t=t)
    t_np = None if t is None else t.numpy()
    want = _core.cde_solve(_np(layer.params), U.detach().numpy(), times.numpy(), t=t_np,
                           **_core_options(layer))  # fmt: skip
    assert out.dtype == dtype and out.shape == want.shape
    assert np.array_equal(out.detach().numpy(), want)
    cot = torch.randn(out.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    out.backward(cot)
    grads, dU = _core.cde_vjp(_np(layer.params), U.detach().numpy(), times.numpy(), cot.numpy(),
                              t=t_np, **_core_options(layer))  # fmt: skip
    assert np.array_equal(U.grad.numpy(), dU)
    assert U.grad[torch.isnan(U)].abs().sum() == 0  # no gradient to a missing value
    for name, p in layer.params.items():
        assert np.array_equal(p.grad.numpy(), grads[name]), name


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize(("interpolation", "method"), [("cubic", "rk4"), ("linear", "midpoint"),
                                                       ("cubic", "euler")])  # fmt: skip
@pytest.mark.parametrize("with_t", [False, True])
def test_gradcheck(field: str, interpolation: str, method: str, with_t: bool) -> None:
    """Central differences on every parameter and on U (NaN entries stay missing when
    perturbed: their derivative is 0 both ways)."""
    layer = _layer(field, interpolation=interpolation, method=method)
    U, times = _series(N=3, L=5)
    U.requires_grad_()
    names = list(layer.params)
    theta = [p.detach().clone().requires_grad_() for p in layer.params.values()]
    t = torch.tensor([0.7, 2.0], dtype=F64) if with_t else None

    def f(U: Any, *theta: Any) -> Any:
        return rt.cdeint(dict(zip(names, theta)), U, times, t=t, **layer.options())

    assert torch.autograd.gradcheck(f, (U, *theta), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_opcheck() -> None:
    layer = _layer("bottleneck")
    U, times = _series()
    theta = [p.detach() for p in layer.params.values()]
    t = torch.tensor([1.0, 2.5], dtype=F64)
    options = ("bottleneck", "tanh", "tanh", "cubic", "rk4", 2)
    torch.library.opcheck(_torch_cde._cdeint_op, (U, times, t, theta, *options))
    torch.library.opcheck(_torch_cde._cdeint_op,
                          (U, times[0], None, theta, "bottleneck", "relu", None, "linear",
                           "euler", 1))  # fmt: skip
    cot = torch.randn(2, 4, 3, dtype=F64)
    torch.library.opcheck(_torch_cde._cdeint_vjp_op, (U, times, t, theta, cot, *options))


class _Classifier(torch.nn.Module):
    """An encoder (raw inputs -> the CDE's channels), the CDE, a readout."""

    def __init__(self, inputs: int, dtype: Any = F64) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Linear(inputs, 2, dtype=dtype)
        self.cde = _layer("bottleneck", dtype)
        self.head = torch.nn.Linear(3, 2, dtype=dtype)

    def forward(self, V: Any, times: Any) -> Any:
        return self.head(self.cde(self.encoder(V), times))


def _inputs(N: int = 6, L: int = 7, dtype: Any = F64) -> tuple[Any, Any, Any]:
    g = torch.Generator().manual_seed(N)
    V = torch.randn(N, L, 3, dtype=dtype, generator=g)
    times = torch.linspace(0.0, 3.0, L, dtype=dtype)
    return V, times, torch.arange(N) % 2


def _loss_and_grads(model: Any, fn: Any, V: Any, times: Any, y: Any) -> tuple[Any, list[Any]]:
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(fn(V, times), y)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_torch_compile_fullgraph_gives_the_eager_result() -> None:
    model = _Classifier(3)
    V, times, y = _inputs()
    eager = _loss_and_grads(model, model, V, times, y)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss, grads = _loss_and_grads(model, compiled, V, times, y)
    assert torch.equal(loss, eager[0])
    for g, e in zip(grads, eager[1]):
        assert torch.equal(g, e)


def test_torch_compile_serves_every_batch_size() -> None:
    """dynamic=True: one graph without graph breaks for every batch size (the fake keeps N
    symbolic), with times=None and output times t."""
    from torch._dynamo.utils import counters

    layer = _layer("outside")
    t = torch.tensor([0.5, 2.0], dtype=F64)
    fn = torch.compile(lambda U: layer(U, t=t), backend="aot_eager", dynamic=True,
                       fullgraph=True)  # fmt: skip
    torch._dynamo.reset()
    counters.clear()
    for n in (5, 3, 7):
        results = []
        for f in (fn, lambda U: layer(U, t=t)):
            U = torch.randn(n, 4, 2, dtype=F64, generator=torch.Generator().manual_seed(n))
            U.requires_grad_()
            layer.zero_grad()
            out = f(U)
            (out**2).sum().backward()
            results.append([out.detach(), U.grad, *(p.grad for p in layer.parameters())])
        for got, want in zip(*results):
            assert torch.equal(got, want)
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor
def test_torch_compile_with_inductor() -> None:
    model = _Classifier(3)
    V, times, _ = _inputs()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(V, times), model(V, times), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("with_t", [False, True])
def test_tensors_reach_the_core_without_copies(
    monkeypatch: pytest.MonkeyPatch, dtype: Any, with_t: bool
) -> None:
    seen: dict[str, Any] = {}
    real_solve, real_vjp = _cde_bridge.solve, _cde_bridge.vjp

    def solve(flow: Any, theta: Any, U: Any, times: Any, t: Any) -> Any:
        seen["theta"], seen["U"], seen["times"] = theta, U, times
        seen["out"] = real_solve(flow, theta, U, times, t)
        return seen["out"]

    def vjp(flow: Any, theta: Any, U: Any, times: Any, t: Any, cot: Any) -> Any:
        seen["theta_back"], seen["U_back"] = theta, U
        seen["grads"] = real_vjp(flow, theta, U, times, t, cot)
        return seen["grads"]

    monkeypatch.setattr(_cde_bridge, "solve", solve)
    monkeypatch.setattr(_cde_bridge, "vjp", vjp)
    layer = _layer("bottleneck", dtype)
    U, times = _series(dtype)
    U.requires_grad_()
    out = layer(U, times, t=torch.tensor([1.0, 2.0], dtype=dtype) if with_t else None)
    assert np.shares_memory(seen["U"], U.detach().numpy())
    assert np.shares_memory(seen["times"], times.numpy())
    for p, a in zip(layer.params.values(), seen["theta"]):
        assert np.shares_memory(a, p.detach().numpy())
    assert out.data_ptr() == seen["out"].ctypes.data  # the core's output, not a copy
    out.sum().backward()
    assert seen["U_back"] is seen["U"]  # the forward's views, kept
    dtheta, dU = seen["grads"]
    assert U.grad.data_ptr() == dU.ctypes.data
    for p, g in zip(layer.params.values(), dtheta):
        assert p.grad.data_ptr() == g.ctypes.data


def test_a_training_step_calls_the_core_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward: one cde_solve; backward: one cde_vjp (from the inputs the forward kept)."""
    calls: list[str] = []
    for name in ("cde_solve", "cde_vjp"):
        real = getattr(_core, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(_core, name, counted)
    model = _Classifier(3)
    V, times, y = _inputs()
    _loss_and_grads(model, model, V, times, y)
    assert calls == ["cde_solve", "cde_vjp"]


def test_an_encoder_upstream_trains_through_the_layer() -> None:
    """The encoder's gradient flows through dU: non-zero, equal to central differences of the
    loss, and Adam steps on the whole model lower the loss."""
    model = _Classifier(3)
    V, times, y = _inputs()
    loss, _ = _loss_and_grads(model, model, V, times, y)
    W = model.encoder.weight
    grad = W.grad.clone()
    assert grad.abs().min() > 0
    numeric = torch.zeros_like(W)
    h = 1e-6
    with torch.no_grad():
        for idx in np.ndindex(*W.shape):
            W[idx] += h
            up = torch.nn.functional.cross_entropy(model(V, times), y)
            W[idx] -= 2 * h
            down = torch.nn.functional.cross_entropy(model(V, times), y)
            W[idx] += h
            numeric[idx] = (up - down) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-7, atol=1e-10)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        optimiser.zero_grad()
        step = torch.nn.functional.cross_entropy(model(V, times), y)
        step.backward()
        optimiser.step()
    assert float(step.detach()) < 0.5 * float(loss)


def test_float32_encoder_gradient_agrees_with_float64() -> None:
    m64, m32 = _Classifier(3, F64), _Classifier(3, F32)
    m32.load_state_dict({k: v.to(F32) for k, v in m64.state_dict().items()})
    V, times, y = _inputs()
    _, g64 = _loss_and_grads(m64, m64, V, times, y)
    _, g32 = _loss_and_grads(m32, m32, V.to(F32), times.to(F32), y)
    for a, b in zip(g32, g64):
        assert a.dtype == F32
        torch.testing.assert_close(a.to(F64), b, rtol=1e-4, atol=1e-5)


def test_module_parameters_and_options() -> None:
    layer = rt.NeuralCDE(3, 5, field="bottleneck", hidden=7, pieces=2, dtype=F32, seed=1)
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert shapes == {"A": (5, 3), "a": (5,), "W1": (2, 7, 5), "b1": (2, 7),
                      "W2": (2, 15, 7), "b2": (2, 15)}  # fmt: skip
    assert all(p.dtype == F32 for p in layer.parameters())
    again = rt.NeuralCDE(3, 5, field="bottleneck", hidden=7, pieces=2, dtype=F32, seed=1)
    for p, q in zip(layer.parameters(), again.parameters()):
        assert torch.equal(p, q)
    expected = _cde_bridge.initial_params(3, 5, "bottleneck", 7, 2, np.dtype("float32"), 1)
    for name, p in layer.params.items():
        assert np.array_equal(p.detach().numpy(), expected[name])
    assert layer.options() == {"field": "bottleneck", "activation": "tanh",
                               "output_activation": None, "interpolation": "cubic",
                               "method": "rk4", "substeps": 1}  # fmt: skip
    assert "state=5" in repr(layer)


def test_times_default_to_the_observation_index() -> None:
    layer = _layer()
    U, _ = _series()
    a = layer(U)
    b = layer(U, torch.arange(6, dtype=F64))
    c = layer(U, np.arange(6))  # an integer NumPy array
    assert torch.equal(a, b) and torch.equal(a, c)


def test_bad_arguments_are_refused() -> None:
    layer = _layer()
    U, times = _series()
    with pytest.raises(TypeError, match=r"^U and params must have one dtype"):
        layer(U.to(F32))
    with pytest.raises(ValueError, match=r"^U must have shape \(N, L, C\)"):
        layer(U[0])
    with pytest.raises(ValueError, match=r"^params\['A'\] must have shape \(state, 3\)"):
        layer(torch.zeros(4, 6, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"^times must have shape \(6,\) \(shared\) or \(4, 6\)"):
        layer(U, times[:, :5])
    with pytest.raises(ValueError, match=r"^U is on device 'meta'"):
        layer(U.to("meta"))
    with pytest.raises(ValueError, match="times must be strictly increasing"):
        layer(U, times.flip(1))
    with pytest.raises(ValueError, match=r"^interpolation must be one of"):
        rt.NeuralCDE(2, 3, interpolation="spline")
    with pytest.raises(ValueError, match=r"^hidden must be given"):
        rt.NeuralCDE(2, 3, field="bottleneck")
    with pytest.raises(ValueError, match=r"^hidden applies to field='bottleneck' only"):
        rt.NeuralCDE(2, 3, hidden=4)
    with pytest.raises(ValueError, match=r"^dtype must be torch.float32 or torch.float64"):
        rt.NeuralCDE(2, 3, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"^times must hold real numbers"):
        layer(U, torch.ones(6, dtype=torch.bool))


def test_the_functional_form_infers_the_field_and_ignores_other_keys() -> None:
    layer = _layer("bottleneck")
    U, times = _series()
    params = {**layer.params, "P": torch.zeros(2, 3, dtype=F64)}
    options = {k: v for k, v in layer.options().items() if k != "field"}
    assert torch.equal(rt.cdeint(params, U, times, **options), layer(U, times))
    assert resode.torch.cdeint is _torch_cde.cdeint


@pytest.mark.parametrize("dtype", [F64, F32])
def test_no_copy_of_U_shows_in_numpys_allocations(dtype: Any) -> None:
    """tests/test_no_copies.py's technique: NumPy reports its allocations to tracemalloc, so a
    copy of U on the way into the core would show in the peak. The forward allocates its
    output (N, state) only; the backward dU (the size of U) and the parameters' gradients."""
    import tracemalloc

    layer = rt.NeuralCDE(2, 3, dtype=dtype, seed=0)
    U = torch.randn(40_000, 8, 2, dtype=dtype, generator=torch.Generator().manual_seed(0))
    U.requires_grad_()
    layer(U).sum().backward()  # warm-up: first-call allocations do not count
    U.grad = None
    tracemalloc.start()
    try:
        out = layer(U)
        _, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        out.sum().backward()
        _, backward_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = U.numel() * U.element_size()
    assert forward_peak < out.numel() * out.element_size() + size // 4, forward_peak
    assert backward_peak < size + size // 4, backward_peak
