"""What a model of time series predicts from its logits ``forward(U, times)``:
:class:`SeriesPredictions`, the class probabilities, predictions, score and sign agreement of
:class:`resode.NeuralCDE` (the counterpart of :class:`resode.models.Predictions` with the
series' ``times`` beside the data)."""

from __future__ import annotations

import numpy as np

from .._typing import ArrayLike, FloatArray, IntArray
from .._validation import as_labels
from .base import Model
from .scores import is_sign_target, r2_score, sign_agreement

__all__ = ["SeriesPredictions"]


class SeriesPredictions(Model):
    """The predictions a model of series derives from its logits ``forward(U, times)``.

    A base of :class:`resode.NeuralCDE`, which defines ``forward``.
    """

    def forward(self, U: ArrayLike, times: ArrayLike | None = None) -> FloatArray:
        """The logits, ``(N, classes)`` (the model defines it)."""
        raise NotImplementedError

    def predict_proba(self, U: ArrayLike, times: ArrayLike | None = None) -> FloatArray:
        """Return the class probabilities ``softmax(logits)``.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations, as in :meth:`forward`.
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.

        Returns
        -------
        numpy.ndarray, shape (N, classes)
            Each row sums to 1, in the model's dtype.

        Examples
        --------
        >>> import numpy as np, resode
        >>> p = resode.NeuralCDE(2, 3, seed=0).predict_proba(np.ones((4, 5, 2)))
        >>> bool(np.allclose(p.sum(axis=1), 1.0))
        True
        """
        z = self.forward(U, times)
        e: np.ndarray = np.exp(z - z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def predict(self, U: ArrayLike, times: ArrayLike | None = None) -> FloatArray | IntArray:
        """Return the predictions for the series ``U``.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations, as in :meth:`forward`.
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.

        Returns
        -------
        numpy.ndarray
            Classification: the labels ``argmax(logits)``, int64 ``(N,)``. Regression: the
            outputs ``(N, classes)``, or ``(N,)`` for a 1-output model fitted on ``(N,)``.

        Examples
        --------
        >>> import numpy as np, resode
        >>> resode.NeuralCDE(2, 3, seed=0).predict(np.ones((4, 5, 2))).shape
        (4,)
        """
        z = self.forward(U, times)
        if self.task == "regression":
            return np.asarray(z[:, 0]) if self.classes == 1 and self.flat_targets else z
        return np.asarray(np.argmax(z, axis=1), dtype=np.int64)

    def score(self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = None) -> float:
        """Return the accuracy (classification) or R^2 (regression) on ``(U, y)``.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations, as in :meth:`forward`.
        y : array_like
            Labels ``(N,)`` or one-hot ``(N, classes)`` (compared by argmax); regression
            targets ``(N, classes)`` (or ``(N,)`` with one output).
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.

        Returns
        -------
        float
            The fraction of correct labels, or ``1 - SS_res / SS_tot`` averaged over the
            outputs (scikit-learn's ``r2_score``).

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralCDE(2, 3, seed=0)
        >>> U = np.ones((4, 5, 2))
        >>> model.score(U, model.predict(U))
        1.0
        """
        if self.task == "regression":
            z = self.forward(U, times)
            return r2_score(self._targets(y, z.shape[0]), z)
        pred = self.predict(U, times)
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape == (pred.shape[0], self.classes):
            labels = np.argmax(labels, axis=1)
        if labels.shape != pred.shape:
            raise ValueError(
                f"y must have shape {pred.shape} (labels) or {(pred.shape[0], self.classes)} "
                f"(targets) to match U, got shape {labels.shape}"
            )
        return float(np.mean(pred == as_labels(labels, pred.shape[0], self.classes)))

    def sign_accuracy(self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = None) -> float:
        """Return the sign agreement of a 1-output model with targets in {-1, +1}.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations, as in :meth:`forward`.
        y : array_like, shape (N,) or (N, 1)
            Targets, each -1 or +1.
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.

        Returns
        -------
        float
            The fraction of samples whose output ``z > 0`` exactly when ``y = +1``.

        Raises
        ------
        ValueError
            If the model has more than one output, or ``y`` holds other values.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralCDE(2, 3, classes=1, loss="mse", seed=0)
        >>> 0.0 <= model.sign_accuracy(np.ones((4, 5, 2)), [1, -1, 1, -1]) <= 1.0
        True
        """
        if self.classes != 1:
            raise ValueError(f"sign_accuracy needs a 1-output model, this one has {self.classes}")
        if not is_sign_target(y):
            raise ValueError("sign_accuracy needs targets y in {-1, +1}")
        z = self.forward(U, times)
        return sign_agreement(self._targets(y, z.shape[0]), z)
