"""The core's neural CDE on wide blocks: samples of unequal lengths share a block, and a sample
that has finished stops computing (only the active columns of the block are evaluated, its state
is carried over); the bottleneck's dW2 is accumulated transposed when its output is narrower
than its hidden layer. Checked against the NumPy reference (1e-10 float64, 1e-4 float32) and
against the same samples run alone."""

from __future__ import annotations

import numpy as np
import pytest
from resode import _core
from resode import reference as ref

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def ragged_series(rng: np.random.Generator, N: int, L: int, C: int) -> np.ndarray:
    """U (N, L, C) whose samples have every length from 2 to L (NaN padding), shuffled."""
    U = rng.normal(size=(N, L, C))
    lengths = 2 + np.arange(N) % (L - 1)
    rng.shuffle(lengths)
    for i, n in enumerate(lengths):
        U[i, n:] = np.nan
    return U


def bottleneck(
    rng: np.random.Generator, S: int, C: int, H: int, classes: int, pieces: int = 2
) -> dict:
    O, K = S * C, pieces
    return {
        "A": 0.5 * rng.normal(size=(S, C)),
        "a": 0.2 * rng.normal(size=S),
        "W1": 0.5 * rng.normal(size=(K, H, S)) / np.sqrt(S),
        "b1": 0.2 * rng.normal(size=(K, H)),
        "W2": 0.5 * rng.normal(size=(K, O, H)) / np.sqrt(H),
        "b2": 0.2 * rng.normal(size=(K, O)),
        "P": rng.normal(size=(classes, S)),
        "c": rng.normal(size=classes),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hidden", [4, 40])  # S*C = 12: dW2 direct, then transposed
@pytest.mark.parametrize("per_sample", [False, True])
def test_ragged_wide_blocks_agree_with_the_reference(
    dtype: type, hidden: int, per_sample: bool
) -> None:
    rng = np.random.default_rng(hidden)
    N, L, S, C = 37, 9, 4, 3
    U = ragged_series(rng, N, L, C).astype(dtype)
    times = np.cumsum(rng.uniform(0.2, 0.6, size=(N, L) if per_sample else L), axis=-1)
    params = {k: v.astype(dtype) for k, v in bottleneck(rng, S, C, hidden, 3).items()}
    y = rng.integers(0, 3, N)
    kw = dict(field="bottleneck", activation="relu", output_activation="tanh")
    tol = TOLERANCE[dtype]
    flow = {k: v for k, v in params.items() if k not in ("P", "c")}
    core, oracle = _core.cde_solve(flow, U, times, **kw), ref.cde_solve(flow, U, times, **kw)
    assert relative(core, oracle) <= tol
    loss, grads, dU = _core.cde_loss_and_grad(params, U, y, times, weight_decay=0.01, **kw)
    loss_ref, grads_ref, dU_ref = ref.cde_loss_and_grad(
        params, U, y, times, weight_decay=0.01, **kw
    )
    assert abs(loss - loss_ref) <= tol * abs(loss_ref)
    assert relative(dU, dU_ref) <= tol
    for name in grads_ref:
        assert relative(grads[name], grads_ref[name]) <= tol, name


@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
def test_a_samples_result_does_not_depend_on_the_lengths_of_its_block(field: str) -> None:
    """Each sample of a ragged batch has the state and the input gradient it has alone (its
    columns compute the same sums whichever others are active). One piece: with more, the
    pieces split the batch's observation window."""
    rng = np.random.default_rng(1)
    N, L, S, C = 20, 8, 3, 2
    U = ragged_series(rng, N, L, C)
    times = np.arange(L, dtype=float)
    params = bottleneck(rng, S, C, 10, 2, pieces=1)
    if field != "bottleneck":
        params = {"A": params["A"], "a": params["a"], "W": 0.3 * rng.normal(size=(1, S * C, S)),
                  "b": 0.1 * rng.normal(size=(1, S * C))}  # fmt: skip
    flow = {k: v for k, v in params.items() if k not in ("P", "c")}
    kw = dict(field=field, activation="tanh")
    states = _core.cde_solve(flow, U, times, **kw)
    cotangent = rng.normal(size=states.shape)
    _, dU = _core.cde_vjp(flow, U, times, cotangent, **kw)
    for i in range(N):
        alone = _core.cde_solve(flow, U[i : i + 1], times, **kw)
        np.testing.assert_allclose(states[i], alone[0], rtol=1e-13, atol=1e-15)
        _, dU_alone = _core.cde_vjp(flow, U[i : i + 1], times, cotangent[i : i + 1], **kw)
        np.testing.assert_allclose(dU[i], dU_alone[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output_activation", [None, "tanh"])
@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
@pytest.mark.parametrize(
    "options",
    [dict(method="rk4"), dict(method="dopri5", rtol=1e-6, atol=1e-8),
     dict(method="rk4", gradient="adjoint")],
)  # fmt: skip
def test_training_without_the_observations_cotangent_gives_the_same_gradient(
    dtype: type, output_activation: str | None, field: str, options: dict
) -> None:
    """``return_dU=False`` skips the path's cotangent (and fuses the output activation's slope
    into the contraction's transpose): the loss and every parameter's gradient are bitwise
    those of the full sweep, whose dU still matches the reference."""
    rng = np.random.default_rng(7)
    N, L, S, C = 19, 7, 3, 2
    U = ragged_series(rng, N, L, C).astype(dtype)
    times = np.cumsum(rng.uniform(0.2, 0.6, size=(N, L)), axis=-1)
    params = bottleneck(rng, S, C, 10, 3)
    if field != "bottleneck":
        params = {"A": params["A"], "a": params["a"], "P": params["P"], "c": params["c"],
                  "W": 0.3 * rng.normal(size=(2, S * C, S)),
                  "b": 0.1 * rng.normal(size=(2, S * C))}  # fmt: skip
    params = {k: v.astype(dtype) for k, v in params.items()}
    y = rng.integers(0, 3, N)
    kw = dict(field=field, activation="tanh", output_activation=output_activation, **options)
    loss, grads, dU = _core.cde_loss_and_grad(params, U, y, times, **kw)
    loss_only, grads_only, none = _core.cde_loss_and_grad(
        params, U, y, times, **kw, return_dU=False
    )
    assert none is None
    assert loss_only == loss
    for name in grads:
        np.testing.assert_array_equal(grads_only[name], grads[name], err_msg=name)
    _, _, dU_ref = ref.cde_loss_and_grad(params, U, y, times, **kw)
    assert relative(dU, dU_ref) <= TOLERANCE[dtype]
