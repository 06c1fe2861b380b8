"""The neural CDE table of benchmarks/README.md: one training epoch (float64, 1 thread each) on
torchcde's spiral example and on JapaneseVowels, resode against torchcde and a jitted diffrax
CDE, the same model, method and steps (``benchmarks/cde_peers.py`` says what each runs). Each
peer's loss and gradients are checked against resode's first; a peer that is not installed is
left out (``pip install torch==2.13.0 torchcde diffrax``; aeon for JapaneseVowels).

Each cell runs in its own process pinned to one core (the last one), so no framework's thread
pools or heap are in another's process; the implementations take turns for ``--rounds`` rounds
(a slow spell of a shared host hits all of them). Times are CPU times of that process
(``time.process_time``), the minimum over the rounds of the minimum over ``--repeats`` epochs
after one warm-up epoch (JAX compiles in it).
Run: python benchmarks/cde_table.py [--repeats 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cde_peers as cp  # sets the XLA flags before anything imports JAX
import resode
from pinned import number_from_pinned_process
from threadpoolctl import threadpool_limits


def epoch_seconds(work: cp.Workload, impl: str, repeats: int) -> float:
    """The minimum CPU time of one epoch of ``impl`` over ``repeats`` (after a warm-up)."""
    epoch = cp.EPOCHS[impl](work)
    epoch()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        epoch()
        best = min(best, time.process_time() - start)
    return best


def cell(impl: str, name: str, repeats: int) -> float:
    """One cell in this process: ``impl``'s loss and gradients checked against resode's (for a
    peer), then the epoch timed; returns milliseconds."""
    resode.set_num_threads(1)
    if impl == "torchcde":
        import torch

        torch.set_num_threads(1)
    work = cp.WORKLOADS[name]()
    with threadpool_limits(limits=1, user_api="blas"):
        if impl != "resode":
            cp.check(work, impl)
        return 1e3 * epoch_seconds(work, impl, repeats)


def cell_in_own_process(impl: str, name: str, repeats: int) -> float:
    """cell() in a child process pinned to the last core."""
    return number_from_pinned_process([__file__, "--cell", impl, name, "--repeats", str(repeats)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per cell")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every implementation")
    parser.add_argument("--cell", nargs=2, metavar=("IMPL", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print(cell(*args.cell, args.repeats))
        return
    impls = [i for i in cp.IMPLS if cp.missing(i) is None]
    names = [n for n in cp.WORKLOADS if n == "spirals" or importlib.util.find_spec("aeon")]
    cpu = platform.processor() or platform.machine()
    print(f"# {date.today()}, {cpu}, resode kernels {resode._core.isa}, float64, 1 thread,"
          f" CPU ms per epoch (min of {args.repeats} x {args.rounds} rounds), each cell its own"
          " process")  # fmt: skip
    print("| workload | N | L | batch | " + " | ".join(f"{i} ms" for i in impls)
          + " | " + " | ".join(f"vs {i}" for i in impls[1:]) + " |")  # fmt: skip
    print("|---" * (4 + 2 * len(impls) - 1) + "|")
    for name in names:
        ms = {i: float("inf") for i in impls}
        for _ in range(args.rounds):
            for i in impls:
                ms[i] = min(ms[i], cell_in_own_process(i, name, args.repeats))
        cells = [f"{ms[i]:.1f}" for i in impls]
        ratios = [f"{ms[i] / ms['resode']:.1f}x" for i in impls[1:]]
        N, L, _ = cp.WORKLOADS[name]().U.shape
        batch = cp.WORKLOADS[name]().batch
        print(f"| {name} | {N} | {L} | {batch} | " + " | ".join(cells + ratios) + " |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
