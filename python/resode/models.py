"""The two models: :class:`ResNet` (a residual network) and :class:`NeuralODE` (a neural ODE
with piecewise-constant controls). Both hold their parameters in a plain dict of NumPy arrays,
``model.params``, and run every sweep in the compiled core (``resode._core``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core
from ._validation import (
    as_features,
    as_float_array,
    as_labels,
    check_choice,
    check_int,
    check_positive,
    resolve_dtype,
)

__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_METHODS",
    "FIELDS",
    "GRADIENTS",
    "LOSSES",
    "METHODS",
    "READOUTS",
    "NeuralODE",
    "ResNet",
    "adaptive_options",
    "summarize_stats",
]

FIELDS = ("outside", "inside", "bottleneck")
ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu", "identity")
LOSSES = ("cross_entropy", "mse")
FIXED_METHODS = ("euler", "midpoint", "rk4")
ADAPTIVE_METHODS = ("dopri5", "tsit5", "bosh3")
METHODS = FIXED_METHODS + ADAPTIVE_METHODS
STEP_CONTROLS = ("sample", "batch")
# The adaptive options and their defaults (docs/adaptive.md).
ADAPTIVE_DEFAULTS: dict[str, Any] = {
    "rtol": 1e-7,
    "atol": 1e-9,
    "first_step": None,
    "max_steps": 100_000,
    "step_control": "sample",
}
GRADIENTS = ("discrete", "adjoint")
READOUTS = ("linear", "hardtanh")


def field_param_names(field: str) -> tuple[str, ...]:
    """Names of the field parameters, in the order the core expects them."""
    return ("W1", "b1", "W2", "b2") if field == "bottleneck" else ("W", "b")


def field_param_shapes(field: str, pieces: int, D: int, H: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the field parameters with leading axis `pieces` (layers or control pieces)."""
    if field == "bottleneck":
        return {"W1": (pieces, H, D), "b1": (pieces, H), "W2": (pieces, D, H), "b2": (pieces, D)}
    return {"W": (pieces, D, D), "b": (pieces, D)}


def init_params(
    field: str, pieces: int, D: int, H: int, classes: int, dtype: np.dtype, seed: Any
) -> dict[str, np.ndarray]:
    """Initial parameters, as ``torch.nn.Linear`` does it: every weight and bias of a linear map
    with fan-in ``m`` is drawn uniformly from ``[-1/sqrt(m), 1/sqrt(m)]``; drawn in the order
    W, b (or W1, b1, W2, b2), P, c from ``np.random.default_rng(seed)``."""
    if isinstance(seed, bool) or (seed is not None and not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed must be None or a non-negative integer, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed}")
    rng = np.random.default_rng(seed)
    shapes = field_param_shapes(field, pieces, D, H)
    shapes.update({"P": (classes, D), "c": (classes,)})
    fan_in = {"W": D, "b": D, "W1": D, "b1": D, "W2": H, "b2": H, "P": D, "c": D}
    params = {}
    for name, shape in shapes.items():
        bound = 1.0 / np.sqrt(fan_in[name])
        params[name] = rng.uniform(-bound, bound, size=shape).astype(dtype)
    return params


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def r2_score(y: np.ndarray, z: np.ndarray) -> float:
    """Coefficient of determination of predictions ``z`` for targets ``y``, both ``(N, C)``:
    ``1 - SS_res / SS_tot`` per column, averaged over the columns (a constant column counts
    1 when predicted exactly and 0 otherwise, as scikit-learn's ``r2_score``)."""
    y64, z64 = np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
    ss_res = np.sum((y64 - z64) ** 2, axis=0)
    ss_tot = np.sum((y64 - y64.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(r2))


def adaptive_options(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The checked adaptive options (``rtol``, ``atol``, ``first_step``, ``max_steps``,
    ``step_control``; ``None`` = the default) for ``method``: their defaults filled in for an
    adaptive method, an error naming them when given with a fixed-step method (``{}``)."""
    set_ = sorted(k for k, v in given.items() if v is not None)
    if method not in ADAPTIVE_METHODS:
        if set_:
            raise ValueError(
                f"{', '.join(set_)} apply to the adaptive methods {ADAPTIVE_METHODS} only, not "
                f"to method={method!r} (a fixed step dt = T / (pieces * substeps))"
            )
        return {}
    out = {
        k: (ADAPTIVE_DEFAULTS[k] if given.get(k) is None else given[k]) for k in ADAPTIVE_DEFAULTS
    }
    out["rtol"] = check_positive("rtol", out["rtol"], allow_zero=True)
    out["atol"] = check_positive("atol", out["atol"], allow_zero=True)
    if out["rtol"] == 0 and out["atol"] == 0:
        raise ValueError("rtol and atol must not both be 0")
    if out["first_step"] is not None:
        out["first_step"] = check_positive("first_step", out["first_step"])
    out["max_steps"] = check_int("max_steps", out["max_steps"], 1)
    out["step_control"] = check_choice("step_control", out["step_control"], STEP_CONTROLS)
    return out


_BACKWARD_COUNTS = ("backward_nfev", "backward_accepted", "backward_rejected")


def summarize_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Totals and min/median/max over samples of an adaptive run's per-sample counts
    (``nfev``, ``accepted``, ``rejected``, each ``(N,)`` int64), plus the arrays themselves and
    each sample's accepted ``grid``: ``stats["nfev"]`` (the total), ``stats["nfev_per_sample"]``,
    ``stats["nfev_min"]``, ``..._median``, ``..._max``, and so on.

    These count the forward run. After a ``gradient="adjoint"`` gradient the backward run's
    counts come with them under the same scheme: ``backward_nfev`` (evaluations of the field,
    each with its vector-Jacobian product), ``backward_accepted`` and ``backward_rejected``
    (absent for other runs: the discrete gradient replays the forward grid)."""
    out: dict[str, Any] = {}
    keys = ("nfev", "accepted", "rejected", *(k for k in _BACKWARD_COUNTS if k in stats))
    for key in keys:
        counts = np.asarray(stats[key])
        out[key] = int(counts.sum())
        out[f"{key}_per_sample"] = counts
        out[f"{key}_min"] = int(counts.min())
        out[f"{key}_median"] = float(np.median(counts))
        out[f"{key}_max"] = int(counts.max())
    out["grid"] = list(stats["grid"])
    return out


class _Model:
    """What ResNet and NeuralODE share: parameters, configuration, prediction and training API."""

    _kind = ""

    def __init__(
        self,
        dim: int,
        pieces: int,
        *,
        classes: int,
        field: str,
        activation: str,
        hidden: int | None,
        augment: int,
        loss: str,
        weight_decay: float,
        readout: str,
        l1: float,
        decay_readout: bool,
        dtype: Any,
        seed: Any,
    ) -> None:
        self.dim = check_int("dim", dim, 1)
        self.classes = check_int("classes", classes, 1)
        self.field = check_choice("field", field, FIELDS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.augment = check_int("augment", augment, 0)
        self.loss = check_choice("loss", loss, LOSSES)
        if self.loss == "cross_entropy" and self.classes < 2:
            raise ValueError(f"classes must be >= 2 for loss 'cross_entropy', got {classes}")
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.readout = check_choice("readout", readout, READOUTS)
        self.l1 = check_positive("l1", l1, allow_zero=True)
        self.decay_readout = _check_bool("decay_readout", decay_readout)
        self.dtype = resolve_dtype(dtype)
        self.seed = seed
        if self.field == "bottleneck":
            if hidden is None:
                raise ValueError("hidden must be given (an int >= 1) for field='bottleneck'")
            self.hidden: int | None = check_int("hidden", hidden, 1)
        elif hidden is not None:
            raise ValueError(
                f"hidden applies to field='bottleneck' only (field={self.field!r} has no hidden "
                f"layer); got hidden={hidden!r}"
            )
        else:
            self.hidden = None
        self.D = self.dim + self.augment
        self._pieces = pieces
        # Regression with classes == 1: whether the last fit saw targets (N,) rather than
        # (N, 1), so that predict returns the same shape.
        self._flat_targets = False
        H = self.hidden if self.field == "bottleneck" else self.D
        sizes = field_param_shapes(self.field, pieces, self.D, H).values()
        count = sum(int(np.prod(shape, dtype=np.float64)) for shape in sizes)
        if count > 2**31:
            raise ValueError(
                f"the model would have {count} field parameters, more than the limit of 2**31: "
                "reduce layers/pieces, dim, augment or hidden"
            )
        self.params: dict[str, np.ndarray] = init_params(
            self.field, pieces, self.D, H, self.classes, self.dtype, seed
        )
        self._shapes = self._param_shapes()

    # -- what subclasses define -------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable) that rebuild this model."""
        raise NotImplementedError

    def _sweep_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def _shared_config(self) -> dict[str, Any]:
        """The constructor arguments both models have."""
        seed = self.seed
        return {
            "classes": self.classes,
            "field": self.field,
            "activation": self.activation,
            "hidden": self.hidden,
            "augment": self.augment,
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "readout": self.readout,
            "l1": self.l1,
            "decay_readout": self.decay_readout,
            "dtype": self.dtype.name,
            "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
        }

    def _gradient_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def _loss_args(self) -> dict[str, Any]:
        """The loss terms of the core's loss_and_grad and train_epoch."""
        return {
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "readout": self.readout,
            "l1": self.l1,
            "decay_readout": self.decay_readout,
        }

    # -- boundary conversion ------------------------------------------------------------------
    def _theta(self) -> list[np.ndarray]:
        return [self._param(name) for name in field_param_names(self.field)]

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every entry of ``params`` must have, from the configuration."""
        H = self.hidden if self.field == "bottleneck" else self.D
        shapes = field_param_shapes(self.field, self._pieces, self.D, H)
        shapes.update({"P": (self.classes, self.D), "c": (self.classes,)})
        return shapes

    def _param(self, name: str) -> np.ndarray:
        if not isinstance(self.params, dict):
            raise TypeError(
                f"params must be a dict of arrays {sorted(self._shapes)}, got "
                f"{type(self.params).__name__}"
            )
        if name not in self.params:
            raise ValueError(f"params is missing '{name}'")
        value = as_float_array(f"params['{name}']", self.params[name], self.dtype)
        expected = self._shapes[name]
        if value.shape != expected:
            raise ValueError(f"params['{name}'] must have shape {expected}, got {value.shape}")
        return value

    def _X(self, X: Any) -> np.ndarray:
        return as_features(X, self.dim, self.dtype)

    def _targets(self, y: Any, n: int) -> np.ndarray:
        if self.loss == "cross_entropy":  # for _core, which checks the label range itself
            return as_labels(y, n, self.classes, core_checks_range=True)
        t = as_float_array("y", y, self.dtype)
        if self.classes == 1 and t.shape == (n,):
            return t.reshape(n, 1)
        if t.shape != (n, self.classes):
            flat = f" or ({n},)" if self.classes == 1 else ""
            raise ValueError(
                f"y must have shape ({n}, {self.classes}){flat} for loss 'mse', got shape {t.shape}"
            )
        return t

    # -- public API ----------------------------------------------------------------------------
    def forward(self, X: Any) -> np.ndarray:
        """Logits ``z = x_final P^T + c``, shape ``(N, classes)``, for ``X`` ``(N, dim)``;
        clamped to ``[-1, 1]`` with ``readout="hardtanh"``."""
        return _core.logits(
            self._X(X),
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._sweep_args(),
            readout=self.readout,
        )

    def trajectory(self, X: Any) -> np.ndarray:
        """All states on the layer/step grid, shape ``(steps + 1, N, D)``, ``D = dim + augment``."""
        return _core.trajectory(self._X(X), self._theta(), **self._sweep_args())

    @property
    def task(self) -> str:
        """``"regression"`` for ``loss="mse"``, ``"classification"`` for cross-entropy."""
        return "regression" if self.loss == "mse" else "classification"

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``softmax(logits)`` of shape ``(N, classes)``."""
        z = self.forward(X)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for ``X`` ``(N, dim)``.

        Classification (cross-entropy): labels ``argmax(logits)``, int64 ``(N,)``.
        Regression (``loss="mse"``): the outputs ``z = x_final P^T + c`` ``(N, classes)``, or
        ``(N,)`` when ``classes == 1`` and the model was fitted on targets of shape ``(N,)``.
        """
        z = self.forward(X)
        if self.task == "regression":
            return z[:, 0] if self.classes == 1 and self._flat_targets else z
        return np.argmax(z, axis=1).astype(np.int64)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy for classification, the coefficient of determination R^2 for regression.

        Classification: the fraction of samples whose predicted label equals ``y`` (labels
        ``(N,)``, or one-hot/float targets ``(N, classes)``, compared by argmax).
        Regression: ``R^2 = 1 - sum (y - z)^2 / sum (y - mean(y))^2`` per output, averaged
        over the outputs (scikit-learn's ``r2_score``); ``y`` of shape ``(N, classes)``, or
        ``(N,)`` when ``classes == 1``.
        """
        if self.task == "regression":
            z = self.forward(X)
            return r2_score(self._targets(y, z.shape[0]), z)
        pred = self.predict(X)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape == (pred.shape[0], self.classes) and self.classes > 1:
            y = np.argmax(y, axis=1)
        if y.shape != pred.shape:
            raise ValueError(
                f"y must have shape {pred.shape} (labels) or {(pred.shape[0], self.classes)} "
                f"(targets) to match X, got shape {y.shape}"
            )
        labels = as_labels(y, pred.shape[0], self.classes)
        return float(np.mean(pred == labels))

    def loss_and_grad(self, X: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and its gradient in one call into the core (forward sweep, loss, backward sweep).

        Parameters
        ----------
        X : array_like, shape (N, dim)
        y : array_like
            Integer labels ``(N,)`` in ``[0, classes)`` for ``loss="cross_entropy"``, float
            targets ``(N, classes)`` for ``loss="mse"``.

        Returns
        -------
        loss : float
            data loss + ``weight_decay * sum(theta**2)`` over the field parameters (and ``P``
            with ``decay_readout``) + ``l1 * sum(|theta|)`` over the field parameters.
        grads : dict
            Same keys, shapes and dtype as ``params``.
        """
        Xc = self._X(X)
        targets = self._targets(y, Xc.shape[0])
        loss, dtheta, dP, dc = _core.loss_and_grad(
            Xc,
            targets,
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._sweep_args(),
            **self._loss_args(),
            **self._gradient_args(),
        )
        grads = dict(zip(field_param_names(self.field), dtheta))
        grads.update(P=dP, c=dc)
        return float(loss), grads

    def save(self, path: Any) -> Any:
        """Save config and parameters to one ``.npz`` file (atomically); see :func:`resode.load`.
        Returns the path written."""
        from .io import save

        return save(self, path)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


class ResNet(_Model):
    """Residual network ``x^{k+1} = x^k + h f_k(x^k)``, ``k = 0..L-1``, logits ``x^L P^T + c``.

    Parameters
    ----------
    dim : int
        Input features; inputs are augmented with ``augment`` zero columns to ``D = dim + augment``.
    layers : int
        L >= 1.
    classes, field, activation, hidden, augment, h, loss, weight_decay, readout, l1, decay_readout,
    dtype, seed
        See the README; ``readout`` ``"linear"`` (``z = x P^T + c``) or ``"hardtanh"`` (``z``
        clipped to ``[-1, 1]``, leia's MSE model); ``l1`` adds ``l1 * sum |theta|`` over the
        field parameters (subgradient 0 at 0); ``decay_readout`` puts ``P`` under
        ``weight_decay`` too. ``field`` in ``outside`` ``sigma(W x + b)``, ``inside``
        ``W sigma(x) + b``, ``bottleneck`` ``W2 sigma(W1 x + b1) + b2`` (needs ``hidden``).

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.ResNet(2, layers=10, h=0.1, seed=0)
    >>> X = np.random.default_rng(0).normal(size=(5, 2)); y = np.array([0, 1, 0, 1, 1])
    >>> loss, grads = model.loss_and_grad(X, y)
    >>> grads["W"].shape
    (10, 2, 2)
    """

    _kind = "resnet"

    def __init__(
        self,
        dim: int,
        layers: int,
        *,
        classes: int = 2,
        field: str = "outside",
        activation: str = "tanh",
        hidden: int | None = None,
        augment: int = 0,
        h: float = 1.0,
        loss: str = "cross_entropy",
        weight_decay: float = 0.0,
        readout: str = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        dtype: Any = "float64",
        seed: Any = None,
    ) -> None:
        self.layers = check_int("layers", layers, 1)
        self.h = check_positive("h", h)
        super().__init__(
            dim,
            self.layers,
            classes=classes,
            field=field,
            activation=activation,
            hidden=hidden,
            augment=augment,
            loss=loss,
            weight_decay=weight_decay,
            readout=readout,
            l1=l1,
            decay_readout=decay_readout,
            dtype=dtype,
            seed=seed,
        )

    @property
    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "layers": self.layers, "h": self.h, **self._shared_config()}

    def _sweep_args(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "activation": self.activation,
            "method": "euler",
            "dt": self.h,
            "substeps": 1,
            "augment": self.augment,
        }

    def _gradient_args(self) -> dict[str, Any]:
        return {"turnpike": False, "gradient": "discrete", "checkpoints": 0}


class NeuralODE(_Model):
    """Neural ODE ``x'(t) = f(theta(t), x(t))`` on ``[0, T]``, controls ``theta(t)`` piecewise
    constant on ``pieces`` equal intervals, integrated with a fixed-step explicit method.

    The step grid: ``steps = pieces * substeps``, ``dt = T / steps``, ``t_j = j dt``; step ``j``
    uses the parameters of piece ``j // substeps`` in all its stages.

    Parameters
    ----------
    dim : int
        Input features (``D = dim + augment``).
    T : float
        Final time, > 0.
    pieces : int
        Number of constant pieces of the controls (leading axis of the field parameters).
    substeps : int
        Integrator steps per piece.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}
        Fixed-step methods (orders 1, 2, 4) or the adaptive embedded pairs Dormand-Prince
        5(4), Tsitouras 5(4) and Bogacki-Shampine 3(2) (docs/adaptive.md): every sample gets
        its own accepted step sequence, steps land on each piece boundary ``k T / pieces``, and
        ``model.stats`` holds the function evaluations and steps of the last run (with
        ``gradient="adjoint"`` also those of its backward run: ``backward_nfev``,
        ``backward_accepted``, ``backward_rejected``; see :func:`summarize_stats`).
    rtol, atol, first_step, max_steps, step_control
        Adaptive methods only (a ValueError with a fixed-step method): the error norm's
        tolerances (default ``1e-7``, ``1e-9``), the first step (``None``: Hairer's
        heuristic), the attempted steps allowed per sample (default ``100_000``, then
        :class:`resode.StepSizeError`), and ``"sample"`` (default: per-sample step sequences)
        or ``"batch"`` (one sequence from the max error over the batch, as torchdiffeq).
    turnpike : bool
        Replace the terminal data loss by its time integral, by the trapezoid rule on the step
        grid: ``dt * (l_0/2 + l_1 + ... + l_{steps-1} + l_steps/2)``.
    turnpike_weight : float
        ``turnpike=True`` only: the integral times this weight (> 0, default 1); see the
        README for leia's ``1.75 * sum`` form.
    gradient : {"discrete", "adjoint"}
        ``"discrete"`` (default) is the exact gradient of the discretised loss: a reverse sweep
        through the Runge-Kutta stages (discretise-then-optimise). Prefer it whenever the
        memory of the stored states, ``(steps + 1) x N x D`` per block of samples, fits, or use
        ``checkpoints``. ``"adjoint"`` is the continuous backsolve adjoint of Chen et al. (2018)
        (optimise-then-discretise): the state, the adjoint and the parameter gradients are
        integrated backward from ``T`` with the same method and grid. Its memory does not grow
        with ``steps``, but it is only an approximation of the gradient of the loss you
        compute (its error shrinks at the method's order) and the backward re-integration of
        the state can be unstable for stiff or expansive fields.
    checkpoints : int or None
        Discrete gradient only: store ``K`` step states and recompute each segment of
        ``ceil(steps/K)`` steps on the way back; memory ``(K + steps/K + 1) x B x D`` per block
        of ``B`` samples, one extra forward sweep, same gradient to round-off.
    classes, field, activation, hidden, augment, loss, weight_decay, readout, l1,
    decay_readout, dtype, seed
        As for :class:`ResNet`.

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.NeuralODE(2, T=5.0, pieces=16, field="bottleneck", hidden=50,
    ...                          augment=1, activation="relu", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(8, 2)); y = np.arange(8) % 2
    >>> model.trajectory(X).shape
    (17, 8, 3)
    """

    _kind = "node"

    def __init__(
        self,
        dim: int,
        *,
        T: float = 1.0,
        pieces: int = 10,
        substeps: int = 1,
        method: str = "rk4",
        classes: int = 2,
        field: str = "outside",
        activation: str = "tanh",
        hidden: int | None = None,
        augment: int = 0,
        loss: str = "cross_entropy",
        weight_decay: float = 0.0,
        readout: str = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        turnpike: bool = False,
        turnpike_weight: float = 1.0,
        gradient: str = "discrete",
        checkpoints: int | None = None,
        dtype: Any = "float64",
        seed: Any = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        step_control: str | None = None,
    ) -> None:
        self.T = check_positive("T", T)
        self.pieces = check_int("pieces", pieces, 1)
        self.substeps = check_int("substeps", substeps, 1)
        self.method = check_choice("method", method, METHODS)
        self.gradient = check_choice("gradient", gradient, GRADIENTS)
        if not isinstance(turnpike, (bool, np.bool_)):
            raise TypeError(f"turnpike must be a bool, got {type(turnpike).__name__}")
        self.turnpike = bool(turnpike)
        adaptive = adaptive_options(
            self.method,
            {"rtol": rtol, "atol": atol, "first_step": first_step, "max_steps": max_steps,
             "step_control": step_control},
        )  # fmt: skip
        #: The adaptive options (None with a fixed-step method).
        self.rtol: float | None = adaptive.get("rtol")
        self.atol: float | None = adaptive.get("atol")
        self.first_step: float | None = adaptive.get("first_step")
        self.max_steps: int | None = adaptive.get("max_steps")
        self.step_control: str | None = adaptive.get("step_control")
        #: Statistics of the last adaptive run (see :func:`summarize_stats`); None before one.
        self.stats: dict[str, Any] | None = None
        if self.adaptive:
            self._check_adaptive_options()
        self.turnpike_weight = check_positive("turnpike_weight", turnpike_weight)
        if self.turnpike_weight != 1.0 and not self.turnpike:
            raise ValueError("turnpike_weight applies to turnpike=True only")
        self.checkpoints = None if checkpoints is None else check_int("checkpoints", checkpoints, 1)
        if self.checkpoints is not None and self.gradient != "discrete":
            raise ValueError(
                "checkpoints applies to gradient='discrete' only (the adjoint stores no trajectory)"
            )
        if not self.T / (self.pieces * self.substeps) > 0:
            raise ValueError(f"T must be large enough that T / (pieces * substeps) > 0, got T={T}")
        super().__init__(
            dim,
            self.pieces,
            classes=classes,
            field=field,
            activation=activation,
            hidden=hidden,
            augment=augment,
            loss=loss,
            weight_decay=weight_decay,
            readout=readout,
            l1=l1,
            decay_readout=decay_readout,
            dtype=dtype,
            seed=seed,
        )
        if self.adaptive and (self.readout != "linear" or self.l1 or self.decay_readout):
            raise ValueError(
                "readout='hardtanh', l1 and decay_readout are not available with the adaptive "
                "methods yet; use a fixed-step method (euler, midpoint, rk4)"
            )

    def _check_adaptive_options(self) -> None:
        if self.substeps != 1:
            raise ValueError(
                f"substeps applies to the fixed-step methods; method={self.method!r} chooses its "
                "own steps (use rtol/atol)"
            )
        if self.turnpike:
            raise ValueError(
                "turnpike=True is defined by the trapezoid rule on a fixed step grid; use a "
                "fixed-step method (euler, midpoint, rk4) for turnpike losses"
            )
        if self.gradient == "adjoint" and self.step_control == "batch":
            raise ValueError(
                "gradient='adjoint' runs with step_control='sample' only (each sample's backward "
                "run controls its own steps)"
            )

    @property
    def adaptive(self) -> bool:
        """Whether ``method`` is an adaptive embedded pair (dopri5, tsit5, bosh3)."""
        return self.method in ADAPTIVE_METHODS

    @property
    def steps(self) -> int:
        """Integrator steps: ``pieces * substeps``."""
        return self.pieces * self.substeps

    @property
    def dt(self) -> float:
        """Step size ``T / steps``."""
        return self.T / self.steps

    @property
    def config(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "T": self.T,
            "pieces": self.pieces,
            "substeps": self.substeps,
            "method": self.method,
            "turnpike": self.turnpike,
            "turnpike_weight": self.turnpike_weight,
            "gradient": self.gradient,
            "checkpoints": self.checkpoints,
            **self._shared_config(),
            **self._adaptive_options(),
        }

    def _adaptive_options(self) -> dict[str, Any]:
        """``rtol``, ``atol``, ``first_step``, ``max_steps``, ``step_control``: adaptive only."""
        return {k: getattr(self, k) for k in ADAPTIVE_DEFAULTS} if self.adaptive else {}

    def _adaptive_args(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "activation": self.activation,
            "method": self.method,
            "T": self.T,
            "augment": self.augment,
            **self._adaptive_options(),
        }

    def _record(self, stats: Mapping[str, Any] | None) -> None:
        if stats is not None:
            self.stats = summarize_stats(stats)

    def forward(self, X: Any) -> np.ndarray:
        if not self.adaptive:
            return super().forward(X)
        logits, stats = _core.adaptive_logits(
            self._X(X),
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._adaptive_args(),
        )
        self._record(stats)
        return logits

    def trajectory(self, X: Any, t: Any = None) -> np.ndarray:
        """The states, shape ``(len(t), N, D)``, ``D = dim + augment``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
        t : array_like of float, shape (Q,), optional
            Output times, sorted, in ``[0, T]``: the dense output of each method's continuous
            extension (cubic Hermite for euler, midpoint, rk4 and bosh3, the methods' own
            interpolants for dopri5 and tsit5), computed in the same sweep. Default: the step
            grid ``t_j = j dt`` for a fixed-step method, the piece boundaries ``k T / pieces``
            for an adaptive one (where every sample has an accepted step).

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, T=1.0, pieces=4, method="dopri5", seed=0)
        >>> model.trajectory(np.ones((3, 2)), t=[0.0, 0.1, 0.5]).shape
        (3, 3, 2)
        """
        if t is None and not self.adaptive:
            return super().trajectory(X)
        if t is None:
            t = (self.T * np.arange(self.pieces + 1)) / self.pieces
        times = as_float_array("t", t, np.dtype(np.float64))
        if times.ndim != 1:
            raise ValueError(f"t must be a 1-d array of times, got shape {times.shape}")
        args = self._adaptive_args()
        if not self.adaptive:
            args["substeps"] = self.substeps
        states, stats = _core.adaptive_solve(self._X(X), self._theta(), **args, t=times)
        self._record(stats)
        return states

    def loss_and_grad(self, X: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        if not self.adaptive:
            return super().loss_and_grad(X, y)
        Xc = self._X(X)
        targets = self._targets(y, Xc.shape[0])
        loss, dtheta, dP, dc, stats = _core.adaptive_loss_and_grad(
            Xc,
            targets,
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._adaptive_args(),
            loss=self.loss,
            weight_decay=self.weight_decay,
            gradient=self.gradient,
            checkpoints=self.checkpoints or 0,
        )
        self._record(stats)
        grads = dict(zip(field_param_names(self.field), dtheta))
        grads.update(P=dP, c=dc)
        return float(loss), grads

    loss_and_grad.__doc__ = _Model.loss_and_grad.__doc__

    def _sweep_args(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "activation": self.activation,
            "method": self.method,
            "dt": self.dt,
            "substeps": self.substeps,
            "augment": self.augment,
        }

    def _gradient_args(self) -> dict[str, Any]:
        return {
            "turnpike": self.turnpike,
            "turnpike_weight": self.turnpike_weight,
            "gradient": self.gradient,
            "checkpoints": self.checkpoints or 0,
        }
