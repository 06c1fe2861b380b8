"""The decision of a classifier over the input plane: the boundary of the trained model and
the regions the readout draws along the flow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._typing import ArrayLike
from ._common import (
    Model,
    PathLike,
    animate,
    any_labels,
    check_count,
    check_model,
    class_colors,
    limits,
    new_figure,
    predicted,
    require_matplotlib,
    save_figure,
    step_indices,
    time_grid,
    time_label,
)

__all__ = ["decision_boundary", "decision_regions"]


def decision_boundary(
    model: Model,
    X: ArrayLike,
    y: ArrayLike,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    path: PathLike = "decision_boundary.png",
    *,
    resolution: int = 200,
    dpi: int = 120,
) -> Path:
    """Predicted probability over a grid of the input plane, with train and test points.

    Two classes: the probability of class 1 (``RdBu`` colours, the 0.5 contour in black). More
    classes: the colour of the predicted class, fading to white where the model is unsure.
    One output (``classes=1``, e.g. leia's ``readout="hardtanh"`` with targets +-1): the
    decision is the sign of the output ``z`` (``RdBu`` colours of ``z`` clipped to
    ``[-1, 1]``, the contour ``z = 0`` in black), the points are coloured by the sign of their
    targets and the accuracy is the sign agreement.

    Parameters
    ----------
    model : ResNet or NeuralODE
        With ``model.dim == 2``.
    X, y : array_like, shapes (N, 2) and (N,) or (N, classes)
        Training points (drawn as circles); for one output, the +-1 targets.
    X_test, y_test : array_like, optional
        Test points (drawn as triangles).
    path : str or os.PathLike, default "decision_boundary.png"
        The image (or animation) to write; its extension picks the format.
    resolution : int, default 200
        Grid points per axis.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If ``model.dim != 2``.
    ImportError
        Without matplotlib.

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.moons(50, seed=0)
    >>> model = resode.ResNet(2, layers=3, seed=0)
    >>> out = os.path.join(tempfile.mkdtemp(), "b.png")
    >>> resode.plot.decision_boundary(model, X, y, path=out, resolution=50).name
    'b.png'
    """
    model = check_model(model)
    if model.dim != 2:
        raise ValueError(f"decision_boundary needs 2-D inputs, the model has dim={model.dim}")
    resolution = check_count("resolution", resolution, 2)
    sets = [(*_points(model, X, y), "train")]
    if X_test is not None:
        if y_test is None:
            raise ValueError("y_test must be given with X_test")
        sets.append((*_points(model, X_test, y_test), "test"))
    every = np.concatenate([s[0] for s in sets])
    (x0, x1), (y0, y1) = (limits(every[:, k]) for k in range(2))
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    fig = new_figure((5.6, 4.8))
    ax = fig.add_subplot()
    if model.classes == 1:
        colors = _sign_plane(fig, ax, model.forward(grid)[:, 0].reshape(gx.shape), gx, gy)
    else:
        proba = model.predict_proba(grid).reshape(resolution, resolution, -1)
        colors = _probability_plane(fig, ax, proba, gx, gy)
    markers = {"train": "o", "test": "^"}
    for pts, lab, name in sets:
        acc = float(np.mean(predicted(model.forward(pts)) == lab)) if len(pts) else float("nan")
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            c=[colors[k % len(colors)] for k in lab],
            s=16,
            marker=markers[name],
            edgecolors="k",
            linewidths=0.5,
            label=f"{name} ({100 * acc:.1f}%)",
        )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    what = "decision boundary (sign of the output)" if model.classes == 1 else "decision boundary"
    ax.set_title(f"{type(model).__name__}: {what}")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def _points(model: Model, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(n, 2)`` as floats and their labels (for one output: ``[y > 0]``)."""
    pts = np.asarray(X, dtype=np.float64)
    return pts, any_labels(y, pts.shape[0], model.classes)


def _sign_plane(fig: Any, ax: Any, z: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> list[Any]:
    """Draw the output ``z`` of a one-output model over the grid, its zero contour (the
    decision by the sign) in black; the colours of the labels ``[y <= 0, y > 0]``."""
    shown = np.clip(z, -1.0, 1.0)
    cs = ax.contourf(gx, gy, shown, levels=np.linspace(-1, 1, 21), cmap="RdBu_r", alpha=0.75)
    if z.min() < 0.0 < z.max():  # a contour level outside the data would only warn
        ax.contour(gx, gy, z, levels=[0.0], colors="k", linewidths=1.2)
    fig.colorbar(cs, ax=ax, label="output z (clipped to [-1, 1])", ticks=[-1, -0.5, 0, 0.5, 1])
    return class_colors(2)


def _probability_plane(
    fig: Any, ax: Any, proba: np.ndarray, gx: np.ndarray, gy: np.ndarray
) -> list[Any]:
    """Draw the class probabilities ``proba`` ``(r, r, C)`` over the grid; the class colours."""
    from matplotlib.colors import to_rgb

    C = proba.shape[2]
    colors = class_colors(C)
    if C == 2:
        cs = ax.contourf(
            gx, gy, proba[..., 1], levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.75
        )
        ax.contour(gx, gy, proba[..., 1], levels=[0.5], colors="k", linewidths=1.2)
        fig.colorbar(cs, ax=ax, label="P(class 1)", ticks=[0, 0.25, 0.5, 0.75, 1])
        return colors
    rgb = np.array([to_rgb(c) for c in colors])
    pred = proba.argmax(axis=2)
    conf = (proba.max(axis=2) - 1.0 / C) / (1.0 - 1.0 / C)
    image = conf[..., None] * rgb[pred] + (1 - conf[..., None]) * 1.0
    extent = (gx[0, 0], gx[0, -1], gy[0, 0], gy[-1, 0])
    ax.imshow(image, origin="lower", extent=extent, aspect="auto", alpha=0.8)
    return colors


def decision_regions(
    model: Model,
    X: ArrayLike,
    y: ArrayLike,
    path: PathLike = "decision_regions.gif",
    times: Any = None,
    *,
    resolution: int = 100,
    fps: int = 4,
    hold: float = 1.0,
    dpi: int = 80,
) -> Path:
    """Draw the classifier applied to the flow at every time.

    How the partition of the input plane forms along the flow (leia's "generalization"
    animation).

    Each point ``x0`` of a grid over the input plane is coloured by the readout of its state at
    time ``t_k``, ``z = P x(t_k) + c`` (clamped for ``readout="hardtanh"``): two classes (or
    one output) by the score of class 1 (``RdBu``, the boundary in black), more classes by the
    predicted class. The training points are drawn on top, with the accuracy of the readout
    at ``t_k`` in the title.

    Parameters
    ----------
    model : ResNet or NeuralODE
        With ``model.dim == 2``.
    X, y : array_like, shapes (N, 2) and (N,) or (N, classes)
        Points and labels (or targets; for one output the label is ``y > 0``).
    path : str or os.PathLike, default "decision_regions.gif"
        ``.gif`` / ``.mp4``: one frame per state ``t_0 .. t_steps`` (or per requested time);
        a still format (``.png``, ``.pdf``, ...): one panel per requested time.
    times : sequence of float, optional
        Times (layers for a ResNet) to draw, each at its nearest step; default: every step in
        an animation, four evenly spaced ones in a still image.
    resolution : int, default 100
        Grid points per axis (``resolution**2`` trajectories are computed).
    fps : int, default 4
        Frames per second of an animation.
    hold : float, default 1.0
        Seconds the last frame is held.
    dpi : int, default 80
        The resolution of the frames, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.moons(50, seed=0)
    >>> model = resode.NeuralODE(2, T=1.0, pieces=4, seed=0)
    >>> out = os.path.join(tempfile.mkdtemp(), "r.png")
    >>> resode.plot.decision_regions(model, X, y, out, times=[0.0, 1.0], resolution=30).name
    'r.png'
    """
    from ..reference import readout_logits

    model = check_model(model)
    if model.dim != 2:
        raise ValueError(f"decision_regions needs 2-D inputs, the model has dim={model.dim}")
    resolution = check_count("resolution", resolution, 2)
    fps = check_count("fps", fps)
    p = Path(os.fspath(path))
    animated = p.suffix.lower() in (".gif", ".mp4")
    Xa = np.asarray(X, dtype=np.float64)
    labels = any_labels(y, Xa.shape[0], model.classes)
    (x0, x1), (y0, y1) = (limits(Xa[:, k]) for k in range(2))
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    params = {k: np.asarray(model.params[k], np.float64) for k in ("P", "c")}
    grid_traj = np.asarray(model.trajectory(grid), dtype=np.float64)
    data_traj = np.asarray(model.trajectory(Xa), dtype=np.float64)
    steps = grid_traj.shape[0] - 1
    frames = step_indices(model, times, steps, steps + 1 if animated else 4)
    tgrid, tlabel = time_grid(model)
    colors = class_colors(max(model.classes, 2, int(labels.max(initial=0)) + 1))

    def panel(ax: Any, j: int) -> None:
        ax.clear()
        rgb, score = _region_image(model, readout_logits(params, grid_traj[j], model.readout))
        ax.imshow(
            rgb.reshape(resolution, resolution, 3),
            origin="lower",
            extent=(x0, x1, y0, y1),
            aspect="auto",
            alpha=0.85,
        )
        if score is not None and score.min() < 0.5 < score.max():
            ax.contour(gx, gy, score.reshape(gx.shape), levels=[0.5], colors="k", linewidths=1)
        ax.scatter(
            Xa[:, 0], Xa[:, 1], c=[colors[k] for k in labels], s=8, edgecolors="k", linewidths=0.3
        )
        z = readout_logits(params, data_traj[j], model.readout)
        acc = float(np.mean(predicted(z) == labels))
        ax.set_title(f"{time_label(tgrid, tlabel, j)}: accuracy {100 * acc:.0f}%", fontsize=9)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xticks([])
        ax.set_yticks([])

    if animated:
        fig = new_figure((4.0, 4.0))
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.92)
        return animate(fig, p, len(frames), lambda k: panel(ax, frames[k]), fps, hold, dpi)
    fig = new_figure((3.0 * len(frames), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(frames)))
    for ax, j in zip(axes, frames):
        panel(ax, j)
    fig.suptitle(f"{type(model).__name__}: the readout applied along the flow", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, p, dpi)


def _region_image(model: Model, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB colours ``(n, 3)`` of the readouts ``z`` ``(n, C)`` and, for a binary decision, the
    score in ``[0, 1]`` whose 0.5 level is the boundary: ``P(class 1)`` (cross-entropy) or
    ``(clip(z_1 - z_0 or z_0, -1, 1) + 1) / 2`` (mse)."""
    require_matplotlib()
    import matplotlib
    from matplotlib.colors import to_rgb

    C = z.shape[1]
    soft = None
    if model.loss == "cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        soft = e / e.sum(axis=1, keepdims=True)
    if C <= 2:
        if soft is not None:
            score = soft[:, 1]
        else:
            margin = z[:, 0] if C == 1 else z[:, 1] - z[:, 0]
            score = (np.clip(margin, -1.0, 1.0) + 1.0) / 2.0
        return np.asarray(matplotlib.colormaps["RdBu_r"](score))[:, :3], score
    rgb = np.array([to_rgb(c) for c in class_colors(C)])
    pred = np.argmax(z, axis=1)
    conf = np.ones(len(z)) if soft is None else (soft.max(axis=1) - 1.0 / C) / (1.0 - 1.0 / C)
    return conf[:, None] * rgb[pred] + (1.0 - conf[:, None]), None
