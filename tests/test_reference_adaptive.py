"""Tests of the adaptive Runge-Kutta methods of the NumPy reference (docs/guide/adaptive.md).

Only NumPy / SciPy: accuracy against SciPy's DOP853 at tight tolerances, step counts against
SciPy's RK45, observed orders of the tableaux (replay on uniform grids), of the embedded
estimators and of the dense output, the grid's invariants, the discrete gradient against
central finite differences of the replay on the frozen grid, and the step-size failures.
"""

import importlib.util
import math
import pathlib

import numpy as np
import pytest
import scipy.integrate

try:
    from resode import reference as ref
except ImportError:
    _p = pathlib.Path(__file__).resolve().parents[1] / "python" / "resode" / "reference.py"
    _s = importlib.util.spec_from_file_location("resode_reference", _p)
    ref = importlib.util.module_from_spec(_s)
    _s.loader.exec_module(ref)

ADAPTIVE = ("dopri5", "tsit5", "bosh3")
T, K, DIM, AUG = 2.0, 4, 2, 1
D = DIM + AUG
KW = {"T": T, "augment": AUG, "activation": "tanh"}
ORDER = {"euler": 1, "midpoint": 2, "rk4": 4, "bosh3": 3, "dopri5": 5, "tsit5": 5}
NODES = {  # the c_i of each tableau (row sums of A)
    "dopri5": (0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1),
    "tsit5": (0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1),
    "bosh3": (0, 1 / 2, 3 / 4, 1),
}


# --------------------------------------------------------------------------- helpers


def make_params(field="bottleneck", H=6, seed=0, dtype=np.float64):
    """Random field params of scale ~1: non-trivial dynamics on [0, T]."""
    rng = np.random.default_rng(seed)
    if field == "bottleneck":
        shapes = {"W1": (K, H, D), "b1": (K, H), "W2": (K, D, H), "b2": (K, D)}
    else:
        shapes = {"W": (K, D, D), "b": (K, D)}
    params = {key: rng.standard_normal(shape) for key, shape in shapes.items()}
    params["P"] = rng.standard_normal((2, D))
    params["c"] = rng.standard_normal(2)
    return {key: v.astype(dtype) for key, v in params.items()}


def make_X(N=3, seed=1):
    return np.random.default_rng(seed).standard_normal((N, DIM))


def solve(params, X, field="bottleneck", **kw):
    return ref.odeint(params, X, field=field, **KW, **kw)


def scipy_solve(params, X, method="DOP853", tol=1e-13, field="bottleneck", dense=False):
    """SciPy piece by piece per sample: final states (N, D), accepted steps per sample and,
    with ``dense``, the list (per sample) of per-piece dense solutions."""
    bounds = ref._bounds(T, K)
    x0 = np.concatenate([X, np.zeros((len(X), AUG))], axis=1)
    finals, counts, sols = [], [], []
    for x in x0:
        n, pieces = 0, []
        for k in range(K):

            def rhs(_t, y, k=k):
                return ref.field(params, k, y[None], field=field, activation="tanh")[0]

            sol = scipy.integrate.solve_ivp(
                rhs,
                (bounds[k], bounds[k + 1]),
                x,
                method=method,
                rtol=tol,
                atol=tol,
                dense_output=dense,
            )
            x, n = sol.y[:, -1], n + len(sol.t) - 1
            pieces.append(sol.sol)
        finals.append(x)
        counts.append(n)
        sols.append(pieces)
    return np.array(finals), np.array(counts), sols


def scipy_dense(sols, tau):
    """Evaluate the per-piece SciPy dense solutions at times ``tau`` -> (len(tau), N, D)."""
    bounds = ref._bounds(T, K)
    k_of = np.clip(np.searchsorted(bounds, tau, side="right") - 1, 0, K - 1)
    return np.array([[pieces[k](s) for pieces in sols] for s, k in zip(tau, k_of)])


def uniform_grid(m):
    """``m`` equal steps per piece, every piece boundary ``t_k`` exactly on the grid."""
    bounds = ref._bounds(T, K)
    parts = [np.linspace(bounds[k], bounds[k + 1], m + 1)[:-1] for k in range(K)]
    return np.concatenate([*parts, [T]])


def slope(x, y):
    return np.polyfit(np.log(x), np.log(y), 1)[0]


@pytest.fixture(scope="module")
def exact():
    """DOP853 at 1e-13: the model's final states and dense solutions for X = make_X()."""
    params = make_params()
    xT, _, sols = scipy_solve(params, make_X(), dense=True)
    return params, xT, sols


# --------------------------------------------------------------------------- tableaux


@pytest.mark.parametrize("method", ADAPTIVE)
def test_tableau_conditions(method):
    """Row sums are the nodes; b satisfies the order conditions up to min(p, 4) (and the
    bushy one of order 5), b - e up to q; FSAL rows; dense weights interpolate b."""
    tab = ref._EMBEDDED[method]
    s = len(tab.b)
    A = np.zeros((s, s))
    for i, row in enumerate(tab.A):
        A[i, : len(row)] = row
    c = A.sum(axis=1)
    np.testing.assert_allclose(c, NODES[method], atol=1e-14)

    def conditions(w, order):
        conds = [(w.sum(), 1.0), (w @ c, 1 / 2), (w @ c**2, 1 / 3), (w @ A @ c, 1 / 6)]
        conds += [(w @ c**3, 1 / 4), (w @ (c * (A @ c)), 1 / 8)]
        conds += [(w @ A @ c**2, 1 / 12), (w @ A @ A @ c, 1 / 24), (w @ c**4, 1 / 5)]
        n = {1: 1, 2: 2, 3: 4, 4: 8, 5: 9}[order]
        return np.array([a for a, _ in conds[:n]]), np.array([b for _, b in conds[:n]])

    b, e = np.array(tab.b), np.array(tab.e)
    np.testing.assert_allclose(*conditions(b, ORDER[method]), rtol=0, atol=1e-13)
    np.testing.assert_allclose(*conditions(b - e, tab.q), rtol=0, atol=1e-13)
    assert abs(e.sum()) < 1e-14
    assert tab.fsal and tab.A[-1] == tab.b[:-1] and tab.b[-1] == 0.0
    if tab.P is not None:
        np.testing.assert_allclose(ref._dense_weights(tab, 1.0), b, atol=1e-14)
        for theta in (0.25, 0.5, 0.8):
            assert abs(sum(ref._dense_weights(tab, theta)) - theta) < 1e-14


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("method", ADAPTIVE)
def test_accuracy_follows_tolerance(method, exact):
    """The global error falls like the tolerance (log-log slope ~1) and stays near it."""
    params, xT, _ = exact
    tols = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8] + ([] if method == "bosh3" else [1e-9, 1e-10])
    errors = []
    for tol in tols:
        x = solve(params, make_X(), method=method, rtol=tol, atol=tol)
        errors.append(np.abs(x - xT).max())
    errors = np.array(errors)
    assert 0.75 < slope(tols, errors) < 1.25, errors
    # a small factor of the tolerance: measured 0.6..8.4 x tol (Hairer's PI controller aims at
    # an error per step of 0.44 tol, and the global error adds up the steps' errors)
    assert np.all(errors < 10 * np.array(tols)), errors


def test_dopri5_steps_like_scipy_rk45():
    """dopri5's accepted steps are within 30% of SciPy's RK45 (same tableau and norm; Hairer's
    PI controller aims at an error of 0.9^(1/0.13) ~ 0.44, SciPy's I controller at 0.9^5 ~
    0.59): measured 0.93..1.04 for tolerances 1e-4..1e-10."""
    params = make_params()
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        _, st = solve(params, make_X(), method="dopri5", rtol=tol, atol=tol, stats=True)
        _, counts, _ = scipy_solve(params, make_X(), method="RK45", tol=tol)
        ratio = st["accepted"].sum() / counts.sum()
        assert 0.7 < ratio < 1.3, (tol, st["accepted"], counts)


def test_dopri5_step_and_first_step_match_scipy():
    """One dopri5 step, its error estimate and Hairer's first step agree with SciPy's RK45
    (``rk_step``, ``E``, ``select_initial_step``) to round-off."""
    from scipy.integrate._ivp import common, rk

    params = make_params()
    x = np.concatenate([make_X(N=1), np.zeros((1, AUG))], axis=1)
    f = ref._piece_rhs(params, "bottleneck", "tanh")(0)
    tab = ref._EMBEDDED["dopri5"]
    for tol in (1e-3, 1e-6, 1e-9):
        h = float(ref._first_step(f, x, tab.q, tol, tol)[0])
        h_scipy = common.select_initial_step(
            lambda _t, y: f(y[None])[0], 0.0, x[0], np.inf, np.inf, f(x)[0], 1, 4, tol, tol
        )
        assert h == pytest.approx(h_scipy, rel=1e-12)
    dt = 0.1
    ks, x_new = ref._embedded_step(f, x, dt, tab, None)
    K = np.zeros((7, D))
    y_new, _ = rk.rk_step(
        lambda _t, y: f(y[None])[0], 0.0, x[0], f(x)[0], dt, rk.RK45.A, rk.RK45.B, rk.RK45.C, K
    )
    np.testing.assert_allclose(x_new[0], y_new, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(
        -ref._combine(tab.e, ks, dt, x.dtype)[0], dt * K.T @ rk.RK45.E, rtol=1e-12, atol=1e-17
    )


# --------------------------------------------------------------------------- orders


@pytest.mark.parametrize("method", [*ADAPTIVE, "euler", "midpoint", "rk4"])
def test_replay_order(method, exact):
    """Replay on uniform grids (m steps per piece) converges with the tableau's order (the
    5th-order pairs approach 5 from above: 5.65 / 5.86 at m = 8 -> 16, 5.47 / 5.71 at
    16 -> 32)."""
    params, xT, _ = exact
    ms = {"euler": (64, 128), "midpoint": (32, 64), "dopri5": (16, 32), "tsit5": (16, 32)}
    ms = ms.get(method, (8, 16))
    errors = [
        np.abs(solve(params, make_X(), method=method, grid=uniform_grid(m)) - xT).max() for m in ms
    ]
    observed = math.log2(errors[0] / errors[1])
    assert ORDER[method] - 0.3 < observed < ORDER[method] + 0.75, (observed, errors)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_estimator_order(method):
    """The embedded estimate over one step scales like dt^(q+1)."""
    params = make_params()
    tab = ref._EMBEDDED[method]
    x = np.concatenate([make_X(), np.zeros((3, AUG))], axis=1)
    f = ref._piece_rhs(params, "bottleneck", "tanh")(0)
    dts = [0.1, 0.05, 0.025]
    errs = []
    for dt in dts:
        ks, _ = ref._embedded_step(f, x, dt, tab, None)
        errs.append(np.abs(ref._combine(tab.e, ks, dt, x.dtype)).max())
    assert abs(slope(dts, errs) - (tab.q + 1)) < 0.3, errs


@pytest.mark.parametrize("method", [*ADAPTIVE, "rk4"])
def test_dense_output_order(method, exact):
    """Dense output at mid-step times on uniform replay grids converges with the order of
    the solution or of the interpolant (Hermite: 3 for bosh3 and rk4's O(dt^4) locally)."""
    params, _, sols = exact
    expected = {"dopri5": 5, "tsit5": 5, "bosh3": 3, "rk4": 4}[method]
    errors = []
    for m in (8, 16):
        g = uniform_grid(m)
        tau = np.sort(np.concatenate([0.3 * g[:-1] + 0.7 * g[1:], g[:-1] + 0.5 * np.diff(g)]))
        y = solve(params, make_X(), method=method, grid=g, t=tau)
        errors.append(np.abs(y - scipy_dense(sols, tau)).max())
    observed = math.log2(errors[0] / errors[1])
    assert observed > expected - 0.5, (observed, errors)


# --------------------------------------------------------------------------- grids


@pytest.mark.parametrize("method", ADAPTIVE)
def test_grid_invariants(method):
    """Per-sample runs are independent bitwise; every grid holds 0, T and each boundary;
    the replay reproduces the run bitwise; dense output at grid times is the grid state."""
    params, X = make_params(), make_X(N=4)
    x, st = solve(params, X, method=method, rtol=1e-5, atol=1e-7, stats=True)
    bounds = ref._bounds(T, K)
    for i in range(len(X)):
        xi, sti = solve(params, X[i : i + 1], method=method, rtol=1e-5, atol=1e-7, stats=True)
        assert np.array_equal(xi[0], x[i])
        assert np.array_equal(sti["grid"][0], st["grid"][i])
        g = st["grid"][i]
        assert g.dtype == np.float64 and g[0] == 0.0 and g[-1] == T and np.all(np.diff(g) > 0)
        assert np.all(np.isin(bounds, g))
        assert st["accepted"][i] == len(g) - 1
        per_step = len(ref._EMBEDDED[method].b) - 1
        assert st["nfev"][i] == 2 + K + per_step * (st["accepted"][i] + st["rejected"][i])
        dense = solve(params, X[i : i + 1], method=method, grid=g, t=g)
        groups = ref._run(
            params,
            ref._augment(params, X[i : i + 1], AUG, "bottleneck"),
            T=T,
            substeps=1,
            method=method,
            field="bottleneck",
            act="tanh",
            rtol=1e-5,
            atol=1e-7,
            first_step=None,
            max_steps=10**5,
            step_control="sample",
            grid=None,
        )
        assert np.array_equal(dense, groups[0][1].xs)
    assert np.array_equal(solve(params, X, method=method, grid=st["grid"]), x)


def test_float32_states():
    """float32 states stay float32 (time and stats float64) and meet a loose tolerance."""
    params, X = make_params(), make_X()
    p32 = {key: v.astype(np.float32) for key, v in params.items()}
    x64 = solve(params, X, method="dopri5", rtol=1e-10, atol=1e-10)
    x32, st = solve(p32, X.astype(np.float32), method="dopri5", rtol=1e-4, atol=1e-6, stats=True)
    assert x32.dtype == np.float32 and st["grid"][0].dtype == np.float64
    assert np.abs(x32 - x64).max() < 10 * 1e-4  # measured 3e-4: the accuracy test's 10 x tol
    dense = solve(p32, X.astype(np.float32), method="tsit5", rtol=1e-4, atol=1e-6, t=[0.3, T])
    assert dense.dtype == np.float32


def test_batch_control_shares_one_grid():
    params, X = make_params(), make_X(N=4)
    x, st = solve(
        params, X, method="dopri5", rtol=1e-6, atol=1e-8, step_control="batch", stats=True
    )
    assert all(np.array_equal(g, st["grid"][0]) for g in st["grid"])
    assert len(set(st["nfev"])) == 1 and len(set(st["accepted"])) == 1
    _, st1 = solve(params, X, method="dopri5", rtol=1e-6, atol=1e-8, stats=True)
    assert st["accepted"][0] >= st1["accepted"].max()
    np.testing.assert_allclose(
        x, solve(params, X, method="dopri5", grid=st["grid"][0]), rtol=0, atol=1e-14
    )


def test_fixed_methods_dense_and_stats():
    """Fixed-step methods: dense output at the step times is the trajectory, Hermite in
    between; stats of the uniform grid; replaying it agrees to round-off."""
    params, X = make_params(), make_X()
    traj = solve(params, X, method="rk4", substeps=3)
    g = np.array([(T * j) / 12 for j in range(13)])
    dense, st = solve(params, X, method="rk4", substeps=3, t=g, stats=True)
    assert np.array_equal(dense, traj)
    assert np.all(st["nfev"] == 48) and np.all(st["accepted"] == 12)
    np.testing.assert_allclose(solve(params, X, method="rk4", grid=g), traj[-1], atol=1e-14)
    mid = solve(params, X, method="rk4", substeps=3, t=[0.1])
    fine = solve(params, X, method="rk4", substeps=300, t=[0.1])
    assert np.abs(mid - fine).max() < 1e-3  # Hermite at dt = 1/6: 3.9e-4


def test_bad_times_and_grids():
    params, X = make_params(), make_X()
    with pytest.raises(ValueError, match="sorted"):
        solve(params, X, method="dopri5", t=[0.5, 0.1])
    with pytest.raises(ValueError, match="within"):
        solve(params, X, method="dopri5", t=[2.5])
    with pytest.raises(ValueError, match="replay grid"):
        solve(params, X, method="dopri5", grid=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="step_control"):
        solve(params, X, method="dopri5", step_control="global")


# --------------------------------------------------------------------------- gradients


def _directional(params, X, keys, rng):
    return {key: rng.standard_normal(params[key].shape) for key in keys}, rng.standard_normal(
        X.shape
    )


@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("dense", [False, True])
def test_discrete_gradient_matches_fd_of_replay(method, field, dense):
    """odeint_vjp = central FD (directional) of <v, replay on the frozen accepted grid>."""
    rng = np.random.default_rng(7)
    params, X = make_params(field, H=4), make_X(N=2)
    keys = ref._field_keys(field)
    opts = {"method": method, "field": field, "rtol": 1e-5, "atol": 1e-7}
    tau = np.array([0.0, 0.3, 0.5, 1.27, T]) if dense else None
    _, st = solve(params, X, **opts, stats=True)
    v = rng.standard_normal((len(tau), 2, D) if dense else (2, D))
    grads, dX = ref.odeint_vjp(params, X, v, **KW, **opts, t=tau)
    dp, dx = _directional(params, X, keys, rng)

    def objective(eps):
        p = {**params, **{key: params[key] + eps * dp[key] for key in keys}}
        y = ref.odeint(p, X + eps * dx, **KW, method=method, field=field, grid=st["grid"], t=tau)
        return float(np.sum(v * y))

    eps = 1e-6
    fd = (objective(eps) - objective(-eps)) / (2 * eps)
    an = sum(float(np.sum(grads[key] * dp[key])) for key in keys) + float(np.sum(dX * dx))
    assert abs(an - fd) <= 1e-7 * max(1.0, abs(fd)), (an, fd)


def test_discrete_gradient_fixed_hermite_and_batch():
    """The Hermite dense output of rk4 (extra f(x_{j+1}) evaluation) and batch control."""
    rng = np.random.default_rng(3)
    params, X = make_params(H=4), make_X(N=2)
    keys = ref._field_keys("bottleneck")
    tau = np.array([0.1, 0.5, 0.77, 1.9])
    v = rng.standard_normal((len(tau), 2, D))
    dp, dx = _directional(params, X, keys, rng)
    cases = [
        ({"method": "rk4", "substeps": 2}, {"method": "rk4", "substeps": 2}),
        ({"method": "bosh3", "step_control": "batch", "rtol": 1e-4}, None),
    ]
    for opts, replay in cases:
        grads, dX = ref.odeint_vjp(params, X, v, **KW, field="bottleneck", t=tau, **opts)
        if replay is None:
            _, st = solve(params, X, **opts, stats=True)
            replay = {"method": opts["method"], "grid": st["grid"][0]}

        def objective(eps, replay=replay):
            p = {**params, **{key: params[key] + eps * dp[key] for key in keys}}
            return float(np.sum(v * solve(p, X + eps * dx, **replay, t=tau)))

        fd = (objective(1e-6) - objective(-1e-6)) / 2e-6
        an = sum(float(np.sum(grads[key] * dp[key])) for key in keys) + float(np.sum(dX * dx))
        assert abs(an - fd) <= 1e-7 * max(1.0, abs(fd)), (opts, an, fd)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_discrete_gradient_converges(method):
    """As rtol tightens, the discrete gradient approaches that of a very fine rk4 solution."""
    params, X = make_params(H=4), make_X(N=2)
    v = np.random.default_rng(5).standard_normal((2, D))
    fine, fine_dX = ref.odeint_vjp(
        params, X, v, **KW, field="bottleneck", method="rk4", substeps=200
    )
    scale = max(np.abs(g).max() for g in fine.values())
    errors = []
    for tol in (1e-4, 1e-6, 1e-8):
        grads, dX = ref.odeint_vjp(
            params, X, v, **KW, field="bottleneck", method=method, rtol=tol, atol=tol
        )
        err = max(np.abs(grads[key] - fine[key]).max() for key in fine)
        errors.append(max(err, np.abs(dX - fine_dX).max()) / scale)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6, errors


def test_node_loss_and_grad_adaptive():
    params, X = make_params(H=4), make_X(N=3)
    y = np.array([0, 1, 1])
    opts = {"field": "bottleneck", "method": "tsit5", "rtol": 1e-6, "atol": 1e-8}
    value, grads = ref.node_loss_and_grad(params, X, y, **KW, **opts, weight_decay=1e-3)
    logits = ref.node_forward(params, X, **KW, **opts)
    decay = 1e-3 * sum(np.sum(params[k] ** 2) for k in ("W1", "b1", "W2", "b2"))
    assert value == pytest.approx(ref.data_loss(logits, y, "cross_entropy") + decay)
    assert set(grads) == set(params)
    xT = solve(params, X, **opts)
    _, gx, gP, _ = ref._state_loss(params, xT, y, "cross_entropy")
    np.testing.assert_allclose(grads["P"], gP)
    wd = {k: grads[k] - 2e-3 * params[k] for k in ("W1", "b1", "W2", "b2")}
    g2, _ = ref.odeint_vjp(params, X, gx, **KW, **opts)
    for key in wd:
        np.testing.assert_allclose(wd[key], g2[key], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="turnpike"):
        ref.node_loss_and_grad(params, X, y, **KW, **opts, turnpike=True)
    with pytest.raises(NotImplementedError):
        ref.node_loss_and_grad(params, X, y, **KW, **opts, gradient="adjoint")


# --------------------------------------------------------------------------- failures


def test_step_size_errors():
    params, X = make_params(), make_X(N=2)
    with pytest.raises(ref.StepSizeError, match=r"sample 0 at t = .*dt = .*error") as info:
        solve(params, X, method="dopri5", max_steps=5)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, ref.NonFiniteError)
    assert info.value.sample == 0 and 0 < info.value.t < T and info.value.dt > 0
    assert "5 steps attempted" in str(info.value)
    # float32 states cannot meet rtol 1e-12: the steps stall at ~1e-5 and exhaust max_steps
    p32 = {key: v.astype(np.float32) for key, v in params.items()}
    with pytest.raises(ref.StepSizeError, match="sample 0"):
        solve(p32, X.astype(np.float32), method="tsit5", rtol=1e-12, atol=1e-12, max_steps=300)
    # a step landing 1 ulp below the boundary t_1 = 0.5 is snapped onto it (the sliver left
    # would be below the floor)
    opts = {"rtol": 1.0, "atol": 1.0, "first_step": np.nextafter(0.5, 0)}
    _, st = solve(params, X, method="dopri5", **opts, stats=True)
    for g in st["grid"]:
        assert g[1] == 0.5 and np.min(np.diff(g)) > 1e-3


def test_non_finite_error():
    """f(x_0) overflows float32: every trial is rejected (E = NaN, factor 0.2) until
    max_steps, and the error is a NonFiniteError (also a FloatingPointError)."""
    params = {
        "W": np.tile(50 * np.eye(D, dtype=np.float32), (K, 1, 1)),
        "b": np.zeros((K, D), np.float32),
    }
    X = np.array([[0.0, 0.0], [1e37, 0.0]], np.float32)  # sample 0: f = 0, E = 0
    opts = {**KW, "activation": "identity", "field": "inside", "method": "dopri5"}
    with pytest.raises(ref.NonFiniteError, match=r"sample 1 at t = 0\.0:") as info:
        ref.odeint(params, X, **opts, first_step=0.1, max_steps=20)
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    assert info.value.dt == pytest.approx(0.1 * 0.2**19) and np.isnan(info.value.error)
    with pytest.raises(ref.NonFiniteError, match="sample 0"):  # batch: the first bad sample
        ref.odeint(params, X[::-1], **opts, first_step=0.1, max_steps=20, step_control="batch")
