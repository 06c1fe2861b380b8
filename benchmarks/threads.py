"""Two threads against one, and the D = 64 ResNet against GEMM, for the rows that issue 24's
"rest of the table" names: W1 (the seed neural ODE) at N = 1000, discrete and adjoint, and W2
(ResNet L = 100, outside tanh) at D = 64, float64 and float32.

Each (workload, dtype) is timed at 1 and 2 threads alternately over several rounds, and the
best time of each is kept, so a burst of load on a shared machine hits both thread counts
alike. Run it on an idle machine with both cores free, for the kernel set under test:

    python benchmarks/threads.py                       # the best kernels of this CPU
    RESODE_ISA=avx2 python benchmarks/threads.py       # the AVX2 kernels
    RESODE_ISA=baseline python benchmarks/threads.py   # the x86-64 baseline kernels

NumPy's GEMM runs the kernels OpenBLAS picks, or those that OPENBLAS_CORETYPE forces (the
header names it): `env -u OPENBLAS_CORETYPE python benchmarks/threads.py` compares with the
CPU's own (AVX-512) GEMM where the machine sets `Haswell`.

It prints one Markdown row per (workload, dtype): ms at 1 and 2 threads, the speed-up, and
GFLOP/s with its share of NumPy's 1-thread GEMM of the same dtype (measured in the same run).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import resode
from resode import bench

ROUNDS = 7  # alternations of 1 and 2 threads
CALLS = 5  # calls per round and thread count (the best one counts)


def _best_of(fn: Callable[[], Any], calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _models(dtype: str) -> list[tuple[str, resode.ResNet | resode.NeuralODE, int]]:
    w1 = {
        g: resode.NeuralODE(2, **bench.SEED_NODE, gradient=g, dtype=dtype, seed=0)
        for g in ("discrete", "adjoint")
    }
    return [
        ("W1 seed NODE N=1000 discrete", w1["discrete"], 1000),
        ("W1 seed NODE N=1000 adjoint", w1["adjoint"], 1000),
        ("W2 ResNet L=100 D=64 N=1000", resode.ResNet(64, 100, h=0.1, dtype=dtype, seed=0), 1000),
    ]


def _row(
    name: str, model: resode.ResNet | resode.NeuralODE, N: int, dtype: str, gemm: float
) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, model.dim)).astype(dtype)
    y = (np.linalg.norm(X, axis=1) > np.sqrt(model.dim)).astype(np.int64)

    def call() -> None:
        model.loss_and_grad(X, y)

    best = {1: float("inf"), 2: float("inf")}
    for _ in range(ROUNDS):
        for threads in (1, 2):
            with bench._threads(threads):
                call()  # warm the workspaces of this thread count
                best[threads] = min(best[threads], _best_of(call, CALLS))
    gflop = bench._matmul_gflop(model, N)
    rate = gflop / best[1]
    return (
        f"| {name} | {dtype} | {best[1] * 1e3:.3f} | {best[2] * 1e3:.3f} | "
        f"{best[1] / best[2]:.2f}x | {rate:.1f} | {rate / gemm:.0%} |"
    )


def main() -> int:
    coretype = os.environ.get("OPENBLAS_CORETYPE", "not set")
    print(f"kernels: {resode._core.isa}; OPENBLAS_CORETYPE: {coretype}")
    print("NumPy 1-thread GEMM in this run (512 x 512):")
    gemm = {d: bench.gemm_rate(dtype=d) for d in ("float64", "float32")}
    print(", ".join(f"{d} {r:.1f} GFLOP/s" for d, r in gemm.items()) + "\n")
    print(
        "| workload | dtype | 1 thread ms | 2 threads ms | speed-up | GFLOP/s (1 thread) "
        "| of GEMM |"
    )
    print("|---|---|---|---|---|---|---|")
    for dtype in ("float64", "float32"):
        for name, model, N in _models(dtype):
            print(_row(name, model, N, dtype, gemm[dtype]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
