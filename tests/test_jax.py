"""resode.jax: gradients (jax.test_util.check_grads and resode.odeint_vjp), jit, vmap over
samples and over parameters, float32/float64, and the dtype errors."""

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
from resode import _bridge  # noqa: E402

FIELDS = {"outside": None, "inside": None, "bottleneck": 3}
OPTS: dict[str, Any] = dict(T=0.8, substeps=2, method="rk4", activation="tanh", augment=1)


def _np_params(field: str, dtype: str = "float64") -> dict[str, np.ndarray]:
    model = resode.NeuralODE(2, pieces=2, field=field, hidden=FIELDS[field], augment=1,
                             dtype=dtype, seed=4)  # fmt: skip
    return {n: model.params[n] for n in resode.models.field_param_names(field)}


def _X(N: int = 4, dtype: Any = np.float64) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N, 2)).astype(dtype)


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("trajectory", [False, True])
def test_check_grads(field: str, trajectory: bool) -> None:
    params = {k: jnp.asarray(v) for k, v in _np_params(field).items()}

    def f(p: Any, X: Any) -> Any:
        return rj.odeint(p, X, field=field, trajectory=trajectory, **OPTS)

    check_grads(f, (params, jnp.asarray(_X())), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
def test_grad_and_jit_equal_the_numpy_api_bitwise(gradient: str) -> None:
    params, X = _np_params("bottleneck"), _X()
    v = np.random.default_rng(1).normal(size=(5, 4, 3))  # every state: 2 pieces x 2 + 1

    def f(p: Any, x: Any) -> Any:
        traj = rj.odeint(p, x, field="bottleneck", gradient=gradient, trajectory=True, **OPTS)
        return jnp.sum(traj * v)

    jp = {k: jnp.asarray(a) for k, a in params.items()}
    value, (gp, gX) = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(jp, jnp.asarray(X))
    traj = resode.odeint(params, X, field="bottleneck", **OPTS)
    assert float(value) == pytest.approx(float(np.sum(traj * v)), rel=1e-14)
    grads, dX = resode.odeint_vjp(params, X, v, field="bottleneck", gradient=gradient, **OPTS)
    for k in grads:
        np.testing.assert_array_equal(np.asarray(gp[k]), grads[k])
    np.testing.assert_array_equal(np.asarray(gX), dX)


@pytest.mark.parametrize("trajectory", [False, True])
def test_vmap_over_samples_is_one_custom_call(trajectory: bool) -> None:
    """expand_dims: the batch reaches the core as one call over 5 x 4 samples (the handler
    merges a batch with shared parameters), and equals the elements run alone."""
    np_params = _np_params("outside")
    params = {k: jnp.asarray(v) for k, v in np_params.items()}
    batch = jnp.asarray(np.random.default_rng(2).normal(size=(5, 4, 2)))

    def f(x: Any) -> Any:
        return rj.odeint(params, x, field="outside", trajectory=trajectory, **OPTS)

    text = str(jax.make_jaxpr(jax.vmap(f))(batch))
    assert text.count("ffi_call") == 1 and "f64[5,4,2]" in text
    out = jax.jit(jax.vmap(f))(batch)
    for i in range(5):
        alone = resode.odeint(np_params, np.asarray(batch[i]), field="outside", **OPTS)
        np.testing.assert_array_equal(np.asarray(out[i]), alone if trajectory else alone[-1])


def _targets(fn: Any, *args: Any) -> list[str]:
    """The XLA custom calls of fn's jaxpr, in order."""
    return re.findall(r"target_name=(\w+)", str(jax.make_jaxpr(fn)(*args)))


@pytest.mark.parametrize(("checkpoints", "trajectory"), [(None, False), (None, True), (2, False)])
@pytest.mark.parametrize("limit", ["STAGE_TAPE_WORK", "STAGE_TAPE_BYTES"])
def test_a_training_step_sweeps_forward_once(
    monkeypatch: pytest.MonkeyPatch, checkpoints: int | None, trajectory: bool, limit: str
) -> None:
    """value_and_grad: one forward call that keeps the stage tape (limit STAGE_TAPE_WORK 0:
    for any field) or the states (STAGE_TAPE_BYTES 0), one reverse call from it (no forward
    sweep inside the VJP), and the gradients of the former VJP from X, bitwise."""
    monkeypatch.setattr(_bridge, limit, 0)
    params, X = _np_params("bottleneck"), _X(N=37)
    v = np.random.default_rng(1).normal(size=(5, 37, 3) if trajectory else (37, 3))

    def f(p: Any, x: Any) -> Any:
        out = rj.odeint(p, x, field="bottleneck", checkpoints=checkpoints,
                        trajectory=trajectory, **OPTS)  # fmt: skip
        return jnp.sum(out * v)

    jp, jX = {k: jnp.asarray(a) for k, a in params.items()}, jnp.asarray(X)
    step = jax.value_and_grad(f, argnums=(0, 1))
    assert _targets(step, jp, jX) == ["resode_odeint_states", "resode_odeint_vjp_states"]
    _, (gp, gX) = jax.jit(step)(jp, jX)
    K = 0 if checkpoints is None else checkpoints
    grads, dX = resode._core.vjp(X, v, list(params.values()), field="bottleneck",
                                 activation="tanh", method="rk4", dt=0.2, substeps=2, augment=1,
                                 gradient="discrete", checkpoints=K)  # fmt: skip
    for k, g in zip(params, grads):
        np.testing.assert_array_equal(np.asarray(gp[k]), g)
    np.testing.assert_array_equal(np.asarray(gX), dX)


@pytest.mark.parametrize("trajectory", [False, True])
@pytest.mark.parametrize("checkpoints", [None, 3])
def test_vmapped_training_step_keeps_each_elements_states(
    monkeypatch: pytest.MonkeyPatch, trajectory: bool, checkpoints: int | None
) -> None:
    monkeypatch.setattr(_bridge, "STAGE_TAPE_WORK", 0)  # the stage tape without checkpoints
    """vmap over X with shared parameters: one forward call over the whole batch, its kept
    states regrouped per element; the per-element gradients equal those run alone, bitwise."""
    np_params = _np_params("outside")
    params = {k: jnp.asarray(a) for k, a in np_params.items()}
    batch = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5, 2)))

    def loss(p: Any, x: Any) -> Any:
        out = rj.odeint(p, x, field="outside", checkpoints=checkpoints, trajectory=trajectory,
                        **OPTS)  # fmt: skip
        return jnp.sum(out**2)

    per = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0)))(params, batch)
    for i in range(3):
        alone = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, batch[i])
        for k in params:
            np.testing.assert_array_equal(np.asarray(per[0][k][i]), np.asarray(alone[0][k]))
        np.testing.assert_array_equal(np.asarray(per[1][i]), np.asarray(alone[1]))


def test_vmap_over_parameters_and_per_example_gradients() -> None:
    base = _np_params("inside")
    stacked = {k: jnp.stack([jnp.asarray(v), jnp.asarray(v) * 0.5]) for k, v in base.items()}
    X = jnp.asarray(_X())
    out = jax.vmap(lambda p: rj.odeint(p, X, field="inside", **OPTS))(stacked)
    half = {k: v * 0.5 for k, v in base.items()}
    np.testing.assert_array_equal(
        np.asarray(out[1]), resode.odeint(half, np.asarray(X), field="inside", **OPTS)[-1]
    )
    # per-sample gradients of the shared parameters: one VJP per batch element
    p = {k: jnp.asarray(v) for k, v in base.items()}
    per_sample = jax.vmap(
        jax.grad(lambda p, x: jnp.sum(rj.odeint(p, x[None], field="inside", **OPTS) ** 2)),
        in_axes=(None, 0),
    )(p, X)
    for i in range(4):
        x = np.asarray(X[i : i + 1])
        final = resode.odeint(base, x, field="inside", **OPTS)[-1]
        grads, _ = resode.odeint_vjp(base, x, 2 * final, field="inside", **OPTS)
        np.testing.assert_allclose(np.asarray(per_sample["W"][i]), grads["W"], rtol=1e-13)


def test_float32_and_dtype_errors() -> None:
    params = {k: jnp.asarray(v) for k, v in _np_params("outside", "float32").items()}
    X32 = jnp.asarray(_X(dtype=np.float32))
    out = rj.odeint(params, X32, field="outside", **OPTS)
    assert out.dtype == jnp.float32
    g = jax.grad(lambda p: rj.odeint(p, X32, field="outside", **OPTS).sum())(params)
    assert g["W"].dtype == jnp.float32
    with pytest.raises(TypeError, match=r"^X and params must have one dtype \(no silent casts\)"):
        rj.odeint(params, jnp.asarray(_X()), field="outside", **OPTS)
    with pytest.raises(ValueError, match=r"^X must have shape \(N, 2\)"):
        rj.odeint(params, jnp.zeros((3, 3), jnp.float32), field="outside", **OPTS)


def test_float64_inputs_without_x64_are_refused() -> None:
    """JAX's default 32-bit mode would turn float64 NumPy inputs into float32 silently: resode
    refuses them and names the switch; float32 still runs. (The module turns x64 on for the
    other tests: jax.enable_x64(False) restores the default for this block only.)"""
    np_params = _np_params("outside")
    params32 = {k: v.astype(np.float32) for k, v in np_params.items()}
    with jax.enable_x64(False):
        assert not jax.config.jax_enable_x64
        cases = [(np_params, _X(), "X"), (params32, _X(), "X"),
                 (np_params, _X(dtype=np.float32), "params['W']")]  # fmt: skip
        for params, X, name in cases:
            with pytest.raises(TypeError, match=rf"^{re.escape(name)} is float64 .*jax_enable_x64"):
                rj.odeint(params, X, field="outside", **OPTS)
        out = rj.odeint(params32, _X(dtype=np.float32), field="outside", **OPTS)
        assert out.dtype == jnp.float32
    # with x64 on, float64 NumPy inputs compute in float64
    assert rj.odeint(np_params, _X(), field="outside", **OPTS).dtype == jnp.float64


def test_nested_vmaps_over_different_arguments_are_refused() -> None:
    params = {k: jnp.asarray(v) for k, v in _np_params("outside").items()}
    stacked = {k: jnp.stack([v, v * 0.5, v * 0.25]) for k, v in params.items()}
    X3 = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 2)))

    def f(p: Any, x: Any) -> Any:
        return rj.odeint(p, x, field="outside", **OPTS)

    nested = jax.vmap(jax.vmap(f, in_axes=(None, 0)), in_axes=(0, None))  # 3 x 3 pairs
    with pytest.raises(Exception, match=r"nested jax\.vmap over different arguments"):
        jax.block_until_ready(nested(stacked, X3))
    # the same batch for both (zipped, not nested) is fine
    zipped = jax.vmap(f)(stacked, X3)
    for i in range(3):
        one = {k: np.asarray(v[i]) for k, v in stacked.items()}
        alone = resode.odeint(one, np.asarray(X3[i]), field="outside", **OPTS)[-1]
        np.testing.assert_array_equal(np.asarray(zipped[i]), alone)
