"""The checks of :func:`resode.fit`'s arguments and data, each naming the argument."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .._validation import as_labels
from ..models import Model, NeuralCDE, NeuralODE, Problem, is_sign_target
from ..optim import Optimizer
from .callbacks import EarlyStopping
from .progress import default_log_every

__all__ = [
    "check_batch_size",
    "check_bound",
    "check_epochs",
    "check_every",
    "check_log_every",
    "check_model",
    "check_monitor",
    "check_optimizer",
    "check_train_metrics",
    "check_validation",
    "prepare_data",
    "record_names",
    "score_columns",
]


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


TRAIN_METRICS = ("batches", "exact")
"""The values of ``fit``'s ``train_metrics``: the training score from the batches' own forward
sweeps, or from an end-of-epoch pass over the training set."""


def check_train_metrics(train_metrics: Any) -> str:
    """``train_metrics``, one of :data:`TRAIN_METRICS`."""
    if not isinstance(train_metrics, str):
        raise TypeError(f"train_metrics must be 'batches' or 'exact', got {train_metrics!r}")
    if train_metrics not in TRAIN_METRICS:
        raise ValueError(f"train_metrics must be 'batches' or 'exact', got {train_metrics!r}")
    return train_metrics


def check_model(model: Any) -> Model:
    """``model``, a resode model whose ``params`` are exactly its parameters, all finite."""
    if not isinstance(model, Model):
        raise TypeError(
            f"model must be a resode.ResNet, NeuralODE or NeuralCDE, got {type(model)!r}"
        )
    expected = set(model.param_shapes)
    if not isinstance(model.params, dict):
        raise TypeError(
            f"model.params must be a dict of arrays {sorted(expected)}, got "
            f"{type(model.params).__name__}"
        )
    if set(model.params) != expected:
        extra, missing = sorted(set(model.params) - expected), sorted(expected - set(model.params))
        raise ValueError(
            f"model.params must hold exactly {sorted(expected)}; extra {extra}, missing {missing}"
        )
    for name, p in model.params.items():
        if not np.isfinite(p).all():
            raise ValueError(f"model.params[{name!r}] contains NaN or Inf before training")
    return model


def check_epochs(epochs: Any) -> int:
    if not _is_int(epochs) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    return int(epochs)


def prepare_data(
    model: Model, X: Any, y: Any, what: str, times: Any = None, u: Any = None
) -> Problem:
    """``model.problem(X, y)`` with every label in range and every value finite (checked on
    the whole set, so the model is never partly trained on bad data); errors name ``what``.
    A :class:`resode.NeuralCDE` takes the series' ``times`` too, a :class:`resode.NeuralODE`
    with ``inputs > 0`` its inputs ``u`` and their ``times`` (their ``problem`` checks every
    path; NaN marks its missing values)."""
    try:
        data = _problem(model, X, y, times, u)
        Xc, yc = data.X, data.targets
        if model.loss == "cross_entropy":  # the core checks each batch; the label range too
            yc = as_labels(yc, Xc.shape[0], model.classes)
        else:
            yc = data.require_targets()
        if Xc.ndim == 2 and not np.isfinite(Xc).all():  # points (a series has NaN: missing)
            raise ValueError("X contains NaN or Inf")
        if yc.dtype.kind == "f" and not np.isfinite(yc).all():
            raise ValueError("y contains NaN or Inf")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None
    return dataclasses.replace(data, targets=yc)


def _problem(model: Model, X: Any, y: Any, times: Any, u: Any) -> Problem:
    """``model.problem`` with the arguments of the model's kind: ``times`` for a neural CDE,
    ``u`` and ``times`` for a neural ODE (required with ``inputs > 0``, refused without)."""
    if isinstance(model, NeuralCDE):
        if u is not None:
            raise ValueError(
                "u applies to a resode.NeuralODE with inputs > 0; a NeuralCDE's series is X "
                "(U, shape (N, L, channels))"
            )
        return model.problem(X, y, times=times)
    if isinstance(model, NeuralODE):
        if model.inputs == 0 and (u is not None or times is not None):
            raise ValueError(
                f"{'u' if u is not None else 'times'} applies to a resode.NeuralODE with "
                f"inputs > 0 or a NeuralCDE; this NeuralODE has inputs=0"
            )
        if model.inputs > 0 and u is None:
            raise ValueError(
                f"u must be given: the NeuralODE has inputs={model.inputs} channels "
                f"(fit(model, X, y, u=U, times=...), U of shape (N, L, {model.inputs}))"
            )
        return model.problem(X, y, u=u, times=times)
    if u is not None or times is not None:
        raise ValueError(
            f"{'u' if u is not None else 'times'} applies to a resode.NeuralCDE (times) or a "
            f"NeuralODE with inputs > 0 (u and times), not to a {type(model).__name__}"
        )
    return model.problem(X, y)


def record_names(model: Model, X: Any, y: Any) -> None:
    """A DataFrame's column names (all text) become ``model.feature_names`` and a named
    Series' name ``model.target_name``, as scikit-learn's ``feature_names_in_`` (duck-typed:
    pandas is never imported)."""
    columns = getattr(X, "columns", None)
    if columns is not None and all(isinstance(c, str) for c in columns):
        model.feature_names = [str(c) for c in columns]
    if isinstance(getattr(y, "name", None), str):
        model.target_name = str(y.name)


def check_batch_size(batch_size: Any, n: int) -> int:
    """Samples per batch: ``n`` for None, at most ``n``."""
    if batch_size is None:
        return n
    if not _is_int(batch_size):
        raise TypeError(f"batch_size must be an int or None, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return min(int(batch_size), n)


def check_bound(bound: Any) -> float | None:
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, (int, float, np.floating)):
        raise TypeError(f"bound must be a positive number or None, got {bound!r}")
    if not (math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be finite and > 0, got {bound!r}")
    return float(bound)


def check_every(name: str, every: Any) -> int:
    if not _is_int(every):
        raise TypeError(f"{name} must be an int, got {every!r}")
    if every < 1:
        raise ValueError(f"{name} must be >= 1, got {every}")
    return int(every)


def check_log_every(log_every: Any, epochs: int) -> int:
    if log_every is None:
        return default_log_every(epochs)
    if not _is_int(log_every):
        raise TypeError(f"log_every must be an int or None, got {log_every!r}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    return int(log_every)


def check_optimizer(optimizer: Any) -> Optimizer | None:
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a resode.optim.Optimizer, got {optimizer!r}")
    return optimizer


def check_validation(model: Model, validation_data: Any) -> Problem | None:
    """The validation data: ``(X_val, y_val)``; for a :class:`resode.NeuralCDE`
    ``(U_val, y_val)`` (times ``0 .. L-1``) or ``(U_val, y_val, times_val)``; for a
    :class:`resode.NeuralODE` with inputs ``(X_val, y_val, u_val)`` (times ``0 .. L-1``) or
    ``(X_val, y_val, u_val, times_val)``."""
    if validation_data is None:
        return None
    sizes: tuple[int, ...] = (2,)
    expected = "(X_val, y_val)"
    if isinstance(model, NeuralCDE):
        sizes, expected = (2, 3), "(U_val, y_val) or (U_val, y_val, times_val)"
    elif isinstance(model, NeuralODE) and model.inputs > 0:
        sizes, expected = (3, 4), "(X_val, y_val, u_val) or (X_val, y_val, u_val, times_val)"
    try:
        items = tuple(validation_data)
    except TypeError:
        items = ()
    if len(items) not in sizes:
        raise TypeError(f"validation_data must be a tuple {expected}")
    if len(items) > 2 and not isinstance(model, NeuralCDE):  # (X, y, u[, times])
        times = items[3] if len(items) == 4 else None
        return prepare_data(model, items[0], items[1], "validation_data", times, items[2])
    X_val, y_val, *times = items
    return prepare_data(model, X_val, y_val, "validation_data", *times)


def score_columns(model: Model, data: Problem, validation: Problem | None) -> list[str]:
    """The score columns of the history: ``accuracy`` (classification) or ``r2``, with
    ``accuracy`` beside ``r2`` for a 1-output model with targets all +-1; the ``val_*`` ones
    for the validation data."""

    def columns(problem: Problem) -> list[str]:
        if model.task == "classification":
            return ["accuracy"]
        sign = model.classes == 1 and is_sign_target(problem.targets)
        return ["r2", "accuracy"] if sign else ["r2"]

    out = columns(data)
    if validation is not None:
        out += ["val_loss"] + ["val_" + c for c in columns(validation) if c in out]
    return out


def check_monitor(stopper: EarlyStopping | None, columns: list[str]) -> None:
    """ValueError unless early stopping monitors a column this run records."""
    if stopper is None:
        return
    recorded = ["loss", *columns]
    if stopper.monitor not in recorded:
        hint = " (val_* columns need validation_data)" if stopper.monitor.startswith("val_") else ""
        raise ValueError(
            f"early stopping monitors {stopper.monitor!r}, which this run does not record"
            f"{hint}; it records {recorded}"
        )
