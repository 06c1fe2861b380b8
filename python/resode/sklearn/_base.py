"""What the four estimators share: data checks, the optimiser, early stopping and one
training run (the public classes are in :mod:`resode.sklearn`)."""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import threading
from collections.abc import Callable, Iterator
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(*args, **kwargs)


from .._typing import ArrayLike, FloatArray
from ..models import NeuralCDE, NeuralODE, ResNet
from ..models.options import Loss
from ..optim import SGD, Adam, CosineLR, Optimizer, Schedule, StepLR
from ..training import History, fit
from ._early_stopping import BestWeights, check_early_stopping

_FLOATS = (np.float64, np.float32)


class Inputs(NamedTuple):
    """A neural ODE's inputs beside ``X``: ``u`` (N, L, C) and their times ((L,), (N, L) or
    None for ``0 .. L-1``)."""

    u: np.ndarray
    times: np.ndarray | None

    def arguments(self) -> dict[str, np.ndarray]:
        """The keyword arguments of the model's methods: ``u`` and ``times``."""
        return {"u": self.u, **({} if self.times is None else {"times": self.times})}

    def per_sample(self) -> list[np.ndarray]:
        """The arrays with one row per sample (``u``, and ``times`` when per sample)."""
        times = self.times
        return [self.u] if times is None or times.ndim == 1 else [self.u, times]

    def with_rows(self, parts: list[np.ndarray]) -> Inputs:
        """These inputs with :meth:`per_sample`'s arrays replaced by ``parts``."""
        return Inputs(parts[0], parts[1] if len(parts) > 1 else self.times)


def input_arguments(inputs: Inputs | None) -> dict[str, np.ndarray]:
    """The keyword arguments of ``inputs`` (none without)."""
    return {} if inputs is None else inputs.arguments()


def store(estimator: BaseEstimator, arguments: dict[str, Any]) -> None:
    """Set every constructor argument as an attribute of the same name, unchanged (as
    scikit-learn requires: validation happens in fit)."""
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def in_parallel_worker() -> bool:
    """Tell whether this fit is one of several running at once.

    That is: in a Dask worker, in a joblib/loky or multiprocessing worker process, or on a
    thread other than the main one (joblib's threading backend). There the core runs on one
    thread: the parallelism is over the fits, and a second level of threads would only compete
    for the same cores.

    Returns
    -------
    bool
        True in such a worker.

    Examples
    --------
    >>> from resode.sklearn import in_parallel_worker
    >>> in_parallel_worker()
    False
    """
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


def _schedule(est: Any) -> Schedule | None:
    if est.schedule == "none":
        return None
    if est.schedule == "cosine":
        return CosineLR(total_epochs=max(int(est.epochs), 1))
    if est.schedule == "step":
        return StepLR(step_size=est.step_size, gamma=est.gamma)
    raise ValueError(f"schedule must be 'none', 'cosine' or 'step', got {est.schedule!r}")


class ResodeEstimator(BaseEstimator):
    """The optimiser, early stopping and one training run, for all four estimators."""

    # attributes set by fit
    model_: ResNet | NeuralODE | NeuralCDE
    history_: History
    n_features_in_: int
    n_iter_: int
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    best_epoch_: int | None

    def _make_model(
        self, dim: int, outputs: int, seed: int, loss: Loss
    ) -> ResNet | NeuralODE | NeuralCDE:
        raise NotImplementedError

    def _inputs(self, X: Any) -> np.ndarray:
        """``X`` of predict / score, checked against the fitted estimator."""
        checked: np.ndarray = _validate_data(self, X, reset=False, dtype=_FLOATS)
        return checked

    def _checked_inputs(self, n: int, u: Any, times: Any, *, fitting: bool) -> Inputs | None:
        """A neural ODE's inputs ``u`` and ``times`` for ``n`` samples (None: none; the
        estimators of a model with inputs check them)."""
        return None

    def _fit_data(self, X: Any, y: Any, *, regression: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of fit, checked (``n_features_in_`` and ``feature_names_in_`` set)."""
        kwargs = {"y_numeric": True, "multi_output": True} if regression else {"y_numeric": False}
        X_checked, y_checked = _validate_data(self, X, y, dtype=_FLOATS, **kwargs)
        return X_checked, y_checked

    def _validation_score(
        self, X_val: np.ndarray, y_val: np.ndarray, inputs: Inputs | None = None
    ) -> Callable[..., float]:
        """``score(logs, model)`` on the validation split: the column of fit's history."""
        column = "val_r2" if self._loss() == "mse" else "val_accuracy"
        return lambda logs, model: logs[column]

    def _loss(self) -> Loss:
        return "mse"

    def _train(
        self, X: np.ndarray, targets: np.ndarray, outputs: int, *, stratify: Any = None,
        inputs: Inputs | None = None,
    ) -> None:  # fmt: skip
        """Build a new model with ``outputs`` outputs and train it on ``(X, targets)`` (and a
        neural ODE's ``inputs``); with ``early_stopping``, on all but a held-out
        ``validation_fraction`` of it."""
        check_early_stopping(self)
        rng = check_random_state(self.random_state)
        model_seed, fit_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        # the features of a point, or the channels of a series (N, L, channels)
        model = self._make_model(X.shape[-1], outputs, model_seed, self._loss())
        names = getattr(self, "feature_names_in_", None)
        model.feature_names = None if names is None else [str(n) for n in names]
        validation, keep = None, None
        if self.early_stopping:
            X, targets, validation, inputs = self._hold_out(X, targets, rng, stratify, inputs)
            keep = BestWeights(self._validation_score(*validation), self.n_iter_no_change,
                               self.tol)  # fmt: skip
            if len(validation) > 2:  # fit's order: (X, y, u, times)
                validation = (*validation[:2], *validation[2].arguments().values())
        with _core_threads(1 if in_parallel_worker() else None):
            history = fit(
                model,
                X,
                targets,
                u=None if inputs is None else inputs.u,
                times=None if inputs is None else inputs.times,
                optimizer=self._make_optimizer(),
                epochs=self.epochs,
                batch_size=self.batch_size,
                shuffle=self.shuffle,
                seed=fit_seed,
                validation_data=validation,
                bound=self.bound,
                fixed_projection=self.fixed_projection,
                callbacks=[] if keep is None else [keep],
                progress=bool(self.verbose),
            )
        self._record(model, history, keep)

    def _hold_out(
        self, X: np.ndarray, targets: np.ndarray, rng: np.random.RandomState, stratify: Any,
        inputs: Inputs | None,
    ) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...], Inputs | None]:  # fmt: skip
        """``(X, targets)`` less ``validation_fraction`` of it, and that part (stratified by
        ``stratify``), as scikit-learn's MLP does; ``inputs`` split alike (the validation
        part's as a third item). The split's seed is drawn after the model's and fit's, so
        fits without early stopping draw as they always did."""
        split_seed = int(rng.randint(0, 2**31 - 1))
        rows = [] if inputs is None else inputs.per_sample()
        try:
            X, X_val, targets, t_val, *parts = train_test_split(
                X, targets, *rows, test_size=self.validation_fraction,
                random_state=split_seed, stratify=stratify,
            )  # fmt: skip
        except ValueError as exc:  # too few samples for a (stratified) validation split
            raise ValueError(
                f"validation_fraction={self.validation_fraction!r} of {len(X)} samples "
                f"leaves no usable validation split for early_stopping: {exc}"
            ) from None
        if inputs is None:
            return X, targets, (X_val, t_val), None
        kept, held = inputs.with_rows(parts[0::2]), inputs.with_rows(parts[1::2])
        return X, targets, (X_val, t_val, held), kept

    def _record(self, model: Any, history: History, keep: BestWeights | None) -> None:
        if keep is not None:
            keep.restore(model)
        self.model_ = model
        self.history_ = history
        self.n_iter_ = len(history)
        self.loss_curve_ = list(history.loss)
        self.validation_scores_ = None if keep is None else keep.scores
        self.best_validation_score_ = None if keep is None else keep.best_score
        self.best_epoch_ = None if keep is None else keep.best_epoch

    def _make_optimizer(self) -> Optimizer:
        name, schedule = self.optimizer, _schedule(self)
        if name == "adam":
            for key in ("beta1", "beta2"):  # checked here: Adam names them betas[0], betas[1]
                value = getattr(self, key)
                if not isinstance(value, Real) or not 0.0 <= float(value) < 1.0:
                    raise ValueError(f"{key} must be in [0, 1), got {value!r}")
            return Adam(lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps,
                        schedule=schedule)  # fmt: skip
        if name == "sgd":
            return SGD(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                       schedule=schedule)  # fmt: skip
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def _target_name(y: Any) -> str | None:
    """The name of a pandas Series target (None for arrays and unnamed Series)."""
    name = getattr(y, "name", None)
    return None if name is None or not hasattr(y, "iloc") else str(name)


class ResodeClassifier(ClassifierMixin, ResodeEstimator):
    """Classification: label mapping, cross-entropy (or MSE on one-hot rows) training."""

    classes_: np.ndarray

    def fit(self, X: ArrayLike, y: ArrayLike) -> ResodeClassifier:
        """Build a new model and train it on ``(X, y)``.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            A DataFrame's column names are recorded in ``feature_names_in_``.
        y : array_like, shape (n_samples,)
            Class labels (any sortable values); at least two classes.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If ``X`` or ``y`` is malformed, or an option is out of range.
        resode.TrainingDiverged
            If the loss, a gradient or a parameter becomes non-finite.

        Examples
        --------
        >>> import resode
        >>> from resode.sklearn import NeuralODEClassifier, NeuralODERegressor
        >>> X, y = resode.datasets.moons(40, seed=0)
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=5, random_state=0).fit(X, y)
        >>> clf.n_iter_, clf.classes_.tolist()
        (5, [0, 1])
        """
        return self._fit(X, y, None, None)

    def _fit(self, X: ArrayLike, y: ArrayLike, u: Any, times: Any) -> ResodeClassifier:
        target_name = _target_name(y)
        Xc, yc = self._fit_data(X, y, regression=False)
        inputs = self._checked_inputs(len(Xc), u, times, fitting=True)
        check_classification_targets(yc)
        classes, y_idx = np.unique(yc, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; "
                f"got 1 class ({classes[0]!r})"
            )
        targets: np.ndarray = y_idx.astype(np.int64)
        if self.loss == "mse":  # regression on one-hot rows, predicted by the largest output
            targets = np.eye(len(classes), dtype=np.float64)[y_idx]
        self._train(Xc, targets, len(classes), stratify=y_idx, inputs=inputs)
        self.model_.target_name = target_name
        self.classes_ = classes
        return self

    def _loss(self) -> Loss:
        loss: Loss = self.loss  # checked by the model
        return loss

    def _validation_score(
        self, X_val: np.ndarray, y_val: np.ndarray, inputs: Inputs | None = None
    ) -> Callable[..., float]:
        if self.loss != "mse":
            return super()._validation_score(y_val, X_val)
        # one-hot rows: fit's history has R^2; the classifier's score is the accuracy
        labels, extra = np.argmax(y_val, axis=1), input_arguments(inputs)
        return lambda logs, model: float(
            np.mean(np.argmax(model.forward(X_val, **extra), 1) == labels)
        )

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """Return the class probabilities (softmax of the outputs).

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        numpy.ndarray of float, shape (n_samples, n_classes)
            The probabilities, in the order of ``classes_``.

        Examples
        --------
        >>> import resode
        >>> from resode.sklearn import NeuralODEClassifier, NeuralODERegressor
        >>> X, y = resode.datasets.moons(40, seed=0)
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=5, random_state=0).fit(X, y)
        >>> clf.predict_proba(X[:3]).shape
        (3, 2)
        """
        return self._proba(X, None, None)

    def _proba(self, X: ArrayLike, u: Any, times: Any) -> FloatArray:
        check_is_fitted(self, "model_")
        Xc = self._inputs(X)
        extra = input_arguments(self._checked_inputs(len(Xc), u, times, fitting=False))
        return self.model_.predict_proba(Xc, **extra)

    def predict(self, X: ArrayLike) -> np.ndarray[Any, np.dtype[Any]]:
        """Return the predicted labels (values of ``classes_``).

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        numpy.ndarray, shape (n_samples,)
            One label per sample, of the dtype of ``classes_``.

        Examples
        --------
        >>> import resode
        >>> from resode.sklearn import NeuralODEClassifier, NeuralODERegressor
        >>> X, y = resode.datasets.moons(40, seed=0)
        >>> clf = NeuralODEClassifier(pieces=2, hidden=4, epochs=5, random_state=0).fit(X, y)
        >>> clf.predict(X[:3]).shape
        (3,)
        """
        return self._predict(X, None, None)

    def _predict(self, X: ArrayLike, u: Any, times: Any) -> np.ndarray[Any, np.dtype[Any]]:
        check_is_fitted(self, "model_")
        Xc = self._inputs(X)
        extra = input_arguments(self._checked_inputs(len(Xc), u, times, fitting=False))
        labels: np.ndarray[Any, np.dtype[Any]] = self.classes_[
            np.argmax(self.model_.forward(Xc, **extra), axis=1)
        ]
        return labels


class ResodeRegressor(RegressorMixin, ResodeEstimator):
    """Regression: the mean squared error on real targets, one output per target column."""

    def fit(self, X: ArrayLike, y: ArrayLike) -> ResodeRegressor:
        """Build a new model and train it on ``(X, y)``.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            A DataFrame's column names are recorded in ``feature_names_in_``.
        y : array_like, shape (n_samples,) or (n_samples, n_outputs)
            Real targets.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If ``X`` or ``y`` is malformed, or an option is out of range.
        resode.TrainingDiverged
            If the loss, a gradient or a parameter becomes non-finite.

        Examples
        --------
        >>> import resode
        >>> from resode.sklearn import NeuralODEClassifier, NeuralODERegressor
        >>> X, y = resode.datasets.sine(40, seed=0)
        >>> reg = NeuralODERegressor(pieces=2, hidden=4, epochs=5, random_state=0).fit(X, y)
        >>> reg.n_iter_, reg.model_.task
        (5, 'regression')
        """
        return self._fit(X, y, None, None)

    def _fit(self, X: ArrayLike, y: ArrayLike, u: Any, times: Any) -> ResodeRegressor:
        target_name = _target_name(y)
        Xc, yc = self._fit_data(X, y, regression=True)
        inputs = self._checked_inputs(len(Xc), u, times, fitting=True)
        targets = np.asarray(yc, dtype=np.float64)
        self._single_output = targets.ndim == 1
        targets = targets.reshape(len(targets), -1)
        self._train(Xc, targets, targets.shape[1], inputs=inputs)
        self.model_.target_name = target_name
        return self

    def predict(self, X: ArrayLike) -> FloatArray:
        """Return the predicted values.

        Parameters
        ----------
        X : array_like or pandas DataFrame, shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        numpy.ndarray of float, shape (n_samples,) or (n_samples, n_outputs)
            ``(n_samples,)`` for a 1-D ``y`` in fit, else ``(n_samples, n_outputs)``.

        Examples
        --------
        >>> import resode
        >>> from resode.sklearn import NeuralODEClassifier, NeuralODERegressor
        >>> X, y = resode.datasets.sine(40, seed=0)
        >>> reg = NeuralODERegressor(pieces=2, hidden=4, epochs=5, random_state=0).fit(X, y)
        >>> reg.predict(X[:3]).shape
        (3,)
        """
        return self._predict(X, None, None)

    def _predict(self, X: ArrayLike, u: Any, times: Any) -> FloatArray:
        check_is_fitted(self, "model_")
        Xc = self._inputs(X)
        extra = input_arguments(self._checked_inputs(len(Xc), u, times, fitting=False))
        z: FloatArray = self.model_.forward(Xc, **extra)
        return z[:, 0] if self._single_output else z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}


class NeuralODEParams:
    """The model half of the neural ODE estimators."""

    def _make_model(self, dim: int, outputs: int, seed: int, loss: Loss) -> NeuralODE:
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
            readout=p.readout,
            l1=p.l1,
            decay_readout=p.decay_readout,
            turnpike=p.turnpike,
            turnpike_weight=p.turnpike_weight,
            gradient=p.gradient,
            checkpoints=p.checkpoints,
            dtype=p.dtype,
            seed=seed,
            rtol=p.rtol,
            atol=p.atol,
            first_step=p.first_step,
            max_steps=p.max_steps,
            step_control=p.step_control,
            inputs=getattr(self, "n_inputs_", 0),  # fit's u decides (inputs="auto")
            interpolation=p.interpolation if getattr(self, "n_inputs_", 0) else None,
        )


class ResNetParams:
    """The model half of the ResNet estimators."""

    def _make_model(self, dim: int, outputs: int, seed: int, loss: Loss) -> ResNet:
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
            readout=p.readout,
            l1=p.l1,
            decay_readout=p.decay_readout,
            dtype=p.dtype,
            seed=seed,
        )
