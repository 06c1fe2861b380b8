"""The neural ODE estimators' inputs ``u(t)``: ``fit(X, y, u=U, times=None)`` and the same
``u``/``times`` in ``predict``, ``predict_proba`` and ``score``, for a
``NeuralODE(dim, inputs=C)`` (``inputs="auto"``: ``C`` from ``u``'s channels at fit)."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, r2_score

from .._typing import ArrayLike, FloatArray
from ._base import Inputs, ResodeClassifier, ResodeRegressor

__all__ = ["DrivenClassifier", "DrivenInputs", "DrivenRegressor"]


def _channels(inputs: Any, u: Any) -> int:
    """The input channels of ``inputs`` ("auto": those of ``u``, 0 without ``u``)."""
    if isinstance(inputs, str) and inputs == "auto":
        if u is not None and np.ndim(u) != 3:
            raise ValueError(f"u must have shape (n_samples, L, channels), got {np.shape(u)}")
        return 0 if u is None else int(np.shape(u)[2])
    if isinstance(inputs, bool) or not isinstance(inputs, Integral) or int(inputs) < 0:
        raise ValueError(f"inputs must be 'auto' or an integer >= 0, got {inputs!r}")
    return int(inputs)


class DrivenInputs:
    """The checks of ``u`` and ``times`` against ``inputs`` (fit) or the fitted model."""

    n_inputs_: int
    inputs: Any
    interpolation: Any

    def _checked_inputs(self, n: int, u: Any, times: Any, *, fitting: bool) -> Inputs | None:
        """``Inputs`` of ``n`` samples, or None for a model without inputs; at fit, set
        ``n_inputs_``. ValueError naming ``u``, ``times`` or ``inputs`` otherwise."""
        if fitting:
            channels = _channels(self.inputs, u)
            if channels == 0 and self.interpolation != "cubic":  # not the default: a choice
                raise ValueError(
                    f"interpolation={self.interpolation!r} applies to inputs u(t): give "
                    "fit(X, y, u=U) with U (n_samples, L, channels)"
                )
            self.n_inputs_ = channels
        channels = self.n_inputs_
        fitted = "" if fitting else "was fitted with and "
        if channels == 0:
            if u is not None or times is not None:
                raise ValueError(
                    f"u and times apply to a model with inputs; {type(self).__name__} {fitted}"
                    "has none (inputs=0, or inputs='auto' without u at fit)"
                )
            return None
        if u is None:
            raise ValueError(
                f"u must be given: {type(self).__name__} {fitted}has inputs={channels} (u of "
                f"shape (n_samples, L, {channels}))"
            )
        U = np.asarray(u, dtype=np.float64)
        if U.ndim != 3 or U.shape[0] != n or U.shape[2] != channels:
            raise ValueError(
                f"u must have shape ({n}, L, {channels}) (X's samples, L observations, "
                f"inputs={channels} channels), got {U.shape}"
            )
        return Inputs(U, None if times is None else np.asarray(times, dtype=np.float64))


class DrivenClassifier(DrivenInputs, ResodeClassifier):
    """A classifier whose model may read inputs ``u(t)``."""

    def fit(
        self, X: ArrayLike, y: ArrayLike, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> DrivenClassifier:  # fmt: skip
        """Build a new model and train it on ``(X, y)`` and the inputs ``u`` at ``times``.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states; a DataFrame's column names go to ``feature_names_in_``.
        y : array_like, shape (n_samples,)
            Class labels (any sortable values); at least two classes.
        u : array_like, shape (n_samples, L, C), optional
            Inputs ``u(t)`` of each sample, NaN for missing values and trailing padding:
            required when ``inputs`` is an integer > 0; with ``inputs="auto"`` (the
            default) they make the model ``NeuralODE(dim, inputs=C)``, and without them it
            has none.
        times : array_like, shape (L,) or (n_samples, L), optional
            The observation times of ``u`` (default ``0, 1, ..., L-1``).

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If ``X``, ``y``, ``u`` or ``times`` is malformed (``u`` missing, of other
            samples or channels), or an option is out of range.
        resode.TrainingDiverged
            If the loss, a gradient or a parameter becomes non-finite.

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODEClassifier
        >>> rng = np.random.default_rng(0)
        >>> X, U = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1))
        >>> y = (U[:, :, 0].mean(axis=1) > 0).astype(int)
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> clf.fit(X, y, u=U).n_inputs_, clf.model_.inputs
        (1, 1)
        """
        self._fit(X, y, u, times)
        return self

    def predict_proba(
        self, X: ArrayLike, *, u: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> FloatArray:
        """Return the class probabilities (softmax of the outputs).

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states.
        u : array_like, shape (n_samples, L, C), optional
            The inputs (``C = n_inputs_``), required when the estimator was fitted with
            inputs.
        times : array_like, shape (L,) or (n_samples, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        numpy.ndarray of float, shape (n_samples, n_classes)
            The probabilities, in the order of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODEClassifier
        >>> rng = np.random.default_rng(0)
        >>> X, U, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1)), np.arange(20) % 2
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> clf.fit(X, y, u=U).predict_proba(X[:3], u=U[:3]).shape
        (3, 2)
        """
        return self._proba(X, u, times)

    def predict(
        self, X: ArrayLike, *, u: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> np.ndarray[Any, np.dtype[Any]]:
        """Return the predicted labels (values of ``classes_``).

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states.
        u : array_like, shape (n_samples, L, C), optional
            The inputs (``C = n_inputs_``), required when the estimator was fitted with
            inputs.
        times : array_like, shape (L,) or (n_samples, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        numpy.ndarray, shape (n_samples,)
            One label per sample, of the dtype of ``classes_``.

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODEClassifier
        >>> rng = np.random.default_rng(0)
        >>> X, U, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1)), np.arange(20) % 2
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> clf.fit(X, y, u=U).predict(X[:3], u=U[:3]).shape
        (3,)
        """
        return self._predict(X, u, times)

    def score(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
        u: ArrayLike | None = None, times: ArrayLike | None = None,
    ) -> float:  # fmt: skip
        """Return the mean accuracy of ``predict(X, u=u, times=times)`` on ``y``.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states.
        y : array_like, shape (n_samples,)
            The true labels.
        sample_weight : array_like, shape (n_samples,), optional
            Weights of the samples.
        u : array_like, shape (n_samples, L, C), optional
            The inputs (``C = n_inputs_``), required when the estimator was fitted with
            inputs.
        times : array_like, shape (L,) or (n_samples, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        float
            The accuracy, in ``[0, 1]``.

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODEClassifier
        >>> rng = np.random.default_rng(0)
        >>> X, U, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1)), np.arange(20) % 2
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> 0.0 <= clf.fit(X, y, u=U).score(X, y, u=U) <= 1.0
        True
        """
        predicted = self.predict(X, u=u, times=times)
        return float(accuracy_score(y, predicted, sample_weight=sample_weight))


class DrivenRegressor(DrivenInputs, ResodeRegressor):
    """A regressor whose model may read inputs ``u(t)``."""

    def fit(
        self, X: ArrayLike, y: ArrayLike, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> DrivenRegressor:  # fmt: skip
        """Build a new model and train it on ``(X, y)`` and the inputs ``u`` at ``times``.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states; a DataFrame's column names go to ``feature_names_in_``.
        y : array_like, shape (n_samples,) or (n_samples, n_outputs)
            Real targets.
        u : array_like, shape (n_samples, L, C), optional
            Inputs ``u(t)`` of each sample, NaN for missing values and trailing padding:
            required when ``inputs`` is an integer > 0; with ``inputs="auto"`` (the
            default) they make the model ``NeuralODE(dim, inputs=C)``.
        times : array_like, shape (L,) or (n_samples, L), optional
            The observation times of ``u`` (default ``0, 1, ..., L-1``).

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If ``X``, ``y``, ``u`` or ``times`` is malformed, or an option is out of range.
        resode.TrainingDiverged
            If the loss, a gradient or a parameter becomes non-finite.

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODERegressor
        >>> rng = np.random.default_rng(0)
        >>> X, U = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1))
        >>> reg = NeuralODERegressor(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> reg.fit(X, U[:, :, 0].mean(axis=1), u=U).model_.inputs
        1
        """
        self._fit(X, y, u, times)
        return self

    def predict(
        self, X: ArrayLike, *, u: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> FloatArray:
        """Return the predicted values.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states.
        u : array_like, shape (n_samples, L, C), optional
            The inputs (``C = n_inputs_``), required when the estimator was fitted with
            inputs.
        times : array_like, shape (L,) or (n_samples, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        numpy.ndarray of float, shape (n_samples,) or (n_samples, n_outputs)
            ``(n_samples,)`` for a 1-D ``y`` in fit, else ``(n_samples, n_outputs)``.

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODERegressor
        >>> rng = np.random.default_rng(0)
        >>> X, U = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1))
        >>> reg = NeuralODERegressor(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> reg.fit(X, U[:, 0, 0], u=U).predict(X[:3], u=U[:3]).shape
        (3,)
        """
        return self._predict(X, u, times)

    def score(
        self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
        u: ArrayLike | None = None, times: ArrayLike | None = None,
    ) -> float:  # fmt: skip
        """Return the coefficient of determination R^2 of ``predict(X, u=u, times=times)``.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The initial states.
        y : array_like, shape (n_samples,) or (n_samples, n_outputs)
            The true values.
        sample_weight : array_like, shape (n_samples,), optional
            Weights of the samples.
        u : array_like, shape (n_samples, L, C), optional
            The inputs (``C = n_inputs_``), required when the estimator was fitted with
            inputs.
        times : array_like, shape (L,) or (n_samples, L), optional
            Their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        float
            R^2 (1 is a perfect fit).

        Examples
        --------
        >>> import numpy as np
        >>> from resode.sklearn import NeuralODERegressor
        >>> rng = np.random.default_rng(0)
        >>> X, U = rng.normal(size=(20, 2)), rng.normal(size=(20, 5, 1))
        >>> reg = NeuralODERegressor(pieces=2, hidden=4, epochs=3, random_state=0)
        >>> reg.fit(X, U[:, 0, 0], u=U).score(X, U[:, 0, 0], u=U) <= 1.0
        True
        """
        predicted = self.predict(X, u=u, times=times)
        return float(r2_score(y, predicted, sample_weight=sample_weight))
