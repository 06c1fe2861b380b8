"""Figures of a neural CDE on one series: the observations with the interpolated path the
model integrates (:func:`series`), the hidden state along time (:func:`hidden_state`) and a
classifier's decision along time (:func:`decision_along_time`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._typing import ArrayLike, FloatArray
from ..models import NeuralCDE, as_series, as_times, series_lengths
from ._common import PathLike, new_figure, save_figure

__all__ = ["decision_along_time", "hidden_state", "series"]


def _one_series(
    model: NeuralCDE, U: ArrayLike, times: ArrayLike | None, sample: int, points: int | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sample ``sample`` alone: its observations ``(1, L_i, C)``, its times ``(L_i,)`` and
    its observation times with ``points`` times evenly over its span (None: none)."""
    if not isinstance(model, NeuralCDE):
        raise TypeError(f"model must be a resode.NeuralCDE, got {type(model).__name__}")
    arr = as_series(U, model.channels, np.dtype(np.float64))
    grid = as_times(times, arr.shape[0], arr.shape[1])
    if not isinstance(sample, (int, np.integer)) or not 0 <= sample < arr.shape[0]:
        raise ValueError(f"sample must be an index in [0, {arr.shape[0]}), got {sample!r}")
    if points is not None and (not isinstance(points, (int, np.integer)) or points < 2):
        raise ValueError(f"points must be None or an integer >= 2, got {points!r}")
    length = int(series_lengths(arr[sample : sample + 1])[0])
    one = arr[sample : sample + 1, :length]
    own = np.array(grid if grid.ndim == 1 else grid[sample], dtype=np.float64)[:length]
    if points is None:
        return one, own, own
    return one, own, np.union1d(np.linspace(own[0], own[-1], int(points)), own)


def decision_curve(
    model: NeuralCDE, U: ArrayLike, times: ArrayLike | None, sample: int, points: int | None
) -> tuple[FloatArray, FloatArray]:
    """The times ``t`` (Q,) and ``softmax(P z(t) + c)`` (Q, classes) of one series."""
    from ..reference import readout_logits

    one, own, t = _one_series(model, U, times, sample, points)
    z = np.asarray(model.trajectory(one, own, t=t), dtype=np.float64)[:, 0, :]
    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    logits = readout_logits(params, z)
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    return t, proba / proba.sum(axis=1, keepdims=True)


def _time_axis(ax: Any, title: str) -> None:
    ax.set_xlabel("t")
    ax.set_title(title)
    ax.grid(alpha=0.3)


def series(
    model: NeuralCDE,
    U: ArrayLike,
    path: PathLike = "series.png",
    times: ArrayLike | None = None,
    *,
    sample: int = 0,
    names: Sequence[str] | None = None,
    points: int = 200,
    dpi: int = 120,
) -> Path:
    """Plot one series' observations (markers) and the path ``X(t)`` the model integrates.

    The path (lines) is the model's interpolation (``model.interpolation``) of the
    observations, evaluated by the core (``resode.paths.interpolate``): missing values filled as the
    model fills them; an observation that is missing has no marker.

    Parameters
    ----------
    model : resode.NeuralCDE
        The model whose path (its ``interpolation`` and ``channels``) is drawn.
    U : array_like, shape (N, L, channels)
        The series as the model takes them (NaN: missing values, padding).
    path : str or os.PathLike, default "series.png"
        The image file written (its suffix picks the format: ``.png``, ``.svg``, ``.pdf``).
    times : array_like, shape (L,) or (N, L), optional
        Observation times; default ``0, 1, ..., L-1``.
    sample : int, default 0
        The series drawn.
    names : sequence of str, optional
        The channels' names (default ``x0, x1, ...``), e.g. ``model.feature_names``.
    points : int, default 200
        Times at which the path is evaluated, evenly over the series' span (plus its
        observation times).
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        On bad series or times, ``sample`` not an index of ``U``, ``points`` < 2, or
        ``names`` not one name per channel.
    TypeError
        If ``model`` is not a :class:`resode.NeuralCDE`.

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> model = resode.NeuralCDE(2, 4, seed=0)
    >>> U = np.random.default_rng(0).normal(size=(3, 8, 2))
    >>> resode.plot.series(model, U, os.path.join(tempfile.mkdtemp(), "s.png")).name
    's.png'
    """
    from ..paths import interpolate

    one, own, t = _one_series(model, U, times, sample, points)
    X = interpolate(one, own, t, interpolation=model.interpolation)[:, 0, :]  # (Q, C)
    labels = list(names) if names is not None else [f"x{c}" for c in range(model.channels)]
    if len(labels) != model.channels:
        raise ValueError(f"names must hold {model.channels} names, got {len(labels)}")
    fig = new_figure((7.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{c % 10}" for c in range(model.channels)]  # matplotlib's colour cycle
    for c in range(model.channels):
        ax.plot(t, X[:, c], color=colors[c], lw=1.5, label=labels[c])
        ax.plot(own, one[0, :, c], "o", color=colors[c], ms=4)
    _time_axis(ax, f"series {sample}: observations and the {model.interpolation} path")
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path, dpi)


def hidden_state(
    model: NeuralCDE,
    U: ArrayLike,
    path: PathLike = "hidden_state.png",
    times: ArrayLike | None = None,
    *,
    sample: int = 0,
    points: int | None = None,
    dpi: int = 120,
) -> Path:
    """Plot the hidden state ``z(t)`` of one series along time, one line per component.

    Parameters
    ----------
    model : resode.NeuralCDE
        The model whose hidden state (``model.trajectory``) is drawn.
    U : array_like, shape (N, L, channels)
        The series as the model takes them (NaN: missing values, padding).
    path : str or os.PathLike, default "hidden_state.png"
        The image file written (its suffix picks the format: ``.png``, ``.svg``, ``.pdf``).
    times : array_like, shape (L,) or (N, L), optional
        Observation times, shared or per sample; default ``0, 1, ..., L-1``.
    sample : int, default 0
        The series drawn (an index of ``U``'s first axis).
    points : int or None, default None
        None: the states at the observation times, on the model's own step grid (the last is
        the state ``forward`` reads out). An int: that many more times evenly over the
        series' span; they become step boundaries too (:meth:`resode.NeuralCDE.trajectory`),
        so the curve is a finer solution than the model's predictions.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        On bad series or times, ``sample`` not an index of ``U`` or ``points`` < 2.
    TypeError
        If ``model`` is not a :class:`resode.NeuralCDE`.

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> model = resode.NeuralCDE(2, 4, seed=0)
    >>> U = np.random.default_rng(0).normal(size=(3, 8, 2))
    >>> resode.plot.hidden_state(model, U, os.path.join(tempfile.mkdtemp(), "z.png")).name
    'z.png'
    """
    one, own, t = _one_series(model, U, times, sample, points)
    z = np.asarray(model.trajectory(one, own, t=t), dtype=np.float64)[:, 0, :]  # (Q, state)
    fig = new_figure((7.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for d in range(model.state):
        ax.plot(t, z[:, d], lw=1.2, marker="." if len(t) < 60 else None,
                label=f"z{d}" if model.state <= 10 else None)  # fmt: skip
    for stamp in own:
        ax.axvline(stamp, color="0.85", lw=0.6, zorder=0)
    _time_axis(ax, f"series {sample}: hidden state z(t) ({model.state} components)")
    if model.state <= 10:
        ax.legend(loc="best", fontsize="small", ncol=2)
    return save_figure(fig, path, dpi)


def decision_along_time(
    model: NeuralCDE,
    U: ArrayLike,
    path: PathLike = "decision_along_time.png",
    times: ArrayLike | None = None,
    *,
    sample: int = 0,
    labels: Sequence[object] | None = None,
    points: int | None = None,
    dpi: int = 120,
) -> Path:
    """Plot a classifier's class probabilities ``softmax(P z(t) + c)`` along one series.

    At the series' end time this is ``model.predict_proba``; at an earlier observation, the
    decision the model would make on the series observed so far (with cubic interpolation
    the path up to an observation depends on the observations up to it only).

    Parameters
    ----------
    model : resode.NeuralCDE
        A classifier (``loss="cross_entropy"``).
    U : array_like, shape (N, L, channels)
        The series as the model takes them (NaN: missing values, padding).
    path : str or os.PathLike, default "decision_along_time.png"
        The image file written (its suffix picks the format: ``.png``, ``.svg``, ``.pdf``).
    times : array_like, shape (L,) or (N, L), optional
        Observation times, shared or per sample; default ``0, 1, ..., L-1``.
    sample : int, default 0
        The series drawn (an index of ``U``'s first axis).
    labels : sequence, optional
        The classes' names (default ``model.class_labels``, else ``0 .. classes-1``).
    points : int or None, default None
        As for :func:`hidden_state`: by default the decision after each observation, the
        last one ``model.predict_proba``'s.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For a regression model, bad series or times, ``sample`` not an index of ``U``,
        ``points`` < 2, or ``labels`` not one name per class.
    TypeError
        If ``model`` is not a :class:`resode.NeuralCDE`.

    Examples
    --------
    >>> import numpy as np, resode, resode.plot, tempfile, os
    >>> model = resode.NeuralCDE(2, 4, classes=3, seed=0)
    >>> U = np.random.default_rng(0).normal(size=(3, 8, 2))
    >>> out = os.path.join(tempfile.mkdtemp(), "d.png")
    >>> resode.plot.decision_along_time(model, U, out).name
    'd.png'
    """
    if model.task != "classification":
        raise ValueError("decision_along_time needs a classifier (loss='cross_entropy')")
    t, proba = decision_curve(model, U, times, sample, points)
    names = labels if labels is not None else model.class_labels
    names = list(names) if names is not None else list(range(model.classes))
    if len(names) != model.classes:
        raise ValueError(f"labels must hold {model.classes} names, got {len(names)}")
    fig = new_figure((7.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for k in range(model.classes):
        ax.plot(t, proba[:, k], lw=1.5, marker="." if len(t) < 60 else None,
                label=f"p({names[k]})")  # fmt: skip
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("probability")
    _time_axis(ax, f"series {sample}: the decision along time")
    ax.legend(loc="best", fontsize="small")
    return save_figure(fig, path, dpi)
