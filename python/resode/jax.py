"""resode as a JAX function: the flow of a neural ODE or ResNet, differentiable with
``jax.grad`` / ``jax.vjp`` and usable inside ``jax.jit`` and ``jax.vmap``.

:func:`odeint` is a ``jax.custom_vjp`` whose forward and backward passes are
``jax.pure_callback`` calls into the core (the states, and the core's discrete or adjoint
vector-Jacobian product). The callbacks use ``vmap_method="expand_dims"``: under ``jax.vmap``
the core receives the batch as a leading axis (unbatched arguments with a leading 1), so
vmapping over a batch axis of ``X`` with shared parameters becomes **one** core call over all
the samples; vmapping over the parameters, and the backward pass of a vmapped call (each batch
element has its own parameter cotangent), run one core call per batch element. float32 always;
float64 with ``jax.config.update("jax_enable_x64", True)``; no silent casts.

Requires ``pip install "resode[jax]"``; ``import resode`` never imports JAX.

Examples
--------
>>> import jax, jax.numpy as jnp, resode.jax
>>> params = {"W": jnp.zeros((4, 2, 2), jnp.float32), "b": jnp.ones((4, 2), jnp.float32)}
>>> X = jnp.zeros((3, 2), jnp.float32)
>>> loss = lambda p: resode.jax.odeint(p, X, T=1.0).sum()
>>> jax.grad(loss)(params)["b"].shape
(4, 2)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _bridge

__all__ = ["odeint"]


# --------------------------------------------------------------------------- host side


def _split_batch(arrays: list[np.ndarray], base_ndims: list[int]) -> tuple[tuple[int, ...], bool]:
    """The broadcast batch shape of arrays with leading batch axes (vmap's expand_dims), and
    whether only the first array (X) is batched."""
    batches = [a.shape[: a.ndim - nd] for a, nd in zip(arrays, base_ndims)]
    shape = np.broadcast_shapes(*batches)
    shared = all(math.prod(b) == 1 for b in batches[1:])
    return shape, shared


def _base_ndims(theta: list[np.ndarray]) -> list[int]:
    return [2] + [3 if i % 2 == 0 else 2 for i in range(len(theta))]  # X; W (3-D), b (2-D)


def _host_forward(flow: _bridge.Flow, X: Any, *theta: Any) -> np.ndarray:
    arrays = [np.asarray(X), *(np.asarray(t) for t in theta)]
    ndims = _base_ndims(list(theta))
    batch, shared = _split_batch(arrays, ndims)
    if not batch:
        return _bridge.forward(flow, arrays[0], arrays[1:])
    if shared:  # one core call over every sample of the batch
        theta0 = [a.reshape(a.shape[a.ndim - nd :]) for a, nd in zip(arrays[1:], ndims[1:])]
        Xb = np.broadcast_to(arrays[0], (*batch, *arrays[0].shape[-2:]))
        N = Xb.shape[-2]
        out = _bridge.forward(flow, np.ascontiguousarray(Xb.reshape(-1, Xb.shape[-1])), theta0)
        if not flow.trajectory:
            return out.reshape(*batch, N, out.shape[-1])
        out = out.reshape(out.shape[0], *batch, N, out.shape[-1])
        return np.moveaxis(out, 0, len(batch))
    return np.stack(
        [_bridge.forward(flow, *_element(arrays, ndims, batch, idx)) for idx in np.ndindex(*batch)]
    ).reshape(*batch, *flow.output_shape(arrays[0].shape[-2:], arrays[1].shape[-3:]))


def _element(
    arrays: list[np.ndarray], ndims: list[int], batch: tuple[int, ...], idx: tuple[int, ...]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Batch element idx of each array (broadcast), as (X, theta)."""
    out = []
    for a, nd in zip(arrays, ndims):
        full = np.broadcast_to(a, (*batch, *a.shape[a.ndim - nd :]))
        out.append(np.ascontiguousarray(full[idx]))
    return out[0], out[1:]


def _host_vjp(flow: _bridge.Flow, X: Any, *rest: Any) -> tuple[np.ndarray, ...]:
    *theta, cotangent = rest
    arrays = [np.asarray(X), *(np.asarray(t) for t in theta)]
    ndims = _base_ndims(list(theta))
    g = np.asarray(cotangent)
    g_nd = 3 if flow.trajectory else 2
    batch, _ = _split_batch([*arrays, g], [*ndims, g_nd])
    if not batch:
        dtheta, dX = _bridge.vjp(flow, arrays[0], arrays[1:], np.ascontiguousarray(g))
        return (dX, *dtheta)
    results = []
    for idx in np.ndindex(*batch):
        Xe, te = _element(arrays, ndims, batch, idx)
        ge = np.ascontiguousarray(np.broadcast_to(g, (*batch, *g.shape[g.ndim - g_nd :]))[idx])
        dtheta, dX = _bridge.vjp(flow, Xe, te, ge)
        results.append((dX, *dtheta))
    return tuple(
        np.stack([r[i] for r in results]).reshape(*batch, *results[0][i].shape)
        for i in range(len(results[0]))
    )


# --------------------------------------------------------------------------- the function


@functools.lru_cache(maxsize=256)
def _flow_function(flow: _bridge.Flow) -> Callable[..., Any]:
    """The custom_vjp flow for one set of options (built once per options, like a jit)."""

    def forward(X: jax.Array, theta: tuple[jax.Array, ...]) -> jax.Array:
        shape = flow.output_shape(X.shape, theta[0].shape)
        out = jax.ShapeDtypeStruct(shape, X.dtype)
        host = functools.partial(_host_forward, flow)
        return jax.pure_callback(host, out, X, *theta, vmap_method="expand_dims")

    @jax.custom_vjp
    def f(X: jax.Array, theta: tuple[jax.Array, ...]) -> jax.Array:
        return forward(X, theta)

    def f_fwd(X: jax.Array, theta: tuple[jax.Array, ...]) -> tuple[jax.Array, Any]:
        return forward(X, theta), (X, theta)

    def f_bwd(res: Any, g: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        X, theta = res
        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (X, *theta)]
        host = functools.partial(_host_vjp, flow)
        grads = jax.pure_callback(host, tuple(shapes), X, *theta, g, vmap_method="expand_dims")
        return grads[0], tuple(grads[1:])

    f.defvjp(f_fwd, f_bwd)
    return f


def odeint(
    params: Mapping[str, Any],
    X: Any,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str = "outside",
    activation: str = "tanh",
    augment: int = 0,
    gradient: str = "discrete",
    checkpoints: int | None = None,
    trajectory: bool = False,
) -> jax.Array:
    """The flow of ``x' = f(theta(t), x)`` from ``x(0) = [X, 0]`` over ``[0, T]``.

    Differentiable (reverse mode: ``jax.grad``, ``jax.vjp``) with respect to ``params`` (a
    dict pytree) and ``X``; traceable by ``jax.jit`` and ``jax.vmap``.

    Parameters
    ----------
    params : dict of str to jax.Array
        Field parameters named and shaped as :func:`resode.odeint`'s (``W`` ``(pieces, D, D)``,
        ``b`` ``(pieces, D)``, or ``W1``, ``b1``, ``W2``, ``b2``); other keys are ignored.
    X : jax.Array, shape (N, dim)
        Initial states, ``dim = D - augment``; the same dtype as ``params`` (float32, or
        float64 with ``jax_enable_x64``).
    T, substeps, method, field, activation, augment, gradient, checkpoints, trajectory
        As for :func:`resode.torch.odeint`.

    Returns
    -------
    jax.Array
        ``(N, D)`` final states, or ``(steps + 1, N, D)`` with ``trajectory=True``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, resode.jax
    >>> params = {"W": jnp.zeros((2, 2, 2), jnp.float32), "b": jnp.ones((2, 2), jnp.float32)}
    >>> f = jax.jit(lambda p, x: resode.jax.odeint(p, x, T=1.0, trajectory=True))
    >>> f(params, jnp.zeros((5, 2), jnp.float32)).shape
    (3, 5, 2)
    """
    flow, names = _bridge.flow(
        params, tuple(np.shape(X)), T=T, substeps=substeps, method=method, field=field,
        activation=activation, augment=augment, gradient=gradient, checkpoints=checkpoints,
        trajectory=trajectory,
    )  # fmt: skip
    X = jnp.asarray(X) if not isinstance(X, jax.Array) else X
    theta = tuple(params[n] for n in names)
    dtypes = {"X": X.dtype, **{f"params['{n}']": jnp.result_type(params[n]) for n in names}}
    for name, dt in dtypes.items():
        if dt not in (jnp.float32, jnp.float64):
            raise TypeError(f"{name} must be float32 or float64, got {dt}")
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"X and params must have one dtype (no silent casts), got {listed}")
    return _flow_function(flow)(X, theta)
