"""resode as a JAX function: the flow of a neural ODE or ResNet, differentiable with
``jax.grad`` / ``jax.vjp`` and usable inside ``jax.jit`` and ``jax.vmap``.

:func:`odeint` is a ``jax.custom_vjp`` whose forward and backward passes are XLA custom calls
(``jax.ffi.ffi_call``) into the core's C++ entry points (``src/register_xla.cpp``): the states,
and the core's discrete or adjoint vector-Jacobian product, on XLA's own buffers with no Python
callback in between. Under differentiation the forward call also returns what the discrete
backward needs, held as ``custom_vjp`` residuals: the stage tape, or the states (one forward
sweep per training step; what is kept and its memory as for :mod:`resode.torch`; under
``vmap`` the budget applies per batch element).
The calls use ``vmap_method="expand_dims"``: under ``jax.vmap`` the core
receives the batch as leading axes (unbatched arguments with leading 1s), so vmapping over a
batch axis of ``X`` with shared parameters becomes **one** core call over all the samples;
vmapping over the parameters, and the backward pass of a vmapped call (each batch element has
its own parameter cotangent), run one core call per batch element. Nested vmaps over different
arguments are refused. float32 always; float64 with ``jax.config.update("jax_enable_x64",
True)`` (a float64 input without it is a TypeError, not a silent float32 computation); no
silent casts. Errors of the core (a non-finite state, say) surface as JAX's runtime
error with resode's message.

:func:`odeint` with inputs ``u`` (the input-driven neural ODE, ``x' = f_theta(t)([x; u(t)])``)
is a ``jax.custom_vjp`` over the handlers ``resode_driven`` and ``resode_driven_vjp`` (the core's
``driven_solve`` and ``driven_vjp``, gradients to the parameters, ``X`` and ``u``); under
``vmap`` each batch element is its own problem (one core call per element).

:func:`cdeint`, the neural CDE of time series, is a ``jax.custom_vjp`` over the handlers
``resode_cdeint`` and ``resode_cdeint_vjp`` (the core's ``cde_solve`` and ``cde_vjp``, gradients
to the parameters and to the observations ``U``); under ``vmap`` each batch element is its own
problem (one core call per element).

Requires ``pip install "resode[jax]"``; ``import resode`` never imports JAX.

Examples
--------
>>> import jax, jax.numpy as jnp, resode.jax
>>> params = {"W": jnp.zeros((4, 2, 2), jnp.float32), "b": jnp.ones((4, 2), jnp.float32)}
>>> X = jnp.zeros((3, 2), jnp.float32)
>>> loss = lambda p: resode.jax.odeint(p, X, T=1.0).sum()
>>> jax.grad(loss)(params)["b"].shape
(4, 2)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _bridge, _cde_bridge, _core, _driven_bridge
from .models.options import Activation, Field, FixedMethod, Gradient, Interpolation

__all__ = ["cdeint", "odeint"]


# --------------------------------------------------------------------------- the custom calls

for _name, _capsule in _core.xla_handlers().items():
    jax.ffi.register_ffi_target(_name, _capsule, platform="cpu")


def _attrs(flow: _bridge.Flow) -> dict[str, Any]:
    """The options as typed XLA attributes."""
    return {
        "field": flow.field,
        "activation": flow.activation,
        "method": flow.method,
        "dt": np.float64(flow.dt),
        "substeps": np.int64(flow.substeps),
        "augment": np.int64(flow.augment),
    }


@functools.lru_cache(maxsize=256)
def _flow_function(flow: _bridge.Flow) -> Callable[..., Any]:
    """The custom_vjp flow for one set of options (built once per options, like a jit)."""

    def forward(X: jax.Array, theta: tuple[jax.Array, ...]) -> jax.Array:
        out = jax.ShapeDtypeStruct(flow.output_shape(X.shape, theta[0].shape), X.dtype)
        call = jax.ffi.ffi_call("resode_odeint", out, vmap_method="expand_dims")
        return call(X, *theta, **_attrs(flow), trajectory=np.int64(flow.trajectory))

    def forward_kept(X: jax.Array, theta: tuple[jax.Array, ...]) -> tuple[jax.Array, Any]:
        """The output and the states the discrete backward needs, from one forward sweep."""
        shape = flow.output_shape(X.shape, theta[0].shape)
        steps = int(theta[0].shape[0]) * flow.substeps
        stages, kept = flow.kept(X.shape[0], theta[0].shape, np.dtype(X.dtype).itemsize)
        outs = (jax.ShapeDtypeStruct(shape, X.dtype), jax.ShapeDtypeStruct(kept, X.dtype))
        call = jax.ffi.ffi_call("resode_odeint_states", outs, vmap_method="expand_dims")
        stride = np.int64(flow.stride(steps))
        out, states = call(X, *theta, **_attrs(flow), trajectory=np.int64(flow.trajectory),
                           stride=stride, stages=np.int64(stages))  # fmt: skip
        return out, out if kept[0] == 0 else states  # no rows: the trajectory is the states

    @jax.custom_vjp
    def f(X: jax.Array, theta: tuple[jax.Array, ...]) -> jax.Array:
        return forward(X, theta)

    def f_fwd(X: jax.Array, theta: tuple[jax.Array, ...]) -> tuple[jax.Array, Any]:
        if flow.gradient != "discrete":  # the adjoint needs no states: it starts from X
            return forward(X, theta), (X, theta, None)
        out, states = forward_kept(X, theta)
        return out, (X, theta, states)

    def f_bwd(res: Any, g: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        X, theta, states = res
        shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (X, *theta))
        if states is None:
            call = jax.ffi.ffi_call("resode_odeint_vjp", shapes, vmap_method="expand_dims")
            grads = call(X, g, *theta, **_attrs(flow), gradient=flow.gradient,
                         checkpoints=np.int64(flow.checkpoints))  # fmt: skip
        else:
            steps = int(theta[0].shape[0]) * flow.substeps
            stages, _ = flow.kept(X.shape[0], theta[0].shape, np.dtype(X.dtype).itemsize)
            call = jax.ffi.ffi_call("resode_odeint_vjp_states", shapes, vmap_method="expand_dims")
            grads = call(X, g, states, *theta, **_attrs(flow),
                         stride=np.int64(flow.stride(steps)), stages=np.int64(stages))  # fmt: skip
        return grads[0], tuple(grads[1:])

    f.defvjp(f_fwd, f_bwd)
    return f


def _refuse_float64_without_x64(arrays: Mapping[str, Any]) -> None:
    """float64 inputs need JAX's 64-bit mode: without it JAX would turn them into float32
    (and resode would compute in float32) without a word."""
    if jax.config.jax_enable_x64:  # type: ignore[attr-defined]  # a flag set at runtime
        return
    for name, a in arrays.items():
        if getattr(a, "dtype", None) == np.float64:
            raise TypeError(
                f"{name} is float64 but JAX's 64-bit mode is off (it would compute in float32); "
                'enable it with jax.config.update("jax_enable_x64", True), or pass float32'
            )


def odeint(
    params: Mapping[str, Any],
    X: Any,
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
    u: Any = None,
    times: Any = None,
    interpolation: Interpolation | None = None,
) -> jax.Array:
    """The flow of ``x' = f(theta(t), x)`` from ``x(0) = [X, 0]`` over ``[0, T]``.

    Differentiable (reverse mode: ``jax.grad``, ``jax.vjp``) with respect to ``params`` (a
    dict pytree) and ``X`` (and ``u``); traceable by ``jax.jit`` and ``jax.vmap``. With inputs
    ``u`` the field reads ``[x; u(t)]``: ``x' = f_theta(t)([x; u(t)])`` (:class:`resode.NeuralODE`
    with ``inputs=C``; docs/guide/inputs.md).

    Parameters
    ----------
    params : dict of str to jax.Array
        Field parameters named and shaped as :func:`resode.odeint`'s (``W`` ``(pieces, D, D)``,
        ``b`` ``(pieces, D)``, or ``W1``, ``b1``, ``W2``, ``b2``); other keys are ignored.
    X : jax.Array, shape (N, dim)
        Initial states, ``dim = D - augment``; the same dtype as ``params`` (float32, or
        float64 with ``jax_enable_x64``: float64 NumPy arrays without it raise TypeError).
    T : float
        The final time: ``dt = T / (pieces * substeps)``.
    substeps : int, default 1
        Integrator steps per piece.
    method : {"euler", "midpoint", "rk4"}, default "rk4"
        The fixed-step method.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The field.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    gradient : {"discrete", "adjoint"}, default "discrete"
        The backward pass: the exact reverse sweep of the integrator, or the continuous
        backsolve adjoint.
    checkpoints : int or None, default None
        Discrete gradient only: the stored step states (None: all).
    trajectory : bool, default False
        Return every state of the step grid instead of the final one.
    u : jax.Array, shape (N, L, C), optional
        Inputs observed at ``times``, of X's dtype (NaN: missing value or padding); the field's
        first layer then has width ``D + C`` (``W (pieces, D, D + C)``). Its gradient is 0
        where u is NaN. Discrete gradient without checkpoints only; under ``vmap`` each batch
        element is its own problem (one core call per element).
    times : jax.Array, shape (L,) or (N, L), optional
        With ``u``: the observation times (default ``0, 1, ..., L-1``); float32, float64,
        int32 or int64; no gradient.
    interpolation : {"cubic", "linear"}, optional
        With ``u``: the path through the observations (default ``"cubic"``).

    Returns
    -------
    jax.Array
        ``(N, D)`` final states, or ``(steps + 1, N, D)`` with ``trajectory=True``.

    Raises
    ------
    TypeError
        On non-float or mixed dtypes, or float64 inputs without ``jax_enable_x64``.
    ValueError
        On shapes that disagree or bad options. With ``u``, errors on the values (a sample
        without an observation, times not increasing) surface as JAX's runtime error with
        resode's message.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, resode.jax
    >>> params = {"W": jnp.zeros((2, 2, 2), jnp.float32), "b": jnp.ones((2, 2), jnp.float32)}
    >>> f = jax.jit(lambda p, x: resode.jax.odeint(p, x, T=1.0, trajectory=True))
    >>> f(params, jnp.zeros((5, 2), jnp.float32)).shape
    (3, 5, 2)

    With inputs ``u`` (3 channels: ``W`` has width ``D + 3``):

    >>> params = {"W": jnp.zeros((2, 2, 5), jnp.float32),
    ...           "b": jnp.ones((2, 2), jnp.float32)}
    >>> X, U = jnp.zeros((5, 2), jnp.float32), jnp.ones((5, 4, 3), jnp.float32)
    >>> loss = lambda p, u: resode.jax.odeint(p, X, T=1.0, u=u).sum()
    >>> jax.grad(loss, argnums=1)(params, U).shape
    (5, 4, 3)
    """
    if u is not None:
        options = dict(T=T, substeps=substeps, method=method, field=field, activation=activation,
                       augment=augment, gradient=gradient, checkpoints=checkpoints,
                       trajectory=trajectory, interpolation=interpolation)  # fmt: skip
        return _driven_odeint(params, X, u, times, options)
    if times is not None or interpolation is not None:
        raise ValueError("times and interpolation apply with inputs u only")
    flow, names = _bridge.flow(
        params, tuple(np.shape(X)), T=T, substeps=substeps, method=method, field=field,
        activation=activation, augment=augment, gradient=gradient, checkpoints=checkpoints,
        trajectory=trajectory,
    )  # fmt: skip
    _refuse_float64_without_x64({"X": X, **{f"params['{n}']": params[n] for n in names}})
    X = jnp.asarray(X) if not isinstance(X, jax.Array) else X
    theta = tuple(params[n] for n in names)
    dtypes = {"X": X.dtype, **{f"params['{n}']": jnp.result_type(params[n]) for n in names}}
    for name, dt in dtypes.items():
        if dt not in (jnp.float32, jnp.float64):
            raise TypeError(f"{name} must be float32 or float64, got {dt}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"X and params must have one dtype (no silent casts), got {listed}")
    out: jax.Array = _flow_function(flow)(X, theta)
    return out


# --------------------------------------------------------------------------- with inputs


def _driven_attrs(flow: _driven_bridge.DrivenFlow, per_sample_times: bool) -> dict[str, Any]:
    """The options as typed XLA attributes."""
    return {
        "T": np.float64(flow.T),
        "field": flow.field,
        "activation": flow.activation,
        "interpolation": flow.interpolation,
        "method": flow.method,
        "substeps": np.int64(flow.substeps),
        "per_sample_times": np.int64(per_sample_times),
        "trajectory": np.int64(flow.trajectory),
    }


@functools.lru_cache(maxsize=256)
def _driven_function(flow: _driven_bridge.DrivenFlow, per_sample_times: bool) -> Callable[..., Any]:
    """The custom_vjp input-driven flow for one set of options: the forward and backward
    passes are the core's driven_solve and driven_vjp as XLA custom calls (``resode_driven``,
    ``resode_driven_vjp``) on ``x0 = [X, 0]``; the residuals are the inputs (the VJP sweeps
    forward again)."""
    attrs = _driven_attrs(flow, per_sample_times)

    def forward(x0: jax.Array, U: jax.Array, times: jax.Array, theta: tuple[jax.Array, ...]) -> Any:
        steps = int(theta[0].shape[0]) * flow.substeps
        shape = (steps + 1, *x0.shape) if flow.trajectory else x0.shape
        call = jax.ffi.ffi_call("resode_driven", jax.ShapeDtypeStruct(shape, x0.dtype),
                                vmap_method="expand_dims")  # fmt: skip
        return call(x0, U, times, *theta, **attrs)

    @jax.custom_vjp
    def f(x0: jax.Array, U: jax.Array, times: jax.Array, theta: tuple[jax.Array, ...]) -> Any:
        return forward(x0, U, times, theta)

    def f_fwd(x0: jax.Array, U: jax.Array, times: jax.Array, theta: tuple[jax.Array, ...]) -> Any:
        return forward(x0, U, times, theta), (x0, U, times, theta)

    def f_bwd(res: Any, g: jax.Array) -> tuple[Any, ...]:
        x0, U, times, theta = res
        shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x0, U, *theta))
        call = jax.ffi.ffi_call("resode_driven_vjp", shapes, vmap_method="expand_dims")
        grads = call(x0, U, times, g, *theta, **attrs)
        return grads[0], grads[1], None, tuple(grads[2:])  # no gradient to the times

    f.defvjp(f_fwd, f_bwd)
    return f


def _driven_odeint(
    params: Mapping[str, Any], X: Any, U: Any, times: Any, options: dict[str, Any]
) -> jax.Array:
    """:func:`odeint` with inputs ``U`` (N, L, C) at ``times``."""
    X_shape, U_shape = tuple(np.shape(X)), tuple(np.shape(U))
    times_shape = None if times is None else tuple(np.shape(times))
    flow, names = _driven_bridge.flow(params, X_shape, U_shape, times_shape, **options)
    arrays = {"X": X, "u": U, **{f"params['{n}']": params[n] for n in names}}
    _refuse_float64_without_x64({**arrays, **({} if times is None else {"times": times})})
    dtypes = {name: jnp.result_type(a) for name, a in arrays.items()}
    for name, dt in dtypes.items():
        if dt not in (jnp.float32, jnp.float64):
            raise TypeError(f"{name} must be float32 or float64, got {dt}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"X, u and params must have one dtype (no silent casts), got {listed}")
    X, U = jnp.asarray(X), jnp.asarray(U)
    x0 = X if flow.augment == 0 else jnp.pad(X, ((0, 0), (0, flow.augment)))
    times_a = jnp.arange(U_shape[1], dtype=U.dtype) if times is None else _real("times", times)
    theta = tuple(params[n] for n in names)
    per_sample = times_shape is not None and len(times_shape) == 2
    return _driven_function(flow, per_sample)(x0, U, times_a, theta)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- the neural CDE


def _cde_attrs(flow: _cde_bridge.CdeFlow) -> dict[str, Any]:
    """The options as typed XLA attributes (no output activation: the empty name)."""
    return {
        "field": flow.field,
        "activation": flow.activation,
        "output_activation": flow.output_activation or "",
        "interpolation": flow.interpolation,
        "method": flow.method,
        "substeps": np.int64(flow.substeps),
        "per_sample_times": np.int64(flow.per_sample_times),
        "has_t": np.int64(flow.has_t),
    }


@functools.lru_cache(maxsize=256)
def _cde_function(flow: _cde_bridge.CdeFlow) -> Callable[..., Any]:
    """The custom_vjp neural CDE for one set of options: the forward and backward passes are
    the core's cde_solve and cde_vjp as XLA custom calls (``resode_cdeint``,
    ``resode_cdeint_vjp``); the residuals are the inputs (the VJP sweeps forward again)."""
    attrs = _cde_attrs(flow)

    def forward(U: jax.Array, times: jax.Array, t: Any, theta: tuple[jax.Array, ...]) -> Any:
        shape = flow.output_shape(U.shape, theta[0].shape, None if t is None else t.shape)
        out = jax.ShapeDtypeStruct(shape, U.dtype)
        call = jax.ffi.ffi_call("resode_cdeint", out, vmap_method="expand_dims")
        return call(U, times, *(() if t is None else (t,)), *theta, **attrs)

    @jax.custom_vjp
    def f(U: jax.Array, times: jax.Array, t: Any, theta: tuple[jax.Array, ...]) -> Any:
        return forward(U, times, t, theta)

    def f_fwd(U: jax.Array, times: jax.Array, t: Any, theta: tuple[jax.Array, ...]) -> Any:
        return forward(U, times, t, theta), (U, times, t, theta)

    def f_bwd(res: Any, g: jax.Array) -> tuple[Any, ...]:
        U, times, t, theta = res
        shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (U, *theta))
        call = jax.ffi.ffi_call("resode_cdeint_vjp", shapes, vmap_method="expand_dims")
        grads = call(U, times, g, *(() if t is None else (t,)), *theta, **attrs)
        return grads[0], None, None, tuple(grads[1:])  # no gradient to times and t

    f.defvjp(f_fwd, f_bwd)
    return f


def _real(name: str, value: Any) -> jax.Array:
    """times or t as a JAX array of a real dtype (float32/64, int32/64)."""
    times = value if isinstance(value, jax.Array) else jnp.asarray(value)
    if times.dtype not in (jnp.float32, jnp.float64, jnp.int32, jnp.int64):
        raise TypeError(f"{name} must be float32, float64, int32 or int64, got {times.dtype}")
    return times


def cdeint(
    params: Mapping[str, Any],
    U: Any,
    times: Any = None,
    *,
    t: Any = None,
    field: Field | None = None,
    activation: Activation = "tanh",
    output_activation: Activation | None = None,
    interpolation: Interpolation = "cubic",
    method: FixedMethod = "rk4",
    substeps: int = 1,
) -> jax.Array:
    """Integrate the neural CDE ``dz/dt = F(z) dX/dt`` over a batch of series, in JAX.

    The hidden state starts at ``z(t_0) = A x_0 + a``; the result is each sample's state at its own
    end time, or the states at the times ``t``. Differentiable (reverse mode: ``jax.grad``,
    ``jax.vjp``) with respect to ``params`` and ``U`` (not ``times`` nor ``t``); traceable by
    ``jax.jit`` and ``jax.vmap`` (one core call per batch element). The values and gradients are
    bitwise those of the core's ``cde_solve`` and ``cde_vjp`` (:func:`resode.cdeint`,
    :func:`resode.cdeint_vjp`).

    Parameters
    ----------
    params : dict of str to jax.Array
        ``A`` (state, channels), ``a`` (state,) and the field's arrays: ``W``
        (pieces, state*channels, state), ``b`` (pieces, state*channels), or ``W1``
        (pieces, hidden, state), ``b1``, ``W2`` (pieces, state*channels, hidden), ``b2``.
        Other keys are ignored.
    U : jax.Array, shape (N, L, channels)
        Observations, the parameters' dtype (float32, or float64 with ``jax_enable_x64``);
        NaN for a missing value and for the padding of a shorter series. Its gradient is 0
        where U is NaN.
    times : jax.Array, shape (L,) or (N, L), optional
        Observation times, shared or per sample; default ``0, 1, ..., L-1``. float32,
        float64, int32 or int64 (converted to float64 in the core).
    t : jax.Array, shape (Q,), optional
        Increasing output times within ``[min_i t_{i,0}, max_i T_i]``.
    field : {"outside", "inside", "bottleneck"}, optional
        The vector field's form (:class:`resode.NeuralCDE`); default: ``"bottleneck"`` for
        ``W1``, ``b1``, ``W2``, ``b2`` keys, ``"outside"`` for ``W``, ``b``.
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
    jax.Array
        ``(N, state)``: ``z_i(T_i)``; with ``t``: ``(len(t), N, state)``.

    Raises
    ------
    TypeError
        On non-float or mixed dtypes, or float64 inputs without ``jax_enable_x64``.
    ValueError
        On shapes that disagree or bad options. Errors on the values (a sample with fewer
        than 2 observed rows, times not increasing, a non-finite state) surface as JAX's
        runtime error with resode's message.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np, resode.jax
    >>> rng = np.random.default_rng(0)
    >>> params = {"A": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
    ...           "a": jnp.zeros(3, jnp.float32),
    ...           "W": jnp.asarray(rng.normal(size=(1, 6, 3)) / 3, jnp.float32),
    ...           "b": jnp.zeros((1, 6), jnp.float32)}
    >>> U = jnp.asarray(rng.normal(size=(4, 5, 2)), jnp.float32)
    >>> loss = lambda p, u: resode.jax.cdeint(p, u).sum()
    >>> grads, dU = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, U)
    >>> grads["W"].shape, dU.shape
    ((1, 6, 3), (4, 5, 2))
    """
    U_shape, t_shape = tuple(np.shape(U)), None if t is None else tuple(np.shape(t))
    times_shape = U_shape[1:2] if times is None else tuple(np.shape(times))
    flow, names = _cde_bridge.flow(
        params, U_shape, times_shape, t_shape, field=field, activation=activation,
        output_activation=output_activation, interpolation=interpolation, method=method,
        substeps=substeps,
    )  # fmt: skip
    arrays = {"U": U, **{f"params['{n}']": params[n] for n in names}}
    given = {"times": times, "t": t}
    _refuse_float64_without_x64({**arrays, **{k: v for k, v in given.items() if v is not None}})
    U = U if isinstance(U, jax.Array) else jnp.asarray(U)
    dtypes = {name: jnp.result_type(a) for name, a in arrays.items()}
    for name, dt in dtypes.items():
        if dt not in (jnp.float32, jnp.float64):
            raise TypeError(f"{name} must be float32 or float64, got {dt}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"U and params must have one dtype (no silent casts), got {listed}")
    times_a = jnp.arange(U_shape[1], dtype=U.dtype) if times is None else _real("times", times)
    t_a = None if t is None else _real("t", t)
    theta = tuple(params[n] for n in names)
    return _cde_function(flow)(U, times_a, t_a, theta)  # type: ignore[no-any-return]
