"""Train a ResNet on the two-moons data set with Adam, full batch: the README's first example.

Run: python examples/quickstart.py
"""

import time

import resode
from resode import datasets, optim

X, y = datasets.moons(1000, noise=0.1, seed=0)
X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.25, seed=0)

model = resode.ResNet(2, layers=20, h=0.25, activation="tanh", augment=1, seed=0)
adam = optim.Adam(lr=0.05)
start = time.perf_counter()
for epoch in range(300):
    loss, grads = model.loss_and_grad(X_train, y_train)
    adam.step(model.params, grads)
    if epoch % 50 == 0:
        print(f"epoch {epoch:4d}  loss {loss:.4f}  train accuracy {model.score(X_train, y_train):.3f}")
print(f"300 steps in {time.perf_counter() - start:.2f} s; "
      f"test accuracy {model.score(X_test, y_test):.3f}")
