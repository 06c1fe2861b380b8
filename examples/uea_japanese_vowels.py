"""
A neural CDE on JapaneseVowels (UEA archive)
============================================

Nine Japanese speakers say the vowels /ae/; each utterance is a series of 12 LPC cepstrum
coefficients over 7 to 29 frames: series of unequal lengths, the shorter ones padded with NaN
rows at the end, each sample integrated to its own last observation. A neural controlled
differential equation (``resode.NeuralCDE``) is trained on the archive's own training split
(270 series) and scored on its test split (370), from the copy bundled with ``aeon`` (no
download). The published baseline is the UEA archive's 1-NN DTW (dependent warping, full
window): test accuracy 0.949 (Bagnall et al., "The UEA multivariate time series
classification archive, 2018", arXiv:1811.00075, Table 3; aeon's
``KNeighborsTimeSeriesClassifier(distance="dtw")`` gives 0.9486 on the same split).

The same model is then trained with torchcde (if it is installed) from the same initial
weights, on the same batches, with the same optimiser: the two compute the same mathematics,
so their losses agree epoch by epoch, and only the time differs.

Run it with ``python examples/uea_japanese_vowels.py [OUT_FOLDER]``. The environment variable
``RESODE_EXAMPLE_EPOCHS`` (default 40) sets the number of epochs; the tests set it lower.
"""

import math
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; sphinx-gallery shows them
import matplotlib.pyplot as plt
import numpy as np
import resode
from aeon.datasets import load_japanese_vowels
from resode import optim

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/uea-japanese-vowels")
out.mkdir(parents=True, exist_ok=True)
EPOCHS = int(os.environ.get("RESODE_EXAMPLE_EPOCHS", "40"))
STATE, CHANNELS, BATCH, LR, WEIGHT_DECAY = 16, 13, 32, 1e-2, 1e-3
resode.set_num_threads(1)  # one thread, as torchcde below

# %%
# The data, with time as a channel
# --------------------------------
# ``U`` is ``(N, L, channels)``: the observation index over 10 as the first channel (torchcde's
# advice: a CDE sees time only through its path), then the 12 coefficients, standardised with
# the training split's means and deviations. Shorter series end in NaN rows.


def series_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    series, labels = load_japanese_vowels(split=split)  # a list of (12, L_i) arrays
    U = np.full((len(series), 29, 13), np.nan)
    for i, s in enumerate(series):
        U[i, : s.shape[1], 0] = np.arange(s.shape[1]) / 10.0
        U[i, : s.shape[1], 1:] = s.T
    return U, labels.astype(np.int64) - 1  # speakers 1..9 -> classes 0..8


U_train, y_train = series_arrays("train")
U_test, y_test = series_arrays("test")
mean = np.nanmean(U_train[:, :, 1:], axis=(0, 1))
std = np.nanstd(U_train[:, :, 1:], axis=(0, 1))
for U in (U_train, U_test):
    U[:, :, 1:] = (U[:, :, 1:] - mean) / std
lengths = (~np.isnan(U_train).all(axis=2)).sum(axis=1)
print(f"train {U_train.shape}, test {U_test.shape}, lengths {lengths.min()}-{lengths.max()}")

# %%
# Train the neural CDE
# --------------------
# torchcde's example vector field: ``F(z) = tanh(W2 relu(W1 z + b1) + b2)`` reshaped to
# ``(state, channels)``; Hermite cubic interpolation with backward differences, RK4 with one
# step per observation interval, Adam with a cosine schedule. (``fit`` also scores the
# training split after each epoch, a forward pass the torchcde loop below does not make.)


def make_model() -> resode.NeuralCDE:
    return resode.NeuralCDE(
        CHANNELS,
        STATE,
        field="bottleneck",
        hidden=32,
        activation="relu",
        output_activation="tanh",
        classes=9,
        weight_decay=WEIGHT_DECAY,
        interpolation="cubic",
        method="rk4",
        seed=0,
    )


model = make_model()
initial = {k: v.copy() for k, v in model.params.items()}
start = time.perf_counter()
history = resode.fit(
    model,
    U_train,
    y_train,
    optimizer=optim.Adam(lr=LR, schedule=optim.CosineLR(EPOCHS)),
    epochs=EPOCHS,
    batch_size=BATCH,
    seed=0,
    progress=False,
)
resode_seconds = time.perf_counter() - start
accuracy = model.score(U_test, y_test)
print(f"resode: test accuracy {accuracy:.3f} after {EPOCHS} epochs in {resode_seconds:.1f} s")
print("1-NN DTW (dependent), the UEA archive's baseline: test accuracy 0.949")

# %%
# The same model in torchcde
# --------------------------
# The same initial weights, the same batches (``fit`` visits epoch ``e`` in the order
# ``np.random.default_rng([seed, e]).permutation(N)``), the same loss and Adam. Each sample's
# state is read at its own last observation (torchcde fills the NaN padding forward). RK4 is
# torchdiffeq's classical step on the knots (its ``method="rk4"`` is the 3/8 rule).
try:
    import torch
    import torchcde
except ImportError:
    torch = None
    print("torchcde is not installed: no comparison")


def torch_classic_rk4() -> None:
    """Register torchdiffeq's classical RK4 step as the fixed-grid method 'rk4_classic'."""
    import importlib

    from torchdiffeq._impl.misc import Perturb
    from torchdiffeq._impl.rk_common import rk4_step_func
    from torchdiffeq._impl.solvers import FixedGridODESolver

    class ClassicRK4(FixedGridODESolver):
        order = 4

        def _step_func(self, func, t0, dt, t1, y0):
            f0 = func(t0, y0, perturb=Perturb.NEXT if self.perturb else Perturb.NONE)
            return rk4_step_func(func, t0, dt, t1, y0, f0=f0, perturb=self.perturb), f0

    importlib.import_module("torchdiffeq._impl.odeint").SOLVERS["rk4_classic"] = ClassicRK4


def torch_logits(p: dict, coeffs, last):
    """Logits at each sample's last observation: z0 = A x0 + a, dz = F(z) dX, P z + c."""

    def field(t, z):
        hidden = torch.relu(z @ p["W1"][0].T + p["b1"][0])
        return torch.tanh(hidden @ p["W2"][0].T + p["b2"][0]).view(-1, STATE, CHANNELS)

    X = torchcde.CubicSpline(coeffs)
    z0 = X.evaluate(X.interval[0]) @ p["A"].T + p["a"]
    knots = X.grid_points
    zs = torchcde.cdeint(X, field, z0, knots, adjoint=False, method="rk4_classic",
                         options={"grid_constructor": lambda f, y0, t: knots})  # fmt: skip
    return zs[torch.arange(zs.shape[0]), last] @ p["P"].T + p["c"]


def train_torchcde() -> tuple[list[float], float, float]:
    torch.set_num_threads(1)
    torch_classic_rk4()
    p = {k: torch.tensor(v, requires_grad=True) for k, v in initial.items()}
    opt = torch.optim.Adam(p.values(), lr=LR)
    cosine = lambda e: (1 + math.cos(math.pi * min(e, EPOCHS) / EPOCHS)) / 2  # noqa: E731
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    hermite = torchcde.hermite_cubic_coefficients_with_backward_differences
    coeffs, coeffs_test = hermite(torch.tensor(U_train)), hermite(torch.tensor(U_test))
    last = torch.tensor((~np.isnan(U_train).all(axis=2)).sum(axis=1) - 1)
    last_test = torch.tensor((~np.isnan(U_test).all(axis=2)).sum(axis=1) - 1)
    y = torch.tensor(y_train)
    losses, start = [], time.perf_counter()
    for epoch in range(EPOCHS):
        order = np.random.default_rng([0, epoch]).permutation(len(y_train))
        total = 0.0
        for s in range(0, len(order), BATCH):
            rows = torch.tensor(order[s : s + BATCH])
            logits = torch_logits(p, coeffs[rows], last[rows])
            decay = sum((p[k] ** 2).sum() for k in ("W1", "b1", "W2", "b2"))
            loss = torch.nn.functional.cross_entropy(logits, y[rows]) + WEIGHT_DECAY * decay
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(rows)
        schedule.step()
        losses.append(total / len(order))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = torch_logits(p, coeffs_test, last_test).argmax(dim=1).numpy()
    return losses, float(np.mean(predicted == y_test)), seconds


if torch is not None:
    torch_losses, torch_accuracy, torch_seconds = train_torchcde()
    ratio = torch_seconds / resode_seconds
    print(f"torchcde: test accuracy {torch_accuracy:.3f} after {EPOCHS} epochs in "
          f"{torch_seconds:.1f} s ({ratio:.1f}x resode's time)")  # fmt: skip

# %%
# Training curves and test accuracies
# -----------------------------------
# resode's epoch loss is the mean over the epoch's batches of the loss each batch was trained
# on, as torchcde's.
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), width_ratios=(3, 2))
epochs = np.arange(1, EPOCHS + 1)
left.plot(epochs, history["loss"], label=f"resode ({resode_seconds:.1f} s)")
bars = {"resode CDE": (accuracy, "C0"), "1-NN DTW": (0.949, "gray")}
if torch is not None:
    left.plot(epochs, torch_losses, "--", label=f"torchcde ({torch_seconds:.1f} s)")
    bars["torchcde CDE"] = (torch_accuracy, "C1")
left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="JapaneseVowels")
left.legend()
right.bar(list(bars), [a for a, _ in bars.values()], color=[c for _, c in bars.values()])
for i, (score, _) in enumerate(bars.values()):
    right.text(i, score + 0.005, f"{score:.3f}", ha="center")
right.set(ylabel="test accuracy", ylim=(0.8, 1.0), title="370 test series")
fig.tight_layout()
fig.savefig(out / "japanese_vowels.png", dpi=100)
print(f"wrote {out}/japanese_vowels.png")
