"""Callbacks of :func:`resode.fit`: how one is called, and :class:`EarlyStopping`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union

import numpy as np

__all__ = ["Callback", "EarlyStopping", "call_callback", "split_callbacks"]

Callback = Union[Callable[[int, dict[str, Any], Any], Any], Any]
"""A callable ``f(epoch, logs, model)`` or an object with ``on_epoch_end(epoch, logs, model)``."""


class EarlyStopping:
    """Stop training when a monitored column has not improved for ``patience`` epochs.

    It keeps the parameters of the best epoch (the conventions of Keras' ``EarlyStopping``
    with ``restore_best_weights`` and scikit-learn's ``n_iter_no_change``/``tol``).

    Pass it as ``fit(..., early_stopping=EarlyStopping(...))`` (or in ``callbacks``, where
    it acts the same). Every epoch whose ``monitor`` value beats the best so far by more than
    ``min_delta`` is the new best; after ``patience`` epochs without one, training stops.
    With ``restore_best`` the model ends with the parameters of the best epoch, whether
    training stopped early or ran all its epochs. ``history.best_epoch`` records that epoch;
    checkpoints keep it and the best parameters, so a resumed run ends as an uninterrupted
    one.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A :class:`History` column: ``"val_loss"``, ``"loss"``, ``"val_accuracy"``,
        ``"val_r2"``, ``"accuracy"``, ``"r2"`` (``val_*`` needs ``validation_data``).
    patience : int, default 10
        Epochs without improvement before stopping (>= 0).
    min_delta : float, default 0.0
        Smallest change that counts as an improvement (>= 0).
    mode : {"min", "max"} or None
        Whether smaller or larger is better; ``None`` picks ``"max"`` for accuracies and R^2.
    restore_best : bool, default True
        End with the parameters of the best epoch (else those of the last).

    Attributes
    ----------
    best : float
        The best monitored value so far.
    best_epoch : int or None
        Its epoch (counted from 1).
    wait : int
        Epochs since then.
    stopped : bool
        Whether the last epoch seen asked to stop.
    best_params : dict or None
        Copies of the parameters of the best epoch (with ``restore_best``, during ``fit``).

    Raises
    ------
    TypeError
        If ``monitor`` is not a str, ``patience`` not an int, ``min_delta`` not a number or
        ``restore_best`` not a bool.
    ValueError
        If ``mode`` is not ``"min"``, ``"max"`` or None, ``patience < 0`` or ``min_delta``
        is negative or not finite.

    Examples
    --------
    >>> stop = EarlyStopping("loss", patience=2)
    >>> [stop(e, {"loss": v}, None) for e, v in enumerate([1.0, 0.5, 0.6, 0.7], start=1)]
    [False, False, False, True]
    >>> stop.best_epoch
    2
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        mode: Literal["min", "max"] | None = None,
        *,
        restore_best: bool = True,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a history column name, got {monitor!r}")
        if mode is None:
            mode = "max" if "accuracy" in monitor or "r2" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)):
            raise TypeError(f"patience must be an int >= 0, got {patience!r}")
        if patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.floating)):
            raise TypeError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be finite and >= 0, got {min_delta!r}")
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        self.monitor, self.patience, self.min_delta, self.mode = (
            monitor, int(patience), float(min_delta), mode
        )  # fmt: skip
        self.restore_best = bool(restore_best)
        self.reset()

    def reset(self) -> None:
        """Forget the epochs seen (:func:`resode.fit` calls it when training starts).

        Examples
        --------
        >>> stop = EarlyStopping("loss", patience=0)
        >>> stop(1, {"loss": 1.0}, None), stop(2, {"loss": 2.0}, None)
        (False, True)
        >>> stop.reset()
        >>> stop.best_epoch is None, stop.stopped
        (True, False)
        """
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_params: dict[str, np.ndarray] | None = None
        #: Whether the last epoch seen asked to stop.
        self.stopped = False

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable).

        Returns
        -------
        dict of str to object
            ``monitor``, ``patience``, ``min_delta``, ``mode`` and ``restore_best``.

        Examples
        --------
        >>> EarlyStopping("val_accuracy", patience=3).config()["mode"]
        'max'
        """
        return {
            "monitor": self.monitor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "mode": self.mode,
            "restore_best": self.restore_best,
        }

    def improves(self, value: float) -> bool:
        """Tell whether ``value`` beats the best so far by more than ``min_delta``.

        Parameters
        ----------
        value : float
            A value of the monitored column.

        Returns
        -------
        bool
            True for a new best epoch.

        Examples
        --------
        >>> stop = EarlyStopping("loss", min_delta=0.1)
        >>> stop(1, {"loss": 1.0}, None)
        False
        >>> stop.improves(0.95), stop.improves(0.8)
        (False, True)
        """
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def __call__(self, epoch: int, logs: Mapping[str, float], model: Any) -> bool:
        """Record one epoch's row and tell whether training should stop.

        With a model and ``restore_best``, a new best epoch's parameters are copied.

        Parameters
        ----------
        epoch : int
            The epoch, counted from 1.
        logs : mapping of str to float
            The epoch's :class:`History` row; it must hold the ``monitor`` column.
        model : Model or None
            The model being trained (None: no parameters are kept).

        Returns
        -------
        bool
            True when ``patience`` epochs have passed without improvement.

        Raises
        ------
        KeyError
            If ``logs`` has no ``monitor`` column.

        Examples
        --------
        >>> stop = EarlyStopping("loss", patience=1)
        >>> stop.on_epoch_end(1, {"loss": 1.0}, None), stop.on_epoch_end(2, {"loss": 1.5}, None)
        (False, True)
        """
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, not in {sorted(logs)}")
        value = logs[self.monitor]
        if self.improves(value):
            self.best, self.best_epoch, self.wait = value, int(epoch), 0
            if model is not None and self.restore_best:
                self.best_params = {k: np.array(v, copy=True) for k, v in model.params.items()}
            self.stopped = False
        else:
            self.wait += 1
            self.stopped = self.wait >= self.patience
        return self.stopped

    on_epoch_end = __call__

    def replay(self, column: Sequence[float], epochs: Sequence[int]) -> None:
        """Start over and see the values ``column`` of ``epochs``, without parameters.

        This is the state an uninterrupted run had at its last epoch (for a resumed history).

        Parameters
        ----------
        column : sequence of float
            The monitored column's values, one per epoch.
        epochs : sequence of int
            Their epochs, counted from 1.

        Examples
        --------
        >>> stop = EarlyStopping("loss", patience=5)
        >>> stop.replay([1.0, 0.5, 0.7], [1, 2, 3])
        >>> stop.best_epoch, stop.wait
        (2, 1)
        """
        self.reset()
        for epoch, value in zip(epochs, column):
            self(epoch, {self.monitor: value}, None)

    def restore(self, model: Any) -> None:
        """Put the best epoch's parameters back into ``model`` (in place), if kept.

        Parameters
        ----------
        model : Model
            The model whose ``params`` are overwritten.

        Examples
        --------
        >>> import numpy as np, resode
        >>> model = resode.ResNet(2, layers=2, seed=0)
        >>> stop = EarlyStopping("loss")
        >>> stop(1, {"loss": 1.0}, model)
        False
        >>> best = model.params["W"].copy()
        >>> model.params["W"][...] = 0.0
        >>> stop.restore(model)
        >>> bool(np.array_equal(model.params["W"], best))
        True
        """
        if self.restore_best and self.best_params is not None:
            for name, value in self.best_params.items():
                model.params[name][...] = value


def split_callbacks(
    callbacks: Iterable[Callback], early_stopping: EarlyStopping | None
) -> tuple[list[Callback], EarlyStopping | None]:
    """The callbacks other than early stopping, checked, and the one :class:`EarlyStopping`
    (from ``early_stopping=`` or from the callbacks; ValueError for two)."""
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            f"early_stopping must be a resode.training.EarlyStopping or None, got "
            f"{early_stopping!r}"
        )
    others, stoppers = [], [] if early_stopping is None else [early_stopping]
    for cb in callbacks:
        if isinstance(cb, EarlyStopping):
            stoppers.append(cb)
        elif not callable(cb) and not callable(getattr(cb, "on_epoch_end", None)):
            raise TypeError(f"callback {cb!r} is neither callable nor has on_epoch_end")
        else:
            others.append(cb)
    if len(stoppers) > 1:
        raise ValueError("give one EarlyStopping (early_stopping= or in callbacks), not several")
    return others, (stoppers[0] if stoppers else None)


def call_callback(cb: Any, epoch: int, logs: dict[str, float], model: Any) -> bool:
    """Run one callback; True when it asks to stop (returns True or raises StopIteration)."""
    fn = getattr(cb, "on_epoch_end", None)
    if fn is None:
        if not callable(cb):
            raise TypeError(f"callback {cb!r} is neither callable nor has on_epoch_end")
        fn = cb
    try:
        return fn(epoch, dict(logs), model) is True
    except StopIteration:
        return True
