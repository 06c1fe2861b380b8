"""resode.jax.cdeint: values and gradients (parameters and U) bitwise those of the core's
cde_solve / cde_vjp, central differences (jax.test_util.check_grads), jit, vmap over series
and over parameters, per-example gradients, no copies (the jaxpr holds the two custom calls
and nothing that converts or copies), an encoder trained through it, float32/float64 and the
errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import resode.jax as rj  # noqa: E402
from jax.test_util import check_grads  # noqa: E402
from resode import _cde_bridge, _core  # noqa: E402

FIELDS = {"outside": None, "inside": None, "bottleneck": 4}
OPTIONS: dict[str, Any] = dict(activation="tanh", output_activation="tanh",
                               interpolation="cubic", method="rk4", substeps=2)  # fmt: skip


def _params(field: str = "outside", dtype: str = "float64") -> dict[str, np.ndarray]:
    return _cde_bridge.initial_params(2, 3, field, FIELDS[field], 2, np.dtype(dtype), 3)


def _series(dtype: str = "float64", N: int = 4, L: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """U (N, L, 2) with missing values and padding (lengths 6, 4, 5, 6); per-sample times."""
    rng = np.random.default_rng(0)
    U = rng.normal(size=(N, L, 2))
    U[0, 2, 1] = np.nan
    U[1, 4:] = np.nan
    U[2, 0, 0] = np.nan
    U[2, 5:] = np.nan
    times = np.cumsum(rng.uniform(0.3, 1.0, size=(N, L)), axis=1)
    times[1, 4:] = np.nan
    return U.astype(dtype), times.astype(dtype)


def _j(params: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: jnp.asarray(v) for k, v in params.items()}


def _targets(fn: Any, *args: Any) -> list[str]:
    """The XLA custom calls of fn's jaxpr, in order."""
    return re.findall(r"target_name=(\w+)", str(jax.make_jaxpr(fn)(*args)))


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("with_t", [False, True])
def test_values_and_gradients_equal_the_cores_bitwise(
    field: str, dtype: str, per_sample: bool, with_t: bool
) -> None:
    params, (U, times) = _params(field, dtype), _series(dtype)
    if not per_sample:
        times = times[0]
    t = np.array([0.5, 1.5, 2.0], dtype) if with_t else None
    options = dict(OPTIONS, field=field)
    want = _core.cde_solve(params, U, times, t=t, **options)
    cot = np.random.default_rng(1).normal(size=want.shape).astype(dtype)

    def f(p: Any, u: Any) -> Any:
        out = rj.cdeint(p, u, jnp.asarray(times), t=None if t is None else jnp.asarray(t),
                        **options)  # fmt: skip
        return out, jnp.sum(out * cot)

    out, _ = jax.jit(f)(_j(params), jnp.asarray(U))
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out), want)
    gp, gU = jax.jit(jax.grad(lambda p, u: f(p, u)[1], argnums=(0, 1)))(_j(params), jnp.asarray(U))
    grads, dU = _core.cde_vjp(params, U, times, cot, t=t, **options)
    np.testing.assert_array_equal(np.asarray(gU), dU)
    assert np.all(np.asarray(gU)[np.isnan(U)] == 0)
    for k in params:
        np.testing.assert_array_equal(np.asarray(gp[k]), grads[k])


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize(("interpolation", "method"), [("cubic", "rk4"), ("linear", "midpoint")])
@pytest.mark.parametrize("with_t", [False, True])
def test_check_grads(field: str, interpolation: str, method: str, with_t: bool) -> None:
    """Central differences along random directions of the parameters and U."""
    U, times = _series(N=3, L=5)
    t = jnp.asarray([0.7, 2.0]) if with_t else None
    options = dict(OPTIONS, field=field, interpolation=interpolation, method=method)

    def f(p: Any, u: Any) -> Any:
        return rj.cdeint(p, u, jnp.asarray(times), t=t, **options)

    check_grads(f, (_j(_params(field)), jnp.asarray(U)), order=1, modes=["rev"], atol=1e-7,
                rtol=1e-7, eps=1e-6)  # fmt: skip


def test_a_training_step_is_two_custom_calls_and_no_copy() -> None:
    """value_and_grad under jit: the forward call, the VJP call, and no conversion or copy of
    the inputs (XLA hands the core its own buffers)."""
    params, (U, times) = _j(_params("bottleneck")), _series()
    options = dict(OPTIONS, field="bottleneck")

    def loss(p: Any, u: Any) -> Any:
        return jnp.sum(rj.cdeint(p, u, times, **options) ** 2)

    step = jax.value_and_grad(loss, argnums=(0, 1))
    assert _targets(step, params, jnp.asarray(U)) == ["resode_cdeint", "resode_cdeint_vjp"]
    text = str(jax.make_jaxpr(step)(params, jnp.asarray(U)))
    assert "convert_element_type" not in text and "copy" not in text


def test_times_default_to_the_observation_index() -> None:
    params, (U, _) = _j(_params()), _series()
    a = rj.cdeint(params, U, **OPTIONS)
    b = rj.cdeint(params, U, jnp.arange(6.0), **OPTIONS)
    c = rj.cdeint(params, U, jnp.arange(6), **OPTIONS)  # integer times
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("with_t", [False, True])
def test_vmap_over_batches_of_series(with_t: bool) -> None:
    """Each batch element is its own problem (its own observation window): equal to the
    element alone, values and gradients, bitwise."""
    np_params = _params("outside")
    params = _j(np_params)
    rng = np.random.default_rng(2)
    batch = jnp.asarray(rng.normal(size=(3, 4, 5, 2)))
    times = jnp.asarray(np.cumsum(rng.uniform(0.5, 1.0, size=(3, 5)), axis=1))
    t = jnp.asarray([1.0, 1.5]) if with_t else None

    def loss(p: Any, u: Any, s: Any) -> Any:
        return jnp.sum(rj.cdeint(p, u, s, t=t, **OPTIONS) ** 2)

    def solve(u: Any, s: Any) -> Any:
        return rj.cdeint(params, u, s, t=t, **OPTIONS)

    out = jax.jit(jax.vmap(solve))(batch, times)
    per = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0, 0)))(
        params, batch, times
    )
    for i in range(3):
        alone = _core.cde_solve(np_params, np.asarray(batch[i]), np.asarray(times[i]),
                                t=None if t is None else np.asarray(t), field="outside",
                                **OPTIONS)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(out[i]), alone)
        gp, gU = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, batch[i], times[i])
        np.testing.assert_array_equal(np.asarray(per[1][i]), np.asarray(gU))
        for k in params:
            np.testing.assert_array_equal(np.asarray(per[0][k][i]), np.asarray(gp[k]))


def test_vmap_over_parameters() -> None:
    base = _params("inside")
    stacked = {k: jnp.stack([jnp.asarray(v), jnp.asarray(v) * 0.5]) for k, v in base.items()}
    U, times = _series()
    options = dict(OPTIONS, field="inside")
    out = jax.vmap(lambda p: rj.cdeint(p, U, times, **options))(stacked)
    half = {k: v * 0.5 for k, v in base.items()}
    np.testing.assert_array_equal(np.asarray(out[1]), _core.cde_solve(half, U, times, **options))


def test_nested_vmaps_over_different_arguments_are_refused() -> None:
    params = _j(_params())
    stacked = {k: jnp.stack([v, v * 0.5]) for k, v in params.items()}
    batch = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 2)))

    def f(p: Any, u: Any) -> Any:
        return rj.cdeint(p, u, **OPTIONS)

    nested = jax.vmap(jax.vmap(f, in_axes=(None, 0)), in_axes=(0, None))
    with pytest.raises(Exception, match=r"nested jax\.vmap over different arguments"):
        jax.block_until_ready(nested(stacked, batch))


def test_an_encoder_upstream_trains_through_cdeint() -> None:
    """A linear encoder (raw inputs (N, L, 3) -> channels 2) before the CDE: its gradient is
    non-zero, equals central differences of the loss, and gradient steps lower the loss."""
    params = _j(_params("bottleneck"))
    rng = np.random.default_rng(5)
    V, y = jnp.asarray(rng.normal(size=(6, 7, 3))), jnp.asarray(rng.normal(size=(6, 3)))
    E = jnp.asarray(rng.normal(size=(3, 2)) / 2)
    options = dict(OPTIONS, field="bottleneck")

    def loss(E: Any, p: Any) -> Any:
        return jnp.mean((rj.cdeint(p, V @ E, **options) - y) ** 2)

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


def test_float32_and_dtype_errors() -> None:
    params, (U, times) = _j(_params(dtype="float32")), _series("float32")
    out = rj.cdeint(params, U, times, **OPTIONS)
    assert out.dtype == jnp.float32
    g = jax.grad(lambda p: rj.cdeint(p, U, times, **OPTIONS).sum())(params)
    assert g["W"].dtype == jnp.float32
    with pytest.raises(TypeError, match=r"^U and params must have one dtype \(no silent casts\)"):
        rj.cdeint(params, U.astype(np.float64), **OPTIONS)
    with pytest.raises(ValueError, match=r"^U must have shape \(N, L, C\)"):
        rj.cdeint(params, U[0], **OPTIONS)
    with pytest.raises(ValueError, match=r"^params\['A'\] must have shape \(state, 3\)"):
        rj.cdeint(params, np.zeros((2, 4, 3), np.float32), **OPTIONS)
    with pytest.raises(ValueError, match=r"^t must be a non-empty 1-D array"):
        rj.cdeint(params, U, times, t=np.zeros((2, 2), np.float32), **OPTIONS)
    with pytest.raises(TypeError, match=r"^times must be float32, float64, int32 or int64"):
        rj.cdeint(params, U, np.ones(6, bool), **OPTIONS)


def test_errors_on_the_values_surface_with_resodes_message() -> None:
    params, (U, times) = _j(_params()), _series()
    with pytest.raises(Exception, match="times must be strictly increasing"):
        jax.block_until_ready(rj.cdeint(params, U, times[:, ::-1], **OPTIONS))
    with pytest.raises(Exception, match=r"U contains Inf"):
        jax.block_until_ready(rj.cdeint(params, np.where(np.isnan(U), np.inf, U), **OPTIONS))
    bad = dict(params, W=params["W"].at[0, 0, 0].set(jnp.nan))
    with pytest.raises(Exception, match=r"params\['W'\] contains NaN or Inf"):
        jax.block_until_ready(rj.cdeint(bad, U, **OPTIONS))


def test_float64_inputs_without_x64_are_refused() -> None:
    params, (U, times) = _params(), _series()
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    with jax.enable_x64(False):
        for p, u, s, name in [(params, U, None, "U"),
                              (params32, U.astype(np.float32), times, "times")]:  # fmt: skip
            with pytest.raises(TypeError, match=rf"^{re.escape(name)} is float64 .*jax_enable_x64"):
                rj.cdeint(p, u, s, **OPTIONS)
        out = rj.cdeint(params32, U.astype(np.float32), times.astype(np.float32), **OPTIONS)
        assert out.dtype == jnp.float32
