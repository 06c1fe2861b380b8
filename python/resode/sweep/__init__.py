"""Sweeps: the same ``resode train`` experiment over a grid of options and seeds, one run per
Dask task, on a laptop's ``LocalCluster`` or any Dask cluster.

A spec (a dict, or a TOML file) has a ``base`` table of run options (the keys of
``config.toml``), a ``grid`` table mapping options to lists (their Cartesian product), optional
``seeds`` (a count ``N`` for seeds ``0..N-1``, or a list) and optional ``[[repeat]]`` blocks
whose lists are zipped (equal lengths), not multiplied::

    [base]
    dataset = "spheres"
    epochs = 100
    [grid]
    T = [1.0, 2.0, 4.0]
    turnpike = [false, true]
    seeds = 5

Every run is a ``resode.config.RunConfig``, checked as ``resode train`` would check it
before any work starts; a sweep draws no figures unless the spec says ``plots = true``. A
run's identity is a hash of its configuration, the sha256 of its ``data`` and ``validation``
files and the resode version; its results go to ``OUT/runs/<id>/`` (``result.json``,
``history.csv``, ``model.npz``, ``run.json``, ``log.txt``, ...). Running the same sweep again
skips the finished runs (status ``ok`` or ``diverged``) and runs the rest. ``OUT/results.csv``
(and ``results.parquet`` with pyarrow) has one row per run, the grid columns first.

Each run is ``resode.run.train_run`` with ``out=None`` in a worker process with the core on
one thread: the worker returns the run's files through Dask and the driver writes them (the
workers need not see ``OUT``, nor the ``data`` and ``validation`` files, whose bytes the
driver sends them: a cluster without a shared file system works). The results are
bitwise those of ``resode train`` with the same options, whatever the number of workers or
the order in which runs finish. The folder's safety (``sweep.json``, ``sweep.lock``, the
driver's scratch folder, Ctrl-C) is described in ``resode.sweep.folder``.

Requires ``pip install "resode[sweep]"`` (``dask[distributed]``); ``import resode`` and
``import resode.sweep`` do not import Dask.
"""

from __future__ import annotations

from .driver import run
from .results import SweepInterrupted, SweepResult
from .spec import Run, expand, load_spec

__all__ = ["Run", "SweepInterrupted", "SweepResult", "expand", "load_spec", "run"]
