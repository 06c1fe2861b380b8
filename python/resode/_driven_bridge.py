"""What the input-driven neural ODE of the PyTorch and JAX bridges (``resode.torch.odeint`` /
``resode.torch.NeuralODE`` with ``u=``, ``resode.jax.odeint`` with ``u=``) share: the checks
of the options against the shapes of the parameters, the initial states, the inputs and their
times (on shapes only, so they also run on the symbolic tensors of ``torch.compile`` and on
JAX tracers), and the calls into the core on NumPy views of the frameworks' buffers.

The model (the contract of ``resode._core.driven_solve``): ``x(0) = [X, 0]`` (N, D),
``dx/dt = f_k([x; u(t)])`` on ``[0, T]``, ``f_k`` one of resode's fields whose first layer
reads the ``D + C`` values of ``[x; u]`` (``W (pieces, D, D + C)``, ``b (pieces, D)``, or
``W1 (pieces, H, D + C)``, ``b1``, ``W2 (pieces, D, H)``, ``b2``), ``u(t)`` the path
through the observations ``U (N, L, C)`` at ``times``."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._validation import check_choice, check_int
from .models import ACTIVATIONS, FIELDS, FIXED_METHODS, INTERPOLATIONS, field_param_names


@dataclass(frozen=True)
class DrivenFlow:
    """The resolved options of one input-driven flow: the keyword arguments of the core's
    ``driven_solve`` / ``driven_vjp``, ``augment`` and ``trajectory``; hashable (JAX uses it
    as a static argument)."""

    T: float
    field: str
    activation: str
    interpolation: str
    method: str
    substeps: int
    augment: int
    trajectory: bool

    def core_options(self) -> dict[str, Any]:
        """Keyword arguments of ``_core.driven_solve`` / ``_core.driven_vjp`` but ``t``."""
        return {"T": self.T, "field": self.field, "activation": self.activation,
                "interpolation": self.interpolation, "method": self.method,
                "substeps": self.substeps}  # fmt: skip

    def names(self) -> tuple[str, ...]:
        """The field's parameters in core order."""
        return field_param_names(self.field)

    def grid(self, pieces: int) -> np.ndarray | None:
        """The output times of a trajectory, the step grid ``j T / steps`` (float64, as
        ``resode.NeuralODE(inputs=C).trajectory``); None for the final state only."""
        if not self.trajectory:
            return None
        steps = pieces * self.substeps
        grid: np.ndarray = self.T * np.arange(steps + 1) / steps
        return grid

    def output_shape(self, X_shape: Sequence[Any], W_shape: Sequence[Any]) -> tuple[Any, ...]:
        """``(N, D)``, or ``(steps + 1, N, D)`` for the trajectory. N and D are kept as given
        (symbolic under ``torch.compile(dynamic=True)``)."""
        N, D = X_shape[0], X_shape[1] + self.augment
        return (int(W_shape[0]) * self.substeps + 1, N, D) if self.trajectory else (N, D)


def _shape(params: Mapping[str, Any], name: str) -> tuple[Any, ...]:
    return tuple(params[name].shape)


def _check_params(params: Mapping[str, Any], field: str, D: Any, C: Any) -> None:
    """The field's arrays, the first layer of width ``D + C``."""
    names = field_param_names(field)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params is missing {missing} for field '{field}'")
    first = _shape(params, names[0])
    if len(first) != 3:
        raise ValueError(f"params['{names[0]}'] must be 3-D (pieces, *, D + C), got {first}")
    K, H = first[0], first[1]
    expected: dict[str, tuple[Any, ...]] = (
        {"W1": (K, H, D + C), "b1": (K, H), "W2": (K, D, H), "b2": (K, D)}
        if field == "bottleneck"
        else {"W": (K, D, D + C), "b": (K, D)}
    )
    for n in names:
        if _shape(params, n) != expected[n]:
            raise ValueError(
                f"params['{n}'] must have shape {expected[n]} (D = {D} state, C = {C} input "
                f"channels), got {_shape(params, n)}"
            )


def _check_data(
    X_shape: Sequence[Any], U_shape: Sequence[Any], times_shape: Sequence[Any] | None
) -> None:
    """X (N, dim), u (N, L, C) with L >= 2, times (L,) or (N, L)."""
    if len(X_shape) != 2:
        raise ValueError(f"X must have shape (N, dim), got {tuple(X_shape)}")
    N = X_shape[0]
    if len(U_shape) != 3 or U_shape[0] != N or not U_shape[1] >= 2:
        raise ValueError(
            f"u must have shape ({N}, L, C) (samples like X, L >= 2 observations, input "
            f"channels), got {tuple(U_shape)}"
        )
    L = U_shape[1]
    if times_shape is not None and tuple(times_shape) not in ((L,), (N, L)):
        raise ValueError(
            f"times must have shape ({L},) (shared) or ({N}, {L}) (per sample) like u, got "
            f"{tuple(times_shape)}"
        )


def _check_time(T: Any) -> float:
    """``T`` if it is a finite real > 0 (compared, not ``math.isfinite``: a symbolic float of
    ``torch.compile`` stays symbolic)."""
    if isinstance(T, bool) or not isinstance(T, (int, float, np.integer, np.floating)):
        raise TypeError(f"T must be a real number, got {type(T).__name__}")
    if not (0 < T < math.inf):  # False for NaN too
        raise ValueError(f"T must be finite and > 0, got {T}")
    return float(T)


def flow(
    params: Mapping[str, Any],
    X_shape: Sequence[Any],
    U_shape: Sequence[Any],
    times_shape: Sequence[Any] | None,
    *,
    T: Any,
    substeps: Any,
    method: Any,
    field: Any,
    activation: Any,
    augment: Any,
    interpolation: Any,
    gradient: Any,
    checkpoints: Any,
    trajectory: Any,
) -> tuple[DrivenFlow, tuple[str, ...]]:
    """Check the options against the shapes (``times_shape`` None: the default times);
    returns the DrivenFlow and the field's parameter names in core order (other keys of
    ``params`` are ignored)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of field parameters, got {type(params).__name__}")
    field = check_choice("field", field, FIELDS)
    _check_data(X_shape, U_shape, times_shape)
    augment = check_int("augment", augment, 0)
    _check_params(params, field, X_shape[1] + augment, U_shape[2])
    if gradient != "discrete" or checkpoints is not None:
        raise ValueError(
            "u (inputs) runs with gradient='discrete' and without checkpoints, got "
            f"gradient={gradient!r}, checkpoints={checkpoints!r}"
        )
    if not isinstance(trajectory, (bool, np.bool_)):
        raise TypeError(f"trajectory must be a bool, got {type(trajectory).__name__}")
    resolved = DrivenFlow(
        T=_check_time(T),
        field=field,
        activation=check_choice("activation", activation, ACTIVATIONS),
        interpolation=check_choice(
            "interpolation", "cubic" if interpolation is None else interpolation, INTERPOLATIONS
        ),
        method=check_choice("method", method, FIXED_METHODS),
        substeps=check_int("substeps", substeps, 1),
        augment=augment,
        trajectory=bool(trajectory),
    )
    return resolved, resolved.names()


class _Shaped:
    """Stands for an array in the cached check: only its shape matters."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


@functools.lru_cache(maxsize=1024)
def cached_flow(
    shapes: tuple[tuple[str, tuple[int, ...]], ...],
    X_shape: tuple[int, ...],
    U_shape: tuple[int, ...],
    times_shape: tuple[int, ...] | None,
    **options: Any,
) -> tuple[DrivenFlow, tuple[str, ...]]:
    """:func:`flow` from the parameters' names and shapes, remembered: a training loop checks
    the same options and shapes on every call (hashable options only)."""
    return flow({n: _Shaped(s) for n, s in shapes}, X_shape, U_shape, times_shape, **options)


def _x0(flow: DrivenFlow, X: np.ndarray) -> np.ndarray:
    """``[X, 0]`` (N, D): X itself (no copy) without augmentation."""
    if flow.augment == 0:
        return X
    x0 = np.zeros((X.shape[0], X.shape[1] + flow.augment), dtype=X.dtype)
    x0[:, : X.shape[1]] = X
    return x0


def solve(
    flow: DrivenFlow, theta: Sequence[np.ndarray], X: np.ndarray, U: np.ndarray, times: Any
) -> np.ndarray:
    """``_core.driven_solve`` on NumPy views (no copy of C-contiguous arrays of X's dtype):
    ``(N, D)`` or ``(steps + 1, N, D)``."""
    params = dict(zip(flow.names(), theta))
    t = flow.grid(int(theta[0].shape[0]))
    return _core.driven_solve(params, _x0(flow, X), U, times, **flow.core_options(), t=t)


def vjp(
    flow: DrivenFlow,
    theta: Sequence[np.ndarray],
    X: np.ndarray,
    U: np.ndarray,
    times: Any,
    cotangent: np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``_core.driven_vjp``: (the parameters' cotangents in core order, dX (N, dim), dU)."""
    params = dict(zip(flow.names(), theta))
    t = flow.grid(int(theta[0].shape[0]))
    grads, dx0, dU = _core.driven_vjp(params, _x0(flow, X), U, times, cotangent,
                                      **flow.core_options(), t=t)  # fmt: skip
    dX = dx0 if flow.augment == 0 else np.ascontiguousarray(dx0[:, : X.shape[1]])
    return [grads[n] for n in flow.names()], dX, dU
