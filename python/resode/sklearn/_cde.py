"""The neural CDE estimators :class:`NeuralCDEClassifier` and :class:`NeuralCDERegressor`:
time series in the layouts of aeon and sktime, over the machinery of
:mod:`resode.sklearn._base`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .._typing import ArrayLike, FloatArray
from ..models import NeuralCDE, add_time_channel
from ..models.options import Activation, Field, Gradient, Interpolation, Loss, Method
from ._base import ResodeClassifier, ResodeRegressor, store
from ._estimators import _ATTRIBUTES_DOC, _LOSS_DOC, _TRAINING_DOC

__all__ = ["NeuralCDEClassifier", "NeuralCDERegressor", "as_panel"]


def _list_panel(X: Sequence[Any]) -> np.ndarray:
    """A list of ``(n_channels, n_timepoints_i)`` arrays as ``(N, max_i n_timepoints_i,
    n_channels)``, each series padded with NaN rows at its end."""
    series = []
    for i, item in enumerate(X):
        arr = np.asarray(item, dtype=np.float64)
        if arr.ndim == 1:  # a univariate series given as a 1-D array
            arr = arr[None, :]
        if arr.ndim != 2 or min(arr.shape) < 1:
            raise ValueError(
                f"X[{i}] must be a 2-D array (n_channels, n_timepoints), got shape {arr.shape}"
            )
        series.append(arr)
    if not series:
        raise ValueError("X must hold at least one series, got an empty list")
    channels = {s.shape[0] for s in series}
    if len(channels) != 1:
        raise ValueError(f"every series of X must have the same channels, got {sorted(channels)}")
    length = max(s.shape[1] for s in series)
    U = np.full((len(series), length, series[0].shape[0]), np.nan)
    for i, s in enumerate(series):
        U[i, : s.shape[1]] = s.T
    return U


def as_panel(X: ArrayLike | Sequence[ArrayLike]) -> FloatArray:
    """Convert a panel of time series in aeon's / sktime's layouts to ``U`` ``(N, L, C)``.

    Parameters
    ----------
    X : array_like or list of array_like
        A 3-D array ``(n_cases, n_channels, n_timepoints)``, a 2-D array
        ``(n_cases, n_timepoints)`` (univariate), or a list of 2-D arrays
        ``(n_channels, n_timepoints_i)`` of unequal lengths. NaN marks a missing value.

    Returns
    -------
    numpy.ndarray, shape (n_cases, max n_timepoints, n_channels), float64
        The observations along the middle axis; a shorter series is padded with NaN rows at
        its end (resode's layout for :class:`resode.NeuralCDE`).

    Raises
    ------
    ValueError
        For other shapes, an empty panel or series of different channel counts.

    Examples
    --------
    >>> import numpy as np
    >>> U = as_panel([np.ones((2, 3)), np.zeros((2, 5))])
    >>> U.shape, bool(np.isnan(U[0, 3:]).all())
    ((2, 5, 2), True)
    """
    if isinstance(X, (list, tuple)):
        return _list_panel(X)
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(
            "X must be a 3-D array (n_cases, n_channels, n_timepoints), a 2-D array (n_cases, "
            f"n_timepoints) or a list of 2-D arrays (n_channels, n_timepoints_i), got shape "
            f"{arr.shape}"
        )
    return np.ascontiguousarray(arr.transpose(0, 2, 1))


class NeuralCDEParams:
    """The model half of the neural CDE estimators: the series' layout and the model."""

    n_channels_in_: int

    def _make_model(self, dim: int, outputs: int, seed: int, loss: Loss) -> NeuralCDE:
        p: Any = self
        return NeuralCDE(
            dim,
            p.state,
            field=p.field,
            hidden=p.hidden if p.field == "bottleneck" else None,
            activation=p.activation,
            output_activation=p.output_activation,
            classes=outputs,
            loss=loss,
            weight_decay=p.weight_decay,
            interpolation=p.interpolation,
            method=p.method,
            substeps=p.substeps,
            pieces=p.pieces,
            window=p.window,
            rtol=p.rtol,
            atol=p.atol,
            first_step=p.first_step,
            max_steps=p.max_steps,
            gradient=p.gradient,
            dtype=p.dtype,
            seed=seed,
        )

    def _series(self, X: Any, *, reset: bool) -> np.ndarray:
        """``U`` ``(N, L, channels)`` of ``X``, the observation index first unless
        ``time_channel=False``; ``reset``: record the channels, else check them."""
        time_channel = getattr(self, "time_channel", True)
        if not isinstance(time_channel, (bool, np.bool_)):
            raise TypeError(f"time_channel must be True or False, got {time_channel!r}")
        U = as_panel(X)
        channels = U.shape[2]
        if reset:
            self.n_channels_in_ = channels
        elif channels != self.n_channels_in_:
            raise ValueError(
                f"X has {channels} channels, but {type(self).__name__} was fitted with "
                f"{self.n_channels_in_}"
            )
        return add_time_channel(U) if time_channel else U

    def _inputs(self, X: Any) -> np.ndarray:
        return self._series(X, reset=False)

    def __sklearn_tags__(self) -> Any:
        """Panels: 3-D arrays (2-D ones univariate), NaN for missing values."""
        base: Any = super()  # the estimator class this mixin precedes
        tags = base.__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"X_types": ["3darray", "2darray"], "allow_nan": True}

    def _fit_data(self, X: Any, y: Any, *, regression: bool) -> tuple[np.ndarray, np.ndarray]:
        U = self._series(X, reset=True)
        targets = np.asarray(y, dtype=np.float64 if regression else None)
        if targets.ndim not in (1, 2) or (targets.ndim == 2 and not regression):
            raise ValueError(f"y must be 1-D (n_cases,), got shape {targets.shape}")
        if len(targets) != len(U):
            raise ValueError(f"X holds {len(U)} series but y has {len(targets)} values")
        return U, targets


# The model arguments, split where the classifier's ``loss`` goes (numpydoc lists the
# parameters in the order of the signature).
_CDE_HEAD_DOC = """\
    state : int, default 16
        The width of the hidden state ``z``.
    field : {"outside", "inside", "bottleneck"}, default "bottleneck"
        The vector field's form, see :class:`resode.NeuralCDE`.
    hidden : int or None, default 32
        The bottleneck field's hidden width (ignored by the other fields).
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The field's activation.
    output_activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"} or None, default None
        An activation applied to the field's outputs (``"tanh"`` keeps them bounded); None
        for none.
    interpolation : {"cubic", "linear"}, default "cubic"
        The path through the observations: torchcde's causal Hermite cubic, or piecewise
        linear.
    method : {"rk4", "midpoint", "euler", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step method or an adaptive pair.
    substeps : int, default 1
        Steps per interval between consecutive observations (fixed-step methods).
    pieces : int, default 1
        The field's weights are piecewise constant over this many equal parts of the
        observation window.
    window : (float, float) or None, default None
        That window ``(t_start, t_end)`` on the observation index; None: the training
        series' own, fixed by ``fit`` (:class:`resode.NeuralCDE`).
    rtol : float or None, default None
        Adaptive methods: the relative tolerance (None: 1e-7).
    atol : float or None, default None
        Adaptive methods: the absolute tolerance (None: 1e-9).
    first_step : float or None, default None
        Adaptive methods: the first step (None: Hairer's heuristic).
    max_steps : int or None, default None
        Adaptive methods: the attempted steps allowed per sample (None: 100000).
    gradient : {"discrete", "adjoint"}, default "discrete"
        The exact gradient of the discrete sweep, or the continuous adjoint.
    time_channel : bool, default True
        Add the observation index ``0, 1, ..., n_timepoints_i - 1`` as the first channel
        (torchcde's advice: without it the model cannot tell how fast a series moved).
"""

_CDE_TAIL_DOC = """\
    weight_decay : float, default 0.0
        Adds ``weight_decay * sum(theta**2)`` over the field's parameters.
    dtype : {"float64", "float32"}, default "float64"
        The dtype of the parameters and of every computation.
"""

_CDE_DEFAULTS = """\
    The model arguments are those of :class:`resode.NeuralCDE`, with the defaults of
    ``resode train --model cde``: a 16-wide state, a bottleneck field with 32 hidden units,
    cubic interpolation, RK4 with one step per observation interval, 300 epochs of Adam."""

_CDE_NOTES = """\
    Notes
    -----
    ``X`` (of ``fit``, ``predict`` and ``score``) is a panel in aeon's and sktime's layouts:
    a 3-D array ``(n_cases, n_channels, n_timepoints)``, a 2-D array
    ``(n_cases, n_timepoints)`` (univariate) or a list of 2-D arrays
    ``(n_channels, n_timepoints_i)`` of unequal lengths (padded with NaN at the end
    internally, see :func:`resode.sklearn.as_panel`); NaN inside a series is a missing value.
"""

_CDE_ATTRIBUTES_DOC = (
    "    n_channels_in_ : int\n        The channels of the panel seen in fit.\n"
    + _ATTRIBUTES_DOC.replace("resode.NeuralODE or resode.ResNet", "resode.NeuralCDE")
)


class NeuralCDEClassifier(NeuralCDEParams, ResodeClassifier):
    __doc__ = (
        "Neural CDE classifier of time series.\n\n"
        "    :class:`resode.NeuralCDE` trained by :func:`resode.fit` on class labels.\n"
        f"{_CDE_DEFAULTS}\n\n    Parameters\n    ----------\n"
        f"{_CDE_HEAD_DOC}{_LOSS_DOC}{_CDE_TAIL_DOC}{_TRAINING_DOC}\n"
        "    Attributes\n    ----------\n    classes_ : ndarray of shape (n_classes,)\n"
        f"{_CDE_ATTRIBUTES_DOC}\n{_CDE_NOTES}"
        """
    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0, 4 * np.pi, 30)
    >>> X = np.stack([np.stack([np.sin(t * f), np.cos(t * f)]) for f in [1, 2] * 10])
    >>> y = np.array(["slow", "fast"] * 10)
    >>> clf = NeuralCDEClassifier(state=4, hidden=8, epochs=30, lr=5e-2, random_state=0)
    >>> clf.fit(X, y).predict(X[:3]).tolist()
    ['slow', 'fast', 'slow']
    """
    )

    def __init__(
        self,
        *,
        state: int = 16,
        field: Field = "bottleneck",
        hidden: int | None = 32,
        activation: Activation = "tanh",
        output_activation: Activation | None = None,
        interpolation: Interpolation = "cubic",
        method: Method = "rk4",
        substeps: int = 1,
        pieces: int = 1,
        window: tuple[float, float] | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        gradient: Gradient = "discrete",
        time_channel: bool = True,
        loss: Loss = "cross_entropy",
        weight_decay: float = 0.0,
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


class NeuralCDERegressor(NeuralCDEParams, ResodeRegressor):
    __doc__ = (
        "Neural CDE regressor of time series.\n\n"
        '    :class:`resode.NeuralCDE` with ``loss="mse"`` trained by :func:`resode.fit` on real\n'
        "    targets ``(n_cases,)`` or ``(n_cases, n_outputs)``; ``score`` is R^2.\n"
        f"{_CDE_DEFAULTS}\n\n    Parameters\n    ----------\n"
        f"{_CDE_HEAD_DOC}{_CDE_TAIL_DOC}{_TRAINING_DOC}\n"
        f"    Attributes\n    ----------\n{_CDE_ATTRIBUTES_DOC}\n{_CDE_NOTES}"
        """
    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.cumsum(rng.normal(size=(40, 1, 12)), axis=2)
    >>> reg = NeuralCDERegressor(state=4, hidden=8, epochs=20, random_state=0).fit(X, X[:, 0, -1])
    >>> reg.predict(X).shape
    (40,)
    """
    )

    def __init__(
        self,
        *,
        state: int = 16,
        field: Field = "bottleneck",
        hidden: int | None = 32,
        activation: Activation = "tanh",
        output_activation: Activation | None = None,
        interpolation: Interpolation = "cubic",
        method: Method = "rk4",
        substeps: int = 1,
        pieces: int = 1,
        window: tuple[float, float] | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        gradient: Gradient = "discrete",
        time_channel: bool = True,
        weight_decay: float = 0.0,
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
