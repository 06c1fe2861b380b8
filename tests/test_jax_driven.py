"""resode.jax.odeint(..., u=U), the input-driven neural ODE x' = f_theta(t)([x; u(t)]) in JAX:
values and gradients (parameters, X and U) bitwise those of the core's driven_solve /
driven_vjp and of resode.NeuralODE(inputs=C), central differences (jax.test_util.check_grads),
jit, vmap over batches and over parameters, per-example gradients, no copies (the jaxpr holds
the two custom calls and nothing that converts or copies), an encoder trained through U,
float32/float64 and the errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import resode

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import resode.jax as rj  # noqa: E402
from jax.test_util import check_grads  # noqa: E402
from resode import _core  # noqa: E402

FIELDS = {"outside": None, "inside": None, "bottleneck": 4}
OPTIONS: dict[str, Any] = dict(T=2.0, substeps=2, method="rk4", activation="tanh", augment=1,
                               interpolation="cubic")  # fmt: skip
CORE = ("T", "substeps", "method", "activation", "interpolation")


def _model(field: str = "outside", dtype: str = "float64", **kw: Any) -> resode.NeuralODE:
    options = {k: v for k, v in {**OPTIONS, **kw}.items() if k != "augment"}
    return resode.NeuralODE(2, field=field, hidden=FIELDS[field], pieces=3, inputs=2, augment=1,
                            dtype=dtype, seed=3, **options)  # fmt: skip


def _params(field: str = "outside", dtype: str = "float64") -> dict[str, np.ndarray]:
    model = _model(field, dtype)
    return {k: model.params[k] for k in resode.models.field_param_names(field)}


def _data(dtype: str = "float64", N: int = 4, L: int = 6) -> tuple[np.ndarray, ...]:
    """X (N, 2), U (N, L, 2) with missing values and padding (lengths 6, 4, 5, 6), per-sample
    times inside [0, T]."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 2))
    U = rng.normal(size=(N, L, 2))
    U[0, 2, 1] = np.nan
    U[1, 4:] = np.nan
    U[2, 0, 0] = np.nan
    U[2, 5:] = np.nan
    times = np.cumsum(rng.uniform(0.1, 0.4, size=(N, L)), axis=1)
    times[1, 4:] = np.nan
    return X.astype(dtype), U.astype(dtype), times.astype(dtype)


def _j(params: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: jnp.asarray(v) for k, v in params.items()}


def _x0(X: np.ndarray) -> np.ndarray:
    return np.concatenate([X, np.zeros((X.shape[0], 1), X.dtype)], axis=1)


def _core_options(field: str, **kw: Any) -> dict[str, Any]:
    return {**{k: {**OPTIONS, **kw}[k] for k in CORE}, "field": field}


def _targets(fn: Any, *args: Any) -> list[str]:
    """The XLA custom calls of fn's jaxpr, in order."""
    return re.findall(r"target_name=(\w+)", str(jax.make_jaxpr(fn)(*args)))


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("trajectory", [False, True])
def test_values_and_gradients_equal_the_cores_bitwise(
    field: str, dtype: str, per_sample: bool, trajectory: bool
) -> None:
    params, (X, U, times) = _params(field, dtype), _data(dtype)
    if not per_sample:
        times = times[0]
    t = 2.0 * np.arange(7) / 6 if trajectory else None  # the step grid j T / steps
    want = _core.driven_solve(params, _x0(X), U, times, t=t, **_core_options(field))
    cot = np.random.default_rng(1).normal(size=want.shape).astype(dtype)

    def f(p: Any, x: Any, u: Any) -> Any:
        out = rj.odeint(p, x, u=u, times=jnp.asarray(times), field=field,
                        trajectory=trajectory, **OPTIONS)  # fmt: skip
        return out, jnp.sum(out * cot)

    out, _ = jax.jit(f)(_j(params), jnp.asarray(X), jnp.asarray(U))
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out), want)
    grad = jax.jit(jax.grad(lambda p, x, u: f(p, x, u)[1], argnums=(0, 1, 2)))
    gp, gX, gU = grad(_j(params), jnp.asarray(X), jnp.asarray(U))
    grads, dx0, dU = _core.driven_vjp(params, _x0(X), U, times, cot, t=t, **_core_options(field))
    np.testing.assert_array_equal(np.asarray(gU), dU)
    np.testing.assert_array_equal(np.asarray(gX), dx0[:, :2])
    assert np.all(np.asarray(gU)[np.isnan(U)] == 0)
    for k in params:
        np.testing.assert_array_equal(np.asarray(gp[k]), grads[k])


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_equals_resodes_neural_ode(field: str) -> None:
    """The weights of resode.NeuralODE(inputs=C): its trajectory, bitwise."""
    model = _model(field, interpolation="linear", method="midpoint")
    params = _j({k: model.params[k] for k in resode.models.field_param_names(field)})
    X, U, times = _data()
    options = dict(OPTIONS, field=field, interpolation="linear", method="midpoint")
    got = rj.odeint(params, X, u=U, times=times, trajectory=True, **options)
    want = model.trajectory(X, u=U, times=times)
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize(("interpolation", "method"), [("cubic", "rk4"), ("linear", "midpoint")])
@pytest.mark.parametrize("trajectory", [False, True])
def test_check_grads(field: str, interpolation: str, method: str, trajectory: bool) -> None:
    """Central differences along random directions of the parameters, X and U (no NaN)."""
    X, U, times = _data(N=3, L=5)
    U = np.nan_to_num(U, nan=0.5)
    options = dict(OPTIONS, field=field, interpolation=interpolation, method=method)

    def f(p: Any, x: Any, u: Any) -> Any:
        return rj.odeint(p, x, u=u, times=times[0], trajectory=trajectory, **options)

    check_grads(f, (_j(_params(field)), jnp.asarray(X), jnp.asarray(U)), order=1,
                modes=["rev"], atol=1e-7, rtol=1e-7, eps=1e-6)  # fmt: skip


def test_a_training_step_is_two_custom_calls_and_no_copy() -> None:
    """value_and_grad under jit: the forward call, the VJP call, and no conversion or copy of
    the inputs (XLA hands the core its own buffers; augment=0: no padding of X)."""
    X, U, times = _data()
    model = resode.NeuralODE(2, field="bottleneck", hidden=4, pieces=3, inputs=2, seed=0)
    params = _j({k: model.params[k] for k in ("W1", "b1", "W2", "b2")})
    options = dict(OPTIONS, field="bottleneck", augment=0)

    def loss(p: Any, x: Any, u: Any) -> Any:
        return jnp.sum(rj.odeint(p, x, u=u, times=times, **options) ** 2)

    step = jax.value_and_grad(loss, argnums=(0, 1, 2))
    args = (params, jnp.asarray(X), jnp.asarray(U))
    assert _targets(step, *args) == ["resode_driven", "resode_driven_vjp"]
    text = str(jax.make_jaxpr(step)(*args))
    assert "convert_element_type" not in text and "copy" not in text


def test_times_default_to_the_observation_index() -> None:
    params, (X, U, _) = _j(_params()), _data()
    a = rj.odeint(params, X, u=U, **OPTIONS)
    b = rj.odeint(params, X, u=U, times=jnp.arange(6.0), **OPTIONS)
    c = rj.odeint(params, X, u=U, times=jnp.arange(6), **OPTIONS)  # integer times
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("trajectory", [False, True])
def test_vmap_over_batches(trajectory: bool) -> None:
    """Each batch element is its own problem (its own grid): equal to the element alone,
    values and per-example gradients, bitwise."""
    np_params = _params("outside")
    params = _j(np_params)
    rng = np.random.default_rng(2)
    Xs = jnp.asarray(rng.normal(size=(3, 4, 2)))
    Us = jnp.asarray(rng.normal(size=(3, 4, 5, 2)))
    times = jnp.asarray(np.cumsum(rng.uniform(0.2, 0.5, size=(3, 5)), axis=1))

    def solve(x: Any, u: Any, s: Any) -> Any:
        return rj.odeint(params, x, u=u, times=s, trajectory=trajectory, **OPTIONS)

    def loss(p: Any, x: Any, u: Any, s: Any) -> Any:
        return jnp.sum(rj.odeint(p, x, u=u, times=s, trajectory=trajectory, **OPTIONS) ** 2)

    out = jax.jit(jax.vmap(solve))(Xs, Us, times)
    per = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(None, 0, 0, 0)))(
        params, Xs, Us, times
    )
    t = 2.0 * np.arange(7) / 6 if trajectory else None
    for i in range(3):
        alone = _core.driven_solve(np_params, _x0(np.asarray(Xs[i])), np.asarray(Us[i]),
                                   np.asarray(times[i]), t=t,
                                   **_core_options("outside"))  # fmt: skip
        np.testing.assert_array_equal(np.asarray(out[i]), alone)
        gp, gX, gU = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, Xs[i], Us[i], times[i])
        np.testing.assert_array_equal(np.asarray(per[1][i]), np.asarray(gX))
        np.testing.assert_array_equal(np.asarray(per[2][i]), np.asarray(gU))
        for k in params:
            np.testing.assert_array_equal(np.asarray(per[0][k][i]), np.asarray(gp[k]))


def test_vmap_over_parameters() -> None:
    base = _params("inside")
    stacked = {k: jnp.stack([jnp.asarray(v), jnp.asarray(v) * 0.5]) for k, v in base.items()}
    X, U, times = _data()
    options = dict(OPTIONS, field="inside")
    out = jax.vmap(lambda p: rj.odeint(p, X, u=U, times=times, **options))(stacked)
    half = {k: v * 0.5 for k, v in base.items()}
    want = _core.driven_solve(half, _x0(X), U, times, **_core_options("inside"))
    np.testing.assert_array_equal(np.asarray(out[1]), want)


def test_nested_vmaps_over_different_arguments_are_refused() -> None:
    params = _j(_params())
    stacked = {k: jnp.stack([v, v * 0.5]) for k, v in params.items()}
    rng = np.random.default_rng(0)
    Xs, Us = jnp.asarray(rng.normal(size=(2, 3, 2))), jnp.asarray(rng.normal(size=(2, 3, 4, 2)))

    def f(p: Any, x: Any, u: Any) -> Any:
        return rj.odeint(p, x, u=u, **OPTIONS)

    nested = jax.vmap(jax.vmap(f, in_axes=(None, 0, 0)), in_axes=(0, None, None))
    with pytest.raises(Exception, match=r"nested jax\.vmap over different arguments"):
        jax.block_until_ready(nested(stacked, Xs, Us))


def test_an_encoder_upstream_trains_through_u() -> None:
    """A linear encoder (raw inputs (N, L, 3) -> 2 input channels) before the flow: its
    gradient is non-zero, equals central differences of the loss, and gradient steps lower
    the loss."""
    params = _j(_params("bottleneck"))
    rng = np.random.default_rng(5)
    X = jnp.asarray(rng.normal(size=(6, 2)))
    V, y = jnp.asarray(rng.normal(size=(6, 7, 3))), jnp.asarray(rng.normal(size=(6, 3)))
    E = jnp.asarray(rng.normal(size=(3, 2)) / 2)
    options = dict(OPTIONS, field="bottleneck")

    def loss(E: Any, p: Any) -> Any:
        return jnp.mean((rj.odeint(p, X, u=V @ E, times=jnp.linspace(0, 2, 7), **options)
                         - y) ** 2)  # fmt: skip

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    gE, _ = grad(E, params)
    assert np.all(np.asarray(gE) != 0)
    h, numeric = 1e-6, np.zeros(E.shape)
    for idx in np.ndindex(*E.shape):
        up, down = E.at[idx].add(h), E.at[idx].add(-h)
        numeric[idx] = (float(loss(up, params)) - float(loss(down, params))) / (2 * h)
    np.testing.assert_allclose(np.asarray(gE), numeric, rtol=1e-7, atol=1e-10)
    first = float(loss(E, params))
    for _ in range(20):
        gE, gp = grad(E, params)
        E = E - 0.2 * gE
        params = {k: v - 0.2 * gp[k] for k, v in params.items()}
    assert float(loss(E, params)) < 0.8 * first


def test_float32_and_shape_errors() -> None:
    params, (X, U, times) = _j(_params(dtype="float32")), _data("float32")
    out = rj.odeint(params, X, u=U, times=times, **OPTIONS)
    assert out.dtype == jnp.float32
    g = jax.grad(lambda p: rj.odeint(p, X, u=U, times=times, **OPTIONS).sum())(params)
    assert g["W"].dtype == jnp.float32
    with pytest.raises(TypeError, match=r"^X, u and params must have one dtype"):
        rj.odeint(params, X, u=U.astype(np.float64), **OPTIONS)
    with pytest.raises(ValueError, match=r"^u must have shape \(4, L, C\)"):
        rj.odeint(params, X, u=U[0], **OPTIONS)
    with pytest.raises(ValueError, match=r"^params\['W'\] must have shape \(3, 3, 6\)"):
        rj.odeint(params, X, u=np.zeros((4, 5, 3), np.float32), **OPTIONS)
    with pytest.raises(ValueError, match=r"^times must have shape \(6,\) \(shared\) or \(4, 6\)"):
        rj.odeint(params, X, u=U, times=times[:, :5], **OPTIONS)
    with pytest.raises(TypeError, match=r"^times must be float32, float64, int32 or int64"):
        rj.odeint(params, X, u=U, times=np.ones(6, bool), **OPTIONS)
    with pytest.raises(ValueError, match=r"^u \(inputs\) runs with gradient='discrete'"):
        rj.odeint(params, X, u=U, gradient="adjoint", **OPTIONS)
    with pytest.raises(ValueError, match=r"^times and interpolation apply with inputs u only"):
        rj.odeint(params, X, times=times, T=1.0)


def test_errors_on_the_values_surface_with_resodes_message() -> None:
    params, (X, U, times) = _j(_params()), _data()
    with pytest.raises(Exception, match="times must be strictly increasing"):
        jax.block_until_ready(rj.odeint(params, X, u=U, times=times[:, ::-1], **OPTIONS))
    with pytest.raises(Exception, match=r"U contains Inf"):
        jax.block_until_ready(rj.odeint(params, X, u=np.where(np.isnan(U), np.inf, U), **OPTIONS))
    with pytest.raises(Exception, match=r"x0 contains NaN or Inf"):
        jax.block_until_ready(rj.odeint(params, X * np.nan, u=U, **OPTIONS))
    bad = dict(params, W=params["W"].at[0, 0, 0].set(jnp.nan))
    with pytest.raises(Exception, match=r"params\['W'\] contains NaN or Inf"):
        jax.block_until_ready(rj.odeint(bad, X, u=U, **OPTIONS))


def test_float64_inputs_without_x64_are_refused() -> None:
    params, (X, U, times) = _params(), _data()
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    X32, U32 = X.astype(np.float32), U.astype(np.float32)
    with jax.enable_x64(False):
        for p, x, u, s, name in [(params, X, U, None, "X"),
                                 (params32, X32, U32, times, "times")]:  # fmt: skip
            with pytest.raises(TypeError, match=rf"^{re.escape(name)} is float64 .*jax_enable_x64"):
                rj.odeint(p, x, u=u, times=s, **OPTIONS)
        out = rj.odeint(params32, X32, u=U32, times=times.astype(np.float32), **OPTIONS)
        assert out.dtype == jnp.float32
