"""
The adaptive solver's steps, sample by sample
=============================================

With ``method="dopri5"`` (or ``tsit5``, ``bosh3``) every sample gets its own steps: the error
of each step is controlled for that sample alone, so a sample's result never depends on the
batch it is in, and easy samples do not pay for hard ones. ``resode.odeint(..., stats=True)``
returns the statistics of a solve: each sample's accepted and rejected steps, its function
evaluations and its grid of accepted times. Steps never cross a boundary between two pieces of
the control: they land on it and restart there.

Run it with ``python examples/adaptive_steps.py [OUT_FOLDER]``.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; sphinx-gallery shows them
import matplotlib.pyplot as plt
import numpy as np
import resode
from resode import datasets, optim

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/adaptive-steps")
out.mkdir(parents=True, exist_ok=True)

# %%
# Train a neural ODE with adaptive steps
# --------------------------------------
# The gradient is the exact gradient of the computed solution on its accepted steps.
X, y = datasets.concentric_spheres(400, seed=0)
model = resode.NeuralODE(
    2,
    T=5.0,
    pieces=8,
    method="dopri5",
    rtol=1e-5,
    atol=1e-7,
    field="bottleneck",
    hidden=16,
    augment=1,
    seed=0,
)
resode.fit(
    model, X, y, optimizer=optim.Adam(lr=1e-2), epochs=40, batch_size=100, seed=0, progress=False
)
print(f"training accuracy {model.score(X, y):.3f}")

# %%
# The steps of every sample
# -------------------------
states, stats = resode.odeint(model, X, stats=True)
steps = stats["accepted_per_sample"]
print(
    f"accepted steps per sample: min {steps.min()}, median {np.median(steps):.0f}, "
    f"max {steps.max()}; rejected in all {stats['rejected']}; "
    f"evaluations {stats['nfev']}"
)

# The same solve with one step sequence for the whole batch (torchdiffeq's behaviour): every
# sample takes the steps that the hardest one needs.
batch_model = resode.NeuralODE(
    2,
    T=5.0,
    pieces=8,
    method="dopri5",
    rtol=1e-5,
    atol=1e-7,
    field="bottleneck",
    hidden=16,
    augment=1,
    step_control="batch",
)
batch_model.params.update({name: p.copy() for name, p in model.params.items()})
_, batch_stats = resode.odeint(batch_model, X, stats=True)
print(
    f"batch control: {batch_stats['accepted_per_sample'][0]} steps for every sample, "
    f"evaluations {batch_stats['nfev']} ({batch_stats['nfev'] / stats['nfev']:.1f}x)"
)

# %%
# Where the hard samples are, and their grids of accepted times
# -------------------------------------------------------------
order = np.argsort(steps, kind="stable")
chosen = order[np.linspace(0, len(order) - 1, 6).astype(int)]  # fewest to most steps
boundaries = np.arange(model.pieces + 1) * model.T / model.pieces

fig = plt.figure(figsize=(10, 8), constrained_layout=True)
top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
axes = [*top.subplots(1, 2), bottom.subplots()]
points = axes[0].scatter(X[:, 0], X[:, 1], c=steps, s=10, cmap="viridis")
axes[0].scatter(X[chosen, 0], X[chosen, 1], s=60, facecolors="none", edgecolors="r")
axes[0].set(title="accepted steps per sample", xlabel="x1", ylabel="x2", aspect="equal")
top.colorbar(points, ax=axes[0])
axes[1].hist(steps, bins=np.arange(steps.min(), steps.max() + 2) - 0.5, color="C0")
axes[1].axvline(batch_stats["accepted_per_sample"][0], color="C3", ls="--", label="batch control")
axes[1].set(title="how many samples take how many steps", xlabel="accepted steps", ylabel="samples")
axes[1].legend()
for row, sample in enumerate(chosen):
    grid = stats["grid"][sample]
    axes[2].plot(grid, np.full_like(grid, row), "|", ms=12, mew=1.5)
for t in boundaries:
    axes[2].axvline(t, color="0.8", lw=0.8, zorder=0)
labels = [f"#{s} ({steps[s]})" for s in chosen]  # sample number (its steps)
axes[2].set(
    title="accepted times (grey: piece boundaries)",
    xlabel="t",
    ylabel="sample",
    yticks=range(len(chosen)),
    yticklabels=labels,
)
fig.savefig(out / "adaptive_steps.png", dpi=100)
plt.close(fig)
