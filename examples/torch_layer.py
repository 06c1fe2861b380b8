"""
A PyTorch model with a resode layer
===================================

:class:`resode.torch.NeuralODE` is an ``nn.Module``: its field parameters are
``nn.Parameter``\\ s, its forward pass is resode's flow and its backward pass resode's exact
discrete gradient, so it sits between ordinary PyTorch layers and trains with ``torch.optim``.
Here a neural ODE with one augmented dimension separates two interleaved spirals, and a
``Linear`` layer reads the final state out.

Run it with ``python examples/torch_layer.py [OUT_FOLDER]`` (needs PyTorch: ``pip install torch``).
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; sphinx-gallery shows them
import matplotlib.pyplot as plt
import numpy as np
import resode
import resode.torch
import torch

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/torch-layer")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
# Layers this small gain nothing from threads, and on a busy machine torch's and resode's
# OpenMP threads slow each other down (the guide's performance page): one thread each, the
# counts restored at the end.
saved_threads = torch.get_num_threads(), resode.get_num_threads()
torch.set_num_threads(1)
resode.set_num_threads(1)

# %%
# The model: a resode flow between PyTorch layers
# -----------------------------------------------
X_np, y_np = resode.datasets.spirals(600, seed=0)
X, y = torch.tensor(X_np), torch.tensor(y_np)
flow = resode.torch.NeuralODE(
    2, T=3.0, pieces=6, field="bottleneck", hidden=24, augment=1, activation="tanh", seed=0
)
model = torch.nn.Sequential(flow, torch.nn.Linear(3, 2, dtype=torch.float64))  # x(T) -> logits
print(model)
print({name: tuple(p.shape) for name, p in flow.named_parameters()})

# %%
# Training with torch.optim
# -------------------------
opt = torch.optim.Adam(model.parameters(), lr=2e-2)
losses = []
for _ in range(150):  # epochs
    for idx in torch.randperm(len(X)).split(200):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X[idx]), y[idx])
        loss.backward()  # through resode's reverse sweep
        opt.step()
    losses.append(loss.item())
with torch.no_grad():
    accuracy = (model(X).argmax(dim=1) == y).double().mean().item()
print(f"final loss {losses[-1]:.4f}, training accuracy {accuracy:.3f}")

# %%
# Back to resode
# --------------
# ``to_resode`` makes a :class:`resode.NeuralODE` with the trained field and readout, for
# resode's own plots and model files.
linear = model[1]
node = flow.to_resode(P=linear.weight.detach().numpy(), c=linear.bias.detach().numpy())
print(f"the same model in resode: accuracy {node.score(X_np, y_np):.3f}")

# %%
# The decision regions and the training curve
# -------------------------------------------
xx, yy = np.meshgrid(np.linspace(-1.6, 1.6, 150), np.linspace(-1.6, 1.6, 150))
grid = torch.tensor(np.column_stack([xx.ravel(), yy.ravel()]))
with torch.no_grad():
    p1 = torch.softmax(model(grid), dim=1)[:, 1].numpy().reshape(xx.shape)
fig, (ax_regions, ax_loss) = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
ax_regions.contourf(xx, yy, p1, levels=20, cmap="RdBu_r", alpha=0.8)
ax_regions.scatter(
    X_np[:, 0], X_np[:, 1], c=y_np, cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.3
)
ax_regions.set(title=f"P(class 1), accuracy {accuracy:.3f}", aspect="equal")
ax_loss.semilogy(losses)
ax_loss.set(title="loss of the last batch of each epoch", xlabel="epoch", ylabel="cross-entropy")
fig.savefig(out / "torch_layer.png", dpi=100)
plt.close(fig)
torch.set_num_threads(saved_threads[0])
resode.set_num_threads(saved_threads[1])
