"""Scaling of one training step (loss_and_grad, float64, 1 thread) with the number of samples N,
the width D and the number of steps, resode against the NumPy reference, plus the machine's
single-thread GEMM rate for scale. Writes benchmarks/scaling.png and prints the numbers.

Run: python benchmarks/scaling.py            (about two minutes)
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import resode
from resode import bench

HERE = pathlib.Path(__file__).resolve().parent


def _time(model, N, budget=0.3, reference=True):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, model.dim))
    y = (np.linalg.norm(X, axis=1) > np.sqrt(model.dim)).astype(np.int64)
    with bench._threads(1):
        ours = bench._best(lambda: model.loss_and_grad(X, y), budget)
        ref = bench._best(bench._reference_call(model, X, y), budget) if reference else None
    return ours, ref


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gemm = bench.gemm_rate()
    print(f"NumPy float64 matmul 512x512, 1 thread: {gemm:.1f} GFLOP/s")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))

    Ns = [10**2, 10**3, 10**4, 10**5, 10**6]
    model = resode.NeuralODE(2, **bench.SEED_NODE, seed=0)
    rows = [(N, *_time(model, N, reference=N <= 10**5)) for N in Ns]
    for N, ours, ref in rows:
        print(
            f"seed NODE N={N}: resode {ours * 1e3:.2f} ms, reference "
            f"{'-' if ref is None else f'{ref * 1e3:.2f} ms'}"
        )
    axes[0].loglog(Ns, [r[1] for r in rows], "o-", label="resode")
    axes[0].loglog(
        [r[0] for r in rows if r[2]], [r[2] for r in rows if r[2]], "s--", label="NumPy reference"
    )
    axes[0].set(
        xlabel="samples N",
        ylabel="seconds per loss_and_grad",
        title="seed NODE (D=3, H=50, 16 rk4 steps)",
    )

    Ds = [2, 4, 8, 16, 32, 64, 128, 256, 512]
    rates = []
    for D in Ds:
        model = resode.ResNet(D, 20, h=0.1, seed=0)
        ours, ref = _time(model, 1024)
        flops = 3 * 2.0 * 1024 * D * D * 20
        rates.append((D, flops / ours / 1e9, flops / ref / 1e9))
        print(
            f"ResNet L=20 N=1024 D={D}: resode {flops / ours / 1e9:.1f} GFLOP/s "
            f"({flops / ours / 1e9 / gemm:.0%} of GEMM), reference {flops / ref / 1e9:.1f}"
        )
    axes[1].semilogx(Ds, [r[1] for r in rates], "o-", label="resode")
    axes[1].semilogx(Ds, [r[2] for r in rates], "s--", label="NumPy reference")
    axes[1].axhline(gemm, color="gray", linestyle=":", label="NumPy GEMM 512 (1 thread)")
    axes[1].set(
        xlabel="width D",
        ylabel="GFLOP/s (2 per multiply-add)",
        title="ResNet, outside tanh, L=20, N=1024",
    )

    steps = [4, 16, 64, 256, 1024]
    rows = []
    for S in steps:
        disc = resode.NeuralODE(8, T=1.0, pieces=S, seed=0)
        adj = resode.NeuralODE(8, T=1.0, pieces=S, gradient="adjoint", seed=0)
        rows.append(
            (S, _time(disc, 1000, reference=False)[0], _time(adj, 1000, reference=False)[0])
        )
        print(
            f"NODE D=8 N=1000 steps={S}: discrete {rows[-1][1] * 1e3:.2f} ms, "
            f"adjoint {rows[-1][2] * 1e3:.2f} ms"
        )
    axes[2].loglog(steps, [r[1] for r in rows], "o-", label="discrete")
    axes[2].loglog(steps, [r[2] for r in rows], "s-", label="adjoint")
    axes[2].set(
        xlabel="rk4 steps",
        ylabel="seconds per loss_and_grad",
        title="NODE D=8, N=1000, outside tanh",
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "scaling.png", dpi=90)
    print(f"wrote {HERE / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
