"""What ResNet and NeuralODE share: :class:`Model`, the public protocol every front end uses
(parameters, configuration, prediction, :meth:`Model.problem` for the core's arguments, and
what the model records about its data)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import _core
from .._typing import ArrayLike, FloatArray, IntArray
from .._validation import (
    as_features,
    as_float_array,
    as_labels,
    check_choice,
    check_int,
    check_positive,
    resolve_dtype,
)
from .options import (
    ACTIVATIONS,
    ADAPTIVE_METHODS,
    FIELDS,
    LOSSES,
    READOUTS,
    Activation,
    Field,
    Loss,
    Readout,
    check_bool,
)
from .params import field_param_names, field_param_shapes, init_params, param_shapes
from .predictions import Predictions
from .problem import Problem

__all__ = ["Model", "set_file_writer"]

# The function that writes a model file: resode.io registers its `save` when it is imported
# (io imports the models, so the models must not import io).
_file_writer: list[Callable[[Any, Any], Path]] = []


def set_file_writer(write: Callable[[Any, Any], Path]) -> None:
    """Register ``write(model, path)``, the writer :meth:`Model.save` calls (resode.io's)."""
    _file_writer[:] = [write]


class Model(Predictions):
    """What :class:`resode.ResNet` and :class:`resode.NeuralODE` share.

    The public protocol the front ends (training, plots, CLI, estimators, bridges) use:
    ``kind``, ``config``, ``params``, ``param_shapes``, ``steps``, ``dt``, ``method``,
    ``trajectory``, :meth:`problem`, ``forward``/``predict``/``score``/``loss_and_grad``, and
    what the model records about its data (``class_labels``, ``feature_names``,
    ``target_name``, ``scaling``, ``flat_targets``), all saved in the model file.
    """

    #: "resnet" or "node": the model's kind in its file.
    kind: ClassVar[str] = ""

    def __init__(
        self,
        dim: int,
        pieces: int,
        *,
        classes: int,
        field: Field,
        activation: Activation,
        hidden: int | None,
        augment: int,
        loss: Loss,
        weight_decay: float,
        readout: Readout,
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
        H = self.D if self.hidden is None else self.hidden  # hidden: field='bottleneck' only
        sizes = field_param_shapes(self.field, pieces, self.D, H).values()
        count = sum(int(np.prod(shape, dtype=np.float64)) for shape in sizes)
        if count > 2**31:
            raise ValueError(
                f"the model would have {count} field parameters, more than the limit of 2**31: "
                "reduce layers/pieces, dim, augment or hidden"
            )
        self.params: dict[str, FloatArray] = init_params(
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
    def adaptive(self) -> bool:
        """Whether the model integrates with an adaptive step (NeuralODE's dopri5, tsit5, bosh3).

        Returns
        -------
        bool
            True for an adaptive method, False for a fixed-step sweep.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=3).adaptive, resode.NeuralODE(2, method="dopri5").adaptive
        (False, True)
        """
        return getattr(self, "method", None) in ADAPTIVE_METHODS

    @property
    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable) that rebuild this model.

        Returns
        -------
        dict of str to object
            ``type(model)(**model.config)`` is a model of the same configuration.

        Examples
        --------
        >>> import resode
        >>> config = resode.ResNet(2, layers=3, seed=0).config
        >>> config["layers"], config["field"]
        (3, 'outside')
        """
        raise NotImplementedError

    @property
    def steps(self) -> int:
        """Steps of the sweep (ResNet: layers; NeuralODE: pieces * substeps).

        Returns
        -------
        int
            The number of steps from the input to the final state.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, pieces=4, substeps=2).steps
        8
        """
        raise NotImplementedError

    @property
    def dt(self) -> float:
        """Step size (ResNet: h; NeuralODE: T / steps).

        Returns
        -------
        float
            The time between two states of the step grid.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, T=2.0, pieces=4).dt
        0.5
        """
        raise NotImplementedError

    def trajectory(self, X: ArrayLike, t: ArrayLike | None = None) -> FloatArray:
        """Return the states at the times ``t`` (default: the step grid).

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs, one sample a row.
        t : array_like of float, shape (Q,), optional
            Sorted times in ``[0, steps * dt]``.

        Returns
        -------
        numpy.ndarray, shape (Q, N, D)
            The states ``x(t)``, ``D = dim + augment``, in the model's dtype.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> model.trajectory(X).shape
        (4, 3, 2)
        """
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

    # -- the core's arguments -----------------------------------------------------------------
    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every entry of ``params`` must have, from the configuration.

        Returns
        -------
        dict of str to tuple of int
            The field parameters (leading axis: layers or pieces), ``P`` and ``c``.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=3).param_shapes
        {'W': (3, 2, 2), 'b': (3, 2), 'P': (2, 2), 'c': (2,)}
        """
        return param_shapes(self.field, self._pieces, self.D, self.hidden, self.classes)

    def problem(self, X: ArrayLike, y: ArrayLike | None = None) -> Problem:
        """Return the checked data and the core's keyword arguments for ``(X, y)``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like, shape (N,) or (N, classes), optional
            Integer labels (cross-entropy) or float targets (``loss="mse"``).

        Returns
        -------
        resode.models.Problem
            ``X`` and ``targets`` converted to the model's dtype, and ``core_args``.

        Raises
        ------
        ValueError
            If ``X`` or ``y`` has the wrong shape, non-finite values or labels out of range.
        TypeError
            If ``X`` or ``y`` is not numeric.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> problem = model.problem(X, [0, 1, 1])
        >>> problem.X.dtype, problem.targets.tolist(), problem.core_args["method"]
        (dtype('float64'), [0, 1, 1], 'euler')
        """
        Xc = self._X(X)
        targets = None if y is None else self._targets(y, Xc.shape[0])
        flat = y is not None and self.task == "regression" and np.ndim(y) == 1
        args = {**self._sweep_args(), **self._loss_args(), **self._gradient_args()}
        return Problem(X=Xc, targets=targets, flat_targets=flat, core_args=args)

    def _theta(self) -> list[FloatArray]:
        return list(self._params(field_param_names(self.field)).values())

    def _param(self, name: str) -> FloatArray:
        return self._params((name,))[name]

    def _params(self, names: Iterable[str]) -> dict[str, FloatArray]:
        """The entries ``names`` of ``params``, checked (present, shape) and in the model's
        dtype (the shapes are computed once per call: this runs on every training step)."""
        shapes = self.param_shapes
        if not isinstance(self.params, dict):
            raise TypeError(
                f"params must be a dict of arrays {sorted(shapes)}, got "
                f"{type(self.params).__name__}"
            )
        out = {}
        for name in names:
            if name not in self.params:
                raise ValueError(f"params is missing '{name}'")
            value = as_float_array(f"params['{name}']", self.params[name], self.dtype)
            if value.shape != shapes[name]:
                raise ValueError(
                    f"params['{name}'] must have shape {shapes[name]}, got {value.shape}"
                )
            out[name] = value
        return out

    def _X(self, X: ArrayLike) -> FloatArray:
        return as_features(X, self.dim, self.dtype)

    def _targets(self, y: ArrayLike, n: int) -> FloatArray | IntArray:
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
    def forward(self, X: ArrayLike) -> FloatArray:
        """Return the logits ``z = x_final P^T + c`` (clipped to ``[-1, 1]`` by ``"hardtanh"``).

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.

        Returns
        -------
        numpy.ndarray, shape (N, classes)
            The logits, in the model's dtype.

        Raises
        ------
        ValueError
            If ``X`` is not ``(N, dim)`` or holds non-finite values.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> model.forward(X).shape
        (3, 2)
        """
        return _core.logits(
            self._X(X),
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._sweep_args(),
            readout=self.readout,
        )

    def _grid_trajectory(self, X: ArrayLike) -> FloatArray:
        """All states on the layer/step grid, shape ``(steps + 1, N, D)``, ``D = dim + augment``."""
        return _core.trajectory(self._X(X), self._theta(), **self._sweep_args())

    def loss_and_grad(self, X: ArrayLike, y: ArrayLike) -> tuple[float, dict[str, FloatArray]]:
        """Return the loss and its gradient in one call into the core.

        One forward sweep, the loss and one backward sweep.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like, shape (N,) or (N, classes)
            Integer labels ``(N,)`` in ``[0, classes)`` for ``loss="cross_entropy"``, float
            targets ``(N, classes)`` for ``loss="mse"``.

        Returns
        -------
        loss : float
            The data loss + ``weight_decay * sum(theta**2)`` over the field parameters (and ``P``
            with ``decay_readout``) + ``l1 * sum(|theta|)`` over the field parameters.
        grads : dict of str to numpy.ndarray
            Same keys, shapes and dtype as ``params``.

        Raises
        ------
        ValueError
            If ``X`` or ``y`` has the wrong shape, non-finite values or labels out of range.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> loss, grads = model.loss_and_grad(X, [0, 1, 1])
        >>> loss > 0, grads["W"].shape
        (True, (3, 2, 2))
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

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the configuration and parameters to one ``.npz`` file (atomically).

        Read it back with :func:`resode.load`.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
            The path written.

        Examples
        --------
        >>> import resode
        >>> path = resode.ResNet(2, layers=3, seed=0).save("model.npz")
        >>> resode.load(path).layers
        3
        """
        if not _file_writer:  # resode.io registers it; `import resode` always imports it
            raise RuntimeError("no model file writer registered (import resode.io)")
        return _file_writer[0](self, path)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"
