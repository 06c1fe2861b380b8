"""The adaptive Runge-Kutta methods of the core (dopri5, tsit5, bosh3; docs/guide/adaptive.md)
against the NumPy reference, which implements the same algorithm: accepted grids, counts, final
states, dense output and discrete gradients agree to round-off. Plus the core's own
guarantees: per-sample independence (bitwise), replay = the run (bitwise), checkpoints change
nothing (bitwise), the errors, and the models, fit, CLI and scikit-learn front ends."""

import numpy as np
import pytest
import resode
from resode import reference as ref

ADAPTIVE = ("dopri5", "tsit5", "bosh3")
T, K, DIM, AUG = 2.0, 4, 2, 1
D = DIM + AUG
FIELD_KEYS = {"bottleneck": ("W1", "b1", "W2", "b2"), "outside": ("W", "b"), "inside": ("W", "b")}


def make_params(field="bottleneck", H=6, seed=0, dtype=np.float64):
    """Random parameters of scale ~1: dynamics with steps of very different sizes."""
    rng = np.random.default_rng(seed)
    if field == "bottleneck":
        shapes = {"W1": (K, H, D), "b1": (K, H), "W2": (K, D, H), "b2": (K, D)}
    else:
        shapes = {"W": (K, D, D), "b": (K, D)}
    params = {key: rng.standard_normal(shape) for key, shape in shapes.items()}
    params["P"] = rng.standard_normal((2, D))
    params["c"] = rng.standard_normal(2)
    return {key: v.astype(dtype) for key, v in params.items()}


def make_X(N=7, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((N, DIM)).astype(dtype)


def core_kw(field, method, **kw):
    return {"T": T, "augment": AUG, "activation": "tanh", "field": field, "method": method, **kw}


def field_params(params, field):
    return {k: params[k] for k in FIELD_KEYS[field]}


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --------------------------------------------------------------------------- the forward run


@pytest.mark.parametrize("field", ["bottleneck", "outside", "inside"])
@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("control", ["sample", "batch"])
def test_run_matches_reference(method, field, control):
    """The same decisions (accepted and rejected steps per sample), nearly the same grids, and
    on one grid the same states to round-off. (The grids drift apart at round-off level times
    the controller's sensitivity: a small error estimate E is mostly round-off itself.)"""
    params, X = make_params(field), make_X()
    opts = {"rtol": 1e-6, "atol": 1e-8, "step_control": control}
    theta = field_params(params, field)
    x, st = resode.odeint(theta, X, **core_kw(field, method, **opts), t=[T], stats=True)
    xr, str_ = ref.odeint(params, X, **core_kw(field, method, **opts), stats=True)
    np.testing.assert_array_equal(st["accepted_per_sample"], str_["accepted"])
    np.testing.assert_array_equal(st["rejected_per_sample"], str_["rejected"])
    for g, gr in zip(st["grid"], str_["grid"]):
        assert g.shape == gr.shape and np.max(np.abs(g - gr)) < 1e-2 * T
    assert rel(x[0], xr) < 1e-5
    on_core_grid = ref.odeint(params, X, **core_kw(field, method), grid=list(st["grid"]))
    assert rel(x[0], on_core_grid) < 1e-12


def test_float32_matches_reference():
    params, X = make_params(dtype=np.float32), make_X(dtype=np.float32)
    kw = core_kw("bottleneck", "dopri5", rtol=1e-4, atol=1e-6)
    x, st = resode.odeint(field_params(params, "bottleneck"), X, **kw, t=[T], stats=True)
    xr = ref.odeint(params, X, **kw)  # its own grids: float32 round-off times the controller
    assert x.dtype == np.float32 and rel(x[0], xr) < 1e-4
    on_core_grid = ref.odeint(params, X, **core_kw("bottleneck", "dopri5"), grid=list(st["grid"]))
    assert rel(x[0], on_core_grid) < 1e-5


def test_accuracy_against_fine_rk4():
    """The global error falls with the tolerance (an independent fixed-step oracle)."""
    params, X = make_params(), make_X()
    fine = resode.odeint(
        field_params(params, "bottleneck"), X, **core_kw("bottleneck", "rk4"), substeps=400
    )[-1]
    for method in ADAPTIVE:
        errors = []
        for tol in (1e-4, 1e-6, 1e-8):
            kw = core_kw("bottleneck", method, rtol=tol, atol=tol)
            x = resode.odeint(field_params(params, "bottleneck"), X, **kw)[-1]
            errors.append(np.max(np.abs(x - fine)))
            assert errors[-1] < 20 * tol, (method, tol, errors)
        assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize(("method", "order"), [("dopri5", 5), ("tsit5", 5), ("bosh3", 3)])
def test_tableau_order_with_the_controller_off(method, order):
    """The core's tableaux replayed on uniform grids (the fixed-step mode): the observed order."""
    params, X = make_params(), make_X(3)
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", method)
    fine = resode.odeint(theta, X, **core_kw("bottleneck", "rk4"), substeps=1000)[-1]
    errors = []
    for m in (4, 8):  # steps per piece
        grid = (T * np.arange(K * m + 1)) / (K * m)
        grid[::m] = (T * np.arange(K + 1)) / K  # the boundaries exactly as the core forms them
        grid[-1] = T
        errors.append(np.max(np.abs(resode.odeint(theta, X, **kw, grid=grid)[-1] - fine)))
    observed = np.log2(errors[0] / errors[1])
    assert order - 0.5 < observed < order + 1.0, (errors, observed)


def test_every_sample_its_own_steps_bitwise():
    model = resode.NeuralODE(
        DIM,
        T=T,
        pieces=K,
        method="dopri5",
        field="bottleneck",
        hidden=6,
        augment=AUG,
        seed=0,
        rtol=1e-6,
    )
    model.params.update(make_params())
    X = make_X(40)
    z = model.forward(X)
    for i in range(0, 40, 7):
        np.testing.assert_array_equal(model.forward(X[i : i + 1])[0], z[i])
    states = model.trajectory(X)
    for i in (0, 39):
        np.testing.assert_array_equal(model.trajectory(X[i : i + 1])[:, 0], states[:, i])


def test_grids_land_on_every_piece_boundary():
    params, X = make_params(), make_X()
    _, st = resode.odeint(
        field_params(params, "bottleneck"),
        X,
        **core_kw("bottleneck", "tsit5", rtol=1e-5),
        stats=True,
    )
    bounds = [(T * k) / K for k in range(K)] + [T]
    for g in st["grid"]:
        assert g[0] == 0.0 and g[-1] == T and np.all(np.diff(g) > 0)
        assert all(b in g for b in bounds)
    assert st["accepted"] == sum(len(g) - 1 for g in st["grid"])
    assert st["accepted_min"] <= st["accepted_median"] <= st["accepted_max"]
    assert st["nfev"] > 6 * st["accepted"]


def test_batch_control_shares_one_grid():
    params, X = make_params(), make_X()
    _, st = resode.odeint(
        field_params(params, "bottleneck"),
        X,
        **core_kw("bottleneck", "dopri5", step_control="batch"),
        stats=True,
    )
    for g in st["grid"]:
        np.testing.assert_array_equal(g, st["grid"][0])


def test_replay_reproduces_the_run_bitwise():
    params, X = make_params(), make_X(30)
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", "dopri5", rtol=1e-5)
    x, st = resode.odeint(theta, X, **kw, stats=True)
    replay = resode.odeint(theta, X, **core_kw("bottleneck", "dopri5"), grid=st["grid"])
    np.testing.assert_array_equal(replay, x)


# --------------------------------------------------------------------------- dense output


@pytest.mark.parametrize("method", [*ADAPTIVE, "rk4", "midpoint"])
def test_dense_output_matches_reference(method):
    params, X = make_params(), make_X()
    times = np.array([0.0, 0.1, 0.5, 0.77, 1.3, 2.0])
    extra = {} if method in ADAPTIVE else {"substeps": 3}
    kw = core_kw("bottleneck", method, **extra)
    x, st = resode.odeint(field_params(params, "bottleneck"), X, **kw, t=times, stats=True)
    grid = None if st is None else list(st["grid"])  # the reference on the core's grid
    xr = ref.odeint(params, X, **kw, t=times, grid=grid)
    assert x.shape == (len(times), len(X), D)
    assert rel(x, xr) < 1e-12


def test_dense_output_at_grid_points_is_the_grid_state():
    params, X = make_params(), make_X(1)
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", "bosh3", rtol=1e-4)
    _, st = resode.odeint(theta, X, **kw, stats=True)
    grid = st["grid"][0]
    dense = resode.odeint(theta, X, **kw, t=grid)
    replay_final = resode.odeint(theta, X, **core_kw("bottleneck", "bosh3"), grid=[grid])
    np.testing.assert_array_equal(dense[-1], replay_final[-1])
    np.testing.assert_array_equal(dense[0, :, :DIM], X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_fixed_step_dense_output_at_every_step_time_is_the_trajectory_state(method, dtype):
    """At every step time t_j = (T j) / steps, interior ones included, the dense output is the
    trajectory's state x_j bitwise (the replay steps with the trajectory's own kernels), also
    between interpolated times and through the model."""
    params, X = make_params(dtype=dtype), make_X(30, dtype=dtype)
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", method, substeps=3)
    states = resode.odeint(theta, X, **kw)
    steps = 3 * K
    step_times = (T * np.arange(steps + 1)) / steps
    np.testing.assert_array_equal(resode.odeint(theta, X, **kw, t=step_times), states)
    mixed = np.sort(np.concatenate([step_times, step_times[:-1] + 0.3 * T / steps]))
    dense = resode.odeint(theta, X, **kw, t=mixed)
    np.testing.assert_array_equal(dense[np.isin(mixed, step_times)], states)
    model = resode.NeuralODE(
        DIM, T=T, pieces=K, substeps=3, method=method, field="bottleneck", hidden=6,
        augment=AUG, dtype=dtype,
    )  # fmt: skip
    model.params.update(params)
    np.testing.assert_array_equal(model.trajectory(X, t=step_times), model.trajectory(X))


def test_dense_output_of_the_model():
    model = resode.NeuralODE(DIM, T=T, pieces=K, method="tsit5", augment=AUG, seed=0)
    X = make_X()
    times = np.linspace(0, T, 11)
    states = model.trajectory(X, t=times)
    assert states.shape == (11, len(X), D)
    assert model.stats["accepted"] > 0
    np.testing.assert_array_equal(states[-1], model.trajectory(X)[-1])


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("field", ["bottleneck", "outside", "inside"])
@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("dense", [False, True])
def test_vjp_matches_reference(method, field, dense):
    params, X = make_params(field), make_X()
    theta = field_params(params, field)
    kw = core_kw(field, method, rtol=1e-5, atol=1e-7)
    times = np.array([0.0, 0.3, 0.5, 1.2, 2.0]) if dense else None
    shape = (len(times), len(X), D) if dense else (len(X), D)
    v = np.random.default_rng(5).standard_normal(shape)
    grads, dX = resode.odeint_vjp(theta, X, v, **kw, t=times)
    _, st = resode.odeint(theta, X, **kw, stats=True)  # the reference on the core's grid
    grads_r, dX_r = ref.odeint_vjp(params, X, v, **kw, t=times, grid=list(st["grid"]))
    assert rel(dX, dX_r) < 1e-10
    for key in theta:
        assert rel(grads[key], grads_r[key]) < 1e-10, key


@pytest.mark.parametrize("method", [*ADAPTIVE, "rk4"])
def test_vjp_against_finite_differences_of_the_replay(method):
    """The discrete gradient is the exact gradient of the map on the frozen grid."""
    params, X = make_params(), make_X(4)
    theta = field_params(params, "bottleneck")
    adaptive = method in ADAPTIVE
    kw = core_kw("bottleneck", method, **({"rtol": 1e-5} if adaptive else {"substeps": 2}))
    times = np.array([0.2, 1.0, 1.9])
    _, st = resode.odeint(theta, X, **kw, t=times, stats=True)
    replay_kw = core_kw("bottleneck", method, **({} if adaptive else {"substeps": 2}))
    grid = st["grid"] if adaptive else None
    rng = np.random.default_rng(2)
    v = rng.standard_normal((len(times), len(X), D))
    grads, dX = resode.odeint_vjp(theta, X, v, **replay_kw, t=times, grid=grid)
    direction = {k: rng.standard_normal(a.shape) for k, a in theta.items()}
    dXdir = rng.standard_normal(X.shape)

    def value(eps):
        th = {k: a + eps * direction[k] for k, a in theta.items()}
        x = resode.odeint(th, X + eps * dXdir, **replay_kw, t=times, grid=grid)
        return float(np.sum(x * v))

    eps = 1e-6
    fd = (value(eps) - value(-eps)) / (2 * eps)
    exact = sum(float(np.sum(grads[k] * direction[k])) for k in theta) + float(np.sum(dX * dXdir))
    assert abs(fd - exact) < 1e-7 * max(abs(exact), 1.0)


def test_a_sample_s_gradient_does_not_depend_on_the_batch():
    """dX of a sample is its own (bitwise), whatever the order of the batch (the replay groups
    the samples by their number of steps)."""
    params, X = make_params(), make_X(40)
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", "dopri5", rtol=1e-6)
    v = np.random.default_rng(1).standard_normal((len(X), D))
    _, dX = resode.odeint_vjp(theta, X, v, **kw)
    _, dX_reversed = resode.odeint_vjp(theta, X[::-1], v[::-1], **kw)
    np.testing.assert_array_equal(dX_reversed[::-1], dX)
    _, dX_one = resode.odeint_vjp(theta, X[7:8], v[7:8], **kw)
    np.testing.assert_array_equal(dX_one[0], dX[7])


def test_checkpoints_change_nothing_bitwise():
    params, X = make_params(), make_X(20)
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", "dopri5", rtol=1e-6)
    v = np.random.default_rng(0).standard_normal((len(X), D))
    g0, dX0 = resode.odeint_vjp(theta, X, v, **kw)
    for checkpoints in (1, 3, 7):
        g, dX = resode.odeint_vjp(theta, X, v, **kw, checkpoints=checkpoints)
        np.testing.assert_array_equal(dX, dX0)
        for key in g0:
            np.testing.assert_array_equal(g[key], g0[key])


def test_loss_and_grad_matches_reference_and_converges_to_fine_rk4():
    params, X = make_params(), make_X(12)
    y = np.arange(12) % 2
    model = resode.NeuralODE(
        DIM,
        T=T,
        pieces=K,
        method="dopri5",
        field="bottleneck",
        hidden=6,
        augment=AUG,
        seed=0,
        rtol=1e-8,
        atol=1e-10,
        weight_decay=1e-3,
    )
    model.params.update(params)
    loss, grads = model.loss_and_grad(X, y)
    loss_r, grads_r = ref.node_loss_and_grad(
        params,
        X,
        y,
        field="bottleneck",
        activation="tanh",
        T=T,
        augment=AUG,
        method="dopri5",
        rtol=1e-8,
        atol=1e-10,
        weight_decay=1e-3,
    )
    # its own run of the controller: grids equal to round-off times the controller's gain
    assert abs(loss - loss_r) < 1e-8 * abs(loss_r)
    for key in grads:
        assert rel(grads[key], grads_r[key]) < 1e-6, key
    fine = resode.NeuralODE(
        DIM,
        T=T,
        pieces=K,
        substeps=300,
        field="bottleneck",
        hidden=6,
        augment=AUG,
        seed=0,
        weight_decay=1e-3,
    )
    fine.params.update(params)
    _, grads_f = fine.loss_and_grad(X, y)
    for key in grads:
        assert rel(grads[key], grads_f[key]) < 1e-6, key
    assert model.stats["accepted"] > 0


def test_fit_with_an_adaptive_method():
    X, y = resode.datasets.concentric_spheres(120, seed=0)
    model = resode.NeuralODE(
        2,
        T=2.0,
        pieces=4,
        method="bosh3",
        rtol=1e-4,
        atol=1e-6,
        field="bottleneck",
        hidden=8,
        augment=1,
        seed=0,
    )
    history = resode.fit(
        model,
        X,
        y,
        optimizer=resode.optim.Adam(lr=2e-2),
        epochs=15,
        batch_size=40,
        seed=0,
        progress=False,
    )
    assert history.loss[-1] < history.loss[0]
    assert model.stats["nfev"] > 0


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adjoint_converges_to_the_exact_gradient(method):
    """The backsolve adjoint approximates the gradient; its error falls with the tolerance, to
    the gradient of a very fine fixed-step RK4 solution (an independent oracle)."""
    params, X = make_params(), make_X(12)
    y = np.arange(12) % 2

    def model(**kw):
        m = resode.NeuralODE(
            DIM, T=T, pieces=K, field="bottleneck", hidden=6, augment=AUG, seed=0, **kw
        )
        m.params.update(params)
        return m

    _, exact = model(substeps=400).loss_and_grad(X, y)
    errors = []
    for tol in (1e-5, 1e-7, 1e-9):
        _, g = model(method=method, gradient="adjoint", rtol=tol, atol=tol).loss_and_grad(X, y)
        errors.append(max(rel(g[k], exact[k]) for k in g))
    assert errors[2] < errors[0] and errors[2] < 1e-5, errors


def test_adjoint_vjp_matches_the_discrete_one_at_tight_tolerance():
    params, X = make_params(), make_X()
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", "tsit5", rtol=1e-10, atol=1e-10)
    v = np.random.default_rng(3).standard_normal((len(X), D))
    g_adj, dX_adj = resode.odeint_vjp(theta, X, v, **kw, gradient="adjoint")
    g_dis, dX_dis = resode.odeint_vjp(theta, X, v, **kw)
    assert rel(dX_adj, dX_dis) < 1e-6
    for key in theta:
        assert rel(g_adj[key], g_dis[key]) < 1e-6, key
    with pytest.raises(ValueError, match="adjoint"):
        resode.odeint_vjp(theta, X, np.ones((2, len(X), D)), **kw, t=[1.0, 2.0], gradient="adjoint")


# --------------------------------------------------------------------------- errors


def test_step_size_error_names_sample_time_step_and_error():
    params, X = make_params(), make_X()
    theta = field_params(params, "bottleneck")
    with pytest.raises(resode.StepSizeError, match=r"sample 0 at t = .*dt = .*error estimate"):
        resode.odeint(theta, X, **core_kw("bottleneck", "dopri5", max_steps=3))
    with pytest.raises(resode.StepSizeError) as info:  # the sample's index in the batch
        resode.odeint(theta, X, **core_kw("bottleneck", "dopri5", max_steps=3))
    assert isinstance(info.value, ValueError) and info.value.sample == 0 and info.value.dt > 0


@pytest.mark.parametrize("method", ADAPTIVE)
def test_a_step_below_the_resolution_of_t_is_a_step_size_error(method):
    """Piece 0 has f = 0 (E = 0, the steps grow to its end); in piece 1 rtol = 1e-40 leaves the
    round-off of the error estimate above the tolerance down to the floor 4 eps |t|."""
    rng = np.random.default_rng(0)
    W, b = np.zeros((2, 2, 2)), np.zeros((2, 2))
    W[1], b[1] = rng.standard_normal((2, 2)), rng.standard_normal(2)
    kw = {"T": 2.0, "field": "inside", "method": method, "rtol": 1e-40, "atol": 1e-300}
    with pytest.raises(resode.StepSizeError, match="resolution of t") as info:
        resode.odeint({"W": W, "b": b}, np.ones((3, 2)), **kw)
    assert info.value.sample == 0 and 1.0 <= info.value.t < 1.0 + 1e-6
    with pytest.raises(ref.StepSizeError, match="too small"):
        ref.odeint({"W": W, "b": b}, np.ones((3, 2)), **kw, activation="tanh")


def overflowing_field():
    """float32 x' = b = 3e38 (field inside, W = 0): x(1) = 3e38, and x(2) overflows. The stages
    f = b stay finite, so an overflowing trial state escapes its own error term (err / inf)."""
    theta = {"W": np.zeros((2, 2, 2), np.float32), "b": np.full((2, 2), 3e38, np.float32)}
    return theta, np.zeros((3, 2), np.float32), {"field": "inside"}


@pytest.mark.parametrize("method", ADAPTIVE)
def test_an_overflowing_trial_state_is_rejected(method):
    """A trial state that overflows is a rejection (E = NaN), so an adaptive float32 solve
    whose solution overflows raises NonFiniteError like rk4 instead of returning Inf; up to
    the overflow the solve is unaffected."""
    theta, X, kw = overflowing_field()
    with pytest.raises(resode.NonFiniteError):
        resode.odeint(theta, X, **kw, T=2.0, method="rk4")
    kw["max_steps"] = 300
    for t in (None, [0.5, 2.0]):
        with pytest.raises(resode.NonFiniteError, match="sample 0"):
            resode.odeint(theta, X, **kw, T=2.0, method=method, t=t)
    model = resode.NeuralODE(
        2, T=2.0, pieces=2, method=method, field="inside", dtype="float32", max_steps=300
    )
    model.params.update(theta)
    with pytest.raises(resode.NonFiniteError):
        model.trajectory(X, t=[1.0, 1.5, 2.0])
    with pytest.raises(ref.NonFiniteError):
        ref.odeint(theta, X, **kw, T=2.0, method=method, activation="tanh")
    x = resode.odeint(theta, X, **kw, T=1.0, method=method)[-1]
    assert np.all(np.isfinite(x)) and rel(x, np.full_like(x, 3e38)) < 1e-5


def test_max_steps_on_overflowing_trials_is_a_non_finite_error():
    """f(x_0) of sample 1 overflows float32: every trial is rejected until max_steps, and the
    error is NonFiniteError naming sample 1 (per-sample and batch control, as the reference);
    the same for the adjoint's backward run, whose adjoint overflows at once."""
    W = np.tile(50 * np.eye(2, dtype=np.float32), (K, 1, 1))
    theta = {"W": W, "b": np.zeros((K, 2), np.float32)}
    X = np.array([[0.0, 0.0], [1e37, 0.0]], np.float32)  # sample 0: f = 0, E = 0
    kw = {"T": T, "field": "inside", "activation": "identity", "method": "dopri5"}
    for control in ("sample", "batch"):
        opts = {**kw, "first_step": 0.1, "max_steps": 20, "step_control": control}
        with pytest.raises(resode.NonFiniteError, match=r"sample 1 .*max_steps") as info:
            resode.odeint(theta, X, **opts)
        assert isinstance(info.value, FloatingPointError) and info.value.t == 0.0
        with pytest.raises(ref.NonFiniteError, match="sample 1"):
            ref.odeint(theta, X, **opts)
    v = np.array([[0.0, 0.0], [1e37, 0.0]], np.float32)  # a(T) of sample 1: -J^T a overflows
    opts = {**kw, "first_step": 0.1, "max_steps": 20, "gradient": "adjoint"}
    with pytest.raises(resode.NonFiniteError, match=r"sample 1 .*max_steps"):
        resode.odeint_vjp(theta, np.zeros((2, 2), np.float32), v, **opts)


def test_batch_control_names_the_sample_that_forced_the_rejections():
    """Sample 0 sits at a fixed point (E = 0): the StepSizeError of the batch names sample 1,
    whose error forced the rejections, as the reference does."""
    rng = np.random.default_rng(3)
    theta = {"W": rng.standard_normal((K, 2, 2)), "b": np.zeros((K, 2))}
    X = np.array([[0.0, 0.0], [3.0, 1.0], [0.0, 0.0]])
    kw = {"T": T, "field": "inside", "activation": "identity", "method": "dopri5"}
    opts = {**kw, "rtol": 1e-10, "atol": 1e-12, "first_step": 1.0, "max_steps": K}
    for control in ("sample", "batch"):
        with pytest.raises(resode.StepSizeError) as info:
            resode.odeint(theta, X, **opts, step_control=control)
        assert info.value.sample == 1, control
        with pytest.raises(ref.StepSizeError) as info:
            ref.odeint(theta, X, **opts, step_control=control)
        assert info.value.sample == 1, control


# T = 3, 2 pieces, x' = b (E ~ 1e-16: every step grows 10x): the forward grid is
# 0, 0.1240909..., 1.365, 1.5, 2.85, 3 and the backward run's first step, 10 (3 - 2.85), lands
# 4 ulps above the boundary 1.5, a sliver below the resolution of t unless snapped.
SLIVER_FIRST_STEP = 0.1240909090909091


@pytest.mark.parametrize("method", ADAPTIVE)
def test_steps_landing_ulps_from_a_boundary_are_snapped_onto_it(method):
    """Forward: a first step 1 ulp short of the boundary; replay (discrete gradient) and
    adjoint (a backward step 4 ulps past the boundary): each snaps onto the boundary instead
    of leaving a sliver below the resolution of t (a StepSizeError before)."""
    params, X = make_params(), make_X()
    theta = field_params(params, "bottleneck")
    sliver = float(np.nextafter(T / K, 0.0))
    kw = core_kw("bottleneck", method, rtol=1.0, atol=1.0, first_step=sliver)
    x, st = resode.odeint(theta, X, **kw, stats=True)
    for g in st["grid"]:
        assert g[1] == T / K and np.min(np.diff(g)) > 1e-3
    _, st_ref = ref.odeint(params, X, **kw, stats=True)
    np.testing.assert_array_equal(st["accepted_per_sample"], st_ref["accepted"])
    replay = resode.odeint(theta, X, **core_kw("bottleneck", method), grid=st["grid"])
    np.testing.assert_array_equal(replay, x)  # the replay is the run, bitwise
    v = np.random.default_rng(5).standard_normal((len(X), D))
    grads, dX = resode.odeint_vjp(theta, X, v, **kw)
    assert np.all(np.isfinite(dX)) and all(np.all(np.isfinite(g)) for g in grads.values())

    b = np.array([[0.5, -1.0], [2.0, 0.25]])
    constant = {"W": np.zeros((2, 2, 2)), "b": b}
    kw = {"T": 3.0, "field": "inside", "method": method, "rtol": 1.0, "atol": 1.0}
    X2, v2 = np.ones((3, 2)), np.arange(6.0).reshape(3, 2)
    _, st = resode.odeint(constant, X2, **kw, first_step=SLIVER_FIRST_STEP, stats=True)
    np.testing.assert_array_equal(st["grid"][0], [0.0, SLIVER_FIRST_STEP, 1.365, 1.5, 2.85, 3.0])
    assert 1.5 < 3.0 - 10 * (3.0 - 2.85) <= 1.5 + 4 * np.finfo(float).eps * 1.5
    grads, dX = resode.odeint_vjp(
        constant, X2, v2, **kw, first_step=SLIVER_FIRST_STEP, gradient="adjoint"
    )
    np.testing.assert_array_equal(dX, v2)  # a' = -J^T a = 0
    np.testing.assert_allclose(grads["b"], np.tile(1.5 * v2.sum(axis=0), (2, 1)), rtol=1e-14)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_stats_count_the_adjoint_s_backward_run(method):
    params, X = make_params(), make_X()
    y = np.arange(len(X)) % 2
    model = resode.NeuralODE(
        DIM, T=T, pieces=K, method=method, field="bottleneck", hidden=6, augment=AUG,
        gradient="adjoint", rtol=1e-6,
    )  # fmt: skip
    model.params.update(params)
    model.loss_and_grad(X, y)
    st = model.stats
    stages = {"dopri5": 7, "tsit5": 7, "bosh3": 4}[method]
    backward = st["backward_accepted_per_sample"] + st["backward_rejected_per_sample"]
    np.testing.assert_array_equal(st["backward_nfev_per_sample"], stages * backward)
    assert st["backward_accepted_min"] >= K and st["backward_accepted"] > 0
    assert st["backward_nfev"] == int(st["backward_nfev_per_sample"].sum())
    forward = model.stats["accepted_per_sample"].copy()
    model.forward(X)  # a forward run only: its counts, no backward ones
    np.testing.assert_array_equal(model.stats["accepted_per_sample"], forward)
    assert not any(key.startswith("backward") for key in model.stats)
    model.gradient = "discrete"
    model.loss_and_grad(X, y)
    assert not any(key.startswith("backward") for key in model.stats)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "rk4", "rtol": 1e-3}, "rtol apply to the adaptive methods"),
        ({"method": "dopri5", "turnpike": True}, "turnpike"),
        ({"method": "dopri5", "gradient": "adjoint", "step_control": "batch"}, "adjoint"),
        ({"method": "dopri5", "substeps": 2}, "substeps"),
        ({"method": "dopri5", "step_control": "every"}, "step_control"),
        ({"method": "dopri5", "rtol": -1.0}, "rtol"),
    ],
)
def test_model_refuses_options_that_do_not_apply(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resode.NeuralODE(2, **kwargs)


def test_bad_times_and_grids():
    params, X = make_params(), make_X()
    theta = field_params(params, "bottleneck")
    kw = core_kw("bottleneck", "dopri5")
    with pytest.raises(ValueError, match="sorted"):
        resode.odeint(theta, X, **kw, t=[1.0, 0.5])
    with pytest.raises(ValueError, match=r"in \[0, T\]"):
        resode.odeint(theta, X, **kw, t=[0.5, 2.5])
    with pytest.raises(ValueError, match="piece boundary"):
        resode.odeint(theta, X, **kw, grid=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="from 0 to T"):
        resode.odeint(theta, X, **kw, grid=np.array([0.0, 0.5, 1.0, 1.5]))
    with pytest.raises(ValueError, match="cotangent must have shape"):
        resode.odeint_vjp(theta, X, np.ones((2, len(X), D)), **kw, t=[0.5, 1.0, 2.0])


# --------------------------------------------------------------------------- front ends


def test_cli_trains_with_an_adaptive_method(tmp_path):
    from resode.cli import main

    code = main(
        [
            "train",
            "--dataset",
            "spheres",
            "--n-samples",
            "100",
            "--epochs",
            "3",
            "--method",
            "dopri5",
            "--rtol",
            "1e-5",
            "--atol",
            "1e-7",
            "--pieces",
            "4",
            "--hidden",
            "8",
            "--no-plots",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    assert code in (0, None)
    assert (
        main(
            [
                "train",
                "--dataset",
                "spheres",
                "--n-samples",
                "100",
                "--epochs",
                "1",
                "--method",
                "rk4",
                "--rtol",
                "1e-5",
                "--out",
                str(tmp_path / "r2"),
                "--no-progress",
            ]
        )
        == 2  # a usage error: --rtol does not apply to rk4
    )


def test_sklearn_estimator_with_an_adaptive_method():
    from resode.sklearn import NeuralODEClassifier

    X, y = resode.datasets.concentric_spheres(80, seed=1)
    clf = NeuralODEClassifier(method="tsit5", rtol=1e-5, pieces=4, epochs=5, random_state=0)
    clf.fit(X, y)
    assert clf.model_.method == "tsit5" and clf.model_.rtol == 1e-5
    assert clf.predict(X).shape == (80,)
