"""The models: :class:`ResNet` (a residual network), :class:`NeuralODE` (a neural ODE with
piecewise-constant controls) and :class:`NeuralCDE` (a neural controlled differential equation
for time series), on their shared base :class:`Model`. Each holds its parameters in a plain
dict of NumPy arrays, ``model.params``, and runs every sweep in the compiled core
(``resode._core``).

The package: ``base`` (:class:`Model`, the public protocol), ``resnet``, ``neural_ode``,
``neural_cde``, ``series`` (the checks of time-series inputs), ``series_predictions``,
``params`` (names, shapes, initialisation), ``options`` (the choices and the adaptive options),
``problem`` (:class:`Problem`, the core's arguments), ``scores`` (R^2 and the sign
agreement) and ``metadata`` (what a model records
about its data). :data:`KINDS` maps the ``kind`` of a model file to its class; the loader
(:mod:`resode.io`) uses it, and the models never import the loader.
"""

from __future__ import annotations

from .base import Model, set_file_writer
from .neural_cde import NeuralCDE
from .neural_ode import NeuralODE
from .options import (
    ACTIVATIONS,
    ADAPTIVE_DEFAULTS,
    ADAPTIVE_METHODS,
    FIELDS,
    FIXED_METHODS,
    GRADIENTS,
    INTERPOLATIONS,
    LOSSES,
    METHODS,
    READOUTS,
    STEP_CONTROLS,
    adaptive_options,
    cde_adaptive_options,
    check_cde_method,
    summarize_stats,
)
from .params import (
    cde_param_shapes,
    field_param_names,
    field_param_shapes,
    init_cde_params,
    init_params,
    param_shapes,
)
from .problem import Problem
from .resnet import ResNet
from .scores import is_sign_target, r2_from_sums, r2_score, sign_agreement, target_spread
from .series import (
    add_time_channel,
    as_series,
    as_times,
    check_paths,
    default_output_times,
    series_lengths,
)

__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_DEFAULTS",
    "ADAPTIVE_METHODS",
    "FIELDS",
    "FIXED_METHODS",
    "GRADIENTS",
    "INTERPOLATIONS",
    "KINDS",
    "LOSSES",
    "METHODS",
    "READOUTS",
    "STEP_CONTROLS",
    "Model",
    "NeuralCDE",
    "NeuralODE",
    "Problem",
    "ResNet",
    "adaptive_options",
    "add_time_channel",
    "as_series",
    "as_times",
    "cde_adaptive_options",
    "cde_param_shapes",
    "check_cde_method",
    "check_paths",
    "default_output_times",
    "field_param_names",
    "field_param_shapes",
    "init_cde_params",
    "init_params",
    "is_sign_target",
    "param_shapes",
    "r2_from_sums",
    "r2_score",
    "series_lengths",
    "set_file_writer",
    "sign_agreement",
    "summarize_stats",
    "target_spread",
]

#: The model classes by their ``kind`` (the ``"kind"`` of a model file's header).
KINDS: dict[str, type[Model]] = {cls.kind: cls for cls in (ResNet, NeuralODE, NeuralCDE)}
