"""Type stubs of resode._core, the compiled core (see src/)."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt

_FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]  # float32 or float64, as the input

openmp: bool  # built with OpenMP (RESODE_OPENMP=ON)
isa: str  # the kernel set the sweeps run with: "avx512", "avx2" or "baseline" (RESODE_ISA)

class NonFiniteError(ValueError, FloatingPointError):
    """A state, loss or gradient became NaN or Inf (the message names the step and time)."""

    step: int  # the step (layer) whose update was not finite; -1 when not tied to a step
    t: float  # the end time of that step

def activation(name: str, x: npt.ArrayLike) -> _FloatArray: ...
def activation_grad(name: str, x: npt.ArrayLike) -> _FloatArray: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def trajectory(
    X: np.ndarray,
    theta: Sequence[np.ndarray],
    *,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    final_only: bool = False,
) -> _FloatArray: ...
def logits(
    X: np.ndarray,
    theta: Sequence[np.ndarray],
    P: np.ndarray,
    c: np.ndarray,
    *,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    readout: str = "linear",
) -> _FloatArray: ...
def loss_and_grad(
    X: np.ndarray,
    y: np.ndarray,
    theta: Sequence[np.ndarray],
    P: np.ndarray,
    c: np.ndarray,
    *,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    turnpike: bool = False,
    gradient: str = "discrete",
    checkpoints: int = 0,
    readout: str = "linear",
    l1: float = 0.0,
    decay_readout: bool = False,
    turnpike_weight: float = 1.0,
) -> tuple[float, list[_FloatArray], _FloatArray, _FloatArray]: ...
def vjp(
    X: np.ndarray,
    cotangent: np.ndarray,
    theta: Sequence[np.ndarray],
    *,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    gradient: str = "discrete",
    checkpoints: int = 0,
) -> tuple[list[_FloatArray], _FloatArray]: ...
def forward_states(
    X: np.ndarray,
    theta: Sequence[np.ndarray],
    *,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    stride: int = 1,
    trajectory: bool = False,
    stages: bool = False,
) -> tuple[_FloatArray, _FloatArray]: ...
def vjp_from_states(
    X: np.ndarray,
    states: np.ndarray,
    cotangent: np.ndarray,
    theta: Sequence[np.ndarray],
    *,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    stride: int = 1,
    stages: bool = False,
) -> tuple[list[_FloatArray], _FloatArray]: ...
def optimizer_step(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    states: Sequence[Sequence[np.ndarray]],
    *,
    optimizer: str,
    lr: float,
    step: int,
    momentum: float = 0.0,
    nesterov: bool = False,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    first: bool = False,
) -> None: ...
def bound_l1(arrays: Sequence[np.ndarray], bound: float) -> None: ...
def grad_norm(arrays: Sequence[np.ndarray]) -> float: ...
def train_epoch(
    X: np.ndarray,
    y: np.ndarray,
    theta: Sequence[np.ndarray],
    P: np.ndarray,
    c: np.ndarray,
    order: np.ndarray,
    *,
    batch: int,
    field: str,
    activation: str,
    method: str,
    dt: float,
    substeps: int = 1,
    augment: int = 0,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    turnpike: bool = False,
    gradient: str = "discrete",
    checkpoints: int = 0,
    optimizer: str,
    lr: float,
    step: int,
    momentum: float = 0.0,
    nesterov: bool = False,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    first: bool = False,
    state: Sequence[Sequence[np.ndarray]],
    bound: float = 0.0,
    fixed_projection: bool = False,
    readout: str = "linear",
    l1: float = 0.0,
    decay_readout: bool = False,
    turnpike_weight: float = 1.0,
) -> dict[str, Any]:
    """One epoch in place. The dict: ``batches``, ``steps``, ``loss_sum`` (sum of batch loss x
    batch size), ``norm_sum``, ``correct`` (int: correct argmax for cross-entropy, sign
    agreement for a 1-output mse model, 0 otherwise) and ``sse`` (float64 ``(classes,)``, the
    squared errors per output for mse, empty for cross-entropy), both over the kept batches'
    own predictions; ``failure`` (None, "sweep" or "update"), ``message``, ``step``, ``time``."""
    ...

def xla_handlers() -> dict[str, Any]:
    """The XLA FFI handlers of resode.jax, as PyCapsules for jax.ffi.register_ffi_target."""

class StepSizeError(ValueError):
    """An adaptive step-size failure: max_steps reached or a step below the resolution of t."""

    sample: int
    t: float
    dt: float
    error: float

def adaptive_solve(
    X: np.ndarray,
    theta: Sequence[np.ndarray],
    *,
    field: str,
    activation: str,
    method: str,
    T: float,
    substeps: int = 1,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    step_control: str = "sample",
    t: npt.ArrayLike | None = None,
    grid: Any = None,
) -> tuple[_FloatArray, dict[str, Any] | None]: ...
def adaptive_logits(
    X: np.ndarray,
    theta: Sequence[np.ndarray],
    P: np.ndarray,
    c: np.ndarray,
    *,
    field: str,
    activation: str,
    method: str,
    T: float,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    step_control: str = "sample",
) -> tuple[_FloatArray, dict[str, Any]]: ...
def adaptive_vjp(
    X: np.ndarray,
    cotangent: np.ndarray,
    theta: Sequence[np.ndarray],
    *,
    field: str,
    activation: str,
    method: str,
    T: float,
    substeps: int = 1,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    step_control: str = "sample",
    t: npt.ArrayLike | None = None,
    grid: Any = None,
    gradient: str = "discrete",
    checkpoints: int = 0,
) -> tuple[list[_FloatArray], _FloatArray, dict[str, Any] | None]: ...
def adaptive_loss_and_grad(
    X: np.ndarray,
    y: np.ndarray,
    theta: Sequence[np.ndarray],
    P: np.ndarray,
    c: np.ndarray,
    *,
    field: str,
    activation: str,
    method: str,
    T: float,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    step_control: str = "sample",
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    grid: Any = None,
    gradient: str = "discrete",
    checkpoints: int = 0,
) -> tuple[float, list[_FloatArray], _FloatArray, _FloatArray, dict[str, Any] | None]: ...

# Neural CDEs (cpp/resode/cde.hpp): params holds "A" (S, C), "a" (S,) and the field's arrays
# ("W" (K, S*C, S), "b" (K, S*C), or "W1", "b1", "W2", "b2" for "bottleneck"); "P" (O, S) and
# "c" (O,) for the readout. U (N, L, C) float32/float64 with NaN for missing values and
# padding; times (L,) or (N, L), any real dtype.
def cde_solve(
    params: Mapping[str, np.ndarray],
    U: np.ndarray,
    times: npt.ArrayLike,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    grid: Sequence[npt.ArrayLike] | None = None,
    window: tuple[float, float] | None = None,
    t: npt.ArrayLike | None = None,
) -> _FloatArray: ...
def cde_vjp(
    params: Mapping[str, np.ndarray],
    U: np.ndarray,
    times: npt.ArrayLike,
    cotangent: np.ndarray,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    grid: Sequence[npt.ArrayLike] | None = None,
    window: tuple[float, float] | None = None,
    t: npt.ArrayLike | None = None,
    gradient: str = "discrete",
) -> tuple[dict[str, _FloatArray], _FloatArray]: ...
def cde_logits(
    params: Mapping[str, np.ndarray],
    U: np.ndarray,
    times: npt.ArrayLike,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    grid: Sequence[npt.ArrayLike] | None = None,
    window: tuple[float, float] | None = None,
) -> _FloatArray: ...
@overload
def cde_loss_and_grad(
    params: Mapping[str, np.ndarray],
    U: np.ndarray,
    y: np.ndarray,
    times: npt.ArrayLike,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    grid: Sequence[npt.ArrayLike] | None = None,
    window: tuple[float, float] | None = None,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    gradient: str = "discrete",
    return_logits: Literal[True],
    return_dU: bool = True,
) -> tuple[float, dict[str, _FloatArray], _FloatArray | None, _FloatArray]: ...
@overload
def cde_loss_and_grad(
    params: Mapping[str, np.ndarray],
    U: np.ndarray,
    y: np.ndarray,
    times: npt.ArrayLike,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    grid: Sequence[npt.ArrayLike] | None = None,
    window: tuple[float, float] | None = None,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    gradient: str = "discrete",
    return_logits: Literal[False] = False,
    return_dU: bool = True,
) -> tuple[float, dict[str, _FloatArray], _FloatArray | None]: ...
def cde_grids(
    params: Mapping[str, np.ndarray],
    U: np.ndarray,
    times: npt.ArrayLike,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    grid: Sequence[npt.ArrayLike] | None = None,
    window: tuple[float, float] | None = None,
    t: npt.ArrayLike | None = None,
) -> tuple[list[_FloatArray], npt.NDArray[np.int64]]: ...

# The input-driven neural ODE (cpp/resode/driven.hpp): x(0) = x0 (N, D), dx/dt = f_k([x; u(t)])
# on [0, T]; params holds the field's arrays ("W" (K, D, D + C), "b" (K, D), or "W1"
# (K, H, D + C), "b1", "W2" (K, D, H), "b2" for "bottleneck"), and "P" (O, D), "c" (O,) for the
# readout. U (N, L, C) of x0's dtype, NaN for missing values and padding; times (L,) or (N, L).
# u(t) is held constant outside each sample's observation window; the grid is
# t_j = j T / (K substeps) plus each sample's knots (and t) inside (0, T). Adaptive methods
# (dopri5, tsit5, bosh3): per-sample steps with rtol/atol landing on that grid's (substeps 1)
# points; gradient="discrete" is exact on the accepted grid, "adjoint" the backsolve over it.
def driven_solve(
    params: Mapping[str, np.ndarray],
    x0: np.ndarray,
    U: np.ndarray,
    times: npt.ArrayLike,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    t: npt.ArrayLike | None = None,
) -> _FloatArray: ...
def driven_vjp(
    params: Mapping[str, np.ndarray],
    x0: np.ndarray,
    U: np.ndarray,
    times: npt.ArrayLike,
    cotangent: np.ndarray,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    t: npt.ArrayLike | None = None,
    gradient: str = "discrete",
) -> tuple[dict[str, _FloatArray], _FloatArray, _FloatArray]: ...
def driven_logits(
    params: Mapping[str, np.ndarray],
    x0: np.ndarray,
    U: np.ndarray,
    times: npt.ArrayLike,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
) -> _FloatArray: ...
def driven_loss_and_grad(
    params: Mapping[str, np.ndarray],
    x0: np.ndarray,
    U: np.ndarray,
    y: np.ndarray,
    times: npt.ArrayLike,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    gradient: str = "discrete",
    return_dU: bool = True,
) -> tuple[float, dict[str, _FloatArray], _FloatArray, _FloatArray | None]: ...
def driven_grids(
    params: Mapping[str, np.ndarray],
    x0: np.ndarray,
    U: np.ndarray,
    times: npt.ArrayLike,
    *,
    T: float,
    field: str,
    activation: str = "tanh",
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100000,
    t: npt.ArrayLike | None = None,
) -> tuple[list[_FloatArray], npt.NDArray[np.int64]]: ...
