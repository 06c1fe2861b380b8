"""The core's neural CDE (``resode._core.cde_*``): the forward map against a plain NumPy
transcription of the contract (one sample at a time), the exact discrete gradient against
central differences for every parameter and for U, float32 against float64, the order of rk4,
memory layouts, thread counts and the errors on bad input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from resode import _core

Params = dict[str, np.ndarray]

FIELDS = ("outside", "inside", "bottleneck")
METHODS = ("euler", "midpoint", "rk4")
TABLEAUX: dict[str, tuple[list[list[float]], list[float]]] = {
    "euler": ([[]], [1.0]),
    "midpoint": ([[], [0.5]], [0.0, 1.0]),
    "rk4": ([[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 2 / 6, 2 / 6, 1 / 6]),
}
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0),
    "identity": lambda x: x,
}


def make_params(
    rng: np.random.Generator,
    field: str,
    S: int,
    C: int,
    *,
    pieces: int = 1,
    hidden: int = 3,
    outputs: int = 0,
) -> Params:
    """Random parameters of a CDE with state S, channels C (and a readout of `outputs` rows)."""
    O = S * C
    p: Params = {"A": 0.5 * rng.normal(size=(S, C)), "a": 0.2 * rng.normal(size=S)}
    if field == "bottleneck":
        p["W1"] = 0.6 * rng.normal(size=(pieces, hidden, S))
        p["b1"] = 0.2 * rng.normal(size=(pieces, hidden))
        p["W2"] = 0.5 * rng.normal(size=(pieces, O, hidden))
        p["b2"] = 0.2 * rng.normal(size=(pieces, O))
    else:
        p["W"] = 0.5 * rng.normal(size=(pieces, O, S))
        p["b"] = 0.2 * rng.normal(size=(pieces, O))
    if outputs:
        p["P"] = rng.normal(size=(outputs, S))
        p["c"] = 0.1 * rng.normal(size=outputs)
    return p


def make_series(
    rng: np.random.Generator, N: int, L: int, C: int, *, gaps: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (N, L, C) with missing values inside and unequal lengths (NaN padding), shared times
    (L,) and per-sample times (N, L), both irregular."""
    U = rng.normal(size=(N, L, C))
    if gaps:
        U[0, 2, 0] = np.nan  # a gap inside a series
        U[1, 0, C - 1] = np.nan  # missing at the start: takes the first observed value
        U[1, L - 2 :, :] = np.nan  # a shorter sample
        if N > 2:
            U[2, L - 1, 0] = np.nan  # the last row observed in one channel only
            U[2, L - 3, 0] = np.nan
    times = np.cumsum(rng.uniform(0.3, 1.0, size=L))
    own = np.cumsum(rng.uniform(0.3, 1.0, size=(N, L)), axis=1) + rng.uniform(-0.5, 0.5, (N, 1))
    return U, times, own


def hermite_slope(x: np.ndarray, t: np.ndarray, k: int, tau: float) -> np.ndarray:
    """dX/dt of the Hermite cubic with backward differences on [t_k, t_k+1], from its basis."""
    d = np.diff(x, axis=0) / np.diff(t)[:, None]
    m0 = d[k - 1] if k > 0 else d[0]
    m1 = d[k]
    dt = t[k + 1] - t[k]
    u = (tau - t[k]) / dt
    h00, h10 = 6 * u * u - 6 * u, 3 * u * u - 4 * u + 1
    h01, h11 = -6 * u * u + 6 * u, 3 * u * u - 2 * u
    return (h00 * x[k] + h10 * dt * m0 + h01 * x[k + 1] + h11 * dt * m1) / dt


def numpy_solve(
    p: Params,
    U: np.ndarray,
    times: np.ndarray,
    *,
    field: str,
    activation: str = "tanh",
    output_activation: str | None = None,
    interpolation: str = "cubic",
    method: str = "rk4",
    substeps: int = 1,
    t: np.ndarray | None = None,
) -> np.ndarray:
    N, L, C = U.shape
    S = p["A"].shape[0]
    sigma = ACTIVATIONS[activation]
    rho = ACTIVATIONS[output_activation or "identity"]
    K = p["W1" if field == "bottleneck" else "W"].shape[0]
    tt = np.broadcast_to(times, (N, L))
    observed = ~np.all(np.isnan(U), axis=2)
    lengths = [1 + int(np.nonzero(observed[i])[0].max()) for i in range(N)]
    t_lo = min(tt[i, 0] for i in range(N))
    t_hi = max(tt[i, lengths[i] - 1] for i in range(N))
    bounds = [t_lo + j * (t_hi - t_lo) / K for j in range(1, K)]
    a_tab, b_tab = TABLEAUX[method]
    out_t = [] if t is None else list(t)
    final = np.empty((N, S))
    at_t = np.empty((len(out_t), N, S))

    def field_value(piece: int, z: np.ndarray) -> np.ndarray:
        if field == "outside":
            f = sigma(p["W"][piece] @ z + p["b"][piece])
        elif field == "inside":
            f = p["W"][piece] @ sigma(z) + p["b"][piece]
        else:
            f = p["W2"][piece] @ sigma(p["W1"][piece] @ z + p["b1"][piece]) + p["b2"][piece]
        return rho(f).reshape(S, C)

    for i in range(N):
        ti = tt[i, : lengths[i]]
        x = np.empty((lengths[i], C))
        for c in range(C):
            seen = ~np.isnan(U[i, : lengths[i], c])
            x[:, c] = np.interp(ti, ti[seen], U[i, : lengths[i], c][seen])
        breaks = sorted(set(ti) | {b for b in bounds + out_t if ti[0] < b < ti[-1]})
        z = p["A"] @ x[0] + p["a"]
        states = {breaks[0]: z}
        for lo, hi in zip(breaks[:-1], breaks[1:], strict=True):
            k = int(np.searchsorted(ti, lo, side="right")) - 1
            h = (hi - lo) / substeps
            for j in range(substeps):
                tau = lo + j * h
                piece = sum(b <= tau + h / 2 for b in bounds)
                ks: list[np.ndarray] = []
                for s in range(len(b_tab)):
                    zs = z + h * sum((a * kk for a, kk in zip(a_tab[s], ks, strict=False)), 0 * z)
                    node = tau + sum(a_tab[s]) * h
                    if interpolation == "linear":
                        dx = (x[k + 1] - x[k]) / (ti[k + 1] - ti[k])
                    else:
                        dx = hermite_slope(x, ti, k, node)
                    ks.append(field_value(piece, zs) @ dx)
                z = z + h * sum(b * kk for b, kk in zip(b_tab, ks, strict=True))
            states[hi] = z
        final[i] = z
        for r, tr in enumerate(out_t):
            at_t[r, i] = states[breaks[0]] if tr <= ti[0] else z if tr >= ti[-1] else states[tr]
    return final if t is None else at_t


def options(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"field": "outside"}
    base.update(kw)
    return base


# ---------------------------------------------------------------------------------------------
# the forward map


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("method", METHODS)
def test_solve_matches_the_contract(field: str, interpolation: str, method: str) -> None:
    rng = np.random.default_rng(0)
    U, times, _ = make_series(rng, 4, 6, 2)
    p = make_params(rng, field, 3, 2, pieces=2)
    kw = options(
        field=field,
        interpolation=interpolation,
        method=method,
        substeps=2,
        output_activation="tanh" if field == "inside" else None,
    )
    got = _core.cde_solve(p, U, times, **kw)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, numpy_solve(p, U, times, **kw), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("field", FIELDS)
def test_per_sample_times_and_output_times_match_the_contract(field: str) -> None:
    rng = np.random.default_rng(1)
    U, _, own = make_series(rng, 3, 7, 2)
    p = make_params(rng, field, 2, 2, pieces=3)
    t_lo, t_hi = own[:, 0].min(), max(own[0, -1], own[1, -3], own[2, -1])
    inside = rng.uniform(t_lo, t_hi, 5)
    t = np.unique(np.concatenate([[t_lo], inside, [own[0, 3], own[2, 1], t_hi]]))  # sorted
    kw = options(field=field, activation="sigmoid", output_activation="tanh", t=t)
    got = _core.cde_solve(p, U, own, **kw)
    assert got.shape == (len(t), 3, 2)
    np.testing.assert_allclose(got, numpy_solve(p, U, own, **kw), rtol=1e-12, atol=1e-13)
    # without t the grid has no extra breakpoints (z(T_i) differs from got[-1] by the steps)
    kw.pop("t")
    np.testing.assert_allclose(
        _core.cde_solve(p, U, own, **kw), numpy_solve(p, U, own, **kw), rtol=1e-12, atol=1e-13
    )


@pytest.mark.parametrize("pieces", [1, 2])
def test_samples_on_their_own_grids_share_blocks(pieces: int) -> None:
    # 40 samples with their own times and lengths 3..8 run in lockstep blocks: shorter grids idle
    rng = np.random.default_rng(13)
    N, L = 40, 8
    U = rng.normal(size=(N, L, 2))
    for i in range(N):
        U[i, 3 + i % 6 :] = np.nan
    U[5, 1, 1] = np.nan
    own = np.cumsum(rng.uniform(0.2, 1.0, size=(N, L)), axis=1)
    own[7, 5:] = np.nan  # per-sample times on padding rows are ignored
    p = make_params(rng, "outside", 3, 2, pieces=pieces)
    t = np.linspace(own[:, 0].min(), max(own[i, 2 + i % 6] for i in range(N)), 5)
    kw = options(substeps=2, t=t, interpolation="linear")
    np.testing.assert_allclose(
        _core.cde_solve(p, U, own, **kw), numpy_solve(p, U, own, **kw), rtol=1e-12, atol=1e-13
    )
    cot = rng.normal(size=(5, N, 3))

    def value() -> float:
        return float(np.sum(cot * _core.cde_solve(p, U, own, **kw)))

    grads, dU = _core.cde_vjp(p, U, own, cot, **kw)
    check_gradients(rng, p, U, value, grads, dU)
    assert np.all(dU[np.isnan(U)] == 0)


def test_logits_are_the_final_states_read_out() -> None:
    rng = np.random.default_rng(2)
    U, times, _ = make_series(rng, 5, 5, 3)
    p = make_params(rng, "outside", 4, 3, outputs=3)
    z = _core.cde_solve(p, U, times, field="outside")
    logits = _core.cde_logits(p, U, times, field="outside")
    np.testing.assert_allclose(logits, z @ p["P"].T + p["c"], rtol=1e-12, atol=1e-13)


def test_identical_per_sample_times_give_the_shared_times_result_bitwise() -> None:
    rng = np.random.default_rng(3)
    U, times, _ = make_series(rng, 40, 6, 2)
    p = make_params(rng, "outside", 3, 2, pieces=2)
    shared = _core.cde_solve(p, U, times, field="outside")
    own = _core.cde_solve(p, U, np.tile(times, (40, 1)), field="outside")
    np.testing.assert_array_equal(shared, own)


def test_fortran_and_c_order_give_identical_results() -> None:
    rng = np.random.default_rng(4)
    U, times, own = make_series(rng, 5, 6, 3)
    p = make_params(rng, "bottleneck", 3, 3, pieces=2)
    cot = rng.normal(size=(5, 3))
    kw = options(field="bottleneck")
    fp = {k: np.asfortranarray(v) for k, v in p.items()}
    for tm in (times, own):
        np.testing.assert_array_equal(
            _core.cde_solve(p, U, tm, **kw), _core.cde_solve(fp, np.asfortranarray(U), tm, **kw)
        )
        g, dU = _core.cde_vjp(p, U, tm, cot, **kw)
        gf, dUf = _core.cde_vjp(
            fp, np.asfortranarray(U), np.asfortranarray(tm), np.asfortranarray(cot), **kw
        )
        np.testing.assert_array_equal(dU, dUf)
        for k in g:
            np.testing.assert_array_equal(g[k], gf[k])


def test_results_do_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(5)
    U, times, _ = make_series(rng, 600, 5, 2)
    p = make_params(rng, "outside", 8, 2, outputs=2)
    y = rng.integers(0, 2, 600)
    before = _core.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            _core.set_num_threads(n)
            results.append(_core.cde_loss_and_grad(p, U, y, times, field="outside"))
    finally:
        _core.set_num_threads(before)
    (l1, g1, dU1), (l2, g2, dU2) = results
    assert l1 == l2
    np.testing.assert_array_equal(dU1, dU2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


def test_float32_agrees_with_float64() -> None:
    rng = np.random.default_rng(6)
    U, times, _ = make_series(rng, 4, 6, 2)
    p = make_params(rng, "bottleneck", 3, 2, pieces=2, outputs=2)
    y = rng.integers(0, 2, 4)
    kw = options(field="bottleneck", substeps=2)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    U32 = U.astype(np.float32)
    z64, z32 = _core.cde_solve(p, U, times, **kw), _core.cde_solve(p32, U32, times, **kw)
    assert z32.dtype == np.float32
    np.testing.assert_allclose(z32, z64, rtol=1e-4, atol=1e-5)
    l64, g64, dU64 = _core.cde_loss_and_grad(p, U, y, times, **kw)
    l32, g32, dU32 = _core.cde_loss_and_grad(p32, U32, y, times.astype(np.float32), **kw)
    assert l32 == pytest.approx(l64, rel=1e-4)
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dU32, dU64, rtol=1e-4, atol=1e-5)


def test_rk4_converges_with_order_4_in_substeps_on_a_smooth_path() -> None:
    rng = np.random.default_rng(7)
    L = 6
    times = np.cumsum(rng.uniform(0.5, 1.0, size=L))
    U = np.stack([np.sin(times), np.cos(0.7 * times)], axis=1)[None]
    p = make_params(rng, "outside", 3, 2)

    def solve(m: int) -> np.ndarray:
        return _core.cde_solve(p, U, times, field="outside", substeps=m)

    exact = solve(1024)
    errors = [np.abs(solve(m) - exact).max() for m in (2, 4, 8, 16)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 3.7) & (orders < 4.3)), orders


# ---------------------------------------------------------------------------------------------
# gradients


def central_differences(
    f: Callable[[], float], array: np.ndarray, indices: list[tuple[int, ...]], eps: float = 1e-6
) -> np.ndarray:
    """(f(x + eps e_i) - f(x - eps e_i)) / (2 eps) for each index i, changing `array` in place."""
    out = []
    for i in indices:
        keep = array[i]
        array[i] = keep + eps
        up = f()
        array[i] = keep - eps
        down = f()
        array[i] = keep
        out.append((up - down) / (2 * eps))
    return np.array(out)


def some_indices(rng: np.random.Generator, a: np.ndarray, count: int = 6) -> list[tuple[int, ...]]:
    """Up to `count` random indices of a's finite entries."""
    finite = np.argwhere(np.isfinite(a))
    pick = rng.choice(len(finite), size=min(count, len(finite)), replace=False)
    return [tuple(int(v) for v in finite[j]) for j in pick]


def check_gradients(
    rng: np.random.Generator,
    p: Params,
    U: np.ndarray,
    value: Callable[[], float],
    grads: Params,
    dU: np.ndarray,
) -> None:
    for key, g in grads.items():
        idx = some_indices(rng, p[key])
        expected = central_differences(value, p[key], idx)
        np.testing.assert_allclose([g[i] for i in idx], expected, rtol=1e-6, atol=1e-8, err_msg=key)
    idx = some_indices(rng, U, 10)
    expected = central_differences(value, U, idx)
    np.testing.assert_allclose([dU[i] for i in idx], expected, rtol=1e-6, atol=1e-8, err_msg="U")
    assert np.all(dU[np.isnan(U)] == 0)


VJP_CASES = [
    (field, interpolation, method)
    for field in FIELDS
    for interpolation in ("linear", "cubic")
    for method in METHODS
]


@pytest.mark.parametrize(("field", "interpolation", "method"), VJP_CASES)
def test_vjp_matches_central_differences(field: str, interpolation: str, method: str) -> None:
    rng = np.random.default_rng(8)
    U, times, own = make_series(rng, 3, 6, 2)
    p = make_params(rng, field, 3, 2, pieces=2)
    per_sample = method == "midpoint"
    tm = own if per_sample else times
    kw = options(
        field=field,
        interpolation=interpolation,
        method=method,
        substeps=2,
        output_activation="tanh" if method != "euler" else None,
    )
    cot = rng.normal(size=(3, 3))

    def value() -> float:
        return float(np.sum(cot * _core.cde_solve(p, U, tm, **kw)))

    grads, dU = _core.cde_vjp(p, U, tm, cot, **kw)
    assert set(grads) == set(p) and dU.shape == U.shape
    check_gradients(rng, p, U, value, grads, dU)


@pytest.mark.parametrize("field", FIELDS)
def test_vjp_of_the_states_at_output_times(field: str) -> None:
    rng = np.random.default_rng(9)
    U, _, own = make_series(rng, 3, 6, 2)
    p = make_params(rng, field, 2, 2, pieces=2)
    t_lo, t_hi = own[:, 0].min(), max(own[0, -1], own[1, -3], own[2, -1])
    t = np.concatenate([[t_lo], np.sort(rng.uniform(t_lo, t_hi, 4)), [t_hi]])
    kw = options(field=field, t=t, substeps=2, activation="sigmoid")
    cot = rng.normal(size=(len(t), 3, 2))

    def value() -> float:
        return float(np.sum(cot * _core.cde_solve(p, U, own, **kw)))

    grads, dU = _core.cde_vjp(p, U, own, cot, **kw)
    check_gradients(rng, p, U, value, grads, dU)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_loss_and_grad_matches_central_differences(loss: str) -> None:
    rng = np.random.default_rng(10)
    U, times, _ = make_series(rng, 4, 5, 2)
    p = make_params(rng, "bottleneck", 3, 2, pieces=2, outputs=3)
    y = rng.integers(0, 3, 4) if loss == "cross_entropy" else rng.normal(size=(4, 3))
    kw = options(field="bottleneck", loss=loss, weight_decay=0.01, output_activation="tanh")

    def value() -> float:
        return float(_core.cde_loss_and_grad(p, U, y, times, **kw)[0])

    loss_value, grads, dU = _core.cde_loss_and_grad(p, U, y, times, **kw)
    assert set(grads) == set(p)
    z = _core.cde_logits(p, U, times, field="bottleneck", output_activation="tanh")
    if loss == "mse":
        data = np.mean((z - y) ** 2)
    else:
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
        data = np.mean(lse - z[np.arange(4), y])
    decay = 0.01 * sum(np.sum(p[k] ** 2) for k in ("W1", "b1", "W2", "b2"))
    assert loss_value == pytest.approx(data + decay, rel=1e-12)
    check_gradients(rng, p, U, value, grads, dU)


def test_grads_are_keyed_exactly_as_params_with_zeros_for_unused_entries() -> None:
    rng = np.random.default_rng(11)
    U, times, _ = make_series(rng, 3, 5, 2)
    p = make_params(rng, "outside", 2, 2, outputs=2)
    p["extra"] = np.ones((2, 3))
    grads, _ = _core.cde_vjp(p, U, times, np.ones((3, 2)), field="outside")
    assert set(grads) == set(p)
    for key in ("P", "c", "extra"):
        assert grads[key].shape == p[key].shape and np.all(grads[key] == 0)
    _, grads, _ = _core.cde_loss_and_grad(p, U, np.array([0, 1, 1]), times, field="outside")
    assert set(grads) == set(p) and np.all(grads["extra"] == 0) and np.any(grads["P"] != 0)


# ---------------------------------------------------------------------------------------------
# errors


def _valid() -> tuple[Params, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    U, times, _ = make_series(rng, 3, 5, 2)
    return make_params(rng, "outside", 2, 2, outputs=2), U, times


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda p, U, t: (p, U[0], t), ValueError, "U must have shape"),
        (lambda p, U, t: (p, np.nan_to_num(U).astype(int), t), TypeError, "U must be a float32"),
        (lambda p, U, t: (p, np.where(U > 1.5, np.inf, U), t), ValueError, "U contains Inf"),
        (lambda p, U, t: (p, U[:, :1], t[:1]), ValueError, "U: sample 0 has 1 observed row"),
        (
            lambda p, U, t: (p, np.concatenate([U[:1] * np.nan, U]), t),
            ValueError,
            "U: sample 0 has no observed value",
        ),
        (
            lambda p, U, t: (p, np.where(np.arange(2) == 1, np.nan, U), t),
            ValueError,
            "U: channel 1 of sample 0 has no observed value",
        ),
        (lambda p, U, t: (p, U, t[::-1].copy()), ValueError, "times must be strictly increasing"),
        (
            lambda p, U, t: (p, U, np.where(np.arange(5) == 2, np.nan, t)),
            ValueError,
            "times must be finite",
        ),
        (lambda p, U, t: (p, U, t[:4]), ValueError, r"times must have shape \(5,\)"),
        (lambda p, U, t: (p, U, np.array(["a"] * 5)), TypeError, "times must be a real"),
        (
            lambda p, U, t: ({**p, "W": p["W"].astype(np.float32)}, U, t),
            TypeError,
            r"params\['W'\] must have dtype float64 like U",
        ),
        (
            lambda p, U, t: ({**p, "W": p["W"][:, :3]}, U, t),
            ValueError,
            r"params\['W'\] must have shape \(\*, 4, 2\)",
        ),
        (
            lambda p, U, t: ({**p, "A": p["A"] * np.nan}, U, t),
            ValueError,
            r"params\['A'\] contains NaN",
        ),
        (
            lambda p, U, t: ({k: v for k, v in p.items() if k != "b"}, U, t),
            ValueError,
            "params must hold 'b'",
        ),
    ],
)
def test_bad_input_names_the_argument(
    change: Callable[[Params, np.ndarray, np.ndarray], tuple[Params, np.ndarray, np.ndarray]],
    error: type[Exception],
    match: str,
) -> None:
    p, U, times = change(*_valid())
    with pytest.raises(error, match=match):
        _core.cde_solve(p, U, times, field="outside")


def test_bad_options_name_the_argument() -> None:
    p, U, times = _valid()
    cases: list[tuple[dict[str, object], str]] = [
        ({"interpolation": "spline"}, "interpolation must be"),
        ({"method": "rk45"}, "method must be"),
        ({"substeps": 0}, "substeps must be >= 1"),
        ({"field": "sideways"}, "field must be"),
        ({"output_activation": "softmax"}, "activation must be"),
        ({"t": np.array([times[0] - 1.0])}, "t must lie within the observation window"),
        ({"t": np.array([times[2], times[1]])}, "t must be strictly increasing"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            _core.cde_solve(p, U, times, **options(**kw))
    with pytest.raises(ValueError, match="cotangent must have the shape"):
        _core.cde_vjp(p, U, times, np.ones((3, 3)), field="outside")
    with pytest.raises(ValueError, match="params must hold 'P'"):
        _core.cde_logits({k: v for k, v in p.items() if k != "P"}, U, times, field="outside")
    with pytest.raises(ValueError, match="y must hold labels in"):
        _core.cde_loss_and_grad(p, U, np.array([0, 1, 2]), times, field="outside")
    with pytest.raises(TypeError, match="y must have dtype float64"):
        _core.cde_loss_and_grad(
            p, U, np.ones((3, 2), np.float32), times, field="outside", loss="mse"
        )
    with pytest.raises(ValueError, match="weight_decay must be"):
        _core.cde_loss_and_grad(
            p, U, np.array([0, 1, 1]), times, field="outside", weight_decay=-1.0
        )


def test_a_non_finite_state_raises_non_finite_error() -> None:
    p, U, times = _valid()
    p["W"] *= 1e200
    p["b"] += 1e300
    with pytest.raises(_core.NonFiniteError, match="non-finite") as info:
        _core.cde_solve(p, U * 1e100, times, field="outside", activation="identity")
    assert info.value.step >= 0
    with pytest.raises(_core.NonFiniteError):
        _core.cde_vjp(p, U * 1e100, times, np.ones((3, 2)), field="outside", activation="identity")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_chunks_near_zero_give_the_bits_of_the_full_form(dtype: type) -> None:
    """The core's tanh takes, for a chunk of 64 entries all in |x| < 0.625, the near-zero branch
    alone (no exponential): with the fused multiply-adds the compilers form in the full tanh on
    this kernel set, so each value is bitwise what the full form gives it (the same entries in
    chunks that hold one large entry take the full form). This suite runs for every kernel set
    and compiler in CI."""
    rng = np.random.default_rng(5)
    edge = np.nextafter(dtype(0.625), dtype(0))
    values = rng.uniform(-edge, edge, 64 * 300).astype(dtype)
    values[1:5] = [edge, -edge, 0.0, -0.0]
    near = _core.activation("tanh", values).reshape(300, 64)
    mixed = values.reshape(300, 64).copy()
    mixed[:, 0] = 3.0  # every chunk now takes the full form
    full = _core.activation("tanh", mixed.ravel()).reshape(300, 64)
    np.testing.assert_array_equal(near[:, 1:], full[:, 1:])
    np.testing.assert_allclose(
        near.ravel(),
        np.tanh(values.astype(np.float64)),
        rtol=4e-7 if dtype == np.float32 else 1e-15,
    )
    with_nan = values[:64].copy()
    with_nan[5] = np.nan
    out = _core.activation("tanh", with_nan)
    assert np.isnan(out[5]) and np.array_equal(np.delete(out, 5), np.delete(near.ravel()[:64], 5))
