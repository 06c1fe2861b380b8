"""The figures of a run folder (``resode train``, ``resode plot``): which ones, drawn with
:mod:`resode.plot` when matplotlib is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FIGURES", "draw"]

FIGURES = ("trajectories.gif", "decision_boundary.png", "history.png", "controls.png",
           "state_norm.png", "series.png", "hidden_state.png",
           "decision_along_time.png")  # fmt: skip
"""Every figure a run folder may hold."""


def draw(
    model: Any,
    data: tuple[np.ndarray, np.ndarray],
    labels: tuple[np.ndarray, np.ndarray] | None,
    history: Any,
    out: Path,
    *,
    times: Any = None,
    inputs: Any = None,
) -> tuple[list[str], list[str]]:
    """Write every figure into ``out``; returns (files written, notices). ``labels`` is None
    for a regression on real values (no classes to colour or separate). ``times``: a neural
    CDE's observation times of the training series (None: ``0 .. L-1``). ``inputs``: a neural
    ODE's inputs ``u`` of the training samples (with ``inputs > 0``)."""
    try:
        import matplotlib  # noqa: F401

        from . import plot
    except ImportError:
        return [], ["plots skipped: matplotlib is not installed (pip install resode[plot])"]
    X_tr, X_te = data
    if model.kind == "cde":
        return _draw_series(plot, model, X_tr, history, out, times)
    if getattr(model, "inputs", 0):
        return _draw_driven(plot, history, out)
    written, notes = [], []
    if labels is not None:
        y_tr, y_te = labels
        plot.trajectories(model, X_tr, y_tr, out / "trajectories.gif")
        written.append("trajectories.gif")
        if model.dim == 2:
            plot.decision_boundary(
                model, X_tr, y_tr, X_te, y_te, path=out / "decision_boundary.png"
            )
            written.append("decision_boundary.png")
        else:
            notes.append(f"decision_boundary.png skipped: the inputs are {model.dim}-D, not 2-D")
    else:
        y_tr = None
        notes.append("trajectories.gif and decision_boundary.png skipped: no classes (regression)")
    if len(history):
        plot.history(history, out / "history.png")
        written.append("history.png")
    else:
        notes.append("history.png skipped: no epoch ran")
    plot.controls(model, out / "controls.png")
    plot.state_norm(model, X_tr, out / "state_norm.png", y=y_tr)
    written += ["controls.png", "state_norm.png"]
    return written, notes


def _draw_series(
    plot: Any, model: Any, U: np.ndarray, history: Any, out: Path, times: Any
) -> tuple[list[str], list[str]]:
    """A neural CDE's figures: the first training series with its path, its hidden state
    and (a classifier) its decision along time, and the training curves."""
    written, notes = [], []
    plot.series(model, U, out / "series.png", times, names=model.feature_names)
    plot.hidden_state(model, U, out / "hidden_state.png", times)
    written += ["series.png", "hidden_state.png"]
    if model.task == "classification":
        plot.decision_along_time(model, U, out / "decision_along_time.png", times)
        written.append("decision_along_time.png")
    else:
        notes.append("decision_along_time.png skipped: no classes (regression)")
    if len(history):
        plot.history(history, out / "history.png")
        written.append("history.png")
    else:
        notes.append("history.png skipped: no epoch ran")
    return written, notes


def _draw_driven(plot: Any, history: Any, out: Path) -> tuple[list[str], list[str]]:
    """A neural ODE with inputs: the training curves (the figures of states take no inputs
    ``u`` yet)."""
    notes = ["trajectories.gif, decision_boundary.png, controls.png and state_norm.png "
             "skipped: not drawn for a neural ODE with inputs u(t)"]  # fmt: skip
    if not len(history):
        return [], [*notes, "history.png skipped: no epoch ran"]
    plot.history(history, out / "history.png")
    return ["history.png"], notes
