r"""
A ResNet trained step by step
=============================

One call into the core per step (forward, loss and backward), the optimiser in between: the
ResNet :math:`x^{k+1} = x^k + h \tanh(W_k x^k + b_k)` with 20 layers, on two moons with one
augmented dimension, trained by Adam on the full batch; then the decision boundary it learnt.
Run it with ``python examples/resnet_step_by_step.py [OUT_FOLDER]``.
"""

import sys
import time
from pathlib import Path

import resode
from resode import datasets, optim, plot

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/resnet-step-by-step")
out.mkdir(parents=True, exist_ok=True)

# %%
# The data and the model
# ----------------------
# Two moons, a quarter held out; 20 layers of step :math:`h = 0.25`.

X, y = datasets.moons(1000, noise=0.1, seed=0)
X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.25, seed=0)

model = resode.ResNet(2, layers=20, h=0.25, activation="tanh", augment=1, seed=0)
adam = optim.Adam(lr=0.05)

# %%
# Training, one step at a time
# ----------------------------
# ``loss_and_grad`` is one call into the core; the optimiser updates the parameters in place.

start = time.perf_counter()
for step in range(300):
    loss, grads = model.loss_and_grad(X_train, y_train)  # forward, loss, backward: one call
    adam.step(model.params, grads)  # updates model.params in place
    if step % 50 == 0:
        accuracy = model.score(X_train, y_train)
        print(f"step {step:4d}  loss {loss:.4f}  train accuracy {accuracy:.3f}")
states = model.trajectory(X_test)  # (layers + 1, N, D): every layer's states
print(
    f"300 steps in {time.perf_counter() - start:.2f} s; states {states.shape}; "
    f"test accuracy {model.score(X_test, y_test):.3f}"
)

# %%
# The decision boundary
# ---------------------
# The probability of class 1 over the plane, with the training and test points.

plot.decision_boundary(model, X_train, y_train, X_test, y_test, path=out / "boundary.png")
