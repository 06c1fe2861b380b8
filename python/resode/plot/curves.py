"""Training curves and studies over runs: the history of one training (or the mean of several)
and a sweep's result against one option."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import PathLike, class_colors, new_figure, save_figure

__all__ = ["history", "sweep"]


def history(history: Any, path: PathLike = "history.png", *, dpi: int = 120) -> Path:
    """Training curves: loss (log scale when positive) and accuracy (or R^2) per epoch.

    Parameters
    ----------
    history : resode.History or mapping, or a list of them
        ``History`` or its ``to_dict()``; ``val_loss`` / ``val_accuracy`` (``val_r2``) are
        drawn too when present. A history with an ``r2`` column (regression) shows R^2,
        unless it also has ``accuracy`` (a one-output classifier of +-1 targets, scored by
        sign agreement): then the accuracy.
        Several histories (repeated runs, e.g. other seeds): each curve is their mean per
        epoch with a band of +- one standard deviation (over the epochs all runs have).
    path : str or os.PathLike, default "history.png"
        The image (or animation) to write; its extension picks the format.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

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
    # regression histories score R^2; a +-1 classifier of one output has accuracy beside it
    metric = "r2" if "r2" in data and "accuracy" not in data else "accuracy"
    for d in datas:
        for key in ("loss", metric):
            if key not in d:
                raise ValueError(f"history has no {key!r} column")
    m = min(len(d["loss"]) for d in datas)  # the epochs every run has
    epochs = np.asarray(data.get("epoch", np.arange(1, len(data["loss"]) + 1)))[:m]
    fig = new_figure((8.0, 3.4))
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
    return save_figure(fig, path, dpi)


# --------------------------------------------------------------------------- controls


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
    r"""Draw a study over one option: ``y`` against ``x`` on log-log axes.

    The median over seeds (and any other option) with the interquartile band, one curve per value of
    ``hue`` and one panel per value of ``col``. Each curve's legend gives its fitted power-law slope
    (of ``log y`` against ``log x``; O(1/T) is slope -1) and its exponential decay rate (of ``log
    y`` against ``x``; both fitted on the medians above 0). Diverged and failed runs are marked with
    crosses at the top; a median of exactly 0 is drawn at a floor below the smallest positive one.

    Parameters
    ----------
    result : resode.sweep.SweepResult or path of a results.csv
        The sweep's results: a :class:`resode.sweep.SweepResult` or its ``results.csv``.
    path : str or os.PathLike, default "sweep.png"
        The image (or animation) to write; its extension picks the format.
    x : str, default "T"
        The result column on the horizontal axis: a grid option.
    y : str, default "final_loss"
        The result column on the vertical axis.
    hue : str or None, default None
        A grid option that splits the runs into curves.
    col : str or None, default None
        A grid option that splits the runs into panels.
    dpi : int, default 120
        The resolution of the figure, in dots per inch.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If the rows lack the columns ``x`` or ``y``.

    Examples
    --------
    >>> import resode.plot
    >>> from pathlib import Path
    >>> rows = ["T,seed,status,final_loss"] + [
    ...     f"{T},{s},ok,{0.5 / T + 0.01 * s}" for T in (1, 2, 4) for s in (0, 1)]
    >>> _ = Path("results.csv").write_text("\n".join(rows) + "\n")
    >>> resode.plot.sweep("results.csv", "sweep.png").name
    'sweep.png'
    """
    rows = _sweep_rows(result)
    if not rows or x not in rows[0] or y not in rows[0]:
        raise ValueError(f"the sweep's rows need the columns {x!r} and {y!r}")
    panels = sorted({r.get(col) for r in rows}, key=str) if col else [None]
    fig = new_figure((5.2 * len(panels) + 1.6, 4.0))
    colors = class_colors(10)
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
    return save_figure(fig, path, dpi)
