"""What the neural-CDE layers of the PyTorch and JAX bridges (``resode.torch.NeuralCDE`` /
``resode.torch.cdeint``, ``resode.jax.cdeint``) share: the checks of the options against the
shapes of the parameters, the series and the times (on shapes only, so they also run on the
symbolic tensors of ``torch.compile`` and on JAX tracers), the calls into the core on NumPy
views of the frameworks' buffers, and the initial parameters of a module.

The model (the contract of ``resode._core.cde_solve``): ``z(t_0) = A x_0 + a``,
``dz/dt = reshape(F_k(z), (state, channels)) dX/dt`` with ``F_k`` one of resode's fields with
``state * channels`` outputs (row ``d * channels + c``)."""

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
class CdeFlow:
    """The resolved options of one neural CDE: the keyword arguments of the core's
    ``cde_solve`` / ``cde_vjp`` (without ``t``), hashable (JAX uses it as a static argument)."""

    field: str
    activation: str
    output_activation: str | None
    interpolation: str
    method: str
    substeps: int
    per_sample_times: bool
    has_t: bool

    def core_options(self) -> dict[str, Any]:
        """Keyword arguments of ``_core.cde_solve`` / ``_core.cde_vjp`` but ``t``."""
        return {"field": self.field, "activation": self.activation,
                "output_activation": self.output_activation,
                "interpolation": self.interpolation, "method": self.method,
                "substeps": self.substeps}  # fmt: skip

    def names(self) -> list[str]:
        """The parameters in core order: ``A``, ``a``, then the field's arrays."""
        return ["A", "a", *field_param_names(self.field)]

    def output_shape(
        self, U_shape: Sequence[Any], A_shape: Sequence[Any], t_shape: Sequence[Any] | None
    ) -> tuple[Any, ...]:
        """``(N, state)``, or ``(len(t), N, state)``. N is kept as given (a symbolic batch
        size under ``torch.compile`` stays symbolic)."""
        N, S = U_shape[0], A_shape[0]
        return (t_shape[0], N, S) if self.has_t and t_shape is not None else (N, S)


def field_of(params: Mapping[str, Any]) -> str:
    """The field the keys of ``params`` name: ``bottleneck`` for ``W1``, ``b1``, ``W2``,
    ``b2``; ``outside`` (the default field) for ``W``, ``b``."""
    if all(n in params for n in field_param_names("bottleneck")):
        return "bottleneck"
    if all(n in params for n in field_param_names("outside")):
        return "outside"
    raise ValueError(
        "params must hold 'A', 'a' and the field's arrays: 'W', 'b' (field 'outside' or "
        f"'inside') or 'W1', 'b1', 'W2', 'b2' (field 'bottleneck'); got keys {sorted(params)}"
    )


def _shape(params: Mapping[str, Any], name: str) -> tuple[Any, ...]:
    return tuple(params[name].shape)


def _expected_shapes(field: str, S: Any, C: Any, K: Any, H: Any) -> dict[str, tuple[Any, ...]]:
    """The shape of each parameter, for ``state`` S, ``channels`` C, ``pieces`` K and
    ``hidden`` H (bottleneck)."""
    O = S * C  # the field's output width
    shapes: dict[str, tuple[Any, ...]] = {"A": (S, C), "a": (S,)}
    if field == "bottleneck":
        shapes.update(W1=(K, H, S), b1=(K, H), W2=(K, O, H), b2=(K, O))
    else:
        shapes.update(W=(K, O, S), b=(K, O))
    return shapes


def _check_params(params: Mapping[str, Any], field: str, C: Any) -> None:
    """A (state, C), a (state,) and the field's arrays of matching shapes."""
    names = ["A", "a", *field_param_names(field)]
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params is missing {missing} for field '{field}'")
    A = _shape(params, "A")
    if len(A) != 2 or A[1] != C:
        raise ValueError(
            f"params['A'] must have shape (state, {C}) (channels = U's last axis), got {A}"
        )
    first = _shape(params, names[2])
    if len(first) != 3:
        raise ValueError(f"params['{names[2]}'] must be 3-D (pieces, *, state), got {first}")
    expected = _expected_shapes(field, A[0], C, first[0], first[1])
    for n in names:
        if _shape(params, n) != expected[n]:
            raise ValueError(
                f"params['{n}'] must have shape {expected[n]}, got {_shape(params, n)}"
            )


def _check_series(
    U_shape: Sequence[Any], times_shape: Sequence[Any], t_shape: Sequence[Any] | None
) -> bool:
    """U (N, L, C), times (L,) or (N, L), t (Q,): whether the times are per sample."""
    if len(U_shape) != 3:
        raise ValueError(
            f"U must have shape (N, L, C) (samples, observations, channels), got {tuple(U_shape)}"
        )
    N, L, _ = U_shape
    times_shape = tuple(times_shape)
    if times_shape not in ((L,), (N, L)):
        raise ValueError(
            f"times must have shape ({L},) (shared) or ({N}, {L}) (per sample) like U, got "
            f"{times_shape}"
        )
    if t_shape is not None and (len(t_shape) != 1 or not t_shape[0] >= 1):
        raise ValueError(f"t must be a non-empty 1-D array of times, got shape {tuple(t_shape)}")
    return len(times_shape) == 2


def flow(
    params: Mapping[str, Any],
    U_shape: Sequence[Any],
    times_shape: Sequence[Any],
    t_shape: Sequence[Any] | None,
    *,
    field: Any,
    activation: Any,
    output_activation: Any,
    interpolation: Any,
    method: Any,
    substeps: Any,
) -> tuple[CdeFlow, list[str]]:
    """Check the options against the shapes (``field`` None: from the keys of ``params``);
    returns the CdeFlow and the parameters' names in core order (other keys are ignored)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    field = check_choice("field", field_of(params) if field is None else field, FIELDS)
    per_sample = _check_series(U_shape, times_shape, t_shape)
    _check_params(params, field, U_shape[2])
    if output_activation is not None:
        output_activation = check_choice("output_activation", output_activation, ACTIVATIONS)
    resolved = CdeFlow(
        field=field,
        activation=check_choice("activation", activation, ACTIVATIONS),
        output_activation=output_activation,
        interpolation=check_choice("interpolation", interpolation, INTERPOLATIONS),
        method=check_choice("method", method, FIXED_METHODS),
        substeps=check_int("substeps", substeps, 1),
        per_sample_times=per_sample,
        has_t=t_shape is not None,
    )
    return resolved, resolved.names()


class _Shaped:
    """Stands for an array in the cached check: only its shape matters."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


@functools.lru_cache(maxsize=1024)
def cached_flow(
    shapes: tuple[tuple[str, tuple[int, ...]], ...],
    U_shape: tuple[int, ...],
    times_shape: tuple[int, ...],
    t_shape: tuple[int, ...] | None,
    **options: Any,
) -> tuple[CdeFlow, list[str]]:
    """:func:`flow` from the parameters' names and shapes, remembered: a training loop checks
    the same options and shapes on every call (hashable options only)."""
    return flow({n: _Shaped(s) for n, s in shapes}, U_shape, times_shape, t_shape, **options)


def solve(
    flow: CdeFlow,
    theta: Sequence[np.ndarray],
    U: np.ndarray,
    times: np.ndarray,
    t: np.ndarray | None,
) -> np.ndarray:
    """``_core.cde_solve`` on NumPy views (no copy of C-contiguous arrays of U's dtype):
    ``(N, state)`` or ``(len(t), N, state)``."""
    params = dict(zip(flow.names(), theta))
    return _core.cde_solve(params, U, times, **flow.core_options(), t=t)


def vjp(
    flow: CdeFlow,
    theta: Sequence[np.ndarray],
    U: np.ndarray,
    times: np.ndarray,
    t: np.ndarray | None,
    cotangent: np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray]:
    """``_core.cde_vjp``: (the parameters' cotangents in core order, dU)."""
    params = dict(zip(flow.names(), theta))
    grads, dU = _core.cde_vjp(params, U, times, cotangent, **flow.core_options(), t=t)
    return [grads[n] for n in flow.names()], dU


def initial_params(
    channels: int,
    state: int,
    field: str,
    hidden: int | None,
    pieces: int,
    dtype: np.dtype,
    seed: Any,
) -> dict[str, np.ndarray]:
    """Initial parameters of a neural CDE layer, ``torch.nn.Linear``'s rule: every array of a
    linear map with fan-in ``m`` uniform in ``[-1/sqrt(m), 1/sqrt(m)]`` (the fan-in is
    ``channels`` for ``A``, ``a``, ``hidden`` for ``W2``, ``b2``, ``state`` for the others),
    drawn in the order ``A``, ``a``, then the field's arrays from
    ``np.random.default_rng(seed)``."""
    if isinstance(seed, bool) or (seed is not None and not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be None or a non-negative integer, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed}")
    rng = np.random.default_rng(seed)
    H = state if hidden is None else hidden
    shapes = _expected_shapes(field, state, channels, pieces, H)
    fan_in = {"A": channels, "a": channels, "W2": H, "b2": H}
    params = {}
    for name, shape in shapes.items():
        bound = 1.0 / math.sqrt(fan_in.get(name, state))
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params
