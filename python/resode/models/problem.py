"""The arguments of one call into the core, as a model prepares them for its data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .._typing import FloatArray, IntArray

__all__ = ["Problem"]


@dataclass(frozen=True, eq=False)
class Problem:
    """What :meth:`resode.models.Model.problem` returns: the data of one call into the core,
    checked and converted, and the keyword arguments the core's sweeps take for the model.

    Attributes
    ----------
    X : numpy.ndarray
        The features, ``(N, dim)``, C-contiguous, of the model's dtype; for a
        :class:`resode.NeuralCDE` the series ``U`` ``(N, L, channels)`` (NaN marks missing
        values and the padding of shorter series).
    targets : numpy.ndarray or None
        What the core's losses take: int64 labels ``(N,)`` for cross-entropy, float targets
        ``(N, classes)`` of the model's dtype otherwise; None when no ``y`` was given.
    flat_targets : bool
        Whether ``y`` was a regression target of shape ``(N,)`` (the model then predicts
        ``(N,)``).
    core_args : dict
        The keyword arguments of the core's sweep, loss and gradient for this model
        (``field``, ``activation``, ``method``, ``dt``, ``substeps``, ``augment``, the loss
        terms and the gradient options) for the fixed-step sweeps (``_core.logits``,
        ``trajectory``, ``loss_and_grad``, ``train_epoch``); an adaptive NeuralODE runs its
        own sweeps (its ``forward``, ``trajectory`` and ``loss_and_grad``); for a
        :class:`resode.NeuralCDE` the options of the core's ``cde_*`` functions.
    times : numpy.ndarray or None
        The observation times of a :class:`resode.NeuralCDE`'s series or of a
        :class:`resode.NeuralODE`'s inputs ``u``, float64, ``(L,)`` shared or ``(N, L)`` per
        sample; None for the models of points without inputs.
    u : numpy.ndarray or None
        The inputs of a :class:`resode.NeuralODE` with ``inputs > 0``, ``(N, L, inputs)`` of
        the model's dtype (NaN: missing values and padding), observed at ``times``; None
        otherwise.

    Compared by identity (its arrays have no single truth value).
    """

    X: FloatArray
    targets: FloatArray | IntArray | None
    flat_targets: bool
    core_args: dict[str, Any] = field(default_factory=dict)
    times: FloatArray | None = None
    u: FloatArray | None = None

    def rows(self, rows: IntArray) -> Problem:
        """The problem of the samples ``rows`` (an index array): their data, targets, inputs
        ``u`` and (per sample) times; shared times stay shared."""
        times = self.times
        if times is not None and times.ndim == 2:
            times = times[rows]
        targets = None if self.targets is None else self.targets[rows]
        u = None if self.u is None else self.u[rows]
        return replace(self, X=self.X[rows], targets=targets, times=times, u=u)

    def inputs(self) -> dict[str, Any]:
        """The keyword arguments besides the data that the model's ``forward``, ``score`` and
        ``loss_and_grad`` take for this problem: ``{"u": u, "times": times}`` for a neural ODE
        with inputs, ``{"times": times}`` for a series (a neural CDE), otherwise ``{}``."""
        if self.u is not None:
            return {"u": self.u, "times": self.times}
        return {} if self.times is None else {"times": self.times}

    def require_targets(self) -> FloatArray | IntArray:
        """The targets of a problem built with ``y``.

        Returns
        -------
        numpy.ndarray
            :attr:`targets`: int64 labels ``(N,)`` or float targets ``(N, classes)``.

        Raises
        ------
        ValueError
            If the problem was built without ``y`` (``targets`` is None).
        """
        if self.targets is None:
            raise ValueError("this problem has no targets (Model.problem was called without y)")
        return self.targets
