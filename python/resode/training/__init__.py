"""The training loop: :func:`fit`, its :class:`History`, callbacks (:class:`EarlyStopping`),
checkpoints and divergence handling.

:func:`fit` runs mini-batch first-order training of a :class:`resode.ResNet`,
:class:`resode.NeuralODE` or :class:`resode.NeuralCDE` with the optimisers of
:mod:`resode.optim`; every loss and gradient comes from the compiled core (one call per epoch,
or per batch for an adaptive model and a neural CDE).

The package: ``loop`` (:func:`fit`), ``arguments`` (the checks of its arguments), ``epoch``
(one epoch, :func:`constrain`), ``history`` (:class:`History`), ``callbacks``
(:class:`EarlyStopping`), ``checkpoints``, ``divergence`` (:class:`TrainingDiverged`),
``progress`` and ``recorder`` (``fit(record=...)``).

Examples
--------
>>> import resode
>>> X, y = resode.datasets.concentric_spheres(200, seed=0)
>>> model = resode.NeuralODE(2, T=5.0, pieces=10, field="bottleneck", hidden=16, augment=1,
...                          activation="relu", seed=0)
>>> history = resode.fit(model, X, y, optimizer=resode.optim.Adam(lr=1e-2), epochs=150,
...                      seed=0, progress=False)
>>> history.accuracy[-1] >= 0.99
True
"""

from __future__ import annotations

from typing import Union

from ..models import NeuralCDE, NeuralODE, ResNet
from .callbacks import Callback, EarlyStopping
from .checkpoints import check_resumable, load_checkpoint, save_checkpoint
from .divergence import TrainingDiverged
from .epoch import constrain
from .history import HISTORY_KEYS, History
from .loop import fit

__all__ = [
    "HISTORY_KEYS",
    "Callback",
    "EarlyStopping",
    "History",
    "TrainingDiverged",
    "check_resumable",
    "constrain",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]

Model = Union[ResNet, NeuralODE, NeuralCDE]
