"""The adaptive forward run compacts each block's running samples (cpp/resode/adaptive.hpp,
compact_columns): a sample that ends its piece early leaves the columns in use, the others move
down. These tests give batches of very unequal samples (one stiff sample among easy ones, so
that a block shrinks to one vector of columns for most of each piece) and check that every
sample's result is still its own, bitwise: the same as alone, whatever the batch, the thread
count or the method; and the batch against the NumPy reference."""

import numpy as np
import pytest
import resode
from resode import reference as ref

ADAPTIVE = ("dopri5", "tsit5", "bosh3")
T, K, DIM, AUG, H = 3.0, 3, 2, 1, 8
D = DIM + AUG
STIFF = 5  # the index of the stiff sample in the batches below
TIMES = [0.0, 0.4, 1.0, 1.7, 2.5, 3.0]  # dense outputs: inside pieces and on boundaries


def stiff_params(dtype=np.float64, omega=12.0, c=4.0):
    """A relu bottleneck: 4 random hidden units of scale ~0.5, and 4 units that make a fast
    rotation dx1 = -omega s(x2), dx2 = omega s(x1), s(u) = relu(u - c) - relu(-u - c), zero
    where |x_i| < c (the easy samples) and fast for a sample far out (the stiff one)."""
    rng = np.random.default_rng(0)
    p = {
        "W1": 0.5 * rng.standard_normal((K, H, D)),
        "b1": 0.5 * rng.standard_normal((K, H)),
        "W2": 0.5 * rng.standard_normal((K, D, H)),
        "b2": 0.1 * rng.standard_normal((K, D)),
    }
    for j, (axis, sign) in enumerate([(0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0)]):
        p["W1"][:, j, :] = 0.0
        p["W1"][:, j, axis] = sign
        p["b1"][:, j] = -c
        p["W2"][:, :, j] = 0.0
    p["W2"][:, 1, 0], p["W2"][:, 1, 1] = omega, -omega
    p["W2"][:, 0, 2], p["W2"][:, 0, 3] = -omega, omega
    return {k: v.astype(dtype) for k, v in p.items()}


def unequal_X(N, dtype=np.float64):
    """N easy samples (|x| about 0.5) and sample STIFF far out, on the rotation."""
    X = 0.5 * np.random.default_rng(1).standard_normal((N, DIM))
    X[STIFF] = [9.0, 7.0]
    return X.astype(dtype)


def kw(method, dtype=np.float64, **extra):
    tol = {"rtol": 1e-6, "atol": 1e-8} if dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-6}
    return {"T": T, "augment": AUG, "activation": "relu", "field": "bottleneck",
            "method": method, **tol, **extra}  # fmt: skip


@pytest.fixture
def threads():
    before = resode.get_num_threads()
    yield resode.set_num_threads
    resode.set_num_threads(before)


def picks(N):
    """The samples checked alone: the stiff one, its neighbours, the ends."""
    return sorted({0, STIFF - 1, STIFF, STIFF + 1, N // 2, N - 1})


def assert_unequal(stats):
    """The batch is what the tests need: the stiff sample takes far more steps than the rest
    (so its block runs on a few columns for most of each piece)."""
    nfev = stats["nfev_per_sample"]
    assert nfev[STIFF] > 4 * np.median(nfev), nfev[STIFF]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_forward_of_unequal_samples_is_each_sample_s_own(method, dtype, threads):
    params, X = stiff_params(dtype), unequal_X(40, dtype)
    states = {}
    for count in (1, 2):
        threads(count)
        states[count], st = resode.odeint(params, X, **kw(method, dtype), t=TIMES, stats=True)
    assert_unequal(st)
    np.testing.assert_array_equal(states[2], states[1])
    for i in picks(len(X)):
        alone, st_one = resode.odeint(params, X[i : i + 1], **kw(method, dtype), t=TIMES,
                                      stats=True)  # fmt: skip
        np.testing.assert_array_equal(alone[:, 0], states[1][:, i])
        np.testing.assert_array_equal(st_one["grid"][0], st["grid"][i])
        assert st_one["nfev_per_sample"][0] == st["nfev_per_sample"][i]
        assert st_one["rejected_per_sample"][0] == st["rejected_per_sample"][i]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_gradient_of_unequal_samples_is_each_sample_s_own(method, dtype, gradient, threads):
    params, X = stiff_params(dtype), unequal_X(40, dtype)
    v = np.random.default_rng(2).standard_normal((len(X), D)).astype(dtype)
    dX = {}
    for count in (1, 2):
        threads(count)
        _, dX[count] = resode.odeint_vjp(params, X, v, **kw(method, dtype), gradient=gradient)
    np.testing.assert_array_equal(dX[2], dX[1])
    for i in picks(len(X)):
        _, one = resode.odeint_vjp(params, X[i : i + 1], v[i : i + 1], **kw(method, dtype),
                                   gradient=gradient)  # fmt: skip
        np.testing.assert_array_equal(one[0], dX[1][i])


def test_several_blocks_and_threads(threads):
    """N = 600 runs in several blocks (two threads take them in turn); the stiff sample and a
    second one in a later block."""
    params, X = stiff_params(), unequal_X(600)
    X[450] = [-8.0, 9.0]
    out = {}
    for count in (1, 2):
        threads(count)
        out[count] = resode.odeint(params, X, **kw("dopri5"), t=TIMES)
    np.testing.assert_array_equal(out[2], out[1])
    for i in (0, STIFF, 239, 240, 449, 450, 451, 599):
        alone = resode.odeint(params, X[i : i + 1], **kw("dopri5"), t=TIMES)
        np.testing.assert_array_equal(alone[:, 0], out[1][:, i])


@pytest.mark.parametrize("method", ADAPTIVE)
def test_unequal_batch_matches_reference(method):
    """The oracle: the easy samples take the NumPy reference's accepted and rejected steps, and
    on the core's grids the states and dense outputs agree to round-off. (The stiff sample's
    counts are not compared: over its 100 and more steps the grids drift apart at round-off
    level times the controller's sensitivity, as test_adaptive.py says, by up to 15% with the
    baseline kernels; its steps are those it takes alone, see above.)"""
    params, X = stiff_params(), unequal_X(20)
    x, st = resode.odeint(params, X, **kw(method), t=TIMES, stats=True)
    assert_unequal(st)
    _, st_ref = ref.odeint(params, X, **kw(method), stats=True)
    easy = np.arange(len(X)) != STIFF
    for key in ("accepted", "rejected"):
        ours, theirs = st[f"{key}_per_sample"], st_ref[key]
        np.testing.assert_array_equal(ours[easy], theirs[easy])
    on_grid = ref.odeint(params, X, **kw(method), t=TIMES, grid=list(st["grid"]))
    assert np.max(np.abs(x - on_grid)) < 1e-11 * np.max(np.abs(on_grid))


@pytest.mark.parametrize("method", ADAPTIVE)
def test_unequal_batch_vjp_matches_reference(method):
    """The replay runs each step on its active columns only; the discrete gradient (parameters
    and dX) is the reference's on the same grids, to round-off (the parameter gradients sum the
    samples in another order than before the compaction: round-off only)."""
    params, X = stiff_params(), unequal_X(40)
    v = np.random.default_rng(4).standard_normal((len(X), D))
    grads, dX = resode.odeint_vjp(params, X, v, **kw(method))
    _, st = resode.odeint(params, X, **kw(method), stats=True)
    assert_unequal(st)
    grads_r, dX_r = ref.odeint_vjp(params, X, v, **kw(method), grid=list(st["grid"]))
    assert np.max(np.abs(dX - dX_r)) < 1e-10 * np.max(np.abs(dX_r))
    for key in grads_r:
        assert np.max(np.abs(grads[key] - grads_r[key])) < 1e-10 * np.max(np.abs(grads_r[key]))


def test_a_failure_in_a_compacted_block_names_its_sample():
    """max_steps runs out for the stiff sample after the easy ones have left the columns: the
    error names it, at the time and step size it has alone."""
    params, X = stiff_params(), unequal_X(40)
    options = kw("dopri5", max_steps=60)
    with pytest.raises(resode.StepSizeError) as alone:
        resode.odeint(params, X[STIFF : STIFF + 1], **options)
    with pytest.raises(resode.StepSizeError) as batch:
        resode.odeint(params, X, **options)
    assert batch.value.sample == STIFF and alone.value.sample == 0
    assert (batch.value.t, batch.value.dt) == (alone.value.t, alone.value.dt)


def test_checkpoints_change_nothing_on_compacted_steps():
    """The replay's compacted steps are recomputed from checkpoints bitwise (the tape keeps each
    step's compacted state beside its full one)."""
    params, X = stiff_params(), unequal_X(40)
    v = np.random.default_rng(6).standard_normal((len(X), D))
    g0, dX0 = resode.odeint_vjp(params, X, v, **kw("tsit5"))
    for checkpoints in (1, 3, 7):
        g, dX = resode.odeint_vjp(params, X, v, **kw("tsit5"), checkpoints=checkpoints)
        np.testing.assert_array_equal(dX, dX0)
        for key in g0:
            np.testing.assert_array_equal(g[key], g0[key])
