"""``resode demo``: ``resode train`` with the defaults of the demonstration."""

from __future__ import annotations

from typing import Any

from .train import TRAIN_DEFAULTS, add_run_options

__all__ = ["DEMO_DEFAULTS", "add_parser"]

DEMO_DEFAULTS: dict[str, Any] = {
    **TRAIN_DEFAULTS,
    "hidden": 32,
    "activation": "relu",
    "weight_decay": 1e-3,
    "epochs": 120,
    "batch_size": 200,
    "schedule": "cosine",
    "out": "runs/demo",
    "overwrite": True,
}
"""Defaults of ``resode demo``: concentric spheres, neural ODE with a bottleneck field (32
hidden units, ReLU), one augmented dimension, ``T = 5``, 10 pieces, RK4, Adam with a cosine
learning-rate schedule (the loss falls smoothly to the end)."""


def add_parser(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="the demonstration: augmented neural ODE on concentric spheres",
        description="The demonstration experiment (concentric spheres, augmented neural ODE), "
        "written to runs/demo; every `train` option can change it.",
    )
    add_run_options(demo, DEMO_DEFAULTS)
