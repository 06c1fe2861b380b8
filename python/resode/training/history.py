"""The per-epoch record of a training run: :class:`History`."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

__all__ = ["HISTORY_KEYS", "History"]

PathLike = Union[str, "os.PathLike[str]"]

HISTORY_KEYS = (
    "epoch",
    "loss",
    "accuracy",
    "r2",
    "val_loss",
    "val_accuracy",
    "val_r2",
    "grad_norm",
    "lr",
    "time",
)
"""Columns of a :class:`History`, in CSV order (``accuracy`` for classification, ``r2`` for
regression; ``val_*`` only with validation data)."""


class History:
    """Per-epoch training record returned by :func:`fit`.

    Columns (each a list with one float per epoch; ``epoch`` holds ints):

    ``epoch``
        Epoch number, counted from 1.
    ``loss``
        Mean training loss over the epoch's mini-batches, weighted by batch size, as the
        optimiser saw it (before each step; includes weight decay, and is the turnpike loss
        when the model uses ``turnpike``).
    ``accuracy`` (classification) or ``r2`` (regression, ``loss="mse"``)
        Accuracy, or the coefficient of determination R^2, on the training data. By default
        (``fit(train_metrics="batches")``, as Keras and scikit-learn's ``loss_curve_``) from
        the predictions of the epoch's batches, each with the parameters its batch ran with
        (no extra sweep); with ``train_metrics="exact"`` the model's ``score`` with the
        parameters at the end of the epoch (one extra forward sweep). See :func:`fit`.
    ``val_loss``, ``val_accuracy`` / ``val_r2``
        Loss and score on ``validation_data`` with the parameters at the end of the epoch
        (only when given).
    ``grad_norm``
        Mean over the epoch's mini-batches of the Euclidean norm of the gradient of the
        trained parameters (all arrays together; without ``P``, ``c`` under
        ``fixed_projection``).
    ``lr``
        Learning rate used in the epoch.
    ``time``
        Wall-clock seconds since training started, at the end of the epoch (continues across
        a resumed checkpoint).

    ``accuracy`` also appears beside ``r2`` for a 1-output model whose targets are all -1 or
    +1 (the sign agreement, the model's ``sign_accuracy``), and ``val_accuracy``
    beside ``val_r2`` when the validation targets are too.

    Columns are available as attributes (``history.loss``) and items (``history["loss"]``);
    the ``val_*`` columns read as empty lists when there was no validation data.

    ``best_epoch`` (an int, not a column) is the epoch whose parameters early stopping keeps
    (:class:`EarlyStopping`), None without early stopping; it is saved in the JSON form
    (:meth:`to_jsonable`, ``history.json``) and in checkpoints, not in :meth:`to_dict` or the
    CSV table.

    Examples
    --------
    >>> h = History()
    >>> h.append({"epoch": 1, "loss": 0.7, "accuracy": 0.5, "grad_norm": 1.0, "lr": 0.01,
    ...           "time": 0.1})
    >>> h.loss, len(h)
    ([0.7], 1)
    >>> History.from_dict(h.to_dict()).to_dict() == h.to_dict()
    True
    """

    def __init__(self) -> None:
        self._data: dict[str, list[float]] = {}
        # fit(record=...): {"epoch": [e, ...], "states": [(M, D) arrays], "X": (M, dim),
        # "y": the M labels or targets}; not part of the table (to_dict, JSON, CSV).
        self.features: dict[str, Any] | None = None
        #: The best epoch under early stopping (counted from 1), or None.
        self.best_epoch: int | None = None

    # -- building -------------------------------------------------------------------------
    def append(self, row: Mapping[str, float]) -> None:
        """Add one epoch's row (the same keys every time).

        Parameters
        ----------
        row : mapping of str to float
            The epoch's value of each column (``epoch`` an int).

        Raises
        ------
        ValueError
            If the row's keys differ from those of the rows before.

        Examples
        --------
        >>> h = History()
        >>> h.append({"epoch": 1, "loss": 0.7, "lr": 0.01})
        >>> h.append({"epoch": 2, "loss": 0.5, "lr": 0.01})
        >>> h.loss
        [0.7, 0.5]
        """
        if self._data and set(row) != set(self._data):
            raise ValueError(f"row keys {sorted(row)} differ from history keys {self.keys()}")
        for key in self._order(row):
            self._data.setdefault(key, []).append(row[key])

    @staticmethod
    def _order(keys: Iterable[str]) -> list[str]:
        keys = list(keys)
        known = [k for k in HISTORY_KEYS if k in keys]
        return known + sorted(k for k in keys if k not in HISTORY_KEYS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a history from :meth:`to_dict` or :meth:`to_jsonable` output.

        A JSON round trip's ``None`` values read back as NaN; ``best_epoch`` is kept.

        Parameters
        ----------
        data : mapping of str to object
            Columns (lists of equal length) and, optionally, ``"best_epoch"``.

        Returns
        -------
        History
            A new history with those columns.

        Raises
        ------
        ValueError
            If the columns differ in length or hold non-numbers, or ``best_epoch`` is not a
            positive int (or None).

        Examples
        --------
        >>> h = History.from_dict({"epoch": [1, 2], "loss": [0.7, None], "best_epoch": 1})
        >>> h.loss, h.best_epoch
        ([0.7, nan], 1)
        """
        h = cls()
        data = dict(data)
        best = data.pop("best_epoch", None)
        if best is not None and (isinstance(best, bool) or not isinstance(best, int) or best < 1):
            raise ValueError(f"history best_epoch must be an int >= 1 or null, got {best!r}")
        h.best_epoch = best
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise ValueError(f"history columns differ in length: {sorted(lengths)}")
        for key in cls._order(data):
            values = [math.nan if v is None and key != "epoch" else v for v in data[key]]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ValueError(f"history column {key!r} must hold numbers")
            h._data[key] = (
                [int(v) for v in values] if key == "epoch" else [float(v) for v in values]
            )
        return h

    # -- access ---------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Return the column names, in :data:`HISTORY_KEYS` order.

        Returns
        -------
        list of str
            The columns recorded.

        Examples
        --------
        >>> History.from_dict({"loss": [0.7], "epoch": [1]}).keys()
        ['epoch', 'loss']
        """
        return list(self._data)

    def __getitem__(self, key: str) -> list[float]:
        return self._data[key]

    def __getattr__(self, key: str) -> list[float]:
        data = self.__dict__.get("_data", {})
        if key in data:
            column: list[float] = data[key]
            return column
        if key in HISTORY_KEYS:
            return []
        raise AttributeError(f"History has no column {key!r} (columns: {list(data)})")

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data.get("epoch", []))

    def __repr__(self) -> str:
        if not len(self):
            return "History(epochs=0)"
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self._data.items() if k != "epoch")
        return f"History(epochs={len(self)}, last: {last})"

    # -- export ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, list[float]]:
        """Return the columns as a dict of new lists.

        Returns
        -------
        dict of str to list of float
            One list per column (``epoch`` holds ints); ``best_epoch`` is not included.

        Examples
        --------
        >>> h = History()
        >>> h.append({"epoch": 1, "loss": 0.7, "lr": 0.01})
        >>> h.to_dict()
        {'epoch': [1], 'loss': [0.7], 'lr': [0.01]}
        """
        return {k: list(v) for k, v in self._data.items()}

    def to_jsonable(self) -> dict[str, Any]:
        """Return :meth:`to_dict` with non-finite values as ``None``, and ``"best_epoch"`` when set.

        Strict JSON has no NaN or infinity (e.g. of an overflowing gradient norm);
        :meth:`from_dict` reads the ``None`` values back as NaN.

        Returns
        -------
        dict of str to object
            The columns and, when set, ``"best_epoch"``.

        Examples
        --------
        >>> h = History.from_dict({"epoch": [1], "grad_norm": [float("inf")]})
        >>> h.to_jsonable()
        {'epoch': [1], 'grad_norm': [None]}
        """
        out: dict[str, Any] = {
            k: [x if math.isfinite(x) else None for x in v] for k, v in self._data.items()
        }
        if self.best_epoch is not None:
            out["best_epoch"] = self.best_epoch
        return out

    def to_json(self, path: PathLike) -> Path:
        r"""Write :meth:`to_jsonable` as a JSON object to ``path`` (atomically).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
            The file written.

        Examples
        --------
        >>> h = History()
        >>> h.append({"epoch": 1, "loss": 0.7, "lr": 0.01})
        >>> path = h.to_json("history.json")
        >>> path.read_text()
        '{"epoch": [1], "loss": [0.7], "lr": [0.01]}\n'
        """
        from ..io import write_text

        path = Path(os.fspath(path))
        write_text(path, json.dumps(self.to_jsonable(), allow_nan=False) + "\n")
        return path

    def to_csv(self, path: PathLike) -> Path:
        """Write one header row (column names) and one row per epoch to ``path`` (atomically).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
            The file written.

        Examples
        --------
        >>> h = History()
        >>> h.append({"epoch": 1, "loss": 0.7, "lr": 0.01})
        >>> print(h.to_csv("history.csv").read_text(), end="")
        epoch,loss,lr
        1,0.7,0.01
        """
        from ..io import write_text

        path = Path(os.fspath(path))
        keys = self.keys()
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(keys)
        for i in range(len(self)):
            writer.writerow([repr(self._data[k][i]) for k in keys])
        write_text(path, text.getvalue())  # atomic: a reader never sees a partial table
        return path
