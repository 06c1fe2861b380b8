"""The neural CDE table of benchmarks/README.md: one training epoch (float64, 1 thread each) on
torchcde's spiral example and on JapaneseVowels, resode against torchcde and a jitted diffrax
CDE, the same model, method and steps (``benchmarks/cde_peers.py`` says what each runs). Each
peer's loss and gradients are checked against resode's first; a peer that is not installed is
left out (``pip install torch==2.13.0 torchcde diffrax``; aeon for JapaneseVowels).

Times are CPU times (``time.process_time``), the minimum over ``--repeats`` epochs after one
warm-up epoch (JAX compiles in it). Run: python benchmarks/cde_table.py [--repeats 5]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per cell")
    args = parser.parse_args()
    resode.set_num_threads(1)
    impls = [i for i in cp.IMPLS if cp.missing(i) is None]
    if "torchcde" in impls:
        import torch

        torch.set_num_threads(1)
    names = [n for n in cp.WORKLOADS if n == "spirals" or importlib.util.find_spec("aeon")]
    cpu = platform.processor() or platform.machine()
    print(f"# {date.today()}, {cpu}, resode kernels {resode._core.isa}, float64, 1 thread,"
          f" CPU ms per epoch (min of {args.repeats})")  # fmt: skip
    print("| workload | N | L | batch | " + " | ".join(f"{i} ms" for i in impls)
          + " | " + " | ".join(f"vs {i}" for i in impls[1:]) + " |")  # fmt: skip
    print("|---" * (4 + 2 * len(impls) - 1) + "|")
    with threadpool_limits(limits=1, user_api="blas"):
        for name in names:
            work = cp.WORKLOADS[name]()
            for impl in impls[1:]:
                cp.check(work, impl)
            ms = {i: 1e3 * epoch_seconds(work, i, args.repeats) for i in impls}
            cells = [f"{ms[i]:.1f}" for i in impls]
            ratios = [f"{ms[i] / ms['resode']:.1f}x" for i in impls[1:]]
            N, L, _ = work.U.shape
            print(f"| {name} | {N} | {L} | {work.batch} | " + " | ".join(cells + ratios) + " |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
