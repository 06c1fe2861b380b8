"""The neural controlled differential equation :class:`NeuralCDE`: a continuous-time RNN for
irregularly sampled time series of unequal lengths with missing values (Kidger et al. 2020)."""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .. import _core
from .._typing import ArrayLike, FloatArray
from .._validation import (
    as_float_array,
    check_choice,
    check_int,
    check_positive,
    resolve_dtype,
)
from . import options
from .options import ACTIVATIONS, FIELDS, INTERPOLATIONS, LOSSES, check_cde_method
from .params import cde_param_shapes, init_cde_params
from .problem import Problem
from .series import (
    as_series,
    as_times,
    as_window,
    check_paths,
    default_output_times,
    observation_window,
)
from .series_predictions import SeriesPredictions

__all__ = ["NeuralCDE"]


class NeuralCDE(SeriesPredictions):
    r"""Neural controlled differential equation: a classifier or regressor of time series.

    A sample is a series of observations ``x_k`` (``channels`` values each) at increasing
    times ``t_k``; the path ``X(t)`` interpolates them (``interpolation``). The hidden state
    ``z`` (``state`` values) starts at ``z(t_0) = A x_0 + a`` and follows

    .. math:: \frac{dz}{dt} = F(z)\, \frac{dX}{dt}(t),

    ``F(z)`` a ``(state, channels)`` matrix: the ``state * channels`` outputs of one of
    resode's fields (row ``d * channels + c``), with ``output_activation`` applied to them:
    ``outside`` ``sigma(W z + b)``, ``inside`` ``W sigma(z) + b``, ``bottleneck``
    ``W2 sigma(W1 z + b1) + b2``. The logits are ``z(T_i) P^T + c`` at each sample's own end
    time ``T_i`` (its last observation).

    Data: ``U`` ``(N, L, channels)`` at ``times`` ``(L,)`` or ``(N, L)`` (default ``0, 1, ...,
    L-1``). A NaN inside a series is a missing value, filled linearly in time (as torchcde); a
    shorter series is padded with NaN rows at the end. Include the observation times as a
    channel of ``U`` when they carry information (torchcde's advice); docs/guide/timeseries.md.

    Integration: a fixed-step method, ``substeps`` equal steps between consecutive
    observations, or an adaptive one (per-sample step control, docs/guide/adaptive.md; steps land
    on every observation time and piece boundary, diffrax's ``jump_ts``); the exact gradient
    of the computed solution (accepted steps held fixed) with respect to every parameter and U.

    Parameters
    ----------
    channels : int
        Values per observation (the width of ``U``'s last axis).
    state : int
        Width of the hidden state ``z``.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The vector field's form (see above).
    hidden : int or None
        The bottleneck's hidden width (``field="bottleneck"`` only, required there).
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        ``sigma``.
    output_activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"} or None, default None
        An activation applied to the field's outputs (``"tanh"`` keeps ``F(z)`` bounded, as
        torchcde's example vector field); None for none.
    classes : int, default 2
        Outputs: classes for ``loss="cross_entropy"``, targets for ``loss="mse"``.
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        Classification or regression, as for :class:`resode.ResNet`.
    weight_decay : float, default 0.0
        ``weight_decay * sum(theta**2)`` over the field's arrays (not ``A``, ``a``, ``P``,
        ``c``) is added to the loss.
    interpolation : {"cubic", "linear"}, default "cubic"
        ``"cubic"``: torchcde's Hermite cubic with backward differences (causal: the path up
        to ``t_k`` depends on the observations up to ``t_k`` only); ``"linear"``: piecewise
        linear between the observations.
    method : {"rk4", "midpoint", "euler", "dopri5", "tsit5", "bosh3"}, default "rk4"
        A fixed-step or an adaptive explicit method.
    substeps : int, default 1
        Steps per interval between consecutive observations (fixed-step methods).
    pieces : int, default 1
        The field's weights are piecewise constant over ``pieces`` equal parts of ``window``
        (steps also land on their boundaries).
    window : (float, float) or None, default None
        ``(t_start, t_end)``, the observation window the pieces split. None: with
        ``pieces > 1``, fixed at the first :func:`resode.fit`, :meth:`loss_and_grad`,
        :meth:`forward` or :meth:`trajectory` with data, as that data's
        ``(min_i t_{i,0}, max_i T_i)``; then kept (in ``config`` and the model's file), so a
        sample's result does not depend on the batch it is in. A sample's knots before
        ``t_start`` (after ``t_end``) use the first (last) piece.
    rtol, atol, first_step, max_steps : float, float, float, int, optional
        Adaptive methods only (None: docs/guide/adaptive.md's defaults 1e-7, 1e-9, Hairer's
        starting step, 100000 attempted steps per sample).
    gradient : {"discrete", "adjoint"}, default "discrete"
        ``"adjoint"``: the continuous adjoint, backsolved over each sample's step grid
        reversed with the same tableau (converges to the discrete one as the steps shrink).
    dtype : {"float64", "float32"}, default "float64"
        Of the parameters and of every computation.
    seed : int or None
        Seed of the initialisation (``torch.nn.Linear``'s rule, see
        ``resode.models.init_cde_params``).

    Attributes
    ----------
    params : dict of numpy.ndarray
        ``A`` (state, channels), ``a`` (state,), the field's arrays (``W``
        (pieces, state*channels, state), ``b`` (pieces, state*channels), or ``W1``
        (pieces, hidden, state), ``b1``, ``W2`` (pieces, state*channels, hidden), ``b2``),
        ``P`` (classes, state) and ``c`` (classes,).
    window : tuple of (float, float) or None
        The pieces' observation window (None until the first data fixes it; see ``window``
        above).

    Examples
    --------
    >>> import numpy as np, resode
    >>> U = np.random.default_rng(0).normal(size=(8, 20, 3))
    >>> model = resode.NeuralCDE(3, 8, field="bottleneck", hidden=16, output_activation="tanh",
    ...                          seed=0)
    >>> model.forward(U).shape, model.trajectory(U).shape
    ((8, 2), (20, 8, 8))
    """

    kind = "cde"

    def __init__(
        self,
        channels: int,
        state: int,
        *,
        field: options.Field = "outside",
        hidden: int | None = None,
        activation: options.Activation = "tanh",
        output_activation: options.Activation | None = None,
        classes: int = 2,
        loss: options.Loss = "cross_entropy",
        weight_decay: float = 0.0,
        interpolation: options.Interpolation = "cubic",
        method: options.Method = "rk4",
        substeps: int = 1,
        pieces: int = 1,
        window: tuple[float, float] | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        gradient: options.Gradient = "discrete",
        dtype: Any = "float64",
        seed: Any = None,
    ) -> None:
        # Model.__init__ builds the square fields of the models of points; this one's differ.
        self.channels, self.state = check_int("channels", channels, 1), check_int("state", state, 1)
        self.field = check_choice("field", field, FIELDS)
        self.hidden = self._check_hidden(hidden)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        if output_activation is not None:
            check_choice("output_activation", output_activation, ACTIVATIONS)
        self.output_activation: options.Activation | None = output_activation
        self.classes = check_int("classes", classes, 1)
        self.loss = check_choice("loss", loss, LOSSES)
        if self.loss == "cross_entropy" and self.classes < 2:
            raise ValueError(f"classes must be >= 2 for loss 'cross_entropy', got {classes}")
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        self.method = check_cde_method(method)
        self.substeps = check_int("substeps", substeps, 1)
        self.pieces = check_int("pieces", pieces, 1)
        self.window = None if window is None else as_window(window)
        given = {"rtol": rtol, "atol": atol, "first_step": first_step, "max_steps": max_steps}
        self.solver_options = options.cde_adaptive_options(self.method, given)  # {}: fixed
        self.rtol, self.atol, self.first_step, self.max_steps = given.values()
        self.gradient = check_choice("gradient", gradient, ("discrete", "adjoint"))
        self.dtype, self.seed, self.flat_targets = resolve_dtype(dtype), seed, False
        count = sum(int(np.prod(s, dtype=np.float64)) for s in self.param_shapes.values())
        if count > 2**31:
            raise ValueError(
                f"the model would have {count} parameters, more than the limit of 2**31: "
                "reduce pieces, state, channels or hidden"
            )
        self.params: dict[str, np.ndarray] = init_cde_params(
            self.field, self.pieces, self.channels, self.state, self.hidden, self.classes,
            self.dtype, seed,
        )  # fmt: skip

    # -- the protocol -----------------------------------------------------------------------
    @property
    def dim(self) -> int:  # type: ignore[override]  # Model's dim is set in its __init__
        """The values per observation: ``channels``.

        Returns
        -------
        int
            What ``feature_names`` (one name per channel) and ``scaling`` describe.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralCDE(3, 8).dim
        3
        """
        return self.channels

    @property
    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable) that rebuild this model.

        Returns
        -------
        dict of str to object
            ``resode.NeuralCDE(**model.config)`` is a model of the same configuration.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralCDE(3, 8, interpolation="linear").config["interpolation"]
        'linear'
        """
        seed = self.seed
        return {
            "channels": self.channels,
            "state": self.state,
            "field": self.field,
            "hidden": self.hidden,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "classes": self.classes,
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "interpolation": self.interpolation,
            "method": self.method,
            "substeps": self.substeps,
            "pieces": self.pieces,
            "window": None if self.window is None else list(self.window),
            **{key: getattr(self, key) for key in ("rtol", "atol", "first_step", "max_steps")},
            "gradient": self.gradient,
            "dtype": self.dtype.name,
            "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
        }

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every entry of ``params`` must have, from the configuration.

        Returns
        -------
        dict of str to tuple of int
            ``A``, ``a``, the field's, ``P``, ``c`` (``resode.models.cde_param_shapes``).

        Examples
        --------
        >>> import resode
        >>> resode.NeuralCDE(3, 2).param_shapes
        {'A': (2, 3), 'a': (2,), 'W': (1, 6, 2), 'b': (1, 6), 'P': (2, 2), 'c': (2,)}
        """
        return cde_param_shapes(
            self.field, self.pieces, self.channels, self.state, self.hidden, self.classes
        )

    @property
    def steps(self) -> int:
        """Not defined: each sample has its own step grid (an AttributeError says so).

        Examples
        --------
        >>> import resode
        >>> hasattr(resode.NeuralCDE(3, 2), "steps")
        False
        """
        raise AttributeError(
            "a NeuralCDE has no single step grid: each sample takes `substeps` steps per "
            "interval between its own observations"
        )

    @property
    def dt(self) -> float:
        """Not defined: each sample has its own step sizes (an AttributeError, see :attr:`steps`).

        Examples
        --------
        >>> import resode
        >>> hasattr(resode.NeuralCDE(3, 2), "dt")
        False
        """
        raise AttributeError("a NeuralCDE has no single step size (see NeuralCDE.steps)")

    def core_options(self) -> dict[str, Any]:
        """Return the keyword arguments of the core's ``cde_*`` functions for this model.

        Returns
        -------
        dict of str to object
            ``field``, ``activation``, ``output_activation``, ``interpolation``, ``method``,
            ``substeps``, ``window`` and, for an adaptive method, ``rtol``, ``atol``,
            ``first_step``, ``max_steps`` (what :func:`resode.cdeint` takes as well).

        Examples
        --------
        >>> import resode
        >>> resode.NeuralCDE(3, 2, method="midpoint").core_options()["method"]
        'midpoint'
        """
        keys = ("field", "activation", "output_activation", "interpolation", "method", "substeps")
        options = {key: getattr(self, key) for key in keys}
        return {**options, "window": self.window, **self.solver_options}

    def problem(
        self, X: ArrayLike, y: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> Problem:
        """Return the checked series, targets and times and the core's options.

        Parameters
        ----------
        X : array_like, shape (N, L, channels)
            The series ``U``.
        y : array_like, shape (N,) or (N, classes), optional
            Integer labels (cross-entropy) or float targets (``loss="mse"``).
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.

        Returns
        -------
        resode.models.Problem
            ``X`` the series of the model's dtype, ``times`` float64 and ``core_args`` the
            options and the loss terms; every path checked (``resode.models.check_paths``).

        Raises
        ------
        ValueError, TypeError
            On bad data, naming the argument.

        Examples
        --------
        >>> import numpy as np, resode
        >>> problem = resode.NeuralCDE(2, 3).problem(np.ones((4, 5, 2)), [0, 1, 1, 0])
        >>> problem.X.shape, problem.times.tolist()
        ((4, 5, 2), [0.0, 1.0, 2.0, 3.0, 4.0])
        """
        U = as_series(X, self.channels, self.dtype)
        grid = as_times(times, U.shape[0], U.shape[1])
        check_paths(U, grid)
        targets = None if y is None else self._targets(y, U.shape[0])
        self._fix_window(U, grid)
        flat = y is not None and self.task == "regression" and np.ndim(y) == 1
        args = {**self.core_options(), "loss": self.loss, "weight_decay": self.weight_decay}
        return Problem(X=U, targets=targets, flat_targets=flat, core_args=args, times=grid)

    def _all_params(self) -> dict[str, np.ndarray]:  # checked (shape), in the model's dtype
        return self._params(self.param_shapes)

    def _series(self, U: ArrayLike, times: ArrayLike | None) -> tuple[FloatArray, FloatArray]:
        Uc = as_series(U, self.channels, self.dtype)
        grid = as_times(times, Uc.shape[0], Uc.shape[1])
        if self.window is None and self.pieces > 1:
            check_paths(Uc, grid)
            self._fix_window(Uc, grid)
        return Uc, grid

    def _fix_window(self, U: FloatArray, times: FloatArray) -> None:
        """The first data fixes the pieces' window (pieces > 1; see the class docstring)."""
        if self.window is None and self.pieces > 1:
            self.window = observation_window(U, times)

    # -- public API ----------------------------------------------------------------------------
    def forward(self, U: ArrayLike, times: ArrayLike | None = None) -> FloatArray:
        """Compute the logits ``z(T_i) P^T + c`` at each sample's own end time.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations; NaN for missing values and for the padding of shorter series.
        times : array_like, shape (L,) or (N, L), optional
            Observation times, shared or per sample; default ``0, 1, ..., L-1``.

        Returns
        -------
        numpy.ndarray, shape (N, classes)
            In the model's dtype.

        Examples
        --------
        >>> import numpy as np, resode
        >>> resode.NeuralCDE(2, 3, classes=4).forward(np.ones((5, 6, 2))).shape
        (5, 4)
        """
        Uc, grid = self._series(U, times)
        return _core.cde_logits(self._all_params(), Uc, grid, **self.core_options())

    def trajectory(  # type: ignore[override]  # times: between the data and t
        self, U: ArrayLike, times: ArrayLike | None = None, t: ArrayLike | None = None
    ) -> FloatArray:
        """Compute the hidden states ``z(t)`` at the output times ``t``.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations, as in :meth:`forward`.
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.
        t : array_like, shape (Q,), optional
            Sorted output times within ``[min_i t_{i,0}, max_i T_i]``. Default with shared
            times: the observation times up to the longest series' end; required with
            per-sample times. A sample's state is ``z(t_{i,0})`` before its first observation
            and ``z(T_i)`` after its last. The times inside a sample's span become step
            boundaries of its grid (the steps still land on every observation).

        Returns
        -------
        numpy.ndarray, shape (len(t), N, state)
            In the model's dtype.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralCDE(2, 4, seed=0)
        >>> U = np.random.default_rng(0).normal(size=(3, 6, 2))
        >>> model.trajectory(U, t=[0.0, 2.5, 5.0]).shape
        (3, 3, 4)
        """
        Uc, grid = self._series(U, times)
        if t is None:
            out = default_output_times(Uc, grid)
        else:
            out = as_float_array("t", t, np.dtype(np.float64))
            if out.ndim != 1:
                raise ValueError(f"t must be a 1-d array of times, got shape {out.shape}")
        return _core.cde_solve(self._all_params(), Uc, grid, **self.core_options(), t=out)

    @overload
    def loss_and_grad(
        self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = ..., *,
        return_dU: Literal[False] = ..., return_logits: Literal[False] = ...,
    ) -> tuple[float, dict[str, FloatArray]]: ...  # fmt: skip

    @overload
    def loss_and_grad(
        self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = ..., *,
        return_dU: Literal[True], return_logits: Literal[False] = ...,
    ) -> tuple[float, dict[str, FloatArray], FloatArray]: ...  # fmt: skip

    @overload
    def loss_and_grad(
        self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = ..., *,
        return_dU: Literal[False] = ..., return_logits: Literal[True],
    ) -> tuple[float, dict[str, FloatArray], FloatArray]: ...  # fmt: skip

    @overload
    def loss_and_grad(
        self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = ..., *,
        return_dU: Literal[True], return_logits: Literal[True],
    ) -> tuple[float, dict[str, FloatArray], FloatArray, FloatArray]: ...  # fmt: skip

    def loss_and_grad(
        self, U: ArrayLike, y: ArrayLike, times: ArrayLike | None = None, *,
        return_dU: bool = False, return_logits: bool = False,
    ) -> tuple[Any, ...]:  # fmt: skip
        """Compute the loss and its exact gradient in one call into the core.

        Parameters
        ----------
        U : array_like, shape (N, L, channels)
            The observations, as in :meth:`forward`.
        y : array_like
            Integer labels ``(N,)`` in ``[0, classes)`` for ``loss="cross_entropy"``, float
            targets ``(N, classes)`` (or ``(N,)`` when ``classes == 1``) for ``loss="mse"``.
        times : array_like, shape (L,) or (N, L), optional
            As in :meth:`forward`.
        return_dU : bool, default False
            Also return the gradient with respect to ``U`` (e.g. to train an encoder or an
            imputation model upstream).
        return_logits : bool, default False
            Also return the logits the loss was computed from (what :meth:`forward` returns
            for the same parameters, without another sweep; ``fit`` scores its batches so).

        Returns
        -------
        loss : float
            The data loss (mean cross-entropy, or the mean squared error over all entries)
            + ``weight_decay * sum(theta**2)`` over the field's arrays.
        grads : dict of numpy.ndarray
            Keyed, shaped and typed as ``params``.
        dU : numpy.ndarray, shape (N, L, channels)
            With ``return_dU`` only: ``d loss / d U``, exactly 0 where ``U`` is NaN.
        logits : numpy.ndarray, shape (N, classes)
            With ``return_logits`` only (last).

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralCDE(2, 3, seed=0)
        >>> loss, grads, dU = model.loss_and_grad(np.ones((4, 5, 2)), [0, 1, 0, 1],
        ...                                       return_dU=True)
        >>> grads["W"].shape, dU.shape
        ((1, 6, 3), (4, 5, 2))
        """
        Uc, grid = self._series(U, times)
        targets = self._targets(y, Uc.shape[0])
        loss, grads, dU, logits = _core.cde_loss_and_grad(
            self._all_params(), Uc, targets, grid, **self.core_options(),
            loss=self.loss, weight_decay=self.weight_decay, gradient=self.gradient,
            return_logits=True, return_dU=return_dU,
        )  # fmt: skip
        grads = {name: grads[name] for name in self.param_shapes}
        extra = ([dU] if return_dU else []) + ([logits] if return_logits else [])
        return (float(loss), grads, *extra)
