"""
Your own CSV file
=================

Train a classifier on a CSV file of your own: a header row, an ``id`` column to leave out, two
feature columns and the class as text in the last column. The first part reads the file with
:func:`resode.datasets.load` and trains in Python; the second does the same with the command
line, ``resode train --data`` and ``resode predict``, which standardise the features, map the
text labels to classes and write them back.

Run it with ``python examples/your_own_csv.py [OUT_FOLDER]``.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import resode
from resode import datasets, optim, plot

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/your-own-csv")
out.mkdir(parents=True, exist_ok=True)

# %%
# A CSV file
# ----------
# Three kinds of flower, 150 of each, measured by two lengths (in cm): a made-up table in the
# shape of many real ones.
rng = np.random.default_rng(0)
centres = {"setosa": (1.5, 0.3), "versicolor": (4.3, 1.3), "virginica": (5.5, 2.0)}
rows = []
for name, (length, width) in centres.items():
    for _ in range(150):
        rows.append((length + 0.45 * rng.normal(), width + 0.25 * rng.normal(), name))
rng.shuffle(rows)
csv_path = out / "flowers.csv"
with open(csv_path, "w", encoding="utf-8") as f:
    f.write("id,petal_length,petal_width,species\n")
    for i, (length, width, name) in enumerate(rows):
        f.write(f"{i},{length:.2f},{width:.2f},{name}\n")
print(csv_path.read_text(encoding="utf-8").splitlines()[:4])

# %%
# Read it and train in Python
# ---------------------------
# ``any_labels=True`` accepts text labels; :func:`numpy.unique` maps them to classes 0, 1, 2.
X, species = datasets.load(
    csv_path, target="species", features=["petal_length", "petal_width"], any_labels=True
)
names, y = np.unique(species, return_inverse=True)
mean, std = X.mean(axis=0), X.std(axis=0)
Xs = (X - mean) / std  # resode train does this for you (--scale standard)
X_tr, X_te, y_tr, y_te = datasets.train_test_split(Xs, y, test_size=0.2, seed=0)
model = resode.NeuralODE(
    2, T=2.0, pieces=4, classes=3, field="bottleneck", hidden=16, augment=1, seed=0
)
resode.fit(
    model,
    X_tr,
    y_tr,
    optimizer=optim.Adam(lr=1e-2),
    epochs=100,
    batch_size=60,
    seed=0,
    progress=False,
)
print(f"classes {names.tolist()}; test accuracy {model.score(X_te, y_te):.3f}")
boundary = plot.decision_boundary(model, X_tr, y_tr, X_te, y_te, path=out / "decision_boundary.png")
print(f"wrote {boundary.name}")

# %%
# The same from the command line
# ------------------------------
# ``resode train`` reads the same file, keeps the labels' names in the model file, and
# ``resode predict`` writes them back, with the probabilities of each class.
resode_cli = [sys.executable, "-m", "resode"]
trained = subprocess.run(
    [
        *resode_cli,
        "train",
        "--data",
        str(csv_path),
        "--target",
        "species",
        "--features",
        "petal_length,petal_width",
        "--model",
        "node",
        "--T",
        "2",
        "--pieces",
        "4",
        "--hidden",
        "16",
        "--epochs",
        "100",
        "--batch-size",
        "60",
        "--no-plots",
        "--no-progress",
        "--out",
        str(out / "run"),
    ],
    check=True,
    capture_output=True,
    text=True,
)
print(trained.stdout)
new = out / "new_flowers.csv"
new.write_text("id,petal_length,petal_width\n0,1.4,0.2\n1,4.5,1.4\n2,6.0,2.2\n", encoding="utf-8")
predicted = subprocess.run(
    [*resode_cli, "predict", "--model", str(out / "run"), "--data", str(new)],
    check=True,
    capture_output=True,
    text=True,
)
print(predicted.stdout)
