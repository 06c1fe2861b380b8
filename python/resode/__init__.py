"""resode: fast training of residual networks and neural ODEs on the CPU.

A C++17 core (``resode._core``) does the sweeps, losses and gradients; this package is a thin
NumPy API on top of it. ``resode.reference`` is the same mathematics in plain NumPy.
"""

from __future__ import annotations

from . import _core, datasets, io, optim, reference, training
from ._core import NonFiniteError, StepSizeError, get_num_threads, set_num_threads
from .cdeint import cdeint, cdeint_vjp
from .io import load
from .models import NeuralCDE, NeuralODE, ResNet
from .odeint import odeint, odeint_vjp
from .training import EarlyStopping, History, TrainingDiverged, fit


def _warn_if_isa_request_unknown() -> None:
    """Warn about a RESODE_ISA that the core ignores (it reads the variable itself)."""
    import os

    requested = os.environ.get("RESODE_ISA")
    if requested not in (None, "", "avx512", "avx2", "baseline"):
        import warnings

        warnings.warn(
            f"RESODE_ISA={requested!r} is not one of 'avx512', 'avx2', 'baseline': ignored "
            f"(the core runs its {_core.isa} kernels)",
            RuntimeWarning,
            stacklevel=2,
        )


_warn_if_isa_request_unknown()

# `plot`, `sklearn` (optional dependencies matplotlib / scikit-learn) and `cli` are imported
# on first access, so that `import resode` needs only NumPy.
_LAZY_SUBMODULES = ("plot", "sklearn", "cli")


def __getattr__(name: str) -> object:
    """Import ``resode.plot``, ``resode.sklearn`` and ``resode.cli`` on first access."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EarlyStopping",
    "History",
    "NeuralCDE",
    "NeuralODE",
    "NonFiniteError",
    "ResNet",
    "StepSizeError",
    "TrainingDiverged",
    "__version__",
    "cdeint",
    "cdeint_vjp",
    "datasets",
    "fit",
    "get_num_threads",
    "io",
    "load",
    "odeint",
    "odeint_vjp",
    "optim",
    "reference",
    "set_num_threads",
    "training",
]

__version__ = "0.1.0"
