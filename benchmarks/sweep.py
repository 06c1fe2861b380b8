"""Runs per minute of a sweep.

`python benchmarks/sweep.py [runs]`: a grid of `runs` (default 100) runs of the demo
experiment, shortened to about a second a run (concentric spheres, the augmented bottleneck
neural ODE, 270 epochs), once as a serial loop of `resode train` calls in this process and once
with `resode.sweep.run` on a LocalCluster of 2 single-threaded workers. Both run the core on one
thread. Prints each rate, their ratio, and the sweep machinery's cost per run: (workers x wall
time - the runs' own time) / runs.

`python benchmarks/sweep.py --experiment large-time [--repeat R]`: the built-in study (120 runs
of about 0.2 s) as a user runs it, `resode sweep --experiment large-time --workers N`, each
command in its own process, with 1 and 2 workers in turn (1, 2, 2, 1, ...: a drifting machine
favours neither), R times each (default 2). Prints the rate of each command (its summary line:
from expanding the spec to the cluster closed) and its whole wall time (the interpreter's start
included), then the median rate of each and their ratio. Wall time: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import statistics
import subprocess
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


def against_serial(runs: int) -> None:
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


def command(experiment: str, workers: int) -> tuple[float, float]:
    """(runs/min of the summary line, wall seconds of the whole command)."""
    with tempfile.TemporaryDirectory() as scratch:
        argv = [sys.executable, "-m", "resode", "sweep", "--experiment", experiment, "--out",
                str(Path(scratch) / "out"), "--workers", str(workers), "--no-progress"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
    rate = re.search(r"([0-9.]+) runs/min", done.stdout)
    assert rate is not None, done.stdout
    return float(rate.group(1)), wall


def one_against_two(experiment: str, repeat: int) -> None:
    rates: dict[int, list[float]] = {1: [], 2: []}
    for i in range(repeat):
        for workers in (1, 2) if i % 2 == 0 else (2, 1):
            rate, wall = command(experiment, workers)
            rates[workers].append(rate)
            print(f"{workers} worker{'s' if workers > 1 else ''}: {rate:.1f} runs/min "
                  f"(the command: {wall:.1f} s)", flush=True)  # fmt: skip
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"median: 1 worker {one:.1f} runs/min, 2 workers {two:.1f} runs/min: {two / one:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=100)
    parser.add_argument("--experiment", help="a built-in study, with 1 and 2 workers in turn")
    parser.add_argument("--repeat", type=int, default=2, help="commands per worker count")
    args = parser.parse_args()
    if args.experiment:
        one_against_two(args.experiment, args.repeat)
    else:
        against_serial(args.runs)


if __name__ == "__main__":
    main()
