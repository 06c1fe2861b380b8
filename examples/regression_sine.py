"""
A regression
============

A neural ODE fits a function of one variable, ``y = sin(x)`` measured with noise. A regressor is
a model with ``loss="mse"`` and one output: :func:`resode.fit` records :math:`R^2` instead of
the accuracy, ``predict`` returns the outputs and ``score`` the coefficient of determination.
The figure shows the fit, and how the flow moves each input: the state starts at
``(x, 0)`` (one augmented coordinate) and the readout of the final state is the prediction.

Run it with ``python examples/regression_sine.py [OUT_FOLDER]``.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; sphinx-gallery shows them
import matplotlib.pyplot as plt
import numpy as np
import resode
from resode import datasets, optim

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/regression-sine")
out.mkdir(parents=True, exist_ok=True)

# %%
# Data and model
# --------------
X, y = datasets.sine(300, noise=0.05, seed=0)  # X (300, 1) in [-pi, pi], y (300,)
X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, test_size=0.25, seed=0)
model = resode.NeuralODE(
    1, T=2.0, pieces=8, classes=1, loss="mse", field="bottleneck", hidden=16, augment=1, seed=0
)
history = resode.fit(
    model,
    X_tr,
    y_tr,
    optimizer=optim.Adam(lr=2e-2),
    epochs=300,
    batch_size=75,
    seed=0,
    validation_data=(X_te, y_te),
    progress=False,
)
print(f"R^2: train {model.score(X_tr, y_tr):.4f}, test {model.score(X_te, y_te):.4f}")
print(f"history columns: {history.keys()}")

# %%
# The fit and the flow
# --------------------
grid = np.linspace(X.min(), X.max(), 400)[:, None]
times = np.linspace(0.0, model.T, 81)
states = model.trajectory(grid[::40], t=times)  # (81, 10, 2): ten inputs, dense output

fig, (ax_fit, ax_flow) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
ax_fit.scatter(X_tr[:, 0], y_tr, s=8, alpha=0.5, label="training data")
ax_fit.plot(grid[:, 0], np.sin(grid[:, 0]), "k--", lw=1, label="sin(x)")
ax_fit.plot(grid[:, 0], model.predict(grid), "C3", lw=2, label="neural ODE")
ax_fit.set(xlabel="x", ylabel="y", title=f"test R² = {model.score(X_te, y_te):.4f}")
ax_fit.legend()
for i in range(states.shape[1]):
    ax_flow.plot(states[:, i, 0], states[:, i, 1], lw=1.5)
    ax_flow.plot(states[0, i, 0], states[0, i, 1], "ko", ms=3)
ax_flow.set(
    xlabel="state 1 (starts at x)",
    ylabel="state 2 (augmented, starts at 0)",
    title="each input's path from t = 0 to T",
)
fig.savefig(out / "regression.png", dpi=100)
plt.close(fig)

# %%
# The training curves
# -------------------
fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
ax.semilogy(history["epoch"], history["loss"], label="training loss")
ax.semilogy(history["epoch"], history["val_loss"], label="validation loss")
ax.set(xlabel="epoch", ylabel="mean squared error")
ax.legend()
fig.savefig(out / "history.png", dpi=100)
plt.close(fig)
