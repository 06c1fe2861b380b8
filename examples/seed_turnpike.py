r"""
The seed neural ODE with the turnpike loss
==========================================

The neural ODE :math:`x' = W_2\,\mathrm{relu}(W_1 x + b_1) + b_2` on :math:`[0, 5]`, 16
constant control pieces, RK4, the inputs in the plane augmented with one zero coordinate. The
loss is the time integral of the data loss along the flow (``turnpike=True``), so the points
are pushed to be classified early and to stay so: the readout applied to :math:`x(t)`
classifies well long before the final time. Run it with
``python examples/seed_turnpike.py [OUT_FOLDER]``.
"""

import sys
from pathlib import Path

import numpy as np
import resode
from resode import datasets, optim, plot

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/seed-turnpike")
out.mkdir(parents=True, exist_ok=True)

# %%
# Training
# --------
# chess3 (three classes on a checkerboard), a fifth held out, 200 epochs of Adam with a
# cosine schedule.

X, y = datasets.chess3(1500, seed=0)
X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.2, seed=0)
model = resode.NeuralODE(
    2,
    T=5.0,
    pieces=16,
    method="rk4",
    field="bottleneck",
    hidden=50,
    augment=1,
    activation="relu",
    turnpike=True,
    weight_decay=1e-4,
    seed=0,
)
history = resode.fit(
    model,
    X_train,
    y_train,
    optimizer=optim.Adam(lr=1e-2, schedule=optim.CosineLR(200)),
    epochs=200,
    batch_size=150,
    seed=0,
    validation_data=(X_test, y_test),
    log_every=40,
)
print(f"test accuracy {model.score(X_test, y_test):.3f} after {len(history)} epochs")

# %%
# The turnpike
# ------------
# The accuracy of the readout applied to the state :math:`x(t)` along the flow, and the
# training loss of the readout at each time.

states = model.trajectory(X_test)  # (steps + 1, N, D)
P, c = model.params["P"], model.params["c"]
for j in (0, 4, 8, 16):
    accuracy = np.mean((states[j] @ P.T + c).argmax(axis=1) == y_test)
    print(f"t = {j * model.dt:4.2f}: accuracy of the readout on x(t) {accuracy:.3f}")
plot.loss_along_time(model, X_train, y_train, out / "loss_along_time.png")
model.save(out / "model.npz")
history.to_csv(out / "history.csv")
print(f"wrote {out}/model.npz and history.csv")
