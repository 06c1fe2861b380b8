"""The choices a model's options take, and the checks of the adaptive methods' options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np

from .._validation import check_choice, check_int, check_positive

__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_DEFAULTS",
    "ADAPTIVE_METHODS",
    "FIELDS",
    "FIXED_METHODS",
    "GRADIENTS",
    "INTERPOLATIONS",
    "LOSSES",
    "METHODS",
    "READOUTS",
    "STEP_CONTROLS",
    "Activation",
    "AdaptiveMethod",
    "Field",
    "FixedMethod",
    "Gradient",
    "Loss",
    "Method",
    "Readout",
    "StepControl",
    "adaptive_options",
    "check_bool",
    "check_cde_method",
    "summarize_stats",
]

# Each choice once, as a Literal type for signatures; the tuple of its strings for the checks.
Field = Literal["outside", "inside", "bottleneck"]
Activation = Literal["tanh", "relu", "sigmoid", "leaky_relu", "identity"]
Loss = Literal["cross_entropy", "mse"]
FixedMethod = Literal["euler", "midpoint", "rk4"]
AdaptiveMethod = Literal["dopri5", "tsit5", "bosh3"]
Method = Literal[FixedMethod, AdaptiveMethod]
StepControl = Literal["sample", "batch"]
Gradient = Literal["discrete", "adjoint"]
Readout = Literal["linear", "hardtanh"]

FIELDS: tuple[Field, ...] = get_args(Field)
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)
LOSSES: tuple[Loss, ...] = get_args(Loss)
FIXED_METHODS: tuple[FixedMethod, ...] = get_args(FixedMethod)
ADAPTIVE_METHODS: tuple[AdaptiveMethod, ...] = get_args(AdaptiveMethod)
METHODS: tuple[Method, ...] = FIXED_METHODS + ADAPTIVE_METHODS
STEP_CONTROLS: tuple[StepControl, ...] = get_args(StepControl)
# The adaptive options and their defaults (docs/adaptive.md).
ADAPTIVE_DEFAULTS: dict[str, Any] = {
    "rtol": 1e-7,
    "atol": 1e-9,
    "first_step": None,
    "max_steps": 100_000,
    "step_control": "sample",
}
GRADIENTS: tuple[Gradient, ...] = get_args(Gradient)
READOUTS: tuple[Readout, ...] = get_args(Readout)
# How a neural CDE interpolates its observations (resode.NeuralCDE).
INTERPOLATIONS = ("linear", "cubic")


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; TypeError naming ``name`` unless it is one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_cde_method(method: Any) -> str:
    """``method`` if it is a fixed-step method; the neural CDE has no adaptive method yet."""
    if isinstance(method, str) and method in ADAPTIVE_METHODS:
        raise ValueError(
            f"method={method!r}: the adaptive methods are not available for neural CDEs yet; "
            f"use one of {', '.join(repr(m) for m in FIXED_METHODS)} with substeps"
        )
    return check_choice("method", method, FIXED_METHODS)


def adaptive_options(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The checked adaptive options (``rtol``, ``atol``, ``first_step``, ``max_steps``,
    ``step_control``; ``None`` = the default) for ``method``: their defaults filled in for an
    adaptive method, an error naming them when given with a fixed-step method (``{}``)."""
    set_ = sorted(k for k, v in given.items() if v is not None)
    if method not in ADAPTIVE_METHODS:
        if set_:
            raise ValueError(
                f"{', '.join(set_)} apply to the adaptive methods {ADAPTIVE_METHODS} only, not "
                f"to method={method!r} (a fixed step dt = T / (pieces * substeps))"
            )
        return {}
    out = {
        k: (ADAPTIVE_DEFAULTS[k] if given.get(k) is None else given[k]) for k in ADAPTIVE_DEFAULTS
    }
    out["rtol"] = check_positive("rtol", out["rtol"], allow_zero=True)
    out["atol"] = check_positive("atol", out["atol"], allow_zero=True)
    if out["rtol"] == 0 and out["atol"] == 0:
        raise ValueError("rtol and atol must not both be 0")
    if out["first_step"] is not None:
        out["first_step"] = check_positive("first_step", out["first_step"])
    out["max_steps"] = check_int("max_steps", out["max_steps"], 1)
    out["step_control"] = check_choice("step_control", out["step_control"], STEP_CONTROLS)
    return out


_BACKWARD_COUNTS = ("backward_nfev", "backward_accepted", "backward_rejected")


def summarize_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Totals and min/median/max over samples of an adaptive run's per-sample counts
    (``nfev``, ``accepted``, ``rejected``, each ``(N,)`` int64), plus the arrays themselves and
    each sample's accepted ``grid``: ``stats["nfev"]`` (the total), ``stats["nfev_per_sample"]``,
    ``stats["nfev_min"]``, ``..._median``, ``..._max``, and so on.

    These count the forward run. After a ``gradient="adjoint"`` gradient the backward run's
    counts come with them under the same scheme: ``backward_nfev`` (evaluations of the field,
    each with its vector-Jacobian product), ``backward_accepted`` and ``backward_rejected``
    (absent for other runs: the discrete gradient replays the forward grid)."""
    out: dict[str, Any] = {}
    keys = ("nfev", "accepted", "rejected", *(k for k in _BACKWARD_COUNTS if k in stats))
    for key in keys:
        counts = np.asarray(stats[key])
        out[key] = int(counts.sum())
        out[f"{key}_per_sample"] = counts
        out[f"{key}_min"] = int(counts.min())
        out[f"{key}_median"] = float(np.median(counts))
        out[f"{key}_max"] = int(counts.max())
    out["grid"] = list(stats["grid"])
    return out
