"""The cost of a `resode.fit` epoch against its kernels, on the seed toolbox's experiment
(chess3, 2397 points, batch 150, bottleneck 50, relu, T = 5, 16 midpoint steps, augment 1,
Adam), float64: `python benchmarks/epoch.py [threads]` (default 1; RESODE_ISA=... for another
kernel set).

Prints the best `fit` epoch time (of 3 runs of 20 epochs) with `train_metrics="batches"` (the
default: the training accuracy from the batches' own forward sweeps) and with
`train_metrics="exact"` (one more forward sweep over X per epoch), the sum of its 16
`loss_and_grad` calls on the same batches (the bare loop), the end-of-epoch accuracy pass alone,
and the ratios of both `fit` epochs to the bare loop."""

from __future__ import annotations

import sys
import time

import numpy as np
import resode


def best(fn, rounds: int = 5) -> float:
    out = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - start)
    return out


def main() -> None:
    resode.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    X, y = resode.datasets.chess3(2397, seed=0)
    model = resode.NeuralODE(2, T=5.0, pieces=16, method="midpoint", field="bottleneck",
                             hidden=50, augment=1, activation="relu", seed=0)  # fmt: skip
    opt = resode.optim.Adam(lr=1e-3)
    resode.fit(model, X, y, optimizer=opt, epochs=2, batch_size=150, seed=0, progress=False)
    epochs = 20

    def fit_epoch(train_metrics: str) -> float:
        def run() -> None:
            resode.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=150, seed=0,
                       progress=False, train_metrics=train_metrics)  # fmt: skip

        return best(run, 3) / epochs

    fit = {mode: fit_epoch(mode) for mode in ("batches", "exact")}
    order = np.random.default_rng(0).permutation(len(X))

    def kernels() -> None:
        for lo in range(0, len(X), 150):
            idx = order[lo : lo + 150]
            model.loss_and_grad(X[idx], y[idx])

    k = best(kernels)
    score = best(lambda: model.score(X, y))
    print(f"kernels {resode._core.isa}, {resode.get_num_threads()} threads: "
          f"fit epoch {fit['batches'] * 1e3:.2f} ms (train_metrics='batches'), "
          f"{fit['exact'] * 1e3:.2f} ms ('exact'); loss_and_grad sum {k * 1e3:.2f} ms; "
          f"accuracy pass {score * 1e3:.2f} ms; fit / kernels {fit['batches'] / k:.3f} "
          f"('batches'), {fit['exact'] / k:.3f} ('exact')")  # fmt: skip


if __name__ == "__main__":
    main()
