"""The parameters of a model: their names, shapes and initialisation."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "cde_param_shapes",
    "field_param_names",
    "field_param_shapes",
    "init_cde_params",
    "init_params",
    "param_shapes",
]


def field_param_names(field: str) -> tuple[str, ...]:
    """Names of the field parameters, in the order the core expects them."""
    return ("W1", "b1", "W2", "b2") if field == "bottleneck" else ("W", "b")


def field_param_shapes(field: str, pieces: int, D: int, H: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the field parameters with leading axis `pieces` (layers or control pieces)."""
    if field == "bottleneck":
        return {"W1": (pieces, H, D), "b1": (pieces, H), "W2": (pieces, D, H), "b2": (pieces, D)}
    return {"W": (pieces, D, D), "b": (pieces, D)}


def param_shapes(
    field: str, pieces: int, D: int, hidden: int | None, classes: int
) -> dict[str, tuple[int, ...]]:
    """Shapes of every parameter (the field's, then ``P`` and ``c``) of a model with state
    dimension ``D`` (``hidden`` is used by the bottleneck field only)."""
    H = hidden if field == "bottleneck" and hidden is not None else D
    shapes = field_param_shapes(field, pieces, D, H)
    shapes.update({"P": (classes, D), "c": (classes,)})
    return shapes


def _generator(seed: Any) -> np.random.Generator:
    """``np.random.default_rng(seed)`` for a seed that is None or an integer >= 0."""
    if isinstance(seed, bool) or (seed is not None and not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be None or a non-negative integer, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed}")
    return np.random.default_rng(seed)


def init_params(
    field: str, pieces: int, D: int, H: int, classes: int, dtype: np.dtype, seed: Any
) -> dict[str, np.ndarray]:
    """Initial parameters, as ``torch.nn.Linear`` does it: every weight and bias of a linear map
    with fan-in ``m`` is drawn uniformly from ``[-1/sqrt(m), 1/sqrt(m)]``; drawn in the order
    W, b (or W1, b1, W2, b2), P, c from ``np.random.default_rng(seed)``."""
    rng = _generator(seed)
    shapes = field_param_shapes(field, pieces, D, H)
    shapes.update({"P": (classes, D), "c": (classes,)})
    fan_in = {"W": D, "b": D, "W1": D, "b1": D, "W2": H, "b2": H, "P": D, "c": D}
    params = {}
    for name, shape in shapes.items():
        bound = 1.0 / np.sqrt(fan_in[name])
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


def cde_param_shapes(
    field: str, pieces: int, channels: int, state: int, hidden: int | None, classes: int
) -> dict[str, tuple[int, ...]]:
    """Shapes of every parameter of a neural CDE, in the order the model holds them.

    ``A`` (state, channels) and ``a`` (state,) give the initial state ``z(t_0) = A x_0 + a``;
    the field maps the state to ``state * channels`` outputs (row ``d * channels + c`` of the
    matrix ``F(z)``): ``W`` (pieces, state*channels, state), ``b`` (pieces, state*channels),
    or for the bottleneck ``W1`` (pieces, hidden, state), ``b1`` (pieces, hidden), ``W2``
    (pieces, state*channels, hidden), ``b2`` (pieces, state*channels); then the readout ``P``
    (classes, state) and ``c`` (classes,).
    """
    S, O = state, state * channels
    shapes: dict[str, tuple[int, ...]] = {"A": (S, channels), "a": (S,)}
    if field == "bottleneck":
        H = hidden if hidden is not None else S
        shapes.update(W1=(pieces, H, S), b1=(pieces, H), W2=(pieces, O, H), b2=(pieces, O))
    else:
        shapes.update(W=(pieces, O, S), b=(pieces, O))
    shapes.update(P=(classes, S), c=(classes,))
    return shapes


def init_cde_params(
    field: str,
    pieces: int,
    channels: int,
    state: int,
    hidden: int | None,
    classes: int,
    dtype: np.dtype,
    seed: Any,
) -> dict[str, np.ndarray]:
    """Initial parameters of a neural CDE, as :func:`init_params`: every array of a linear map
    with fan-in ``m`` uniform in ``[-1/sqrt(m), 1/sqrt(m)]`` (``torch.nn.Linear``'s rule; the
    fan-in is ``channels`` for ``A``, ``a``, ``hidden`` for ``W2``, ``b2`` and ``state`` for the
    others), drawn in the order of :func:`cde_param_shapes` from
    ``np.random.default_rng(seed)``."""
    rng = _generator(seed)
    shapes = cde_param_shapes(field, pieces, channels, state, hidden, classes)
    fan_in = {"A": channels, "a": channels, "W2": hidden or state, "b2": hidden or state}
    params = {}
    for name, shape in shapes.items():
        bound = 1.0 / np.sqrt(fan_in.get(name, state))
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params
