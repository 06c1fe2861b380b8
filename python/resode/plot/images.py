"""Image data along the flow: the state of each image, reshaped to the image, over time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    Model,
    PathLike,
    animate,
    check_count,
    check_model,
    new_figure,
    save_figure,
    step_indices,
    time_grid,
    time_label,
)

__all__ = ["image_flow"]


def image_flow(
    model: Model,
    X_images: Any,
    path: PathLike = "image_flow.png",
    *,
    shape: tuple[int, int] | None = None,
    times: Any = None,
    max_images: int = 6,
    fps: int = 6,
    hold: float = 1.0,
    dpi: int = 100,
) -> Path:
    """Draw image data along the flow.

    The state ``x(t)`` of each image, reshaped to the image, at several times, when the
    state width ``D`` is the image size (e.g. digits 8 x 8 with
    ``augment=0``: ``D = 64``).

    Parameters
    ----------
    model : ResNet or NeuralODE
        The model to draw.
    X_images : array_like, shape (N, dim)
        Flattened images; the first ``max_images`` are drawn.
    path : str or os.PathLike, default "image_flow.png"
        A still format: one row per image, one column per time. ``.gif`` / ``.mp4``: one frame
        per step (or requested time), the images side by side.
    shape : tuple of int, optional
        ``(height, width)`` with ``height * width == D``; default a square.
    times : sequence of float, optional
        Times (layers for a ResNet) to draw; default six evenly spaced steps in a still
        image, every step in an animation.
    max_images : int, default 6
        The most images drawn (one row each).
    fps : int, default 6
        Frames per second of an animation.
    hold : float, default 1.0
        Seconds the last frame is held.
    dpi : int, default 100
        The resolution of the frames, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> X = np.random.default_rng(0).random((3, 16))
    >>> model = resode.NeuralODE(16, T=1.0, pieces=3, classes=10, seed=0)
    >>> resode.plot.image_flow(model, X, os.path.join(tempfile.mkdtemp(), "i.png")).name
    'i.png'
    """
    model = check_model(model)
    D = model.D
    if shape is None:
        side = int(np.rint(np.sqrt(D)))
        if side * side != D:
            raise ValueError(f"the state width D = {D} is not a square: give shape=(h, w)")
        shape = (side, side)
    h, w = (int(v) for v in shape)
    if h * w != D:
        raise ValueError(f"shape {shape!r} does not hold the state width D = {D}")
    max_images = check_count("max_images", max_images)
    fps = check_count("fps", fps)
    p = Path(os.fspath(path))
    animated = p.suffix.lower() in (".gif", ".mp4")
    images = np.asarray(X_images)[:max_images]
    traj = np.asarray(model.trajectory(images), dtype=np.float64)  # (steps + 1, n, D)
    steps, n = traj.shape[0] - 1, traj.shape[1]
    frames = step_indices(model, times, steps, steps + 1 if animated else 6)
    tgrid, tlabel = time_grid(model)
    # one colour scale per image over all times, so that its change along the flow shows
    scale = np.abs(traj).max(axis=(0, 2))

    def label(j: int) -> str:
        return time_label(tgrid, tlabel, j)

    def show(ax: Any, i: int, j: int) -> None:
        ax.imshow(traj[j, i].reshape(h, w), cmap="gray_r", vmin=-scale[i], vmax=scale[i])
        ax.set_xticks([])
        ax.set_yticks([])

    if animated:
        fig = new_figure((1.6 * n, 1.9))
        axes = np.atleast_1d(fig.subplots(1, n))

        def draw(k: int) -> None:
            for i, ax in enumerate(axes):
                ax.clear()
                show(ax, i, frames[k])
            fig.suptitle(f"{type(model).__name__}: {label(frames[k])}", fontsize=9)

        return animate(fig, p, len(frames), draw, fps, hold, dpi)
    fig = new_figure((1.3 * len(frames) + 0.4, 1.3 * n + 0.5))
    axes = np.asarray(fig.subplots(n, len(frames), squeeze=False))
    for i in range(n):
        for c, j in enumerate(frames):
            show(axes[i, c], i, j)
            if i == 0:
                axes[i, c].set_title(label(j), fontsize=8)
    fig.suptitle(f"{type(model).__name__}: the state along the flow", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, p, dpi)
