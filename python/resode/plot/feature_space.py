"""The features the readout sees: the final states ``x(T)`` with the readout's separator, and
their movement over the epochs of a training."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    Model,
    PathLike,
    animate,
    any_labels,
    check_animation_suffix,
    check_count,
    check_model,
    class_colors,
    limits,
    new_figure,
    save_figure,
)
from ._geometry import planar, readout_line, readout_plane, state_axes

__all__ = ["feature_history", "features"]


def features(
    model: Model,
    X: Any,
    y: Any,
    path: PathLike = "features.png",
    *,
    dpi: int = 120,
) -> Path:
    """The final states ``x(T)`` (the features the readout sees), coloured by class, with the
    readout's separating line (``D == 2``) or plane (``D == 3``) for two classes or one output
    (``w @ x + b = 0``, ``w = P_1 - P_0`` or ``P_0``). ``D > 3``: the first two principal
    components, without the separator.

    Parameters
    ----------
    model : ResNet or NeuralODE
    X : array_like, shape (N, dim)
    y : array_like
        Labels ``(N,)``, targets ``(N, classes)``, or +-1 targets of one output.
    path : str or os.PathLike, default "features.png"
    dpi : int, default 120

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.moons(50, seed=0)
    >>> model = resode.NeuralODE(2, T=1.0, pieces=4, augment=1, seed=0)
    >>> resode.plot.features(model, X, y, os.path.join(tempfile.mkdtemp(), "f.png")).name
    'f.png'
    """
    model = check_model(model)
    final = np.asarray(model.trajectory(X)[-1], dtype=np.float64)
    if not np.isfinite(final).all():
        raise ValueError("the final states are not finite")
    D = final.shape[1]
    labels = any_labels(y, final.shape[0], model.classes)
    colors = class_colors(max(model.classes, 2, int(labels.max(initial=0)) + 1))
    pts = planar(final[None], D)[0]
    fig = new_figure((5.0, 4.6))
    ax, dims = state_axes(fig, D)
    ax.scatter(*pts[:, :dims].T, c=[colors[k] for k in labels], s=12, edgecolors="k", lw=0.3)
    lims = [limits(pts[:, k]) for k in range(dims)]
    if D == 3:
        readout_plane(ax, model, lims)
    elif D == 2:
        readout_line(ax, model, lims)
    names = ["x1", "x2", "x3"] if D <= 3 else ["PC 1", "PC 2"]
    for k, setter in enumerate((ax.set_xlabel, ax.set_ylabel, getattr(ax, "set_zlabel", None))):
        if k < dims and setter is not None:
            setter(names[k])
    when = f"t = {model.T:g}" if model.kind == "node" else f"layer {model.steps}"
    ax.set_title(f"{type(model).__name__}: features x({when}) and the readout")
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def feature_history(
    history: Any,
    path: PathLike = "feature_history.gif",
    *,
    classes: int | None = None,
    fps: int = 4,
    hold: float = 1.0,
    dpi: int = 80,
) -> Path:
    """Animate the final states of the points recorded by ``fit(..., record=...)`` over the
    epochs: how training moves the features the readout separates. One frame per record
    (the first is the untrained model), on fixed axes that hold every record.

    Parameters
    ----------
    history : resode.History or mapping
        A history from ``fit(..., record=...)`` (its ``features``), or that dict itself.
    path : str or os.PathLike, default "feature_history.gif"
        ``.gif`` or ``.mp4``.
    classes : int, optional
        1 when the recorded targets are the +-1 targets of one output (colours by sign);
        by default read off the targets.
    fps, hold, dpi
        Frames per second, seconds the last frame is held, resolution.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.moons(60, seed=0)
    >>> model = resode.NeuralODE(2, T=1.0, pieces=4, augment=1, seed=0)
    >>> h = resode.fit(model, X, y, epochs=4, record=30, record_every=2, progress=False)
    >>> h.features["epoch"]
    [0, 2, 4]
    >>> resode.plot.feature_history(h, os.path.join(tempfile.mkdtemp(), "f.gif")).name
    'f.gif'
    """
    record = getattr(history, "features", history)
    if not isinstance(record, Mapping) or not record.get("states"):
        raise ValueError("history holds no recorded features: train with fit(..., record=...)")
    p = Path(os.fspath(path))
    check_animation_suffix(p)
    fps = check_count("fps", fps)
    states = np.asarray(np.stack(record["states"]), dtype=np.float64)  # (R, M, D)
    if not np.isfinite(states).all():
        raise ValueError("the recorded states are not finite")
    D = states.shape[2]
    targets = np.asarray(record["y"])
    if classes is None:
        classes = 1 if targets.dtype.kind == "f" and targets.ndim == 1 else 2
    labels = any_labels(targets, states.shape[1], classes)
    colors = class_colors(max(2, int(labels.max(initial=0)) + 1))
    pts = planar(states, D)
    fig = new_figure((4.6, 4.4))
    ax, dims = state_axes(fig, D)
    lims = [limits(pts[..., k]) for k in range(dims)]
    point_colors = [colors[k] for k in labels]

    def draw(k: int) -> None:
        ax.clear()
        ax.scatter(*pts[k, :, :dims].T, c=point_colors, s=12, edgecolors="k", linewidths=0.3)
        for axis, (lo, hi) in zip("xyz", lims):
            getattr(ax, f"set_{axis}lim")(lo, hi)
        ax.set_title(f"features x(T) after epoch {record['epoch'][k]}")

    return animate(fig, p, len(pts), draw, fps, hold, dpi)
