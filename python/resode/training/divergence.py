"""Divergence: :class:`TrainingDiverged` and how a failed epoch or evaluation becomes one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .. import _core
from .history import History

__all__ = [
    "DIVERGENCES",
    "TrainingDiverged",
    "check_epoch_loss",
    "epoch_diverged",
    "evaluation_diverged",
]

# What fit treats as a divergence of a sweep: a non-finite state, loss or gradient, or an
# adaptive step size that collapsed (the dynamics the training made overflowing or stiff).
DIVERGENCES = (_core.NonFiniteError, _core.StepSizeError)


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter.

    Raised by :func:`fit`; the model then holds the last finite parameters (those before the
    failing optimiser step). The optimiser state is *not* rolled back.

    Parameters
    ----------
    message : str
        What diverged, and where.
    epoch : int, default 0
        The failing epoch, counted from 1 (0: unknown).
    batch : int, default 0
        The failing mini-batch within that epoch, counted from 1 (0: unknown).
    history : History or None
        The epochs completed before the failure (None: an empty history).

    Attributes
    ----------
    epoch : int
        The failing epoch, counted from 1.
    batch : int
        The failing mini-batch within that epoch, counted from 1.
    history : History
        The epochs completed before the failure.

    Examples
    --------
    >>> err = TrainingDiverged("non-finite loss", epoch=3, batch=2)
    >>> err.epoch, err.batch, len(err.history), isinstance(err, FloatingPointError)
    (3, 2, 0, True)
    """

    def __init__(
        self, message: str, *, epoch: int = 0, batch: int = 0, history: History | None = None
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.history = history if history is not None else History()

    def __reduce__(self) -> tuple[Any, ...]:
        # keep epoch, batch and history through pickling (e.g. from joblib workers)
        return (
            type(self),
            (str(self),),
            {k: getattr(self, k) for k in ("epoch", "batch", "history")},
        )


def epoch_diverged(
    outcome: Mapping[str, Any], epoch: int, lr: float, history: History
) -> TrainingDiverged:
    """The :class:`TrainingDiverged` for a failed ``_core.train_epoch`` outcome."""
    batch = outcome["batches"] + 1
    where = f"at epoch {epoch + 1}, batch {batch}"
    if outcome["failure"] == "sweep":
        cause = outcome.get("error")  # the exception itself (adaptive epochs: either kind)
        if cause is None:  # the core's train_epoch reports the failure as data
            cause = _core.NonFiniteError(outcome["message"])
            cause.step, cause.t = outcome["step"], outcome["time"]
        message = f"training diverged {where}: {cause}"
    else:
        cause = None
        message = (
            f"training diverged {where}: the optimiser step made the parameters non-finite "
            f"(lr={lr:g}); parameters restored to before the step"
        )
    error = TrainingDiverged(message, epoch=epoch + 1, batch=batch, history=history)
    error.__cause__ = cause
    return error


def evaluation_diverged(
    exc: BaseException, epoch: int, batches: int, what: str, history: History
) -> TrainingDiverged:
    """The :class:`TrainingDiverged` for a sweep that failed with ``exc`` after the epoch's
    updates (scoring, validation, recording); raise it ``from exc``."""
    return TrainingDiverged(
        f"training diverged at epoch {epoch + 1}, batch {batches} (evaluating {what}): {exc}",
        epoch=epoch + 1,
        batch=batches,
        history=history,
    )


def check_epoch_loss(epoch_loss: float, epoch: int, batches: int, history: History) -> None:
    """Raise :class:`TrainingDiverged` when the epoch's mean loss overflowed although each
    batch loss was finite."""
    if not math.isfinite(epoch_loss):
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}: the epoch's mean loss is not "
            f"finite ({epoch_loss}) although each batch loss was",
            epoch=epoch + 1,
            batch=batches,
            history=history,
        )
