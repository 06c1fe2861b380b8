"""Functional entry points for embedding the flow map in other pipelines: integrate a batch of
states through the neural ODE, and pull a cotangent on the final state back to the parameters
and the inputs (a vector-Jacobian product). No model object, no loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core
from ._validation import as_features, as_float_array, check_choice, check_int, check_positive
from .models import ACTIVATIONS, FIELDS, GRADIENTS, METHODS, field_param_names

__all__ = ["odeint", "odeint_vjp"]


def _prepare(
    params: Mapping[str, Any],
    X: Any,
    T: float,
    substeps: int,
    method: str,
    field: str,
    activation: str,
    augment: int,
) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any], tuple[str, ...]]:
    check_choice("field", field, FIELDS)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("method", method, METHODS)
    T = check_positive("T", T)
    substeps = check_int("substeps", substeps, 1)
    augment = check_int("augment", augment, 0)
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
    Xc = as_features(X, D - augment, dtype)
    steps = max(pieces, 1) * substeps
    if not T / steps > 0:
        raise ValueError(f"T must be large enough that T / steps > 0, got T={T}")
    sweep = {
        "field": field,
        "activation": activation,
        "method": method,
        "dt": T / steps,
        "substeps": substeps,
        "augment": augment,
    }
    return Xc, theta, sweep, names


def odeint(
    params: Mapping[str, Any],
    X: Any,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str = "outside",
    activation: str = "tanh",
    augment: int = 0,
) -> np.ndarray:
    """Integrate ``x' = f(theta(t), x)`` from ``x(0) = [X, 0]`` over ``[0, T]``.

    Parameters
    ----------
    params : mapping
        Field parameters as in :class:`resode.NeuralODE` (``W``, ``b`` or ``W1``, ``b1``,
        ``W2``, ``b2``; leading axis = pieces); other keys (``P``, ``c``) are ignored. Their
        dtype (float32 or float64) is the dtype of the computation.
    X : array_like, shape (N, dim)
        Initial states, augmented with ``augment`` zero columns to ``D = dim + augment``.
    T, substeps, method, field, activation, augment
        As for :class:`resode.NeuralODE`: ``steps = pieces * substeps``, ``dt = T / steps``.

    Returns
    -------
    numpy.ndarray, shape (steps + 1, N, D)
        The states on the step grid ``t_j = j dt``.

    Examples
    --------
    >>> import numpy as np, resode
    >>> params = resode.NeuralODE(2, pieces=4, seed=0).params
    >>> resode.odeint(params, np.ones((3, 2)), T=1.0, substeps=2).shape
    (9, 3, 2)
    """
    Xc, theta, sweep, _ = _prepare(params, X, T, substeps, method, field, activation, augment)
    return _core.trajectory(Xc, theta, **sweep)


def odeint_vjp(
    params: Mapping[str, Any],
    X: Any,
    cotangent: Any,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str = "outside",
    activation: str = "tanh",
    augment: int = 0,
    gradient: str = "discrete",
    checkpoints: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vector-Jacobian product of the flow map ``X -> x(T)`` (the last state of :func:`odeint`).

    Parameters
    ----------
    params, X, T, substeps, method, field, activation, augment
        As for :func:`odeint`.
    cotangent : array_like, shape (N, D)
        ``v``, a cotangent on the final state ``x(T)`` (``D = dim + augment``).
    gradient : {"discrete", "adjoint"}
        Exact reverse sweep of the integrator, or the continuous backsolve adjoint
        (see :class:`resode.NeuralODE`).
    checkpoints : int or None
        Discrete gradient only: number of stored step states (see :class:`resode.NeuralODE`).

    Returns
    -------
    grads : dict
        ``v^T d x(T) / d theta`` for each field parameter (same keys, shapes, dtype).
    dX : numpy.ndarray, shape (N, dim)
        ``v^T d x(T) / d X`` (the augmented zero columns are not inputs and are dropped).

    Examples
    --------
    >>> import numpy as np, resode
    >>> params = resode.NeuralODE(2, pieces=4, seed=0).params
    >>> grads, dX = resode.odeint_vjp(params, np.ones((3, 2)), np.ones((3, 2)), T=1.0)
    >>> grads["W"].shape, dX.shape
    ((4, 2, 2), (3, 2))
    """
    Xc, theta, sweep, names = _prepare(params, X, T, substeps, method, field, activation, augment)
    check_choice("gradient", gradient, GRADIENTS)
    K = 0 if checkpoints is None else check_int("checkpoints", checkpoints, 1)
    if K and gradient != "discrete":
        raise ValueError("checkpoints applies to gradient='discrete' only")
    D = theta[0].shape[2]
    v = as_float_array("cotangent", cotangent, Xc.dtype)
    if v.shape != (Xc.shape[0], D):
        raise ValueError(f"cotangent must have shape ({Xc.shape[0]}, {D}), got shape {v.shape}")
    dtheta, dX = _core.vjp(Xc, v, theta, **sweep, gradient=gradient, checkpoints=K)
    return dict(zip(names, dtheta)), dX
