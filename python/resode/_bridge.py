"""What the PyTorch and JAX bridges (``resode.torch``, ``resode.jax``) share: the checks of
``odeint``'s options against the parameters' shapes, done on shapes and dtypes only (so they
also run on the symbolic tensors of ``torch.compile`` and on JAX tracers), and the calls into
the core on NumPy views of the framework's buffers."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._validation import check_choice, check_int
from .models import (
    ACTIVATIONS,
    FIELDS,
    FIXED_METHODS,
    GRADIENTS,
    field_param_names,
    field_param_shapes,
)

# The largest stage tape a layer keeps from its forward for its backward (see Flow.kept); a
# larger one keeps the states only (as does checkpoints=).
STAGE_TAPE_BYTES = 256 * 2**20
# The stage tape is kept only where evaluating the stages costs at least this many
# multiply-adds per number the tape would hold: writing the tape to memory and reading it back
# costs more than evaluating a narrow field again from the state. Measured (one core, float64,
# rk4, a training step against the former one): the seed model (D = 3, bottleneck H = 50: 5.4
# per number) 1.25x (N = 2) to 2.8x (N = 1000) slower with the tape, the states 1.0x;
# D = 8 inside (2.7) both 1.02-1.04x; D = 32 outside (16) 0.81x with the tape, 0.88x with
# the states; D = 64 outside (32) 0.69x and 0.83x.
STAGE_TAPE_WORK = 16
_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}


@dataclass(frozen=True)
class Flow:
    """The resolved options of one flow: what the core's sweeps take, hashable (JAX uses it as
    a static argument)."""

    field: str
    activation: str
    method: str
    dt: float
    substeps: int
    augment: int
    gradient: str
    checkpoints: int
    trajectory: bool

    def sweep(self) -> dict[str, Any]:
        """Keyword arguments of ``_core.trajectory`` / ``_core.vjp``."""
        return {"field": self.field, "activation": self.activation, "method": self.method,
                "dt": self.dt, "substeps": self.substeps, "augment": self.augment}  # fmt: skip

    def stride(self, steps: int) -> int:
        """Steps between the states the forward keeps for the backward: 1 (every state), or
        ceil(steps / checkpoints) with ``checkpoints`` < steps (at most that many states, as
        the core's checkpointed gradient keeps)."""
        K = self.checkpoints
        return -(-steps // K) if 0 < K < steps else 1

    def kept(
        self,
        N: Any,
        W_shape: Sequence[int],
        itemsize: int,
        budget: int | None = None,
        min_work: float | None = None,
    ) -> tuple[bool, tuple[Any, ...]]:
        """(stages, shape) of what :func:`forward_with_states` keeps for the backward, for N
        samples (symbolic under ``torch.compile``) and parameters ``W_shape`` (the first):

        - the stage tape ``(steps, width, N)``, every step's state and stages (width per
          sample: D + (2 stages - 1) D + stages * the field's cache, 0, D or H), when there
          are no checkpoints, the stages cost at least :data:`STAGE_TAPE_WORK` multiply-adds
          per number of the tape (wide fields), and it takes at most ``budget`` bytes (default
          :data:`STAGE_TAPE_BYTES`): the backward evaluates no stage again;
        - else the states x_0, x_stride, ... ``(ceil(steps / stride), N, D)`` (no rows for a
          trajectory with stride 1: the output is the states), from which the backward
          recomputes each step's stages (and, between checkpoints, the states);
        - no rows for the adjoint gradient (it integrates back from the final state)."""
        pieces, H, D = (int(e) for e in W_shape)
        steps = pieces * self.substeps
        if self.gradient != "discrete":
            return False, (0, N, D)
        if self.checkpoints == 0:
            stages = _STAGES[self.method]
            cache = {"outside": 0, "inside": D, "bottleneck": H}[self.field]
            width = D + (2 * stages - 1) * D + stages * cache
            work = stages * D * H * (2 if self.field == "bottleneck" else 1)  # per sample-step
            limit = STAGE_TAPE_BYTES if budget is None else budget
            min_work = STAGE_TAPE_WORK if min_work is None else min_work
            if work >= min_work * width and steps * width * N * itemsize <= limit:
                return True, (steps, width, N)
        stride = self.stride(steps)
        rows = 0 if self.trajectory and stride == 1 else -(-steps // stride)
        return False, (rows, N, D)

    def output_shape(self, X_shape: Sequence[int], W_shape: Sequence[int]) -> tuple[int, ...]:
        """(N, D), or (steps + 1, N, D) for the trajectory. N is kept as given: a symbolic
        batch size under ``torch.compile`` stays symbolic (``int()`` would specialise the
        compiled graph to one batch size)."""
        N, D = X_shape[0], int(W_shape[2])
        return (int(W_shape[0]) * self.substeps + 1, N, D) if self.trajectory else (N, D)


class _Shaped:
    """Stands for an array in the cached check: only its shape matters."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


@functools.lru_cache(maxsize=1024)
def cached_flow(
    shapes: tuple[tuple[str, tuple[int, ...]], ...], X_shape: tuple[int, ...], **options: Any
) -> tuple[Flow, tuple[str, ...]]:
    """:func:`flow` from the parameters' names and shapes, remembered: a training loop checks
    the same options and shapes on every call (hashable options only)."""
    return flow({n: _Shaped(s) for n, s in shapes}, X_shape, **options)


def flow(
    params: Mapping[str, Any],
    X_shape: Sequence[int],
    *,
    T: Any,
    substeps: Any,
    method: Any,
    field: Any,
    activation: Any,
    augment: Any,
    gradient: Any,
    checkpoints: Any,
    trajectory: Any,
) -> tuple[Flow, tuple[str, ...]]:
    """Check the options against the shapes of ``params`` (a mapping of array-likes with
    ``.shape``) and of X; returns the Flow and the field parameters' names in core order."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of field parameters, got {type(params).__name__}")
    field = check_choice("field", field, FIELDS)
    names = field_param_names(field)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params is missing {missing} for field '{field}'")
    W_shape = tuple(params[names[0]].shape)
    if len(W_shape) != 3:
        raise ValueError(f"params['{names[0]}'] must be 3-D (pieces, *, D), got shape {W_shape}")
    pieces, H, D = W_shape
    expected = field_param_shapes(field, pieces, D, H)
    for n in names:
        if tuple(params[n].shape) != expected[n]:
            raise ValueError(
                f"params['{n}'] must have shape {expected[n]}, got {tuple(params[n].shape)}"
            )
    augment = check_int("augment", augment, 0)
    if augment >= D:
        raise ValueError(f"augment must be < D = {D} (the width of params['{names[0]}'])")
    if len(X_shape) != 2 or X_shape[1] != D - augment:
        raise ValueError(
            f"X must have shape (N, {D - augment}) (D = {D} minus augment = {augment}), got "
            f"shape {tuple(X_shape)}"
        )
    substeps = check_int("substeps", substeps, 1)
    T = _check_time(T)
    gradient = check_choice("gradient", gradient, GRADIENTS)
    K = 0 if checkpoints is None else check_int("checkpoints", checkpoints, 1)
    if K and gradient != "discrete":
        raise ValueError("checkpoints applies to gradient='discrete' only")
    if not isinstance(trajectory, (bool, np.bool_)):
        raise TypeError(f"trajectory must be a bool, got {type(trajectory).__name__}")
    resolved = Flow(
        field=field,
        activation=check_choice("activation", activation, ACTIVATIONS),
        method=check_choice("method", method, FIXED_METHODS),
        dt=T / (pieces * substeps),
        substeps=substeps,
        augment=augment,
        gradient=gradient,
        checkpoints=K,
        trajectory=bool(trajectory),
    )
    return resolved, names


def _check_time(T: Any) -> Any:
    """``T`` if it is a finite real > 0. Compared, not passed to ``math.isfinite``: under
    ``torch.compile(dynamic=True)`` a float option is a symbolic ``SymFloat``, which
    comparisons keep symbolic (guards) where ``math.isfinite`` breaks the graph."""
    if isinstance(T, bool) or not isinstance(T, (int, float, np.integer, np.floating)):
        raise TypeError(f"T must be a real number, got {type(T).__name__}")
    if not (0 < T < math.inf):  # False for NaN too
        raise ValueError(f"T must be finite and > 0, got {T}")
    return float(T)


def forward(flow: Flow, X: np.ndarray, theta: list[np.ndarray]) -> np.ndarray:
    """The final states (N, D), or every state (steps + 1, N, D)."""
    return _core.trajectory(X, theta, **flow.sweep(), final_only=not flow.trajectory)


def vjp(
    flow: Flow, X: np.ndarray, theta: list[np.ndarray], cotangent: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """(field parameter cotangents in core order, dX) for a cotangent shaped like forward's."""
    return _core.vjp(
        X, cotangent, theta, **flow.sweep(), gradient=flow.gradient, checkpoints=flow.checkpoints
    )


def forward_with_states(
    flow: Flow, X: np.ndarray, theta: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The output of :func:`forward` and what the backward needs from this forward sweep
    (:meth:`Flow.kept`: the stage tape or the states; the states are the output itself for a
    trajectory with stride 1); None for the adjoint."""
    if flow.gradient != "discrete":
        return forward(flow, X, theta), None
    stages, stride = _kept(flow, X.shape[0], theta[0].shape, X.itemsize, *_tape_limits())
    return _core.forward_states(
        X, theta, **flow.sweep(), stride=stride, trajectory=flow.trajectory, stages=stages
    )


def vjp_from_states(
    flow: Flow,
    X: np.ndarray,
    theta: list[np.ndarray],
    cotangent: np.ndarray,
    kept: np.ndarray | None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`vjp` (bitwise) from what :func:`forward_with_states` kept: the discrete reverse
    sweep reads the stage tape back, or starts from the kept states, without a second forward
    sweep from X; the adjoint (kept None) runs :func:`vjp`."""
    if kept is None:
        return vjp(flow, X, theta, cotangent)
    stages, stride = _kept(flow, X.shape[0], theta[0].shape, X.itemsize, *_tape_limits())
    return _core.vjp_from_states(
        X, kept, cotangent, theta, **flow.sweep(), stride=stride, stages=stages
    )


@functools.lru_cache(maxsize=256)
def _kept(
    flow: Flow, N: int, W_shape: tuple[int, ...], itemsize: int, budget: int, work: float
) -> tuple[bool, int]:
    """(whether the stage tape is kept, the stride of the states otherwise), remembered (per
    limits too: the tests change them)."""
    stages, _ = flow.kept(N, W_shape, itemsize, budget, work)
    return stages, flow.stride(int(W_shape[0]) * flow.substeps)


def _tape_limits() -> tuple[int, float]:
    return STAGE_TAPE_BYTES, STAGE_TAPE_WORK
