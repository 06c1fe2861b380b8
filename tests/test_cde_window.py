"""The neural CDE's fixed observation window (``window=(t_start, t_end)``): the K pieces split
it, not the batch's ``[min_i t_{i,0}, max_i T_i]``. The core against the NumPy reference
(1e-10 float64, 1e-4 float32; fixed-step and adaptive methods; windows inside, around and
beside the data), the reference's gradient against central differences, the functional
default (the batch's window), and NeuralCDE: the window fixed at the first data, a sample's
result independent of its batch, ``config``, save/load and bad windows."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode import reference as ref
from resode import reference_cde as rc

sys.path.insert(0, str(Path(__file__).parent))
from test_cde_core import make_params, make_series

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}
# a window inside the data (knots on both sides fall outside it), one around it, one beside it
WINDOWS = [(2.0, 4.0), (-1.0, 9.0), (-3.0, 0.5)]


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def case(dtype: type = np.float64, pieces: int = 3) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    U, _, own = make_series(rng, 5, 7, 2)
    params = make_params(rng, "outside", 3, 2, pieces=pieces, outputs=2)
    return {k: v.astype(dtype) for k, v in params.items()}, U.astype(dtype), own


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_the_core_agrees_with_the_reference_with_a_window(dtype: type, method: str) -> None:
    tol = TOLERANCE[dtype]
    params, U, times = case(dtype)
    flow = {k: v for k, v in params.items() if k not in ("P", "c")}
    y = np.array([0, 1, 1, 0, 1])
    for window, interpolation in itertools.product(WINDOWS, ["linear", "cubic"]):
        kw: dict[str, Any] = dict(
            field="outside", interpolation=interpolation, method=method, window=window
        )
        if method != "dopri5":
            kw["substeps"] = 2
        label = f"{window}, {interpolation}"
        core, oracle = _core.cde_solve(flow, U, times, **kw), ref.cde_solve(flow, U, times, **kw)
        assert relative(core, oracle) <= tol, label
        t = np.array([0.5, 1.5, 3.0, 4.5])
        states = _core.cde_solve(flow, U, times, **kw, t=t)
        assert relative(states, ref.cde_solve(flow, U, times, **kw, t=t)) <= tol, label
        v = np.random.default_rng(1).normal(size=states.shape).astype(dtype)
        grads, dU = _core.cde_vjp(flow, U, times, v, **kw, t=t)
        grads_ref, dU_ref = ref.cde_vjp(flow, U, times, v, **kw, t=t)
        assert relative(dU, dU_ref) <= tol, label
        for name in grads_ref:
            assert relative(grads[name], grads_ref[name]) <= tol, (label, name)
        logits = _core.cde_logits(params, U, times, **kw)
        assert relative(logits, ref.cde_logits(params, U, times, **kw)) <= tol, label
        loss, grads, dU = _core.cde_loss_and_grad(params, U, y, times, **kw, weight_decay=0.01)
        loss_r, grads_r, dU_r = ref.cde_loss_and_grad(params, U, y, times, **kw, weight_decay=0.01)
        assert abs(loss - loss_r) <= tol * abs(loss_r), label
        assert relative(dU, dU_r) <= tol, label
        for name in grads_r:
            assert relative(grads[name], grads_r[name]) <= tol, (label, name)


def test_an_adaptive_method_steps_on_the_window_s_piece_boundaries() -> None:
    params, U, times = case()
    kw: dict[str, Any] = dict(field="outside", method="dopri5", rtol=1e-3, atol=1e-3)
    grids, _ = _core.cde_grids(params, U, times, **kw, window=(2.0, 4.0))
    grids_ref, _ = rc.cde_grids(params, U, times, **kw, window=(2.0, 4.0))
    for g, g_ref in zip(grids, grids_ref):  # the same steps (the controller's round-off apart)
        np.testing.assert_allclose(g, g_ref, rtol=1e-9)
    boundaries = [2.0 + 2.0 / 3.0, 2.0 + 4.0 / 3.0]
    for g in grids:
        inside = [b for b in boundaries if g[0] < b < g[-1]]
        assert all(np.min(np.abs(g - b)) < 1e-12 for b in inside)


def test_the_reference_gradient_with_a_window_matches_central_differences() -> None:
    params, U, times = case(pieces=3)
    y = np.array([0, 1, 1, 0, 1])
    kw: dict[str, Any] = dict(field="outside", method="midpoint", window=(1.0, 3.5))
    _, grads, dU = ref.cde_loss_and_grad(params, U, y, times, **kw)
    eps = 1e-6
    for key in ("W", "b", "A"):
        numeric = np.zeros_like(params[key])
        for idx in np.ndindex(params[key].shape):
            for sign in (1, -1):
                p = {k: v.copy() for k, v in params.items()}
                p[key][idx] += sign * eps
                numeric[idx] += sign * ref.cde_loss_and_grad(p, U, y, times, **kw)[0]
        numeric /= 2 * eps
        assert relative(grads[key], numeric) < 1e-7, key
    for idx in [(0, 1, 0), (1, 3, 1), (3, 6, 0)]:
        f = []
        for sign in (1, -1):
            V = U.copy()
            V[idx] += sign * eps
            f.append(ref.cde_loss_and_grad(params, V, y, times, **kw)[0])
        assert abs(dU[idx] - (f[0] - f[1]) / (2 * eps)) < 1e-7 * max(1.0, np.abs(dU).max())
    # the core's gradient is the reference's (the gradient test of the same map)
    _, grads_core, _ = _core.cde_loss_and_grad(params, U, y, times, **kw)
    assert relative(grads_core["W"], grads["W"]) < 1e-10


def test_every_piece_is_used_and_the_window_changes_the_result() -> None:
    """With pieces = 3 the window matters: a window other than the batch's changes the
    states, and the default (None) is the batch's window exactly."""
    params, U, times = case()
    flow = {k: v for k, v in params.items() if k not in ("P", "c")}
    lengths = resode.models.series_lengths(U)
    ends = times[np.arange(5), lengths - 1]
    batch = (float(times[:, 0].min()), float(ends.max()))
    z = _core.cde_solve(flow, U, times, field="outside")
    np.testing.assert_array_equal(z, _core.cde_solve(flow, U, times, field="outside", window=batch))
    assert relative(_core.cde_solve(flow, U, times, field="outside", window=(2.0, 4.0)), z) > 1e-3


def test_outside_the_window_the_first_and_last_pieces_apply() -> None:
    """A window beside the data (all knots after t_end) is the last piece everywhere: the same
    as a one-piece model with that piece's weights."""
    params, U, times = case()
    flow = {k: v for k, v in params.items() if k not in ("P", "c")}
    last = {**flow, "W": flow["W"][2:], "b": flow["b"][2:]}
    first = {**flow, "W": flow["W"][:1], "b": flow["b"][:1]}
    before = _core.cde_solve(flow, U, times, field="outside", window=(-5.0, -4.0))
    after = _core.cde_solve(flow, U, times, field="outside", window=(50.0, 60.0))
    np.testing.assert_array_equal(before, _core.cde_solve(last, U, times, field="outside"))
    np.testing.assert_array_equal(after, _core.cde_solve(first, U, times, field="outside"))


@pytest.mark.parametrize(
    "window, match",
    [((1.0, 1.0), "t_start < t_end"), ((2.0, 1.0), "t_start < t_end"),
     ((0.0, np.inf), "finite"), ((0.0, 1.0, 2.0), "window")],
)  # fmt: skip
def test_bad_windows_are_refused(window: Any, match: str) -> None:
    params, U, times = case()
    with pytest.raises(ValueError, match=match):
        _core.cde_logits(params, U, times, field="outside", window=window)
    with pytest.raises(ValueError, match=match):
        resode.NeuralCDE(2, 3, pieces=3, window=window)
    with pytest.raises(ValueError, match="window"):
        ref.cde_logits(params, U, times, field="outside", window=window)
    with pytest.raises(ValueError, match=match):
        resode.cdeint({k: params[k] for k in ("A", "a", "W", "b")}, U, times, window=window)


# --------------------------------------------------------------------------- NeuralCDE


def test_a_sample_s_logits_do_not_depend_on_its_batch() -> None:
    _, U, times = case()
    model = resode.NeuralCDE(2, 3, pieces=3, seed=0)
    full = model.forward(U, times)  # fixes the window: the data's
    for rows in ([0], [1, 3], [4, 2]):
        np.testing.assert_allclose(model.forward(U[rows], times[rows]), full[rows], rtol=1e-13)
    # without the fixed window the batch's own would differ (what this feature removes)
    options = {**model.core_options(), "window": None}
    alone = _core.cde_logits(model.params, U[[0, 2]], times[[0, 2]], **options)
    assert relative(alone, full[[0, 2]]) > 1e-6


def test_the_window_is_fixed_by_the_first_data_and_kept() -> None:
    _, U, times = case()
    model = resode.NeuralCDE(2, 3, pieces=3, seed=0)
    assert model.window is None and model.config["window"] is None
    model.loss_and_grad(U[[0, 1]], [0, 1], times[[0, 1]])
    first = model.window
    lengths = resode.models.series_lengths(U[[0, 1]])
    assert first == (times[[0, 1], 0].min(), times[[0, 1]][np.arange(2), lengths - 1].max())
    model.forward(U, times)
    assert model.window == first and model.config["window"] == list(first)
    fitted = resode.NeuralCDE(2, 3, pieces=3, seed=0)
    resode.fit(fitted, U, [0, 1, 1, 0, 1], times=times, epochs=1, batch_size=2, progress=False)
    assert fitted.window == resode.models.series.observation_window(U, times)
    assert resode.NeuralCDE(2, 3, seed=0).window is None  # one piece: no window needed
    one = resode.NeuralCDE(2, 3, seed=0)
    one.forward(U, times)
    assert one.window is None
    given = resode.NeuralCDE(2, 3, pieces=3, window=(0, 10), seed=0)
    given.forward(U, times)
    assert given.window == (0.0, 10.0) and given.core_options()["window"] == (0.0, 10.0)


def test_save_and_load_keep_the_window(tmp_path: Path) -> None:
    _, U, times = case()
    model = resode.NeuralCDE(2, 3, pieces=3, seed=0)
    model.forward(U[:2], times[:2])
    again = resode.load(model.save(tmp_path / "cde.npz"))
    assert again.window == model.window
    np.testing.assert_array_equal(again.forward(U, times), model.forward(U, times))
    rebuilt = resode.NeuralCDE(**model.config)
    assert rebuilt.window == model.window


def test_cdeint_takes_the_model_s_window() -> None:
    _, U, times = case()
    model = resode.NeuralCDE(2, 3, pieces=3, window=(1.0, 3.0), seed=0)
    flow = {k: v for k, v in model.params.items() if k not in ("P", "c")}
    z = resode.cdeint(model, U, times)
    np.testing.assert_array_equal(z, resode.cdeint(flow, U, times, window=(1.0, 3.0)))
    assert relative(resode.cdeint(flow, U, times), z) > 1e-6
    g, dU = resode.cdeint_vjp(model, U, times, np.ones_like(z))
    g_ref, dU_ref = ref.cde_vjp(flow, U, times, np.ones_like(z), field="outside", window=(1, 3))
    assert relative(dU, dU_ref) < 1e-10 and relative(g["W"], g_ref["W"]) < 1e-10
