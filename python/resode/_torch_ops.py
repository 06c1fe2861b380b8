"""The PyTorch operators behind :mod:`resode.torch`: the custom ops ``resode::odeint`` and
``resode::odeint_vjp`` (with their fakes and autograd rule, for torch.compile) and the eager
``autograd.Function`` that runs the same forward and backward with less dispatch overhead.
Imported only by :mod:`resode.torch` (``import resode`` does not import torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _bridge

# --------------------------------------------------------------------------- the operators


def numpy_view(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor (a copy only when it is not contiguous). ``force=True``
    detaches in the same call (half the time of ``detach().numpy()``); the tensors reaching
    here are on the CPU (checked before)."""
    return (t if t.is_contiguous() else t.contiguous()).numpy(force=True)


def _flow(field: str, activation: str, method: str, dt: float, substeps: int, augment: int,
          gradient: str, checkpoints: int, trajectory: bool) -> _bridge.Flow:  # fmt: skip
    return _bridge.Flow(field, activation, method, dt, substeps, augment, gradient, checkpoints,
                        trajectory)  # fmt: skip


@torch.library.custom_op("resode::odeint", mutates_args=())
def _odeint_op(
    X: Tensor,
    theta: list[Tensor],
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int,
    augment: int,
    gradient: str,
    checkpoints: int,
    trajectory: bool,
) -> tuple[Tensor, Tensor]:
    """(the states, what the backward keeps from this forward sweep: ``Flow.kept``, no rows
    where it keeps the output itself or nothing)."""
    flow = _flow(field, activation, method, dt, substeps, augment, gradient, checkpoints,
                 trajectory)  # fmt: skip
    out, kept = _bridge.forward_with_states(flow, numpy_view(X), [numpy_view(t) for t in theta])
    if kept is None or kept is out:  # an output may not alias another: the backward saves out
        return torch.from_numpy(out), X.new_empty((0, *out.shape[-2:]))
    return torch.from_numpy(out), torch.from_numpy(kept)


@_odeint_op.register_fake
def _odeint_fake(
    X: Tensor, theta: list[Tensor], field: str, activation: str, method: str, dt: float,
    substeps: int, augment: int, gradient: str, checkpoints: int, trajectory: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    flow = _flow(field, activation, method, dt, substeps, augment, gradient, checkpoints,
                 trajectory)  # fmt: skip
    _, kept = flow.kept(X.shape[0], theta[0].shape, X.dtype.itemsize)
    return X.new_empty(flow.output_shape(X.shape, theta[0].shape)), X.new_empty(kept)


@torch.library.custom_op("resode::odeint_vjp", mutates_args=())
def _odeint_vjp_op(
    X: Tensor,
    theta: list[Tensor],
    cotangent: Tensor,
    kept: Tensor,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int,
    augment: int,
    gradient: str,
    checkpoints: int,
) -> list[Tensor]:
    """(dX, *dtheta) from the states the forward kept (``kept``: the forward's second output,
    or its trajectory where that is what it kept; ignored by the adjoint)."""
    flow = _flow(field, activation, method, dt, substeps, augment, gradient, checkpoints,
                 cotangent.dim() == 3)  # fmt: skip
    states = numpy_view(kept) if gradient == "discrete" else None
    dtheta, dX = _bridge.vjp_from_states(
        flow, numpy_view(X), [numpy_view(t) for t in theta], numpy_view(cotangent), states
    )
    return [torch.from_numpy(dX), *(torch.from_numpy(g) for g in dtheta)]


@_odeint_vjp_op.register_fake
def _odeint_vjp_fake(
    X: Tensor, theta: list[Tensor], cotangent: Tensor, kept: Tensor, *options: object
) -> list[Tensor]:
    return [X.new_empty(X.shape), *(t.new_empty(t.shape) for t in theta)]


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    X, theta, *options = inputs
    out, kept = output
    # No rows kept: the adjoint (kept is ignored), or a trajectory that is the states itself.
    ctx.save_for_backward(X, out if kept.shape[0] == 0 else kept, *theta)
    ctx.options = options[:-1]  # all but `trajectory`: the cotangent's shape says which


def _backward(ctx: Any, grad: Tensor, _grad_kept: Any) -> tuple[Any, ...]:
    X, kept, *theta = ctx.saved_tensors
    grads = _odeint_vjp_op(X, theta, grad.contiguous(), kept, *ctx.options)
    return (grads[0], grads[1:], *([None] * (len(ctx.options) + 1)))


_odeint_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerFlow(torch.autograd.Function):
    """The same forward and backward as the operators, for eager mode: the custom-op
    machinery costs about 0.4 ms per forward and backward (its Python dispatch), more than the
    core itself on small batches; under torch.compile the operators run instead. The states
    the backward needs are kept from the forward (one forward sweep per training step), and so
    are the NumPy views of the inputs (the backward makes none again)."""

    @staticmethod
    def forward(ctx: Any, X: Tensor, flow: _bridge.Flow, *theta: Tensor) -> Tensor:
        arrays = (numpy_view(X), [numpy_view(t) for t in theta])
        out, kept = _bridge.forward_with_states(flow, *arrays)
        out_t = torch.from_numpy(out)
        # Saved tensors are checked for in-place changes before the backward reads them: the
        # inputs, and the output where it is the kept states (a trajectory).
        ctx.save_for_backward(X, *theta, *((out_t,) if kept is out else ()))
        ctx.flow, ctx.arrays, ctx.kept = flow, arrays, kept
        return out_t

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        ctx.saved_tensors  # noqa: B018  (raises if one was modified in place since the forward)
        X, theta = ctx.arrays
        dtheta, dX = _bridge.vjp_from_states(ctx.flow, X, theta, numpy_view(grad), ctx.kept)
        return (torch.from_numpy(dX), None, *map(torch.from_numpy, dtheta))


# The torch dtypes the core takes, with their NumPy names.
NUMPY_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def numpy_dtype(dtype: torch.dtype) -> str:
    """The NumPy name of a model's torch ``dtype`` (ValueError for any other than float32/64)."""
    if dtype not in NUMPY_DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return NUMPY_DTYPES[dtype]


def check_tensor_group(tensors: Mapping[str, Any], what: str) -> None:
    """CPU float tensors of one dtype, named by the keys of ``tensors`` in the errors.

    TypeError for a non-tensor, a dtype other than float32/float64 or mixed dtypes; ValueError
    for a tensor on another device. ``what`` names the group in the mixed-dtype message.
    """
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise ValueError(
                f"{name} is on device '{t.device}': resode runs on the CPU; move it with .cpu()"
            )
        if t.dtype not in NUMPY_DTYPES:
            raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"{what} must have one dtype (no silent casts), got {listed}")


def check_tensors(params: Mapping[str, Any], names: tuple[str, ...], X: Any) -> None:
    """One float dtype, CPU tensors only (TypeError or ValueError naming the tensor)."""
    dtype = getattr(X, "dtype", None)
    fine = dtype in NUMPY_DTYPES and all(
        isinstance(params[n], Tensor) and params[n].dtype == dtype and not params[n].is_cuda
        for n in names
    )
    if fine and isinstance(X, Tensor) and X.device.type == "cpu":
        return  # the common case, checked quickly
    check_tensor_group({"X": X, **{f"params['{n}']": params[n] for n in names}}, "X and params")
