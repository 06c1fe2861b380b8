"""The four public estimators: explicit ``__init__`` signatures (scikit-learn reads the
parameters from them) over the shared machinery of :mod:`resode.sklearn._base`.

Every option of :class:`resode.NeuralODE` / :class:`resode.ResNet`, of :func:`resode.fit` and of
the optimisers is a parameter (``tests/test_sklearn.py`` enumerates them), with the defaults of
``resode train``.
"""

from __future__ import annotations

from typing import Any, Literal

from ..models.options import Activation, Field, Gradient, Loss, Method, Readout, StepControl
from ._base import NeuralODEParams, ResNetParams, ResodeClassifier, ResodeRegressor, store

_TRAINING_DOC = """\
    optimizer : {"adam", "sgd"}, default "adam"
    lr : float, default 1e-2
    momentum : float, default 0.0
        SGD only.
    nesterov : bool, default False
        SGD only: Nesterov momentum.
    beta1, beta2, eps : float, default 0.9, 0.999, 1e-8
        Adam only.
    schedule : {"none", "cosine", "step"}, default "none"
        Learning-rate schedule: cosine over ``epochs``, or times ``gamma`` every ``step_size``
        epochs.
    step_size : int, default 100
    gamma : float, default 0.1
        ``schedule="step"`` only.
    epochs : int, default 300
        The most epochs to run (fewer with ``early_stopping``).
    batch_size : int or None, default None
        ``None``: full batch.
    shuffle : bool, default True
        Shuffle the samples every epoch (mini-batches only).
    bound : float or None
        L1/L-infinity bound on the controls, see :func:`resode.fit`.
    fixed_projection : bool, default False
        Keep the random classifier ``P``, ``c`` fixed.
    early_stopping : bool, default False
        As scikit-learn's ``MLPRegressor``: hold out ``validation_fraction`` of the training
        data (stratified for classifiers), stop when the validation score (accuracy or R^2)
        has not improved by at least ``tol`` for ``n_iter_no_change`` epochs, and keep the
        parameters of the best-scoring epoch.
    validation_fraction : float, default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
        ``early_stopping`` only.
    random_state : int, numpy.random.RandomState or None
        Seeds the initialisation, the mini-batch order and the validation split
        (scikit-learn's convention: ``None`` draws a new seed each fit, where ``resode
        train`` defaults to ``--seed 0``).
    verbose : bool, default False
        Show a progress bar (on a terminal).
"""

_ATTRIBUTES_DOC = """\
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        The column names of a DataFrame ``X`` (only then); also kept in
        ``model_.feature_names``.
    model_ : resode.NeuralODE or resode.ResNet
    history_ : resode.History
        One row per epoch run (``val_*`` columns with ``early_stopping``).
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        The training loss of each epoch.
    validation_scores_ : list of float or None
        The validation score of each epoch (``early_stopping`` only, else None).
    best_validation_score_ : float or None
    best_epoch_ : int or None
        The best validation score and its epoch (counted from 1), whose parameters
        ``model_`` holds (``early_stopping`` only, else None).
"""

_NODE_MODEL_DOC = """\
    T, pieces, substeps, method, field, activation, hidden, augment, weight_decay, readout,
    l1, decay_readout, turnpike, turnpike_weight, gradient, checkpoints, rtol, atol,
    first_step, max_steps, step_control, dtype
        Model arguments, see :class:`resode.NeuralODE` (``rtol``, ``atol``, ``first_step``,
        ``max_steps``, ``step_control``: adaptive methods only, ``None`` for the model's
        defaults; a fit that needs more than ``max_steps`` steps for a sample raises
        :class:`resode.StepSizeError`). The defaults are those of ``resode train``: a
        bottleneck field with 32 hidden units, one augmented dimension, ``T = 5``, 10 pieces,
        RK4, 300 epochs of Adam.
"""

_RESNET_MODEL_DOC = """\
    layers, h, field, activation, hidden, augment, weight_decay, readout, l1, decay_readout,
    dtype
        Model arguments, see :class:`resode.ResNet`. The defaults are those of ``resode train
        --model resnet``: 10 layers with step ``h = T / layers = 0.5``, a bottleneck field with
        32 hidden units, one augmented dimension, 300 epochs of Adam: the explicit-Euler twin
        of the neural ODE estimators'.
"""


def _doc(summary: str, model: str, *, classifier: bool, examples: str) -> str:
    """The numpydoc docstring of one estimator, from the shared parameter texts."""
    loss = _LOSS_DOC if classifier else ""
    classes = "    classes_ : ndarray of shape (n_classes,)\n" if classifier else ""
    return (
        f"{summary}\n\n    Parameters\n    ----------\n{model}{loss}{_TRAINING_DOC}\n"
        f"    Attributes\n    ----------\n{classes}{_ATTRIBUTES_DOC}{examples}"
    )


_LOSS_DOC = """\
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        ``"mse"``: regression on one-hot rows, predicted by the largest output.
"""


class NeuralODEClassifier(NeuralODEParams, ResodeClassifier):
    __doc__ = _doc(
        "Neural ODE classifier (:class:`resode.NeuralODE` trained by :func:`resode.fit`).",
        _NODE_MODEL_DOC,
        classifier=True,
        examples="""
    Examples
    --------
    >>> import numpy as np, resode
    >>> X, y = resode.datasets.moons(100, seed=0)
    >>> labels = np.where(y == 1, "upper", "lower")
    >>> clf = NeuralODEClassifier(epochs=20, random_state=0).fit(X, labels)
    >>> clf.classes_.tolist(), clf.predict(X[:2]).shape
    (['lower', 'upper'], (2,))
    """,
    )

    def __init__(
        self,
        *,
        T: float = 5.0,
        pieces: int = 10,
        substeps: int = 1,
        method: Method = "rk4",
        field: Field = "bottleneck",
        activation: Activation = "tanh",
        hidden: int | None = 32,
        augment: int = 1,
        loss: Loss = "cross_entropy",
        weight_decay: float = 0.0,
        readout: Readout = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        turnpike: bool = False,
        turnpike_weight: float = 1.0,
        gradient: Gradient = "discrete",
        checkpoints: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        step_control: StepControl | None = None,
        dtype: Literal["float32", "float64"] = "float64",
        optimizer: Literal["adam", "sgd"] = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        nesterov: bool = False,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        schedule: Literal["none", "cosine", "step"] = "none",
        step_size: int = 100,
        gamma: float = 0.1,
        epochs: int = 300,
        batch_size: int | None = None,
        shuffle: bool = True,
        bound: float | None = None,
        fixed_projection: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        store(self, locals())


class NeuralODERegressor(NeuralODEParams, ResodeRegressor):
    __doc__ = _doc(
        'Neural ODE regressor: :class:`resode.NeuralODE` with ``loss="mse"`` trained by\n'
        "    :func:`resode.fit` on real targets ``(n,)`` or ``(n, n_outputs)``; ``score`` is "
        "R^2.",
        _NODE_MODEL_DOC,
        classifier=False,
        examples="""
    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.sine(200, seed=0)
    >>> reg = NeuralODERegressor(epochs=200, lr=2e-2, random_state=0).fit(X, y)
    >>> reg.predict(X).shape, reg.score(X, y) > 0.9
    ((200,), True)
    """,
    )

    def __init__(
        self,
        *,
        T: float = 5.0,
        pieces: int = 10,
        substeps: int = 1,
        method: Method = "rk4",
        field: Field = "bottleneck",
        activation: Activation = "tanh",
        hidden: int | None = 32,
        augment: int = 1,
        weight_decay: float = 0.0,
        readout: Readout = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        turnpike: bool = False,
        turnpike_weight: float = 1.0,
        gradient: Gradient = "discrete",
        checkpoints: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        step_control: StepControl | None = None,
        dtype: Literal["float32", "float64"] = "float64",
        optimizer: Literal["adam", "sgd"] = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        nesterov: bool = False,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        schedule: Literal["none", "cosine", "step"] = "none",
        step_size: int = 100,
        gamma: float = 0.1,
        epochs: int = 300,
        batch_size: int | None = None,
        shuffle: bool = True,
        bound: float | None = None,
        fixed_projection: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        store(self, locals())


class ResNetClassifier(ResNetParams, ResodeClassifier):
    __doc__ = _doc(
        "Residual network classifier (:class:`resode.ResNet` trained by :func:`resode.fit`).",
        _RESNET_MODEL_DOC,
        classifier=True,
        examples="""
    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.moons(200, noise=0.05, seed=0)
    >>> ResNetClassifier(epochs=100, random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """,
    )

    def __init__(
        self,
        *,
        layers: int = 10,
        h: float = 0.5,
        field: Field = "bottleneck",
        activation: Activation = "tanh",
        hidden: int | None = 32,
        augment: int = 1,
        loss: Loss = "cross_entropy",
        weight_decay: float = 0.0,
        readout: Readout = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        dtype: Literal["float32", "float64"] = "float64",
        optimizer: Literal["adam", "sgd"] = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        nesterov: bool = False,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        schedule: Literal["none", "cosine", "step"] = "none",
        step_size: int = 100,
        gamma: float = 0.1,
        epochs: int = 300,
        batch_size: int | None = None,
        shuffle: bool = True,
        bound: float | None = None,
        fixed_projection: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        store(self, locals())


class ResNetRegressor(ResNetParams, ResodeRegressor):
    __doc__ = _doc(
        'Residual network regressor: :class:`resode.ResNet` with ``loss="mse"`` trained by\n'
        "    :func:`resode.fit` on real targets ``(n,)`` or ``(n, n_outputs)``; ``score`` is "
        "R^2.",
        _RESNET_MODEL_DOC,
        classifier=False,
        examples="""
    Examples
    --------
    >>> import resode
    >>> X, y = resode.datasets.sine(200, seed=0)
    >>> ResNetRegressor(epochs=200, lr=2e-2, random_state=0).fit(X, y).score(X, y) > 0.9
    True
    """,
    )

    def __init__(
        self,
        *,
        layers: int = 10,
        h: float = 0.5,
        field: Field = "bottleneck",
        activation: Activation = "tanh",
        hidden: int | None = 32,
        augment: int = 1,
        weight_decay: float = 0.0,
        readout: Readout = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        dtype: Literal["float32", "float64"] = "float64",
        optimizer: Literal["adam", "sgd"] = "adam",
        lr: float = 1e-2,
        momentum: float = 0.0,
        nesterov: bool = False,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        schedule: Literal["none", "cosine", "step"] = "none",
        step_size: int = 100,
        gamma: float = 0.1,
        epochs: int = 300,
        batch_size: int | None = None,
        shuffle: bool = True,
        bound: float | None = None,
        fixed_projection: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        store(self, locals())
