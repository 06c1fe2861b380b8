"""Training checkpoints: :func:`save_checkpoint`, :func:`load_checkpoint`,
:func:`check_resumable`, and how early stopping resumes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..io import model_payload, read_file, write_file
from ..models import Model
from ..optim import Optimizer, from_config
from .callbacks import EarlyStopping
from .history import History

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_resumable",
    "load_checkpoint",
    "resume_early_stopping",
    "save_checkpoint",
]

PathLike = Union[str, "os.PathLike[str]"]

CHECKPOINT_FORMAT = 1
# The parameters of the best epoch under early stopping, in the checkpoint's arrays.
BEST_PREFIX = "best/"


def save_checkpoint(
    path: PathLike,
    model: Model,
    optimizer: Optimizer,
    history: History,
    *,
    epoch: int,
    seed: int,
    settings: Mapping[str, Any],
    best_params: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a training checkpoint (atomically, one ``.npz``) as :func:`fit` does: the model,
    the optimiser's configuration and state, the history (with its ``best_epoch``), the
    shuffling ``seed``, the completed ``epoch`` and the ``settings`` of ``fit``
    (``epochs``, ``batch_size``, ``shuffle``, ``bound``, ``fixed_projection``, ...), and,
    under early stopping, the parameters of the best epoch (``best_params``, e.g.
    ``EarlyStopping.best_params``). Read it with :func:`load_checkpoint`; resume with
    ``fit(..., resume=path)``. Returns the path written."""
    header, arrays = model_payload(model)
    header["checkpoint"] = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "seed": seed,
        "optimizer": optimizer.config(),
        "history": history.to_jsonable(),
        "settings": dict(settings),
    }
    for key, value in optimizer.state_dict().items():
        arrays["optimizer/" + key] = value
    for name, value in (best_params or {}).items():
        arrays[BEST_PREFIX + name] = np.asarray(value)
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
        shuffling seed), ``settings`` (the ``fit`` arguments: ``batch_size``, ``shuffle``,
        ``bound``, ``fixed_projection``, ``epochs``, ``train_metrics``, ``early_stopping``) and
        ``best_params`` (the parameters of the best epoch under early stopping, or None).

    Raises
    ------
    ValueError
        If the file is not a valid checkpoint (see :func:`resode.load` for model files).
    """
    model, header, extra = read_file(path)
    info = header.get("checkpoint")
    if info is None:
        raise ValueError(f"{path}: a model file, not a training checkpoint")
    try:
        if info.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {info.get('format')!r}")
        epoch, seed = info["epoch"], info["seed"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"bad epoch {epoch!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"bad seed {seed!r}")
        best = {k[len(BEST_PREFIX) :]: v for k, v in extra.items() if k.startswith(BEST_PREFIX)}
        _check_best_params(best, model)
        optimizer = from_config(info["optimizer"])
        optimizer.load_state_dict({k: v for k, v in extra.items() if not k.startswith(BEST_PREFIX)})
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
        "best_params": best or None,
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


def _check_best_params(best: Mapping[str, np.ndarray], model: Model) -> None:
    """The ``best/<name>`` arrays: none, or exactly the model's parameters (shape, dtype,
    finite)."""
    if not best:
        return
    shapes = model.param_shapes
    if set(best) != set(shapes):
        raise ValueError(f"best parameters {sorted(best)} differ from the model's {sorted(shapes)}")
    for name, value in best.items():
        if value.shape != shapes[name] or value.dtype != model.dtype:
            raise ValueError(f"best parameter {name!r} has shape {value.shape} {value.dtype}")
        if not np.isfinite(value).all():
            raise ValueError(f"best parameter {name!r} contains NaN or Inf")


def resume_early_stopping(stopper: EarlyStopping, state: Mapping[str, Any], model: Model) -> None:
    """Bring ``stopper`` to where an uninterrupted run had it at the checkpoint ``state``
    (from :func:`load_checkpoint`, whose parameters ``model`` now holds): its history's
    monitored column replayed, and the best epoch's parameters from the checkpoint."""
    history, epoch = state["history"], state["epoch"]
    stopper.replay(history[stopper.monitor] if stopper.monitor in history else [], history.epoch)
    if not stopper.restore_best or stopper.best_epoch is None:
        return
    if stopper.best_epoch == epoch:
        stopper.best_params = {k: np.array(v, copy=True) for k, v in model.params.items()}
    elif state.get("best_params") is not None and history.best_epoch == stopper.best_epoch:
        stopper.best_params = {k: np.array(v, copy=True) for k, v in state["best_params"].items()}
    else:
        raise ValueError(
            f"resume: early stopping's best epoch is {stopper.best_epoch}, but the checkpoint "
            "holds no parameters of that epoch (it was written without early stopping or "
            "with another monitor)"
        )
