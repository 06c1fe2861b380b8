"""Learning-rate schedules: a multiplicative factor of the base learning rate per epoch
(:class:`StepLR`, :class:`CosineLR`), and :func:`schedule_from_config` to rebuild one."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from .._validation import int_at_least
from ._common import _as_float

__all__ = ["CosineLR", "Schedule", "StepLR", "schedule_from_config"]


class Schedule(ABC):
    """Learning-rate schedule: a multiplicative factor as a function of the epoch.

    Subclasses implement :meth:`factor` and :meth:`config`; calling the schedule is the
    same as calling :meth:`factor`.

    Examples
    --------
    >>> sched = StepLR(step_size=2, gamma=0.5)
    >>> [sched(e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    @abstractmethod
    def factor(self, epoch: int) -> float:
        """Return the learning-rate factor for ``epoch``.

        Parameters
        ----------
        epoch : int
            The number of finished epochs, ``>= 0``.

        Returns
        -------
        float
            The factor of the base learning rate.

        Raises
        ------
        ValueError
            If ``epoch`` is not an integer ``>= 0``.

        Examples
        --------
        >>> StepLR(step_size=2, gamma=0.5).factor(4)
        0.25
        """

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Return the JSON-serialisable constructor arguments plus ``"name"``.

        Returns
        -------
        dict of str to object
            The input of :func:`schedule_from_config`.

        Examples
        --------
        >>> CosineLR(total_epochs=10).config()
        {'name': 'CosineLR', 'total_epochs': 10, 'min_factor': 0.0}
        """

    def __call__(self, epoch: int) -> float:
        """Alias of :meth:`factor`."""
        return self.factor(epoch)

    def __eq__(self, other: object) -> bool:
        """Schedules are equal when their configs are."""
        return isinstance(other, Schedule) and self.config() == other.config()

    def __hash__(self) -> int:
        """Hash of the config (consistent with ``__eq__``)."""
        return hash(tuple(sorted(self.config().items())))

    def __repr__(self) -> str:
        """``Name(arg=value, ...)``."""
        cfg = self.config()
        name = cfg.pop("name")
        return f"{name}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


class StepLR(Schedule):
    """Step decay: factor ``gamma ** (epoch // step_size)``.

    Parameters
    ----------
    step_size : int
        Number of epochs between decays, ``>= 1``.
    gamma : float, default 0.1
        Multiplicative decay, ``> 0``.

    Raises
    ------
    ValueError
        On ``step_size < 1`` or ``gamma <= 0``.

    Examples
    --------
    >>> sched = StepLR(step_size=10, gamma=0.1)
    >>> sched(0), sched(9), sched(10), round(sched(25), 12)
    (1.0, 1.0, 0.1, 0.01)
    >>> sched.config()
    {'name': 'StepLR', 'step_size': 10, 'gamma': 0.1}
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = int_at_least("step_size", step_size, 1)
        self.gamma = _as_float("gamma", gamma)
        if self.gamma <= 0.0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")

    def factor(self, epoch: int) -> float:
        """Return ``gamma ** (epoch // step_size)``.

        Parameters
        ----------
        epoch : int
            The number of finished epochs, ``>= 0``.

        Returns
        -------
        float
            The factor of the base learning rate.

        Raises
        ------
        ValueError
            If ``epoch`` is not an integer ``>= 0``.

        Examples
        --------
        >>> StepLR(step_size=10, gamma=0.5).factor(25)
        0.25
        """
        epoch = int_at_least("epoch", epoch, 0)
        return float(self.gamma ** (epoch // self.step_size))

    def config(self) -> dict[str, Any]:
        """Return ``{"name": "StepLR", "step_size": ..., "gamma": ...}``.

        Returns
        -------
        dict of str to object
            The input of :func:`schedule_from_config`.

        Examples
        --------
        >>> StepLR(step_size=10).config()
        {'name': 'StepLR', 'step_size': 10, 'gamma': 0.1}
        """
        return {"name": "StepLR", "step_size": self.step_size, "gamma": self.gamma}


class CosineLR(Schedule):
    """Cosine annealing from 1 to ``min_factor`` over ``total_epochs`` epochs.

    The factor is ``min + (1 - min) * (1 + cos(pi * min(epoch, total) / total)) / 2``:
    1 at epoch 0, ``min_factor`` from epoch ``total_epochs`` on.

    Parameters
    ----------
    total_epochs : int
        Length of the annealing, ``>= 1``.
    min_factor : float, default 0.0
        Final factor, in ``[0, 1]``.

    Raises
    ------
    ValueError
        On ``total_epochs < 1`` or ``min_factor`` outside ``[0, 1]``.

    Examples
    --------
    >>> sched = CosineLR(total_epochs=10, min_factor=0.1)
    >>> sched(0), round(sched(5), 12), round(sched(10), 12), round(sched(99), 12)
    (1.0, 0.55, 0.1, 0.1)
    """

    def __init__(self, total_epochs: int, min_factor: float = 0.0) -> None:
        self.total_epochs = int_at_least("total_epochs", total_epochs, 1)
        self.min_factor = _as_float("min_factor", min_factor)
        if not 0.0 <= self.min_factor <= 1.0:
            raise ValueError(f"min_factor must be in [0, 1], got {min_factor!r}")

    def factor(self, epoch: int) -> float:
        """Return the cosine factor for ``epoch`` (clamped at ``total_epochs``).

        Parameters
        ----------
        epoch : int
            The number of finished epochs, ``>= 0``.

        Returns
        -------
        float
            The factor of the base learning rate, from 1 down to ``min_factor``.

        Raises
        ------
        ValueError
            If ``epoch`` is not an integer ``>= 0``.

        Examples
        --------
        >>> CosineLR(total_epochs=4).factor(2)
        0.5
        """
        epoch = int_at_least("epoch", epoch, 0)
        t = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_factor + (1.0 - self.min_factor) * (1.0 + math.cos(math.pi * t)) / 2.0

    def config(self) -> dict[str, Any]:
        """Return ``{"name": "CosineLR", "total_epochs": ..., "min_factor": ...}``.

        Returns
        -------
        dict of str to object
            The input of :func:`schedule_from_config`.

        Examples
        --------
        >>> CosineLR(total_epochs=10, min_factor=0.1).config()
        {'name': 'CosineLR', 'total_epochs': 10, 'min_factor': 0.1}
        """
        return {
            "name": "CosineLR",
            "total_epochs": self.total_epochs,
            "min_factor": self.min_factor,
        }


_SCHEDULES: dict[str, type[Schedule]] = {"StepLR": StepLR, "CosineLR": CosineLR}


def schedule_from_config(cfg: Mapping[str, Any] | None) -> Schedule | None:
    """Rebuild a schedule from :meth:`Schedule.config` output (``None`` -> ``None``).

    Parameters
    ----------
    cfg : mapping or None
        ``{"name": "StepLR" | "CosineLR", **constructor_args}``.

    Returns
    -------
    Schedule or None
        A new :class:`StepLR` or :class:`CosineLR`; None for ``cfg=None``.

    Raises
    ------
    ValueError
        On an unknown or missing ``"name"`` or bad constructor arguments.

    Examples
    --------
    >>> schedule_from_config({"name": "StepLR", "step_size": 5, "gamma": 0.5})
    StepLR(step_size=5, gamma=0.5)
    """
    if cfg is None:
        return None
    args = dict(cfg)
    name = args.pop("name", None)
    if name not in _SCHEDULES:
        raise ValueError(f"schedule name must be one of {sorted(_SCHEDULES)}, got {name!r}")
    try:
        return _SCHEDULES[name](**args)
    except TypeError as exc:
        raise ValueError(f"bad schedule config {dict(cfg)!r}: {exc}") from None
