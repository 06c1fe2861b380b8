"""
Regression on your own CSV file
===============================

Write a CSV file, load it, fit a neural ODE, predict. The file has a header and the target in
its first column; :func:`resode.datasets.load` reads it (the same reader as
``resode train --data FILE --target y --loss mse``). Run it with
``python examples/regression_csv.py [OUT_FOLDER]``; it draws the training curves.
"""

import sys
from pathlib import Path

import numpy as np
import resode
from resode import datasets, optim, plot

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/regression-csv")
out.mkdir(parents=True, exist_ok=True)

# Your data: here y = sin(x1) * cos(x2) + noise, 600 rows.
rng = np.random.default_rng(0)
features = rng.uniform(-2.0, 2.0, size=(600, 2))
target = np.sin(features[:, 0]) * np.cos(features[:, 1]) + 0.01 * rng.normal(size=600)
csv_path = out / "data.csv"
np.savetxt(
    csv_path, np.column_stack([target, features]), delimiter=",", header="y,x1,x2", comments=""
)

X, y = datasets.load(csv_path, target="y", task="regression")  # X (600, 2), y (600,)
X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.25, seed=0)
model = resode.NeuralODE(
    2, T=2.0, pieces=8, classes=1, loss="mse", field="bottleneck", hidden=32, augment=1, seed=0
)
history = resode.fit(
    model,
    X_train,
    y_train,
    optimizer=optim.Adam(lr=1e-2, schedule=optim.CosineLR(400)),
    epochs=400,
    batch_size=150,
    seed=0,
    validation_data=(X_test, y_test),
    progress=False,
)
print(f"R^2: train {history.r2[-1]:.4f}, test {model.score(X_test, y_test):.4f}")
predictions = model.predict(X_test)  # (N,): the targets were 1-D
print("first predictions vs targets:", np.round(predictions[:3], 3), np.round(y_test[:3], 3))
plot.history(history, out / "history.png")  # the loss and R^2 per epoch, train and test
