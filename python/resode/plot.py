"""Pictures of a trained model: the flow of the points, the decision boundary, training curves,
the controls and the state norm. Needs matplotlib (``pip install resode[plot]``).

Every function draws on its own :class:`matplotlib.figure.Figure` with the Agg canvas (no
``pyplot``, no global backend change, safe in scripts, servers and notebooks), writes ``path``
and returns it as a :class:`pathlib.Path`. The file format follows the suffix (``.png``,
``.pdf``, ``.svg``, ... for still images; ``.gif`` or ``.mp4`` for the animation).

Examples
--------
>>> import resode, resode.plot, tempfile, os
>>> X, y = resode.datasets.concentric_spheres(200, seed=0)
>>> model = resode.NeuralODE(2, T=5.0, pieces=10, field="bottleneck", hidden=16, augment=1,
...                          activation="relu", seed=0)
>>> h = resode.fit(model, X, y, optimizer=resode.optim.Adam(lr=1e-2), epochs=100,
...                seed=0, progress=False)
>>> out = tempfile.mkdtemp()
>>> resode.plot.trajectories(model, X, y, os.path.join(out, "flow.gif")).name
'flow.gif'
>>> resode.plot.decision_boundary(model, X, y, path=os.path.join(out, "boundary.png")).name
'boundary.png'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext as _nullcontext
from pathlib import Path
from typing import Any, Union

import numpy as np

from .io import atomic_path
from .models import NeuralODE, ResNet, field_param_names

__all__ = [
    "controls",
    "decision_boundary",
    "decision_regions",
    "feature_history",
    "features",
    "history",
    "image_flow",
    "loss_along_time",
    "state_norm",
    "sweep",
    "trajectories",
]

PathLike = Union[str, "os.PathLike[str]"]
Model = Union[ResNet, NeuralODE]

_BINARY_COLORS = ("#2166ac", "#b2182b")  # the ends of the RdBu colour map


def _require_matplotlib() -> Any:
    """Import matplotlib lazily, with a hint on how to install it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "resode.plot needs matplotlib (and pillow for GIFs); install them with "
            "`pip install resode[plot]` (or `pip install matplotlib pillow`)"
        ) from exc
    return matplotlib


def _figure(figsize: tuple[float, float], **kwargs: Any) -> Any:
    """A new Figure on an Agg canvas (no pyplot)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: PathLike, dpi: int) -> Path:
    """``fig.savefig`` atomically (an interrupted save leaves no partial or empty file)."""
    p = Path(os.fspath(path))
    with atomic_path(p) as tmp:
        fig.savefig(tmp, dpi=dpi, format=p.suffix[1:] or "png")  # tmp has the suffix too
    return p


def _save_gif(path: Path, images: Sequence[Any], durations: Sequence[int]) -> None:
    """The frames ``images`` (Pillow) as an animated GIF at ``path``, atomically."""
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
        )


def _class_colors(classes: int) -> list[Any]:
    _require_matplotlib()
    import matplotlib

    if classes <= 2:
        return list(_BINARY_COLORS[: max(classes, 1)])
    cmap = matplotlib.colormaps["tab10" if classes <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(classes)]


def _labels(y: Any, n: int) -> np.ndarray:
    """Integer labels from labels ``(n,)`` or one-hot / float targets ``(n, C)``."""
    arr = np.asarray(y)
    if arr.ndim == 2:
        arr = np.argmax(arr, axis=1)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) or ({n}, classes), got {np.shape(y)}")
    return arr.astype(np.int64)


def _check_model(model: Any) -> Model:
    if not isinstance(model, (ResNet, NeuralODE)):
        raise TypeError(f"model must be a resode.ResNet or resode.NeuralODE, got {type(model)!r}")
    return model


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes, in columns of at most 12 rows, so that it never covers
    a curve or the title however many entries it has."""
    entries = len(ax.get_legend_handles_labels()[0])
    ax.legend(
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
        ncol=max(1, -(-entries // 12)),
    )


def _time_grid(model: Model) -> tuple[np.ndarray, str]:
    """Times of the trajectory states and the axis label."""
    if isinstance(model, NeuralODE):
        return np.arange(model.steps + 1) * model.dt, "time t"
    return np.arange(model.layers + 1, dtype=np.float64), "layer"


def _limits(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if not np.isfinite([lo, hi]).all():
        raise ValueError("the trajectory is not finite")
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


# --------------------------------------------------------------------------- trajectories


def trajectories(
    model: Model,
    X: Any,
    y: Any,
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
    X : array_like, shape (N, dim)
    y : array_like, shape (N,) or (N, classes)
        Labels (or one-hot targets) for the colours.
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

    Returns
    -------
    pathlib.Path

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
    >>> resode.plot.trajectories(model, X, y, os.path.join(tempfile.mkdtemp(), "a.gif")).suffix
    '.gif'
    """
    _require_matplotlib()
    from matplotlib.animation import FFMpegWriter
    from matplotlib.collections import LineCollection

    model = _check_model(model)
    p = Path(os.fspath(path))
    suffix = p.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"path must end in .gif or .mp4, got {p.name!r}")
    checks = (("fps", fps), ("max_points", max_points), ("max_frames", max_frames))
    for name, value in (*checks, ("smooth", smooth)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if suffix == ".mp4" and not FFMpegWriter.isAvailable():
        raise RuntimeError("writing .mp4 needs ffmpeg on the PATH; use a .gif path instead")

    Xa = np.asarray(X)
    n = Xa.shape[0] if Xa.ndim >= 1 else 0
    labels = _labels(y, n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        Xa, labels = Xa[idx], labels[idx]
    traj = np.asarray(model.trajectory(Xa), dtype=np.float64)  # (steps + 1, n, D)
    steps, D = traj.shape[0] - 1, traj.shape[2]
    if not np.isfinite(traj).all():
        raise ValueError("the trajectory is not finite")
    if D > 3:
        traj = _principal_plane(traj)
    if D == 1:
        traj = np.concatenate([traj, np.zeros_like(traj)], axis=2)
    times, tlabel = _time_grid(model)
    # frame positions on the step axis: s = j + w is the state (1 - w) x_j + w x_{j+1}
    positions = np.linspace(0.0, steps, max(min(steps * smooth + 1, max_frames), 2))
    colors = np.array(
        _class_colors(max(model.classes, int(labels.max(initial=0)) + 1)), dtype=object
    )
    point_colors = [colors[c] for c in labels]

    fig = _figure((4.8, 4.8))
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
    sub = "" if D <= 3 else f" (PCA of the final states, D = {D})"
    lo, hi = _frame_limits(traj[..., :dims])
    if D == 1:  # the points move on the line y = 0
        lo[:, 1], hi[:, 1] = -1.0, 1.0
        ax.set_yticks([])
    draw_readout = model.classes == 2 and D in (2, 3)

    images: list[Any] = []
    writer = FFMpegWriter(fps=int(fps)) if suffix == ".mp4" else None

    def grab() -> None:
        if writer is not None:
            writer.grab_frame()
            return
        from PIL import Image

        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        images.append(Image.fromarray(np.ascontiguousarray(rgba[..., :3])))

    # an .mp4 goes to a temporary file that replaces p once complete (a .gif: _save_gif)
    target = atomic_path(p) if writer is not None else _nullcontext(p)
    with target as out, writer.saving(fig, str(out), dpi) if writer else _nullcontext():
        if writer is None:
            fig.set_dpi(dpi)
        for s in positions:
            j = min(int(np.floor(s + 1e-9)), steps)
            w = s - j if j < steps else 0.0
            nxt = min(j + 1, steps)
            state = (1.0 - w) * traj[j] + w * traj[nxt]
            path_so_far = np.concatenate([traj[: j + 1], state[None]], axis=0)
            trails.set_segments(path_so_far[:, :, :dims].transpose(1, 0, 2))
            low = (1.0 - w) * lo[j] + w * lo[nxt]
            high = (1.0 - w) * hi[j] + w * hi[nxt]
            if three_d:
                dots._offsets3d = tuple(state[:, k] for k in range(3))
                ax.set_zlim(low[2], high[2])
            else:
                dots.set_offsets(state[:, :2])
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(low[1], high[1])
            if draw_readout and j == steps:
                limits = [(low[k], high[k]) for k in range(dims)]
                if three_d:
                    _readout_plane(ax, model, limits)
                else:
                    _readout_line(ax, model, limits)
            t = (1.0 - w) * times[j] + w * times[nxt]
            when = f"t = {t:.2f}" if tlabel == "time t" else f"layer {round(s, 2):g}"
            ax.set_title(f"{type(model).__name__}: {when}{sub}")
            grab()
        if writer is not None:
            for _ in range(max(round(hold * fps), 1) - 1):
                writer.grab_frame()
    if writer is None:
        durations = [round(1000 / fps)] * len(images)
        durations[-1] += round(1000 * max(hold, 0.0))
        _save_gif(p, images, durations)
    return p


def _frame_limits(traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis limits ``(lo, hi)``, each ``(steps + 1, dims)``, of the frames of ``traj``
    ``(steps + 1, n, dims)``: the camera zooms out as the points spread, each frame enclosing
    all states up to it with a 5% margin. An axis on which the points have not spread yet
    (the augmented zeros at t = 0) spans at least a tenth of the largest extent the flow
    reaches, never a degenerate range."""
    lo = np.minimum.accumulate(traj.min(axis=1), axis=0)
    hi = np.maximum.accumulate(traj.max(axis=1), axis=0)
    floor = 0.1 * max(float((hi - lo).max()), 1e-12)
    pad = np.maximum(0.05 * (hi - lo), np.maximum(0.5 * (floor - (hi - lo)), 0.0))
    return lo - pad, hi + pad


def _principal_plane(traj: np.ndarray) -> np.ndarray:
    """States ``(steps + 1, n, D)`` projected on the first two principal components of the
    final states (centred at their mean), ``(steps + 1, n, 2)``."""
    final = traj[-1]
    centre = final.mean(axis=0)
    _, _, vt = np.linalg.svd(final - centre, full_matrices=False)
    return (traj - centre) @ vt[:2].T


def _separator(model: Model) -> tuple[np.ndarray, float] | None:
    """``(w, b)`` of the readout's decision boundary ``w . x + b = 0``: ``w = P_1 - P_0``,
    ``b = c_1 - c_0`` for two classes, ``w = P_0``, ``b = c_0`` for one output (the sign of
    ``z``, e.g. leia's +-1 targets); None otherwise."""
    P, c = np.asarray(model.params["P"], np.float64), np.asarray(model.params["c"], np.float64)
    if model.classes == 2:
        return P[1] - P[0], float(c[1] - c[0])
    if model.classes == 1:
        return P[0], float(c[0])
    return None


def _readout_plane_grid(
    model: Model, lims: Sequence[tuple[float, float]], points: int = 12
) -> list[np.ndarray] | None:
    """Grid ``[x1, x2, x3]`` (each ``points x points``) of the plane ``w . x + b = 0``
    (``w = P_1 - P_0``, ``b = c_1 - c_0``) in the box ``lims``, solved for its steepest
    coordinate; points outside the box are NaN. None when ``w = 0``."""
    sep = _separator(model)
    if sep is None:
        return None
    w, b = sep
    k = int(np.argmax(np.abs(w)))
    if w[k] == 0:
        return None
    u, v = (i for i in range(3) if i != k)
    gu, gv = np.meshgrid(np.linspace(*lims[u], points), np.linspace(*lims[v], points))
    gk = -(b + w[u] * gu + w[v] * gv) / w[k]
    gk = np.where((gk >= lims[k][0]) & (gk <= lims[k][1]), gk, np.nan)
    grid = [gu, gu, gu]
    grid[u], grid[v], grid[k] = gu, gv, gk
    return grid


def _readout_plane(ax: Any, model: Model, lims: Sequence[tuple[float, float]]) -> Any:
    """Draw the readout's separating plane (see _readout_plane_grid) in 3-D axes."""
    grid = _readout_plane_grid(model, lims)
    if grid is None:
        return None
    surface = ax.plot_surface(*grid, color="0.3", alpha=0.25, linewidth=0, shade=False)
    for axis, (a, z) in zip("xyz", lims):
        getattr(ax, f"set_{axis}lim")(a, z)
    return surface


def _readout_line(ax: Any, model: Model, lims: Sequence[tuple[float, float]]) -> Any:
    """Draw ``w . x + b = 0`` (see _separator) in 2-D axes."""
    sep = _separator(model)
    if sep is None:
        return None
    w, b = sep
    if abs(w[1]) >= abs(w[0]) and w[1] != 0:
        xs = np.array(lims[0])
        ys = -(b + w[0] * xs) / w[1]
    elif w[0] != 0:
        ys = np.array(lims[1])
        xs = -(b + w[1] * ys) / w[0]
    else:
        return None
    (line,) = ax.plot(xs, ys, "k--", lw=1.2, label="decision line")
    ax.set_xlim(*lims[0])
    ax.set_ylim(*lims[1])
    return line


# --------------------------------------------------------------------------- decision boundary


def decision_boundary(
    model: Model,
    X: Any,
    y: Any,
    X_test: Any = None,
    y_test: Any = None,
    path: PathLike = "decision_boundary.png",
    *,
    resolution: int = 200,
    dpi: int = 120,
) -> Path:
    """Predicted probability over a grid of the input plane, with train and test points.

    Two classes: the probability of class 1 (``RdBu`` colours, the 0.5 contour in black). More
    classes: the colour of the predicted class, fading to white where the model is unsure.

    Parameters
    ----------
    model : ResNet or NeuralODE
        With ``model.dim == 2``.
    X, y : array_like, shapes (N, 2) and (N,) or (N, classes)
        Training points (drawn as circles).
    X_test, y_test : array_like, optional
        Test points (drawn as triangles).
    path : str or os.PathLike, default "decision_boundary.png"
    resolution : int, default 200
        Grid points per axis.
    dpi : int, default 120

    Returns
    -------
    pathlib.Path

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
    model = _check_model(model)
    if model.dim != 2:
        raise ValueError(f"decision_boundary needs 2-D inputs, the model has dim={model.dim}")
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, np.integer))
        or (resolution < 2)
    ):
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    Xa = np.asarray(X, dtype=np.float64)
    labels = _labels(y, Xa.shape[0])
    sets = [(Xa, labels, "train")]
    if X_test is not None:
        if y_test is None:
            raise ValueError("y_test must be given with X_test")
        Xt = np.asarray(X_test, dtype=np.float64)
        sets.append((Xt, _labels(y_test, Xt.shape[0]), "test"))
    every = np.concatenate([s[0] for s in sets])
    (x0, x1), (y0, y1) = (_limits(every[:, k]) for k in range(2))
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    proba = model.predict_proba(grid).reshape(resolution, resolution, -1)
    C = proba.shape[2]
    colors = _class_colors(C)

    from matplotlib.colors import to_rgb

    fig = _figure((5.6, 4.8))
    ax = fig.add_subplot()
    if C == 2:
        cs = ax.contourf(
            gx, gy, proba[..., 1], levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.75
        )
        ax.contour(gx, gy, proba[..., 1], levels=[0.5], colors="k", linewidths=1.2)
        fig.colorbar(cs, ax=ax, label="P(class 1)", ticks=[0, 0.25, 0.5, 0.75, 1])
    else:
        rgb = np.array([to_rgb(c) for c in colors])
        pred = proba.argmax(axis=2)
        conf = (proba.max(axis=2) - 1.0 / C) / (1.0 - 1.0 / C)
        image = conf[..., None] * rgb[pred] + (1 - conf[..., None]) * 1.0
        ax.imshow(image, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", alpha=0.8)
    markers = {"train": "o", "test": "^"}
    for pts, lab, name in sets:
        acc = float(np.mean(model.forward(pts).argmax(axis=1) == lab)) if len(pts) else float("nan")
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
    ax.set_title(f"{type(model).__name__}: decision boundary")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- history


def history(history: Any, path: PathLike = "history.png", *, dpi: int = 120) -> Path:
    """Training curves: loss (log scale when positive) and accuracy (or R^2) per epoch.

    Parameters
    ----------
    history : resode.History or mapping, or a list of them
        ``History`` or its ``to_dict()``; ``val_loss`` / ``val_accuracy`` (``val_r2``) are
        drawn too when present. A history with an ``r2`` column (regression) shows R^2.
        Several histories (repeated runs, e.g. other seeds): each curve is their mean per
        epoch with a band of +- one standard deviation (over the epochs all runs have).
    path : str or os.PathLike, default "history.png"
    dpi : int, default 120

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import resode.plot, tempfile, os
    >>> h = {"epoch": [1, 2, 3], "loss": [0.7, 0.4, 0.2], "accuracy": [0.5, 0.8, 0.9]}
    >>> resode.plot.history(h, os.path.join(tempfile.mkdtemp(), "h.png")).name
    'h.png'
    """
    runs = list(history) if isinstance(history, (list, tuple)) else [history]
    if not runs:
        raise ValueError("history must hold at least one history")
    datas: list[Mapping[str, Sequence[float]]] = [
        h.to_dict() if hasattr(h, "to_dict") else dict(h) for h in runs
    ]
    data = datas[0]
    metric = "r2" if "r2" in data else "accuracy"  # regression histories score R^2
    for d in datas:
        for key in ("loss", metric):
            if key not in d:
                raise ValueError(f"history has no {key!r} column")
    m = min(len(d["loss"]) for d in datas)  # the epochs every run has
    epochs = np.asarray(data.get("epoch", np.arange(1, len(data["loss"]) + 1)))[:m]
    fig = _figure((8.0, 3.4))
    ax_loss, ax_metric = fig.subplots(1, 2)
    curves: dict[str, np.ndarray] = {}
    for key, ax, style in (
        ("loss", ax_loss, "-"),
        ("val_loss", ax_loss, "--"),
        (metric, ax_metric, "-"),
        ("val_" + metric, ax_metric, "--"),
    ):
        if all(key in d and len(d[key]) >= m for d in datas) and m:
            values = np.array([np.asarray(d[key], float)[:m] for d in datas])
            mean, std = values.mean(axis=0), values.std(axis=0)
            curves[key] = values
            label = "validation" if key.startswith("val_") else "train"
            if len(datas) > 1:
                label += f" (mean +- std, {len(datas)} runs)"
            (line,) = ax.plot(epochs, mean, style, label=label, lw=1.4)
            if len(datas) > 1:
                low = mean - std
                if key.endswith("loss"):  # a log axis: the band stops at a tenth of the mean
                    low = np.where(low > 0, low, 0.1 * mean)
                ax.fill_between(epochs, low, mean + std, color=line.get_color(), alpha=0.25, lw=0)
    losses = np.concatenate(
        [curves[k].ravel() for k in ("loss", "val_loss") if k in curves] or [np.zeros(0)]
    )
    if losses.size and np.all(losses > 0):
        ax_loss.set_yscale("log")
    ax_loss.set_title("loss")
    if metric == "accuracy":
        ax_metric.set_title("accuracy")
        ax_metric.set_ylim(-0.02, 1.02)
    else:
        ax_metric.set_title("$R^2$")
        ax_metric.set_ylim(max(-0.02, min(np.nanmin(curves[metric]), 1.0) - 0.05), 1.02)
    # the loss falls and the score rises: each legend where its curves are not, at the end
    for ax, where in ((ax_loss, "upper right"), (ax_metric, "lower right")):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc=where)
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- controls


def controls(model: Model, path: PathLike = "controls.png", *, dpi: int = 120) -> Path:
    """Norm of the controls ``theta(t)`` per piece over time (per layer for a ResNet).

    Draws, as a step function over ``[0, T]`` (or layers ``0..L``), the Euclidean (Frobenius)
    norm of all field parameters of each piece, ``sqrt(|W_k|^2 + |b_k|^2)`` (bottleneck: of
    ``W1_k, b1_k, W2_k, b2_k``), and thinner, each parameter's own norm.

    Parameters
    ----------
    model : ResNet or NeuralODE
    path : str or os.PathLike, default "controls.png"
    dpi : int, default 120

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> model = resode.NeuralODE(2, T=2.0, pieces=5, seed=0)
    >>> resode.plot.controls(model, os.path.join(tempfile.mkdtemp(), "c.png")).name
    'c.png'
    """
    model = _check_model(model)
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
    fig = _figure((7.2, 3.6))
    ax = fig.add_subplot()
    ax.stairs(total, edges, baseline=None, lw=2.0, color="k", label="|theta(t)|")
    for n, v in per.items():
        ax.stairs(v, edges, baseline=None, lw=1.0, alpha=0.8, label=f"|{n}|")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("norm")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{type(model).__name__}: controls per piece")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- state norm


def state_norm(
    model: Model,
    X: Any,
    path: PathLike = "state_norm.png",
    *,
    y: Any = None,
    band: tuple[float, float] = (0.1, 0.9),
    dpi: int = 120,
) -> Path:
    """The norm ``|x(t)|`` of the (augmented) state over time: the mean and a quantile band.

    Parameters
    ----------
    model : ResNet or NeuralODE
    X : array_like, shape (N, dim)
    path : str or os.PathLike, default "state_norm.png"
    y : array_like, optional
        Labels; when given, one mean and band per class, in the class colours.
    band : tuple of float, default (0.1, 0.9)
        Lower and upper quantiles of the shaded band.
    dpi : int, default 120

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> model = resode.NeuralODE(2, T=1.0, pieces=4, seed=0)
    >>> X = np.random.default_rng(0).normal(size=(20, 2))
    >>> resode.plot.state_norm(model, X, os.path.join(tempfile.mkdtemp(), "n.png")).name
    'n.png'
    """
    model = _check_model(model)
    lo_q, hi_q = (float(q) for q in band)
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ValueError(f"band must be two quantiles 0 <= lo < hi <= 1, got {band!r}")
    traj = np.asarray(model.trajectory(X), dtype=np.float64)
    norms = np.linalg.norm(traj, axis=2)  # (steps + 1, N)
    times, xlabel = _time_grid(model)
    groups: list[tuple[np.ndarray, Any, str]]
    if y is None:
        groups = [(np.ones(norms.shape[1], bool), "k", "all points")]
    else:
        labels = _labels(y, norms.shape[1])
        colors = _class_colors(max(model.classes, int(labels.max(initial=0)) + 1))
        groups = [(labels == c, colors[c], f"class {c}") for c in np.unique(labels)]
    fig = _figure((7.2, 3.6))
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
    _legend_outside(ax)
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- studies


def loss_along_time(
    models: Model | Mapping[str, Model],
    X: Any,
    y: Any,
    path: PathLike = "loss_along_time.png",
    *,
    dpi: int = 120,
) -> Path:
    """The training error along the flow: the data loss of the readout ``P x(t_k) + c``
    (clamped for ``readout="hardtanh"``) applied to the state at every step ``t_k``, on a log
    scale (the picture of the turnpike: the loss falls early and stays low when the model has
    learnt to reach and hold a good state).

    Parameters
    ----------
    models : ResNet, NeuralODE, or a mapping of labels to models
        Several models (e.g. trained with different ``T``, or with and without the turnpike
        loss) share the axes; times are each model's own.
    X : array_like, shape (N, dim)
    y : array_like
        Labels ``(N,)`` (cross-entropy) or targets (``loss="mse"``).
    path : str or os.PathLike, default "loss_along_time.png"

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.concentric_spheres(100, seed=0)
    >>> m = resode.NeuralODE(2, T=2.0, pieces=4, augment=1, seed=0)
    >>> resode.plot.loss_along_time({"T = 2": m}, X, y,
    ...                             os.path.join(tempfile.mkdtemp(), "l.png")).name
    'l.png'
    """
    from .reference import data_loss, readout_logits

    if isinstance(models, (ResNet, NeuralODE)):
        models = {type(models).__name__: models}
    if not models:
        raise ValueError("models must hold at least one model")
    fig = _figure((7.2, 3.8))
    ax = fig.add_subplot()
    for label, model in models.items():
        model = _check_model(model)
        traj = np.asarray(model.trajectory(X), dtype=np.float64)  # (steps + 1, N, D)
        params = {k: np.asarray(model.params[k], dtype=np.float64) for k in ("P", "c")}
        targets = model._targets(y, traj.shape[1]).astype(
            np.int64 if model.loss == "cross_entropy" else np.float64
        )
        losses = [
            data_loss(readout_logits(params, x, model.readout), targets, model.loss) for x in traj
        ]
        times, xlabel = _time_grid(model)
        # a loss that underflows to exactly 0 is drawn at 1e-16 (a log axis has no 0)
        ax.plot(times, np.maximum(losses, 1e-16), lw=1.8, label=str(label))
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training loss of P x(t) + c")
    ax.set_title("training error along the flow")
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax)
    fig.tight_layout()
    return _save(fig, path, dpi)


def _sweep_rows(result: Any) -> list[dict[str, Any]]:
    """Rows of a SweepResult, or of a results.csv file (numbers parsed)."""
    rows = getattr(result, "rows", None)
    if rows is not None:
        return list(rows)
    import csv

    def parse(v: str) -> Any:
        if v in ("True", "False"):
            return v == "True"
        try:
            return float(v) if any(ch in v for ch in ".eEn") else int(v)
        except ValueError:
            return v if v != "" else None

    with open(os.fspath(result), newline="", encoding="utf-8") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _fit_line(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y against x (nan with fewer than two points)."""
    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def sweep(
    result: Any,
    path: PathLike = "sweep.png",
    *,
    x: str = "T",
    y: str = "final_loss",
    hue: str | None = None,
    col: str | None = None,
    dpi: int = 120,
) -> Path:
    """A study over one option: ``y`` against ``x`` on log-log axes, the median over seeds
    (and any other option) with the interquartile band, one curve per value of ``hue`` and
    one panel per value of ``col``. Each curve's legend gives its fitted power-law slope (of
    ``log y`` against ``log x``; O(1/T) is slope -1) and its exponential decay rate (of
    ``log y`` against ``x``; both fitted on the medians above 0). Diverged and failed runs are
    marked with crosses at the top; a median of exactly 0 is drawn at a floor below the
    smallest positive one.

    Parameters
    ----------
    result : resode.sweep.SweepResult or path of a results.csv
    path : str or os.PathLike, default "sweep.png"
    x, y : str
        Result columns: a grid option (``"T"``) and a result (``"final_loss"``).
    hue, col : str or None
        Grid options that split the runs into curves and panels.

    Returns
    -------
    pathlib.Path
    """
    rows = _sweep_rows(result)
    if not rows or x not in rows[0] or y not in rows[0]:
        raise ValueError(f"the sweep's rows need the columns {x!r} and {y!r}")
    panels = sorted({r.get(col) for r in rows}, key=str) if col else [None]
    fig = _figure((5.2 * len(panels) + 1.6, 4.0))
    colors = _class_colors(10)
    for p, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        chosen = [r for r in rows if col is None or r.get(col) == panel]
        hues = sorted({r.get(hue) for r in chosen}, key=str) if hue else [None]
        top = max((r[y] for r in chosen if r.get("status") == "ok" and r.get(y)), default=1.0)
        for h, value in enumerate(hues):
            group = [r for r in chosen if hue is None or r.get(hue) == value]
            ok = [r for r in group if r.get("status") == "ok" and r.get(y) is not None]
            xs = np.array(sorted({float(r[x]) for r in ok}))
            if len(xs) == 0:
                continue
            by_x = [np.array([float(r[y]) for r in ok if float(r[x]) == v]) for v in xs]
            med = np.array([np.median(v) for v in by_x])
            positive = med > 0
            # a loss of exactly 0 (underflow) has no place on a log axis: drawn at the floor
            floor = min(float(np.min(med[positive])) if positive.any() else 1.0, 1e-12) / 10
            q1 = np.maximum([np.quantile(v, 0.25) for v in by_x], floor)
            q3 = np.maximum([np.quantile(v, 0.75) for v in by_x], floor)
            shown = np.maximum(med, floor)
            slope = _fit_line(np.log(xs[positive]), np.log(med[positive]))
            rate = -_fit_line(xs[positive], np.log(med[positive]))
            name = f"{hue}={value}: " if hue else ""
            color = colors[h % len(colors)]
            ax.plot(xs, shown, "o-", color=color, lw=1.8,
                    label=f"{name}slope {slope:.2f}, rate {rate:.2f}")  # fmt: skip
            ax.fill_between(xs, q1, q3, color=color, alpha=0.2, lw=0)
            bad = [float(r[x]) for r in group if r.get("status") in ("diverged", "failed")]
            if bad:
                ax.plot(bad, [top * 2.0] * len(bad), "x", color=color, ms=8,
                        label=f"{name}diverged or failed ({len(bad)})")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(f"{y} (median, IQR over seeds)")
        ax.set_title(f"{col} = {panel}" if col else f"{y} against {x}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- dynamics


def _check_count(name: str, value: Any, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _any_labels(y: Any, n: int, classes: int) -> np.ndarray:
    """Integer labels for colours from labels ``(n,)``, one-hot / float targets ``(n, C)``, or
    the +-1 targets of one output (``classes == 1``: label ``[y > 0]``)."""
    arr = np.asarray(y)
    if classes == 1:
        if arr.size != n:
            raise ValueError(f"y must have {n} entries, got shape {arr.shape}")
        return (arr.reshape(n) > 0).astype(np.int64)
    return _labels(arr, n)


def _predicted(z: np.ndarray) -> np.ndarray:
    """Predicted labels of readouts ``z`` ``(n, C)``: ``[z > 0]`` for one output, else argmax."""
    return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else np.argmax(z, axis=1)


def _region_image(model: Model, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB colours ``(n, 3)`` of the readouts ``z`` ``(n, C)`` and, for a binary decision, the
    score in ``[0, 1]`` whose 0.5 level is the boundary: ``P(class 1)`` (cross-entropy) or
    ``(clip(z_1 - z_0 or z_0, -1, 1) + 1) / 2`` (mse)."""
    _require_matplotlib()
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
    rgb = np.array([to_rgb(c) for c in _class_colors(C)])
    pred = np.argmax(z, axis=1)
    conf = np.ones(len(z)) if soft is None else (soft.max(axis=1) - 1.0 / C) / (1.0 - 1.0 / C)
    return conf[:, None] * rgb[pred] + (1.0 - conf[:, None]), None


def _step_indices(model: Model, times: Any, steps: int, default: int) -> list[int]:
    """Step indices of the requested times (nearest step; a ResNet's times are layers), or
    ``default`` evenly spaced ones from 0 to ``steps``."""
    if times is None:
        return sorted({int(np.rint(v)) for v in np.linspace(0, steps, min(default, steps + 1))})
    grid, _ = _time_grid(model)
    out = []
    for t in np.atleast_1d(np.asarray(times, dtype=np.float64)):
        if not (np.isfinite(t) and grid[0] - 1e-9 <= t <= grid[-1] + 1e-9):
            raise ValueError(f"times must lie in [{grid[0]:g}, {grid[-1]:g}], got {t!r}")
        out.append(int(np.argmin(np.abs(grid - t))))
    return out


def _animate(
    fig: Any, path: Path, frames: int, draw: Callable[[int], None], fps: int, hold: float, dpi: int
) -> Path:
    """Write the frames ``draw(0), ..., draw(frames - 1)`` of ``fig`` to a ``.gif`` (Pillow,
    one GIF frame each, the last held ``hold`` seconds longer) or ``.mp4`` (ffmpeg)."""
    from matplotlib.animation import FFMpegWriter

    if path.suffix.lower() == ".mp4":
        if not FFMpegWriter.isAvailable():
            raise RuntimeError("writing .mp4 needs ffmpeg on the PATH; use a .gif path instead")
        writer = FFMpegWriter(fps=int(fps))
        with atomic_path(path) as tmp, writer.saving(fig, str(tmp), dpi):
            for k in range(frames):
                draw(k)
                writer.grab_frame()
            for _ in range(max(round(hold * fps), 1) - 1):
                writer.grab_frame()
        return path
    from PIL import Image

    fig.set_dpi(dpi)
    images = []
    for k in range(frames):
        draw(k)
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        images.append(Image.fromarray(np.ascontiguousarray(rgba[..., :3])))
    durations = [round(1000 / fps)] * len(images)
    durations[-1] += round(1000 * max(hold, 0.0))
    _save_gif(path, images, durations)
    return path


def decision_regions(
    model: Model,
    X: Any,
    y: Any,
    path: PathLike = "decision_regions.gif",
    times: Any = None,
    *,
    resolution: int = 100,
    fps: int = 4,
    hold: float = 1.0,
    dpi: int = 80,
) -> Path:
    """The classifier applied to the flow at every time: how the partition of the input plane
    forms along the flow (leia's "generalization" animation).

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
    fps, hold, dpi
        Frames per second, seconds the last frame is held, resolution of the frames.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import resode, resode.plot, tempfile, os
    >>> X, y = resode.datasets.moons(50, seed=0)
    >>> model = resode.NeuralODE(2, T=1.0, pieces=4, seed=0)
    >>> out = os.path.join(tempfile.mkdtemp(), "r.png")
    >>> resode.plot.decision_regions(model, X, y, out, times=[0.0, 1.0], resolution=30).name
    'r.png'
    """
    from .reference import readout_logits

    model = _check_model(model)
    if model.dim != 2:
        raise ValueError(f"decision_regions needs 2-D inputs, the model has dim={model.dim}")
    resolution = _check_count("resolution", resolution, 2)
    fps = _check_count("fps", fps)
    p = Path(os.fspath(path))
    animated = p.suffix.lower() in (".gif", ".mp4")
    Xa = np.asarray(X, dtype=np.float64)
    labels = _any_labels(y, Xa.shape[0], model.classes)
    (x0, x1), (y0, y1) = (_limits(Xa[:, k]) for k in range(2))
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    params = {k: np.asarray(model.params[k], np.float64) for k in ("P", "c")}
    grid_traj = np.asarray(model.trajectory(grid), dtype=np.float64)
    data_traj = np.asarray(model.trajectory(Xa), dtype=np.float64)
    steps = grid_traj.shape[0] - 1
    frames = _step_indices(model, times, steps, steps + 1 if animated else 4)
    tgrid, tlabel = _time_grid(model)
    colors = _class_colors(max(model.classes, 2, int(labels.max(initial=0)) + 1))

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
        acc = float(np.mean(_predicted(z) == labels))
        when = f"t = {tgrid[j]:.2f}" if tlabel == "time t" else f"layer {j}"
        ax.set_title(f"{when}: accuracy {100 * acc:.0f}%", fontsize=9)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xticks([])
        ax.set_yticks([])

    if animated:
        fig = _figure((4.0, 4.0))
        ax = fig.add_subplot()
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.92)
        return _animate(fig, p, len(frames), lambda k: panel(ax, frames[k]), fps, hold, dpi)
    fig = _figure((3.0 * len(frames), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(frames)))
    for ax, j in zip(axes, frames):
        panel(ax, j)
    fig.suptitle(f"{type(model).__name__}: the readout applied along the flow", fontsize=10)
    fig.tight_layout()
    return _save(fig, p, dpi)


def _state_axes(fig: Any, D: int) -> tuple[Any, int]:
    """Axes for states of width D: 3-D axes for D == 3, a plane otherwise."""
    if D == 3:
        import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

        return fig.add_subplot(projection="3d"), 3
    return fig.add_subplot(), 2


def _planar(states: np.ndarray, D: int) -> np.ndarray:
    """States ``(..., n, D)`` for drawing: as they are for D in (2, 3), the line y = 0 for
    D == 1, the first two principal components of the last slice for D > 3."""
    if D == 1:
        return np.concatenate([states, np.zeros_like(states)], axis=-1)
    if D > 3:
        return _principal_plane(states.reshape(-1, *states.shape[-2:]))
    return states


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
    (``w . x + b = 0``, ``w = P_1 - P_0`` or ``P_0``). ``D > 3``: the first two principal
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
    model = _check_model(model)
    final = np.asarray(model.trajectory(X)[-1], dtype=np.float64)
    if not np.isfinite(final).all():
        raise ValueError("the final states are not finite")
    D = final.shape[1]
    labels = _any_labels(y, final.shape[0], model.classes)
    colors = _class_colors(max(model.classes, 2, int(labels.max(initial=0)) + 1))
    pts = _planar(final[None], D)[0]
    fig = _figure((5.0, 4.6))
    ax, dims = _state_axes(fig, D)
    ax.scatter(*pts[:, :dims].T, c=[colors[k] for k in labels], s=12, edgecolors="k", lw=0.3)
    lims = [_limits(pts[:, k]) for k in range(dims)]
    if D == 3:
        _readout_plane(ax, model, lims)
    elif D == 2:
        _readout_line(ax, model, lims)
    names = ["x1", "x2", "x3"] if D <= 3 else ["PC 1", "PC 2"]
    for k, setter in enumerate((ax.set_xlabel, ax.set_ylabel, getattr(ax, "set_zlabel", None))):
        if k < dims and setter is not None:
            setter(names[k])
    when = f"t = {model.T:g}" if isinstance(model, NeuralODE) else f"layer {model.layers}"
    ax.set_title(f"{type(model).__name__}: features x({when}) and the readout")
    fig.tight_layout()
    return _save(fig, path, dpi)


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
    if p.suffix.lower() not in (".gif", ".mp4"):
        raise ValueError(f"path must end in .gif or .mp4, got {p.name!r}")
    fps = _check_count("fps", fps)
    states = np.asarray(np.stack(record["states"]), dtype=np.float64)  # (R, M, D)
    if not np.isfinite(states).all():
        raise ValueError("the recorded states are not finite")
    D = states.shape[2]
    targets = np.asarray(record["y"])
    if classes is None:
        classes = 1 if targets.dtype.kind == "f" and targets.ndim == 1 else 2
    labels = _any_labels(targets, states.shape[1], classes)
    colors = _class_colors(max(2, int(labels.max(initial=0)) + 1))
    pts = _planar(states, D)
    fig = _figure((4.6, 4.4))
    ax, dims = _state_axes(fig, D)
    lims = [_limits(pts[..., k]) for k in range(dims)]
    point_colors = [colors[k] for k in labels]

    def draw(k: int) -> None:
        ax.clear()
        ax.scatter(*pts[k, :, :dims].T, c=point_colors, s=12, edgecolors="k", linewidths=0.3)
        for axis, (lo, hi) in zip("xyz", lims):
            getattr(ax, f"set_{axis}lim")(lo, hi)
        ax.set_title(f"features x(T) after epoch {record['epoch'][k]}")

    return _animate(fig, p, len(pts), draw, fps, hold, dpi)


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
    """Image data along the flow: the state ``x(t)`` of each image, reshaped to the image, at
    several times, when the state width ``D`` is the image size (e.g. digits 8 x 8 with
    ``augment=0``: ``D = 64``).

    Parameters
    ----------
    model : ResNet or NeuralODE
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
    fps, hold, dpi
        As for :func:`decision_regions`.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> X = np.random.default_rng(0).random((3, 16))
    >>> model = resode.NeuralODE(16, T=1.0, pieces=3, classes=10, seed=0)
    >>> resode.plot.image_flow(model, X, os.path.join(tempfile.mkdtemp(), "i.png")).name
    'i.png'
    """
    model = _check_model(model)
    D = model.D
    if shape is None:
        side = int(np.rint(np.sqrt(D)))
        if side * side != D:
            raise ValueError(f"the state width D = {D} is not a square: give shape=(h, w)")
        shape = (side, side)
    h, w = (int(v) for v in shape)
    if h * w != D:
        raise ValueError(f"shape {shape!r} does not hold the state width D = {D}")
    max_images = _check_count("max_images", max_images)
    fps = _check_count("fps", fps)
    p = Path(os.fspath(path))
    animated = p.suffix.lower() in (".gif", ".mp4")
    images = np.asarray(X_images)[:max_images]
    traj = np.asarray(model.trajectory(images), dtype=np.float64)  # (steps + 1, n, D)
    steps, n = traj.shape[0] - 1, traj.shape[1]
    frames = _step_indices(model, times, steps, steps + 1 if animated else 6)
    tgrid, tlabel = _time_grid(model)
    # one colour scale per image over all times, so that its change along the flow shows
    scale = np.abs(traj).max(axis=(0, 2))

    def label(j: int) -> str:
        return f"t = {tgrid[j]:.2f}" if tlabel == "time t" else f"layer {j}"

    def show(ax: Any, i: int, j: int) -> None:
        ax.imshow(traj[j, i].reshape(h, w), cmap="gray_r", vmin=-scale[i], vmax=scale[i])
        ax.set_xticks([])
        ax.set_yticks([])

    if animated:
        fig = _figure((1.6 * n, 1.9))
        axes = np.atleast_1d(fig.subplots(1, n))

        def draw(k: int) -> None:
            for i, ax in enumerate(axes):
                ax.clear()
                show(ax, i, frames[k])
            fig.suptitle(f"{type(model).__name__}: {label(frames[k])}", fontsize=9)

        return _animate(fig, p, len(frames), draw, fps, hold, dpi)
    fig = _figure((1.3 * len(frames) + 0.4, 1.3 * n + 0.5))
    axes = np.asarray(fig.subplots(n, len(frames), squeeze=False))
    for i in range(n):
        for c, j in enumerate(frames):
            show(axes[i, c], i, j)
            if i == 0:
                axes[i, c].set_title(label(j), fontsize=8)
    fig.suptitle(f"{type(model).__name__}: the state along the flow", fontsize=9)
    fig.tight_layout()
    return _save(fig, p, dpi)
