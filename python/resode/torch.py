"""resode as a PyTorch layer: the flow of a neural ODE or ResNet inside a ``torch.nn.Module``,
differentiable with ``.backward()``, exact (the core's discrete or adjoint gradient) and
compiled-graph safe.

:func:`odeint` is built from two operators of ``torch.library.custom_op``, ``resode::odeint``
(the states, and those the backward needs, saved for it) and ``resode::odeint_vjp`` (its
vector-Jacobian product, the backward, from the saved states), each with
a fake (meta) implementation, so ``torch.library.opcheck`` passes and ``torch.compile(...,
fullgraph=True)`` traces models that use them without graph breaks, with a symbolic batch size
(``dynamic=True``: one graph for every batch size). In eager mode the same two
computations run through a ``torch.autograd.Function``, which dispatches in a few microseconds
where the custom-op machinery takes hundreds. Tensors are handed to the
core as NumPy views of their memory (no copy for contiguous CPU tensors of the right dtype) and
the core's outputs come back as tensors over NumPy's memory (no copy either).

A training step sweeps forward once, and evaluates each stage once. With
``gradient="discrete"`` the forward keeps, as a tensor saved for the backward, every step's
state and stages (the stage tape, ``(steps, width, N)``, width per sample
``D + (2 s - 1) D + s c`` for ``s`` stages and the field's cache ``c``: 0 outside, D inside,
H bottleneck; for example 8 x the state for rk4 outside) while that takes at most
``resode._bridge.STAGE_TAPE_BYTES`` (256 MiB); beyond it the states only,
``(steps, N, D)`` (the output itself for ``trajectory=True``), from which the backward
recomputes each step's stages; with ``checkpoints=K`` every ``ceil(steps / K)``-th state only
(at most K of ``(N, D)``), the backward recomputing each segment from its first state. The
gradients are bitwise those of the core's :func:`resode.odeint_vjp` in every case.
``gradient="adjoint"`` keeps nothing (its backward integrates back from the final state).

Threads: the core releases the GIL and runs its own OpenMP threads
(:func:`resode.set_num_threads`) while torch waits for the operator; torch's intra-op threads
are idle meanwhile, so the two pools do not compete. Two Python threads may train two models
at once.

The neural CDE of time series, :class:`NeuralCDE` and :func:`cdeint`, is built the same way
(operators ``resode::cdeint`` and ``resode::cdeint_vjp`` over the core's ``cde_solve`` and
``cde_vjp``; gradients to the parameters and to the observations ``U``), and so is the
input-driven neural ODE, ``odeint(..., u=U)`` and ``NeuralODE(..., inputs=C)`` (operators
``resode::driven_odeint`` and ``resode::driven_odeint_vjp`` over ``driven_solve`` and
``driven_vjp``; gradients to the parameters, ``X`` and ``U``).

Requires ``pip install "resode[torch]"`` (CPU PyTorch); ``import resode`` never imports torch.

Examples
--------
>>> import torch, resode.torch
>>> layer = resode.torch.NeuralODE(2, T=1.0, pieces=4, augment=1, seed=0)
>>> model = torch.nn.Sequential(layer, torch.nn.Linear(3, 2, dtype=torch.float64))
>>> X = torch.randn(8, 2, dtype=torch.float64)
>>> loss = torch.nn.functional.cross_entropy(model(X), torch.zeros(8, dtype=torch.long))
>>> loss.backward()
>>> layer.W.grad.shape
torch.Size([4, 3, 3])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from . import _bridge
from ._torch_cde import NeuralCDE, cdeint
from ._torch_driven import driven_odeint
from ._torch_ops import _EagerFlow, _odeint_op, check_tensors, numpy_dtype
from ._torch_ops import _odeint_vjp_op as _odeint_vjp_op  # used by the tests (opcheck)
from ._typing import ArrayLike
from .models import NeuralODE as _NeuralODE
from .models import ResNet as _ResNet
from .models import field_param_names
from .models.options import Activation, Field, FixedMethod, Gradient, Interpolation

__all__ = ["NeuralCDE", "NeuralODE", "ResNet", "cdeint", "odeint"]

# --------------------------------------------------------------------------- the function


def odeint(
    params: Mapping[str, Tensor],
    X: Tensor,
    *,
    T: float,
    substeps: int = 1,
    method: FixedMethod = "rk4",
    field: Field = "outside",
    activation: Activation = "tanh",
    augment: int = 0,
    gradient: Gradient = "discrete",
    checkpoints: int | None = None,
    trajectory: bool = False,
    u: Tensor | None = None,
    times: Tensor | ArrayLike | None = None,
    interpolation: Interpolation | None = None,
) -> Tensor:
    """Return the flow of ``x' = f(theta(t), x)`` from ``x(0) = [X, 0]`` over ``[0, T]``.

    Differentiable with respect to every tensor of ``params`` and ``X`` (and ``u``). With
    inputs ``u`` the field reads ``[x; u(t)]``: ``x' = f_theta(t)([x; u(t)])``
    (:class:`resode.NeuralODE` with ``inputs=C``; docs/guide/inputs.md).

    Parameters
    ----------
    params : dict of str to torch.Tensor
        Field parameters named and shaped as :func:`resode.odeint`'s (``W`` ``(pieces, D, D)``,
        ``b`` ``(pieces, D)``, or ``W1``, ``b1``, ``W2``, ``b2`` for the bottleneck field);
        other keys are ignored.
    X : torch.Tensor, shape (N, dim)
        Initial states; ``dim = D - augment``. The same dtype as ``params``: float32 or
        float64, on the CPU.
    T : float
        The final time: ``dt = T / (pieces * substeps)`` (a ResNet of ``L`` layers and step
        ``h`` is ``method="euler"``, ``T = L * h``).
    substeps : int, default 1
        Integrator steps per piece.
    method : {"euler", "midpoint", "rk4"}, default "rk4"
        The fixed-step method.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The field.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation.
    augment : int, default 0
        Zero columns appended to the inputs: ``D = dim + augment``.
    gradient : {"discrete", "adjoint"}, default "discrete"
        The backward pass: the exact reverse sweep of the integrator, or the continuous
        backsolve adjoint.
    checkpoints : int or None, default None
        Discrete gradient only: the stored step states (None: all).
    trajectory : bool, default False
        Return every state of the step grid instead of the final one.
    u : torch.Tensor, shape (N, L, C), optional
        Inputs observed at ``times``, of X's dtype (NaN: missing value or padding); the field's
        first layer then has width ``D + C`` (``W (pieces, D, D + C)``). Its gradient is 0
        where u is NaN. Discrete gradient without checkpoints only.
    times : torch.Tensor or array_like, shape (L,) or (N, L), optional
        With ``u``: the observation times (default ``0, 1, ..., L-1``); no gradient.
    interpolation : {"cubic", "linear"}, optional
        With ``u``: the path through the observations (default ``"cubic"``).

    Returns
    -------
    torch.Tensor
        ``(N, D)`` final states, or ``(steps + 1, N, D)`` with ``trajectory=True``.

    Raises
    ------
    TypeError
        On non-tensors, non-float dtypes or mixed dtypes.
    ValueError
        On a CUDA tensor (resode runs on the CPU: ``.cpu()``), shapes that disagree, bad
        options; :class:`resode.NonFiniteError` when the flow overflows.

    Examples
    --------
    >>> import torch, resode.torch
    >>> W = torch.zeros(4, 2, 2, dtype=torch.float64, requires_grad=True)
    >>> b = torch.ones(4, 2, dtype=torch.float64, requires_grad=True)
    >>> x = resode.torch.odeint({"W": W, "b": b}, torch.zeros(3, 2, dtype=torch.float64), T=1.0)
    >>> x.sum().backward()
    >>> x.shape, b.grad.shape
    (torch.Size([3, 2]), torch.Size([4, 2]))
    """
    options = dict(T=T, substeps=substeps, method=method, field=field, activation=activation,
                   augment=augment, gradient=gradient, checkpoints=checkpoints,
                   trajectory=trajectory)  # fmt: skip
    if u is not None:
        return driven_odeint(params, X, u, times, **options, interpolation=interpolation)
    if times is not None or interpolation is not None:
        raise ValueError("times and interpolation apply with inputs u only")
    flow, names = _resolve(params, X, options)
    return _apply(flow, names, params, X)


def _resolve(
    params: Mapping[str, Any], X: Any, options: Mapping[str, Any]
) -> tuple[_bridge.Flow, tuple[str, ...]]:
    """The checked options (remembered per shapes and options outside torch.compile)."""
    X_shape = tuple(getattr(X, "shape", ()))
    if torch.compiler.is_compiling():
        return _bridge.flow(params, X_shape, **options)
    shapes = tuple((k, tuple(v.shape)) for k, v in params.items() if hasattr(v, "shape"))
    try:
        return _bridge.cached_flow(shapes, X_shape, **options)
    except TypeError:  # an unhashable option: checked without the cache
        return _bridge.flow(params, X_shape, **options)


def _apply(flow: _bridge.Flow, names: tuple[str, ...], params: Mapping[str, Any], X: Any) -> Tensor:
    """The flow on the tensors: an autograd.Function in eager mode, the operators when
    compiling."""
    check_tensors(params, names, X)
    if not torch.compiler.is_compiling():
        # torch's Function.apply is unannotated (it returns what forward returns: a Tensor)
        out: Tensor = _EagerFlow.apply(X, flow, *[params[n] for n in names])  # type: ignore[no-untyped-call]
        return out
    theta = [params[n] for n in names]
    traced: tuple[Tensor, Tensor] = _odeint_op(
        X, theta, flow.field, flow.activation, flow.method, flow.dt, flow.substeps,
        flow.augment, flow.gradient, flow.checkpoints, flow.trajectory,
    )  # fmt: skip
    return traced[0]  # (the states, those it kept)


# --------------------------------------------------------------------------- the modules


_FlowT = TypeVar("_FlowT", bound="_Flow")


class _Flow(torch.nn.Module):
    """Field parameters as ``nn.Parameter``s with resode's names and shapes."""

    _resode: _NeuralODE | _ResNet  # the configuration (and initial values)
    _model_type: type[_NeuralODE] | type[_ResNet]  # the resode model the module mirrors

    @classmethod
    def from_resode(cls: type[_FlowT], model: _NeuralODE | _ResNet) -> _FlowT:
        """Return the module of a resode model of the matching kind (its field parameters, copied).

        Parameters
        ----------
        model : resode.NeuralODE or resode.ResNet
            A model of this class's kind.

        Returns
        -------
        NeuralODE or ResNet
            A new module with the model's configuration.

        Raises
        ------
        TypeError
            If ``model`` is of the other kind.

        Examples
        --------
        >>> import resode, resode.torch
        >>> node = resode.torch.NeuralODE.from_resode(resode.NeuralODE(2, pieces=4, seed=0))
        >>> node.field_params()["W"].shape
        torch.Size([4, 2, 2])
        """
        if not isinstance(model, cls._model_type):
            raise TypeError(
                f"model must be a resode.{cls._model_type.__name__}, got {type(model).__name__}"
            )
        module = cls.__new__(cls)
        torch.nn.Module.__init__(module)
        module._adopt(model)
        return module

    def _adopt(self, model: _NeuralODE | _ResNet) -> None:
        self._resode = model
        self.field, self.augment = model.field, model.augment
        self._names = tuple(field_param_names(model.field))
        # The resolved flows by (trajectory, X's shape, the parameters' shapes): a training
        # loop resolves its options once, not on every call (eager mode only).
        self._flows: dict[tuple[Any, ...], tuple[_bridge.Flow, tuple[str, ...]]] = {}
        for name in self._names:
            value = torch.from_numpy(np.array(model.params[name], copy=True))
            self.register_parameter(name, torch.nn.Parameter(value))

    def field_params(self) -> dict[str, Tensor]:
        """Return the field parameters by name: ``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``.

        Returns
        -------
        dict of str to torch.nn.Parameter
            The module's parameters (leading axis: pieces or layers), not copies.

        Examples
        --------
        >>> import torch, resode.torch
        >>> node = resode.torch.NeuralODE(2, pieces=4, seed=0)
        >>> sorted(node.field_params())
        ['W', 'b']
        """
        parameters = self._parameters
        # (registered in _adopt: never None)
        return {n: parameters[n] for n in self._names}  # type: ignore[misc]

    def _options(self) -> dict[str, Any]:
        raise NotImplementedError

    def _resolve_flow(
        self, params: Mapping[str, Any], X: Any, trajectory: bool
    ) -> tuple[_bridge.Flow, tuple[str, ...]]:
        return _resolve(params, X, {**self._options(), "trajectory": trajectory})

    def _flow(self, X: Tensor, trajectory: bool, u: Any = None, times: Any = None) -> Tensor:
        params = self.field_params()
        model = self._resode
        if u is not None or times is not None or (isinstance(model, _NeuralODE) and model.inputs):
            return self._driven(params, X, u, times, trajectory)
        if torch.compiler.is_compiling():
            flow, names = self._resolve_flow(params, X, trajectory)
            return _apply(flow, names, params, X)
        key = (trajectory, getattr(X, "shape", None), *(p.shape for p in params.values()))
        resolved = self._flows.get(key)
        if resolved is None:
            resolved = self._resolve_flow(params, X, trajectory)
            if len(self._flows) >= 64:  # many batch shapes: start over rather than grow
                self._flows.clear()
            self._flows[key] = resolved
        return _apply(*resolved, params, X)

    def _driven(self, params: dict[str, Tensor], X: Tensor, u: Any, times: Any, trajectory: bool
                ) -> Tensor:  # fmt: skip
        model = self._resode
        if not isinstance(model, _NeuralODE) or not model.inputs:
            raise ValueError("u and times apply to a NeuralODE with inputs > 0 (inputs=C)")
        expected = f"(N, L, {model.inputs}) (inputs={model.inputs})"
        if u is None:
            raise ValueError(f"u must be given for a model with inputs: shape {expected}")
        if getattr(u, "ndim", 3) != 3 or u.shape[2] != model.inputs:
            got = tuple(getattr(u, "shape", ()))
            raise ValueError(f"u must have shape {expected}, got {got}")
        options = {**self._options(), "interpolation": model.interpolation}
        return driven_odeint(params, X, u, times, **options, trajectory=trajectory)

    def forward(
        self, X: Tensor, u: Tensor | None = None, times: Tensor | ArrayLike | None = None
    ) -> Tensor:
        """Return the final states; the readout is the user's own layer.

        Parameters
        ----------
        X : torch.Tensor, shape (N, dim)
            The inputs, in the module's dtype, on the CPU.
        u : torch.Tensor, shape (N, L, inputs), optional
            ``NeuralODE(inputs=C)`` only (then required): the observed inputs, NaN for a
            missing value and the padding of a shorter series.
        times : torch.Tensor or array_like, shape (L,) or (N, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        torch.Tensor, shape (N, D)
            The final states, ``D = dim + augment``.

        Examples
        --------
        >>> import torch, resode.torch
        >>> node = resode.torch.NeuralODE(2, pieces=4, seed=0)
        >>> node(torch.zeros(3, 2, dtype=torch.float64)).shape
        torch.Size([3, 2])
        """
        return self._flow(X, False, u, times)

    def trajectory(
        self, X: Tensor, u: Tensor | None = None, times: Tensor | ArrayLike | None = None
    ) -> Tensor:
        """Return every state of the step grid.

        Parameters
        ----------
        X : torch.Tensor, shape (N, dim)
            The inputs, in the module's dtype, on the CPU.
        u : torch.Tensor, shape (N, L, inputs), optional
            ``NeuralODE(inputs=C)`` only: the observed inputs (as :meth:`forward`).
        times : torch.Tensor or array_like, shape (L,) or (N, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        torch.Tensor, shape (steps + 1, N, D)
            The states, ``D = dim + augment``.

        Examples
        --------
        >>> import torch, resode.torch
        >>> node = resode.torch.NeuralODE(2, pieces=4, seed=0)
        >>> node.trajectory(torch.zeros(3, 2, dtype=torch.float64)).shape
        torch.Size([5, 3, 2])
        """
        return self._flow(X, True, u, times)

    def to_resode(
        self, P: Tensor | ArrayLike | None = None, c: Tensor | ArrayLike | None = None
    ) -> _NeuralODE | _ResNet:
        """Return a resode model with this module's field parameters and the readout ``P``, ``c``.

        Parameters
        ----------
        P : array_like or torch.Tensor, shape (classes, D), optional
            The readout (default: the model's own seeded readout with 2 classes).
        c : array_like or torch.Tensor, shape (classes,), optional
            The readout's bias (default: zeros).

        Returns
        -------
        resode.NeuralODE or resode.ResNet
            A new model of the module's configuration.

        Raises
        ------
        ValueError
            If ``P`` is not ``(classes, D)``.

        Examples
        --------
        >>> import torch, resode.torch
        >>> node = resode.torch.NeuralODE(2, pieces=4, seed=0)
        >>> model = node.to_resode(P=torch.ones(3, 2, dtype=torch.float64))
        >>> model.classes, model.params["c"].tolist()
        (3, [0.0, 0.0, 0.0])
        """
        config = dict(self._resode.config)
        P_np = None if P is None else np.array(_to_numpy(P), dtype=config["dtype"])
        if P_np is not None:
            if P_np.ndim != 2 or P_np.shape[1] != self._resode.D:
                raise ValueError(f"P must have shape (classes, {self._resode.D}), got {P_np.shape}")
            config["classes"] = P_np.shape[0]
        config.pop("dim")
        kind = type(self._resode)
        model = kind(self._resode.dim, **config)
        for name, p in self.field_params().items():
            model.params[name] = p.detach().numpy().astype(config["dtype"], copy=True)
        if P_np is not None:
            model.params["P"] = P_np
            c_np = np.zeros(P_np.shape[0]) if c is None else np.array(_to_numpy(c))
            model.params["c"] = c_np.astype(config["dtype"])
        return model


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


class NeuralODE(_Flow):
    """A neural ODE flow as a ``torch.nn.Module``: ``forward(X)`` ``(N, dim) -> (N, D)``.

    Parameters as :class:`resode.NeuralODE` (no readout, no loss: compose with your own
    layers). With the same ``seed`` the parameters equal ``resode.NeuralODE(...)``'s bitwise.

    Parameters
    ----------
    dim : int
        Input features.
    T : float, default 1.0
        The final time.
    pieces : int, default 10
        The pieces of the piecewise-constant controls.
    substeps : int, default 1
        Integrator steps per piece.
    method : {"euler", "midpoint", "rk4"}, default "rk4"
        The fixed-step method.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The field.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation.
    hidden : int or None, default None
        The bottleneck field's hidden width.
    augment : int, default 0
        Zero columns appended to the inputs: ``D = dim + augment``.
    gradient : {"discrete", "adjoint"}, default "discrete"
        The backward pass: the exact reverse sweep, or the backsolve adjoint.
    checkpoints : int or None, default None
        Discrete gradient only: the stored step states (None: all).
    dtype : torch.dtype, default torch.float64
        ``torch.float64`` or ``torch.float32``.
    seed : int, numpy.random.Generator or None, default None
        The seed of the initialisation.
    inputs : int, default 0
        Channels C of inputs ``u(t)``: ``x' = f_theta(t)([x; u(t)])``, ``forward(X, u=U,
        times=None)`` (discrete gradient without checkpoints; gradients reach ``u`` too).
    interpolation : {"cubic", "linear"}, optional
        ``inputs > 0`` only: the path through the observations (default ``"cubic"``).

    Examples
    --------
    >>> import torch, resode.torch
    >>> node = resode.torch.NeuralODE(2, T=2.0, pieces=8, field="bottleneck", hidden=16,
    ...                               augment=1, activation="relu", seed=0)
    >>> node(torch.zeros(5, 2, dtype=torch.float64)).shape
    torch.Size([5, 3])
    >>> sorted(name for name, _ in node.named_parameters())
    ['W1', 'W2', 'b1', 'b2']
    """

    _model_type = _NeuralODE

    def __init__(
        self,
        dim: int,
        *,
        T: float = 1.0,
        pieces: int = 10,
        substeps: int = 1,
        method: FixedMethod = "rk4",
        field: Field = "outside",
        activation: Activation = "tanh",
        hidden: int | None = None,
        augment: int = 0,
        gradient: Gradient = "discrete",
        checkpoints: int | None = None,
        dtype: torch.dtype = torch.float64,
        seed: Any = None,
        inputs: int = 0,
        interpolation: Interpolation | None = None,
    ) -> None:
        super().__init__()
        model = _NeuralODE(
            dim, T=T, pieces=pieces, substeps=substeps, method=method, field=field,
            activation=activation, hidden=hidden, augment=augment, gradient=gradient,
            checkpoints=checkpoints, dtype=numpy_dtype(dtype), seed=seed, inputs=inputs,
            interpolation=interpolation,
        )  # fmt: skip
        if inputs and gradient != "discrete":
            raise ValueError(f"inputs > 0 runs with gradient='discrete' here, got {gradient!r}")
        self._adopt(model)

    def _options(self) -> dict[str, Any]:
        m = self._resode
        assert isinstance(m, _NeuralODE)
        return {"T": m.T, "substeps": m.substeps, "method": m.method, "field": m.field,
                "activation": m.activation, "augment": m.augment, "gradient": m.gradient,
                "checkpoints": m.checkpoints}  # fmt: skip


class ResNet(_Flow):
    """A residual network ``x^{k+1} = x^k + h f_k(x^k)`` as a ``torch.nn.Module``.

    Parameters as :class:`resode.ResNet` (no readout, no loss). With the same ``seed`` the
    parameters equal ``resode.ResNet(...)``'s bitwise.

    Parameters
    ----------
    dim : int
        Input features.
    layers : int
        The residual layers.
    h : float, default 1.0
        The step size of every layer.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The field.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation.
    hidden : int or None, default None
        The bottleneck field's hidden width.
    augment : int, default 0
        Zero columns appended to the inputs: ``D = dim + augment``.
    dtype : torch.dtype, default torch.float64
        ``torch.float64`` or ``torch.float32``.
    seed : int, numpy.random.Generator or None, default None
        The seed of the initialisation.

    Examples
    --------
    >>> import torch, resode.torch
    >>> net = resode.torch.ResNet(4, layers=6, h=0.5, seed=0)
    >>> net(torch.ones(3, 4, dtype=torch.float64)).shape
    torch.Size([3, 4])
    """

    _model_type = _ResNet

    def __init__(
        self,
        dim: int,
        layers: int,
        *,
        h: float = 1.0,
        field: Field = "outside",
        activation: Activation = "tanh",
        hidden: int | None = None,
        augment: int = 0,
        dtype: torch.dtype = torch.float64,
        seed: Any = None,
    ) -> None:
        super().__init__()
        model = _ResNet(
            dim, layers, h=h, field=field, activation=activation, hidden=hidden,
            augment=augment, dtype=numpy_dtype(dtype), seed=seed,
        )  # fmt: skip
        self._adopt(model)

    def _options(self) -> dict[str, Any]:
        m = self._resode
        assert isinstance(m, _ResNet)
        return {"T": m.layers * m.h, "method": "euler", "field": m.field,
                "activation": m.activation, "augment": m.augment}  # fmt: skip

    def _resolve_flow(
        self, params: Mapping[str, Any], X: Any, trajectory: bool
    ) -> tuple[_bridge.Flow, tuple[str, ...]]:
        # the step is h itself, as resode.ResNet takes it (T / layers may differ in the last bit)
        options = {**self._options(), "substeps": 1, "gradient": "discrete",
                   "checkpoints": None, "trajectory": trajectory}  # fmt: skip
        flow, names = _resolve(params, X, options)
        resnet = self._resode
        assert isinstance(resnet, _ResNet)
        return dataclasses.replace(flow, dt=float(resnet.h)), names
