"""resode: fast training of residual networks and neural ODEs on the CPU.

A C++17 core (``resode._core``) does the sweeps, losses and gradients; this package is a thin
NumPy API on top of it. ``resode.reference`` is the same mathematics in plain NumPy.
"""

from __future__ import annotations

from . import _core, datasets, optim, reference  # noqa: F401  (_core: the compiled core)
from ._core import NonFiniteError, get_num_threads, set_num_threads
from .models import NeuralODE, ResNet
from .odeint import odeint, odeint_vjp

__all__ = [
    "NeuralODE",
    "NonFiniteError",
    "ResNet",
    "__version__",
    "datasets",
    "get_num_threads",
    "odeint",
    "odeint_vjp",
    "optim",
    "reference",
    "set_num_threads",
]

__version__ = "0.1.0"
