"""
A small sweep on Dask, and its plot
===================================

A sweep trains the same ``resode train`` experiment over a grid of options and seeds, each run a
Dask task. This one is a small version of the large-time study (``resode sweep --experiment
large-time``): the training loss of a neural ODE on concentric spheres against the horizon
``T``, with and without the turnpike cost, three seeds each. It runs on a ``LocalCluster`` of
one worker thread inside this process (``processes=False``); without a ``client``,
:func:`resode.sweep.run` starts one single-threaded worker process per core on 127.0.0.1, and a
scheduler's address runs the same sweep on a cluster.

Run it with ``python examples/small_sweep.py [OUT_FOLDER]`` (needs Dask: ``pip install
".[sweep]"``).
"""

import csv
import sys
from pathlib import Path

import resode.plot
import resode.sweep
from dask.distributed import Client, LocalCluster

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/small-sweep")
out.mkdir(parents=True, exist_ok=True)

# %%
# The spec
# --------
# ``base`` holds ``resode train`` options, ``grid`` lists values whose product is swept, and
# ``seeds`` repeats every grid point. The same dictionary could be a TOML file.
spec = {
    "base": {
        "dataset": "spheres",
        "n-samples": 200,
        "model": "node",
        "field": "bottleneck",
        "hidden": 8,
        "augment": 1,
        "epochs": 60,
        "batch-size": 50,
        "lr": 0.01,
        "weight-decay": 0.001,
    },
    "grid": {"T": [0.5, 1.0, 2.0, 4.0], "turnpike": [False, True]},
    "seeds": 3,
}
print(f"{len(resode.sweep.expand(spec))} runs")

# %%
# Run it
# ------
# Every run's files land in ``study/runs/<id>/`` and one row per run in ``study/results.csv``;
# running the same sweep again would skip the finished runs.
study = out / "study"
with (
    LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster,
    Client(cluster) as client,
):
    result = resode.sweep.run(spec, study, client=client, progress=False)
print(result.summary)
with open(study / "results.csv", newline="") as f:
    rows = list(csv.DictReader(f))
print(f"results.csv: {len(rows)} rows, columns {list(rows[0])[:8]} ...")

# %%
# The plot
# --------
# The median and interquartile band over seeds, on log-log axes, with each curve's fitted
# power-law slope and exponential rate in the legend.
figure = resode.plot.sweep(result, out / "sweep.png", x="T", y="train_loss", hue="turnpike")
print(f"wrote {figure.name}")
