"""What ResNet and NeuralODE share: :class:`Model`, the public protocol every front end uses
(parameters, configuration, prediction, :meth:`Model.problem` for the core's arguments, and
what the model records about its data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import _core
from .._validation import (
    as_features,
    as_float_array,
    as_labels,
    check_choice,
    check_int,
    check_positive,
    resolve_dtype,
)
from .metadata import check_class_labels, check_feature_names, check_scaling, check_target_name
from .options import ACTIVATIONS, FIELDS, LOSSES, READOUTS, check_bool
from .params import field_param_names, field_param_shapes, init_params, param_shapes
from .problem import Problem

__all__ = [
    "Model",
    "is_sign_target",
    "r2_from_sums",
    "r2_score",
    "set_file_writer",
    "sign_agreement",
    "target_spread",
]

# The function that writes a model file: resode.io registers its `save` when it is imported
# (io imports the models, so the models must not import io).
_file_writer: list[Callable[[Any, Any], Path]] = []


def set_file_writer(write: Callable[[Any, Any], Path]) -> None:
    """Register ``write(model, path)``, the writer :meth:`Model.save` calls (resode.io's)."""
    _file_writer[:] = [write]


def r2_score(y: np.ndarray, z: np.ndarray) -> float:
    """Coefficient of determination of predictions ``z`` for targets ``y``, both ``(N, C)``:
    ``1 - SS_res / SS_tot`` per column, averaged over the columns (a constant column counts
    1 when predicted exactly and 0 otherwise, as scikit-learn's ``r2_score``)."""
    y64, z64 = np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
    ss_res = np.sum((y64 - z64) ** 2, axis=0)
    return r2_from_sums(ss_res, target_spread(y64))


def target_spread(y: np.ndarray) -> np.ndarray:
    """``SS_tot = sum_i (y_ij - mean_j)^2`` per column ``j`` of targets ``y`` ``(N, C)``, in
    float64 (two passes: no cancellation)."""
    y64 = np.asarray(y, dtype=np.float64)
    return np.sum((y64 - y64.mean(axis=0)) ** 2, axis=0)


def r2_from_sums(ss_res: np.ndarray, ss_tot: np.ndarray) -> float:
    """``1 - SS_res / SS_tot`` per column, averaged over the columns, from the squared errors
    and the targets' spread (:func:`target_spread`); a constant column counts 1 when predicted
    exactly and 0 otherwise, as scikit-learn's ``r2_score``."""
    ss_res, ss_tot = np.asarray(ss_res, dtype=np.float64), np.asarray(ss_tot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(np.mean(r2))


def sign_agreement(y: np.ndarray, z: np.ndarray) -> float:
    """The fraction of samples whose output ``z > 0`` exactly when their target ``y`` is +1
    (``y`` in {-1, +1}), both ``(N, 1)`` or ``(N,)``: the accuracy of a +-1 classifier."""
    return float(np.mean((np.ravel(z) > 0) == (np.ravel(y) > 0)))


def is_sign_target(y: Any) -> bool:
    """Whether every entry of ``y`` is -1 or +1 (and there is one)."""
    values = np.asarray(y)
    return bool(values.size and values.dtype.kind in "iuf" and np.isin(values, (-1, 1)).all())


class Model:
    """What :class:`resode.ResNet` and :class:`resode.NeuralODE` share.

    The public protocol the front ends (training, plots, CLI, estimators, bridges) use:
    ``kind``, ``config``, ``params``, ``param_shapes``, ``steps``, ``dt``, ``method``,
    ``trajectory``, :meth:`problem`, ``forward``/``predict``/``score``/``loss_and_grad``, and
    what the model records about its data (``class_labels``, ``feature_names``,
    ``target_name``, ``scaling``, ``flat_targets``), all saved in the model file.
    """

    #: "resnet" or "node": the model's kind in its file.
    kind: ClassVar[str] = ""
    #: Whether the model integrates with an adaptive step (NeuralODE's dopri5, tsit5, bosh3).
    adaptive: bool = False
    # what the model records about its data, unset (class defaults: a model pickled before
    # these existed still answers)
    _flat = False
    _class_labels_: list[int | str] | None = None
    _feature_names: list[str] | None = None
    _target_name: str | None = None
    _scaling: dict[str, Any] | None = None

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
        self.decay_readout = check_bool("decay_readout", decay_readout)
        self.dtype = resolve_dtype(dtype)
        self.seed = seed
        self.hidden = self._check_hidden(hidden)
        self.D = self.dim + self.augment
        self._pieces = pieces
        self.flat_targets = False
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

    def _check_hidden(self, hidden: int | None) -> int | None:
        if self.field == "bottleneck":
            if hidden is None:
                raise ValueError("hidden must be given (an int >= 1) for field='bottleneck'")
            return check_int("hidden", hidden, 1)
        if hidden is not None:
            raise ValueError(
                f"hidden applies to field='bottleneck' only (field={self.field!r} has no hidden "
                f"layer); got hidden={hidden!r}"
            )
        return None

    # -- what subclasses define -------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable) that rebuild this model."""
        raise NotImplementedError

    @property
    def steps(self) -> int:
        """Steps of the sweep (ResNet: layers; NeuralODE: pieces * substeps)."""
        raise NotImplementedError

    @property
    def dt(self) -> float:
        """Step size (ResNet: h; NeuralODE: T / steps)."""
        raise NotImplementedError

    def trajectory(self, X: Any, t: Any = None) -> np.ndarray:
        """The states at the times ``t`` (default: the step grid), ``(len(t), N, D)``."""
        raise NotImplementedError

    def _sweep_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def _gradient_args(self) -> dict[str, Any]:
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

    def _loss_args(self) -> dict[str, Any]:
        """The loss terms of the core's loss_and_grad and train_epoch."""
        return {
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "readout": self.readout,
            "l1": self.l1,
            "decay_readout": self.decay_readout,
        }

    # -- what the model records about its data -----------------------------------------------
    @property
    def class_labels(self) -> list[int | str] | None:
        """The data's own label of each class ``0 .. classes-1`` (set by front ends that map
        labels, e.g. ``resode train --data``); None: the classes are their labels."""
        return self._class_labels_

    @class_labels.setter
    def class_labels(self, labels: Any) -> None:
        self._class_labels_ = check_class_labels(labels, self.classes)

    @property
    def feature_names(self) -> list[str] | None:
        """The names of the ``dim`` inputs, in order (set by front ends; None by default)."""
        return self._feature_names

    @feature_names.setter
    def feature_names(self, names: Any) -> None:
        self._feature_names = check_feature_names(names, self.dim)

    @property
    def target_name(self) -> str | None:
        """The name of the target (set by front ends; None by default)."""
        return self._target_name

    @target_name.setter
    def target_name(self, name: Any) -> None:
        self._target_name = check_target_name(name)

    @property
    def scaling(self) -> dict[str, Any] | None:
        """``{"X_mean", "X_scale", "y_mean", "y_scale"}``: the statistics a front end
        standardised the data with (``(x - X_mean) / X_scale``; ``y_*`` None when the targets
        were not scaled). Saved in the model file; the model itself never applies it."""
        return self._scaling

    @scaling.setter
    def scaling(self, scaling: Any) -> None:
        self._scaling = check_scaling(scaling, self.dim, self.classes)

    @property
    def flat_targets(self) -> bool:
        """Whether a 1-output regressor predicts ``(N,)`` (it was fitted on targets ``(N,)``)
        rather than ``(N, 1)``; set by :func:`resode.fit`."""
        return self._flat

    @flat_targets.setter
    def flat_targets(self, flat: bool) -> None:
        self._flat = check_bool("flat_targets", flat)

    # -- the core's arguments -----------------------------------------------------------------
    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every entry of ``params`` must have, from the configuration."""
        return param_shapes(self.field, self._pieces, self.D, self.hidden, self.classes)

    def problem(self, X: Any, y: Any = None) -> Problem:
        """The checked data and the core's keyword arguments for ``(X, y)``: see
        ``resode.models.Problem``. Raises ValueError/TypeError on bad data."""
        Xc = self._X(X)
        targets = None if y is None else self._targets(y, Xc.shape[0])
        flat = y is not None and self.task == "regression" and np.ndim(y) == 1
        args = {**self._sweep_args(), **self._loss_args(), **self._gradient_args()}
        return Problem(X=Xc, targets=targets, flat_targets=flat, core_args=args)

    def _theta(self) -> list[np.ndarray]:
        return [self._param(name) for name in field_param_names(self.field)]

    def _param(self, name: str) -> np.ndarray:
        shapes = self.param_shapes
        if not isinstance(self.params, dict):
            raise TypeError(
                f"params must be a dict of arrays {sorted(shapes)}, got "
                f"{type(self.params).__name__}"
            )
        if name not in self.params:
            raise ValueError(f"params is missing '{name}'")
        value = as_float_array(f"params['{name}']", self.params[name], self.dtype)
        expected = shapes[name]
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

    def _grid_trajectory(self, X: Any) -> np.ndarray:
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
            return z[:, 0] if self.classes == 1 and self.flat_targets else z
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

    def sign_accuracy(self, X: Any, y: Any) -> float:
        """Sign agreement of a 1-output model with targets ``y`` in {-1, +1}, ``(N,)`` or
        ``(N, 1)``: the fraction of samples whose output ``z > 0`` exactly when ``y = +1``
        (the accuracy of a +-1 classifier such as leia's hardtanh model).

        Raises
        ------
        ValueError
            If the model has more than one output, or ``y`` holds values other than -1 and +1.
        """
        if self.classes != 1:
            raise ValueError(f"sign_accuracy needs a 1-output model, this one has {self.classes}")
        if not is_sign_target(y):
            raise ValueError("sign_accuracy needs targets y in {-1, +1}")
        z = self.forward(X)
        return sign_agreement(self._targets(y, z.shape[0]), z)

    def save(self, path: Any) -> Path:
        """Save config and parameters to one ``.npz`` file (atomically); see :func:`resode.load`.
        Returns the path written."""
        if not _file_writer:  # resode.io registers it; `import resode` always imports it
            raise RuntimeError("no model file writer registered (import resode.io)")
        return _file_writer[0](self, path)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"
