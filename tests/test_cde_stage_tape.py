"""The neural CDE's reverse sweep reads each step's stages (Z_i, F_i and the field's cache; the
bottleneck's hidden units are computed again from Z_i) from the tape its forward sweep wrote; a
block whose stage tape exceeds the per-thread budget recomputes them from the kept states. Both
are the same arithmetic, so the gradients are bitwise the same: the budget is set through
RESODE_CDE_STAGE_TAPE_BYTES (0: every block recomputes; a small budget: only the small blocks
keep a tape)."""

from __future__ import annotations

import numpy as np
import pytest
from resode import _core

Params = dict[str, np.ndarray]
Grads = tuple[float, dict[str, np.ndarray], np.ndarray]
BUDGET = "RESODE_CDE_STAGE_TAPE_BYTES"


def make_problem(
    field: str, dtype: type[np.floating], N: int = 70
) -> tuple[Params, np.ndarray, np.ndarray, np.ndarray]:
    """Parameters (2 pieces, a readout of 3 classes), U (N, 9, 3) with gaps and lengths 4..9,
    per-sample times (N, 9) and labels (N,)."""
    rng = np.random.default_rng(7)
    S, C, H, O = 4, 3, 5, 12
    p: Params = {"A": 0.5 * rng.normal(size=(S, C)), "a": 0.2 * rng.normal(size=S)}
    if field == "bottleneck":
        p |= {"W1": 0.6 * rng.normal(size=(2, H, S)), "b1": 0.2 * rng.normal(size=(2, H))}
        p |= {"W2": 0.5 * rng.normal(size=(2, O, H)), "b2": 0.2 * rng.normal(size=(2, O))}
    else:
        p |= {"W": 0.5 * rng.normal(size=(2, O, S)), "b": 0.2 * rng.normal(size=(2, O))}
    p |= {"P": rng.normal(size=(3, S)), "c": 0.1 * rng.normal(size=3)}
    U = rng.normal(size=(N, 9, C))
    U[0, 2, 0] = np.nan
    for i in range(N):
        U[i, 4 + i % 6 :] = np.nan  # unequal lengths: blocks of different sizes
    own = np.cumsum(rng.uniform(0.3, 1.0, size=(N, 9)), axis=1)
    params = {k: v.astype(dtype) for k, v in p.items()}
    return params, U.astype(dtype), own, rng.integers(0, 3, N)


def loss_and_grad(
    monkeypatch: pytest.MonkeyPatch, budget: str | None, *args: object, **kw: object
) -> Grads:
    if budget is None:
        monkeypatch.delenv(BUDGET, raising=False)
    else:
        monkeypatch.setenv(BUDGET, budget)
    loss, grads, dU = _core.cde_loss_and_grad(*args, **kw)
    return float(loss), grads, dU


def assert_bitwise(a: Grads, b: Grads) -> None:
    assert a[0] == b[0]
    assert set(a[1]) == set(b[1])
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k], strict=True)
    np.testing.assert_array_equal(a[2], b[2], strict=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
@pytest.mark.parametrize("rho", [None, "tanh"])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])  # relu: fused into the products
def test_the_stage_tape_gives_the_recomputed_gradient_bitwise(
    monkeypatch: pytest.MonkeyPatch,
    activation: str,
    method: str,
    rho: str | None,
    field: str,
    dtype: type[np.floating],
) -> None:
    p, U, own, y = make_problem(field, dtype)
    kw = {"field": field, "output_activation": rho, "method": method, "substeps": 2}
    kw |= {"weight_decay": 0.01, "activation": activation}
    taped = loss_and_grad(monkeypatch, None, p, U, y, own, **kw)
    # budgets of about one small block's stage tape: some blocks keep one, the others recompute
    for budget in ("0", "3000", "30000", "300000"):
        assert_bitwise(taped, loss_and_grad(monkeypatch, budget, p, U, y, own, **kw))


@pytest.mark.parametrize("field", ["outside", "bottleneck"])
def test_the_stage_tape_gives_the_recomputed_vjp_at_output_times_bitwise(
    monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    p, U, own, _ = make_problem(field, np.float64, N=40)
    t = np.linspace(own[:, 0].max(), own[:, 3].min(), 5)
    cot = np.random.default_rng(3).normal(size=(5, 40, 4))
    kw = {"field": field, "t": t, "output_activation": "tanh"}
    results = []
    for budget in ("0", None):
        if budget is None:
            monkeypatch.delenv(BUDGET, raising=False)
        else:
            monkeypatch.setenv(BUDGET, budget)
        results.append(_core.cde_vjp(p, U, own, cot, **kw))
    (g1, dU1), (g2, dU2) = results
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], strict=True)
    np.testing.assert_array_equal(dU1, dU2, strict=True)


def test_an_adaptive_runs_discrete_gradient_is_the_same_with_the_stage_tape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p, U, own, y = make_problem("bottleneck", np.float64, N=30)
    kw = {"field": "bottleneck", "method": "dopri5", "rtol": 1e-5, "atol": 1e-7}
    taped = loss_and_grad(monkeypatch, None, p, U, y, own, **kw)
    recomputed = loss_and_grad(monkeypatch, "0", p, U, y, own, **kw)
    assert_bitwise(taped, recomputed)
