"""scikit-learn estimators: :class:`NeuralODEClassifier`, :class:`ResNetClassifier`,
:class:`NeuralODERegressor` and :class:`ResNetRegressor`.

They wrap :class:`resode.NeuralODE` / :class:`resode.ResNet` and :func:`resode.fit` behind the
scikit-learn API (``fit``, ``predict``, ``predict_proba`` for classifiers, ``score``,
``get_params``, ``set_params``), so they work in ``Pipeline``, ``GridSearchCV`` and
``cross_val_score``. Classifier labels may be any sortable values (ints, strings, ...); they
are mapped to ``0..n_classes-1`` through ``classes_``. Regressors fit real targets ``(n,)`` or
``(n, n_outputs)`` with the mean squared error and score R^2. Needs scikit-learn
(``pip install resode[sklearn]``).

Examples
--------
>>> import resode
>>> from resode.sklearn import NeuralODEClassifier
>>> X, y = resode.datasets.concentric_spheres(200, seed=0)
>>> clf = NeuralODEClassifier(T=5.0, epochs=150, random_state=0).fit(X, y)
>>> clf.score(X, y) >= 0.95
True
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "resode.sklearn needs scikit-learn; install it with `pip install resode[sklearn]` "
        "(or `pip install scikit-learn`)"
    ) from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(*args, **kwargs)


from .models import NeuralODE, ResNet
from .optim import SGD, Adam, Optimizer
from .training import History, fit

__all__ = ["NeuralODEClassifier", "NeuralODERegressor", "ResNetClassifier", "ResNetRegressor"]


def _store(estimator: BaseEstimator, arguments: dict[str, Any]) -> None:
    """Set every constructor argument as an attribute of the same name, unchanged (as
    scikit-learn requires: validation happens in fit)."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def in_parallel_worker() -> bool:
    """Is this fit one of several running at once: in a Dask worker, in a joblib/loky or
    multiprocessing worker process, or on a thread other than the main one (joblib's threading
    backend)? There the core runs on one thread: the parallelism is over the fits, and a
    second level of threads would only compete for the same cores."""
    if "distributed" in sys.modules:
        from distributed import get_worker

        with contextlib.suppress(ValueError):
            get_worker()
            return True
    name = multiprocessing.current_process().name
    if name.startswith(("LokyProcess", "ForkPoolWorker", "SpawnPoolWorker", "ForkServer")):
        return True
    return threading.current_thread() is not threading.main_thread()


@contextlib.contextmanager
def _core_threads(n: int | None) -> Iterator[None]:
    """The core on at most ``n`` threads for the block, on the calling thread only (None:
    unchanged).

    The core caps its count by OpenMP's setting of the calling thread
    (``omp_get_max_threads``), which OpenMP keeps per thread; threadpoolctl sets and restores
    that setting for this thread alone. Fits on several threads at once (joblib's threading
    backend) thus never see or restore each other's values, and the process-wide count of
    :func:`resode.set_num_threads` stays as the user set it (saving and restoring that count
    instead let interleaved fits restore each other's saved 1 and left the process on one
    thread)."""
    if n is None:
        yield
        return
    with threadpool_limits(limits=n, user_api="openmp"):
        yield


class _ResodeEstimator(BaseEstimator):
    """What all four estimators share: the optimiser and one training run."""

    # attributes set by fit
    model_: ResNet | NeuralODE
    history_: History
    n_features_in_: int
    n_iter_: int

    def _make_model(self, dim: int, outputs: int, seed: int, loss: str) -> ResNet | NeuralODE:
        raise NotImplementedError

    def _train(self, X: np.ndarray, targets: np.ndarray, outputs: int, loss: str) -> None:
        """Build a new model with ``outputs`` outputs and train it on ``(X, targets)``."""
        rng = check_random_state(self.random_state)
        model_seed, fit_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        model = self._make_model(X.shape[1], outputs, model_seed, loss)
        with _core_threads(1 if in_parallel_worker() else None):
            history = fit(
                model,
                X,
                targets,
                optimizer=self._make_optimizer(),
                epochs=self.epochs,
                batch_size=self.batch_size,
                seed=fit_seed,
                bound=self.bound,
                fixed_projection=self.fixed_projection,
                progress=bool(self.verbose),
            )
        self.model_ = model
        self.history_ = history
        self.n_iter_ = len(history)

    def _make_optimizer(self) -> Optimizer:
        name = self.optimizer
        if name == "adam":
            return Adam(lr=self.lr)
        if name == "sgd":
            return SGD(lr=self.lr, momentum=self.momentum)
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


class _ResodeClassifier(ClassifierMixin, _ResodeEstimator):
    """Classification: label mapping, cross-entropy (or MSE on one-hot rows) training."""

    classes_: np.ndarray

    def fit(self, X: Any, y: Any) -> _ResodeClassifier:
        """Build a new model and train it on ``(X, y)``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : array_like, shape (n_samples,)
            Class labels (any sortable values); at least two classes.

        Returns
        -------
        self
        """
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False)
        check_classification_targets(y)
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; "
                f"got 1 class ({classes[0]!r})"
            )
        targets: np.ndarray = y_idx.astype(np.int64)
        if self.loss == "mse":  # regression on one-hot rows, predicted by the largest output
            targets = np.eye(len(classes), dtype=np.float64)[y_idx]
        self._train(X, targets, len(classes), self.loss)
        self.classes_ = classes
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the outputs), float array of shape
        ``(n_samples, n_classes)`` in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (values of ``classes_``), shape ``(n_samples,)``."""
        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.classes_[np.argmax(self.model_.forward(X), axis=1)]


class _ResodeRegressor(RegressorMixin, _ResodeEstimator):
    """Regression: the mean squared error on real targets, one output per target column."""

    def fit(self, X: Any, y: Any) -> _ResodeRegressor:
        """Build a new model and train it on ``(X, y)``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
        y : array_like, shape (n_samples,) or (n_samples, n_outputs)
            Real targets.

        Returns
        -------
        self
        """
        X, y = _validate_data(
            self, X, y, dtype=(np.float64, np.float32), y_numeric=True, multi_output=True
        )
        targets = np.asarray(y, dtype=np.float64)
        self._single_output = targets.ndim == 1
        targets = targets.reshape(len(targets), -1)
        self._train(X, targets, targets.shape[1], "mse")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values: ``(n_samples,)`` for a 1-D ``y`` in fit, else
        ``(n_samples, n_outputs)``."""
        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        z = self.model_.forward(X)
        return z[:, 0] if self._single_output else z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}


class _NeuralODEParams:
    """The model half of the neural ODE estimators."""

    def _make_model(self, dim: int, outputs: int, seed: int, loss: str) -> NeuralODE:
        p: Any = self
        return NeuralODE(
            dim,
            T=p.T,
            pieces=p.pieces,
            substeps=p.substeps,
            method=p.method,
            classes=outputs,
            field=p.field,
            activation=p.activation,
            hidden=p.hidden if p.field == "bottleneck" else None,
            augment=p.augment,
            loss=loss,
            weight_decay=p.weight_decay,
            turnpike=p.turnpike,
            gradient=p.gradient,
            checkpoints=p.checkpoints,
            dtype=p.dtype,
            seed=seed,
            rtol=p.rtol,
            atol=p.atol,
            first_step=p.first_step,
            max_steps=p.max_steps,
            step_control=p.step_control,
        )


class _ResNetParams:
    """The model half of the ResNet estimators."""

    def _make_model(self, dim: int, outputs: int, seed: int, loss: str) -> ResNet:
        p: Any = self
        return ResNet(
            dim,
            p.layers,
            classes=outputs,
            field=p.field,
            activation=p.activation,
            hidden=p.hidden if p.field == "bottleneck" else None,
            augment=p.augment,
            h=p.h,
            loss=loss,
            weight_decay=p.weight_decay,
            dtype=p.dtype,
            seed=seed,
        )


class NeuralODEClassifier(_NeuralODEParams, _ResodeClassifier):
    """Neural ODE classifier (:class:`resode.NeuralODE` trained by :func:`resode.fit`).

    Parameters
    ----------
    T, pieces, substeps, method, field, activation, hidden, augment, loss, weight_decay,
    turnpike, gradient, checkpoints, rtol, atol, first_step, max_steps, step_control, dtype
        Model arguments, see :class:`resode.NeuralODE` (``rtol``, ``atol``, ``first_step``,
        ``max_steps``, ``step_control``: adaptive methods only, ``None`` for the model's
        defaults; a fit that needs more than ``max_steps`` steps for a sample raises
        :class:`resode.StepSizeError`). The defaults (bottleneck field with 16 hidden units,
        one augmented dimension, ``T = 1``, 10 pieces, RK4) suit low-dimensional data.
    optimizer : {"adam", "sgd"}, default "adam"
    lr : float, default 1e-2
    momentum : float, default 0.0
        SGD only.
    epochs : int, default 100
    batch_size : int or None, default None
        ``None``: full batch.
    bound : float or None
        L1/L-infinity bound on the controls, see :func:`resode.fit`.
    fixed_projection : bool, default False
        Keep the random classifier ``P``, ``c`` fixed.
    random_state : int, numpy.random.RandomState or None
        Seeds the initialisation and the mini-batch order.
    verbose : bool, default False
        Show a progress bar (on a terminal).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    model_ : resode.NeuralODE
    history_ : resode.History
    n_iter_ : int
        Epochs run.

    Examples
    --------
    >>> import numpy as np, resode
    >>> X, y = resode.datasets.moons(100, seed=0)
    >>> labels = np.where(y == 1, "upper", "lower")
    >>> clf = NeuralODEClassifier(epochs=20, random_state=0).fit(X, labels)
    >>> clf.classes_.tolist(), clf.predict(X[:2]).shape
    (['lower', 'upper'], (2,))
    """

    def __init__(
        self,
        *,
        T: float = 1.0,
        pieces: int = 10,
        substeps: int = 1,
        method: str = "rk4",
        field: str = "bottleneck",
        activation: str = "tanh",
        hidden: int | None = 16,
        augment: int = 1,
        loss: str = "cross_entropy",
        weight_decay: float = 0.0,
        turnpike: bool = False,
        gradient: str = "discrete",
        checkpoints: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        step_control: str | None = None,
        dtype: str = "float64",
        optimizer: str = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        epochs: int = 100,
        batch_size: int | None = None,
        bound: float | None = None,
        fixed_projection: bool = False,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        _store(self, locals())


class ResNetClassifier(_ResNetParams, _ResodeClassifier):
    """Residual network classifier (:class:`resode.ResNet` trained by :func:`resode.fit`).

    Parameters
    ----------
    layers, h, field, activation, hidden, augment, loss, weight_decay, dtype
        Model arguments, see :class:`resode.ResNet`. The defaults (10 layers with step
        ``h = 0.1``, bottleneck field with 16 hidden units, one augmented dimension) are the
        explicit-Euler twin of :class:`NeuralODEClassifier`'s.
    optimizer, lr, momentum, epochs, batch_size, bound, fixed_projection, random_state, verbose
        As for :class:`NeuralODEClassifier`.

    Attributes
    ----------
    classes_, n_features_in_, model_, history_, n_iter_
        As for :class:`NeuralODEClassifier` (``model_`` is a :class:`resode.ResNet`).

    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.moons(200, noise=0.05, seed=0)
    >>> ResNetClassifier(h=0.5, epochs=100, random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        *,
        layers: int = 10,
        h: float = 0.1,
        field: str = "bottleneck",
        activation: str = "tanh",
        hidden: int | None = 16,
        augment: int = 1,
        loss: str = "cross_entropy",
        weight_decay: float = 0.0,
        dtype: str = "float64",
        optimizer: str = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        epochs: int = 100,
        batch_size: int | None = None,
        bound: float | None = None,
        fixed_projection: bool = False,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        _store(self, locals())


class NeuralODERegressor(_NeuralODEParams, _ResodeRegressor):
    """Neural ODE regressor: :class:`resode.NeuralODE` with ``loss="mse"`` trained by
    :func:`resode.fit` on real targets ``(n,)`` or ``(n, n_outputs)``; ``score`` is R^2.

    Parameters
    ----------
    T, pieces, substeps, method, field, activation, hidden, augment, weight_decay, turnpike,
    gradient, checkpoints, rtol, atol, first_step, max_steps, step_control, dtype
        Model arguments, see :class:`resode.NeuralODE` and :class:`NeuralODEClassifier` (the
        loss is the mean squared error).
    optimizer, lr, momentum, epochs, batch_size, bound, fixed_projection, random_state, verbose
        As for :class:`NeuralODEClassifier`.

    Attributes
    ----------
    n_features_in_ : int
    model_ : resode.NeuralODE
    history_ : resode.History
        With an ``r2`` column.
    n_iter_ : int

    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.sine(200, seed=0)
    >>> reg = NeuralODERegressor(epochs=200, lr=2e-2, random_state=0).fit(X, y)
    >>> reg.predict(X).shape, reg.score(X, y) > 0.9
    ((200,), True)
    """

    def __init__(
        self,
        *,
        T: float = 1.0,
        pieces: int = 10,
        substeps: int = 1,
        method: str = "rk4",
        field: str = "bottleneck",
        activation: str = "tanh",
        hidden: int | None = 16,
        augment: int = 1,
        weight_decay: float = 0.0,
        turnpike: bool = False,
        gradient: str = "discrete",
        checkpoints: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        step_control: str | None = None,
        dtype: str = "float64",
        optimizer: str = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        epochs: int = 100,
        batch_size: int | None = None,
        bound: float | None = None,
        fixed_projection: bool = False,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        _store(self, locals())


class ResNetRegressor(_ResNetParams, _ResodeRegressor):
    """Residual network regressor: :class:`resode.ResNet` with ``loss="mse"`` trained by
    :func:`resode.fit` on real targets ``(n,)`` or ``(n, n_outputs)``; ``score`` is R^2.

    Parameters
    ----------
    layers, h, field, activation, hidden, augment, weight_decay, dtype
        Model arguments, see :class:`resode.ResNet` (the loss is the mean squared error).
    optimizer, lr, momentum, epochs, batch_size, bound, fixed_projection, random_state, verbose
        As for :class:`NeuralODEClassifier`.

    Attributes
    ----------
    n_features_in_, model_, history_, n_iter_
        As for :class:`NeuralODERegressor` (``model_`` is a :class:`resode.ResNet`).

    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.sine(200, seed=0)
    >>> ResNetRegressor(epochs=200, lr=2e-2, random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        *,
        layers: int = 10,
        h: float = 0.1,
        field: str = "bottleneck",
        activation: str = "tanh",
        hidden: int | None = 16,
        augment: int = 1,
        weight_decay: float = 0.0,
        dtype: str = "float64",
        optimizer: str = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        epochs: int = 100,
        batch_size: int | None = None,
        bound: float | None = None,
        fixed_projection: bool = False,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        _store(self, locals())
