"""The four public estimators: explicit ``__init__`` signatures (scikit-learn reads the
parameters from them) over the shared machinery of :mod:`resode.sklearn._base`.

Every option of :class:`resode.NeuralODE` / :class:`resode.ResNet`, of :func:`resode.fit` and of
the optimisers is a parameter (``tests/test_sklearn.py`` enumerates them), with the defaults of
``resode train``.
"""

from __future__ import annotations

from typing import Any, Literal

from ..models.options import (
    Activation,
    Field,
    Gradient,
    Interpolation,
    Loss,
    Method,
    Readout,
    StepControl,
)
from ._base import NeuralODEParams, ResNetParams, ResodeClassifier, ResodeRegressor, store
from ._driven import DrivenClassifier, DrivenRegressor

_TRAINING_DOC = """\
    optimizer : {"adam", "sgd"}, default "adam"
        The optimiser, :class:`resode.optim.Adam` or :class:`resode.optim.SGD`.
    lr : float, default 1e-2
        The base learning rate.
    momentum : float, default 0.0
        SGD only.
    nesterov : bool, default False
        SGD only: Nesterov momentum.
    beta1 : float, default 0.9
        Adam only: the decay rate of the first moment.
    beta2 : float, default 0.999
        Adam only: the decay rate of the second moment.
    eps : float, default 1e-8
        Adam only: the denominator's offset.
    schedule : {"none", "cosine", "step"}, default "none"
        Learning-rate schedule: cosine over ``epochs``, or times ``gamma`` every ``step_size``
        epochs.
    step_size : int, default 100
        ``schedule="step"`` only: the epochs between decays.
    gamma : float, default 0.1
        ``schedule="step"`` only: the factor of each decay.
    epochs : int, default 300
        The most epochs to run (fewer with ``early_stopping``).
    batch_size : int or None, default None
        ``None``: full batch.
    shuffle : bool, default True
        Shuffle the samples every epoch (mini-batches only).
    bound : float or None, default None
        L1/L-infinity bound on the controls, see :func:`resode.fit`.
    fixed_projection : bool, default False
        Keep the random classifier ``P``, ``c`` fixed.
    early_stopping : bool, default False
        As scikit-learn's ``MLPRegressor``: hold out ``validation_fraction`` of the training
        data (stratified for classifiers), stop when the validation score (accuracy or R^2)
        has not improved by at least ``tol`` for ``n_iter_no_change`` epochs, and keep the
        parameters of the best-scoring epoch.
    validation_fraction : float, default 0.1
        ``early_stopping`` only: the fraction of the training data held out.
    n_iter_no_change : int, default 10
        ``early_stopping`` only: the epochs without improvement before stopping.
    tol : float, default 1e-4
        ``early_stopping`` only: the smallest improvement that counts.
    random_state : int, numpy.random.RandomState or None, default None
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

# The model arguments, split where the classifiers' ``loss`` goes (numpydoc lists the
# parameters in the order of the signature).
_FIELD_DOC = """\
    field : {"outside", "inside", "bottleneck"}, default "bottleneck"
        The field, see :class:`resode.ResNet`.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation.
    hidden : int or None, default 32
        The bottleneck field's hidden width (None for the other fields).
    augment : int, default 1
        Zero columns appended to the inputs.
"""

_REGULARISER_DOC = """\
    weight_decay : float, default 0.0
        Adds ``weight_decay * sum(theta**2)`` over the field parameters.
    readout : {"linear", "hardtanh"}, default "linear"
        The logits ``x P^T + c``, or those clipped to ``[-1, 1]``.
    l1 : float, default 0.0
        Adds ``l1 * sum |theta|`` over the field parameters.
    decay_readout : bool, default False
        Put ``P`` under ``weight_decay`` too.
"""

_DTYPE_DOC = """\
    dtype : {"float64", "float32"}, default "float64"
        The dtype of the parameters and of every computation.
"""

_NODE_HEAD_DOC = (
    """\
    T : float, default 5.0
        The final time.
    pieces : int, default 10
        The pieces of the piecewise-constant controls.
    substeps : int, default 1
        Integrator steps per piece (fixed-step methods).
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step method or an adaptive pair.
"""
    + _FIELD_DOC
)

_NODE_TAIL_DOC = (
    _REGULARISER_DOC
    + """\
    turnpike : bool, default False
        The time integral of the data loss instead of the terminal one.
    turnpike_weight : float, default 1.0
        ``turnpike=True`` only: the integral's weight.
    gradient : {"discrete", "adjoint"}, default "discrete"
        The exact gradient of the discretised loss, or the backsolve adjoint.
    checkpoints : int or None, default None
        Discrete gradient only: the stored step states (None: all).
    rtol : float or None, default None
        Adaptive methods only, as the four below (None: the model's default): the relative
        tolerance. A fit that needs more than ``max_steps`` steps for a sample raises
        :class:`resode.StepSizeError`.
    atol : float or None, default None
        The absolute tolerance.
    first_step : float or None, default None
        The first step.
    max_steps : int or None, default None
        The attempted steps allowed per sample.
    step_control : {"sample", "batch"} or None, default None
        Per-sample step sequences, or one for the whole batch.
"""
    + _DTYPE_DOC
    + """\
    inputs : "auto" or int, default "auto"
        Channels ``C`` of time-varying inputs ``u(t)`` (``NeuralODE(dim, inputs=C)``, see
        docs/guide/inputs.md): ``"auto"`` takes them from the ``u`` given to ``fit`` (none
        without); an integer requires ``u`` of that many channels (0: no ``u``). ``fit``,
        ``predict``, ``predict_proba`` and ``score`` then take ``u=`` and ``times=``.
    interpolation : {"cubic", "linear"}, default "cubic"
        The path through the observations of ``u`` (with inputs only).
"""
)

_NODE_DEFAULTS = """\
    The model arguments are those of :class:`resode.NeuralODE`, with the defaults of
    ``resode train``: a bottleneck field with 32 hidden units, one augmented dimension,
    ``T = 5``, 10 pieces, RK4, 300 epochs of Adam."""

_RESNET_HEAD_DOC = (
    """\
    layers : int, default 10
        The residual layers.
    h : float, default 0.5
        The step size of every layer.
"""
    + _FIELD_DOC
)

_RESNET_TAIL_DOC = _REGULARISER_DOC + _DTYPE_DOC

_RESNET_DEFAULTS = """\
    The model arguments are those of :class:`resode.ResNet`, with the defaults of ``resode
    train --model resnet``: 10 layers with step ``h = T / layers = 0.5``, a bottleneck field
    with 32 hidden units, one augmented dimension, 300 epochs of Adam: the explicit-Euler twin
    of the neural ODE estimators'."""


def _doc(
    summary: str, defaults: str, head: str, tail: str, *, classifier: bool, examples: str,
    attributes: str = "",
) -> str:  # fmt: skip
    """The numpydoc docstring of one estimator, from the shared parameter texts."""
    loss = _LOSS_DOC if classifier else ""
    classes = "    classes_ : ndarray of shape (n_classes,)\n" if classifier else ""
    return (
        f"{summary}\n\n{defaults}\n\n    Parameters\n    ----------\n{head}{loss}{tail}"
        f"{_TRAINING_DOC}\n    Attributes\n    ----------\n{classes}{_ATTRIBUTES_DOC}"
        f"{attributes}{examples}"
    )


_INPUTS_ATTRIBUTE_DOC = """\
    n_inputs_ : int
        The channels of the inputs ``u`` the model reads (0: none).
"""


_LOSS_DOC = """\
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        ``"mse"``: regression on one-hot rows, predicted by the largest output.
"""


class NeuralODEClassifier(NeuralODEParams, DrivenClassifier):
    __doc__ = _doc(
        "Neural ODE classifier (:class:`resode.NeuralODE` trained by :func:`resode.fit`).",
        _NODE_DEFAULTS,
        _NODE_HEAD_DOC,
        _NODE_TAIL_DOC,
        classifier=True,
        attributes=_INPUTS_ATTRIBUTE_DOC,
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
        inputs: int | Literal["auto"] = "auto",
        interpolation: Interpolation = "cubic",
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


class NeuralODERegressor(NeuralODEParams, DrivenRegressor):
    __doc__ = _doc(
        'Neural ODE regressor: :class:`resode.NeuralODE` with ``loss="mse"``.\n\n'
        "    Trained by :func:`resode.fit` on real targets ``(n,)`` or ``(n, n_outputs)``.",
        _NODE_DEFAULTS,
        _NODE_HEAD_DOC,
        _NODE_TAIL_DOC,
        classifier=False,
        attributes=_INPUTS_ATTRIBUTE_DOC,
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
        inputs: int | Literal["auto"] = "auto",
        interpolation: Interpolation = "cubic",
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
        _RESNET_DEFAULTS,
        _RESNET_HEAD_DOC,
        _RESNET_TAIL_DOC,
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
        'Residual network regressor: :class:`resode.ResNet` with ``loss="mse"``.\n\n'
        "    Trained by :func:`resode.fit` on real targets ``(n,)`` or ``(n, n_outputs)``.",
        _RESNET_DEFAULTS,
        _RESNET_HEAD_DOC,
        _RESNET_TAIL_DOC,
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
