"""The dynamics of a model: the controls ``theta(t)`` per piece, the norm of the state along
the flow, and the training error of the readout applied along the flow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._typing import ArrayLike
from ..models import NeuralODE, ResNet, field_param_names
from ._common import (
    Model,
    PathLike,
    any_labels,
    check_model,
    class_colors,
    legend_outside,
    new_figure,
    save_figure,
    time_grid,
)

__all__ = ["controls", "loss_along_time", "state_norm"]


def controls(model: Model, path: PathLike = "controls.png", *, dpi: int = 120) -> Path:
    """Norm of the controls ``theta(t)`` per piece over time (per layer for a ResNet).

    Draws, as a step function over ``[0, T]`` (or layers ``0..L``), the Euclidean (Frobenius)
    norm of all field parameters of each piece, ``sqrt(|W_k|^2 + |b_k|^2)`` (bottleneck: of
    ``W1_k, b1_k, W2_k, b2_k``), and thinner, each parameter's own norm.

    Parameters
    ----------
    model : ResNet or NeuralODE
        The model to draw.
    path : str or os.PathLike, default "controls.png"
        The image (or animation) to write; its extension picks the format.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> model = resode.NeuralODE(2, T=2.0, pieces=5, seed=0)
    >>> resode.plot.controls(model, os.path.join(tempfile.mkdtemp(), "c.png")).name
    'c.png'
    """
    model = check_model(model)
    names = field_param_names(model.field)
    per = {
        n: np.sqrt(
            np.sum(
                np.square(np.asarray(model.params[n], np.float64)).reshape(
                    model.params[n].shape[0], -1
                ),
                axis=1,
            )
        )
        for n in names
    }
    total = np.sqrt(sum(v**2 for v in per.values()))
    pieces = total.shape[0]
    if isinstance(model, NeuralODE):
        edges, xlabel = np.linspace(0.0, model.T, pieces + 1), "time t"
    else:
        edges, xlabel = np.arange(pieces + 1, dtype=np.float64), "layer"
    fig = new_figure((7.2, 3.6))
    ax = fig.add_subplot()
    ax.stairs(total, edges, baseline=None, lw=2.0, color="k", label="|theta(t)|")
    for n, v in per.items():
        ax.stairs(v, edges, baseline=None, lw=1.0, alpha=0.8, label=f"|{n}|")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("norm")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{type(model).__name__}: controls per piece")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


# --------------------------------------------------------------------------- state norm


def state_norm(
    model: Model,
    X: ArrayLike,
    path: PathLike = "state_norm.png",
    *,
    y: ArrayLike | None = None,
    band: tuple[float, float] = (0.1, 0.9),
    dpi: int = 120,
) -> Path:
    """The norm ``|x(t)|`` of the (augmented) state over time: the mean and a quantile band.

    Parameters
    ----------
    model : ResNet or NeuralODE
        The model to draw.
    X : array_like, shape (N, dim)
        The inputs, one sample a row.
    path : str or os.PathLike, default "state_norm.png"
        The image (or animation) to write; its extension picks the format.
    y : array_like, optional
        Labels; when given, one mean and band per class, in the class colours (a model with
        one output: per sign of the targets).
    band : tuple of float, default (0.1, 0.9)
        Lower and upper quantiles of the shaded band.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> model = resode.NeuralODE(2, T=1.0, pieces=4, seed=0)
    >>> X = np.random.default_rng(0).normal(size=(20, 2))
    >>> resode.plot.state_norm(model, X, os.path.join(tempfile.mkdtemp(), "n.png")).name
    'n.png'
    """
    model = check_model(model)
    lo_q, hi_q = (float(q) for q in band)
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ValueError(f"band must be two quantiles 0 <= lo < hi <= 1, got {band!r}")
    traj = np.asarray(model.trajectory(X), dtype=np.float64)
    norms = np.linalg.norm(traj, axis=2)  # (steps + 1, N)
    times, xlabel = time_grid(model)
    groups: list[tuple[np.ndarray, Any, str]]
    if y is None:
        groups = [(np.ones(norms.shape[1], bool), "k", "all points")]
    else:
        labels = any_labels(y, norms.shape[1], model.classes)
        colors = class_colors(max(model.classes, int(labels.max(initial=0)) + 1))
        names = ["y <= 0", "y > 0"] if model.classes == 1 else None  # one output: the sign
        groups = [
            (labels == c, colors[c], names[c] if names else f"class {c}") for c in np.unique(labels)
        ]
    fig = new_figure((7.2, 3.6))
    ax = fig.add_subplot()
    for mask, color, label in groups:
        sel = norms[:, mask]
        ax.plot(times, sel.mean(axis=1), color=color, lw=1.8, label=label)
        ax.fill_between(
            times,
            np.quantile(sel, lo_q, axis=1),
            np.quantile(sel, hi_q, axis=1),
            color=color,
            alpha=0.2,
            lw=0,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("|x(t)|")
    ax.set_title(
        f"{type(model).__name__}: state norm, mean and {100 * lo_q:.0f}-{100 * hi_q:.0f}% band"
    )
    ax.grid(alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


# --------------------------------------------------------------------------- studies


def loss_along_time(
    models: Model | Mapping[str, Model],
    X: ArrayLike,
    y: ArrayLike,
    path: PathLike = "loss_along_time.png",
    *,
    dpi: int = 120,
) -> Path:
    """Draw the training error along the flow.

    The data loss of the readout ``P x(t_k) + c`` (clamped for ``readout="hardtanh"``) applied to
    the state at every step ``t_k``, on a log scale (the picture of the turnpike: the loss falls
    early and stays low when the model has learnt to reach and hold a good state).

    Parameters
    ----------
    models : ResNet, NeuralODE, or a mapping of labels to models
        Several models (e.g. trained with different ``T``, or with and without the turnpike
        loss) share the axes; times are each model's own.
    X : array_like, shape (N, dim)
        The inputs, one sample a row.
    y : array_like
        Labels ``(N,)`` (cross-entropy) or targets (``loss="mse"``).
    path : str or os.PathLike, default "loss_along_time.png"
        The image (or animation) to write; its extension picks the format.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.concentric_spheres(100, seed=0)
    >>> m = resode.NeuralODE(2, T=2.0, pieces=4, augment=1, seed=0)
    >>> resode.plot.loss_along_time({"T = 2": m}, X, y,
    ...                             os.path.join(tempfile.mkdtemp(), "l.png")).name
    'l.png'
    """
    from ..reference import data_loss, readout_logits

    if isinstance(models, (ResNet, NeuralODE)):
        models = {type(models).__name__: models}
    if not models:
        raise ValueError("models must hold at least one model")
    fig = new_figure((7.2, 3.8))
    ax = fig.add_subplot()
    for label, model in models.items():
        model = check_model(model)
        traj = np.asarray(model.trajectory(X), dtype=np.float64)  # (steps + 1, N, D)
        params = {k: np.asarray(model.params[k], dtype=np.float64) for k in ("P", "c")}
        goal = (
            model.problem(X, y)
            .require_targets()
            .astype(np.int64 if model.loss == "cross_entropy" else np.float64)
        )
        losses = [
            data_loss(readout_logits(params, x, model.readout), goal, model.loss) for x in traj
        ]
        times, xlabel = time_grid(model)
        # a loss that underflows to exactly 0 is drawn at 1e-16 (a log axis has no 0)
        ax.plot(times, np.maximum(losses, 1e-16), lw=1.8, label=str(label))
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss of P x(t) + c")
    ax.set_title("training error along the flow")
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
