"""The training loop, :func:`fit`: check the arguments, then per epoch train, score,
report, record and checkpoint, each in its own unit of this package."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np

from .._typing import ArrayLike
from ..models import Model, Problem, target_spread
from ..optim import Adam, Optimizer
from .arguments import (
    check_batch_size,
    check_bound,
    check_epochs,
    check_every,
    check_log_every,
    check_model,
    check_monitor,
    check_optimizer,
    check_train_metrics,
    check_validation,
    prepare_data,
    record_names,
    score_columns,
)
from .callbacks import Callback, EarlyStopping, call_callback, split_callbacks
from .checkpoints import check_resumable, load_checkpoint, resume_early_stopping, save_checkpoint
from .divergence import DIVERGENCES, check_epoch_loss, epoch_diverged, evaluation_diverged
from .epoch import batch_scores, check_seed, epoch_order, own_params, run_epoch
from .history import History
from .progress import Progress
from .recorder import FeatureRecorder

__all__ = ["fit"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class _Run:
    """One call of :func:`fit`: its checked arguments and its state."""

    model: Model
    data: Problem
    validation: Problem | None
    optimizer: Optimizer
    epochs: int
    batch: int
    shuffle: bool
    seed: int
    bound: float | None
    fixed_projection: bool
    callbacks: list[Callback]
    stopper: EarlyStopping | None
    columns: list[str]
    history: History
    start: int
    end: int
    t0: float
    checkpoint: PathLike | None
    checkpoint_every: int
    log_every: int
    settings: dict[str, Any]
    train_metrics: str = "batches"
    spread: np.ndarray | None = None  # regression: the training targets' SS_tot per output
    recorder: FeatureRecorder | None = None
    metric: str = field(init=False)

    def __post_init__(self) -> None:
        self.metric = self.columns[0]


def fit(
    model: Model,
    X: ArrayLike,
    y: ArrayLike,
    *,
    u: Any = None,
    times: Any = None,
    optimizer: Optimizer | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    validation_data: tuple[ArrayLike, ...] | None = None,
    train_metrics: Literal["batches", "exact"] = "batches",
    bound: float | None = None,
    fixed_projection: bool = False,
    callbacks: Iterable[Callback] = (),
    early_stopping: EarlyStopping | None = None,
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
    smaller); per batch: ``loss, grads = model.loss_and_grad(Xb, yb)`` (with the batch's rows
    of ``u`` and ``times``: ``u=ub, times=tb``), one optimiser step,
    then the ``bound`` constraint. At the end of each epoch the history row is recorded, the
    optimiser's ``epoch_end()`` advances the learning-rate schedule, callbacks run and, every
    ``checkpoint_every`` epochs, a checkpoint is written.

    Parameters
    ----------
    model : ResNet, NeuralODE or NeuralCDE
        Trained in place (``model.params`` arrays are updated).
    X : array_like, shape (N, dim)
        Converted once to ``model.dtype``. For a :class:`resode.NeuralCDE`: the series ``U``,
        ``(N, L, channels)``, NaN for missing values and padding; every path is checked
        before the first epoch.
    y : array_like
        Integer labels ``(N,)`` in ``[0, classes)`` (``loss="cross_entropy"``), or float
        targets ``(N, classes)`` (``loss="mse"``, regression; ``(N,)`` when ``classes == 1``).
    u : array_like, shape (N, L, inputs), optional
        A :class:`resode.NeuralODE`'s inputs ``u(t)`` when ``inputs > 0`` (then required): one
        series per sample, NaN for missing values and padding, batched with ``X``; every path
        is checked before the first epoch. A ValueError for the other models. Such a model
        trains batch by batch through ``model.loss_and_grad(Xb, yb, u=ub, times=tb)``.
    times : array_like, shape (L,) or (N, L), optional
        The observation times of a :class:`resode.NeuralCDE`'s series or of a NeuralODE's
        inputs ``u``, shared or per sample (per-sample times are batched with the series);
        default ``0, 1, ..., L-1``. A ValueError for the other models. A neural CDE trains
        batch by batch through ``model.loss_and_grad``.
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
        Evaluated at the end of every epoch (``val_loss``, ``val_accuracy`` or ``val_r2``),
        exactly, with the epoch's final parameters. For a :class:`resode.NeuralCDE`:
        ``(U_val, y_val, times_val)``, or ``(U_val, y_val)`` for times ``0 .. L_val-1``; for
        a NeuralODE with inputs: ``(X_val, y_val, u_val, times_val)``, or
        ``(X_val, y_val, u_val)`` for times ``0 .. L_val-1``. A 1-output model whose
        targets are all -1 or +1 also records the sign agreement (``accuracy``,
        ``val_accuracy``) beside R^2; see :class:`History`.
    train_metrics : {"batches", "exact"}, default "batches"
        Where the training ``accuracy`` / ``r2`` of the history come from. ``"batches"`` (the
        convention of Keras, PyTorch Lightning and scikit-learn's ``loss_curve_``): from the
        predictions the batches' own forward sweeps made, each sample judged with the
        parameters its batch ran with, over the epoch's samples: accuracy = correct argmax
        (sign agreement for +-1 targets) / N; ``R^2 = 1 - SSE_j / SS_tot_j`` averaged over the
        outputs, ``SSE_j`` the squared errors of those predictions and ``SS_tot_j`` the squared
        deviations of the training targets from their mean. No extra sweep. ``"exact"``: the
        model's score on the whole training set with the parameters at the end of the epoch
        (one more forward sweep over ``X`` per epoch). The ``loss`` column is the batches'
        mean in both; an adaptive-step model's and a neural ODE with inputs' training score is
        always ``"exact"``'s (their per-batch sweeps do not return their predictions; a neural
        CDE's do). The parameters are the same.
    bound : float or None
        After every step, rescale each piece's field parameters so that
        ``sum|W_k| + sum|b_k| <= bound`` (bottleneck: ``W1_k, b1_k, W2_k, b2_k`` together);
        see :func:`constrain`.
    fixed_projection : bool, default False
        Keep the classifier ``P``, ``c`` frozen at their current values (only the field
        parameters, and a neural CDE's ``A``, ``a``, are optimised).
    callbacks : iterable of callables or objects with ``on_epoch_end``
        Called as ``cb(epoch, logs, model)`` (or ``cb.on_epoch_end(epoch, logs, model)``)
        after every epoch, with ``epoch`` counted from 1 and ``logs`` the epoch's history
        row (a dict). Returning ``True`` or raising ``StopIteration`` stops training after
        this epoch. An :class:`EarlyStopping` here acts as ``early_stopping=``.
    early_stopping : EarlyStopping, optional
        Stop when its monitored column (default ``"val_loss"``) has not improved by more than
        ``min_delta`` for ``patience`` epochs, and (``restore_best``, the default) end with
        the parameters of the best epoch, also when all ``epochs`` ran. The best epoch is
        ``history.best_epoch``; checkpoints keep it and its parameters, so a resumed run ends
        as an uninterrupted one. A ``val_*`` monitor needs ``validation_data``. After a
        :class:`TrainingDiverged` the model holds the last finite parameters, as without.
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
        shuffling seed and epoch; see :func:`save_checkpoint`) every ``checkpoint_every``
        epochs and when training ends (before early stopping restores the best parameters:
        the checkpoint holds the training state, and the best parameters beside it).
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
        in memory only (not in checkpoints, JSON or CSV). Not for a neural CDE or a neural
        ODE with inputs.
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
    run = _start(**locals())  # every argument, checked there
    with Progress(bool(progress), run.epochs, run.start, run.log_every, run.metric) as report:
        for epoch in range(run.start, run.end):
            row, batches = _train_epoch(run, epoch)
            if _end_epoch(run, row, batches, report):
                break
    if run.stopper is not None:
        run.stopper.restore(run.model)
    return run.history


def _start(
    model: Any, X: Any, y: Any, *, u: Any, times: Any, optimizer: Any, epochs: Any, batch_size: Any,
    shuffle: Any, seed: Any, validation_data: Any, train_metrics: Any, bound: Any,
    fixed_projection: Any, callbacks: Any,
    early_stopping: Any, progress: Any, log_every: Any, checkpoint: Any, checkpoint_every: Any,
    resume: Any, record: Any, record_every: Any,
) -> _Run:  # fmt: skip
    """Check fit's arguments (in this order: the first error is the one reported), resume
    from a checkpoint and prepare the model: the run before its first epoch."""
    model = check_model(model)
    epochs = check_epochs(epochs)
    data = prepare_data(model, X, y, "training data", times, u)
    batch = check_batch_size(batch_size, data.X.shape[0])
    bound = check_bound(bound)
    checkpoint_every = check_every("checkpoint_every", checkpoint_every)
    log_every = check_log_every(log_every, epochs)
    optimizer = check_optimizer(optimizer)
    validation = check_validation(model, validation_data)
    train_metrics = check_train_metrics(train_metrics)
    callbacks, stopper = split_callbacks(callbacks, early_stopping)
    columns = score_columns(model, data, validation)
    check_monitor(stopper, columns)
    history, start, elapsed = History(), 0, 0.0
    if resume is not None:
        optimizer, history, start, seed = _resume(
            resume, model, optimizer, seed, bool(fixed_projection), stopper
        )
        elapsed = history.time[-1] if len(history) else 0.0
    elif stopper is not None:
        stopper.reset()
    seed = check_seed(seed)
    recorder = FeatureRecorder.create(
        model, data.X, data.require_targets(), record, record_every, seed
    )
    own_params(model)
    model.flat_targets = data.flat_targets
    record_names(model, X, y)
    settings = {  # what a checkpoint records of the run
        "epochs": epochs, "batch_size": batch_size, "shuffle": bool(shuffle), "bound": bound,
        "fixed_projection": bool(fixed_projection), "train_metrics": train_metrics,
        **({"early_stopping": stopper.config()} if stopper is not None else {}),
    }  # fmt: skip
    run = _Run(
        model=model, data=data, validation=validation, optimizer=optimizer or Adam(lr=1e-3),
        epochs=epochs, batch=batch, shuffle=bool(shuffle), seed=seed, bound=bound,
        fixed_projection=bool(fixed_projection), callbacks=callbacks, stopper=stopper,
        columns=columns, history=history, start=start,
        end=start if stopper is not None and stopper.stopped else epochs,
        t0=time.perf_counter() - elapsed, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, log_every=log_every, settings=settings,
        train_metrics=train_metrics,
        spread=target_spread(data.require_targets()) if model.task == "regression" else None,
        recorder=recorder,
    )  # fmt: skip
    if recorder is not None:
        history.features = recorder.features
        recorder.take(start)
    return run


def _resume(
    path: PathLike,
    model: Model,
    optimizer: Optimizer | None,
    seed: int | None,
    fixed_projection: bool,
    stopper: EarlyStopping | None,
) -> tuple[Optimizer, History, int, int | None]:
    """Load the checkpoint at ``path`` into ``model`` and ``optimizer`` (a rebuilt copy of the
    saved one when None) and ``stopper``: (optimizer, history, completed epochs, seed)."""
    state = load_checkpoint(path)
    check_resumable(model, state, fixed_projection=fixed_projection)
    for name in model.params:
        model.params[name] = state["model"].params[name]
    if optimizer is None:
        optimizer = state["optimizer"]
    else:
        optimizer.load_state_dict(state["optimizer"].state_dict())
    if stopper is not None:
        resume_early_stopping(stopper, state, model)
        state["history"].best_epoch = stopper.best_epoch
    return optimizer, state["history"], state["epoch"], state["seed"] if seed is None else seed


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, float], int]:
    """Train epoch ``epoch`` (0-based) and score it: its history row and its batches."""
    lr = run.optimizer.lr
    n = run.data.X.shape[0]
    # Full batch: every epoch sees all samples at once, no need to permute them.
    order = epoch_order(n, run.seed, epoch, run.shuffle and run.batch < n)
    outcome = run_epoch(
        run.model, run.data, order, run.batch, run.optimizer, run.bound, run.fixed_projection
    )
    if outcome["failure"] is not None:
        raise epoch_diverged(outcome, epoch, lr, run.history)
    batches = outcome["batches"]
    row: dict[str, float] = {"epoch": epoch + 1, "loss": outcome["loss_sum"] / n}
    check_epoch_loss(row["loss"], epoch, batches, run.history)
    try:
        row.update(_scores(run, outcome))
    except DIVERGENCES as exc:
        what = f"the epoch's {run.metric}"
        raise evaluation_diverged(exc, epoch, batches, what, run.history) from exc
    row["grad_norm"] = outcome["norm_sum"] / max(batches, 1)
    row["lr"] = lr
    row["time"] = time.perf_counter() - run.t0
    return row, batches


def _scores(run: _Run, outcome: dict[str, Any]) -> dict[str, float]:
    """The score columns: training (from the batches, or an end-of-epoch pass), then
    validation (an end-of-epoch pass)."""
    model, data, val = run.model, run.data, run.validation
    if run.train_metrics == "batches" and "correct" in outcome:  # adaptive ODEs: no counts
        train = [c for c in run.columns if not c.startswith("val_")]
        out = batch_scores(outcome, data.X.shape[0], train, run.spread)
    else:
        out = {run.metric: model.score(data.X, data.require_targets(), **data.inputs())}
        if "accuracy" in run.columns and run.metric == "r2":  # the sign agreement of +-1 targets
            out["accuracy"] = model.sign_accuracy(data.X, data.require_targets(), **data.inputs())
    if val is not None:
        out["val_loss"] = model.loss_and_grad(val.X, val.require_targets(), **val.inputs())[0]
        out["val_" + run.metric] = model.score(val.X, val.require_targets(), **val.inputs())
        if "val_accuracy" in run.columns and run.metric == "r2":
            out["val_accuracy"] = model.sign_accuracy(val.X, val.require_targets(), **val.inputs())
    return out


def _end_epoch(run: _Run, row: dict[str, float], batches: int, report: Progress) -> bool:
    """Record the row, advance the schedule, run early stopping and the callbacks, report,
    record the features and checkpoint: whether training stops after this epoch."""
    model, done = run.model, int(row["epoch"])
    run.history.append(row)
    run.optimizer.epoch_end()
    stop = False
    if run.stopper is not None:
        stop = run.stopper(done, row, model)
        run.history.best_epoch = run.stopper.best_epoch
    for cb in run.callbacks:
        stop = call_callback(cb, done, row, model) or stop
    report.epoch_end(row, stop)
    last = stop or done == run.epochs
    if run.recorder is not None and (done % run.recorder.every == 0 or last):
        try:
            run.recorder.take(done)
        except DIVERGENCES as exc:
            raise evaluation_diverged(exc, done - 1, batches, "the record", run.history) from exc
    if run.checkpoint is not None and (done % run.checkpoint_every == 0 or last):
        best = run.stopper.best_params if run.stopper is not None else None
        save_checkpoint(
            run.checkpoint, model, run.optimizer, run.history,
            epoch=done, seed=run.seed, settings=run.settings, best_params=best,
        )  # fmt: skip
    return stop
