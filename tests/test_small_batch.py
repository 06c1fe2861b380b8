"""The small-batch kernels (cpp/resode/small_batch.hpp) against the generic ones, bit for bit.

Blocks of one SIMD vector with at most half of it real samples (N <= 4 in float64, N <= 8 in
float32) take the small-batch VJP of the bottleneck field on AVX-512 CPUs; the private switch
``_core._set_small_batch_kernels`` turns it off, so each case runs twice and every output
(loss, gradients, logits, states, vector-Jacobian products) must have the same bits. Every
field, activation and method runs through it (only the narrow bottleneck takes the new
kernel; the others must be untouched), at N = 1, 2, 3 and 8 (8 in float64: the generic
kernel; 8 in float32: the small one), and against the NumPy reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode import reference as ref

FIELDS = ("outside", "inside", "bottleneck")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
METHODS = ("euler", "midpoint", "rk4")
DTYPES = ("float64", "float32")
SIZES = (1, 2, 3, 8)
RTOL = {"float64": 1e-10, "float32": 1e-4}


@pytest.fixture
def generic_kernels() -> Iterator[Callable[[], Any]]:
    """generic_kernels(): a context in which the sweeps take the generic kernels."""

    class _Generic:
        def __enter__(self) -> None:
            self.before = _core._set_small_batch_kernels(False)

        def __exit__(self, *exc: object) -> None:
            _core._set_small_batch_kernels(self.before)

    yield _Generic
    _core._set_small_batch_kernels(True)


def _model(field: str, activation: str, method: str, dtype: str, **kw: Any) -> resode.NeuralODE:
    hidden = {"hidden": 50} if field == "bottleneck" else {}
    return resode.NeuralODE(
        2, T=2.0, pieces=3, field=field, activation=activation, method=method, augment=1,
        dtype=dtype, seed=1, **hidden, **kw,
    )  # fmt: skip


def _data(N: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(N)
    X = rng.normal(size=(N, 2)).astype(dtype)
    return X, (np.arange(N) % 2).astype(np.int64)


def _outputs(model: resode.NeuralODE, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every output the sweeps give for (X, y), by name."""
    loss, grads = model.loss_and_grad(X, y)
    out = {"loss": np.float64(loss), "logits": model.forward(X), "states": model.trajectory(X)}
    out.update({f"d{k}": v for k, v in grads.items()})
    cotangent = np.linspace(-1.0, 1.0, X.shape[0] * model.D).reshape(X.shape[0], model.D)
    vjp_grads, dX = resode.odeint_vjp(model, X, cotangent.astype(X.dtype))
    out.update({f"vjp d{k}": v for k, v in vjp_grads.items()}, **{"vjp dX": dX})
    return out


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint64 if a.dtype.itemsize == 8 else np.uint32)


def _assert_same_bits(small: dict[str, np.ndarray], generic: dict[str, np.ndarray]) -> None:
    assert small.keys() == generic.keys()
    for name in small:
        assert np.array_equal(_bits(small[name]), _bits(generic[name])), (
            f"{name}: small-batch and generic kernels differ, max |diff| = "
            f"{np.max(np.abs(small[name] - generic[name]))}"
        )


@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("field", FIELDS)
def test_small_batch_kernels_give_the_generic_bits(
    generic_kernels: Callable[[], Any], field: str, activation: str, method: str, dtype: str,
    N: int,
) -> None:  # fmt: skip
    model = _model(field, activation, method, dtype)
    X, y = _data(N, dtype)
    small = _outputs(model, X, y)
    with generic_kernels():
        generic = _outputs(model, X, y)
    _assert_same_bits(small, generic)


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", SIZES)
def test_small_batch_adjoint_and_checkpoints_give_the_generic_bits(
    generic_kernels: Callable[[], Any], N: int, dtype: str, gradient: str
) -> None:
    """The seed's model (bottleneck, hidden 50, relu, rk4) with the continuous adjoint and with
    checkpoints: the other callers of the field's VJP."""
    X, y = _data(N, dtype)
    kwargs = {"checkpoints": 2} if gradient == "discrete" else {}
    model = _model("bottleneck", "relu", "rk4", dtype, gradient=gradient, **kwargs)
    small = _outputs(model, X, y)
    with generic_kernels():
        generic = _outputs(model, X, y)
    _assert_same_bits(small, generic)


def _as64(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_small_batch_gradients_match_the_reference(activation: str, dtype: str, N: int) -> None:
    model = _model("bottleneck", activation, "rk4", dtype)
    X, y = _data(N, dtype)
    loss, grads = model.loss_and_grad(X, y)
    rloss, rgrads = ref.node_loss_and_grad(
        _as64(model.params), X.astype(np.float64), y, T=model.T, method="rk4",
        field="bottleneck", activation=activation, augment=1,
    )  # fmt: skip
    rtol = RTOL[dtype]
    assert abs(loss - rloss) <= rtol * abs(rloss)
    scale = max(float(np.max(np.abs(g))) for g in rgrads.values())
    for name, g in grads.items():
        err = float(np.max(np.abs(g.astype(np.float64) - rgrads[name])))
        assert err <= rtol * scale, f"{name}: max |diff| = {err:.3e}, scale {scale:.3e}"


def test_the_switch_returns_the_previous_setting(generic_kernels: Callable[[], Any]) -> None:
    assert _core._set_small_batch_kernels(False) is True
    assert _core._set_small_batch_kernels(True) is False
