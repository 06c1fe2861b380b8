"""What every family of figures shares: the lazy matplotlib import, a Figure on the Agg canvas,
atomic saving (still images, GIFs and MP4 animations), class colours and labels, argument
checks, and the time axis of a model.

Private to ``resode.plot``: the names here carry no underscore because the module itself is
private; the public functions live in the family modules and are re-exported by
``resode/plot/__init__.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..io import atomic_path
from ..models import NeuralODE, ResNet

PathLike = Union[str, "os.PathLike[str]"]
Model = Union[ResNet, NeuralODE]

BINARY_COLORS = ("#2166ac", "#b2182b")  # the ends of the RdBu colour map


# --------------------------------------------------------------------------- matplotlib


def require_matplotlib() -> Any:
    """Import matplotlib, or raise ImportError with how to install it.

    ``import resode.plot`` does not import matplotlib (only drawing does), so front ends call
    this to learn up front whether figures can be drawn.

    Returns
    -------
    module
        The ``matplotlib`` module.

    Raises
    ------
    ImportError
        Without matplotlib, naming ``pip install resode[plot]``.

    Examples
    --------
    >>> from resode.plot import require_matplotlib
    >>> require_matplotlib().__name__
    'matplotlib'
    """
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


def new_figure(figsize: tuple[float, float], **kwargs: Any) -> Any:
    """A new Figure on an Agg canvas (no pyplot: no global backend change, safe in servers)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------- atomic saving


def save_figure(fig: Any, path: PathLike, dpi: int) -> Path:
    """``fig.savefig`` atomically (an interrupted save leaves no partial or empty file); the
    format follows the suffix."""
    p = Path(os.fspath(path))
    with atomic_path(p) as tmp:
        fig.savefig(tmp, dpi=dpi, format=p.suffix[1:] or "png")  # tmp has the suffix too
    return p


def save_gif(path: Path, images: Sequence[Any], durations: Sequence[int]) -> None:
    """The frames ``images`` (Pillow) as an animated GIF at ``path``, atomically."""
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0
        )


def frame_image(fig: Any) -> Any:
    """The current canvas of ``fig`` as a Pillow RGB image (one GIF frame)."""
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]))


def gif_durations(frames: int, fps: int, hold: float) -> list[int]:
    """Milliseconds per GIF frame: ``1000 / fps`` each, the last held ``hold`` s longer."""
    durations = [round(1000 / fps)] * frames
    durations[-1] += round(1000 * max(hold, 0.0))
    return durations


def check_animation_suffix(path: Path) -> str:
    """The lower-case suffix of an animation path; ValueError unless .gif or .mp4."""
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"path must end in .gif or .mp4, got {path.name!r}")
    return suffix


def mp4_writer(fps: int) -> Any:
    """An ffmpeg writer; RuntimeError when ffmpeg is not on the PATH."""
    from matplotlib.animation import FFMpegWriter

    if not FFMpegWriter.isAvailable():
        raise RuntimeError("writing .mp4 needs ffmpeg on the PATH; use a .gif path instead")
    return FFMpegWriter(fps=int(fps))


def animate(
    fig: Any, path: Path, frames: int, draw: Callable[[int], None], fps: int, hold: float, dpi: int
) -> Path:
    """Write the frames ``draw(0), ..., draw(frames - 1)`` of ``fig`` to a ``.gif`` (Pillow,
    one GIF frame each, the last held ``hold`` seconds longer) or ``.mp4`` (ffmpeg), both
    atomically."""
    if path.suffix.lower() == ".mp4":
        writer = mp4_writer(fps)
        with atomic_path(path) as tmp, writer.saving(fig, str(tmp), dpi):
            for k in range(frames):
                draw(k)
                writer.grab_frame()
            for _ in range(max(round(hold * fps), 1) - 1):
                writer.grab_frame()
        return path
    fig.set_dpi(dpi)
    images = []
    for k in range(frames):
        draw(k)
        images.append(frame_image(fig))
    save_gif(path, images, gif_durations(len(images), fps, hold))
    return path


# --------------------------------------------------------------------------- colours, labels


def class_colors(classes: int) -> list[Any]:
    """One colour per class: the ends of RdBu for two, tab10 / tab20 for more."""
    require_matplotlib()
    import matplotlib

    if classes <= 2:
        return list(BINARY_COLORS[: max(classes, 1)])
    cmap = matplotlib.colormaps["tab10" if classes <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(classes)]


def labels(y: Any, n: int) -> np.ndarray:
    """Integer labels from labels ``(n,)`` or one-hot / float targets ``(n, C)``."""
    arr = np.asarray(y)
    if arr.ndim == 2:
        arr = np.argmax(arr, axis=1)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},) or ({n}, classes), got {np.shape(y)}")
    return arr.astype(np.int64)


def any_labels(y: Any, n: int, classes: int) -> np.ndarray:
    """Integer labels for colours from labels ``(n,)``, one-hot / float targets ``(n, C)``, or
    the +-1 targets of one output (``classes == 1``: label ``[y > 0]``)."""
    arr = np.asarray(y)
    if classes == 1:
        if arr.size != n:
            raise ValueError(f"y must have {n} entries, got shape {arr.shape}")
        return (arr.reshape(n) > 0).astype(np.int64)
    return labels(arr, n)


def predicted(z: np.ndarray) -> np.ndarray:
    """Predicted labels of readouts ``z`` ``(n, C)``: ``[z > 0]`` for one output (the sign
    decision of +-1 targets), else argmax."""
    return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else np.argmax(z, axis=1)


def legend_outside(ax: Any) -> None:
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


# --------------------------------------------------------------------------- checks


def check_model(model: Any) -> Model:
    """``model`` if it is a ResNet or NeuralODE, else TypeError."""
    if not isinstance(model, (ResNet, NeuralODE)):
        raise TypeError(f"model must be a resode.ResNet or resode.NeuralODE, got {type(model)!r}")
    return model


def check_count(name: str, value: Any, least: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``least``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def limits(values: np.ndarray) -> tuple[float, float]:
    """Axis limits of ``values`` with a 5% margin (+-1 around a single value)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if not np.isfinite([lo, hi]).all():
        raise ValueError("the trajectory is not finite")
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


# --------------------------------------------------------------------------- the model protocol


def time_grid(model: Model) -> tuple[np.ndarray, str]:
    """Times of the trajectory states and the axis label: ``k dt`` for a neural ODE, the layer
    index ``k`` for a ResNet (whose figures count layers)."""
    steps = model.steps
    if model.kind == "node":
        return np.arange(steps + 1) * model.dt, "time t"
    return np.arange(steps + 1, dtype=np.float64), "layer"


def time_label(times: np.ndarray, tlabel: str, j: int) -> str:
    """``t = 1.25`` for a neural ODE, ``layer 3`` for a ResNet, of state ``j``."""
    return f"t = {times[j]:.2f}" if tlabel == "time t" else f"layer {j}"


def step_indices(model: Model, times: Any, steps: int, default: int) -> list[int]:
    """Step indices of the requested times (nearest step; a ResNet's times are layers), or
    ``default`` evenly spaced ones from 0 to ``steps``."""
    if times is None:
        return sorted({int(np.rint(v)) for v in np.linspace(0, steps, min(default, steps + 1))})
    grid, _ = time_grid(model)
    out = []
    for t in np.atleast_1d(np.asarray(times, dtype=np.float64)):
        if not (np.isfinite(t) and grid[0] - 1e-9 <= t <= grid[-1] + 1e-9):
            raise ValueError(f"times must lie in [{grid[0]:g}, {grid[-1]:g}], got {t!r}")
        out.append(int(np.argmin(np.abs(grid - t))))
    return out
