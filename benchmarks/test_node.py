"""One training step (loss_and_grad) of a neural ODE: the seed's experiment (dim 2 + 1
augmented, bottleneck hidden 50, relu, T = 5, 16 pieces, rk4) and a wide model (D = 256,
outside tanh, 4 pieces x 5 substeps, N = 1024); resode and the NumPy reference per group."""

from __future__ import annotations

import numpy as np
import pytest
import resode
from resode import reference as ref
from resode.bench import SEED_NODE

SEED = SEED_NODE  # the seed experiment (dim 2), as in `resode bench`
WIDE = {"T": 1.0, "pieces": 4, "substeps": 5, "field": "outside", "activation": "tanh"}


def _data(N, dim, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, dim)).astype(dtype)
    return X, (np.linalg.norm(X, axis=1) > 1.2).astype(np.int64)


def _reference_kwargs(model):
    return {
        "T": model.T,
        "substeps": model.substeps,
        "method": model.method,
        "field": model.field,
        "activation": model.activation,
        "augment": model.augment,
        "gradient": model.gradient,
    }


@pytest.mark.parametrize("impl", ["resode", "resode-2-threads", "reference", "reference-2-threads"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("N", [2, 150, 1000])
def test_seed_node_step(benchmark, run, threads, N, gradient, dtype, impl):
    benchmark.group = f"seed NODE N={N} {gradient} {dtype}"
    model = resode.NeuralODE(2, **SEED, gradient=gradient, dtype=dtype, seed=0)
    X, y = _data(N, 2, dtype)
    if impl.startswith("resode"):
        threads(2 if impl.endswith("threads") else 1)
        run(lambda: model.loss_and_grad(X, y))
    else:
        threads(2 if impl.endswith("threads") else 1)
        kw = _reference_kwargs(model)
        run(lambda: ref.node_loss_and_grad(model.params, X, y, **kw))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("N", [1, 2, 8])
def test_seed_node_step_small_batch(benchmark, run, N, dtype):
    """The seed's step at the batch sizes of per-sample work and online control (one SIMD
    vector of samples: overhead-bound), resode on one thread."""
    benchmark.group = f"seed NODE small batch N={N} {dtype}"
    model = resode.NeuralODE(2, **SEED, dtype=dtype, seed=0)
    X, y = _data(N, 2, dtype)
    run(lambda: model.loss_and_grad(X, y))


@pytest.mark.parametrize("impl", ["resode", "resode-2-threads", "reference", "reference-2-threads"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_node_step(benchmark, run, threads, dtype, impl):
    D, N = 256, 1024
    benchmark.group = f"wide NODE D={D} N={N} 20 rk4 steps {dtype}"
    benchmark.extra_info["gflop"] = 3 * 2 * N * D * D * 20 * 4 / 1e9
    model = resode.NeuralODE(D, **WIDE, dtype=dtype, seed=0)
    X, y = _data(N, D, dtype)
    if impl.startswith("resode"):
        threads(2 if impl.endswith("threads") else 1)
        run(lambda: model.loss_and_grad(X, y), slow=True)
    else:
        threads(2 if impl.endswith("threads") else 1)
        kw = _reference_kwargs(model)
        run(lambda: ref.node_loss_and_grad(model.params, X, y, **kw), slow=True)
