"""One training step (loss_and_grad) of a ResNet: L = 100 layers, outside field, tanh,
N = 1000 samples, D in {2, 16, 64}; resode and the NumPy reference in the same group."""

from __future__ import annotations

import numpy as np
import pytest
import resode
from resode import reference as ref

LAYERS, N = 100, 1000


@pytest.mark.parametrize("impl", ["resode", "resode-2-threads", "reference", "reference-2-threads"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("D", [2, 16, 64])
def test_resnet_step(benchmark, run, threads, D, dtype, impl):
    benchmark.group = f"resnet L={LAYERS} N={N} D={D} {dtype}"
    benchmark.extra_info["gflop"] = 3 * 2 * N * D * D * LAYERS / 1e9
    model = resode.ResNet(D, LAYERS, h=0.1, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)).astype(dtype)
    y = rng.integers(0, 2, N)
    if impl.startswith("resode"):
        threads(2 if impl.endswith("threads") else 1)
        run(lambda: model.loss_and_grad(X, y))
    else:
        threads(2 if impl.endswith("threads") else 1)
        kw = {"field": "outside", "activation": "tanh", "h": 0.1}
        run(lambda: ref.resnet_loss_and_grad(model.params, X, y, **kw), slow=D >= 16)
