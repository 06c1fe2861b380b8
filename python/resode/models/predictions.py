"""What a model predicts from its outputs: :class:`Predictions`, the part of
:class:`resode.models.Model` that is a function of ``forward`` alone (the task, class
probabilities, predictions, the score and the sign agreement)."""

from __future__ import annotations

import numpy as np

from .._typing import ArrayLike, FloatArray, IntArray
from .._validation import as_labels
from .metadata import RecordedData
from .scores import is_sign_target, r2_score, sign_agreement

__all__ = ["Predictions"]


class Predictions(RecordedData):
    """The predictions every model derives from its logits ``forward(X)`` ``(N, classes)``.

    A base of :class:`resode.models.Model`, which defines ``forward``, ``_targets``, ``loss``
    and ``classes``.
    """

    loss: str
    classes: int

    def forward(self, X: ArrayLike) -> FloatArray:
        """The logits, ``(N, classes)`` (each model defines it)."""
        raise NotImplementedError

    def _targets(self, y: ArrayLike, n: int) -> FloatArray | IntArray:
        raise NotImplementedError

    @property
    def task(self) -> str:
        """``"regression"`` for ``loss="mse"``, ``"classification"`` for cross-entropy.

        Returns
        -------
        {"classification", "regression"}
            What :meth:`predict` and :meth:`score` do.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=1, loss="mse").task
        'regression'
        """
        return "regression" if self.loss == "mse" else "classification"

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """Return the class probabilities ``softmax(logits)``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.

        Returns
        -------
        numpy.ndarray, shape (N, classes)
            Each row sums to 1, in the model's dtype.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> np.allclose(model.predict_proba(X).sum(axis=1), 1.0)
        True
        """
        z = self.forward(X)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        proba: FloatArray = z / z.sum(axis=1, keepdims=True)
        return proba

    def predict(self, X: ArrayLike) -> FloatArray | IntArray:
        """Return the predictions for ``X``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.

        Returns
        -------
        numpy.ndarray, shape (N,) or (N, classes)
            Classification (cross-entropy): labels ``argmax(logits)``, int64 ``(N,)``.
            Regression (``loss="mse"``): the outputs ``z = x_final P^T + c`` ``(N, classes)``, or
            ``(N,)`` when ``classes == 1`` and the model was fitted on targets of shape ``(N,)``.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> labels = model.predict(X)
        >>> labels.shape, labels.dtype
        ((3,), dtype('int64'))
        """
        z = self.forward(X)
        if self.task == "regression":
            outputs: FloatArray = z[:, 0] if self.classes == 1 and self.flat_targets else z
            return outputs
        labels: IntArray = np.argmax(z, axis=1).astype(np.int64)
        return labels

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Return the accuracy (classification) or the coefficient of determination R^2.

        Classification: the fraction of samples whose predicted label equals ``y`` (labels
        ``(N,)``, or one-hot/float targets ``(N, classes)``, compared by argmax).
        Regression: ``R^2 = 1 - sum (y - z)^2 / sum (y - mean(y))^2`` per output, averaged
        over the outputs (scikit-learn's ``r2_score``).

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like, shape (N,) or (N, classes)
            Labels or targets (``(N,)`` for a 1-output regressor).

        Returns
        -------
        float
            The accuracy in ``[0, 1]``, or R^2 (at most 1).

        Raises
        ------
        ValueError
            If ``y`` does not match ``X`` in shape.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=3, seed=0)
        >>> X = np.array([[0.5, -1.0], [1.0, 2.0], [-0.3, 0.1]])
        >>> y = model.predict(X)
        >>> model.score(X, y)
        1.0
        """
        if self.task == "regression":
            z = self.forward(X)
            return r2_score(self._targets(y, z.shape[0]), z)
        pred = self.predict(X)
        given = np.asarray(y)
        if given.ndim == 2 and given.shape == (pred.shape[0], self.classes) and self.classes > 1:
            given = np.argmax(given, axis=1)
        if given.shape != pred.shape:
            raise ValueError(
                f"y must have shape {pred.shape} (labels) or {(pred.shape[0], self.classes)} "
                f"(targets) to match X, got shape {given.shape}"
            )
        labels = as_labels(given, pred.shape[0], self.classes)
        return float(np.mean(pred == labels))

    def sign_accuracy(self, X: ArrayLike, y: ArrayLike) -> float:
        """Return the sign agreement of a 1-output model with targets ``y`` in {-1, +1}.

        The fraction of samples whose output ``z > 0`` exactly when ``y = +1`` (the accuracy of
        a +-1 classifier such as leia's hardtanh model).

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like of float, shape (N,) or (N, 1)
            Targets, each -1 or +1.

        Returns
        -------
        float
            The fraction in ``[0, 1]``.

        Raises
        ------
        ValueError
            If the model has more than one output, or ``y`` holds values other than -1 and +1.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=2, classes=1, loss="mse", readout="hardtanh", seed=0)
        >>> X = np.array([[1.0, 0.0], [-1.0, 0.0]])
        >>> y = np.where(model.forward(X)[:, 0] > 0, 1.0, -1.0)
        >>> model.sign_accuracy(X, y)
        1.0
        """
        if self.classes != 1:
            raise ValueError(f"sign_accuracy needs a 1-output model, this one has {self.classes}")
        if not is_sign_target(y):
            raise ValueError("sign_accuracy needs targets y in {-1, +1}")
        z = self.forward(X)
        return sign_agreement(self._targets(y, z.shape[0]), z)
