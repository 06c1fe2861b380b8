"""One epoch of training (in one call into the core, or batch by batch for an adaptive
model), the parameter constraint and the order of the samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _core
from ..models import Model, NeuralCDE, Problem, field_param_names, r2_from_sums
from ..optim import Optimizer
from .divergence import DIVERGENCES

__all__ = [
    "batch_scores",
    "check_seed",
    "constrain",
    "epoch_order",
    "grad_norm",
    "own_params",
    "prediction_stats",
    "run_adaptive_epoch",
    "run_epoch",
]


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


def grad_norm(grads: Mapping[str, np.ndarray]) -> float:
    """Euclidean norm of all arrays together, scaled so that huge finite entries don't
    overflow in the squares (the core's, as in the whole-epoch loop)."""
    return _core.grad_norm(list(grads.values()))


def own_params(model: Model) -> None:
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


def run_epoch(
    model: Model,
    data: Problem,
    order: np.ndarray,
    batch: int,
    optimizer: Optimizer,
    bound: float | None,
    fixed_projection: bool,
) -> dict[str, Any]:
    """One epoch in one core call (``_core.train_epoch``): per batch of ``order``,
    ``loss_and_grad``, the optimiser's update, ``bound`` and the divergence check, exactly as
    a loop of :meth:`loss_and_grad`, :meth:`Optimizer.step` and :func:`constrain` would.

    The outcome dict: ``batches``, ``steps``, ``loss_sum`` (the batch losses times the batch
    sizes), ``norm_sum``, ``failure`` (None, ``"sweep"`` or ``"update"``) and, from the
    batches' own forward sweeps, ``correct`` and ``sse`` (see :func:`batch_scores`); an
    adaptive neural ODE's outcome has no ``correct``. An adaptive model, a
    :class:`resode.NeuralCDE` and a neural ODE with inputs (``data.u``) train batch by batch
    (:func:`run_adaptive_epoch`)."""
    if model.adaptive or isinstance(model, NeuralCDE) or data.u is not None:
        return run_adaptive_epoch(model, data, order, batch, optimizer, bound, fixed_projection)
    names = field_param_names(model.field)
    trained = names if fixed_projection else [*names, "P", "c"]
    state, first = optimizer._core_state({k: model.params[k] for k in trained})
    steps = 0
    try:
        outcome = _core.train_epoch(
            data.X,
            data.require_targets(),
            [model.params[k] for k in names],
            model.params["P"],
            model.params["c"],
            order,
            batch=batch,
            **data.core_args,
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


def run_adaptive_epoch(
    model: Model,
    data: Problem,
    order: np.ndarray,
    batch: int,
    optimizer: Optimizer,
    bound: float | None,
    fixed_projection: bool,
) -> dict[str, Any]:
    """The epoch of an adaptive-step model, a neural CDE or a neural ODE with inputs: the loop
    :func:`run_epoch` describes, one ``model.loss_and_grad`` per batch (a batch's rows of the
    inputs ``u`` and its per-sample times go with it, ``Problem.rows``;
    the update in the core through :meth:`Optimizer.step`), with the same outcome dict. A neural
    CDE's has ``correct`` and ``sse`` too, from the logits its ``loss_and_grad`` returns
    (:func:`prediction_stats`); the neural ODE's adaptive and input-driven sweeps do not
    return theirs (no ``correct``). ``fixed_projection`` freezes ``P`` and ``c``; every other
    parameter is trained."""
    outcome: dict[str, Any] = {"failure": None, "loss_sum": 0.0, "norm_sum": 0.0, "batches": 0}
    if isinstance(model, NeuralCDE):
        outcome.update(correct=0, sse=np.zeros(0))
    trained = [k for k in model.param_shapes if not (fixed_projection and k in ("P", "c"))]
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        part = data.rows(rows)
        targets = part.require_targets()
        try:
            if isinstance(model, NeuralCDE):
                loss, grads, logits = model.loss_and_grad(
                    part.X, targets, part.times, return_logits=True
                )
                correct, sse = prediction_stats(logits, targets, model.loss)
                outcome["correct"] += correct
                outcome["sse"] = sse if start == 0 else outcome["sse"] + sse
            else:
                loss, grads = model.loss_and_grad(part.X, targets, **part.inputs())
        except DIVERGENCES as exc:
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
        outcome["norm_sum"] += grad_norm(grads)
        outcome["batches"] += 1
    return outcome


def prediction_stats(logits: np.ndarray, targets: np.ndarray, loss: str) -> tuple[int, np.ndarray]:
    """A batch's ``(correct, sse)`` from its logits ``(n, classes)``, as the core's fused epoch
    counts them (``block_prediction_stats`` in cpp/resode/losses.hpp): cross-entropy, the
    correct argmax (the first maximum), ``sse`` empty; mse, the squared errors per output
    (float64) and, with one output, the sign agreement ``(z > 0) == (y > 0)``."""
    if loss == "cross_entropy":
        return int(np.sum(np.argmax(logits, axis=1) == targets)), np.zeros(0)
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    sse = np.sum((z - y) ** 2, axis=0)
    correct = int(np.sum((logits > 0) == (targets > 0))) if logits.shape[1] == 1 else 0
    return correct, sse


def batch_scores(
    outcome: Mapping[str, Any], n: int, columns: list[str], spread: np.ndarray | None
) -> dict[str, float]:
    """The training score columns of an epoch from its batches' own predictions (each sample
    judged with the parameters its batch ran with), as Keras and scikit-learn's
    ``loss_curve_`` report them:

    - ``accuracy`` (classification): ``correct / n``, the correct argmax over the epoch;
    - ``r2``: ``1 - SSE_j / SS_tot_j`` averaged over the outputs ``j``, ``SSE_j`` the squared
      errors of the epoch's batch predictions, ``SS_tot_j`` (``spread``) the squared deviations
      of the training targets from their mean (:func:`resode.models.r2_score`'s conventions);
    - ``accuracy`` beside ``r2`` (1 output, targets +-1): the sign agreement ``correct / n``.
    """
    out: dict[str, float] = {}
    if "r2" in columns:
        assert spread is not None, "the r2 column comes with the targets' spread"
        out["r2"] = r2_from_sums(outcome["sse"], spread)
    if "accuracy" in columns:
        out["accuracy"] = int(outcome["correct"]) / n
    return out


def check_seed(seed: Any) -> int:
    if seed is None:
        # entropy drawn from the OS is an int (numpy types it int | Sequence[int] | None)
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample order of ``epoch`` (0-based): a permutation drawn from ``default_rng([seed,
    epoch])``, so any epoch can be replayed without stored RNG state."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)
