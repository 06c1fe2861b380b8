"""The neural ODE :class:`NeuralODE`: piecewise-constant controls, fixed-step or adaptive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _core
from .._typing import ArrayLike, FloatArray
from .._validation import as_float_array, check_choice, check_int, check_positive
from .driven import DrivenModel
from .options import (
    ADAPTIVE_DEFAULTS,
    ADAPTIVE_METHODS,
    GRADIENTS,
    METHODS,
    Activation,
    Field,
    Gradient,
    Interpolation,
    Loss,
    Method,
    Readout,
    StepControl,
    adaptive_options,
    summarize_stats,
)
from .params import field_param_names

__all__ = ["NeuralODE"]


class NeuralODE(DrivenModel):
    """Neural ODE ``x'(t) = f(theta(t), x(t))`` on ``[0, T]``.

    The controls ``theta(t)`` are piecewise constant on ``pieces`` equal intervals; the ODE
    is integrated with a fixed-step explicit method or an adaptive pair. The step grid:
    ``steps = pieces * substeps``, ``dt = T / steps``, ``t_j = j dt``; step ``j`` uses the
    parameters of piece ``j // substeps`` in all its stages.

    Parameters
    ----------
    dim : int
        Input features (``D = dim + augment``).
    T : float
        Final time, > 0.
    pieces : int
        Number of constant pieces of the controls (leading axis of the field parameters).
    substeps : int
        Integrator steps per piece.
    method : {"euler", "midpoint", "rk4", "dopri5", "tsit5", "bosh3"}
        Fixed-step methods (orders 1, 2, 4) or the adaptive embedded pairs Dormand-Prince
        5(4), Tsitouras 5(4) and Bogacki-Shampine 3(2) (docs/guide/adaptive.md): every sample gets
        its own accepted step sequence, steps land on each piece boundary ``k T / pieces``, and
        ``model.stats`` holds the function evaluations and steps of the last run (with
        ``gradient="adjoint"`` also those of its backward run: ``backward_nfev``,
        ``backward_accepted``, ``backward_rejected``; see ``summarize_stats``).
    classes : int, default 2
        Outputs: classes (>= 2) for cross-entropy, target columns for ``loss="mse"``.
    field : {"outside", "inside", "bottleneck"}, default "outside"
        The field ``f``, as for :class:`ResNet`.
    activation : {"tanh", "relu", "sigmoid", "leaky_relu", "identity"}, default "tanh"
        The activation ``sigma``.
    hidden : int or None, default None
        The hidden width of the bottleneck field (``field="bottleneck"`` only).
    augment : int, default 0
        Zero columns appended to the inputs (>= 0).
    loss : {"cross_entropy", "mse"}, default "cross_entropy"
        Softmax cross-entropy with integer labels, or the mean squared error.
    weight_decay : float, default 0.0
        Adds ``weight_decay * sum(theta**2)`` over the field parameters (>= 0).
    readout : {"linear", "hardtanh"}, default "linear"
        The logits ``x_T P^T + c``, or those clipped to ``[-1, 1]`` (fixed-step methods).
    l1 : float, default 0.0
        Adds ``l1 * sum |theta|`` over the field parameters (fixed-step methods).
    decay_readout : bool, default False
        Put ``P`` under ``weight_decay`` too (fixed-step methods).
    turnpike : bool
        Replace the terminal data loss by its time integral, by the trapezoid rule on the step
        grid: ``dt * (l_0/2 + l_1 + ... + l_{steps-1} + l_steps/2)``.
    turnpike_weight : float
        ``turnpike=True`` only: the integral times this weight (> 0, default 1); see the
        README for leia's ``1.75 * sum`` form.
    gradient : {"discrete", "adjoint"}
        ``"discrete"`` (default) is the exact gradient of the discretised loss: a reverse sweep
        through the Runge-Kutta stages (discretise-then-optimise). Prefer it whenever the
        memory of the stored states, ``(steps + 1) x N x D`` per block of samples, fits, or use
        ``checkpoints``. ``"adjoint"`` is the continuous backsolve adjoint of Chen et al. (2018)
        (optimise-then-discretise): the state, the adjoint and the parameter gradients are
        integrated backward from ``T`` with the same method and grid. Its memory does not grow
        with ``steps``, but it is only an approximation of the gradient of the loss you
        compute (its error shrinks at the method's order) and the backward re-integration of
        the state can be unstable for stiff or expansive fields.
    checkpoints : int or None
        Discrete gradient only: store ``K`` step states and recompute each segment of
        ``ceil(steps/K)`` steps on the way back; memory ``(K + steps/K + 1) x B x D`` per block
        of ``B`` samples, one extra forward sweep, same gradient to round-off.
    dtype : {"float64", "float32"} or numpy.dtype, default "float64"
        The dtype of the parameters and of every computation.
    seed : int, numpy.random.Generator or None, default None
        The seed of the parameters' random initialisation.
    rtol : float, optional
        Adaptive methods only (a ValueError with a fixed-step method), as all four below:
        the relative tolerance of the error norm (default ``1e-7``).
    atol : float, optional
        The absolute tolerance of the error norm (default ``1e-9``).
    first_step : float, optional
        The first step (default ``None``: Hairer's heuristic).
    max_steps : int, optional
        The attempted steps allowed per sample (default ``100_000``, then
        :class:`resode.StepSizeError`).
    step_control : {"sample", "batch"}, optional
        ``"sample"`` (default: per-sample step sequences) or ``"batch"`` (one sequence from
        the max error over the batch, as torchdiffeq).
    inputs : int, default 0
        Channels ``C`` of time-varying inputs ``u(t)``: ``x' = f_theta(t)([x; u(t)])``, the
        field's first layer acting on the concatenation (``W (pieces, D, D + C)``,
        ``W1 (pieces, hidden, D + C)``; ``inside`` applies ``sigma`` to ``[x; u]``). Then
        ``forward``, ``predict``, ``loss_and_grad``, ... and :func:`resode.fit` take ``u=``
        ``(N, L, C)`` and ``times=`` (docs/guide/inputs.md). Every method (an adaptive one's
        steps also land on each sample's knots) and both gradients; ``model.stats`` is not
        recorded with inputs.
    interpolation : {"linear", "cubic"}, optional
        ``inputs > 0`` only: the path through the observations (default ``"cubic"``).

    Raises
    ------
    ValueError
        If an option is out of range, not one of its choices, or does not apply to the
        method (``substeps``, ``turnpike`` or ``checkpoints`` with an adaptive method, the
        adaptive options with a fixed-step one).
    TypeError
        If ``turnpike`` is not a bool.

    Examples
    --------
    >>> import numpy as np, resode
    >>> model = resode.NeuralODE(2, T=5.0, pieces=16, field="bottleneck", hidden=50,
    ...                          augment=1, activation="relu", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(8, 2)); y = np.arange(8) % 2
    >>> model.trajectory(X).shape
    (17, 8, 3)
    """

    kind = "node"

    def __init__(
        self,
        dim: int,
        *,
        T: float = 1.0,
        pieces: int = 10,
        substeps: int = 1,
        method: Method = "rk4",
        classes: int = 2,
        field: Field = "outside",
        activation: Activation = "tanh",
        hidden: int | None = None,
        augment: int = 0,
        loss: Loss = "cross_entropy",
        weight_decay: float = 0.0,
        readout: Readout = "linear",
        l1: float = 0.0,
        decay_readout: bool = False,
        turnpike: bool = False,
        turnpike_weight: float = 1.0,
        gradient: Gradient = "discrete",
        checkpoints: int | None = None,
        dtype: Any = "float64",
        seed: Any = None,
        rtol: float | None = None,
        atol: float | None = None,
        first_step: float | None = None,
        max_steps: int | None = None,
        step_control: StepControl | None = None,
        inputs: int = 0,
        interpolation: Interpolation | None = None,
    ) -> None:
        self.T = check_positive("T", T)
        self.pieces = check_int("pieces", pieces, 1)
        self.substeps = check_int("substeps", substeps, 1)
        self.method = check_choice("method", method, METHODS)
        self.gradient = check_choice("gradient", gradient, GRADIENTS)
        if not isinstance(turnpike, (bool, np.bool_)):
            raise TypeError(f"turnpike must be a bool, got {type(turnpike).__name__}")
        self.turnpike = bool(turnpike)
        adaptive = adaptive_options(
            self.method,
            {"rtol": rtol, "atol": atol, "first_step": first_step, "max_steps": max_steps,
             "step_control": step_control},
        )  # fmt: skip
        #: The adaptive options (None with a fixed-step method).
        self.rtol: float | None = adaptive.get("rtol")
        self.atol: float | None = adaptive.get("atol")
        self.first_step: float | None = adaptive.get("first_step")
        self.max_steps: int | None = adaptive.get("max_steps")
        self.step_control: StepControl | None = adaptive.get("step_control")
        #: Statistics of the last adaptive run (see ``summarize_stats``); None before one.
        self.stats: dict[str, Any] | None = None
        if self.adaptive:
            self._check_adaptive_options()
        self.turnpike_weight = check_positive("turnpike_weight", turnpike_weight)
        if self.turnpike_weight != 1.0 and not self.turnpike:
            raise ValueError("turnpike_weight applies to turnpike=True only")
        self.checkpoints = None if checkpoints is None else check_int("checkpoints", checkpoints, 1)
        if self.checkpoints is not None and self.gradient != "discrete":
            raise ValueError(
                "checkpoints applies to gradient='discrete' only (the adjoint stores no trajectory)"
            )
        if not self.T / (self.pieces * self.substeps) > 0:
            raise ValueError(f"T must be large enough that T / (pieces * substeps) > 0, got T={T}")
        super().__init__(
            dim,
            self.pieces,
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
        if self.adaptive and (self.readout != "linear" or self.l1 or self.decay_readout):
            raise ValueError(
                "readout='hardtanh', l1 and decay_readout are not available with the adaptive "
                "methods yet; use a fixed-step method (euler, midpoint, rk4)"
            )
        unsupported = self.turnpike or self.step_control == "batch"
        unsupported = unsupported or self.checkpoints is not None or self.readout != "linear"
        self._init_inputs(inputs, interpolation, unsupported or bool(self.l1) or self.decay_readout)

    def _check_adaptive_options(self) -> None:
        if self.substeps != 1:
            raise ValueError(
                f"substeps applies to the fixed-step methods; method={self.method!r} chooses its "
                "own steps (use rtol/atol)"
            )
        if self.turnpike:
            raise ValueError(
                "turnpike=True is defined by the trapezoid rule on a fixed step grid; use a "
                "fixed-step method (euler, midpoint, rk4) for turnpike losses"
            )
        if self.gradient == "adjoint" and self.step_control == "batch":
            raise ValueError(
                "gradient='adjoint' runs with step_control='sample' only (each sample's backward "
                "run controls its own steps)"
            )

    @property
    def adaptive(self) -> bool:
        """Whether ``method`` is an adaptive embedded pair (dopri5, tsit5, bosh3).

        Returns
        -------
        bool
            True for an adaptive method.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, method="dopri5").adaptive
        True
        """
        return self.method in ADAPTIVE_METHODS

    @property
    def steps(self) -> int:
        """Integrator steps: ``pieces * substeps``.

        Returns
        -------
        int
            The number of steps of a fixed-step method.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, pieces=4, substeps=2).steps
        8
        """
        return self.pieces * self.substeps

    @property
    def dt(self) -> float:
        """Step size ``T / steps``.

        Returns
        -------
        float
            The step of a fixed-step method.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, T=2.0, pieces=4).dt
        0.5
        """
        return self.T / self.steps

    @property
    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable) that rebuild this model.

        Returns
        -------
        dict of str to object
            ``NeuralODE(**model.config)`` is a model of the same configuration.

        Examples
        --------
        >>> import resode
        >>> resode.NeuralODE(2, T=3.0).config["T"]
        3.0
        """
        return {
            "dim": self.dim,
            "T": self.T,
            "pieces": self.pieces,
            "substeps": self.substeps,
            "method": self.method,
            "turnpike": self.turnpike,
            "turnpike_weight": self.turnpike_weight,
            "gradient": self.gradient,
            "checkpoints": self.checkpoints,
            **self._shared_config(),
            **self._adaptive_options(),
            **({"inputs": self.inputs, "interpolation": self.interpolation} if self.inputs else {}),
        }

    def _adaptive_options(self) -> dict[str, Any]:
        """``rtol``, ``atol``, ``first_step``, ``max_steps``, ``step_control``: adaptive only."""
        return {k: getattr(self, k) for k in ADAPTIVE_DEFAULTS} if self.adaptive else {}

    def _adaptive_args(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "activation": self.activation,
            "method": self.method,
            "T": self.T,
            "augment": self.augment,
            **self._adaptive_options(),
        }

    def _record(self, stats: Mapping[str, Any] | None) -> None:
        if stats is not None:
            self.stats = summarize_stats(stats)

    def forward(
        self, X: ArrayLike, *, u: ArrayLike | None = None, times: ArrayLike | None = None
    ) -> FloatArray:
        """Return the logits ``z = x_T P^T + c`` (clipped to ``[-1, 1]`` by ``"hardtanh"``).

        An adaptive method records its statistics in ``model.stats``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        u : array_like, shape (N, L, inputs), optional
            ``inputs > 0`` only (then required): the observed inputs, NaN for missing values
            and trailing padding.
        times : array_like, shape (L,) or (N, L), optional
            ``inputs > 0`` only: the observation times (default ``0, 1, ..., L-1``).

        Returns
        -------
        numpy.ndarray, shape (N, classes)
            The logits, in the model's dtype.

        Raises
        ------
        ValueError
            If ``X`` is not ``(N, dim)`` or holds non-finite values.
        resode.StepSizeError
            If an adaptive method's step size control fails for a sample.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, method="dopri5", seed=0)
        >>> model.forward(np.ones((3, 2))).shape, model.stats["nfev"] > 0
        ((3, 2), True)
        """
        self._check_inputs(u, times)
        if self.inputs:
            return self._driven_logits(X, u, times)
        if not self.adaptive:
            return super().forward(X)
        logits, stats = _core.adaptive_logits(
            self._X(X),
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._adaptive_args(),
        )
        self._record(stats)
        return logits

    def trajectory(
        self, X: ArrayLike, t: ArrayLike | None = None, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> FloatArray:  # fmt: skip
        """Return the states at the times ``t``.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        t : array_like of float, shape (Q,), optional
            Output times, sorted, in ``[0, T]``: the dense output of each method's continuous
            extension (cubic Hermite for euler, midpoint, rk4 and bosh3, the methods' own
            interpolants for dopri5 and tsit5), computed in the same sweep. Default: the step
            grid ``t_j = j dt`` for a fixed-step method, the piece boundaries ``k T / pieces``
            for an adaptive one (where every sample has an accepted step). With ``inputs > 0``
            the states at ``t`` on the step grid, which then also holds the times ``t``.
        u, times : array_like, optional
            ``inputs > 0`` only: the observed inputs and their times, as for ``forward``.

        Returns
        -------
        numpy.ndarray, shape (Q, N, D)
            The states, ``D = dim + augment``, in the model's dtype.

        Raises
        ------
        ValueError
            If ``t`` is not a sorted 1-d array of times in ``[0, T]``.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, T=1.0, pieces=4, method="dopri5", seed=0)
        >>> model.trajectory(np.ones((3, 2)), t=[0.0, 0.1, 0.5]).shape
        (3, 3, 2)
        """
        self._check_inputs(u, times)
        if self.inputs:
            return self._driven_trajectory(X, u, times, t)
        if t is None and not self.adaptive:
            return self._grid_trajectory(X)
        if t is None:
            t = (self.T * np.arange(self.pieces + 1)) / self.pieces
        times = as_float_array("t", t, np.dtype(np.float64))
        if times.ndim != 1:
            raise ValueError(f"t must be a 1-d array of times, got shape {times.shape}")
        args = self._adaptive_args()
        if not self.adaptive:
            args["substeps"] = self.substeps
        states, stats = _core.adaptive_solve(self._X(X), self._theta(), **args, t=times)
        self._record(stats)
        return states

    def loss_and_grad(
        self, X: ArrayLike, y: ArrayLike, *, u: ArrayLike | None = None,
        times: ArrayLike | None = None,
    ) -> tuple[float, dict[str, FloatArray]]:  # fmt: skip
        """Return the loss and its gradient in one call into the core.

        Parameters
        ----------
        X : array_like, shape (N, dim)
            The inputs.
        y : array_like, shape (N,) or (N, classes)
            Integer labels (cross-entropy) or float targets (``loss="mse"``).
        u : array_like, shape (N, L, inputs), optional
            ``inputs > 0`` only (then required): the observed inputs (NaN: missing, padding).
        times : array_like, shape (L,) or (N, L), optional
            ``inputs > 0`` only: their times (default ``0, 1, ..., L-1``).

        Returns
        -------
        loss : float
            The data loss plus the penalties (``weight_decay``, ``l1``).
        grads : dict of str to numpy.ndarray
            Same keys, shapes and dtype as ``params``: the exact gradient of the discretised
            loss (``gradient="discrete"``) or the adjoint's.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.NeuralODE(2, inputs=1, pieces=2, seed=0)
        >>> loss, grads = model.loss_and_grad(np.ones((3, 2)), [0, 1, 1], u=np.ones((3, 4, 1)))
        >>> grads["W"].shape
        (2, 2, 3)
        """
        self._check_inputs(u, times)
        if self.inputs:
            return self._driven_loss_and_grad(X, y, u, times)
        if not self.adaptive:
            return super().loss_and_grad(X, y)
        Xc = self._X(X)
        targets = self._targets(y, Xc.shape[0])
        loss, dtheta, dP, dc, stats = _core.adaptive_loss_and_grad(
            Xc,
            targets,
            self._theta(),
            self._param("P"),
            self._param("c"),
            **self._adaptive_args(),
            loss=self.loss,
            weight_decay=self.weight_decay,
            gradient=self.gradient,
            checkpoints=self.checkpoints or 0,
        )
        self._record(stats)
        grads = dict(zip(field_param_names(self.field), dtheta))
        grads.update(P=dP, c=dc)
        return float(loss), grads

    def _sweep_args(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "activation": self.activation,
            "method": self.method,
            "dt": self.dt,
            "substeps": self.substeps,
            "augment": self.augment,
        }

    def _gradient_args(self) -> dict[str, Any]:
        return {
            "turnpike": self.turnpike,
            "turnpike_weight": self.turnpike_weight,
            "gradient": self.gradient,
            "checkpoints": self.checkpoints or 0,
        }
