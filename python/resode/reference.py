r"""Plain NumPy reference implementation of resode (test oracle and benchmark baseline).

Everything here is vectorised over samples, uses row vectors (a batch of states is an
``(N, D)`` array) and hand-written backward passes; there is no autodiff.

Mathematics
-----------
Inputs ``X`` of shape ``(N, dim)`` are augmented with ``augment`` zero columns,
``x0 = [X, 0]`` of shape ``(N, D)``, ``D = dim + augment``.

Activations ``sigma``: ``tanh``, ``relu`` (``max(x, 0)``, ``sigma'(x) = [x > 0]``),
``sigmoid`` (``1 / (1 + exp(-x))``, evaluated stably), ``leaky_relu``
(``x`` if ``x > 0`` else ``0.01 x``) and ``identity``.

Fields ``f_k`` for layer / piece ``k`` (keys of ``params``; ``K`` layers or pieces)::

    outside     f = sigma(W[k] x + b[k])                   W (K, D, D), b (K, D)
    inside      f = W[k] sigma(x) + b[k]                   W (K, D, D), b (K, D)
    bottleneck  f = W2[k] sigma(W1[k] x + b1[k]) + b2[k]   W1 (K, H, D), b1 (K, H),
                                                           W2 (K, D, H), b2 (K, D)

plus the classifier ``P`` (classes, D), ``c`` (classes,): logits ``z = x P^T + c``, or with
``readout="hardtanh"`` ``z = clip(x P^T + c, -1, 1)``, whose derivative is
``[-1 < x P^T + c < 1]`` (0 at the corners, as PyTorch's ``hardtanh``).

Data losses: ``cross_entropy`` = mean over samples of softmax cross-entropy with integer
labels ``y`` (N,); ``mse`` = mean over all ``N * classes`` entries of ``(z - y)^2``.
Regulariser: ``weight_decay * sum(theta^2)`` over the FIELD parameters (and ``P``, never
``c``, with ``decay_readout``) plus ``l1 * sum |theta|`` over the field parameters, whose
gradient is taken as ``l1 * sign(theta)`` (the subgradient 0 at 0).

ResNet (``K = L`` layers): ``x^{k+1} = x^k + h f_k(x^k)``, loss from the logits of ``x^L``.

Neural ODE (``K`` pieces): ``x'(t) = f_{theta(t)}(x)`` on ``[0, T]``, solved with
``steps = pieces * substeps`` explicit Runge-Kutta steps of size ``dt = T / steps``; step
``j`` uses the parameters of piece ``j // substeps``. With Butcher tableau ``(A, b)``::

    k_i     = f(x_j + dt * sum_{l<i} a_il k_l)
    x_{j+1} = x_j + dt * sum_i b_i k_i

(``euler``, ``midpoint``, classic ``rk4``). Loss: terminal ``data_loss(x_steps)`` or, with
``turnpike``, the trapezoid rule ``dt * (l_0/2 + l_1 + ... + l_{steps-1} + l_steps/2)`` of
``l_j = data_loss(x_j)``, times ``turnpike_weight``; plus the regulariser.

Gradients. ``discrete``: exact gradient of the discretised loss. For one step with
cotangent ``xbar`` on ``x_{j+1}``, stages ``i = s..1``::

    kbar_i = dt b_i xbar + sum_{m>i} dt a_mi ybar_m
    ybar_i = J_i^T kbar_i,   thetabar += (df/dtheta)_i^T kbar_i
    xbar_j = xbar + sum_i ybar_i   (+ dt w_j dl/dx(x_j) with trapezoid weights w_j)

``adjoint``: continuous backsolve adjoint. Augmented state
``s = (x, a, g_theta, g_P, g_c)`` with dynamics::

    F(s) = ( f(x), -(df/dx)^T a - [tp] dl/dx, -(df/dtheta)^T a, -[tp] dl/dP, -[tp] dl/dc )

(``[tp]`` terms only with turnpike), started at ``t = T`` from
``(x_steps, dPhi/dx_T, 0, dPhi/dP, dPhi/dc)`` (all but ``x`` zero with turnpike) and
integrated back with the same RK method and step ``-dt``, using the parameters of piece
``j // substeps`` in step ``j``; ``g_theta`` goes to that piece's slot. Then
``dtheta = g_theta(0) + 2 weight_decay theta``, ``dP = g_P(0)``, ``dc = g_c(0)``.

Adaptive methods (``dopri5``, ``tsit5``, ``bosh3``): embedded pairs with error weights
``e = b - bhat``, the float64-time PI controller, Hairer's first step, steps that land on
every piece boundary, per-sample or batch step control, dense output and replay of a given
grid, exactly as fixed in ``docs/guide/adaptive.md`` (the C++ core follows the same text). A step::

    K_i = f_k(x_j + sum_{l<i} (dt a_il) K_l),  x_{j+1} = x_j + sum_i (dt b_i) K_i,
    err = sum_i (dt e_i) K_i

with each ``dt a_il`` formed in float64 and cast to the state dtype, sums in increasing
index order. Their discrete gradient differentiates the computed solution with the accepted
grid frozen: the reverse of each accepted step as above (with the dense-output
interpolant's cotangents ``kbar_i += dt bt_i(theta) ybar``, ``xbar_j += ybar``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol, overload

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_METHODS",
    "FIELDS",
    "LOSSES",
    "METHODS",
    "READOUTS",
    "NonFiniteError",
    "StepSizeError",
    "activation",
    "activation_grad",
    "data_loss",
    "data_loss_grad",
    "field",
    "node_forward",
    "node_loss_and_grad",
    "odeint",
    "odeint_vjp",
    "readout_logits",
    "resnet_forward",
    "resnet_loss_and_grad",
    "resnet_trajectory",
]

ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
FIELDS: tuple[str, ...] = ("outside", "inside", "bottleneck")
LOSSES: tuple[str, ...] = ("cross_entropy", "mse")
METHODS: tuple[str, ...] = ("euler", "midpoint", "rk4")
READOUTS: tuple[str, ...] = ("linear", "hardtanh")

Params = dict[str, np.ndarray]
State = tuple[np.ndarray, ...]
Tableau = tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]
FieldCache = tuple[np.ndarray, ...]


class _Rhs(Protocol):
    """Right-hand side of an autonomous system whose state is a tuple of arrays."""

    def __call__(self, s: State, /) -> State: ...


class _Visit(Protocol):
    def __call__(self, j: int, x: np.ndarray, /) -> None: ...


class _StateCotangent(Protocol):
    def __call__(self, j: int, x: np.ndarray, /) -> np.ndarray: ...


_LEAKY_SLOPE = 0.01

_FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "outside": ("W", "b"),
    "inside": ("W", "b"),
    "bottleneck": ("W1", "b1", "W2", "b2"),
}

# Butcher tableaux: rows of the strictly lower-triangular A (row i has i entries), weights b.
_TABLEAUX: dict[str, Tableau] = {
    "euler": (((),), (1.0,)),
    "midpoint": (((), (0.5,)), (0.0, 1.0)),
    "rk4": (((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 2 / 6, 2 / 6, 1 / 6)),
}


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {tuple(allowed)}")


# --------------------------------------------------------------------------- activations


@overload
def _act_and_grad(
    name: str, x: np.ndarray, need_grad: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def _act_and_grad(
    name: str, x: np.ndarray, need_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]: ...
def _act_and_grad(
    name: str, x: np.ndarray, need_grad: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(sigma(x), sigma'(x) or None)``, same shape and dtype as ``x``."""
    if name == "tanh":
        s = np.tanh(x)
        return s, (1 - s * s if need_grad else None)
    if name == "relu":
        return np.maximum(x, 0), ((x > 0).astype(x.dtype) if need_grad else None)
    if name == "sigmoid":
        e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
        s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return s, (s * (1 - s) if need_grad else None)
    if name == "leaky_relu":
        s = np.where(x > 0, x, _LEAKY_SLOPE * x)
        if not need_grad:
            return s, None
        return s, np.where(x > 0, 1.0, _LEAKY_SLOPE).astype(x.dtype)
    if name == "identity":
        return x.copy(), (np.ones_like(x) if need_grad else None)
    _check("activation", name, ACTIVATIONS)
    raise AssertionError  # unreachable


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """Return the elementwise activation ``sigma(x)``.

    Parameters
    ----------
    name : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation.
    x : array_like
        Any shape.

    Returns
    -------
    numpy.ndarray
        ``sigma(x)``, of the shape and dtype of ``x``.

    Raises
    ------
    ValueError
        For an unknown ``name``.

    Examples
    --------
    >>> activation("relu", np.array([-1.0, 2.0]))
    array([0., 2.])
    """
    x = np.asarray(x)
    return _act_and_grad(name, x, False)[0]


def activation_grad(name: str, x: np.ndarray) -> np.ndarray:
    """Return the elementwise derivative ``sigma'(x)`` (relu: 1 if x > 0 else 0).

    Parameters
    ----------
    name : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation.
    x : array_like
        Any shape.

    Returns
    -------
    numpy.ndarray
        ``sigma'(x)``, of the shape and dtype of ``x``.

    Raises
    ------
    ValueError
        For an unknown ``name``.

    Examples
    --------
    >>> activation_grad("leaky_relu", np.array([-1.0, 2.0]))
    array([0.01, 1.  ])
    """
    x = np.asarray(x)
    return _act_and_grad(name, x, True)[1]


# --------------------------------------------------------------------------- fields


@overload
def _field_fwd(
    params: Params, k: int, x: np.ndarray, field: str, act: str, need_cache: Literal[True]
) -> tuple[np.ndarray, FieldCache]: ...
@overload
def _field_fwd(
    params: Params, k: int, x: np.ndarray, field: str, act: str, need_cache: bool
) -> tuple[np.ndarray, FieldCache | None]: ...
def _field_fwd(
    params: Params, k: int, x: np.ndarray, field: str, act: str, need_cache: bool
) -> tuple[np.ndarray, FieldCache | None]:
    """Evaluate ``f_k(x)`` for ``x`` (N, D); returns ``(f (N, D), cache or None)``."""
    if field == "outside":
        W, b = params["W"][k], params["b"][k]
        pre = x @ W.T + b
        f, dpre = _act_and_grad(act, pre, need_cache)
        return f, (None if dpre is None else (x, dpre))  # dpre: None without need_cache
    if field == "inside":
        W, b = params["W"][k], params["b"][k]
        sx, dsx = _act_and_grad(act, x, need_cache)
        return sx @ W.T + b, (None if dsx is None else (sx, dsx))
    if field == "bottleneck":
        W1, b1, W2, b2 = params["W1"][k], params["b1"][k], params["W2"][k], params["b2"][k]
        hid, dhid = _act_and_grad(act, x @ W1.T + b1, need_cache)
        return hid @ W2.T + b2, (None if dhid is None else (x, hid, dhid))
    _check("field", field, FIELDS)
    raise AssertionError  # unreachable


def _field_vjp(
    params: Params, k: int, cache: FieldCache, kbar: np.ndarray, field: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pull back ``kbar`` (N, D) through ``f_k`` at the cached point.

    Returns ``(J^T kbar (N, D), {key: (df/dtheta_k)^T kbar})`` where each parameter gradient
    has the shape of ``params[key][k]``.
    """
    if field == "outside":
        x, dpre = cache
        W = params["W"][k]
        u = kbar * dpre
        return u @ W, {"W": u.T @ x, "b": u.sum(axis=0)}
    if field == "inside":
        sx, dsx = cache
        W = params["W"][k]
        return (kbar @ W) * dsx, {"W": kbar.T @ sx, "b": kbar.sum(axis=0)}
    if field == "bottleneck":
        x, hid, dhid = cache
        W1, W2 = params["W1"][k], params["W2"][k]
        u = (kbar @ W2) * dhid
        grads = {"W1": u.T @ x, "b1": u.sum(axis=0), "W2": kbar.T @ hid, "b2": kbar.sum(axis=0)}
        return u @ W1, grads
    _check("field", field, FIELDS)
    raise AssertionError  # unreachable


def field(params: Params, k: int, x: np.ndarray, *, field: str, activation: str) -> np.ndarray:
    """Return the vector field ``f_k(x)`` of layer / piece ``k``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (leading axis: layers or pieces).
    k : int
        The layer or piece.
    x : numpy.ndarray, shape (N, D)
        The states.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.

    Returns
    -------
    numpy.ndarray, shape (N, D)
        ``f_k(x)``, in the dtype of the parameters.

    Raises
    ------
    ValueError
        For an unknown ``field`` or ``activation``.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.NeuralODE(2, pieces=2, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> field(params, 0, X, field="outside", activation="tanh").shape
    (3, 2)
    """
    return _field_fwd(params, k, np.asarray(x), field, activation, False)[0]


# --------------------------------------------------------------------------- losses


@overload
def _data_loss_and_grad(
    logits: np.ndarray, y: np.ndarray, loss: str, need_grad: Literal[True]
) -> tuple[float, np.ndarray]: ...
@overload
def _data_loss_and_grad(
    logits: np.ndarray, y: np.ndarray, loss: str, need_grad: bool
) -> tuple[float, np.ndarray | None]: ...
def _data_loss_and_grad(
    logits: np.ndarray, y: np.ndarray, loss: str, need_grad: bool
) -> tuple[float, np.ndarray | None]:
    """``(data_loss, d data_loss / d logits or None)`` for logits (N, classes)."""
    z = np.asarray(logits)
    n = z.shape[0]
    if loss == "cross_entropy":
        rows = np.arange(n)
        labels = np.asarray(y).astype(np.intp, copy=False)
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        esum = e.sum(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(esum[:, 0])
        value = float(np.mean(lse - z[rows, labels]))
        if not need_grad:
            return value, None
        g = e / esum
        g[rows, labels] -= 1
        return value, g / n
    if loss == "mse":
        r = z - np.asarray(y).astype(z.dtype, copy=False)
        value = float(np.mean(r * r))
        return value, ((2 / r.size) * r if need_grad else None)
    _check("loss", loss, LOSSES)
    raise AssertionError  # unreachable


def data_loss(logits: np.ndarray, y: np.ndarray, loss: str) -> float:
    """Return the data loss of the logits against labels or targets.

    Parameters
    ----------
    logits : numpy.ndarray, shape (N, classes)
        The logits ``z``.
    y : numpy.ndarray, shape (N,) or (N, classes)
        Integer labels (cross-entropy) or float targets (``"mse"``).
    loss : {"cross_entropy", "mse"}
        Mean softmax cross-entropy, or the mean of ``(z - y)^2`` over all entries.

    Returns
    -------
    float
        The loss.

    Raises
    ------
    ValueError
        For an unknown ``loss``.

    Examples
    --------
    >>> round(data_loss(np.zeros((2, 2)), np.array([0, 1]), "cross_entropy"), 6)
    0.693147
    """
    return _data_loss_and_grad(logits, y, loss, False)[0]


def data_loss_grad(logits: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """Return the gradient of :func:`data_loss` with respect to the logits.

    Parameters
    ----------
    logits : numpy.ndarray, shape (N, classes)
        The logits ``z``.
    y : numpy.ndarray, shape (N,) or (N, classes)
        Integer labels (cross-entropy) or float targets (``"mse"``).
    loss : {"cross_entropy", "mse"}
        The data loss.

    Returns
    -------
    numpy.ndarray, shape (N, classes)
        ``d data_loss / d logits``.

    Raises
    ------
    ValueError
        For an unknown ``loss``.

    Examples
    --------
    >>> data_loss_grad(np.zeros((2, 2)), np.array([0, 1]), "cross_entropy")
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    """
    return _data_loss_and_grad(logits, y, loss, True)[1]


def readout_logits(params: Params, x: np.ndarray, readout: str = "linear") -> np.ndarray:
    """Return the logits ``x P^T + c`` of states ``x``, clipped to ``[-1, 1]`` for ``"hardtanh"``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        Holds ``P`` (classes, D) and ``c`` (classes,).
    x : numpy.ndarray, shape (N, D)
        The final states.
    readout : {"linear", "hardtanh"}, default "linear"
        The readout.

    Returns
    -------
    numpy.ndarray, shape (N, classes)
        The logits.

    Raises
    ------
    ValueError
        For an unknown ``readout``.

    Examples
    --------
    >>> params = {"P": np.array([[2.0, 0.0]]), "c": np.array([0.5])}
    >>> readout_logits(params, np.array([[1.0, 3.0]]), "hardtanh")
    array([[1.]])
    """
    _check("readout", readout, READOUTS)
    z = x @ params["P"].T + params["c"]
    logits: np.ndarray = np.clip(z, -1.0, 1.0) if readout == "hardtanh" else z
    return logits


def _state_loss(
    params: Params, x: np.ndarray, y: np.ndarray, loss: str, kind: str = "linear"
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """``l(x) = data_loss(readout(x), y)`` and its gradients wrt x (N, D), P, c."""
    P = params["P"]
    u = x @ P.T + params["c"]
    z = readout_logits(params, x, kind)
    value, g = _data_loss_and_grad(z, y, loss, True)
    if kind == "hardtanh":  # d clip(u)/du = [-1 < u < 1]
        g = g * ((u > -1) & (u < 1))
    return value, g @ P, g.T @ x, g.sum(axis=0)


def _regulariser(
    params: Params,
    keys: tuple[str, ...],
    weight_decay: float,
    l1: float = 0.0,
    decay_readout: bool = False,
) -> float:
    """``weight_decay * |theta|^2`` over keys (and P with decay_readout) + ``l1 * |theta|_1``
    over keys."""
    decayed = (*keys, "P") if decay_readout else keys
    value = float(weight_decay) * sum(float(np.sum(np.square(params[k]))) for k in decayed)
    return value + float(l1) * sum(float(np.sum(np.abs(params[k]))) for k in keys)


def _trapezoid(values: list[float], dt: float) -> float:
    """``dt * (v_0/2 + v_1 + ... + v_{n-1} + v_n/2)``, summed in index order."""
    inner = sum(values[1:-1], 0.0)
    return dt * (0.5 * values[0] + inner + 0.5 * values[-1])


# --------------------------------------------------------------------------- Runge-Kutta


def _axpy_sum(coeffs: tuple[float, ...], vecs: list[State], h: float, base: State) -> State:
    """``base + h * sum_l coeffs[l] vecs[l]`` componentwise; zero coefficients are skipped.

    ``base`` may have fewer components than the ``vecs``; only those are combined.
    """
    terms = [(a, v) for a, v in zip(coeffs, vecs) if a != 0.0]
    if not terms:
        return base
    out = []
    for c, x in enumerate(base):
        acc: np.ndarray | None = None
        for a, v in terms:
            t = v[c] if a == 1.0 else a * v[c]
            acc = t if acc is None else acc + t
        assert acc is not None  # terms is not empty
        out.append(x + h * acc)
    return tuple(out)


def _rk_stages(rhs: _Rhs, state: State, h: float, tableau: Tableau, n_in: int) -> list[State]:
    """Stage derivatives ``K_i = rhs(s + h sum_{l<i} a_il K_l)`` of one explicit RK step.

    ``rhs`` reads only the first ``n_in`` components of its argument (the others, e.g.
    accumulated gradients, do not feed back), so only those stage inputs are formed.
    """
    A, _ = tableau
    ks: list[State] = []
    for row in A:
        ks.append(rhs(_axpy_sum(row, ks, h, state[:n_in])))
    return ks


def _rk_step(
    rhs: _Rhs,
    state: State,
    h: float,
    tableau: Tableau,
    n_in: int | None = None,
) -> State:
    """One explicit RK step ``s + h sum_i b_i K_i`` of size ``h`` (may be negative)."""
    n_in = len(state) if n_in is None else n_in
    ks = _rk_stages(rhs, state, h, tableau, n_in)
    return _axpy_sum(tableau[1], ks, h, state)


def _rk_step_vjp(
    params: Params,
    k: int,
    x: np.ndarray,
    xbar: np.ndarray,
    h: float,
    tableau: Tableau,
    field: str,
    act: str,
    grads: dict[str, np.ndarray],
) -> np.ndarray:
    """Reverse of one RK step ``x -> x'`` of ``f_k``: given ``xbar`` on ``x'`` (N, D), return
    the cotangent on ``x`` and add the parameter cotangents into ``grads[key][k]``."""
    A, b = tableau
    caches = []

    def rhs(s: State) -> State:
        f, cache = _field_fwd(params, k, s[0], field, act, True)
        caches.append(cache)
        return (f,)

    _rk_stages(rhs, (x,), h, tableau, 1)  # recompute the stages, keeping their caches
    n_stages = len(b)
    ybars: list[np.ndarray | None] = [None] * n_stages
    for i in reversed(range(n_stages)):
        kbar: np.ndarray | None = (h * b[i]) * xbar if b[i] != 0.0 else None
        for m in range(i + 1, n_stages):
            ybar_m = ybars[m]
            if A[m][i] != 0.0 and ybar_m is not None:
                t = (h * A[m][i]) * ybar_m
                kbar = t if kbar is None else kbar + t
        if kbar is None:
            continue  # stage i does not influence x'
        ybars[i], pgrads = _field_vjp(params, k, caches[i], kbar, field)
        for key, g in pgrads.items():
            grads[key][k] += g
    out = xbar
    for ybar in ybars:
        if ybar is not None:
            out = out + ybar
    return out


# --------------------------------------------------------------------------- solvers


def _field_keys(field: str) -> tuple[str, ...]:
    """Names of the field parameters of ``field`` (the ones weight decay applies to)."""
    _check("field", field, FIELDS)
    return _FIELD_KEYS[field]


def _num_pieces(params: Params, field: str) -> int:
    return int(params[_field_keys(field)[0]].shape[0])


def _tableau(method: str) -> Tableau:
    _check("method", method, METHODS)
    return _TABLEAUX[method]


def _augment(params: Params, X: np.ndarray, augment: int, field: str) -> np.ndarray:
    """``[X, 0]`` of shape (N, dim + augment) in the working dtype."""
    X = np.asarray(X)
    dtype = np.result_type(X, *(params[key] for key in _field_keys(field)))
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    x0 = np.zeros((X.shape[0], X.shape[1] + int(augment)), dtype=dtype)
    x0[:, : X.shape[1]] = X
    return x0


def _field_rhs(params: Params, k: int, field: str, act: str) -> _Rhs:
    def rhs(s: State) -> State:
        return (_field_fwd(params, k, s[0], field, act, False)[0],)

    return rhs


def _solve(
    params: Params,
    x0: np.ndarray,
    h: float,
    substeps: int,
    tableau: Tableau,
    field: str,
    act: str,
    store: bool,
    visit: _Visit | None = None,
) -> np.ndarray:
    """Integrate forward; return the trajectory (steps+1, N, D) if ``store`` else the final
    state (N, D). ``visit(j, x_j)`` is called for every state j = 0..steps in order."""
    steps = _num_pieces(params, field) * int(substeps)
    traj = np.empty((steps + 1, *x0.shape), dtype=x0.dtype) if store else None
    x = x0
    for j in range(steps + 1):
        if traj is not None:
            traj[j] = x
        if visit is not None:
            visit(j, x)
        if j < steps:
            x = _rk_step(_field_rhs(params, j // substeps, field, act), (x,), h, tableau)[0]
    return traj if traj is not None else x


def _discrete_backward(
    params: Params,
    traj: np.ndarray,
    xbar: np.ndarray,
    h: float,
    substeps: int,
    tableau: Tableau,
    field: str,
    act: str,
    grads: dict[str, np.ndarray],
    state_cotangent: _StateCotangent | None = None,
) -> np.ndarray:
    """Reverse sweep through all steps; ``xbar`` is the cotangent on ``x_steps`` (including
    any loss term at ``x_steps``). ``state_cotangent(j, x_j)`` adds a loss cotangent on
    ``x_j`` for j < steps. Returns ``xbar_0`` (N, D); field grads accumulate into ``grads``."""
    steps = traj.shape[0] - 1
    for j in reversed(range(steps)):
        xbar = _rk_step_vjp(params, j // substeps, traj[j], xbar, h, tableau, field, act, grads)
        if state_cotangent is not None:
            xbar = xbar + state_cotangent(j, traj[j])
    return xbar


def _adjoint_rhs(
    params: Params,
    k: int,
    field: str,
    act: str,
    y: np.ndarray | None,
    loss: str | None,
    kind: str = "linear",
) -> _Rhs:
    """Dynamics ``F(x, a) = (f, -J^T a [- dl/dx], -(df/dtheta)^T a [, -dl/dP, -dl/dc])``;
    the bracketed loss terms are present iff ``loss`` is given (turnpike)."""
    keys = _field_keys(field)

    def rhs(s: State) -> State:
        x, a = s
        f, cache = _field_fwd(params, k, x, field, act, True)
        abar, pgrads = _field_vjp(params, k, cache, a, field)
        dg = tuple(-pgrads[key] for key in keys)
        if loss is None:
            return (f, -abar, *dg)
        assert y is not None  # a turnpike loss comes with its targets
        _, gx, gP, gc = _state_loss(params, x, y, loss, kind)
        return (f, -abar - gx, *dg, -gP, -gc)

    return rhs


def _adjoint_backward(
    params: Params,
    xT: np.ndarray,
    aT: np.ndarray,
    h: float,
    substeps: int,
    tableau: Tableau,
    field: str,
    act: str,
    grads: dict[str, np.ndarray],
    y: np.ndarray | None = None,
    loss: str | None = None,
    gP: np.ndarray | None = None,
    gc: np.ndarray | None = None,
    jumps: np.ndarray | None = None,
    kind: str = "linear",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backsolve the augmented adjoint system from ``t = T`` to 0 with steps of ``-h``.

    Field grads accumulate into ``grads`` (one slot per piece). With ``loss`` given (turnpike)
    ``gP``, ``gc`` are integrated as well. ``jumps`` (steps + 1, N, D): ``a(t_j) += jumps[j]``
    after the step that reaches ``t_j`` (a cotangent on every state). Returns
    ``(a(0) (N, D), gP, gc)``.
    """
    keys = _field_keys(field)
    steps = _num_pieces(params, field) * int(substeps)
    x, a = xT, aT
    for j in reversed(range(steps)):
        k = j // substeps
        state = (x, a, *(grads[key][k] for key in keys))
        if loss is not None:
            state = (*state, gP, gc)
        rhs = _adjoint_rhs(params, k, field, act, y, loss, kind)
        new = _rk_step(rhs, state, -h, tableau, n_in=2)
        x, a = new[0], new[1]
        if jumps is not None:
            a = a + jumps[j]
        for key, g in zip(keys, new[2 : 2 + len(keys)]):
            grads[key][k] = g
        if loss is not None:
            gP, gc = new[-2], new[-1]
    return a, gP, gc


def _zero_grads(params: Params, keys: tuple[str, ...], dtype: np.dtype) -> dict[str, np.ndarray]:
    return {
        key: np.zeros(np.shape(params[key]), dtype=np.result_type(params[key], dtype))
        for key in keys
    }


def _finish_grads(
    params: Params,
    grads: dict[str, np.ndarray],
    keys: tuple[str, ...],
    weight_decay: float,
    l1: float = 0.0,
    decay_readout: bool = False,
) -> dict[str, np.ndarray]:
    """Add the regulariser's gradient (``2 weight_decay theta + l1 sign(theta)``) and cast every
    grad to the dtype of its parameter; returns a dict with exactly the keys of ``params``
    (zeros elsewhere)."""
    decayed = (*keys, "P") if decay_readout else keys
    out = {}
    for key, p in params.items():
        p = np.asarray(p)
        g = grads.get(key)
        if g is None:
            g = np.zeros_like(p)
        if key in decayed and weight_decay != 0:
            g = g + (2 * float(weight_decay)) * p
        if key in keys and l1 != 0:
            g = g + float(l1) * np.sign(p)
        out[key] = np.asarray(g).astype(p.dtype, copy=False).reshape(p.shape)
    return out


def _loss_and_grad(
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    *,
    h: float,
    substeps: int,
    tableau: Tableau,
    field: str,
    act: str,
    augment: int,
    loss: str,
    weight_decay: float,
    turnpike: bool,
    gradient: str,
    kind: str = "linear",
    l1: float = 0.0,
    decay_readout: bool = False,
    turnpike_weight: float = 1.0,
) -> tuple[float, dict[str, np.ndarray]]:
    """Shared loss-and-gradient driver for the ResNet (Euler, h) and the neural ODE."""
    _check("loss", loss, LOSSES)
    _check("readout", kind, READOUTS)
    _check("gradient", gradient, ("discrete", "adjoint"))
    keys = _field_keys(field)
    x0 = _augment(params, X, augment, field)
    steps = _num_pieces(params, field) * substeps
    grads = _zero_grads(params, keys, x0.dtype)
    P, c = params["P"], params["c"]
    gP = np.zeros(P.shape, dtype=np.result_type(P, x0))
    gc = np.zeros(c.shape, dtype=np.result_type(c, x0))
    weights = [0.5 if j in (0, steps) else 1.0 for j in range(steps + 1)]
    losses = [0.0] * (steps + 1)  # l_j (turnpike only)

    if gradient == "discrete":
        traj = _solve(params, x0, h, substeps, tableau, field, act, store=True)

        def state_cotangent(j: int, x: np.ndarray) -> np.ndarray:
            nonlocal gP, gc
            losses[j], gx, dP, dc = _state_loss(params, x, y, loss, kind)
            w = h * weights[j]
            gP = gP + w * dP
            gc = gc + w * dc
            return w * gx

        if turnpike:
            xbar = state_cotangent(steps, traj[steps])
            _discrete_backward(
                params, traj, xbar, h, substeps, tableau, field, act, grads, state_cotangent
            )
            value = _trapezoid(losses, h)
        else:
            value, xbar, gP, gc = _state_loss(params, traj[steps], y, loss, kind)
            _discrete_backward(params, traj, xbar, h, substeps, tableau, field, act, grads)
    else:
        if turnpike:

            def visit(j: int, x: np.ndarray) -> None:
                losses[j] = _data_loss_and_grad(readout_logits(params, x, kind), y, loss, False)[0]

            xT = _solve(params, x0, h, substeps, tableau, field, act, store=False, visit=visit)
            value = _trapezoid(losses, h)
            _, gP_end, gc_end = _adjoint_backward(
                params,
                xT,
                np.zeros_like(xT),
                h,
                substeps,
                tableau,
                field,
                act,
                grads,
                y=y,
                loss=loss,
                gP=gP,
                gc=gc,
                kind=kind,
            )
            assert gP_end is not None and gc_end is not None  # integrated with the loss
            gP, gc = gP_end, gc_end
        else:
            xT = _solve(params, x0, h, substeps, tableau, field, act, store=False)
            value, aT, gP, gc = _state_loss(params, xT, y, loss, kind)
            _adjoint_backward(params, xT, aT, h, substeps, tableau, field, act, grads)

    grads["P"], grads["c"] = gP, gc
    if turnpike and turnpike_weight != 1.0:  # d(w L)/dtheta = w dL/dtheta
        value *= float(turnpike_weight)
        grads = {key: float(turnpike_weight) * g for key, g in grads.items()}
    value += _regulariser(params, keys, weight_decay, l1, decay_readout)
    return value, _finish_grads(params, grads, keys, weight_decay, l1, decay_readout)


# --------------------------------------------------------------------------- ResNet


def resnet_trajectory(
    params: Params,
    X: np.ndarray,
    *,
    field: str,
    activation: str,
    h: float = 1.0,
    augment: int = 0,
) -> np.ndarray:
    """Return the states ``x^0..x^L`` of ``x^{k+1} = x^k + h f_k(x^k)``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the layers or pieces ``K``) and the classifier ``P`` (classes, D), ``c`` (classes,),
        all of one float dtype.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    h : float, default 1.0
        The step size of every layer.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.

    Returns
    -------
    numpy.ndarray, shape (L + 1, N, D)
        The states after each layer, ``x^0 = [X, 0]`` first.

    Raises
    ------
    ValueError
        For an unknown ``field`` or ``activation``.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.ResNet(2, layers=3, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> resnet_trajectory(params, X, field="outside", activation="tanh").shape
    (4, 3, 2)
    """
    x0 = _augment(params, X, augment, field)
    return _solve(params, x0, float(h), 1, _TABLEAUX["euler"], field, activation, store=True)


def resnet_forward(
    params: Params,
    X: np.ndarray,
    *,
    field: str,
    activation: str,
    h: float = 1.0,
    augment: int = 0,
    readout: str = "linear",
) -> np.ndarray:
    """Return the logits ``x^L P^T + c`` of the ResNet (clipped for ``readout="hardtanh"``).

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the layers or pieces ``K``) and the classifier ``P`` (classes, D), ``c`` (classes,),
        all of one float dtype.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    h : float, default 1.0
        The step size of every layer.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    readout : {"linear", "hardtanh"}, default "linear"
        The logits ``x P^T + c``, or those clipped to ``[-1, 1]``.

    Returns
    -------
    numpy.ndarray, shape (N, classes)
        The logits.

    Raises
    ------
    ValueError
        For an unknown ``field``, ``activation`` or ``readout``.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.ResNet(2, layers=3, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> z = resnet_forward(params, X, field="outside", activation="tanh")
    >>> bool(np.allclose(z, resode.ResNet(2, layers=3, seed=0).forward(X)))
    True
    """
    x0 = _augment(params, X, augment, field)
    xL = _solve(params, x0, float(h), 1, _TABLEAUX["euler"], field, activation, store=False)
    return readout_logits(params, xL, readout)


def resnet_loss_and_grad(
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    *,
    field: str,
    activation: str,
    h: float = 1.0,
    augment: int = 0,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    readout: str = "linear",
    l1: float = 0.0,
    decay_readout: bool = False,
) -> tuple[float, dict[str, np.ndarray]]:
    """Return the ResNet loss and its exact gradient (backpropagation).

    The loss is ``data_loss(x^L P^T + c, y)`` plus the regulariser.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the layers or pieces ``K``) and the classifier ``P`` (classes, D), ``c`` (classes,),
        all of one float dtype.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    y : numpy.ndarray, shape (N,) or (N, classes)
        Integer labels (cross-entropy) or float targets (``"mse"``).
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    h : float, default 1.0
        The step size of every layer.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        The data loss.
    weight_decay : float, default 0.0
        Adds ``weight_decay * sum(theta^2)`` over the field parameters.
    readout : {"linear", "hardtanh"}, default "linear"
        The logits ``x P^T + c``, or those clipped to ``[-1, 1]``.
    l1 : float, default 0.0
        Adds ``l1 * sum |theta|`` over the field parameters (subgradient 0 at 0).
    decay_readout : bool, default False
        Put ``P`` under ``weight_decay`` too.

    Returns
    -------
    loss : float
        The loss value.
    grads : dict of str to numpy.ndarray
        Its gradient, with the keys, shapes and dtypes of ``params``.

    Raises
    ------
    ValueError
        For an unknown ``field``, ``activation``, ``loss`` or ``readout``.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.ResNet(2, layers=3, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> loss, grads = resnet_loss_and_grad(params, X, y, field="outside", activation="tanh")
    >>> loss_core, grads_core = resode.ResNet(2, layers=3, seed=0).loss_and_grad(X, y)
    >>> abs(loss - loss_core) < 1e-12, bool(np.allclose(grads["W"], grads_core["W"]))
    (True, True)
    """
    return _loss_and_grad(
        params,
        X,
        y,
        h=float(h),
        substeps=1,
        tableau=_TABLEAUX["euler"],
        field=field,
        act=activation,
        augment=augment,
        loss=loss,
        weight_decay=weight_decay,
        turnpike=False,
        gradient="discrete",
        kind=readout,
        l1=l1,
        decay_readout=decay_readout,
    )


# --------------------------------------------------------------------------- adaptive RK
#
# Everything below follows docs/guide/adaptive.md literally (the C++ core is checked against it):
# float64 time, coefficients ``dt * a`` formed in float64 and cast to the state dtype, sums
# in increasing index order, FSAL, the PI controller and Hairer's first step.

ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "tsit5", "bosh3")

_EPS = float(np.finfo(np.float64).eps)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


class StepSizeError(ValueError):
    """The adaptive controller failed for ``sample`` at time ``t``.

    It made ``max_steps`` attempts, or its next step fell below the resolution of ``t``.

    Parameters
    ----------
    sample : int
        The failing sample.
    t : float
        Its time.
    dt : float
        The last attempted step size.
    error : float
        Its error norm ``E`` (NaN before the first attempt).
    reason : str
        What failed, for the message.

    Examples
    --------
    >>> err = StepSizeError(0, 0.5, 1e-17, 2.0, "step below the resolution of t")
    >>> err.sample, err.t, isinstance(err, ValueError)
    (0, 0.5, True)
    """

    def __init__(self, sample: int, t: float, dt: float, error: float, reason: str) -> None:
        super().__init__(
            f"adaptive step size control failed for sample {sample} at t = {t!r}: {reason} "
            f"(last step dt = {dt!r}, error estimate {error!r})"
        )
        self.sample, self.t, self.dt, self.error = sample, t, dt, error


class NonFiniteError(StepSizeError, FloatingPointError):
    """A :class:`StepSizeError` whose sample's last trial state was not finite.

    Parameters
    ----------
    sample : int
        The failing sample.
    t : float
        Its time.
    dt : float
        The last attempted step size.
    error : float
        Its error norm (NaN).
    reason : str
        What failed, for the message.

    Examples
    --------
    >>> err = NonFiniteError(1, 0.25, 0.1, float("nan"), "non-finite state")
    >>> isinstance(err, StepSizeError), isinstance(err, FloatingPointError)
    (True, True)
    """


class _Embedded(NamedTuple):
    """Explicit RK tableau with optional error weights and dense output.

    ``A``: rows of the strictly lower-triangular matrix (row i has i entries); ``b``: weights;
    ``e = b - bhat`` (None: no estimator); ``q``: the estimator's order; ``fsal``: the last
    row of ``A`` is ``b`` (so ``K_s = f(x_{j+1})``); ``P``: dense-output polynomials,
    ``bt_i(theta) = sum_r P[i][r] theta^(r+1)`` (None: cubic Hermite).
    """

    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...] | None
    q: int
    fsal: bool
    P: tuple[tuple[float, ...], ...] | None


# Dormand-Prince 5(4): SciPy's RK45 (A, B; e = -E, P).
_DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_DOPRI5 = _Embedded(
    A=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DOPRI5_B,
    ),
    b=(*_DOPRI5_B, 0.0),
    e=(71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40),
    q=4,
    fsal=True,
    P=(
        (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
        (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (
            0.0,
            127303824393 / 49829197408,
            -318862633887 / 49829197408,
            701980252875 / 199316789632,
        ),
        (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
)

# Tsitouras 5(4) (Tsitouras 2011), float64 coefficients of OrdinaryDiffEq's tsit_tableaus.jl
# (Tsit5ConstantCacheActual, Tsit5Interp); e = b - bhat = -btilde.
_TSIT5_B = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
)
_TSIT5 = _Embedded(
    A=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.8971530571054935, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ),
        _TSIT5_B,
    ),
    b=(*_TSIT5_B, 0.0),
    e=(
        0.00178001105222577714,
        0.0008164344596567469,
        -0.007880878010261995,
        0.1447110071732629,
        -0.5823571654525552,
        0.45808210592918697,
        -0.015151515151515152,
    ),
    q=4,
    fsal=True,
    P=(
        (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
        (0.0, 0.13169999999999998, -0.2234, 0.1017),
        (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
        (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
        (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
        (0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
        (0.0, 1.5, -4.0, 2.5),
    ),
)

# Bogacki-Shampine 3(2): bhat = (7/24, 1/4, 1/3, 1/8), e = b - bhat.
_BOSH3 = _Embedded(
    A=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    e=(-5 / 72, 1 / 12, 1 / 9, -1 / 8),
    q=2,
    fsal=True,
    P=None,
)

_EMBEDDED: dict[str, _Embedded] = {
    "dopri5": _DOPRI5,
    "tsit5": _TSIT5,
    "bosh3": _BOSH3,
    **{name: _Embedded(A, b, None, 0, False, None) for name, (A, b) in _TABLEAUX.items()},
}


class _Steps(NamedTuple):
    """Accepted steps of one group of samples sharing a grid (one sample, or the batch).

    ``ts`` (n+1,) float64 accepted times; ``xs`` (n+1, N, D) states; ``dts`` (n,) step sizes;
    ``pieces`` (n,) pieces; ``ks[j]`` the stages of step j.
    """

    ts: np.ndarray
    xs: np.ndarray
    dts: np.ndarray
    pieces: np.ndarray
    ks: list[list[np.ndarray]]
    nfev: int
    accepted: int
    rejected: int


def _bounds(T: float, pieces: int) -> np.ndarray:
    """Piece boundaries ``t_k = (T * k) / pieces`` (float64), the last one ``T`` itself."""
    out = np.array([(float(T) * k) / pieces for k in range(pieces + 1)], dtype=np.float64)
    out[-1] = float(T)
    return out


@overload
def _combine(
    coeffs: tuple[float, ...], ks: list[np.ndarray], dt: float, dtype: np.dtype, base: np.ndarray
) -> np.ndarray: ...
@overload
def _combine(
    coeffs: tuple[float, ...], ks: list[np.ndarray], dt: float, dtype: np.dtype
) -> np.ndarray | None: ...
def _combine(
    coeffs: tuple[float, ...],
    ks: list[np.ndarray],
    dt: float,
    dtype: np.dtype,
    base: np.ndarray | None = None,
) -> np.ndarray | None:
    """``base + sum_l cast(dt * a_l) K_l``: ``dt * a_l`` formed in float64 and cast to
    ``dtype``; the terms summed in increasing ``l`` (zero coefficients skipped), the sum then
    added to ``base`` (None: the sum alone)."""
    acc = None
    for a, k in zip(coeffs, ks):
        if a == 0.0:
            continue
        term = dtype.type(dt * a) * k
        acc = term if acc is None else acc + term
    if base is None:
        return acc
    return base if acc is None else base + acc


def _rms(r: np.ndarray) -> np.ndarray:
    """Per-row ``sqrt(sum_d r_d^2 / D)`` of float64 ``r`` (N, D), summed in increasing d."""
    acc = r[:, 0] * r[:, 0]
    for d in range(1, r.shape[1]):
        acc = acc + r[:, d] * r[:, d]
    rms: np.ndarray = np.sqrt(acc / r.shape[1])
    return rms


def _error_norm(
    err: np.ndarray, x: np.ndarray, x_new: np.ndarray, rtol: float, atol: float
) -> np.ndarray:
    """``E`` per row: rms of ``err / (atol + rtol max(|x|, |x_new|))`` in float64 -> (N,); NaN
    for a row whose trial state ``x_new`` is not finite (its own term would be 0)."""
    f64 = np.float64
    scale = atol + rtol * np.maximum(np.abs(x.astype(f64)), np.abs(x_new.astype(f64)))
    ratio = np.where(np.isfinite(x_new), err.astype(f64) / scale, np.nan)
    return _rms(ratio)


def _first_step(
    f: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, q: int, rtol: float, atol: float
) -> np.ndarray:
    """Hairer's initial step per row of ``x0`` (N, D) -> (N,) float64 (two evaluations)."""
    f64 = np.float64
    scale = atol + rtol * np.abs(x0.astype(f64))
    f0 = f(x0)
    d0 = _rms(x0.astype(f64) / scale)
    d1 = _rms(f0.astype(f64) / scale)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    x1 = x0 + h0[:, None].astype(x0.dtype) * f0  # x1 = x0 + h0 f0 in the state dtype
    d2 = _rms((f(x1) - f0).astype(f64) / scale) / h0
    dmax = np.maximum(d1, d2)
    with np.errstate(divide="ignore"):
        h1 = np.where(dmax <= 1e-15, np.maximum(1e-6, 1e-3 * h0), (0.01 / dmax) ** (1 / (q + 1)))
    first: np.ndarray = np.minimum(100 * h0, h1)
    return first


def _embedded_step(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    dt: float,
    tab: _Embedded,
    k1: np.ndarray | None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Stages ``K_i = f(x + sum_{l<i} cast(dt a_il) K_l)`` and ``x_new = x + sum_i cast(dt b_i)
    K_i``; ``k1 = f(x)`` when already known. FSAL: ``x_new`` is the last stage input."""
    dtype = x.dtype
    ks = [f(x) if k1 is None else k1]
    y = x
    for row in tab.A[1:]:
        y = _combine(row, ks, dt, dtype, x)
        ks.append(f(y))
    x_new = y if tab.fsal else _combine(tab.b, ks, dt, dtype, x)
    return ks, x_new


def _landing(t: float, h: float, t_end: float) -> float:
    """Where a step of proposed size ``h`` from ``t`` lands in a piece ending at ``t_end``
    (forward: ``h > 0``; backward: ``h < 0``): ``t + h`` clipped to ``t_end``, and snapped to
    ``t_end`` within ``100 eps |t_end|`` of it (the sliver left would be below the resolution
    of ``t``)."""
    t_new, snap = t + h, 100 * _EPS * abs(t_end)
    if (t_new >= t_end - snap) if t_end > t else (t_new <= t_end + snap):
        return t_end
    return t_new


def _piece_rhs(
    params: Params, field: str, act: str
) -> Callable[[int], Callable[[np.ndarray], np.ndarray]]:
    def make(k: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: _field_fwd(params, k, x, field, act, False)[0]

    return make


def _fail(
    rows: np.ndarray, rejected: np.ndarray | None, t: float, dt: float, error: float, reason: str
) -> StepSizeError:
    """The error to raise, from the rows' error norms of the last rejected attempt
    (``rejected``; None: none yet): NonFiniteError if a row's norm was not finite (its trial
    state or error estimate overflowed; the first such row), else StepSizeError naming the
    row of the largest norm (the one that forced the rejections; the first row if none)."""
    if rejected is not None:
        bad = ~np.isfinite(rejected)
        if bad.any():
            i = int(np.argmax(bad))
            return NonFiniteError(
                int(rows[i]), t, dt, error, reason + "; the last rejected trial step overflowed"
            )
    i = 0 if rejected is None else int(np.argmax(rejected))
    return StepSizeError(int(rows[i]), t, dt, error, reason)


def _adaptive_group(
    params: Params,
    x0: np.ndarray,
    rows: np.ndarray,
    bounds: np.ndarray,
    tab: _Embedded,
    field: str,
    act: str,
    rtol: float,
    atol: float,
    first_step: float | None,
    max_steps: int,
) -> _Steps:
    """Adaptive integration of the rows ``x0`` (N, D) on one shared grid: the controller of
    docs/guide/adaptive.md with ``E`` the maximum of the rows' norms (one row: per-sample control).
    ``rows``: the samples' indices (for error messages)."""
    rhs = _piece_rhs(params, field, act)
    assert tab.e is not None  # an embedded pair: its error weights
    n_pieces = len(bounds) - 1
    k = 0
    nfev = 0
    if first_step is None:
        h = float(np.min(_first_step(rhs(0), x0, tab.q, rtol, atol)))
        nfev += 2
    else:
        h = float(first_step)
    # Hairer's PI controller (DOPRI5's): beta = 0.2 / k, alpha = 1 / k - 0.75 beta
    alpha, beta, order = 0.85 / (tab.q + 1), 0.2 / (tab.q + 1), tab.q + 1
    t, x, k1, e_prev = 0.0, x0, None, 1.0
    ts, xs, dts, pcs, kss = [0.0], [x0], [], [], []
    accepted = rejected = 0
    last_dt, last_e, rejected_norms = float("nan"), float("nan"), None
    while t != bounds[-1]:
        if accepted + rejected >= max_steps:
            reason = f"{max_steps} steps attempted"
            raise _fail(rows, rejected_norms, t, last_dt, last_e, reason)
        t_new = _landing(t, h, float(bounds[k + 1]))
        dt = t_new - t
        if dt <= 4 * _EPS * abs(t_new):
            reason = f"step size {dt!r} too small"
            raise _fail(rows, rejected_norms, t, last_dt, last_e, reason)
        nfev += len(tab.b) - (k1 is not None)
        ks, trial = _embedded_step(rhs(k), x, dt, tab, k1)
        k1 = ks[0]  # a retry from x reuses f_k(x)
        err = _combine(tab.e, ks, dt, x.dtype)
        assert err is not None  # e has nonzero weights
        norms = _error_norm(err, x, trial, rtol, atol)
        E = float(np.max(norms))  # NaN if any norm is NaN
        last_dt, last_e = dt, E
        if E <= 1:  # accepted (False for NaN)
            if E == 0:
                factor = _MAX_FACTOR
            else:
                factor = _SAFETY * max(E, 1e-10) ** -alpha * e_prev**beta
                factor = min(max(factor, _MIN_FACTOR), _MAX_FACTOR)
            e_prev = max(E, 1e-4)
            accepted += 1
            ts.append(t_new)
            xs.append(trial)
            dts.append(dt)
            pcs.append(k)
            kss.append(ks)
            t, x = t_new, trial
            if t == bounds[k + 1] and k + 1 < n_pieces:
                k, k1 = k + 1, None  # a new piece: the field changed
            else:
                k1 = ks[-1] if tab.fsal else None
        else:
            rejected += 1
            rejected_norms = norms
            if np.isfinite(E):
                factor = min(1.0, max(_MIN_FACTOR, _SAFETY * E ** (-1 / order)))
            else:
                factor = _MIN_FACTOR
        h = dt * factor
    return _Steps(
        np.array(ts), np.stack(xs), np.array(dts), np.array(pcs, dtype=np.intp), kss,
        nfev, accepted, rejected,
    )  # fmt: skip


def _check_grid(grid: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size < 2 or g[0] != 0.0 or g[-1] != bounds[-1] or np.any(np.diff(g) <= 0):
        raise ValueError(
            "a replay grid must be a strictly increasing 1-D array from 0.0 to T "
            f"(= {bounds[-1]!r})"
        )
    return g


def _replay_group(
    params: Params, x0: np.ndarray, grid: np.ndarray, bounds: np.ndarray, tab: _Embedded,
    field: str, act: str,
) -> _Steps:  # fmt: skip
    """Step the rows ``x0`` (N, D) exactly on ``grid`` (``dt = t_{j+1} - t_j``, the piece of
    a step the one containing ``t_j``), without error control."""
    rhs = _piece_rhs(params, field, act)
    n_pieces = len(bounds) - 1
    pcs = np.clip(np.searchsorted(bounds, grid[:-1], side="right") - 1, 0, n_pieces - 1)
    x, k1, nfev = x0, None, 0
    xs, dts, kss = [x0], [], []
    for j in range(len(grid) - 1):
        dt = float(grid[j + 1] - grid[j])
        if j > 0 and pcs[j] != pcs[j - 1]:
            k1 = None
        nfev += len(tab.b) - (k1 is not None)
        ks, x = _embedded_step(rhs(int(pcs[j])), x, dt, tab, k1)
        k1 = ks[-1] if tab.fsal else None
        xs.append(x)
        dts.append(dt)
        kss.append(ks)
    n = len(grid) - 1
    return _Steps(grid, np.stack(xs), np.array(dts), pcs.astype(np.intp), kss, nfev, n, 0)


def _dense_weights(tab: _Embedded, theta: float) -> list[float]:
    """``bt_i(theta)`` by Horner's rule (float64)."""
    out = []
    assert tab.P is not None  # called for pairs with dense-output polynomials only
    for row in tab.P:
        acc = 0.0
        for c in reversed(row):
            acc = acc * theta + c
        out.append(acc * theta)
    return out


def _hermite(
    x0: np.ndarray, x1: np.ndarray, f0: np.ndarray, f1: np.ndarray, theta: float, dt: float
) -> np.ndarray:
    """Cubic Hermite ``(1-θ) x0 + θ x1 + θ(θ-1) ((1-2θ)(x1-x0) + (θ-1) dt f0 + θ dt f1)``;
    each float64 coefficient cast to the state dtype, terms added left to right."""
    c = x0.dtype.type
    inner = c(1 - 2 * theta) * (x1 - x0) + c((theta - 1) * dt) * f0 + c(theta * dt) * f1
    y: np.ndarray = c(1 - theta) * x0 + c(theta) * x1 + c(theta * (theta - 1)) * inner
    return y


def _check_times(t: np.ndarray, T: float) -> np.ndarray:
    tau = np.asarray(t, dtype=np.float64)
    if tau.ndim != 1 or np.any(np.diff(tau) < 0) or np.any(tau < 0) or np.any(tau > T):
        raise ValueError(f"output times t must be a sorted 1-D array within [0, T] (T = {T!r})")
    return tau


def _locate(ts: np.ndarray, tau: float) -> tuple[int, bool]:
    """``(m, False)`` if ``tau == ts[m]`` (the output is that state), else ``(j, True)`` for
    the first accepted step with ``t_j < tau <= t_{j+1}``."""
    i = int(np.searchsorted(ts, tau, side="left"))
    if ts[i] == tau:
        return i, False
    return i - 1, True


def _dense_group(
    steps: _Steps, tau: np.ndarray, tab: _Embedded, params: Params, field: str, act: str
) -> np.ndarray:
    """Dense output of one group at times ``tau`` -> (len(tau), N, D)."""
    rhs = _piece_rhs(params, field, act)
    out = np.empty((len(tau), *steps.xs.shape[1:]), dtype=steps.xs.dtype)
    f_end: dict[int, np.ndarray] = {}
    for m, s in enumerate(tau):
        j, inside = _locate(steps.ts, float(s))
        if not inside:
            out[m] = steps.xs[j]
            continue
        dt = float(steps.dts[j])
        theta = (float(s) - float(steps.ts[j])) / dt
        ks = steps.ks[j]
        if tab.P is not None:
            out[m] = _combine(tuple(_dense_weights(tab, theta)), ks, dt, out.dtype, steps.xs[j])
            continue
        if tab.fsal:
            f1 = ks[-1]
        else:  # f_k(x_{j+1}): an extra evaluation (not counted in nfev)
            if j not in f_end:
                f_end[j] = rhs(int(steps.pieces[j]))(steps.xs[j + 1])
            f1 = f_end[j]
        out[m] = _hermite(steps.xs[j], steps.xs[j + 1], ks[0], f1, theta, dt)
    return out


def _embedded_step_vjp(
    params: Params,
    k: int,
    x: np.ndarray,
    xbar: np.ndarray,
    dt: float,
    tab: _Embedded,
    field: str,
    act: str,
    grads: dict[str, np.ndarray],
    kbar_extra: list[np.ndarray | None],
) -> np.ndarray:
    """Reverse of one step of :func:`_embedded_step` of ``f_k`` from ``x`` (N, D): ``xbar`` on
    ``x_new``, ``kbar_extra[i]`` extra cotangents on the stages (dense output). Returns the
    cotangent on ``x``; parameter cotangents are added into ``grads[key][k]``::

        kbar_i = dt b_i xbar + kbar_extra_i + sum_{m>i} dt a_mi ybar_m,  ybar_i = J_i^T kbar_i
    """
    A, b = tab.A, tab.b
    dtype = x.dtype
    caches: list[FieldCache] = []

    def f(y: np.ndarray) -> np.ndarray:
        val, cache = _field_fwd(params, k, y, field, act, True)
        caches.append(cache)
        return val

    _embedded_step(f, x, dt, tab, None)  # recompute the stages, keeping their caches
    ybars: list[np.ndarray | None] = [None] * len(b)
    for i in reversed(range(len(b))):
        extra = kbar_extra[i]
        terms: list[np.ndarray] = [extra] if extra is not None else []
        if b[i] != 0.0:
            terms.insert(0, dtype.type(dt * b[i]) * xbar)
        terms += [
            dtype.type(dt * A[m][i]) * ybar_m
            for m in range(i + 1, len(b))
            if A[m][i] != 0.0 and (ybar_m := ybars[m]) is not None
        ]
        if not terms:
            continue  # stage i does not influence the outputs
        ybars[i], pgrads = _field_vjp(params, k, caches[i], sum(terms[1:], terms[0]), field)
        for key, g in pgrads.items():
            grads[key][k] += g
    out = xbar
    for ybar in ybars:
        if ybar is not None:
            out = out + ybar
    return out


def _add(acc: np.ndarray | None, term: np.ndarray) -> np.ndarray:
    return term if acc is None else acc + term


def _group_vjp(
    params: Params,
    steps: _Steps,
    tab: _Embedded,
    field: str,
    act: str,
    xbar: np.ndarray,
    tau: np.ndarray | None,
    vbar: np.ndarray | None,
    grads: dict[str, np.ndarray],
) -> np.ndarray:
    """Discrete reverse sweep of one group on its frozen grid: ``xbar`` (N, D) on the final
    state, ``vbar`` (len(tau), N, D) on the dense outputs at ``tau``. Returns ``xbar_0``.

    A dense output ``y = x_j + sum_i cast(dt bt_i) K_i`` adds ``ybar`` to ``xbar_j`` and
    ``dt bt_i ybar`` to ``kbar_i``; the Hermite one adds its coefficients' multiples of ``ybar``
    to ``x_j``, ``x_{j+1}``, ``K_1 = f_k(x_j)`` and ``f_k(x_{j+1})`` (``K_s`` with FSAL, else
    an extra field evaluation pulled back here)."""
    n, s = len(steps.dts), len(tab.b)
    dtype = steps.xs.dtype
    at_state: list[np.ndarray | None] = [None] * (n + 1)
    in_step: list[list[tuple[float, np.ndarray]]] = [[] for _ in range(n)]
    if tau is not None:
        assert vbar is not None  # one cotangent per time of tau
        for m in range(len(tau)):
            j, inside = _locate(steps.ts, float(tau[m]))
            if inside:
                theta = (float(tau[m]) - float(steps.ts[j])) / float(steps.dts[j])
                in_step[j].append((theta, vbar[m]))
            else:
                at_state[j] = _add(at_state[j], vbar[m])
    if at_state[n] is not None:
        xbar = xbar + at_state[n]
    for j in reversed(range(n)):
        dt, k = float(steps.dts[j]), int(steps.pieces[j])
        kbar: list[np.ndarray | None] = [None] * s
        xbar_j = at_state[j]
        f1bar = None
        for theta, ybar in in_step[j]:
            if tab.P is not None:
                for i, w in enumerate(_dense_weights(tab, theta)):
                    if w != 0.0:
                        kbar[i] = _add(kbar[i], dtype.type(dt * w) * ybar)
                xbar_j = _add(xbar_j, ybar)
                continue
            c = theta * (theta - 1)
            xbar_j = _add(xbar_j, dtype.type((1 - theta) - c * (1 - 2 * theta)) * ybar)
            xbar = xbar + dtype.type(theta + c * (1 - 2 * theta)) * ybar
            kbar[0] = _add(kbar[0], dtype.type(c * (theta - 1) * dt) * ybar)
            g1 = dtype.type(c * theta * dt) * ybar
            if tab.fsal:
                kbar[-1] = _add(kbar[-1], g1)
            else:
                f1bar = _add(f1bar, g1)
        if f1bar is not None:  # the extra evaluation f_k(x_{j+1}) of the Hermite interpolant
            _, cache = _field_fwd(params, k, steps.xs[j + 1], field, act, True)
            jt, pgrads = _field_vjp(params, k, cache, f1bar, field)
            xbar = xbar + jt
            for key, g in pgrads.items():
                grads[key][k] += g
        xbar = _embedded_step_vjp(params, k, steps.xs[j], xbar, dt, tab, field, act, grads, kbar)
        if xbar_j is not None:
            xbar = xbar + xbar_j
    return xbar


def _fixed_steps(
    params: Params, x0: np.ndarray, T: float, substeps: int, method: str, field: str, act: str
) -> _Steps:
    """The fixed-step trajectory of :func:`odeint` as accepted steps: times
    ``t_j = (T * j) / steps`` (the last ``T``), step size ``T / steps``, ``K_1 = f_k(x_j)``."""
    steps = _num_pieces(params, field) * substeps
    dt = float(T) / steps
    traj = _solve(params, x0, dt, substeps, _tableau(method), field, act, True)
    ts = np.array([(float(T) * j) / steps for j in range(steps + 1)])
    ts[-1] = float(T)
    pieces = np.arange(steps, dtype=np.intp) // substeps
    rhs = _piece_rhs(params, field, act)
    ks = [[rhs(int(pieces[j]))(traj[j])] for j in range(steps)]
    s = len(_tableau(method)[1])
    return _Steps(ts, traj, np.full(steps, dt), pieces, ks, s * steps, steps, 0)


_Groups = list[tuple[np.ndarray, _Steps]]


def _run(
    params: Params,
    x0: np.ndarray,
    *,
    T: float,
    substeps: int,
    method: str,
    field: str,
    act: str,
    rtol: float,
    atol: float,
    first_step: float | None,
    max_steps: int,
    step_control: str,
    grid: np.ndarray | list[np.ndarray] | None,
) -> _Groups:
    """Forward pass as groups ``(rows, steps)``: samples ``rows`` share the accepted steps."""
    _check("method", method, METHODS + ADAPTIVE_METHODS)
    tab = _EMBEDDED[method]
    bounds = _bounds(T, _num_pieces(params, field))
    n = x0.shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if grid is not None:
            if isinstance(grid, (list, tuple)) or np.ndim(grid) == 2:
                if len(grid) != n:
                    raise ValueError(f"grid: expected one array per sample ({n}), got {len(grid)}")
                return [
                    (np.array([i]), _replay_group(
                        params, x0[i : i + 1], _check_grid(grid[i], bounds), bounds, tab, field, act
                    ))
                    for i in range(n)
                ]  # fmt: skip
            g = _check_grid(grid, bounds)
            return [(np.arange(n), _replay_group(params, x0, g, bounds, tab, field, act))]
        if method in METHODS:
            return [(np.arange(n), _fixed_steps(params, x0, T, substeps, method, field, act))]
        _check("step_control", step_control, ("sample", "batch"))
        if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
            raise ValueError(f"rtol and atol must be >= 0, not both 0 (got {rtol}, {atol})")
        if first_step is not None and not first_step > 0:
            raise ValueError(f"first_step must be positive, got {first_step}")
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        args = (bounds, tab, field, act, float(rtol), float(atol), first_step, int(max_steps))
        if step_control == "batch":
            return [(np.arange(n), _adaptive_group(params, x0, np.arange(n), *args))]
        return [
            (np.array([i]), _adaptive_group(params, x0[i : i + 1], np.array([i]), *args))
            for i in range(n)
        ]


def _final(groups: _Groups, x0: np.ndarray) -> np.ndarray:
    out = np.empty_like(x0)
    for rows, steps in groups:
        out[rows] = steps.xs[-1]
    return out


def _dense(
    groups: _Groups, x0: np.ndarray, tau: np.ndarray, method: str, params: Params, field: str,
    act: str,
) -> np.ndarray:  # fmt: skip
    out = np.empty((len(tau), *x0.shape), dtype=x0.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for rows, steps in groups:
            out[:, rows] = _dense_group(steps, tau, _EMBEDDED[method], params, field, act)
    return out


def _stats(groups: _Groups, n: int) -> dict[str, object]:
    nfev, accepted, rejected = (np.zeros(n, dtype=np.int64) for _ in range(3))
    grid: list[np.ndarray | None] = [None] * n
    for rows, steps in groups:
        nfev[rows], accepted[rows], rejected[rows] = steps.nfev, steps.accepted, steps.rejected
        for i in rows:
            grid[int(i)] = steps.ts.copy()
    return {"nfev": nfev, "accepted": accepted, "rejected": rejected, "grid": grid}


# --------------------------------------------------------------------------- neural ODE


@overload
def odeint(
    params: Params,
    X: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
    t: np.ndarray | None = None,
    grid: np.ndarray | list[np.ndarray] | None = None,
    stats: Literal[False] = False,
) -> np.ndarray: ...
@overload
def odeint(
    params: Params,
    X: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
    t: np.ndarray | None = None,
    grid: np.ndarray | list[np.ndarray] | None = None,
    stats: Literal[True],
) -> tuple[np.ndarray, dict[str, object]]: ...
@overload
def odeint(
    params: Params,
    X: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
    t: np.ndarray | None = None,
    grid: np.ndarray | list[np.ndarray] | None = None,
    stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, object]]: ...
def odeint(
    params: Params,
    X: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
    t: np.ndarray | None = None,
    grid: np.ndarray | list[np.ndarray] | None = None,
    stats: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, object]]:
    """Return the solution of ``x' = f_{theta(t)}(x)`` on ``[0, T]``, ``x_0 = [X, 0]``.

    Fixed-step methods (``euler``, ``midpoint``, ``rk4``; ``steps = pieces * substeps``):
    the states on the step grid. Adaptive methods (``dopri5``, ``tsit5``, ``bosh3``;
    docs/guide/adaptive.md, ``substeps`` unused): the final states. ``grid`` replays a grid with
    the method's tableau, without error control (the result is then the final states);
    ``t`` asks for the dense output at those times instead.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the pieces ``K``), of one float dtype; other keys are ignored.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    T : float
        The final time.
    substeps : int, default 1
        Steps per piece (fixed-step methods): ``dt = T / (pieces * substeps)``.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step method or an adaptive pair.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    rtol : float, default 1e-7
        Adaptive methods: the relative tolerance of the error norm.
    atol : float, default 1e-9
        Adaptive methods: the absolute tolerance.
    first_step : float or None, default None
        Adaptive methods: the first step (None: Hairer's heuristic).
    max_steps : int, default 100_000
        Adaptive methods: the attempted steps allowed per sample.
    step_control : {"sample", "batch"}, default "sample"
        Adaptive methods: per-sample step sequences, or one for the whole batch.
    t : numpy.ndarray of float, shape (Q,), optional
        Sorted output times in ``[0, T]``: the dense output there.
    grid : numpy.ndarray or list of numpy.ndarray, optional
        Replay these accepted times (one float64 array, or one per sample, from 0.0 to T)
        with the method's tableau, without error control.
    stats : bool, default False
        Also return the statistics of the run.

    Returns
    -------
    states : numpy.ndarray, shape (steps + 1, N, D), (N, D) or (Q, N, D)
        The states on the step grid (fixed-step), the final states (adaptive, replays), or
        the dense output at ``t``.
    stats : dict of str to object
        With ``stats=True`` only: ``{"nfev", "accepted", "rejected"}`` ((N,) int arrays) and
        ``"grid"`` (a list of N float64 arrays of accepted times, 0.0 .. T).

    Raises
    ------
    StepSizeError
        When an adaptive step fails (a ``ValueError``).
    NonFiniteError
        When a trial state is not finite.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.NeuralODE(2, pieces=2, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> odeint(params, X, T=1.0, field="outside", activation="tanh").shape
    (3, 3, 2)
    >>> odeint(params, X, T=1.0, method="dopri5", field="outside", activation="tanh").shape
    (3, 2)
    """
    x0 = _augment(params, X, augment, field)
    tau = None if t is None else _check_times(t, float(T))
    if method in METHODS and grid is None and tau is None and not stats:
        dt = float(T) / (_num_pieces(params, field) * int(substeps))
        return _solve(params, x0, dt, int(substeps), _tableau(method), field, activation, True)
    groups = _run(
        params, x0, T=float(T), substeps=int(substeps), method=method, field=field,
        act=activation, rtol=rtol, atol=atol, first_step=first_step, max_steps=max_steps,
        step_control=step_control, grid=grid,
    )  # fmt: skip
    if tau is not None:
        result = _dense(groups, x0, tau, method, params, field, activation)
    elif method in METHODS and grid is None:
        result = groups[0][1].xs
    else:
        result = _final(groups, x0)
    return (result, _stats(groups, x0.shape[0])) if stats else result


def _adaptive_vjp(
    params: Params,
    groups: _Groups,
    method: str,
    field: str,
    act: str,
    x0: np.ndarray,
    cotangent: np.ndarray,
    tau: np.ndarray | None,
    grads: dict[str, np.ndarray],
) -> np.ndarray:
    """Discrete reverse sweep of every group on its frozen grid; ``cotangent`` (N, D) on the
    final states, or (len(tau), N, D) on the dense outputs. Returns ``xbar_0`` (N, D)."""
    v = np.asarray(cotangent).astype(x0.dtype, copy=False)
    xbar0 = np.empty_like(x0)
    zero = np.zeros_like(x0)
    for rows, steps in groups:
        xbar_T = zero[rows] if tau is not None else v[rows]
        vbar = v[:, rows] if tau is not None else None
        xbar0[rows] = _group_vjp(
            params, steps, _EMBEDDED[method], field, act, xbar_T, tau, vbar, grads
        )
    return xbar0


def node_forward(
    params: Params,
    X: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    readout: str = "linear",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
) -> np.ndarray:
    """Return the logits ``x_T P^T + c`` of the neural ODE.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the layers or pieces ``K``) and the classifier ``P`` (classes, D), ``c`` (classes,),
        all of one float dtype.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    T : float
        The final time.
    substeps : int, default 1
        Steps per piece (fixed-step methods): ``dt = T / (pieces * substeps)``.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step method or an adaptive pair.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    readout : {"linear", "hardtanh"}, default "linear"
        The logits ``x P^T + c``, or those clipped to ``[-1, 1]``.
    rtol : float, default 1e-7
        Adaptive methods: the relative tolerance of the error norm.
    atol : float, default 1e-9
        Adaptive methods: the absolute tolerance.
    first_step : float or None, default None
        Adaptive methods: the first step (None: Hairer's heuristic).
    max_steps : int, default 100_000
        Adaptive methods: the attempted steps allowed per sample.
    step_control : {"sample", "batch"}, default "sample"
        Adaptive methods: per-sample step sequences, or one for the whole batch.

    Returns
    -------
    numpy.ndarray, shape (N, classes)
        The logits.

    Raises
    ------
    ValueError
        For an unknown option, or when an adaptive step fails (:class:`StepSizeError`).

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.NeuralODE(2, pieces=2, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> z = node_forward(params, X, T=1.0, field="outside", activation="tanh")
    >>> bool(np.allclose(z, resode.NeuralODE(2, pieces=2, seed=0).forward(X)))
    True
    """
    if method in ADAPTIVE_METHODS:
        xT = odeint(
            params, X, T=T, method=method, field=field, activation=activation, augment=augment,
            rtol=rtol, atol=atol, first_step=first_step, max_steps=max_steps,
            step_control=step_control,
        )  # fmt: skip
        return readout_logits(params, xT, readout)
    x0 = _augment(params, X, augment, field)
    dt = float(T) / (_num_pieces(params, field) * int(substeps))
    xT = _solve(params, x0, dt, int(substeps), _tableau(method), field, activation, False)
    return readout_logits(params, xT, readout)


def node_loss_and_grad(
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    turnpike: bool = False,
    gradient: str = "discrete",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
    readout: str = "linear",
    l1: float = 0.0,
    decay_readout: bool = False,
    turnpike_weight: float = 1.0,
) -> tuple[float, dict[str, np.ndarray]]:
    """Return the discretised neural-ODE loss and its gradient.

    The loss is terminal, or the trapezoid running loss with ``turnpike``, plus the
    regulariser; the gradient is exact (``gradient="discrete"``) or the continuous backsolve
    adjoint's (``"adjoint"``; the loss value is the same discretised one). Adaptive methods:
    terminal loss only and the discrete gradient on the frozen accepted grid.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the layers or pieces ``K``) and the classifier ``P`` (classes, D), ``c`` (classes,),
        all of one float dtype.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    y : numpy.ndarray, shape (N,) or (N, classes)
        Integer labels (cross-entropy) or float targets (``"mse"``).
    T : float
        The final time.
    substeps : int, default 1
        Steps per piece (fixed-step methods): ``dt = T / (pieces * substeps)``.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step method or an adaptive pair.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        The data loss.
    weight_decay : float, default 0.0
        Adds ``weight_decay * sum(theta^2)`` over the field parameters.
    turnpike : bool, default False
        The time integral of the data loss (trapezoid rule on the step grid) instead of the
        terminal one.
    gradient : {"discrete", "adjoint"}, default "discrete"
        The exact gradient of the discretised loss, or the backsolve adjoint.
    rtol : float, default 1e-7
        Adaptive methods: the relative tolerance of the error norm.
    atol : float, default 1e-9
        Adaptive methods: the absolute tolerance.
    first_step : float or None, default None
        Adaptive methods: the first step (None: Hairer's heuristic).
    max_steps : int, default 100_000
        Adaptive methods: the attempted steps allowed per sample.
    step_control : {"sample", "batch"}, default "sample"
        Adaptive methods: per-sample step sequences, or one for the whole batch.
    readout : {"linear", "hardtanh"}, default "linear"
        The logits ``x P^T + c``, or those clipped to ``[-1, 1]``.
    l1 : float, default 0.0
        Adds ``l1 * sum |theta|`` over the field parameters (subgradient 0 at 0).
    decay_readout : bool, default False
        Put ``P`` under ``weight_decay`` too.
    turnpike_weight : float, default 1.0
        The turnpike integral's weight.

    Returns
    -------
    loss : float
        The loss value.
    grads : dict of str to numpy.ndarray
        Its gradient, with the keys, shapes and dtypes of ``params``.

    Raises
    ------
    ValueError
        For an unknown option, ``turnpike`` with an adaptive method, or a failed adaptive step.
    NotImplementedError
        For ``gradient="adjoint"`` with an adaptive method.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.NeuralODE(2, pieces=2, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> loss, grads = node_loss_and_grad(params, X, y, T=1.0, field="outside",
    ...                                  activation="tanh")
    >>> loss_core, _ = resode.NeuralODE(2, pieces=2, seed=0).loss_and_grad(X, y)
    >>> abs(loss - loss_core) < 1e-12, grads["W"].shape
    (True, (2, 2, 2))
    """
    if method in ADAPTIVE_METHODS:
        if turnpike:
            raise ValueError("turnpike losses need a fixed-step method (euler, midpoint, rk4)")
        _check("gradient", gradient, ("discrete", "adjoint"))
        if gradient == "adjoint":
            raise NotImplementedError("the adjoint gradient of adaptive methods")
        _check("loss", loss, LOSSES)
        keys = _field_keys(field)
        x0 = _augment(params, X, augment, field)
        groups = _run(
            params, x0, T=float(T), substeps=1, method=method, field=field, act=activation,
            rtol=rtol, atol=atol, first_step=first_step, max_steps=max_steps,
            step_control=step_control, grid=None,
        )  # fmt: skip
        value, xbar, gP, gc = _state_loss(params, _final(groups, x0), y, loss)
        grads = _zero_grads(params, keys, x0.dtype)
        _adaptive_vjp(params, groups, method, field, activation, x0, xbar, None, grads)
        grads["P"], grads["c"] = gP, gc
        value += _regulariser(params, keys, weight_decay)
        return value, _finish_grads(params, grads, keys, weight_decay)
    dt = float(T) / (_num_pieces(params, field) * int(substeps))
    return _loss_and_grad(
        params,
        X,
        y,
        h=dt,
        substeps=int(substeps),
        tableau=_tableau(method),
        field=field,
        act=activation,
        augment=augment,
        loss=loss,
        weight_decay=weight_decay,
        turnpike=bool(turnpike),
        gradient=gradient,
        kind=readout,
        l1=l1,
        decay_readout=decay_readout,
        turnpike_weight=turnpike_weight,
    )


def odeint_vjp(
    params: Params,
    X: np.ndarray,
    cotangent: np.ndarray,
    *,
    T: float,
    substeps: int = 1,
    method: str = "rk4",
    field: str,
    activation: str,
    augment: int = 0,
    gradient: str = "discrete",
    rtol: float = 1e-7,
    atol: float = 1e-9,
    first_step: float | None = None,
    max_steps: int = 100_000,
    step_control: str = "sample",
    t: np.ndarray | None = None,
    grid: np.ndarray | list[np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return the vector-Jacobian product of :func:`odeint`.

    Fixed-step methods without ``t`` / ``grid``: ``cotangent`` (N, D) on the final state
    ``x_steps``, or (steps + 1, N, D) on all states (``v_j`` on ``x_j``);
    ``gradient="adjoint"`` uses the backsolve adjoint with ``a(T) = v_steps``, the jumps
    ``a(t_j) += v_j`` and no loss terms. Otherwise (adaptive methods, ``grid`` replays,
    dense output at ``t``): the discrete gradient of the computed solution with the accepted
    grid frozen, ``cotangent`` (N, D) on the final states or (Q, N, D) on the dense
    outputs at ``t`` (the interpolant is differentiated too).

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The field parameters (``W``, ``b`` or ``W1``, ``b1``, ``W2``, ``b2``, leading axis
        the pieces ``K``), of one float dtype; other keys are ignored.
    X : numpy.ndarray, shape (N, dim)
        The inputs, in the parameters' dtype.
    cotangent : numpy.ndarray, shape (N, D), (steps + 1, N, D) or (Q, N, D)
        The cotangent ``v``, as above.
    T : float
        The final time.
    substeps : int, default 1
        Steps per piece (fixed-step methods): ``dt = T / (pieces * substeps)``.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step method or an adaptive pair.
    field : {"outside", "inside", "bottleneck"}
        The field ``f_k``.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}
        The activation ``sigma``.
    augment : int, default 0
        Zero columns appended to ``X``: ``D = dim + augment``.
    gradient : {"discrete", "adjoint"}, default "discrete"
        The exact gradient, or the backsolve adjoint (fixed-step methods).
    rtol : float, default 1e-7
        Adaptive methods: the relative tolerance of the error norm.
    atol : float, default 1e-9
        Adaptive methods: the absolute tolerance.
    first_step : float or None, default None
        Adaptive methods: the first step (None: Hairer's heuristic).
    max_steps : int, default 100_000
        Adaptive methods: the attempted steps allowed per sample.
    step_control : {"sample", "batch"}, default "sample"
        Adaptive methods: per-sample step sequences, or one for the whole batch.
    t : numpy.ndarray of float, shape (Q,), optional
        Sorted output times in ``[0, T]``: the dense output there.
    grid : numpy.ndarray or list of numpy.ndarray, optional
        Replay these accepted times (one float64 array, or one per sample, from 0.0 to T)
        with the method's tableau, without error control.

    Returns
    -------
    grads : dict of str to numpy.ndarray
        ``v^T dx / dtheta`` for the field parameters only (their keys, shapes, dtypes).
    dX : numpy.ndarray, shape (N, dim)
        ``v^T dx / dX``, the augmented columns dropped.

    Raises
    ------
    ValueError
        For an unknown ``gradient``, or a failed adaptive step.
    NotImplementedError
        For ``gradient="adjoint"`` with an adaptive method, a replay or dense output.

    Examples
    --------
    >>> import numpy as np, resode
    >>> from resode import reference as ref
    >>> params = resode.NeuralODE(2, pieces=2, seed=0).params
    >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]]); y = np.array([0, 1, 1])
    >>> grads, dX = odeint_vjp(params, X, np.ones((3, 2)), T=1.0, field="outside",
    ...                        activation="tanh")
    >>> grads_core, dX_core = resode.odeint_vjp(params, X, np.ones((3, 2)), T=1.0)
    >>> bool(np.allclose(dX, dX_core)), sorted(grads)
    (True, ['W', 'b'])
    """
    _check("gradient", gradient, ("discrete", "adjoint"))
    keys = _field_keys(field)
    x0 = _augment(params, X, augment, field)
    grads = _zero_grads(params, keys, x0.dtype)
    field_params = {key: params[key] for key in keys}
    if method in ADAPTIVE_METHODS or grid is not None or t is not None:
        if gradient == "adjoint":
            raise NotImplementedError(
                "the adjoint gradient of adaptive methods, replays, dense output"
            )
        tau = None if t is None else _check_times(t, float(T))
        groups = _run(
            params, x0, T=float(T), substeps=int(substeps), method=method, field=field,
            act=activation, rtol=rtol, atol=atol, first_step=first_step, max_steps=max_steps,
            step_control=step_control, grid=grid,
        )  # fmt: skip
        xbar0 = _adaptive_vjp(params, groups, method, field, activation, x0, cotangent, tau, grads)
        dX = np.ascontiguousarray(xbar0[:, : np.shape(X)[1]])
        return _finish_grads(field_params, grads, keys, 0.0), dX
    substeps = int(substeps)
    dt = float(T) / (_num_pieces(params, field) * substeps)
    tableau = _tableau(method)
    v = np.asarray(cotangent).astype(x0.dtype, copy=False)
    every = v.ndim == 3  # (steps + 1, N, D): v_j on every state x_j
    xbar = v[-1] if every else v
    if gradient == "discrete":
        traj = _solve(params, x0, dt, substeps, tableau, field, activation, store=True)
        xbar0 = _discrete_backward(
            params, traj, xbar, dt, substeps, tableau, field, activation, grads,
            (lambda j, x: v[j]) if every else None,
        )  # fmt: skip
    else:
        xT = _solve(params, x0, dt, substeps, tableau, field, activation, store=False)
        xbar0, _, _ = _adjoint_backward(
            params, xT, xbar, dt, substeps, tableau, field, activation, grads,
            jumps=v if every else None,
        )  # fmt: skip
    dX = np.ascontiguousarray(xbar0[:, : np.shape(X)[1]])
    return _finish_grads(field_params, grads, keys, 0.0), dX


# --------------------------------------------------------------------------- neural CDE
# The neural CDE's mathematics live in reference_cde.py (which imports nothing from here);
# re-exported (``import x as x``) so that ``resode.reference`` holds every model.
from .reference_cde import cde_logits as cde_logits  # noqa: E402
from .reference_cde import cde_loss_and_grad as cde_loss_and_grad  # noqa: E402
from .reference_cde import cde_solve as cde_solve  # noqa: E402
from .reference_cde import cde_vjp as cde_vjp  # noqa: E402
from .reference_driven import driven_grids as driven_grids  # noqa: E402
from .reference_driven import driven_logits as driven_logits  # noqa: E402
from .reference_driven import driven_loss_and_grad as driven_loss_and_grad  # noqa: E402
from .reference_driven import driven_solve as driven_solve  # noqa: E402
from .reference_driven import driven_vjp as driven_vjp  # noqa: E402
