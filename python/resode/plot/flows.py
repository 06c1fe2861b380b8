"""The flow of the points: an animation of the states moving through the layers / time."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._typing import ArrayLike
from ..io import atomic_path
from ._common import (
    Model,
    PathLike,
    any_labels,
    check_animation_suffix,
    check_count,
    check_model,
    class_colors,
    frame_image,
    gif_durations,
    mp4_writer,
    new_figure,
    require_matplotlib,
    save_gif,
    time_grid,
)
from ._geometry import frame_limits, principal_plane, readout_line, readout_plane

__all__ = ["trajectories"]


def trajectories(
    model: Model,
    X: ArrayLike,
    y: ArrayLike,
    path: PathLike,
    *,
    fps: int = 12,
    max_points: int = 300,
    max_frames: int = 80,
    smooth: int = 4,
    hold: float = 1.5,
    seed: int = 0,
    dpi: int = 80,
) -> Path:
    """Animate the points flowing through the layers / time, coloured by class.

    The states come from ``model.trajectory(X)``, shape ``(steps + 1, N, D)``. With ``D == 2``
    the plane is drawn, with ``D == 3`` 3-D axes, with ``D > 3`` the projection on the first
    two principal components of the final states (``D == 1``: the line). Each point leaves a
    faint trail; for two classes the last frame also shows what the flow was trained for: the
    readout's separating line (2-D) or plane (3-D) ``(P_1 - P_0) x + c_1 - c_0 = 0``.

    Parameters
    ----------
    model : ResNet or NeuralODE
        The model to draw.
    X : array_like, shape (N, dim)
        The inputs, one sample a row.
    y : array_like, shape (N,) or (N, classes)
        Labels (or one-hot targets) for the colours; for a model with one output, the +-1
        targets (coloured by their sign).
    path : str or os.PathLike
        ``.gif`` (Pillow) or ``.mp4`` (needs ffmpeg on the PATH).
    fps : int, default 12
        Frames per second.
    max_points : int, default 300
        At most this many points (a seeded random subset) are drawn.
    max_frames : int, default 80
        At most this many frames (evenly spaced in time, first and last state included).
    smooth : int, default 4
        Frames per integrator step / layer: between two computed states the points move
        on straight lines (1: only the computed states).
    hold : float, default 1.5
        Seconds the final frame is held.
    seed : int, default 0
        Seed of the subset.
    dpi : int, default 80
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        On an unsupported suffix, bad shapes or ``max_points``/``max_frames``/``fps`` < 1.
    RuntimeError
        For ``.mp4`` when ffmpeg is not available.
    ImportError
        Without matplotlib.

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.moons(50, seed=0)
    >>> model = resode.ResNet(2, layers=5, h=0.2, seed=0)
    >>> out = os.path.join(tempfile.mkdtemp(), "a.gif")
    >>> resode.plot.trajectories(model, X, y, out, max_frames=10).suffix
    '.gif'
    """
    require_matplotlib()
    model = check_model(model)
    p = Path(os.fspath(path))
    suffix = check_animation_suffix(p)
    for name, value in (("fps", fps), ("max_points", max_points), ("max_frames", max_frames)):
        check_count(name, value)
    check_count("smooth", smooth)
    writer = mp4_writer(fps) if suffix == ".mp4" else None
    traj, labels, D = _flow_states(model, X, y, max_points, seed)
    steps = traj.shape[0] - 1
    # frame positions on the step axis: s = j + w is the state (1 - w) x_j + w x_{j+1}
    positions = np.linspace(0.0, steps, max(min(steps * smooth + 1, max_frames), 2))
    colors = class_colors(max(model.classes, int(labels.max(initial=0)) + 1))
    scene = _scene(model, traj, D, [colors[c] for c in labels])
    # an .mp4 goes to a temporary file that replaces p once complete (a .gif: save_gif)
    images: list[Any] = []
    target = atomic_path(p) if writer is not None else nullcontext(p)
    with target as out, writer.saving(scene.fig, str(out), dpi) if writer else nullcontext():
        if writer is None:
            scene.fig.set_dpi(dpi)
        for s in positions:
            _draw_frame(scene, model, traj, float(s))
            if writer is not None:
                writer.grab_frame()
            else:
                images.append(frame_image(scene.fig))
        if writer is not None:
            for _ in range(max(round(hold * fps), 1) - 1):
                writer.grab_frame()
    if writer is None:
        save_gif(p, images, gif_durations(len(images), fps, hold))
    return p


def _flow_states(
    model: Model, X: Any, y: Any, max_points: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The states ``(steps + 1, n, dims)`` to draw (a seeded subset of at most ``max_points``
    points; ``D > 3`` projected on a plane, ``D == 1`` on the line y = 0), their colour
    labels, and the state width ``D``."""
    Xa = np.asarray(X)
    n = Xa.shape[0] if Xa.ndim >= 1 else 0
    labels = any_labels(y, n, model.classes)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        Xa, labels = Xa[idx], labels[idx]
    traj = np.asarray(model.trajectory(Xa), dtype=np.float64)  # (steps + 1, n, D)
    D = traj.shape[2]
    if not np.isfinite(traj).all():
        raise ValueError("the trajectory is not finite")
    if D > 3:
        traj = principal_plane(traj)
    if D == 1:
        traj = np.concatenate([traj, np.zeros_like(traj)], axis=2)
    return traj, labels, D


class _Scene(NamedTuple):
    """The artists an animation frame updates."""

    fig: Any
    ax: Any
    trails: Any
    dots: Any
    dims: int
    lo: np.ndarray
    hi: np.ndarray
    times: np.ndarray
    tlabel: str
    subtitle: str
    draw_readout: bool


def _scene(model: Model, traj: np.ndarray, D: int, point_colors: list[Any]) -> _Scene:
    """The figure of the first frame: axes (3-D for D == 3), trails and points."""
    from matplotlib.collections import LineCollection

    fig = new_figure((4.8, 4.8))
    three_d = D == 3
    dims = 3 if three_d else 2
    if three_d:
        import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        ax = fig.add_subplot(projection="3d")
        trails: Any = Line3DCollection(
            list(traj[:1, :, :3].transpose(1, 0, 2)),
            colors=point_colors,
            linewidths=0.5,
            alpha=0.3,
        )
        ax.add_collection3d(trails)
    else:
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.1, top=0.92)
        trails = LineCollection([], colors=point_colors, linewidths=0.6, alpha=0.3)
        ax.add_collection(trails)
    dots = ax.scatter(
        *traj[0, :, :dims].T, c=point_colors, s=12, edgecolors="k", linewidths=0.3, zorder=3
    )
    if three_d:
        dots.set_depthshade(False)
    axis_names = ["x1", "x2", "x3"] if D > 1 else ["x", ""]
    if D > 3:
        axis_names = ["PC 1", "PC 2"]
    for k, setter in enumerate((ax.set_xlabel, ax.set_ylabel, getattr(ax, "set_zlabel", None))):
        if k < dims and setter is not None:
            setter(axis_names[k])
    lo, hi = frame_limits(traj[..., :dims])
    if D == 1:  # the points move on the line y = 0
        lo[:, 1], hi[:, 1] = -1.0, 1.0
        ax.set_yticks([])
    times, tlabel = time_grid(model)
    subtitle = "" if D <= 3 else f" (PCA of the final states, D = {D})"
    draw_readout = model.classes == 2 and D in (2, 3)
    return _Scene(fig, ax, trails, dots, dims, lo, hi, times, tlabel, subtitle, draw_readout)


def _draw_frame(scene: _Scene, model: Model, traj: np.ndarray, s: float) -> None:
    """Move the points to position ``s`` on the step axis (between states ``j`` and
    ``j + 1``), their trails behind them, the camera enclosing all states so far."""
    steps, dims, ax = traj.shape[0] - 1, scene.dims, scene.ax
    j = min(int(np.floor(s + 1e-9)), steps)
    w = s - j if j < steps else 0.0
    nxt = min(j + 1, steps)
    state = (1.0 - w) * traj[j] + w * traj[nxt]
    path_so_far = np.concatenate([traj[: j + 1], state[None]], axis=0)
    scene.trails.set_segments(path_so_far[:, :, :dims].transpose(1, 0, 2))
    low = (1.0 - w) * scene.lo[j] + w * scene.lo[nxt]
    high = (1.0 - w) * scene.hi[j] + w * scene.hi[nxt]
    if dims == 3:
        scene.dots._offsets3d = tuple(state[:, k] for k in range(3))
        ax.set_zlim(low[2], high[2])
    else:
        scene.dots.set_offsets(state[:, :2])
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    if scene.draw_readout and j == steps:
        box = [(low[k], high[k]) for k in range(dims)]
        (readout_plane if dims == 3 else readout_line)(ax, model, box)
    t = (1.0 - w) * scene.times[j] + w * scene.times[nxt]
    when = f"t = {t:.2f}" if scene.tlabel == "time t" else f"layer {round(s, 2):g}"
    ax.set_title(f"{type(model).__name__}: {when}{scene.subtitle}")
