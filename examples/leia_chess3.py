r"""
leia's experiment: a turnpike-trained neural ODE on chess3
==========================================================

leia's ``generate_fig.py`` experiment, with resode. leia (the PyTorch + torchdiffeq toolbox
of Geshkovski and co-authors) trains :math:`x' = W_2\,\mathrm{relu}(W_1 x + b_1) + b_2` on
:math:`[0, T]` with constant controls per step, a hardtanh readout of one output against
:math:`\pm 1` targets, the MSE integrated along the trajectory (its "turnpike" loss
:math:`1.75 \sum_k [\ell(t_k) + \ell(t_{k+1})]`) and ``Adam(weight_decay=dt * 0.01)`` on
every parameter. Here:

- data: leia's Chess3 board (``datasets.chess3(style="leia")``: :math:`[-0.9, 0.9]^2`,
  ``n // 9`` points per cell), labels mapped to :math:`\pm 1`;
- model: ``NeuralODE(2, T=5, pieces=16, method="midpoint", field="bottleneck", hidden=50,
  augment=1, activation="relu", classes=1, loss="mse", readout="hardtanh")``;
- loss: ``turnpike=True`` with ``turnpike_weight = 2 * 1.75 * 15 / T = 10.5`` (leia's sum over
  its 16 trajectory points is :math:`2 / dt'` times their trapezoid rule, :math:`dt' = T / 15`);
- weight decay: leia's ``Adam(weight_decay=lam)`` adds ``lam * theta`` to the gradient,
  resode's ``weight_decay * |theta|^2`` adds ``2 * weight_decay * theta``:
  ``weight_decay = lam / 2`` with ``decay_readout=True`` (``P`` decayed too, ``c`` not);
- ``Adam(lr=2e-3)`` with a cosine schedule down to 5% of it over the 300 epochs, batches of
  150 (leia: a constant 1e-3 for 2500 epochs). A constant 2e-3 makes the turnpike loss spike
  now and then; where a run ends then depends on the last bits of the arithmetic, so the
  kernel sets (``RESODE_ISA=avx512``, ``avx2``, ``baseline``), which agree per call to
  round-off only, could end 300 epochs at different accuracies. With the decaying rate all
  three end at 100% training accuracy (see the user guide's page on guarantees).

It prints the time and accuracy per epoch, each model's final accuracy and from which time its
data loss along the flow is exactly 0, and draws the figures: decision regions along the flow,
the training error along time with and without the turnpike, the features and their history
over the epochs, the training curves, the controls and the state norm. Run it with
``python examples/leia_chess3.py [OUT_FOLDER] [EPOCHS]``.
"""

# %%
# The data and the models
# -----------------------
# leia's chess3 board with :math:`\pm 1` targets, and a function that builds the model with
# or without the turnpike loss. A callback prints each 25th epoch's time, loss and accuracy.

import sys
import time
from pathlib import Path

import numpy as np
import resode
import resode.plot as rplot
from resode import datasets, optim
from resode.reference import data_loss, readout_logits

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/leia-chess3")
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
out.mkdir(parents=True, exist_ok=True)

X, labels = datasets.chess3(1200, seed=0, style="leia")
y = np.where(labels == 1, 1.0, -1.0)  # leia's MSE targets: one output, +-1
T, steps = 5.0, 16
lam = T / steps * 0.01  # leia: Adam(weight_decay=dt * 0.01)


def make_model(turnpike: bool) -> resode.NeuralODE:
    return resode.NeuralODE(
        2,
        T=T,
        pieces=steps,
        method="midpoint",
        field="bottleneck",
        hidden=50,
        augment=1,
        activation="relu",
        classes=1,
        loss="mse",
        readout="hardtanh",
        turnpike=turnpike,
        turnpike_weight=2 * 1.75 * (steps - 1) / T if turnpike else 1.0,
        weight_decay=lam / 2,
        decay_readout=True,
        seed=0,
    )


class PerEpoch:
    """Prints each epoch's wall time and training accuracy (sign of the output)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, epoch: int, logs: dict, model: resode.NeuralODE) -> None:
        now = time.perf_counter()
        accuracy = np.mean((model.forward(X)[:, 0] > 0) == (labels == 1))
        if epoch % 25 == 0 or epoch == 1:
            print(
                f"epoch {epoch:3d}: {1000 * (now - self.last):6.1f} ms, loss "
                f"{logs['loss']:.4f}, accuracy {accuracy:.3f}"
            )
        self.last = now


def zero_from(model: resode.NeuralODE) -> str:
    """From which time on the data loss of the readout of x(t) is exactly 0 (hardtanh at +-1)."""
    states = model.trajectory(X)  # (steps + 1, N, 3)
    params = {k: np.asarray(model.params[k]) for k in ("P", "c")}
    losses = [data_loss(readout_logits(params, x, "hardtanh"), y[:, None], "mse") for x in states]
    nonzero = [k for k, loss in enumerate(losses) if loss > 0]
    if nonzero and nonzero[-1] == steps:
        return f"data loss at T {losses[-1]:.2e}"
    return f"data loss exactly 0 from t = {T * (nonzero[-1] + 1 if nonzero else 0) / steps:.4g}"


# %%
# Training
# --------
# The same model trained twice, with the turnpike loss and with the loss at the final time
# only; the first records its features every 15 epochs for the figure of their history.

models, histories = {}, {}
start = time.perf_counter()
for turnpike in (True, False):
    model = make_model(turnpike)
    name = "turnpike" if turnpike else "terminal loss"
    print(f"--- {name}")
    histories[name] = resode.fit(
        model,
        X,
        y,
        optimizer=optim.Adam(lr=2e-3, schedule=optim.CosineLR(epochs, min_factor=0.05)),
        epochs=epochs,
        batch_size=150,
        seed=0,
        progress=False,
        callbacks=[PerEpoch()],
        record=300 if turnpike else None,
        record_every=max(epochs // 20, 1),
    )
    models[name] = model
elapsed = time.perf_counter() - start
for name, model in models.items():
    accuracy = np.mean((model.forward(X)[:, 0] > 0) == (labels == 1))
    print(f"{name}: final training accuracy {accuracy:.4f}, {zero_from(model)}")
print(
    f"trained 2 x {epochs} epochs in {elapsed:.1f} s ({1000 * elapsed / (2 * epochs):.1f} ms "
    "per epoch)"
)

# %%
# The decision regions along the flow
# -----------------------------------
# Where the readout applied to :math:`x(t)` puts each point of the plane, as the flow
# carries it: an animation, and four times side by side.

model, history = models["turnpike"], histories["turnpike"]
rplot.decision_regions(model, X, labels, out / "decision_regions.gif", resolution=80)
rplot.decision_regions(model, X, labels, out / "decision_regions.png", times=[0, 1, 2.5, 5])

# %%
# The training error along time
# -----------------------------
# With the turnpike loss the data are classified early and stay so; with the final-time
# loss only at the end.

rplot.loss_along_time(models, X, y, out / "loss_along_time.png")

# %%
# The features and their history
# ------------------------------
# The final states :math:`x(T)` that the readout sees, and how they moved over the epochs.

rplot.features(model, X, y, out / "features.png")
rplot.feature_history(history, out / "feature_history.gif")

# %%
# Training curves, controls and the state norm
# --------------------------------------------

rplot.history(history, out / "history.png")
rplot.controls(model, out / "controls.png")
rplot.state_norm(model, X, out / "state_norm.png", y=labels)
print(f"wrote the figures to {out}/")
