"""Inputs of the neural ODE: ``NeuralODE(dim, inputs=C)``'s field reads ``[x; u(t)]``.

``u(t)`` interpolates the observations ``u`` (N, L, C) at ``times`` ((L,) or (N, L); default
``0, 1, ..., L-1``) as the neural CDE's paths do (NaN fill, trailing NaN padding, linear or
cubic Hermite with backward differences), held constant outside each sample's observation
window. The step grid is the model's ``t_j = j T / steps`` plus each sample's knots inside
``(0, T)``; an adaptive method chooses each sample's steps, clipped to land on those points.
``gradient="discrete"`` is the exact gradient of the computed solution (an adaptive run's
accepted grid held constant), ``"adjoint"`` the continuous backsolve adjoint over the same
grid. The mathematics is in ``cpp/resode/driven*.hpp`` and ``resode.reference_driven``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .._typing import ArrayLike, FloatArray, IntArray
from .._validation import as_float_array, as_labels, check_choice, check_int
from .base import Model
from .options import INTERPOLATIONS, Interpolation
from .params import field_param_names, init_params, param_shapes
from .problem import Problem
from .scores import is_sign_target, r2_score, sign_agreement
from .series import as_times, check_paths

__all__ = ["DrivenModel"]


class DrivenModel(Model):
    """A :class:`Model` whose field may also read inputs ``u(t)`` (``inputs > 0``).

    With ``inputs == 0`` every method is the base model's, unchanged.
    """

    #: Input channels ``C`` of ``u(t)`` (0: none).
    inputs: int = 0
    #: The path of the inputs: "linear" or "cubic" (None without inputs).
    interpolation: Interpolation | None = None
    T: float
    pieces: int
    substeps: int
    method: str
    gradient: str
    rtol: float | None
    atol: float | None
    first_step: float | None
    max_steps: int | None

    def _init_inputs(
        self, inputs: int, interpolation: Interpolation | None, restrictions: bool
    ) -> None:
        """Check ``inputs``/``interpolation`` and redraw the field for width ``D + inputs``.

        ``restrictions`` is True when an option that inputs do not support is set
        (step_control='batch', checkpoints, turnpike, hardtanh, l1, decay_readout).
        """
        self.inputs = check_int("inputs", inputs, 0)
        if self.inputs == 0:
            if interpolation is not None:
                raise ValueError("interpolation applies to inputs > 0 only")
            return
        self.interpolation = check_choice(
            "interpolation", "cubic" if interpolation is None else interpolation, INTERPOLATIONS
        )
        if restrictions:
            raise ValueError(
                "inputs > 0 runs with readout='linear', step_control='sample' (adaptive "
                "methods) and without checkpoints, turnpike, l1 or decay_readout"
            )
        H = self.D if self.hidden is None else self.hidden
        self.params = init_params(
            self.field, self.pieces, self.D, H, self.classes, self.dtype, self.seed, self.inputs
        )

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every entry of ``params`` must have, from the configuration.

        Returns
        -------
        dict of str to tuple of int
            The field parameters (first layer of width ``D + inputs``), ``P`` and ``c``.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, pieces=3, inputs=1).param_shapes["W"]
        (3, 2, 3)
        """
        return param_shapes(self.field, self.pieces, self.D, self.hidden, self.classes, self.inputs)

    def problem(
        self, X: ArrayLike, y: ArrayLike | None = None, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> Problem:  # fmt: skip
        """Return the checked data and the core's keyword arguments for ``(X, y)``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs (the initial states' features).
        y : array_like, shape (N,) or (N, classes), optional
            Integer labels (cross-entropy) or float targets (``loss="mse"``).
        u : array_like, shape (N, L, inputs), optional
            ``inputs > 0`` only (then required): the observed inputs, NaN for missing values
            and the padding of shorter series.
        times : array_like, shape (L,) or (N, L), optional
            ``inputs > 0`` only: their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        resode.models.Problem
            ``X`` and ``targets`` converted to the model's dtype and ``core_args``; with
            ``inputs > 0`` also ``u`` (the model's dtype) and ``times`` (float64), every
            sample's path checked (``resode.models.check_paths``), and ``core_args`` the
            options of the core's ``driven_*`` functions and the loss terms.

        Raises
        ------
        ValueError, TypeError
            On bad data, naming the argument; if ``u`` is missing with ``inputs > 0``, or
            ``u`` or ``times`` is given with ``inputs == 0``.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, inputs=1, seed=0)
        >>> problem = model.problem(np.ones((3, 2)), [0, 1, 0], u=np.zeros((3, 4, 1)))
        >>> problem.u.shape, problem.times.tolist()
        ((3, 4, 1), [0.0, 1.0, 2.0, 3.0])
        """
        self._check_inputs(u, times)
        if self.inputs == 0:
            return super().problem(X, y)
        Xc, U, _ = self._inputs_data(X, u, None)
        grid = as_times(times, U.shape[0], U.shape[1])
        check_paths(U, grid, "u")
        targets = None if y is None else self._targets(y, Xc.shape[0])
        flat = y is not None and self.task == "regression" and np.ndim(y) == 1
        args = {**self._driven_args(), "loss": self.loss, "weight_decay": self.weight_decay,
                "gradient": self.gradient}  # fmt: skip
        return Problem(X=Xc, targets=targets, flat_targets=flat, core_args=args, times=grid, u=U)

    # -- the core's arguments -------------------------------------------------------------------
    def _check_inputs(self, u: ArrayLike | None, times: ArrayLike | None) -> None:
        if self.inputs == 0 and (u is not None or times is not None):
            raise ValueError("u and times apply to a model with inputs > 0 (NeuralODE(inputs=C))")
        if self.inputs > 0 and u is None:
            raise ValueError(f"u must be given: the model has inputs={self.inputs} channels")

    def _inputs_data(
        self, X: ArrayLike, u: ArrayLike | None, times: ArrayLike | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``X`` (N, dim), ``U`` (N, L, C) of the model's dtype and ``times`` (float64)."""
        Xc = self._X(X)
        n = Xc.shape[0]
        U = as_float_array("u", u, self.dtype, ndim=3)
        if U.shape[0] != n or U.shape[2] != self.inputs or U.shape[1] < 2:
            raise ValueError(
                f"u must have shape ({n}, L, {self.inputs}) (samples like X, L >= 2 observations, "
                f"inputs), got {U.shape}"
            )
        ts: FloatArray = (
            np.arange(U.shape[1], dtype=np.float64)
            if times is None
            else as_float_array("times", times, np.dtype(np.float64))
        )
        return Xc, U, ts

    def _driven_data(
        self, X: ArrayLike, u: ArrayLike | None, times: ArrayLike | None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``x0 = [X, 0]`` (N, D), ``U`` (N, L, C) and ``times`` (float64) for the core."""
        Xc, U, ts = self._inputs_data(X, u, times)
        x0 = np.zeros((Xc.shape[0], self.D), dtype=self.dtype)
        x0[:, : self.dim] = Xc
        return x0, U, ts

    def _driven_params(self, readout: bool) -> dict[str, FloatArray]:
        names = list(field_param_names(self.field)) + (["P", "c"] if readout else [])
        return self._params(names)

    def _driven_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "T": self.T,
            "field": self.field,
            "activation": self.activation,
            "interpolation": self.interpolation,
            "method": self.method,
            "substeps": self.substeps,
        }
        if self.rtol is not None:  # an adaptive method (NeuralODE sets its options)
            args.update(
                rtol=self.rtol, atol=self.atol, first_step=self.first_step,
                max_steps=self.max_steps,
            )  # fmt: skip
        return args

    def _driven_logits(
        self, X: ArrayLike, u: ArrayLike | None, times: ArrayLike | None
    ) -> FloatArray:
        x0, U, ts = self._driven_data(X, u, times)
        logits: FloatArray = _core.driven_logits(
            self._driven_params(True), x0, U, ts, **self._driven_args()
        )
        return logits

    def _driven_trajectory(
        self, X: ArrayLike, u: ArrayLike | None, times: ArrayLike | None, t: ArrayLike | None
    ) -> FloatArray:
        x0, U, ts = self._driven_data(X, u, times)
        steps = self.pieces * self.substeps
        grid = self.T * np.arange(steps + 1) / steps if t is None else t
        tq = as_float_array("t", grid, np.dtype(np.float64), ndim=1)
        states: FloatArray = _core.driven_solve(
            self._driven_params(False), x0, U, ts, **self._driven_args(), t=tq
        )
        return states

    def _driven_loss_and_grad(
        self, X: ArrayLike, y: ArrayLike, u: ArrayLike | None, times: ArrayLike | None
    ) -> tuple[float, dict[str, FloatArray]]:
        x0, U, ts = self._driven_data(X, u, times)
        targets = self._targets(y, x0.shape[0])
        loss, grads, _, _ = _core.driven_loss_and_grad(
            self._driven_params(True), x0, U, targets, ts, **self._driven_args(),
            loss=self.loss, weight_decay=self.weight_decay, gradient=self.gradient,
            return_dU=False,
        )  # fmt: skip
        return float(loss), {name: grads[name] for name in self.param_shapes}

    # -- the public API with inputs -------------------------------------------------------------
    def predict_proba(
        self, X: ArrayLike, *, u: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> FloatArray:
        """Return the class probabilities ``softmax(logits)``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        u : array_like, shape (N, L, inputs), optional
            The observed inputs (``inputs > 0`` only; NaN: missing or padding).
        times : array_like, shape (L,) or (N, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        numpy.ndarray, shape (N, classes)
            Each row sums to 1, in the model's dtype.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, inputs=1, seed=0)
        >>> U = np.zeros((3, 4, 1)); X = np.ones((3, 2))
        >>> model.predict_proba(X, u=U, times=np.linspace(0, 1, 4)).shape
        (3, 2)
        """
        self._check_inputs(u, times)
        if self.inputs == 0:
            return super().predict_proba(X)
        z = self._driven_logits(X, u, times)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        proba: FloatArray = z / z.sum(axis=1, keepdims=True)
        return proba

    def predict(
        self, X: ArrayLike, *, u: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> FloatArray | IntArray:
        """Return the predictions for ``X`` (and the inputs ``u`` at ``times``).

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        u : array_like, shape (N, L, inputs), optional
            The observed inputs (``inputs > 0`` only).
        times : array_like, shape (L,) or (N, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        numpy.ndarray, shape (N,) or (N, classes)
            Labels ``argmax(logits)`` (int64), or the outputs for ``loss="mse"``.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, inputs=1, seed=0)
        >>> model.predict(np.ones((3, 2)), u=np.zeros((3, 4, 1))).shape
        (3,)
        """
        self._check_inputs(u, times)
        if self.inputs == 0:
            return super().predict(X)
        z = self._driven_logits(X, u, times)
        if self.task == "regression":
            outputs: FloatArray = z[:, 0] if self.classes == 1 and self.flat_targets else z
            return outputs
        labels: IntArray = np.argmax(z, axis=1).astype(np.int64)
        return labels

    def score(
        self, X: ArrayLike, y: ArrayLike, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> float:  # fmt: skip
        """Return the accuracy (classification) or the coefficient of determination R^2.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like, shape (N,) or (N, classes)
            Labels or targets.
        u : array_like, shape (N, L, inputs), optional
            The observed inputs (``inputs > 0`` only).
        times : array_like, shape (L,) or (N, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        float
            The accuracy in ``[0, 1]``, or R^2.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, inputs=1, seed=0)
        >>> X, U = np.ones((3, 2)), np.zeros((3, 4, 1))
        >>> model.score(X, model.predict(X, u=U), u=U)
        1.0
        """
        self._check_inputs(u, times)
        if self.inputs == 0:
            return super().score(X, y)
        if self.task == "regression":
            z = self._driven_logits(X, u, times)
            return r2_score(self._targets(y, z.shape[0]), z)
        pred = self.predict(X, u=u, times=times)
        given = np.asarray(y)
        if given.ndim == 2 and given.shape == (pred.shape[0], self.classes) and self.classes > 1:
            given = np.argmax(given, axis=1)
        if given.shape != pred.shape:
            raise ValueError(f"y must have shape {pred.shape} to match X, got {given.shape}")
        return float(np.mean(pred == as_labels(given, pred.shape[0], self.classes)))

    def sign_accuracy(
        self, X: ArrayLike, y: ArrayLike, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> float:  # fmt: skip
        """Return the sign agreement of a 1-output model with targets ``y`` in {-1, +1}.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like of float, shape (N,) or (N, 1)
            Targets, each -1 or +1.
        u : array_like, shape (N, L, inputs), optional
            The observed inputs (``inputs > 0`` only).
        times : array_like, shape (L,) or (N, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        float
            The fraction of samples whose output ``z > 0`` exactly when ``y = +1``.

        Raises
        ------
        ValueError
            If the model has more than one output, or ``y`` holds values other than -1 and +1.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, inputs=1, classes=1, loss="mse", seed=0)
        >>> U = np.zeros((2, 4, 1))
        >>> 0.0 <= model.sign_accuracy(np.ones((2, 2)), [1.0, -1.0], u=U) <= 1.0
        True
        """
        self._check_inputs(u, times)
        if self.inputs == 0:
            return super().sign_accuracy(X, y)
        if self.classes != 1:
            raise ValueError(f"sign_accuracy needs a 1-output model, this one has {self.classes}")
        if not is_sign_target(y):
            raise ValueError("sign_accuracy needs targets y in {-1, +1}")
        z = self._driven_logits(X, u, times)
        return sign_agreement(self._targets(y, z.shape[0]), z)
