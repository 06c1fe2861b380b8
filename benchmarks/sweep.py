"""Runs per minute of a sweep against a serial loop: `python benchmarks/sweep.py [runs]`.

A grid of `runs` (default 100) runs of the demo experiment, shortened to about a second a run
(concentric spheres, the augmented bottleneck neural ODE, 270 epochs), once as a serial loop of
`resode train` calls in this process and once with `resode.sweep.run` on a LocalCluster of 2
single-threaded workers. Both run the core on one thread. Prints each rate, their ratio, and
the sweep machinery's cost per run: (workers x wall time - the runs' own time) / runs.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import resode.sweep
from resode import cli


def spec(runs: int) -> dict:
    seeds = 10
    lrs = [round(0.005 * (i + 1), 4) for i in range(max(runs // seeds, 1))]
    return {
        "base": {"dataset": "spheres", "model": "node", "field": "bottleneck", "hidden": 32,
                 "augment": 1, "activation": "relu", "weight-decay": 1e-3, "batch-size": 200,
                 "schedule": "cosine", "epochs": 270, "no-plots": True},
        "grid": {"lr": lrs},
        "seeds": seeds,
    }  # fmt: skip


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    plan = resode.sweep.expand(spec(runs))
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        for r in plan:
            argv = ["train", *r.argv, "--out", f"{scratch}/serial/{r.id}", "--no-progress",
                    "--threads", "1"]  # fmt: skip
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(argv) == 0
        serial = time.perf_counter() - start
        start = time.perf_counter()
        result = resode.sweep.run(spec(runs), Path(scratch) / "sweep", workers=2, progress=False)
        swept = time.perf_counter() - start
    own = sum(float(row["seconds"]) for row in result.rows)
    n = len(plan)
    print(f"{n} runs, {own / n:.2f} s each on average (inside the sweep)")
    print(f"serial loop: {serial:.1f} s, {60 * n / serial:.1f} runs/min")
    print(f"sweep, 2 workers: {swept:.1f} s, {60 * n / swept:.1f} runs/min "
          f"({serial / swept:.2f}x the serial rate)")  # fmt: skip
    overhead = (2 * swept - own) / n
    print(f"sweep machinery per run: {overhead * 1e3:.0f} ms ({100 * overhead / (own / n):.1f}% "
          "of a run; cluster start-up included)")  # fmt: skip


if __name__ == "__main__":
    main()
