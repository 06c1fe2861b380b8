"""Functional entry points of the neural CDE, beside :func:`resode.odeint`: the hidden states
of a batch of series, and the pull-back of a cotangent on them to the parameters and the
observations (a vector-Jacobian product). No model object, no loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core
from ._typing import ArrayLike, FloatArray
from ._validation import as_float_array, check_choice, check_int
from .models import (
    ACTIVATIONS,
    FIELDS,
    INTERPOLATIONS,
    NeuralCDE,
    as_series,
    as_times,
    cde_adaptive_options,
    check_cde_method,
    field_param_names,
)
from .models.options import Activation, Field, Gradient, Interpolation, Method
from .models.series import as_window

__all__ = ["cdeint", "cdeint_vjp"]


def _field_of(params: Mapping[str, Any]) -> str:
    """``bottleneck`` for W1, b1, W2, b2; ``outside`` (the default field) for W, b."""
    if all(n in params for n in field_param_names("bottleneck")):
        return "bottleneck"
    if all(n in params for n in field_param_names("outside")):
        return "outside"
    raise ValueError(
        "params must hold 'A', 'a' and the field's arrays: 'W', 'b' (field 'outside' or "
        f"'inside') or 'W1', 'b1', 'W2', 'b2' (field 'bottleneck'); got keys {sorted(params)}"
    )


def _options(params: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The core's options: the defaults, or the field inferred from ``params``' keys."""
    field = given["field"] if given["field"] is not None else _field_of(params)
    output_activation = given["output_activation"]
    if output_activation is not None:
        check_choice("output_activation", output_activation, ACTIVATIONS)
    method = check_cde_method("rk4" if given["method"] is None else given["method"])
    adaptive = {key: given[key] for key in ("rtol", "atol", "first_step", "max_steps")}
    return {
        **cde_adaptive_options(method, adaptive),
        "field": check_choice("field", field, FIELDS),
        "activation": check_choice("activation", given["activation"] or "tanh", ACTIVATIONS),
        "output_activation": output_activation,
        "interpolation": check_choice(
            "interpolation", given["interpolation"] or "cubic", INTERPOLATIONS
        ),
        "method": method,
        "substeps": check_int("substeps", 1 if given["substeps"] is None else given["substeps"], 1),
        "window": None if given["window"] is None else as_window(given["window"]),
    }


def _prepare(
    params: Any, U: Any, times: Any, t: Any, given: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, Any]]:
    """(params as arrays of one dtype, U, times, the core's options incl. ``t``)."""
    if isinstance(params, NeuralCDE):
        set_ = sorted(k for k, v in given.items() if v is not None)
        if set_:
            raise ValueError(
                f"{', '.join(set_)}: taken from the model when a model is passed; pass "
                "model.params with the options to change them"
            )
        options = params.core_options()
        params = params.params
    elif isinstance(params, Mapping):
        options = _options(params, given)
    else:
        raise TypeError(
            f"params must be a dict of arrays ('A', 'a', the field's) or a resode.NeuralCDE, got "
            f"{type(params).__name__}"
        )
    if "A" not in params:
        raise ValueError(f"params must hold 'A' (state, channels) and 'a' (state,); got keys "
                         f"{sorted(params)}")  # fmt: skip
    single = np.asarray(params["A"]).dtype == np.float32
    dtype = np.dtype(np.float32 if single else np.float64)
    arrays = {str(k): as_float_array(f"params['{k}']", v, dtype) for k, v in params.items()}
    Uc = as_series(U, None, dtype)
    grid = as_times(times, Uc.shape[0], Uc.shape[1])
    if t is not None:
        t = as_float_array("t", t, np.dtype(np.float64))
        if t.ndim != 1:
            raise ValueError(f"t must be a 1-d array of times, got shape {t.shape}")
    return arrays, Uc, grid, {**options, "t": t}


def cdeint(
    params: Mapping[str, ArrayLike] | NeuralCDE,
    U: ArrayLike,
    times: ArrayLike | None = None,
    *,
    t: ArrayLike | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    output_activation: Activation | None = None,
    interpolation: Interpolation | None = None,
    method: Method | None = None,
    substeps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    window: tuple[float, float] | None = None,
) -> FloatArray:
    """Integrate the neural CDE ``dz/dt = F(z) dX/dt`` over a batch of series.

    The hidden state starts at ``z(t_0) = A x_0 + a``; the result is each sample's state at its own
    end time, or the states at the times ``t``. The mathematics, the paths (NaN for missing values
    and padding) and the step grid are :class:`resode.NeuralCDE`'s; this is the function without a
    model or a loss.

    Parameters
    ----------
    params : dict of numpy.ndarray, or resode.NeuralCDE
        ``A`` (state, channels), ``a`` (state,) and the field's arrays: ``W``
        (pieces, state*channels, state), ``b`` (pieces, state*channels), or ``W1``
        (pieces, hidden, state), ``b1``, ``W2`` (pieces, state*channels, hidden), ``b2``;
        ``P`` and ``c`` may be present (they are not used). float32 (if ``A`` is) or float64:
        ``U`` and the others are converted to it. A model brings its parameters and options.
    U : array_like, shape (N, L, channels)
        Observations; NaN for missing values and the padding of shorter series.
    times : array_like, shape (L,) or (N, L), optional
        Observation times, shared or per sample; default ``0, 1, ..., L-1``.
    t : array_like, shape (Q,), optional
        Sorted output times within ``[min_i t_{i,0}, max_i T_i]``.
    field : {"outside", "inside", "bottleneck"}, optional
        Default: ``"bottleneck"`` for ``W1``... keys, ``"outside"`` for ``W``, ``b``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        Default ``"tanh"``.
    output_activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        Applied to the field's outputs; default none.
    interpolation : {"cubic", "linear"}, optional
        Default ``"cubic"``.
    method : {"rk4", "midpoint", "euler", "dopri5", "tsit5", "bosh3"}, optional
        Default ``"rk4"``. The adaptive methods control each sample's steps on their own and
        land on every observation time and piece boundary (:class:`resode.NeuralCDE`).
    substeps : int, optional
        Steps per interval between observations (fixed-step methods); default 1.
    rtol, atol, first_step, max_steps : float, float, float, int, optional
        Adaptive methods only: tolerances, the first step (None: Hairer's heuristic) and the
        most attempted steps per sample; defaults as docs/guide/adaptive.md.
    window : (float, float), optional
        ``(t_start, t_end)``, the window the field's pieces split equally (a model brings its
        own, :class:`resode.NeuralCDE`); default: the batch's ``[min_i t_{i,0}, max_i T_i]``.

    Returns
    -------
    numpy.ndarray
        ``(N, state)``: ``z_i(T_i)``; with ``t``: ``(len(t), N, state)``.

    Raises
    ------
    ValueError, TypeError
        On bad arguments, naming them.

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.NeuralCDE(2, 3, seed=0)
    >>> U = np.random.default_rng(0).normal(size=(4, 5, 2))
    >>> resode.cdeint(model.params, U).shape, resode.cdeint(model, U, t=[0.0, 4.0]).shape
    ((4, 3), (2, 4, 3))
    """
    given = {"field": field, "activation": activation, "output_activation": output_activation,
             "interpolation": interpolation, "method": method, "substeps": substeps,
             "rtol": rtol, "atol": atol, "first_step": first_step,
             "max_steps": max_steps, "window": window}  # fmt: skip
    arrays, Uc, grid, options = _prepare(params, U, times, t, given)
    return _core.cde_solve(arrays, Uc, grid, **options)


def cdeint_vjp(
    params: Mapping[str, ArrayLike] | NeuralCDE,
    U: ArrayLike,
    times: ArrayLike | None,
    cotangent: ArrayLike,
    *,
    t: ArrayLike | None = None,
    field: Field | None = None,
    activation: Activation | None = None,
    output_activation: Activation | None = None,
    interpolation: Interpolation | None = None,
    method: Method | None = None,
    substeps: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    first_step: float | None = None,
    max_steps: int | None = None,
    window: tuple[float, float] | None = None,
    gradient: Gradient = "discrete",
) -> tuple[dict[str, FloatArray], FloatArray]:
    """Pull a cotangent on :func:`cdeint`'s output back to the parameters and observations.

    The vector-Jacobian product of :func:`cdeint`, by the exact reverse sweep of the discrete
    forward (for an adaptive method, through its accepted steps, held fixed).

    Parameters
    ----------
    params : dict of numpy.ndarray, or resode.NeuralCDE
        As in :func:`cdeint`.
    U : array_like, shape (N, L, channels)
        As in :func:`cdeint`.
    times : array_like, shape (L,) or (N, L), or None
        As in :func:`cdeint` (None: ``0, 1, ..., L-1``).
    cotangent : array_like
        Of :func:`cdeint`'s output shape: ``(N, state)``, or ``(len(t), N, state)`` with ``t``.
    t : array_like, shape (Q,), optional
        As in :func:`cdeint`.
    field : {"outside", "inside", "bottleneck"}, optional
        As in :func:`cdeint`.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        As in :func:`cdeint`.
    output_activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, optional
        As in :func:`cdeint`.
    interpolation : {"cubic", "linear"}, optional
        As in :func:`cdeint`.
    method : {"rk4", "midpoint", "euler", "dopri5", "tsit5", "bosh3"}, optional
        As in :func:`cdeint`.
    substeps : int, optional
        As in :func:`cdeint`.
    rtol, atol, first_step, max_steps : float, float, float, int, optional
        As in :func:`cdeint`.
    window : (float, float), optional
        As in :func:`cdeint`.
    gradient : {"discrete", "adjoint"}, default "discrete"
        ``"adjoint"``: the continuous adjoint (backsolve over each sample's step grid
        reversed, an adaptive method's accepted grid, with the same tableau); it converges to
        the discrete gradient as the steps shrink.

    Returns
    -------
    grads : dict of numpy.ndarray
        Keyed, shaped and typed as the parameters (``P`` and ``c``, when present, get zeros).
    dU : numpy.ndarray, shape (N, L, channels)
        The pull-back to ``U``; exactly 0 where ``U`` is NaN.

    Raises
    ------
    ValueError, TypeError
        On bad arguments, naming them.

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.NeuralCDE(2, 3, seed=0)
    >>> U = np.random.default_rng(0).normal(size=(4, 5, 2))
    >>> grads, dU = resode.cdeint_vjp(model.params, U, None, np.ones((4, 3)))
    >>> grads["W"].shape, dU.shape
    ((1, 6, 3), (4, 5, 2))
    """
    given = {"field": field, "activation": activation, "output_activation": output_activation,
             "interpolation": interpolation, "method": method, "substeps": substeps,
             "rtol": rtol, "atol": atol, "first_step": first_step,
             "max_steps": max_steps, "window": window}  # fmt: skip
    arrays, Uc, grid, options = _prepare(params, U, times, t, given)
    v = as_float_array("cotangent", cotangent, Uc.dtype)
    gradient = check_choice("gradient", gradient, ("discrete", "adjoint"))
    return _core.cde_vjp(arrays, Uc, grid, v, **options, gradient=gradient)
