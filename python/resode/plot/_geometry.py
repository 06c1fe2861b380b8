"""The geometry of states for drawing: frame limits that follow a flow, projections of wide
states on a plane, and the readout's separating line or plane ``w . x + b = 0``.

Private to ``resode.plot`` (used by the flow animation and the feature figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import Model


def frame_limits(traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def principal_plane(traj: np.ndarray) -> np.ndarray:
    """States ``(steps + 1, n, D)`` projected on the first two principal components of the
    final states (centred at their mean), ``(steps + 1, n, 2)``."""
    final = traj[-1]
    centre = final.mean(axis=0)
    _, _, vt = np.linalg.svd(final - centre, full_matrices=False)
    projected: np.ndarray = (traj - centre) @ vt[:2].T
    return projected


def planar(states: np.ndarray, D: int) -> np.ndarray:
    """States ``(..., n, D)`` for drawing: as they are for D in (2, 3), the line y = 0 for
    D == 1, the first two principal components of the last slice for D > 3."""
    if D == 1:
        return np.concatenate([states, np.zeros_like(states)], axis=-1)
    if D > 3:
        return principal_plane(states.reshape(-1, *states.shape[-2:]))
    return states


def state_axes(fig: Any, D: int) -> tuple[Any, int]:
    """Axes for states of width D: 3-D axes for D == 3, a plane otherwise."""
    if D == 3:
        import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3-D projection)

        return fig.add_subplot(projection="3d"), 3
    return fig.add_subplot(), 2


def separator(model: Model) -> tuple[np.ndarray, float] | None:
    """``(w, b)`` of the readout's decision boundary ``w . x + b = 0``: ``w = P_1 - P_0``,
    ``b = c_1 - c_0`` for two classes, ``w = P_0``, ``b = c_0`` for one output (the sign of
    ``z``, e.g. leia's +-1 targets); None otherwise."""
    P, c = np.asarray(model.params["P"], np.float64), np.asarray(model.params["c"], np.float64)
    if model.classes == 2:
        return P[1] - P[0], float(c[1] - c[0])
    if model.classes == 1:
        return P[0], float(c[0])
    return None


def readout_plane_grid(
    model: Model, lims: Sequence[tuple[float, float]], points: int = 12
) -> list[np.ndarray] | None:
    """Grid ``[x1, x2, x3]`` (each ``points x points``) of the plane ``w . x + b = 0`` (see
    :func:`separator`) in the box ``lims``, solved for its steepest coordinate; points outside
    the box are NaN. None when there is no separator or ``w = 0``."""
    sep = separator(model)
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


def readout_plane(ax: Any, model: Model, lims: Sequence[tuple[float, float]]) -> Any:
    """Draw the readout's separating plane (see :func:`readout_plane_grid`) in 3-D axes."""
    grid = readout_plane_grid(model, lims)
    if grid is None:
        return None
    surface = ax.plot_surface(*grid, color="0.3", alpha=0.25, linewidth=0, shade=False)
    for axis, (a, z) in zip("xyz", lims):
        getattr(ax, f"set_{axis}lim")(a, z)
    return surface


def readout_line(ax: Any, model: Model, lims: Sequence[tuple[float, float]]) -> Any:
    """Draw ``w . x + b = 0`` (see :func:`separator`) in 2-D axes."""
    sep = separator(model)
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
