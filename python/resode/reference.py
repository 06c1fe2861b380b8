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
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

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
    """Elementwise activation ``sigma(x)``; any shape, same dtype as ``x``."""
    x = np.asarray(x)
    return _act_and_grad(name, x, False)[0]


def activation_grad(name: str, x: np.ndarray) -> np.ndarray:
    """Elementwise derivative ``sigma'(x)`` (relu: 1 if x > 0 else 0); same shape/dtype."""
    x = np.asarray(x)
    return _act_and_grad(name, x, True)[1]


# --------------------------------------------------------------------------- fields


def _field_fwd(
    params: Params, k: int, x: np.ndarray, field: str, act: str, need_cache: bool
) -> tuple[np.ndarray, FieldCache | None]:
    """Evaluate ``f_k(x)`` for ``x`` (N, D); returns ``(f (N, D), cache or None)``."""
    if field == "outside":
        W, b = params["W"][k], params["b"][k]
        pre = x @ W.T + b
        f, dpre = _act_and_grad(act, pre, need_cache)
        return f, ((x, dpre) if need_cache else None)
    if field == "inside":
        W, b = params["W"][k], params["b"][k]
        sx, dsx = _act_and_grad(act, x, need_cache)
        return sx @ W.T + b, ((sx, dsx) if need_cache else None)
    if field == "bottleneck":
        W1, b1, W2, b2 = params["W1"][k], params["b1"][k], params["W2"][k], params["b2"][k]
        hid, dhid = _act_and_grad(act, x @ W1.T + b1, need_cache)
        return hid @ W2.T + b2, ((x, hid, dhid) if need_cache else None)
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
    """Vector field ``f_k(x)`` of layer / piece ``k`` for states ``x`` (N, D) -> (N, D)."""
    return _field_fwd(params, k, np.asarray(x), field, activation, False)[0]


# --------------------------------------------------------------------------- losses


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
    """Data loss of logits (N, classes) against labels (N,) ints or targets (N, classes)."""
    return _data_loss_and_grad(logits, y, loss, False)[0]


def data_loss_grad(logits: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """Gradient of :func:`data_loss` with respect to the logits, shape (N, classes)."""
    return _data_loss_and_grad(logits, y, loss, True)[1]


def readout_logits(params: Params, x: np.ndarray, readout: str = "linear") -> np.ndarray:
    """Logits ``x P^T + c`` of states x (N, D), clipped to ``[-1, 1]`` for ``"hardtanh"``."""
    _check("readout", readout, READOUTS)
    z = x @ params["P"].T + params["c"]
    return np.clip(z, -1.0, 1.0) if readout == "hardtanh" else z


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
        acc = None
        for a, v in terms:
            t = v[c] if a == 1.0 else a * v[c]
            acc = t if acc is None else acc + t
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
        kbar = (h * b[i]) * xbar if b[i] != 0.0 else None
        for m in range(i + 1, n_stages):
            if A[m][i] != 0.0 and ybars[m] is not None:
                t = (h * A[m][i]) * ybars[m]
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
        dtype = np.float64
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
            _, gP, gc = _adjoint_backward(
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
    """States ``x^0..x^L`` of ``x^{k+1} = x^k + h f_k(x^k)``; X (N, dim) -> (L+1, N, D)."""
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
    """Logits ``x^L P^T + c`` of the ResNet (clipped for ``readout="hardtanh"``);
    X (N, dim) -> (N, classes)."""
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
    """ResNet loss ``data_loss(x^L P^T + c, y) + weight_decay * |theta|^2`` and its exact
    gradient (backpropagation). X (N, dim); y (N,) int labels or (N, classes) targets.
    Returns ``(loss, grads)`` with grads of the same keys / shapes / dtypes as ``params``."""
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


# --------------------------------------------------------------------------- neural ODE


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
) -> np.ndarray:
    """RK solution of ``x' = f_{theta(t)}(x)`` on the step grid; X (N, dim) ->
    (steps+1, N, D), ``steps = pieces * substeps`` (pieces = leading axis of the field
    params), ``x_0 = [X, 0]``."""
    x0 = _augment(params, X, augment, field)
    dt = float(T) / (_num_pieces(params, field) * int(substeps))
    return _solve(params, x0, dt, int(substeps), _tableau(method), field, activation, True)


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
) -> np.ndarray:
    """Logits ``x_steps P^T + c`` of the neural ODE (clipped for ``readout="hardtanh"``);
    X (N, dim) -> (N, classes)."""
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
    readout: str = "linear",
    l1: float = 0.0,
    decay_readout: bool = False,
    turnpike_weight: float = 1.0,
) -> tuple[float, dict[str, np.ndarray]]:
    """Discretised neural-ODE loss (terminal, or trapezoid running loss if ``turnpike``) plus
    weight decay, and its gradient: exact (``gradient="discrete"``) or by the continuous
    backsolve adjoint (``"adjoint"``; the loss value is the same discretised one).
    X (N, dim); y (N,) int labels or (N, classes) targets. Returns ``(loss, grads)`` with the
    same keys / shapes / dtypes as ``params``."""
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
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Vector-Jacobian product of the final state ``x_steps`` (N, D) of :func:`odeint` with
    ``cotangent`` (N, D), or of all states with ``cotangent`` (steps + 1, N, D) (``v_j`` on
    ``x_j``). Returns ``(grads, dX)``: grads of the field params only (their keys, shapes,
    dtypes) and ``dX = xbar_0[:, :dim]`` of shape (N, dim). ``gradient="adjoint"`` uses the
    backsolve adjoint with ``a(T) = v_steps``, the jumps ``a(t_j) += v_j`` and no loss terms."""
    _check("gradient", gradient, ("discrete", "adjoint"))
    keys = _field_keys(field)
    x0 = _augment(params, X, augment, field)
    substeps = int(substeps)
    dt = float(T) / (_num_pieces(params, field) * substeps)
    tableau = _tableau(method)
    grads = _zero_grads(params, keys, x0.dtype)
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
    field_params = {key: params[key] for key in keys}
    return _finish_grads(field_params, grads, keys, 0.0), dX
