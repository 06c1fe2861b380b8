"""The training loop: :func:`fit`, its :class:`History`, callbacks and divergence handling.

:func:`fit` runs mini-batch first-order training of a :class:`resode.ResNet` or
:class:`resode.NeuralODE` with the optimisers of :mod:`resode.optim`; every loss and gradient
comes from ``model.loss_and_grad`` (one call into the compiled core per batch).

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

import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from . import _core
from ._validation import as_labels
from .models import NeuralODE, ResNet, field_param_names
from .optim import Adam, Optimizer, from_config

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
]

PathLike = Union[str, "os.PathLike[str]"]
Model = Union[ResNet, NeuralODE]
Callback = Union[Callable[[int, dict, Any], Any], Any]
"""A callable ``f(epoch, logs, model)`` or an object with ``on_epoch_end(epoch, logs, model)``."""

HISTORY_KEYS = (
    "epoch",
    "loss",
    "accuracy",
    "r2",
    "val_loss",
    "val_accuracy",
    "val_r2",
    "grad_norm",
    "lr",
    "time",
)
"""Columns of a :class:`History`, in CSV order (``accuracy`` for classification, ``r2`` for
regression; ``val_*`` only with validation data)."""

_CHECKPOINT_FORMAT = 1


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter.

    Raised by :func:`fit`; the model then holds the last finite parameters (those before the
    failing optimiser step). The optimiser state is *not* rolled back.

    Attributes
    ----------
    epoch : int
        The failing epoch, counted from 1.
    batch : int
        The failing mini-batch within that epoch, counted from 1.
    history : History
        The epochs completed before the failure.
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


class History:
    """Per-epoch training record returned by :func:`fit`.

    Columns (each a list with one float per epoch; ``epoch`` holds ints):

    ``epoch``
        Epoch number, counted from 1.
    ``loss``
        Mean training loss over the epoch's mini-batches, weighted by batch size, as the
        optimiser saw it (before each step; includes weight decay, and is the turnpike loss
        when the model uses ``turnpike``).
    ``accuracy`` (classification) or ``r2`` (regression, ``loss="mse"``)
        The model's :meth:`score` on the training data with the parameters at the end of the
        epoch (one extra forward sweep): accuracy, or the coefficient of determination R^2.
    ``val_loss``, ``val_accuracy`` / ``val_r2``
        Loss and score on ``validation_data`` at the end of the epoch (only when given).
    ``grad_norm``
        Mean over the epoch's mini-batches of the Euclidean norm of the gradient of the
        trained parameters (all arrays together; without ``P``, ``c`` under
        ``fixed_projection``).
    ``lr``
        Learning rate used in the epoch.
    ``time``
        Wall-clock seconds since training started, at the end of the epoch (continues across
        a resumed checkpoint).

    Columns are available as attributes (``history.loss``) and items (``history["loss"]``);
    the ``val_*`` columns read as empty lists when there was no validation data.

    Examples
    --------
    >>> h = History()
    >>> h.append({"epoch": 1, "loss": 0.7, "accuracy": 0.5, "grad_norm": 1.0, "lr": 0.01,
    ...           "time": 0.1})
    >>> h.loss, len(h)
    ([0.7], 1)
    >>> History.from_dict(h.to_dict()).to_dict() == h.to_dict()
    True
    """

    def __init__(self) -> None:
        self._data: dict[str, list[float]] = {}
        # fit(record=...): {"epoch": [e, ...], "states": [(M, D) arrays], "X": (M, dim),
        # "y": the M labels or targets}; not part of the table (to_dict, JSON, CSV).
        self.features: dict[str, Any] | None = None

    # -- building -------------------------------------------------------------------------
    def append(self, row: Mapping[str, float]) -> None:
        """Add one epoch's row (the same keys every time)."""
        if self._data and set(row) != set(self._data):
            raise ValueError(f"row keys {sorted(row)} differ from history keys {self.keys()}")
        for key in self._order(row):
            self._data.setdefault(key, []).append(row[key])

    @staticmethod
    def _order(keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        known = [k for k in HISTORY_KEYS if k in keys]
        return known + sorted(k for k in keys if k not in HISTORY_KEYS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> History:
        """Rebuild a history from :meth:`to_dict` output (e.g. after a JSON round trip).

        Raises
        ------
        ValueError
            If the columns differ in length or hold non-numbers.
        """
        h = cls()
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise ValueError(f"history columns differ in length: {sorted(lengths)}")
        for key in cls._order(data):
            values = [math.nan if v is None and key != "epoch" else v for v in data[key]]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ValueError(f"history column {key!r} must hold numbers")
            h._data[key] = (
                [int(v) for v in values] if key == "epoch" else [float(v) for v in values]
            )
        return h

    # -- access ---------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Column names, in :data:`HISTORY_KEYS` order."""
        return list(self._data)

    def __getitem__(self, key: str) -> list[float]:
        return self._data[key]

    def __getattr__(self, key: str) -> list[float]:
        data = self.__dict__.get("_data", {})
        if key in data:
            return data[key]
        if key in HISTORY_KEYS:
            return []
        raise AttributeError(f"History has no column {key!r} (columns: {list(data)})")

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data.get("epoch", []))

    def __repr__(self) -> str:
        if not len(self):
            return "History(epochs=0)"
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self._data.items() if k != "epoch")
        return f"History(epochs={len(self)}, last: {last})"

    # -- export ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, list[float]]:
        """Columns as a dict of new lists."""
        return {k: list(v) for k, v in self._data.items()}

    def to_jsonable(self) -> dict[str, list[float | None]]:
        """:meth:`to_dict` with non-finite values (e.g. an overflowing gradient norm) as
        ``None``, for strict JSON; :meth:`from_dict` reads them back as NaN."""
        return {k: [x if math.isfinite(x) else None for x in v] for k, v in self._data.items()}

    def to_json(self, path: PathLike) -> Path:
        """Write :meth:`to_jsonable` as a JSON object to ``path``; returns the path."""
        from .io import write_text

        path = Path(os.fspath(path))
        write_text(path, json.dumps(self.to_jsonable(), allow_nan=False) + "\n")
        return path

    def to_csv(self, path: PathLike) -> Path:
        """Write one header row (column names) and one row per epoch to ``path``."""
        from .io import write_text

        path = Path(os.fspath(path))
        keys = self.keys()
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(keys)
        for i in range(len(self)):
            writer.writerow([repr(self._data[k][i]) for k in keys])
        write_text(path, text.getvalue())  # atomic: a reader never sees a partial table
        return path


class EarlyStopping:
    """Callback: stop when a monitored column has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "loss"
        A :class:`History` column, e.g. ``"val_loss"`` or ``"val_accuracy"``.
    patience : int, default 10
        Epochs without improvement before stopping.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    mode : {"min", "max"} or None
        Whether smaller or larger is better; ``None`` picks ``"max"`` for accuracies and R^2.

    Examples
    --------
    >>> stop = EarlyStopping("loss", patience=2)
    >>> [stop(e, {"loss": v}, None) for e, v in enumerate([1.0, 0.5, 0.6, 0.7], start=1)]
    [False, False, False, True]
    """

    def __init__(
        self,
        monitor: str = "loss",
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str | None = None,
    ) -> None:
        if mode is None:
            mode = "max" if "accuracy" in monitor or "r2" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0

    def __call__(self, epoch: int, logs: Mapping[str, float], model: Any) -> bool:
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, not in {sorted(logs)}")
        value = logs[self.monitor]
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        return self.wait >= self.patience

    on_epoch_end = __call__


# --------------------------------------------------------------------------- helpers


def constrain(model: Model, bound: float) -> None:
    """Rescale each piece's field parameters in place so that their L1 norm is <= ``bound``.

    For each piece (layer) ``k``, ``s_k = sum|W_k| + sum|b_k|`` (for the bottleneck field
    ``sum|W1_k| + sum|b1_k| + sum|W2_k| + sum|b2_k|``); if ``s_k > bound``, all of piece ``k``'s
    field parameters are multiplied by ``bound / s_k`` (a hair less, so the bound holds after
    rounding). This is the L1 (within a piece) + L-infinity (over pieces/time) constraint on
    the controls; ``P`` and ``c`` are not constrained.

    Parameters
    ----------
    model : ResNet or NeuralODE
    bound : float
        > 0.

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.ResNet(2, layers=3, seed=0)
    >>> constrain(model, 0.5)
    >>> s = np.abs(model.params["W"]).sum(axis=(1, 2)) + np.abs(model.params["b"]).sum(axis=1)
    >>> bool((s <= 0.5).all())
    True
    """
    names = field_param_names(model.field)
    arrays = [np.ascontiguousarray(model.params[n], dtype=model.dtype) for n in names]
    _core.bound_l1(arrays, float(bound))  # in place (on copies where the params are not usable)
    for name, a in zip(names, arrays):
        if a is not model.params[name]:
            model.params[name][...] = a


def _check_model(model: Any) -> Model:
    if not isinstance(model, (ResNet, NeuralODE)):
        raise TypeError(f"model must be a resode.ResNet or resode.NeuralODE, got {type(model)!r}")
    expected = set(model._shapes)
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


def _data(model: Model, X: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        Xc = model._X(X)
        yc = model._targets(y, Xc.shape[0])
        # The core checks each batch; checking the whole set here refuses bad data before the
        # first step, so the model is never partly trained on it.
        if model.loss == "cross_entropy":
            yc = as_labels(yc, Xc.shape[0], model.classes)  # the label range too
        if not np.isfinite(Xc).all():
            raise ValueError("X contains NaN or Inf")
        if yc.dtype.kind == "f" and not np.isfinite(yc).all():
            raise ValueError("y contains NaN or Inf")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None
    return Xc, yc


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _progress_bar(enabled: bool, total: int, initial: int) -> Any:
    """A tqdm bar on stderr when it is a terminal, else None."""
    if not enabled or not _is_terminal(sys.stderr):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="epochs", unit="epoch", file=sys.stderr)


def _default_log_every(epochs: int) -> int:
    """About 20 log lines per run."""
    return max(1, math.ceil(epochs / 20))


def _log_line(row: Mapping[str, float], epochs: int) -> str:
    """One plain progress line: epoch, loss, score, validation, lr and elapsed time."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"loss {row['loss']:.4g}"]
    for key in ("accuracy", "r2", "val_loss", "val_accuracy", "val_r2"):
        if key in row:
            parts.append(f"{key} {row[key]:.4g}")
    parts += [f"lr {row['lr']:.3g}", f"{row['time']:.1f} s"]
    return "  ".join(parts)


def _grad_norm(grads: Mapping[str, np.ndarray]) -> float:
    """Euclidean norm of all arrays together, scaled so that huge finite entries don't
    overflow in the squares (the core's, as in the whole-epoch loop)."""
    return _core.grad_norm(list(grads.values()))


def _own_params(model: Model) -> None:
    """Make every ``model.params`` array one the core may update in place: C-ordered, writable,
    of the model's dtype (arrays that already are stay the same objects)."""
    for name, p in model.params.items():
        ok = (
            isinstance(p, np.ndarray)
            and p.dtype == model.dtype
            and p.flags.c_contiguous
            and p.flags.writeable
        )
        if not ok:
            model.params[name] = np.array(p, dtype=model.dtype, order="C", copy=True)


def _run_epoch(
    model: Model,
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch: int,
    optimizer: Optimizer,
    bound: float | None,
    fixed_projection: bool,
) -> dict[str, Any]:
    """One epoch in one core call (``_core.train_epoch``): per batch of ``order``,
    ``loss_and_grad``, the optimiser's update, ``bound`` and the divergence check, exactly as
    a loop of :meth:`loss_and_grad`, :meth:`Optimizer.step` and :func:`constrain` would."""
    if getattr(model, "adaptive", False):
        return _run_adaptive_epoch(model, X, y, order, batch, optimizer, bound, fixed_projection)
    names = field_param_names(model.field)
    trained = names if fixed_projection else [*names, "P", "c"]
    state, first = optimizer._core_state({k: model.params[k] for k in trained})
    steps = 0
    try:
        outcome = _core.train_epoch(
            X,
            y,
            [model.params[k] for k in names],
            model.params["P"],
            model.params["c"],
            order,
            batch=batch,
            **model._sweep_args(),
            **model._loss_args(),
            **model._gradient_args(),
            lr=optimizer.lr,
            step=optimizer.step_count,
            first=first,
            state=state,
            bound=0.0 if bound is None else bound,
            fixed_projection=fixed_projection,
            **optimizer._core_args(),
        )
        steps = outcome["steps"]
    finally:
        optimizer._advance(steps, first)
    return outcome


# What fit treats as a divergence of a sweep: a non-finite state, loss or gradient, or an
# adaptive step size that collapsed (the dynamics the training made overflowing or stiff).
_DIVERGENCES = (_core.NonFiniteError, _core.StepSizeError)


def _run_adaptive_epoch(
    model: Model,
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch: int,
    optimizer: Optimizer,
    bound: float | None,
    fixed_projection: bool,
) -> dict[str, Any]:
    """The epoch of an adaptive-step model: the loop :func:`_run_epoch` describes, one
    :meth:`NeuralODE.loss_and_grad` per batch (the adaptive sweep; the update in the core
    through :meth:`Optimizer.step`), with the same outcome dict."""
    outcome: dict[str, Any] = {"failure": None, "loss_sum": 0.0, "norm_sum": 0.0, "batches": 0}
    names = field_param_names(model.field)
    trained = names if fixed_projection else (*names, "P", "c")
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        try:
            loss, grads = model.loss_and_grad(X[rows], y[rows])
        except _DIVERGENCES as exc:
            step, t = getattr(exc, "step", -1), getattr(exc, "t", 0.0)
            outcome.update(failure="sweep", message=str(exc), step=step, time=t, error=exc)
            return outcome
        grads = {k: grads[k] for k in trained}
        before = {k: model.params[k].copy() for k in trained}
        optimizer.step({k: model.params[k] for k in trained}, grads)
        if bound is not None:
            constrain(model, bound)
        if not all(np.all(np.isfinite(model.params[k])) for k in trained):
            for k in trained:
                model.params[k][...] = before[k]
            outcome.update(failure="update")
            return outcome
        outcome["loss_sum"] += loss * len(rows)
        outcome["norm_sum"] += _grad_norm(grads)
        outcome["batches"] += 1
    return outcome


def _diverged(
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


def _evaluation_diverged(
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


def _call_callback(cb: Any, epoch: int, logs: dict[str, float], model: Model) -> bool:
    """Run one callback; True when it asks to stop (returns True or raises StopIteration)."""
    fn = getattr(cb, "on_epoch_end", None)
    if fn is None:
        if not callable(cb):
            raise TypeError(f"callback {cb!r} is neither callable nor has on_epoch_end")
        fn = cb
    try:
        return fn(epoch, dict(logs), model) is True
    except StopIteration:
        return True


class _FeatureRecorder:
    """fit's record option: the final states of a fixed subset of the training points."""

    def __init__(self, model: Model, X: np.ndarray, y: np.ndarray, every: int) -> None:
        self.model, self.X, self.every = model, X, every
        self.features: dict[str, Any] = {"epoch": [], "states": [], "X": X, "y": y}

    @classmethod
    def create(
        cls, model: Model, X: np.ndarray, y: np.ndarray, record: Any, every: Any, seed: int
    ) -> _FeatureRecorder | None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"record_every must be an integer >= 1, got {every!r}")
        if record is None:
            return None
        n = X.shape[0]
        if isinstance(record, (int, np.integer)) and not isinstance(record, bool):
            if not 1 <= record <= n:
                raise ValueError(f"record must be in [1, {n}] (points of X), got {record}")
            rows = np.sort(np.random.default_rng(seed).permutation(n)[: int(record)])
        else:
            rows = np.asarray(record)
            if rows.ndim != 1 or rows.size == 0 or rows.dtype.kind not in "iu":
                raise ValueError("record must be an int or a non-empty sequence of row indices")
            if rows.min() < 0 or rows.max() >= n:
                raise ValueError(f"record indices must be in [0, {n})")
        return cls(model, X[rows], y[rows], int(every))

    def take(self, epoch: int) -> None:
        self.features["epoch"].append(epoch)
        self.features["states"].append(np.asarray(self.model.trajectory(self.X)[-1]))


def _check_seed(seed: Any) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample order of ``epoch`` (0-based): a permutation drawn from ``default_rng([seed,
    epoch])``, so any epoch can be replayed without stored RNG state."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(
    path: PathLike,
    model: Model,
    optimizer: Optimizer,
    history: History,
    *,
    epoch: int,
    seed: int,
    settings: Mapping[str, Any],
) -> Path:
    from .io import model_payload, write_file

    header, arrays = model_payload(model)
    header["checkpoint"] = {
        "format": _CHECKPOINT_FORMAT,
        "epoch": epoch,
        "seed": seed,
        "optimizer": optimizer.config(),
        "history": history.to_jsonable(),
        "settings": dict(settings),
    }
    for key, value in optimizer.state_dict().items():
        arrays["optimizer/" + key] = value
    return write_file(path, header, arrays)


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a training checkpoint written by :func:`fit` (``checkpoint=``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``model`` (ResNet or NeuralODE with the checkpoint's parameters), ``optimizer`` (a
        rebuilt :class:`resode.optim.Optimizer` with its state restored), ``history``
        (:class:`History` up to the checkpoint), ``epoch`` (completed epochs), ``seed`` (the
        shuffling seed) and ``settings`` (the ``fit`` arguments: ``batch_size``, ``shuffle``,
        ``bound``, ``fixed_projection``, ``epochs``).

    Raises
    ------
    ValueError
        If the file is not a valid checkpoint (see :func:`resode.load` for model files).
    """
    from .io import read_file

    model, header, extra = read_file(path)
    info = header.get("checkpoint")
    if info is None:
        raise ValueError(f"{path}: a model file, not a training checkpoint")
    try:
        if info.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {info.get('format')!r}")
        epoch, seed = info["epoch"], info["seed"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"bad epoch {epoch!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"bad seed {seed!r}")
        optimizer = from_config(info["optimizer"])
        optimizer.load_state_dict(extra)
        history = History.from_dict(info["history"])
        if len(history) != epoch:
            raise ValueError(f"history has {len(history)} epochs, checkpoint says {epoch}")
        settings = dict(info["settings"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid training checkpoint: {exc}") from None
    return {
        "model": model,
        "optimizer": optimizer,
        "history": history,
        "epoch": epoch,
        "seed": seed,
        "settings": settings,
    }


def check_resumable(model: Model, state: Mapping[str, Any], *, fixed_projection: bool) -> None:
    """Raise ``ValueError`` unless ``model`` can continue from the checkpoint ``state`` (from
    :func:`load_checkpoint`): the same kind of model with the same configuration (the seed
    aside) and the same ``fixed_projection``."""
    saved = state["model"]
    ignore = ("seed",)  # only the initialisation depends on it
    same = type(saved) is type(model) and all(
        saved.config[k] == v for k, v in model.config.items() if k not in ignore
    )
    if not same:
        raise ValueError(
            f"resume: the checkpoint's model {saved!r} does not match the model {model!r}"
        )
    if bool(state["settings"].get("fixed_projection")) != bool(fixed_projection):
        raise ValueError("resume: fixed_projection differs from the checkpoint's")


# --------------------------------------------------------------------------- fit


def fit(
    model: Model,
    X: Any,
    y: Any,
    *,
    optimizer: Optimizer | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    validation_data: tuple[Any, Any] | None = None,
    bound: float | None = None,
    fixed_projection: bool = False,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    log_every: int | None = None,
    checkpoint: PathLike | None = None,
    checkpoint_every: int = 100,
    resume: PathLike | None = None,
    record: int | Sequence[int] | None = None,
    record_every: int = 1,
) -> History:
    """Train ``model`` in place on ``(X, y)`` with mini-batch first-order optimisation.

    Each epoch visits every sample once, in batches of ``batch_size`` (the last one may be
    smaller); per batch: ``loss, grads = model.loss_and_grad(Xb, yb)``, one optimiser step,
    then the ``bound`` constraint. At the end of each epoch the history row is recorded, the
    optimiser's ``epoch_end()`` advances the learning-rate schedule, callbacks run and, every
    ``checkpoint_every`` epochs, a checkpoint is written.

    Parameters
    ----------
    model : ResNet or NeuralODE
        Trained in place (``model.params`` arrays are updated).
    X : array_like, shape (N, dim)
        Converted once to ``model.dtype``.
    y : array_like
        Integer labels ``(N,)`` in ``[0, classes)`` (``loss="cross_entropy"``), or float
        targets ``(N, classes)`` (``loss="mse"``, regression; ``(N,)`` when ``classes == 1``).
    optimizer : resode.optim.Optimizer, optional
        Default ``resode.optim.Adam(lr=1e-3)`` (PyTorch's default). Its state carries over if
        you call ``fit`` again with the same optimiser.
    epochs : int, default 100
        Total number of epochs (with ``resume``: including those already done).
    batch_size : int or None, default None
        Samples per mini-batch; ``None`` (or >= N) is full-batch gradient descent.
    shuffle : bool, default True
        Visit the samples of epoch ``e`` (0-based) in the order
        ``np.random.default_rng([seed, e]).permutation(N)``; otherwise in order.
    seed : int or None
        Seed of the shuffling. Two runs with the same model (same ``model.seed``), data,
        optimiser and ``seed`` give bitwise identical parameters, for any number of core threads
        (the core sums over fixed groups of samples in a fixed order). ``None``: a
        fresh random seed (stored in checkpoints, so resuming still replays the same order).
    validation_data : tuple (X_val, y_val), optional
        Evaluated at the end of every epoch (``val_loss``, ``val_accuracy`` or ``val_r2``).
    bound : float or None
        After every step, rescale each piece's field parameters so that
        ``sum|W_k| + sum|b_k| <= bound`` (bottleneck: ``W1_k, b1_k, W2_k, b2_k`` together);
        see :func:`constrain`.
    fixed_projection : bool, default False
        Keep the classifier ``P``, ``c`` frozen at their current values (only the field
        parameters are optimised).
    callbacks : iterable of callables or objects with ``on_epoch_end``
        Called as ``cb(epoch, logs, model)`` (or ``cb.on_epoch_end(epoch, logs, model)``)
        after every epoch, with ``epoch`` counted from 1 and ``logs`` the epoch's history
        row (a dict). Returning ``True`` or raising ``StopIteration`` stops training after
        this epoch (see also :class:`EarlyStopping`).
    progress : bool, default True
        Report progress on stderr: a tqdm bar (epoch, loss, score) when stderr is a terminal,
        otherwise (batch jobs, captured output, ``2> log``) one plain line every
        ``log_every`` epochs with epoch, loss, score, validation loss and score, learning rate
        and elapsed time. ``False``: silent.
    log_every : int or None
        Epochs between plain log lines (default: about 20 lines per run); the last epoch is
        always logged.
    checkpoint : str or os.PathLike, optional
        Write a checkpoint there (atomically, one ``.npz``: model, optimiser state, history,
        shuffling seed and epoch) every ``checkpoint_every`` epochs and when training ends.
    checkpoint_every : int, default 100
        Epochs between checkpoints.
    resume : str or os.PathLike, optional
        Continue from a checkpoint: its parameters are loaded into ``model`` (whose config
        must match), its optimiser state into ``optimizer`` (or a rebuilt copy of the saved
        optimiser when ``optimizer`` is None), its history is extended, and with ``seed=None``
        its shuffling seed is used. With the same arguments the final parameters are bitwise
        those of an uninterrupted run.
    record : int or sequence of int, optional
        Keep the final states ``x(T)`` of a fixed subset of the training points: that many
        points drawn with ``seed``, or these row indices of ``X``. They are recorded before the
        first epoch, every ``record_every`` epochs and after the last, into
        ``history.features`` (``{"epoch", "states", "X", "y"}``; epoch 0 is the start) for
        :func:`resode.plot.feature_history`. One forward sweep of the subset per record; kept
        in memory only (not in checkpoints, JSON or CSV).
    record_every : int, default 1
        Epochs between records.

    Returns
    -------
    History
        One row per epoch (all epochs, including resumed ones).

    Raises
    ------
    TrainingDiverged
        On a non-finite loss, gradient or updated parameter, when the core raises
        :class:`resode.NonFiniteError`, or when an adaptive method's step size fails
        (:class:`resode.StepSizeError`), in a training batch or in the end-of-epoch scoring,
        validation or record; the original exception is its ``__cause__``. The message names
        the epoch and batch, and ``model.params`` are the last finite parameters.
    ValueError, TypeError
        On bad arguments or data.

    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.moons(200, noise=0.05, seed=0)
    >>> model = resode.ResNet(2, layers=8, h=0.5, field="inside", seed=0)
    >>> h = resode.fit(model, X, y, optimizer=resode.optim.Adam(lr=2e-2), epochs=50,
    ...                batch_size=50, seed=0, progress=False)
    >>> len(h), sorted(h.keys())[:3]
    (50, ['accuracy', 'epoch', 'grad_norm'])
    """
    model = _check_model(model)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    epochs = int(epochs)
    Xc, yc = _data(model, X, y, "training data")
    n = Xc.shape[0]
    flat_targets = model.task == "regression" and np.ndim(y) == 1
    if batch_size is None:
        batch = n
    elif isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int or None, got {batch_size!r}")
    elif batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    else:
        batch = min(int(batch_size), n)
    if bound is not None:
        if isinstance(bound, bool) or not isinstance(bound, (int, float, np.floating)):
            raise TypeError(f"bound must be a positive number or None, got {bound!r}")
        if not (math.isfinite(bound) and bound > 0):
            raise ValueError(f"bound must be finite and > 0, got {bound!r}")
        bound = float(bound)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer)):
        raise TypeError(f"checkpoint_every must be an int, got {checkpoint_every!r}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if log_every is None:
        log_every = _default_log_every(epochs)
    elif isinstance(log_every, bool) or not isinstance(log_every, (int, np.integer)):
        raise TypeError(f"log_every must be an int or None, got {log_every!r}")
    elif log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a resode.optim.Optimizer, got {optimizer!r}")
    if validation_data is not None:
        try:
            Xv_raw, yv_raw = validation_data
        except (TypeError, ValueError):
            raise TypeError("validation_data must be a tuple (X_val, y_val)") from None
        Xv, yv = _data(model, Xv_raw, yv_raw, "validation_data")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb) and not callable(getattr(cb, "on_epoch_end", None)):
            raise TypeError(f"callback {cb!r} is neither callable nor has on_epoch_end")

    history = History()
    start = 0
    elapsed0 = 0.0
    if resume is not None:
        state = load_checkpoint(resume)
        check_resumable(model, state, fixed_projection=fixed_projection)
        for name in model.params:
            model.params[name] = state["model"].params[name]
        if optimizer is None:
            optimizer = state["optimizer"]
        else:
            optimizer.load_state_dict(state["optimizer"].state_dict())
        history = state["history"]
        start = state["epoch"]
        if seed is None:
            seed = state["seed"]
        if len(history):
            elapsed0 = history.time[-1]
    seed = _check_seed(seed)
    recorder = _FeatureRecorder.create(model, Xc, yc, record, record_every, seed)
    if optimizer is None:
        optimizer = Adam(lr=1e-3)
    _own_params(model)
    settings = {
        "epochs": epochs,
        "batch_size": batch_size,
        "shuffle": bool(shuffle),
        "bound": bound,
        "fixed_projection": bool(fixed_projection),
    }

    model._flat_targets = flat_targets
    bar = _progress_bar(bool(progress), epochs, min(start, epochs))
    log = bool(progress) and bar is None
    metric = "r2" if model.task == "regression" else "accuracy"
    t0 = time.perf_counter() - elapsed0
    stop = False
    if recorder is not None:
        history.features = recorder.features
        recorder.take(start)
    try:
        for epoch in range(start, epochs):
            lr = optimizer.lr
            # Full batch: every epoch sees all samples at once, no need to permute them.
            order = _epoch_order(n, seed, epoch, shuffle and batch < n)
            outcome = _run_epoch(model, Xc, yc, order, batch, optimizer, bound, fixed_projection)
            if outcome["failure"] is not None:
                raise _diverged(outcome, epoch, lr, history)
            loss_sum, norm_sum, batches = (
                outcome["loss_sum"],
                outcome["norm_sum"],
                outcome["batches"],
            )
            epoch_loss = loss_sum / n
            if not math.isfinite(epoch_loss):  # finite batch losses whose mean overflows
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}: the epoch's mean loss is not "
                    f"finite ({epoch_loss}) although each batch loss was",
                    epoch=epoch + 1,
                    batch=batches,
                    history=history,
                )
            row: dict[str, float] = {"epoch": epoch + 1, "loss": epoch_loss}
            try:
                row[metric] = model.score(Xc, yc)
                if validation_data is not None:
                    row["val_loss"] = model.loss_and_grad(Xv, yv)[0]
                    row["val_" + metric] = model.score(Xv, yv)
            except _DIVERGENCES as exc:
                what = f"the epoch's {metric}"
                raise _evaluation_diverged(exc, epoch, batches, what, history) from exc
            row["grad_norm"] = norm_sum / max(batches, 1)
            row["lr"] = lr
            row["time"] = time.perf_counter() - t0
            history.append(row)
            optimizer.epoch_end()
            for cb in callbacks:
                stop = _call_callback(cb, epoch + 1, row, model) or stop
            if bar is not None:
                postfix = {"loss": f"{row['loss']:.4g}", metric: f"{row[metric]:.3f}"}
                if "val_" + metric in row:
                    postfix["val_" + metric] = f"{row['val_' + metric]:.3f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
            elif log and ((epoch + 1) % log_every == 0 or epoch + 1 == epochs or stop):
                print(_log_line(row, epochs), file=sys.stderr, flush=True)
            done = epoch + 1
            last = stop or done == epochs
            if recorder is not None and (done % recorder.every == 0 or last):
                try:
                    recorder.take(done)
                except _DIVERGENCES as exc:
                    what = "the record"
                    raise _evaluation_diverged(exc, epoch, batches, what, history) from exc
            if checkpoint is not None and (done % checkpoint_every == 0 or last):
                _save_checkpoint(
                    checkpoint,
                    model,
                    optimizer,
                    history,
                    epoch=done,
                    seed=seed,
                    settings=settings,
                )
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    return history
