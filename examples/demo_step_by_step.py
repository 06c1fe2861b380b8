"""
The demo, step by step
======================

``resode demo`` in a few lines of Python: two concentric spheres in the plane, an augmented
neural ODE (bottleneck field, 32 hidden units, relu, T = 5, 10 pieces of RK4), Adam with a
cosine schedule, and the figures of the run. The inner disc cannot be pulled out of the ring in
the plane, so the model gets a third, augmented coordinate: the flow lifts one class above the
other, and a plane separates them at time T.

Run it with ``python examples/demo_step_by_step.py [OUT_FOLDER]``.
"""

import sys
from pathlib import Path

import resode
from resode import datasets, optim, plot

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo-step-by-step")
out.mkdir(parents=True, exist_ok=True)

# %%
# The data
# --------
# 1000 points, the inner disc (class 0) inside the outer ring (class 1), split 800 / 200.
X, y = datasets.concentric_spheres(1000, seed=0)
X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, test_size=0.2, seed=0)
print(f"train {X_tr.shape}, test {X_te.shape}, classes {sorted(set(y.tolist()))}")

# %%
# The model
# ---------
# ``augment=1`` pads every sample with one zero coordinate: the states live in 3-D. The
# parameters are plain NumPy arrays, one slice per piece of the control.
model = resode.NeuralODE(
    2,
    T=5.0,
    pieces=10,
    field="bottleneck",
    hidden=32,
    augment=1,
    activation="relu",
    weight_decay=1e-3,
    seed=0,
)
print({name: p.shape for name, p in model.params.items()})

# %%
# Training
# --------
# One call into the C++ core per epoch: the batches, the gradients and Adam's updates.
adam = optim.Adam(lr=1e-2, schedule=optim.CosineLR(total_epochs=120))
history = resode.fit(
    model,
    X_tr,
    y_tr,
    optimizer=adam,
    epochs=120,
    batch_size=200,
    seed=0,
    validation_data=(X_te, y_te),
    progress=False,
)
print(f"final loss {history['loss'][-1]:.4f}")
print(f"accuracy: train {model.score(X_tr, y_tr):.3f}, test {model.score(X_te, y_te):.3f}")

# %%
# The points flowing through time
# -------------------------------
# Each frame is a time of the flow; the last one shows the readout's separating plane.
gif = plot.trajectories(model, X_tr, y_tr, out / "trajectories.gif", max_points=200)
print(f"wrote {gif.name}")

# %%
# The decision boundary and the training curves
# ---------------------------------------------
boundary = plot.decision_boundary(model, X_tr, y_tr, X_te, y_te, path=out / "decision_boundary.png")
curves = plot.history(history, out / "history.png")
print(f"wrote {boundary.name} and {curves.name}")

# %%
# The controls and the states along the flow
# ------------------------------------------
controls = plot.controls(model, out / "controls.png")
norms = plot.state_norm(model, X_tr, out / "state_norm.png", y=y_tr)
print(f"wrote {controls.name} and {norms.name}")

# %%
# The model file
# --------------
# One ``.npz`` file (no pickle); :func:`resode.load` reads it back, and ``resode predict``
# applies it to new data from the command line.
model.save(out / "model.npz")
same = resode.load(out / "model.npz")
print(f"reloaded: test accuracy {same.score(X_te, y_te):.3f}")
