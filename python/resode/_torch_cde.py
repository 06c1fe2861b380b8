"""The neural CDE as a PyTorch layer (re-exported by :mod:`resode.torch`): the function
:func:`cdeint` and the module :class:`NeuralCDE`, differentiable with respect to the
parameters and to the observations ``U`` (so an encoder upstream trains through it).

As for :func:`resode.torch.odeint`: two operators of ``torch.library.custom_op``,
``resode::cdeint`` (the core's ``cde_solve``) and ``resode::cdeint_vjp`` (its exact discrete
vector-Jacobian product, ``cde_vjp``), each with a fake implementation, so
``torch.compile(..., fullgraph=True)`` traces them without graph breaks; in eager mode a
``torch.autograd.Function`` runs the same two calls with less dispatch. Tensors reach the core
as NumPy views of their memory (no copy for contiguous CPU tensors of the parameters' dtype),
and its outputs come back as tensors over NumPy's memory. The backward keeps only the inputs:
the core's VJP sweeps forward again from them, keeping each step's state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _cde_bridge
from ._torch_ops import check_tensor_group, numpy_dtype, numpy_view
from ._typing import ArrayLike
from ._validation import check_choice, check_int
from .models import ACTIVATIONS, FIELDS, FIXED_METHODS, INTERPOLATIONS
from .models.options import Activation, Field, FixedMethod, Interpolation

__all__ = ["NeuralCDE", "cdeint"]


def _optional_numpy(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else numpy_view(t)


def _flow(
    times: Tensor,
    t: Tensor | None,
    field: str,
    activation: str,
    output_activation: str | None,
    interpolation: str,
    method: str,
    substeps: int,
) -> _cde_bridge.CdeFlow:
    return _cde_bridge.CdeFlow(field, activation, output_activation, interpolation, method,
                               substeps, times.dim() == 2, t is not None)  # fmt: skip


# --------------------------------------------------------------------------- the operators


@torch.library.custom_op("resode::cdeint", mutates_args=())
def _cdeint_op(
    U: Tensor,
    times: Tensor,
    t: Tensor | None,
    theta: list[Tensor],
    field: str,
    activation: str,
    output_activation: str | None,
    interpolation: str,
    method: str,
    substeps: int,
) -> Tensor:
    """The states z_i(T_i) (N, state), or (len(t), N, state)."""
    flow = _flow(times, t, field, activation, output_activation, interpolation, method, substeps)
    theta_np = [numpy_view(p) for p in theta]
    out = _cde_bridge.solve(flow, theta_np, numpy_view(U), numpy_view(times), _optional_numpy(t))
    return torch.from_numpy(out)


@_cdeint_op.register_fake
def _cdeint_fake(U, times, t, theta, *options):  # type: ignore[no-untyped-def]
    return U.new_empty((t.shape[0], U.shape[0], theta[0].shape[0]) if t is not None
                       else (U.shape[0], theta[0].shape[0]))  # fmt: skip


@torch.library.custom_op("resode::cdeint_vjp", mutates_args=())
def _cdeint_vjp_op(
    U: Tensor,
    times: Tensor,
    t: Tensor | None,
    theta: list[Tensor],
    cotangent: Tensor,
    field: str,
    activation: str,
    output_activation: str | None,
    interpolation: str,
    method: str,
    substeps: int,
) -> list[Tensor]:
    """(dU, *dtheta) for a cotangent of the states' shape."""
    flow = _flow(times, t, field, activation, output_activation, interpolation, method, substeps)
    theta_np = [numpy_view(p) for p in theta]
    dtheta, dU = _cde_bridge.vjp(flow, theta_np, numpy_view(U), numpy_view(times),
                                 _optional_numpy(t), numpy_view(cotangent))  # fmt: skip
    return [torch.from_numpy(dU), *(torch.from_numpy(g) for g in dtheta)]


@_cdeint_vjp_op.register_fake
def _cdeint_vjp_fake(U, times, t, theta, cotangent, *options):  # type: ignore[no-untyped-def]
    return [U.new_empty(U.shape), *(p.new_empty(p.shape) for p in theta)]


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    U, times, t, theta, *options = inputs
    ctx.save_for_backward(U, times, t, *theta)
    ctx.options = options


def _backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    U, times, t, *theta = ctx.saved_tensors
    grads = _cdeint_vjp_op(U, times, t, theta, grad.contiguous(), *ctx.options)
    return (grads[0], None, None, grads[1:], *([None] * len(ctx.options)))


_cdeint_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerCde(torch.autograd.Function):
    """The same forward and backward as the operators, for eager mode (the custom-op
    machinery's Python dispatch costs more than the core on small batches). The NumPy views of
    the inputs are kept from the forward for the backward."""

    @staticmethod
    def forward(
        ctx: Any, U: Tensor, times: Tensor, t: Tensor | None, flow: _cde_bridge.CdeFlow,
        *theta: Tensor,
    ) -> Tensor:  # fmt: skip
        arrays = (
            [numpy_view(p) for p in theta],
            numpy_view(U),
            numpy_view(times),
            _optional_numpy(t),
        )
        out = _cde_bridge.solve(flow, *arrays)
        # Saved tensors are checked for in-place changes before the backward reads them.
        ctx.save_for_backward(U, *theta)
        ctx.flow, ctx.arrays = flow, arrays
        return torch.from_numpy(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        ctx.saved_tensors  # noqa: B018  (raises if one was modified in place since the forward)
        theta, U, times, t = ctx.arrays
        dtheta, dU = _cde_bridge.vjp(ctx.flow, theta, U, times, t, numpy_view(grad))
        return (torch.from_numpy(dU), None, None, None, *map(torch.from_numpy, dtheta))


# --------------------------------------------------------------------------- the function


def _check_tensors(params: Mapping[str, Any], names: list[str], U: Any) -> None:
    """One float dtype, CPU tensors only."""
    tensors = {"U": U, **{f"params['{n}']": params[n] for n in names}}
    check_tensor_group(tensors, "U and params")


def _as_times(name: str, value: Any) -> Tensor:
    """A real CPU tensor (array-likes through torch.as_tensor, without copying NumPy arrays)."""
    times = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if times.device.type != "cpu":
        raise ValueError(f"{name} is on device '{times.device}': move it with .cpu()")
    if times.dtype == torch.bool or times.is_complex():
        raise TypeError(f"{name} must hold real numbers, got {times.dtype}")
    return times


def _times(U: Tensor, times: Any, t: Any) -> tuple[Tensor, Tensor | None]:
    """times (default 0, 1, ..., L-1 in U's dtype) and t as real CPU tensors."""
    if times is None:
        times_t = torch.arange(U.shape[1], dtype=U.dtype)
    else:
        times_t = _as_times("times", times)
    return times_t, None if t is None else _as_times("t", t)


def _resolve(
    params: Mapping[str, Any], U: Any, times: Tensor, t: Tensor | None, options: dict[str, Any]
) -> tuple[_cde_bridge.CdeFlow, list[str]]:
    """The checked options (remembered per shapes and options outside torch.compile)."""
    U_shape = tuple(getattr(U, "shape", ()))
    t_shape = None if t is None else tuple(t.shape)
    if torch.compiler.is_compiling():
        return _cde_bridge.flow(params, U_shape, tuple(times.shape), t_shape, **options)
    shapes = tuple((k, tuple(v.shape)) for k, v in params.items() if hasattr(v, "shape"))
    try:
        return _cde_bridge.cached_flow(shapes, U_shape, tuple(times.shape), t_shape, **options)
    except TypeError:  # an unhashable option: checked without the cache
        return _cde_bridge.flow(params, U_shape, tuple(times.shape), t_shape, **options)


def cdeint(
    params: Mapping[str, Tensor],
    U: Tensor,
    times: Tensor | ArrayLike | None = None,
    *,
    t: Tensor | ArrayLike | None = None,
    field: Field | None = None,
    activation: Activation = "tanh",
    output_activation: Activation | None = None,
    interpolation: Interpolation = "cubic",
    method: FixedMethod = "rk4",
    substeps: int = 1,
) -> Tensor:
    """Integrate the neural CDE ``dz/dt = F(z) dX/dt`` over a batch of series, in PyTorch.

    The hidden state starts at ``z(t_0) = A x_0 + a``; the result is each sample's state at its own
    end time, or the states at the times ``t``, differentiable with respect to every tensor of
    ``params`` and to ``U``. The mathematics, the paths (NaN for missing values and for the padding
    of shorter series) and the step grid are :func:`resode.cdeint`'s; the values and gradients are
    bitwise those of the core's ``cde_solve`` / ``cde_vjp``.

    Parameters
    ----------
    params : dict of str to torch.Tensor
        ``A`` (state, channels), ``a`` (state,) and the field's arrays: ``W``
        (pieces, state*channels, state), ``b`` (pieces, state*channels), or ``W1``
        (pieces, hidden, state), ``b1`` (pieces, hidden), ``W2`` (pieces, state*channels,
        hidden), ``b2`` (pieces, state*channels). Other keys are ignored.
    U : torch.Tensor, shape (N, L, channels)
        Observations, of the parameters' dtype (float32 or float64), on the CPU. NaN marks a
        missing value, and the padding after a shorter series' last observation. Its gradient
        is 0 where U is NaN.
    times : torch.Tensor or array_like, shape (L,) or (N, L), optional
        Observation times, shared or per sample, strictly increasing over each sample's
        observed rows; default ``0, 1, ..., L-1``. No gradient flows to them.
    t : torch.Tensor or array_like, shape (Q,), optional
        Increasing output times within ``[min_i t_{i,0}, max_i T_i]``.
    field : {"outside", "inside", "bottleneck"}, optional
        Default: ``"bottleneck"`` for ``W1``... keys, ``"outside"`` for ``W``, ``b``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The field's activation ``sigma``.
    output_activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"} or None, default None
        An activation (one of ``activation``'s choices) applied to the field's outputs; None
        for none.
    interpolation : {"cubic", "linear"}, default "cubic"
        The path through the observations: torchcde's causal Hermite cubic, or piecewise
        linear.
    method : {"rk4", "midpoint", "euler"}, default "rk4"
        The fixed-step method (the adaptive ones are :func:`resode.cdeint`'s only).
    substeps : int, default 1
        Equal steps per interval between consecutive observations.

    Returns
    -------
    torch.Tensor
        ``(N, state)``: ``z_i(T_i)``; with ``t``: ``(len(t), N, state)``.

    Raises
    ------
    TypeError
        On non-tensors, non-float or mixed dtypes.
    ValueError
        On a CUDA tensor, shapes that disagree, bad options; the core's errors on the data
        (a sample with fewer than 2 observed rows, times not increasing).

    Examples
    --------
    >>> import torch, resode.torch
    >>> layer = resode.torch.NeuralCDE(2, 3, seed=0)
    >>> params = {k: p.detach() for k, p in layer.params.items()}
    >>> U = torch.randn(4, 5, 2, dtype=torch.float64)
    >>> resode.torch.cdeint(params, U).shape
    torch.Size([4, 3])
    """
    options = dict(field=field, activation=activation, output_activation=output_activation,
                   interpolation=interpolation, method=method, substeps=substeps)  # fmt: skip
    times_t, t_t = _times(U, times, t) if isinstance(U, Tensor) else (times, t)
    flow, names = _resolve(params, U, times_t, t_t, options)
    _check_tensors(params, names, U)
    return _apply(flow, [params[n] for n in names], U, times_t, t_t)


def _apply(
    flow: _cde_bridge.CdeFlow, theta: list[Tensor], U: Tensor, times: Tensor, t: Tensor | None
) -> Tensor:
    """An autograd.Function in eager mode, the operators when compiling."""
    if not torch.compiler.is_compiling():
        return _EagerCde.apply(U, times, t, flow, *theta)  # type: ignore[no-untyped-call,no-any-return]
    out: Tensor = _cdeint_op(U, times, t, theta, flow.field, flow.activation,
                             flow.output_activation, flow.interpolation, flow.method,
                             flow.substeps)  # fmt: skip
    return out


# --------------------------------------------------------------------------- the module


class NeuralCDE(torch.nn.Module):
    """Neural controlled differential equation as a ``torch.nn.Module`` without a readout.

    ``forward(U)`` maps ``(N, L, channels)`` to ``(N, state)``, the hidden state at each series' own
    end time: ``z(t_0) = A x_0 + a``, ``dz/dt = F(z) dX/dt`` with ``X`` the path through the
    observations and ``F(z)`` a ``(state, channels)`` matrix made by one of resode's fields
    (:func:`resode.cdeint`). No readout: compose with your own layers. Gradients reach the
    parameters and ``U`` (an encoder upstream trains through the layer).

    Parameters
    ----------
    channels : int
        Channels of the series (include the observation times as a channel when they
        matter, as torchcde advises).
    state : int
        Width of the hidden state ``z``.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        ``outside`` ``sigma(W z + b)``, ``inside`` ``W sigma(z) + b``, ``bottleneck``
        ``W2 sigma(W1 z + b1) + b2``.
    hidden : int, optional
        Hidden width of the bottleneck field (required for it, refused otherwise).
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The field's activation sigma.
    output_activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        Applied to the field's output (torchcde's example uses ``"tanh"``).
    interpolation : {"cubic", "linear"}, default "cubic"
        The path: Hermite cubic with backward differences (causal), or piecewise linear.
    method : {"rk4", "midpoint", "euler"}, default "rk4"
        Fixed-step method.
    substeps : int, default 1
        Steps per interval between observations.
    pieces : int, default 1
        The field's weights are piecewise constant over this many equal parts of the
        observation window.
    dtype : torch.dtype, default torch.float64
        The parameters' dtype: ``torch.float32`` or ``torch.float64``.
    seed : int, optional
        Seed of the initial parameters (``torch.nn.Linear``'s uniform rule, drawn with
        NumPy): ``A``, ``a`` and the field's arrays equal those of a ``resode.NeuralCDE``
        with the same seed.

    Raises
    ------
    ValueError
        On bad arguments, naming them (``hidden`` missing for the bottleneck field or given
        for another, an unknown option or dtype).

    Examples
    --------
    >>> import torch, resode.torch
    >>> cde = resode.torch.NeuralCDE(3, 8, field="bottleneck", hidden=16, seed=0)
    >>> model = torch.nn.Sequential(cde, torch.nn.Linear(8, 2, dtype=torch.float64))
    >>> U = torch.randn(5, 10, 3, dtype=torch.float64)
    >>> model(U).shape
    torch.Size([5, 2])
    >>> sorted(name for name, _ in cde.named_parameters())
    ['A', 'W1', 'W2', 'a', 'b1', 'b2']
    """

    __module__ = "resode.torch"

    def __init__(
        self,
        channels: int,
        state: int,
        *,
        field: Field = "outside",
        hidden: int | None = None,
        activation: Activation = "tanh",
        output_activation: Activation | None = None,
        interpolation: Interpolation = "cubic",
        method: FixedMethod = "rk4",
        substeps: int = 1,
        pieces: int = 1,
        dtype: torch.dtype = torch.float64,
        seed: Any = None,
    ) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, 1)
        self.state = check_int("state", state, 1)
        self.field = check_choice("field", field, FIELDS)
        if self.field == "bottleneck" and hidden is None:
            raise ValueError("hidden must be given (an int >= 1) for field='bottleneck'")
        if self.field != "bottleneck" and hidden is not None:
            raise ValueError(f"hidden applies to field='bottleneck' only, got hidden={hidden!r}")
        self.hidden = None if hidden is None else check_int("hidden", hidden, 1)
        numpy_name = numpy_dtype(dtype)
        self._options: dict[str, Any] = {
            "field": self.field,
            "activation": check_choice("activation", activation, ACTIVATIONS),
            "output_activation": None if output_activation is None
            else check_choice("output_activation", output_activation, ACTIVATIONS),
            "interpolation": check_choice("interpolation", interpolation, INTERPOLATIONS),
            "method": check_choice("method", method, FIXED_METHODS),
            "substeps": check_int("substeps", substeps, 1),
        }  # fmt: skip
        self.pieces = check_int("pieces", pieces, 1)
        initial = _cde_bridge.initial_params(
            self.channels, self.state, self.field, self.hidden, self.pieces,
            np.dtype(numpy_name), seed,
        )  # fmt: skip
        for name, value in initial.items():
            self.register_parameter(name, torch.nn.Parameter(torch.from_numpy(value)))
        self._names = tuple(initial)

    @property
    def params(self) -> dict[str, Tensor]:
        """The parameters by name: ``A``, ``a``, then the field's arrays.

        Returns
        -------
        dict of str to torch.nn.Parameter
            ``A``, ``a``, then ``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2`` (the keys of
            :func:`cdeint`'s ``params``): the module's parameters, not copies.

        Examples
        --------
        >>> import resode.torch
        >>> list(resode.torch.NeuralCDE(2, 3, seed=0).params)
        ['A', 'a', 'W', 'b']
        """
        parameters = self._parameters
        return {n: parameters[n] for n in self._names}  # type: ignore[misc]

    def options(self) -> dict[str, Any]:
        """Return the keyword arguments of :func:`cdeint` for this layer.

        Returns
        -------
        dict of str to object
            ``field``, ``activation``, ``output_activation``, ``interpolation``, ``method``
            and ``substeps`` (a copy).

        Examples
        --------
        >>> import resode.torch
        >>> resode.torch.NeuralCDE(2, 3, method="midpoint").options()["method"]
        'midpoint'
        """
        return dict(self._options)

    def forward(
        self,
        U: Tensor,
        times: Tensor | ArrayLike | None = None,
        t: Tensor | ArrayLike | None = None,
    ) -> Tensor:
        """Return the hidden states at each series' end time, or at the times ``t``.

        Parameters
        ----------
        U : torch.Tensor, shape (N, L, channels)
            The observations, in the module's dtype, on the CPU; NaN for a missing value and
            for the padding of a shorter series.
        times : torch.Tensor or array_like, shape (L,) or (N, L), optional
            Observation times, shared or per sample; default ``0, 1, ..., L-1``.
        t : torch.Tensor or array_like, shape (Q,), optional
            Increasing output times within ``[min_i t_{i,0}, max_i T_i]``.

        Returns
        -------
        torch.Tensor, shape (N, state) or (Q, N, state)
            ``z_i(T_i)``; with ``t``, the states at those times.

        Raises
        ------
        TypeError, ValueError
            As :func:`cdeint`.

        Examples
        --------
        >>> import torch, resode.torch
        >>> cde = resode.torch.NeuralCDE(2, 3, seed=0)
        >>> U = torch.zeros(4, 5, 2, dtype=torch.float64)
        >>> cde(U).shape, cde(U, t=[0.0, 2.0, 4.0]).shape
        (torch.Size([4, 3]), torch.Size([3, 4, 3]))
        """
        return cdeint(self.params, U, times, t=t, **self._options)

    def extra_repr(self) -> str:
        """Return the configuration shown in the module's ``repr``.

        Returns
        -------
        str
            ``channels``, ``state``, ``pieces`` and the options of :meth:`options`.

        Examples
        --------
        >>> import resode.torch
        >>> resode.torch.NeuralCDE(2, 3).extra_repr().split(", ")[:4]
        ['channels=2', 'state=3', 'pieces=1', "field='outside'"]
        """
        options = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"channels={self.channels}, state={self.state}, pieces={self.pieces}, {options}"
