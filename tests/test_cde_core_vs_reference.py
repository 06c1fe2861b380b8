"""The core's neural CDE (``resode._core.cde_*``) against the NumPy reference
(``resode.reference.cde_*``), two independent implementations of one contract: the states, the
VJP (every parameter and ``U``) and the loss with its gradient agree to 1e-10 relative in
float64 and 1e-4 in float32, over the fields, interpolations, methods, output activations,
shared and per-sample times, and output times ``t``."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from resode import _core
from resode import reference as ref

sys.path.insert(0, str(Path(__file__).parent))
from test_cde_core import make_params, make_series

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def series_case(per_sample: bool, with_t: bool, dtype: type) -> tuple:
    rng = np.random.default_rng(0)
    U, times, own = make_series(rng, 5, 7, 3)
    tm = own if per_sample else times
    options: dict = {}
    if with_t:
        tt = np.broadcast_to(tm, (5, 7))
        lo = tt[:, 0].min()
        hi = max(tt[0, -1], tt[1, -3], tt[2, -1], tt[3, -1], tt[4, -1])
        t = np.unique(np.concatenate([[lo], rng.uniform(lo, hi, 4), [tt[0, 3], hi]]))
        options["t"] = t.astype(dtype)
    return rng, U.astype(dtype), tm.astype(dtype), options


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_the_core_agrees_with_the_reference(dtype: type, field: str, interpolation: str) -> None:
    tol = TOLERANCE[dtype]
    for method, rho, per_sample, with_t in itertools.product(
        ["euler", "midpoint", "rk4"], [None, "tanh"], [False, True], [False, True]
    ):
        rng, U, tm, options = series_case(per_sample, with_t, dtype)
        params = make_params(rng, field, 3, 3, pieces=3, outputs=2)
        params = {k: v.astype(dtype) for k, v in params.items()}
        kw = dict(
            field=field,
            interpolation=interpolation,
            method=method,
            output_activation=rho,
            substeps=2,
            **options,
        )
        case = f"{method}, rho={rho}, per-sample times={per_sample}, t={with_t}"
        flow = {k: v for k, v in params.items() if k not in ("P", "c")}
        core, oracle = _core.cde_solve(flow, U, tm, **kw), ref.cde_solve(flow, U, tm, **kw)
        assert relative(core, oracle) <= tol, case
        cotangent = rng.normal(size=core.shape).astype(dtype)
        grads, dU = _core.cde_vjp(flow, U, tm, cotangent, **kw)
        grads_ref, dU_ref = ref.cde_vjp(flow, U, tm, cotangent, **kw)
        assert relative(dU, dU_ref) <= tol, case
        for name in grads_ref:
            assert relative(grads[name], grads_ref[name]) <= tol, (case, name)
        if with_t:
            continue
        y = rng.integers(0, 2, 5)
        loss, grads, dU = _core.cde_loss_and_grad(params, U, y, tm, weight_decay=0.01, **kw)
        loss_ref, grads_ref, dU_ref = ref.cde_loss_and_grad(
            params, U, y, tm, weight_decay=0.01, **kw
        )
        assert abs(loss - loss_ref) <= tol * abs(loss_ref), case
        assert relative(dU, dU_ref) <= tol, case
        for name in grads_ref:
            assert relative(grads[name], grads_ref[name]) <= tol, (case, name)
