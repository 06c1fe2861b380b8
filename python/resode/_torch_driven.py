"""The input-driven neural ODE as a PyTorch layer (behind :mod:`resode.torch`'s ``odeint(...,
u=U)`` and ``NeuralODE(..., inputs=C)``): ``x' = f_theta(t)([x; u(t)])``, differentiable with
respect to the parameters, the initial states ``X`` and the inputs ``U`` (so an encoder
upstream trains through it).

As for the neural CDE (:mod:`resode._torch_cde`): two operators of ``torch.library.custom_op``,
``resode::driven_odeint`` (the core's ``driven_solve``) and ``resode::driven_odeint_vjp`` (its
exact discrete vector-Jacobian product, ``driven_vjp``), each with a fake implementation, so
``torch.compile(..., fullgraph=True)`` traces them without graph breaks; in eager mode a
``torch.autograd.Function`` runs the same two calls with less dispatch. Tensors reach the core
as NumPy views of their memory (no copy for contiguous CPU tensors of the parameters' dtype),
and its outputs come back as tensors over NumPy's memory. The backward keeps only the inputs:
the core's VJP sweeps forward again from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _driven_bridge
from ._torch_ops import check_tensor_group, numpy_view


def _flow(T: float, field: str, activation: str, interpolation: str, method: str, substeps: int,
          augment: int, trajectory: bool) -> _driven_bridge.DrivenFlow:  # fmt: skip
    return _driven_bridge.DrivenFlow(T, field, activation, interpolation, method, substeps,
                                     augment, trajectory)  # fmt: skip


# --------------------------------------------------------------------------- the operators


@torch.library.custom_op("resode::driven_odeint", mutates_args=())
def _driven_op(
    X: Tensor,
    U: Tensor,
    times: Tensor,
    theta: list[Tensor],
    T: float,
    field: str,
    activation: str,
    interpolation: str,
    method: str,
    substeps: int,
    augment: int,
    trajectory: bool,
) -> Tensor:
    """The states x(T) (N, D), or (steps + 1, N, D) on the step grid."""
    flow = _flow(T, field, activation, interpolation, method, substeps, augment, trajectory)
    theta_np = [numpy_view(p) for p in theta]
    return torch.from_numpy(
        _driven_bridge.solve(flow, theta_np, numpy_view(X), numpy_view(U), numpy_view(times))
    )


@_driven_op.register_fake
def _driven_fake(X, U, times, theta, *options):  # type: ignore[no-untyped-def]
    flow = _flow(*options)
    return X.new_empty(flow.output_shape(X.shape, theta[0].shape))


@torch.library.custom_op("resode::driven_odeint_vjp", mutates_args=())
def _driven_vjp_op(
    X: Tensor,
    U: Tensor,
    times: Tensor,
    theta: list[Tensor],
    cotangent: Tensor,
    T: float,
    field: str,
    activation: str,
    interpolation: str,
    method: str,
    substeps: int,
    augment: int,
    trajectory: bool,
) -> list[Tensor]:
    """(dX, dU, *dtheta) for a cotangent of the states' shape."""
    flow = _flow(T, field, activation, interpolation, method, substeps, augment, trajectory)
    theta_np = [numpy_view(p) for p in theta]
    dtheta, dX, dU = _driven_bridge.vjp(flow, theta_np, numpy_view(X), numpy_view(U),
                                        numpy_view(times), numpy_view(cotangent))  # fmt: skip
    return [torch.from_numpy(dX), torch.from_numpy(dU), *(torch.from_numpy(g) for g in dtheta)]


@_driven_vjp_op.register_fake
def _driven_vjp_fake(X, U, times, theta, cotangent, *options):  # type: ignore[no-untyped-def]
    return [X.new_empty(X.shape), U.new_empty(U.shape), *(p.new_empty(p.shape) for p in theta)]


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    X, U, times, theta, *options = inputs
    ctx.save_for_backward(X, U, times, *theta)
    ctx.options = options


def _backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    X, U, times, *theta = ctx.saved_tensors
    grads = _driven_vjp_op(X, U, times, theta, grad.contiguous(), *ctx.options)
    return (grads[0], grads[1], None, grads[2:], *([None] * len(ctx.options)))


_driven_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerDriven(torch.autograd.Function):
    """The same forward and backward as the operators, for eager mode (the custom-op
    machinery's Python dispatch costs more than the core on small batches). The NumPy views of
    the inputs are kept from the forward for the backward."""

    @staticmethod
    def forward(
        ctx: Any, X: Tensor, U: Tensor, times: Tensor, flow: _driven_bridge.DrivenFlow,
        *theta: Tensor,
    ) -> Tensor:  # fmt: skip
        arrays = ([numpy_view(p) for p in theta], numpy_view(X), numpy_view(U), numpy_view(times))
        out = _driven_bridge.solve(flow, *arrays)
        # Saved tensors are checked for in-place changes before the backward reads them.
        ctx.save_for_backward(X, U, *theta)
        ctx.flow, ctx.arrays = flow, arrays
        return torch.from_numpy(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        ctx.saved_tensors  # noqa: B018  (raises if one was modified in place since the forward)
        theta, X, U, times = ctx.arrays
        dtheta, dX, dU = _driven_bridge.vjp(ctx.flow, theta, X, U, times, numpy_view(grad))
        return (torch.from_numpy(dX), torch.from_numpy(dU), None, None,
                *map(torch.from_numpy, dtheta))  # fmt: skip


# --------------------------------------------------------------------------- the function


def _check_tensors(params: Mapping[str, Any], names: tuple[str, ...], X: Any, U: Any) -> None:
    """One float dtype, CPU tensors only."""
    tensors = {"X": X, "u": U, **{f"params['{n}']": params[n] for n in names}}
    check_tensor_group(tensors, "X, u and params")


def _times(times: Any) -> Tensor | None:
    """times as a real CPU tensor (array-likes through torch.as_tensor, without copying NumPy
    arrays); None stays None (the default ``0, 1, ..., L-1``)."""
    if times is None:
        return None
    out = times if isinstance(times, Tensor) else torch.as_tensor(np.asarray(times))
    if out.device.type != "cpu":
        raise ValueError(f"times is on device '{out.device}': move it with .cpu()")
    if out.dtype == torch.bool or out.is_complex():
        raise TypeError(f"times must hold real numbers, got {out.dtype}")
    return out


def _resolve(
    params: Mapping[str, Any], X: Any, U: Any, times: Tensor | None, options: dict[str, Any]
) -> tuple[_driven_bridge.DrivenFlow, tuple[str, ...]]:
    """The checked options (remembered per shapes and options outside torch.compile)."""
    X_shape, U_shape = tuple(getattr(X, "shape", ())), tuple(getattr(U, "shape", ()))
    times_shape = None if times is None else tuple(times.shape)
    if torch.compiler.is_compiling():
        return _driven_bridge.flow(params, X_shape, U_shape, times_shape, **options)
    shapes = tuple((k, tuple(v.shape)) for k, v in params.items() if hasattr(v, "shape"))
    try:
        return _driven_bridge.cached_flow(shapes, X_shape, U_shape, times_shape, **options)
    except TypeError:  # an unhashable option: checked without the cache
        return _driven_bridge.flow(params, X_shape, U_shape, times_shape, **options)


def driven_odeint(
    params: Mapping[str, Tensor], X: Tensor, u: Tensor, times: Any, **options: Any
) -> Tensor:
    """``resode.torch.odeint(params, X, u=u, times=times, **options)``: the flow of
    ``x' = f_theta(t)([x; u(t)])`` from ``[X, 0]``; ``options`` are odeint's (``T``,
    ``substeps``, ``method``, ``field``, ``activation``, ``augment``, ``gradient``,
    ``checkpoints``, ``trajectory``) and ``interpolation``.

    Parameters
    ----------
    params : dict of str to torch.Tensor
        The field's arrays, the first layer of width ``D + C``.
    X : torch.Tensor, shape (N, dim)
        The initial states' features.
    u : torch.Tensor, shape (N, L, C)
        The observed inputs (NaN: missing or padding).
    times : torch.Tensor or array_like or None
        Their times, (L,) or (N, L); None: ``0, 1, ..., L-1``.
    **options
        odeint's options.

    Returns
    -------
    torch.Tensor
        ``(N, D)``, or ``(steps + 1, N, D)`` with ``trajectory=True``.
    """
    times_t = _times(times)
    flow, names = _resolve(params, X, u, times_t, options)
    _check_tensors(params, names, X, u)
    if times_t is None:  # the observation index, exact in either dtype
        times_t = torch.arange(u.shape[1], dtype=u.dtype)
    theta = [params[n] for n in names]
    if not torch.compiler.is_compiling():
        return _EagerDriven.apply(X, u, times_t, flow, *theta)  # type: ignore[no-untyped-call,no-any-return]
    out: Tensor = _driven_op(X, u, times_t, theta, flow.T, flow.field, flow.activation,
                             flow.interpolation, flow.method, flow.substeps, flow.augment,
                             flow.trajectory)  # fmt: skip
    return out
