"""The two models: :class:`ResNet` (a residual network) and :class:`NeuralODE` (a neural ODE
with piecewise-constant controls), on their shared base :class:`Model`. Both hold their
parameters in a plain dict of NumPy arrays, ``model.params``, and run every sweep in the
compiled core (``resode._core``).

The package: ``base`` (:class:`Model`, the public protocol), ``resnet``, ``neural_ode``,
``params`` (names, shapes, initialisation), ``options`` (the choices and the adaptive options),
``problem`` (:class:`Problem`, the core's arguments), ``scores`` (R^2 and the sign
agreement) and ``metadata`` (what a model records
about its data). :data:`KINDS` maps the ``kind`` of a model file to its class; the loader
(:mod:`resode.io`) uses it, and the models never import the loader.
"""

from __future__ import annotations

from .base import Model, set_file_writer
from .neural_ode import NeuralODE
from .options import (
    ACTIVATIONS,
    ADAPTIVE_DEFAULTS,
    ADAPTIVE_METHODS,
    FIELDS,
    FIXED_METHODS,
    GRADIENTS,
    LOSSES,
    METHODS,
    READOUTS,
    STEP_CONTROLS,
    adaptive_options,
    summarize_stats,
)
from .params import field_param_names, field_param_shapes, init_params, param_shapes
from .problem import Problem
from .resnet import ResNet
from .scores import is_sign_target, r2_from_sums, r2_score, sign_agreement, target_spread

__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_DEFAULTS",
    "ADAPTIVE_METHODS",
    "FIELDS",
    "FIXED_METHODS",
    "GRADIENTS",
    "KINDS",
    "LOSSES",
    "METHODS",
    "READOUTS",
    "STEP_CONTROLS",
    "Model",
    "NeuralODE",
    "Problem",
    "ResNet",
    "adaptive_options",
    "field_param_names",
    "field_param_shapes",
    "init_params",
    "is_sign_target",
    "param_shapes",
    "r2_from_sums",
    "r2_score",
    "set_file_writer",
    "sign_agreement",
    "summarize_stats",
    "target_spread",
]

#: The model classes by their ``kind`` (the ``"kind"`` of a model file's header).
KINDS: dict[str, type[Model]] = {cls.kind: cls for cls in (ResNet, NeuralODE)}
