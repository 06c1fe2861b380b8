"""The residual network :class:`ResNet`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .._typing import ArrayLike, FloatArray, IntArray
from .._validation import as_float_array, check_int, check_positive
from .base import Model
from .options import Activation, Field, FixedMethod, Loss, Readout

__all__ = ["ResNet"]


class ResNet(Model):
    """Residual network ``x^{k+1} = x^k + h f_k(x^k)``, ``k = 0..L-1``, logits ``x^L P^T + c``.

    Parameters
    ----------
    dim : int
        Input features; inputs are augmented with ``augment`` zero columns to ``D = dim + augment``.
    layers : int
        The number of residual layers ``L``, >= 1.
    classes : int, default 2
        Outputs: classes (>= 2) for cross-entropy, target columns for ``loss="mse"``.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The layer's field: ``outside`` ``sigma(W x + b)``, ``inside`` ``W sigma(x) + b``,
        ``bottleneck`` ``W2 sigma(W1 x + b1) + b2`` (needs ``hidden``).
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation ``sigma``.
    hidden : int or None, default None
        The width ``H`` of the bottleneck field's hidden layer (``field="bottleneck"`` only).
    augment : int, default 0
        Zero columns appended to the inputs (>= 0).
    h : float, default 1.0
        The step size of every layer, > 0.
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        Softmax cross-entropy with integer labels, or the mean squared error of the outputs.
    weight_decay : float, default 0.0
        Adds ``weight_decay * sum(theta**2)`` over the field parameters (>= 0).
    readout : {"linear", "hardtanh"}, default "linear"
        ``"linear"`` (``z = x P^T + c``) or ``"hardtanh"`` (``z`` clipped to ``[-1, 1]``,
        leia's MSE model).
    l1 : float, default 0.0
        Adds ``l1 * sum |theta|`` over the field parameters (subgradient 0 at 0).
    decay_readout : bool, default False
        Put ``P`` under ``weight_decay`` too.
    dtype : {"float64", "float32"} or numpy.dtype, default "float64"
        The dtype of the parameters and of every computation.
    seed : int, numpy.random.Generator or None, default None
        The seed of the parameters' random initialisation.

    Raises
    ------
    ValueError
        If an option is out of range or not one of its choices, ``hidden`` is missing for (or
        given without) the bottleneck field, or cross-entropy has fewer than 2 classes.

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.ResNet(2, layers=10, h=0.1, seed=0)
    >>> X = np.random.default_rng(0).normal(size=(5, 2)); y = np.array([0, 1, 0, 1, 1])
    >>> loss, grads = model.loss_and_grad(X, y)
    >>> grads["W"].shape
    (10, 2, 2)
    """

    kind = "resnet"

    def __init__(
        self,
        dim: int,
        layers: int,
        *,
        classes: int = 2,
        field: Field = "outside",
        activation: Activation = "tanh",
        hidden: int | None = None,
        augment: int = 0,
        h: float = 1.0,
        loss: Loss = "cross_entropy",
        weight_decay: float = 0.0,
        readout: Readout = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        dtype: Any = "float64",
        seed: Any = None,
    ) -> None:
        self.layers = check_int("layers", layers, 1)
        self.h = check_positive("h", h)
        super().__init__(
            dim,
            self.layers,
            classes=classes,
            field=field,
            activation=activation,
            hidden=hidden,
            augment=augment,
            loss=loss,
            weight_decay=weight_decay,
            readout=readout,
            l1=l1,
            decay_readout=decay_readout,
            dtype=dtype,
            seed=seed,
        )

    @property
    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable) that rebuild this model.

        Returns
        -------
        dict of str to object
            ``ResNet(**model.config)`` is a model of the same configuration.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=3, h=0.5).config["h"]
        0.5
        """
        return {"dim": self.dim, "layers": self.layers, "h": self.h, **self._shared_config()}

    @property
    def steps(self) -> int:
        """Steps of the sweep: ``layers``.

        Returns
        -------
        int
            The number of layers.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=3).steps
        3
        """
        return self.layers

    @property
    def dt(self) -> float:
        """Step size: ``h``.

        Returns
        -------
        float
            The step size of every layer.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=3, h=0.25).dt
        0.25
        """
        return self.h

    @property
    def method(self) -> FixedMethod:
        """``"euler"``: a residual network is the explicit Euler scheme with step ``h``.

        Returns
        -------
        str
            Always ``"euler"``.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=3).method
        'euler'
        """
        return "euler"

    def trajectory(self, X: ArrayLike, t: ArrayLike | None = None) -> FloatArray:
        """Return the states ``x^k`` at the layer times ``t_k = k h``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        t : array_like of float, shape (Q,), optional
            Layer times ``k h`` (``0 <= k <= layers``), sorted; default all ``layers + 1``
            of them.

        Returns
        -------
        numpy.ndarray, shape (Q, N, D)
            The states, ``D = dim + augment``, in the model's dtype.

        Raises
        ------
        ValueError
            If a time is not a layer time (a residual network has no state between its layers)
            or ``t`` is not sorted.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=4, h=0.5, seed=0)
        >>> model.trajectory(np.ones((3, 2)), t=[0.0, 1.0, 2.0]).shape
        (3, 3, 2)
        """
        states = self._grid_trajectory(X)
        if t is None:
            return states
        return states[self._layer_indices(t)]

    def _layer_indices(self, t: ArrayLike) -> IntArray:
        """The layers ``k`` of the times ``t = k h`` (to round-off); ValueError off the grid."""
        times = as_float_array("t", t, np.dtype(np.float64))
        if times.ndim != 1:
            raise ValueError(f"t must be a 1-d array of times, got shape {times.shape}")
        if np.any(np.diff(times) < 0):
            raise ValueError("t must be sorted (non-decreasing)")
        k: npt.NDArray[np.float64] = np.rint(times / self.h)
        end = self.layers * self.h
        off = (k < 0) | (k > self.layers) | (np.abs(times - k * self.h) > 1e-9 * max(end, 1.0))
        if off.any():
            raise ValueError(
                f"t must hold layer times k * h (h={self.h:g}, k = 0..{self.layers}): a ResNet "
                f"has no state between its layers; got {float(times[off][0])!r}"
            )
        return k.astype(np.int64)

    def _sweep_args(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "activation": self.activation,
            "method": "euler",
            "dt": self.h,
            "substeps": 1,
            "augment": self.augment,
        }

    def _gradient_args(self) -> dict[str, Any]:
        return {"turnpike": False, "gradient": "discrete", "checkpoints": 0}
