"""Functional entry points for embedding the flow map in other pipelines: integrate a batch of
states through the neural ODE, and pull a cotangent on the final state back to the parameters
and the inputs (a vector-Jacobian product). No model object, no loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, overload

import numpy as np

from . import _core
from ._typing import ArrayLike, FloatArray
from ._validation import as_features, as_float_array, check_choice, check_int, check_positive
from .models import (
    ACTIVATIONS,
    ADAPTIVE_METHODS,
    FIELDS,
    GRADIENTS,
    METHODS,
    NeuralODE,
    ResNet,
    adaptive_options,
    field_param_names,
    summarize_stats,
)
from .models.options import Activation, Field, Gradient, Method, StepControl

__all__ = ["odeint", "odeint_vjp"]


_OPTIONS = ("T", "substeps", "method", "field", "activation", "augment")
_ADAPTIVE = ("rtol", "atol", "first_step", "max_steps", "step_control")


def _dense_args(
    params: Any, sweep: Mapping[str, Any], T: float, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The keyword arguments of ``_core.adaptive_solve`` / ``adaptive_vjp``: the sweep's
    options, ``T`` and the adaptive options (a model's own when a model is passed)."""
    if isinstance(params, NeuralODE):
        set_ = sorted(k for k, v in given.items() if v is not None)
        if set_:
            raise ValueError(f"{', '.join(set_)}: taken from the model when a model is passed")
        adaptive = params._adaptive_options()
    else:
        adaptive = adaptive_options(sweep["method"], given)
    args = {k: sweep[k] for k in ("field", "activation", "method", "substeps", "augment")}
    return {**args, "T": T, **adaptive}


def _times(t: Any, T: float, pieces: int, method: str) -> np.ndarray | None:
    """Output times as float64 (1-d), or None for the fixed-step grid; an adaptive method's
    default is the piece boundaries k T / pieces."""
    if t is None:
        return (T * np.arange(pieces + 1)) / pieces if method in ADAPTIVE_METHODS else None
    times = as_float_array("t", t, np.dtype(np.float64))
    if times.ndim != 1:
        raise ValueError(f"t must be a 1-d array of times, got shape {times.shape}")
    return times


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _infer_field(params: Mapping[str, Any]) -> str:
    """``bottleneck`` for W1, b1, W2, b2; ``outside`` (the default field) for W, b."""
    if all(n in params for n in field_param_names("bottleneck")):
        return "bottleneck"
    if all(n in params for n in field_param_names("outside")):
        return "outside"
    raise ValueError(
        f"params must hold W, b (field 'outside' or 'inside') or W1, b1, W2, b2 (field "
        f"'bottleneck'); got keys {sorted(params)}"
    )


def _from_model(model: Any, options: Mapping[str, Any]) -> tuple[Any, dict[str, Any], float]:
    """(params, the sweep options, dt) of a resode.NeuralODE or resode.ResNet: the step is
    the model's own (``h`` for a ResNet), so the states equal ``model.trajectory``'s."""
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ValueError(
            f"{', '.join(given)}: taken from the model when a model is passed; build a model "
            "with other settings, or pass model.params with the options"
        )
    if isinstance(model, NeuralODE):
        T, substeps, method, dt = model.T, model.substeps, model.method, model.dt
    else:  # a ResNet: one explicit Euler step of size h per layer
        T, substeps, method, dt = model.layers * model.h, 1, "euler", model.h
    return (
        model.params,
        {
            "T": T,
            "substeps": substeps,
            "method": method,
            "field": model.field,
            "activation": model.activation,
            "augment": model.augment,
        },
        dt,
    )


def _prepare(
    params: Any, X: Any, options: Mapping[str, Any]
) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any], tuple[str, ...], float]:
    dt = None
    if isinstance(params, (NeuralODE, ResNet)):
        params, options, dt = _from_model(params, options)
    else:
        if not isinstance(params, Mapping):
            raise TypeError(
                "params must be a dict of field parameters or a resode.NeuralODE / ResNet, got "
                f"{type(params).__name__}"
            )
        if options["T"] is None:
            raise TypeError("T is required with a params dict (the final time)")
    field = options["field"] if options["field"] is not None else _infer_field(params)
    check_choice("field", field, FIELDS)
    activation = check_choice("activation", _or(options["activation"], "tanh"), ACTIVATIONS)
    method = check_choice("method", _or(options["method"], "rk4"), METHODS)
    T = check_positive("T", options["T"])
    substeps = check_int("substeps", _or(options["substeps"], 1), 1)
    augment = check_int("augment", _or(options["augment"], 0), 0)
    names = field_param_names(field)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params is missing {missing} for field '{field}'")
    first = np.asarray(params[names[0]])
    dtype = np.dtype(np.float32) if first.dtype == np.float32 else np.dtype(np.float64)
    theta = [as_float_array(f"params['{n}']", params[n], dtype) for n in names]
    W1 = theta[0]
    if W1.ndim != 3:
        raise ValueError(f"params['{names[0]}'] must be 3-D (pieces, *, D), got shape {W1.shape}")
    pieces, D = W1.shape[0], W1.shape[2]
    if augment >= D:
        raise ValueError(f"augment must be < D = {D} (the width of params['{names[0]}'])")
    X_shape = np.shape(X)
    if len(X_shape) == 2 and X_shape[1] != D - augment and X_shape[1] < D:
        raise ValueError(
            f"X has {X_shape[1]} columns but the parameters' width is D = {D} with augment = "
            f"{augment}: X must have {D - augment} columns (or pass augment={D - X_shape[1]} "
            "to add the missing zero columns)"
        )
    Xc = as_features(X, D - augment, dtype)
    steps = max(pieces, 1) * substeps
    if not T / steps > 0:
        raise ValueError(f"T must be large enough that T / steps > 0, got T={T}")
    sweep = {
        "field": field,
        "activation": activation,
        "method": method,
        "dt": dt if dt is not None else T / steps,
        "substeps": substeps,
        "augment": augment,
    }
    return Xc, theta, sweep, names, T


@overload
def odeint(
    params: Mapping[str, ArrayLike] | NeuralODE | ResNet,
    X: ArrayLike,
    *,
    T: float | None = None,
    substeps: int | None = None,
    method: Method | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    augment: int | None = None,
    t: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    step_control: StepControl | None = None,
    grid: ArrayLike | None = None,
    stats: Literal[False] = False,
) -> FloatArray: ...
@overload
def odeint(
    params: Mapping[str, ArrayLike] | NeuralODE | ResNet,
    X: ArrayLike,
    *,
    T: float | None = None,
    substeps: int | None = None,
    method: Method | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    augment: int | None = None,
    t: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    step_control: StepControl | None = None,
    grid: ArrayLike | None = None,
    stats: Literal[True],
) -> tuple[FloatArray, dict[str, Any] | None]: ...
@overload
def odeint(
    params: Mapping[str, ArrayLike] | NeuralODE | ResNet,
    X: ArrayLike,
    *,
    T: float | None = None,
    substeps: int | None = None,
    method: Method | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    augment: int | None = None,
    t: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    step_control: StepControl | None = None,
    grid: ArrayLike | None = None,
    stats: bool = False,
) -> FloatArray | tuple[FloatArray, dict[str, Any] | None]: ...
def odeint(
    params: Mapping[str, ArrayLike] | NeuralODE | ResNet,
    X: ArrayLike,
    *,
    T: float | None = None,
    substeps: int | None = None,
    method: Method | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    augment: int | None = None,
    t: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    step_control: StepControl | None = None,
    grid: ArrayLike | None = None,
    stats: bool = False,
) -> FloatArray | tuple[FloatArray, dict[str, Any] | None]:
    """Integrate ``x' = f(theta(t), x)`` from ``x(0) = [X, 0]`` over ``[0, T]``.

    Parameters
    ----------
    params : mapping, resode.NeuralODE or resode.ResNet
        Field parameters as in :class:`resode.NeuralODE` (``W``, ``b`` or ``W1``, ``b1``,
        ``W2``, ``b2``; leading axis = pieces); other keys (``P``, ``c``) are ignored. Their
        dtype (float32 or float64) is the dtype of the computation. Or a model: its
        parameters and its ``T``, ``substeps``, ``method``, ``field``, ``activation`` and
        ``augment`` (a ResNet: ``layers`` explicit Euler steps of size ``h``); the options
        below must then be left out.
    X : array_like, shape (N, dim)
        Initial states, augmented with ``augment`` zero columns to ``D = dim + augment``.
    T : float, optional
        The final time, > 0; required with a params dict.
    substeps : int, optional
        Integrator steps per piece (default 1): ``steps = pieces * substeps``,
        ``dt = T / steps``.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, optional
        The fixed-step method (default ``"rk4"``) or an adaptive pair (docs/guide/adaptive.md).
    field : {"outside", "inside", "bottleneck"}, optional
        Default: the field the keys name (``bottleneck`` for W1, b1, W2, b2; ``outside`` for
        W, b).
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        Default ``"tanh"``.
    augment : int, optional
        Zero columns appended to ``X`` (default 0).
    t : array_like of float, shape (Q,), optional
        Output times, sorted, in ``[0, T]``: the dense output of the method's continuous
        extension, computed in the same sweep. Default: the step grid for a fixed-step method,
        the piece boundaries ``k T / pieces`` for an adaptive one.
    rtol : float, optional
        Adaptive methods only (a ValueError with a fixed-step method), as the four below:
        the relative tolerance (default ``1e-7``).
    atol : float, optional
        The absolute tolerance (default ``1e-9``).
    first_step : float, optional
        The first step (default: Hairer's heuristic).
    max_steps : int, optional
        The attempted steps allowed per sample (default ``100_000``).
    step_control : {"sample", "batch"}, optional
        Per-sample step sequences (default) or one for the whole batch.
    grid : list of N arrays, or one array, optional
        Replay: step exactly on these accepted times (each from 0 to T, with every piece
        boundary), without error control, e.g. ``stats["grid"]`` of an earlier run. The map
        :func:`odeint_vjp` differentiates.
    stats : bool, default False
        Also return the statistics of an adaptive run (see ``resode.models.summarize_stats``:
        ``nfev``, ``accepted``, ``rejected`` totals and per-sample min/median/max, ``grid``).

    Returns
    -------
    numpy.ndarray, shape (steps + 1, N, D) or (Q, N, D)
        The states on the step grid ``t_j = j dt`` or at the times ``t`` (adaptive methods: at
        ``t``, default the ``pieces + 1`` piece boundaries). With ``stats``: ``(states,
        stats)`` (``stats`` None for a fixed-step method or a replay).

    Raises
    ------
    ValueError
        If ``X`` or the parameters have the wrong shape, an option is out of range or does
        not apply to the method, or a model is passed with options of its own.
    resode.NonFiniteError
        If a state becomes NaN or Inf.
    resode.StepSizeError
        If an adaptive method's step size control fails for a sample.

    Examples
    --------
    >>> import numpy as np, resode
    >>> params = resode.NeuralODE(2, pieces=4, seed=0).params
    >>> resode.odeint(params, np.ones((3, 2)), T=1.0, substeps=2).shape
    (9, 3, 2)
    >>> model = resode.NeuralODE(2, T=2.0, pieces=4, augment=1, seed=0)
    >>> resode.odeint(model, np.ones((3, 2))).shape
    (5, 3, 3)
    >>> x, st = resode.odeint(params, np.ones((3, 2)), T=1.0, method="dopri5", rtol=1e-6,
    ...                       t=[0.25, 1.0], stats=True)
    >>> x.shape, st["accepted"] > 0
    ((2, 3, 2), True)
    """
    options = {"T": T, "substeps": substeps, "method": method, "field": field,
               "activation": activation, "augment": augment}  # fmt: skip
    given = {"rtol": rtol, "atol": atol, "first_step": first_step, "max_steps": max_steps,
             "step_control": step_control}  # fmt: skip
    Xc, theta, sweep, _, T_end = _prepare(params, X, options)
    args = _dense_args(params, sweep, T_end, given)
    times = _times(t, T_end, theta[0].shape[0], sweep["method"])
    if times is None and grid is None:
        states, run = _core.trajectory(Xc, theta, **sweep), None
    else:
        states, run = _core.adaptive_solve(
            Xc, theta, **args, t=times if times is not None else [T_end], grid=grid
        )
    if not stats:
        return states
    return states, None if run is None else summarize_stats(run)


def odeint_vjp(
    params: Mapping[str, ArrayLike] | NeuralODE | ResNet,
    X: ArrayLike,
    cotangent: ArrayLike,
    *,
    T: float | None = None,
    substeps: int | None = None,
    method: Method | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    augment: int | None = None,
    gradient: Gradient | None = None,
    checkpoints: int | None = None,
    t: ArrayLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    step_control: StepControl | None = None,
    grid: ArrayLike | None = None,
) -> tuple[dict[str, FloatArray], FloatArray]:
    """Return the vector-Jacobian product of the flow map of :func:`odeint`.

    The map is ``X -> x(T)`` (the last state of :func:`odeint`), or
    ``X -> (x_0, ..., x_steps)`` (every state :func:`odeint` returns).

    Parameters
    ----------
    params : mapping, resode.NeuralODE or resode.ResNet
        The field parameters (their dtype is the computation's), or a model, as for
        :func:`odeint`.
    X : array_like, shape (N, dim)
        Initial states.
    cotangent : array_like, shape (N, D) or (steps + 1, N, D)
        ``v``, a cotangent on the final state ``x(T)`` (``D = dim + augment``), or ``v_j`` on
        every state ``x_j`` of the step grid (a loss on the whole trajectory: several times,
        a turnpike term). The discrete reverse sweep adds ``v_j`` when it reaches ``x_j``; the
        continuous adjoint takes it as a jump ``a(t_j) += v_j``.
    T : float, optional
        The final time, > 0; required with a params dict (the options below, as for
        :func:`odeint`, must be left out with a model).
    substeps : int, optional
        Integrator steps per piece (default 1).
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, optional
        The fixed-step method (default ``"rk4"``) or an adaptive pair.
    field : {"outside", "inside", "bottleneck"}, optional
        Default: the field the keys name.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        Default ``"tanh"``.
    augment : int, optional
        Zero columns appended to ``X`` (default 0).
    gradient : {"discrete", "adjoint"}
        Exact reverse sweep of the integrator (the default), or the continuous backsolve
        adjoint (see :class:`resode.NeuralODE`). With a model: the model's.
    checkpoints : int or None
        Discrete gradient only: number of stored step states (see :class:`resode.NeuralODE`).
        With a model: the model's.
    t : array_like of float, shape (Q,), optional
        As for :func:`odeint`; the cotangent is then ``(Q, N, D)``, one ``v_q`` on each dense
        output ``x(t_q)`` (the interpolant is part of the differentiated map).
    rtol : float, optional
        As for :func:`odeint`, as the four below. An adaptive method's gradient is the exact
        gradient of the computed solution with its accepted steps held constant (the
        step-size controller is not differentiated); the cotangent is ``(N, D)`` on ``x(T)``,
        or on the states at ``t`` (default: the ``pieces + 1`` piece boundaries).
    atol : float, optional
        The absolute tolerance (default ``1e-9``).
    first_step : float, optional
        The first step (default: Hairer's heuristic).
    max_steps : int, optional
        The attempted steps allowed per sample (default ``100_000``).
    step_control : {"sample", "batch"}, optional
        Per-sample step sequences (default) or one for the whole batch.
    grid : list of N arrays, or one array, optional
        Replay these accepted times, as for :func:`odeint`.

    Returns
    -------
    grads : dict of str to numpy.ndarray
        ``v^T d x(T) / d theta`` (or ``sum_j v_j^T d x_j / d theta``) for each field
        parameter (same keys, shapes, dtype).
    dX : numpy.ndarray, shape (N, dim)
        ``v^T d x(T) / d X`` (or ``sum_j v_j^T d x_j / d X``); the augmented zero columns are
        not inputs and are dropped.

    Raises
    ------
    ValueError
        If ``cotangent`` does not have one of the shapes above, an option is out of range,
        or a model is passed with options of its own (``gradient``, ``checkpoints``).
    resode.StepSizeError
        If an adaptive method's step size control fails for a sample.

    Examples
    --------
    >>> import numpy as np, resode
    >>> params = resode.NeuralODE(2, pieces=4, seed=0).params
    >>> grads, dX = resode.odeint_vjp(params, np.ones((3, 2)), np.ones((3, 2)), T=1.0)
    >>> grads["W"].shape, dX.shape
    ((4, 2, 2), (3, 2))
    >>> every = np.ones((5, 3, 2))  # a cotangent on each of the 4 + 1 states
    >>> resode.odeint_vjp(params, np.ones((3, 2)), every, T=1.0)[1].shape
    (3, 2)
    """
    options = {"T": T, "substeps": substeps, "method": method, "field": field,
               "activation": activation, "augment": augment}  # fmt: skip
    if isinstance(params, (NeuralODE, ResNet)):
        if gradient is not None or checkpoints is not None:
            raise ValueError("gradient and checkpoints come from the model when a model is passed")
        gradient = getattr(params, "gradient", "discrete")
        checkpoints = getattr(params, "checkpoints", None)
    Xc, theta, sweep, names, T_end = _prepare(params, X, options)
    gradient = "discrete" if gradient is None else gradient
    check_choice("gradient", gradient, GRADIENTS)
    K = 0 if checkpoints is None else check_int("checkpoints", checkpoints, 1)
    if K and gradient != "discrete":
        raise ValueError("checkpoints applies to gradient='discrete' only")
    N, D = Xc.shape[0], theta[0].shape[2]
    given = {"rtol": rtol, "atol": atol, "first_step": first_step, "max_steps": max_steps,
             "step_control": step_control}  # fmt: skip
    args = _dense_args(params, sweep, T_end, given)
    if sweep["method"] in ADAPTIVE_METHODS or t is not None or grid is not None:
        if gradient != "discrete" and (t is not None or grid is not None):
            raise ValueError(
                "gradient='adjoint' takes the final state of an adaptive run only (no t, no "
                "grid); use gradient='discrete' for dense output and replays"
            )
        v = as_float_array("cotangent", cotangent, Xc.dtype)
        times = _times(t, T_end, theta[0].shape[0], sweep["method"])
        if t is None and v.shape == (N, D):
            times = None  # a cotangent on the final state
        Q = None if times is None else len(times)
        if v.shape != ((N, D) if Q is None else (Q, N, D)):
            expected = f"({N}, {D})" if Q is None else f"({Q}, {N}, {D}) (one per time of t)"
            raise ValueError(f"cotangent must have shape {expected}, got shape {v.shape}")
        dtheta, dX, _ = _core.adaptive_vjp(
            Xc, v, theta, **args, t=times, grid=grid, gradient=gradient, checkpoints=K
        )
        return dict(zip(names, dtheta)), dX
    states = theta[0].shape[0] * sweep["substeps"] + 1
    v = as_float_array("cotangent", cotangent, Xc.dtype)
    if v.shape not in ((N, D), (states, N, D)):
        raise ValueError(
            f"cotangent must have shape ({N}, {D}) (the final state) or ({states}, {N}, {D}) "
            f"(every state of the step grid), got shape {v.shape}"
        )
    dtheta, dX = _core.vjp(Xc, v, theta, **sweep, gradient=gradient, checkpoints=K)
    return dict(zip(names, dtheta)), dX
