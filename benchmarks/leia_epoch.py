"""A training epoch of leia (https://github.com/borjanG/leia: PyTorch + torchdiffeq, the seed
toolbox) against ``resode.fit`` on the same experiment: leia's chess3 board (2397 points),
batches of 150, the bottleneck field with 50 relu units, T = 5 over 16 pieces of one midpoint
step, one augmented dimension, a linear readout with cross-entropy, Adam (lr 1e-3), 1 thread
each, float64 (and resode in float32).

leia is neither a dependency of resode nor copied here: clone it and pass its folder (it imports
torchdiffeq, which torchcde brings):

    git clone https://github.com/borjanG/leia /tmp/leia
    python benchmarks/leia_epoch.py /tmp/leia [--epochs 10] [--rounds 3]

leia runs as its own ``Trainer._train_epoch`` runs it (``turnpike=False``: the empirical risk
alone, what ``resode.fit`` minimises), over a ``torch.utils.data.DataLoader`` of the same
points. Before anything is timed, leia's loss on resode's initial weights is checked against
resode's. Each cell runs in its own process pinned to one core (the last one); the two take
turns for ``--rounds`` rounds; a cell's time is the CPU time (``time.process_time``) of
``--epochs`` epochs after a warm-up epoch, divided by the epochs, the minimum over the rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from typing import Any

import numpy as np
import resode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pinned import number_from_pinned_process  # beside this script

N_POINTS, BATCH, HIDDEN, PIECES, T, LR = 2397, 150, 50, 16, 5.0, 1e-3


def data() -> tuple[np.ndarray, np.ndarray]:
    return resode.datasets.chess3(N_POINTS, seed=0, style="leia")


def resode_model(dtype: str = "float64") -> resode.NeuralODE:
    return resode.NeuralODE(2, T=T, pieces=PIECES, method="midpoint", field="bottleneck",
                            hidden=HIDDEN, augment=1, activation="relu", dtype=dtype,
                            seed=0)  # fmt: skip


def leia_model(leia: str, start: resode.NeuralODE) -> Any:
    """leia's NeuralODE with resode's initial weights (piece k: fc1_time[k] is W1[k], b1[k];
    fc3_time[k] is W2[k], b2[k]; the readout is P, c)."""
    import torch

    sys.path.insert(0, leia)
    from models.neural_odes import NeuralODE  # leia's

    torch.set_default_dtype(torch.float64)
    model = NeuralODE(torch.device("cpu"), 2, HIDDEN, output_dim=2, augment_dim=1,
                      non_linearity="relu", architecture="bottleneck", T=T,
                      time_steps=PIECES)  # fmt: skip
    p = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in start.params.items()}
    with torch.no_grad():
        for k in range(PIECES):
            model.flow.dynamics.fc1_time[k].weight.copy_(p["W1"][k])
            model.flow.dynamics.fc1_time[k].bias.copy_(p["b1"][k])
            model.flow.dynamics.fc3_time[k].weight.copy_(p["W2"][k])
            model.flow.dynamics.fc3_time[k].bias.copy_(p["b2"][k])
        model.linear_layer.weight.copy_(p["P"])
        model.linear_layer.bias.copy_(p["c"])
    return model


def leia_epochs(leia: str) -> Any:
    """leia's Trainer for some epochs, after the loss check."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    start = resode_model()
    model = leia_model(leia, start)
    from models.training import Trainer  # leia's

    X, y = data()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(Xt)[0], yt).item()
    expected = start.loss_and_grad(X, y)[0]
    if abs(loss - expected) > 1e-9 * abs(expected):
        raise SystemExit(f"leia's loss {loss!r} is not resode's {expected!r}: not the same model")
    loader = DataLoader(TensorDataset(Xt, yt), batch_size=BATCH, shuffle=True)
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=LR), torch.device("cpu"),
                      verbose=False, turnpike=False)  # fmt: skip

    def train(epochs: int) -> None:
        for epoch in range(epochs):
            trainer._train_epoch(loader, epoch)

    return train


def resode_epochs(dtype: str) -> Any:
    """``resode.fit`` for some epochs (one call)."""
    resode.set_num_threads(1)
    model = resode_model(dtype)
    X, y = data()
    optimizer = resode.optim.Adam(lr=LR)
    return lambda epochs: resode.fit(model, X, y, optimizer=optimizer, epochs=epochs,
                                     batch_size=BATCH, progress=False)  # fmt: skip


def cell(impl: str, leia: str, epochs: int) -> float:
    """Milliseconds per epoch of ``impl`` (after a warm-up epoch), in this process."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        train = leia_epochs(leia) if impl == "leia" else resode_epochs(impl.split()[-1])
        train(1)
        start = time.process_time()
        train(epochs)
        return 1e3 * (time.process_time() - start) / epochs


def cell_in_own_process(impl: str, leia: str, epochs: int) -> float:
    return number_from_pinned_process([__file__, leia, "--cell", impl, "--epochs", str(epochs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leia", help="the folder of a clone of github.com/borjanG/leia")
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per cell")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each implementation")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        print(cell(args.cell, args.leia, args.epochs))
        return
    impls = ["resode float64", "resode float32", "leia"]
    ms = {i: float("inf") for i in impls}
    for _ in range(args.rounds):
        for i in impls:
            ms[i] = min(ms[i], cell_in_own_process(i, args.leia, args.epochs))
    cpu = platform.processor() or platform.machine()
    print(f"# {date.today()}, {cpu}, resode kernels {resode._core.isa}, 1 thread, CPU ms per"
          f" epoch (mean of {args.epochs}, min of {args.rounds} rounds), each cell its own"
          " process")  # fmt: skip
    print("| resode float64 | resode float32 | leia (float64) | leia / resode float64 |"
          " leia / resode float32 |")  # fmt: skip
    print("|---|---|---|---|---|")
    r64, r32, leia = (ms[i] for i in impls)
    print(f"| {r64:.2f} | {r32:.2f} | {leia:.1f} | {leia / r64:.1f}x | {leia / r32:.1f}x |")


if __name__ == "__main__":
    main()
