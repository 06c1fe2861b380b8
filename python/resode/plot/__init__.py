"""Pictures of a trained model: the flow of the points, the decision boundary, training curves,
the controls and the state norm. Needs matplotlib (``pip install resode[plot]``).

Every function draws on its own :class:`matplotlib.figure.Figure` with the Agg canvas (no
``pyplot``, no global backend change, safe in scripts, servers and notebooks), writes ``path``
atomically and returns it as a :class:`pathlib.Path`. The file format follows the suffix
(``.png``, ``.pdf``, ``.svg``, ... for still images; ``.gif`` or ``.mp4`` for the animations).
``import resode.plot`` does not import matplotlib; drawing does.

The figures, one module per family:

- ``resode.plot.flows``: :func:`trajectories` (the points flowing through the layers/time).
- ``resode.plot.regions``: :func:`decision_boundary`, :func:`decision_regions`.
- ``resode.plot.curves``: :func:`history` (training curves), :func:`sweep` (a study).
- ``resode.plot.dynamics``: :func:`controls`, :func:`state_norm`, :func:`loss_along_time`.
- ``resode.plot.feature_space``: :func:`features`, :func:`feature_history`.
- ``resode.plot.images``: :func:`image_flow`.
- ``resode.plot.timeseries``: :func:`series` (a series and its interpolated path),
  :func:`hidden_state`, :func:`decision_along_time` (neural CDEs).

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

from ._common import require_matplotlib
from .curves import history, sweep
from .dynamics import controls, loss_along_time, state_norm
from .feature_space import feature_history, features
from .flows import trajectories
from .images import image_flow
from .regions import decision_boundary, decision_regions
from .timeseries import decision_along_time, hidden_state, series

__all__ = [
    "controls",
    "decision_along_time",
    "decision_boundary",
    "decision_regions",
    "feature_history",
    "features",
    "hidden_state",
    "history",
    "image_flow",
    "loss_along_time",
    "require_matplotlib",
    "series",
    "state_norm",
    "sweep",
    "trajectories",
]
