"""Users' time-series files for the neural CDE (``resode train --model cde``): an ``.npz``
with arrays ``U`` (N, L, C), optional ``times`` (L,) or (N, L) and ``y``, or a long-format CSV
with one row per observation (an id column, a time column, channel columns and a target).

The input-driven neural ODE (``resode train --model node`` on such a file) reads an ``.npz``
that also holds ``X`` (N, dim), the initial states (:func:`read_driven`), or a long-format CSV
whose static columns (one value per series) give ``X`` (:func:`read_driven_csv`)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .data_files import (
    TASKS,
    Column,
    PathLike,
    cell_value,
    check_targets,
    column_index,
    csv_rows,
    is_header,
    is_number,
)

__all__ = ["DrivenFile", "SeriesFile", "holds_inputs", "read_driven", "read_driven_csv",
           "read_series"]  # fmt: skip


class SeriesFile(NamedTuple):
    """What :func:`read_series` returns: ``U`` (N, L, channels) float64, NaN for missing
    values and padding; ``times`` (L,) or (N, L) (NaN on padding) or None for the
    observation index; ``y`` (N,) or None; the channel and target names (None unknown)."""

    U: np.ndarray
    times: np.ndarray | None
    y: np.ndarray | None
    channel_names: list[str] | None
    target_name: str | None


def read_series(
    path: PathLike,
    *,
    id: Column | None = None,
    time: Column | None = None,
    target: Column | None = None,
    features: Sequence[Column] | None = None,
    task: str = "classification",
    require_target: bool = True,
    min_classes: int = 2,
    any_labels: bool = False,
) -> SeriesFile:
    """Read a panel of time series (for :class:`resode.NeuralCDE`) from a ``.npz`` or ``.csv``.

    ``.npz``: arrays ``U`` ``(N, L, channels)`` (NaN for missing values and for the padding
    of shorter series at their end), optionally ``times`` ``(L,)`` or ``(N, L)``, and ``y``
    ``(N,)``. ``.csv``: long format, one row per observation: the series' ``id`` column, an
    optional ``time`` column (default: the row order within each series), the channel columns
    (``features``; default every other column) and the ``target`` column (default: the last
    other column), whose value is the same on every row of a series (empty cells allowed). An
    empty channel cell is a missing value. Rows are sorted by time within each series; the
    series keep the order of their first rows.

    Parameters
    ----------
    path : str or os.PathLike
    id, time : str or int, optional
        CSV only: the columns, by header name or 0-based index; ``id`` is required there.
    target, features, task, require_target, min_classes, any_labels
        As for :func:`read` (``features`` of a ``.npz``: indices of ``U``'s channels).

    Returns
    -------
    SeriesFile

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        One line naming the file (and for CSV the line and column): an unknown extension,
        missing arrays or columns, bad shapes, non-numeric values, Inf, repeated times within
        a series, a target that changes within a series, bad labels.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "long.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id,t,x,label\\na,0,1.0,0\\na,1,2.0,0\\nb,0,,1\\nb,2,5.0,1\\nb,3,6.0,1\\n")
    >>> data = read_series(path, id="id", time="t")
    >>> data.U.shape, data.y.tolist(), data.times[0].tolist()
    ((2, 3, 1), [0, 1], [0.0, 1.0, nan])
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        for name, value in (("id", id), ("time", time), ("target", target)):
            if value is not None:
                raise ValueError(f"{p}: {name} applies to long-format .csv files, not .npz")
        U, times, y = _read_series_npz(p, features, require_target)
        names: _Names = (None, None)
    elif suffix == ".csv":
        if id is None:
            raise ValueError(f"{p}: a long-format .csv of series needs its id column (--id)")
        text_labels = any_labels and task == "classification"
        U, times, y, names = _read_long_csv(p, id, time, target, features,
                                            require_target, text_labels)  # fmt: skip
    else:
        raise ValueError(
            f"{p}: unknown data format {suffix or '(no extension)'!r}; use .npz or .csv"
        )
    if np.isinf(U).any():
        raise ValueError(f"{p}: the series hold Inf (NaN marks a missing value)")
    if y is None:
        return SeriesFile(U, times, None, names[0], None)
    return SeriesFile(U, times, check_targets(p, y, task, min_classes, any_labels), *names)


_Names = tuple[Optional[list[str]], Optional[str]]  # the channels' and the target's names


def _read_series_npz(
    p: Path, features: Sequence[Column] | None, require_target: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in ("U", "times", "y") if k in data.files}
    except (OSError, EOFError, TypeError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{p}: not a readable .npz archive ({exc})") from None
    if "U" not in arrays:
        hint = " (X holds points: use --model node or resnet)" if "X" in arrays else ""
        raise ValueError(f"{p}: a .npz file of series needs an array 'U' (N, L, channels){hint}")
    if any(a.dtype.kind not in "biuf" for a in arrays.values()):
        raise ValueError(f"{p}: U, times and y must be numeric arrays")
    U = arrays["U"].astype(np.float64)
    if U.ndim != 3 or min(U.shape) < 1:
        raise ValueError(f"{p}: U must have shape (N, L, channels), got {U.shape}")
    if features is not None:
        U = U[:, :, [column_index(p, c, None, U.shape[2]) for c in features]]
    times = arrays.get("times")
    if times is not None:
        times = times.astype(np.float64)
        if times.shape not in ((U.shape[1],), U.shape[:2]):
            raise ValueError(
                f"{p}: times must have shape ({U.shape[1]},) or {U.shape[:2]} like U's "
                f"observations, got {times.shape}"
            )
    y = arrays.get("y")
    if y is None and require_target:
        raise ValueError(f"{p}: a .npz file of series needs an array 'y' (N,) of targets")
    if y is not None and y.shape != (U.shape[0],):
        raise ValueError(f"{p}: y must have shape ({U.shape[0]},) like U's series, got {y.shape}")
    return np.ascontiguousarray(U), times, None if y is None else y.astype(np.float64)


def _read_long_csv(
    p: Path, id: Column, time: Column | None, target: Column | None,
    features: Sequence[Column] | None, require_target: bool, text_labels: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, _Names]:  # fmt: skip
    rows = csv_rows(p)
    header = [cell.strip() for cell in rows[0][1]] if is_header(rows, True) else None
    rows = rows[1:] if header is not None else rows
    if not rows:
        raise ValueError(f"{p}: no observations (only a header)")
    width = len(header) if header is not None else len(rows[0][1])
    i = column_index(p, id, header, width)
    k = None if time is None else column_index(p, time, header, width)
    used = {i} if k is None else {i, k}
    t = None
    if require_target or target is not None:
        default = max(c for c in range(width) if c not in used)
        t = column_index(p, target if target is not None else default, header, width)
    if features is None:
        channels = [c for c in range(width) if c not in used and c != t]
    else:
        channels = [column_index(p, c, header, width) for c in features]
    if not channels or used & set(channels) or (t is not None and t in channels):
        raise ValueError(f"{p}: the channel columns must differ from the id, time and target")
    groups: dict[str, list[tuple[int, list[str]]]] = {}
    for line, row in rows:
        if len(row) != width:
            raise ValueError(f"{p}, line {line}: {len(row)} columns, expected {width}")
        groups.setdefault(row[i].strip(), []).append((line, row))
    length = max(len(g) for g in groups.values())
    U = np.full((len(groups), length, len(channels)), np.nan)
    times = None if k is None else np.full((len(groups), length), np.nan)
    labels: list[str] = []
    for n, (name, group) in enumerate(groups.items()):
        if k is not None:
            stamps = [cell_value(p, line, k, row[k], header) for line, row in group]
            order = np.argsort(stamps, kind="stable")
            group = [group[j] for j in order]
            sorted_times = np.asarray(stamps)[order]
            if np.any(np.diff(sorted_times) <= 0):
                raise ValueError(f"{p}: series {name!r} has two rows at the same time")
            times[n, : len(group)] = sorted_times  # type: ignore[index]
        for r, (line, row) in enumerate(group):
            for c, col in enumerate(channels):
                if row[col].strip():
                    U[n, r, c] = cell_value(p, line, col, row[col], header)
        if t is not None:
            labels.append(_series_target(p, name, group, t))
    y = None
    if t is not None:
        y = np.array(labels, dtype=str)
        if not text_labels or all(is_number(v) for v in labels):
            if not all(is_number(v) for v in labels):
                raise ValueError(f"{p}: the target column holds text; it must hold numbers")
            y = y.astype(np.float64)
    names = (None, None) if header is None else (
        [header[c] for c in channels], None if t is None else header[t])  # fmt: skip
    return U, times, y, names


def _series_target(p: Path, name: str, group: list[tuple[int, list[str]]], t: int) -> str:
    """The target of one series: the same value on each of its rows (empty cells aside)."""
    values = {row[t].strip() for _, row in group} - {""}
    if len(values) != 1:
        what = "no target value" if not values else f"several target values {sorted(values)}"
        raise ValueError(f"{p}: series {name!r} has {what} (one per series)")
    return values.pop()


# --------------------------------------------------------------------------- driven ODE


class DrivenFile(NamedTuple):
    """What :func:`read_driven` returns: ``X`` (N, dim) float64, the initial states; ``U``
    (N, L, inputs) float64, NaN for missing values and padding; ``times`` (L,) or (N, L) or
    None for the observation index; ``y`` (N,) or None; a CSV header's names of ``X``'s
    columns, of ``U``'s channels and of the target (None unknown)."""

    X: np.ndarray
    U: np.ndarray
    times: np.ndarray | None
    y: np.ndarray | None
    feature_names: list[str] | None = None
    channel_names: list[str] | None = None
    target_name: str | None = None


def holds_inputs(path: PathLike) -> bool:
    """Tell whether ``path`` is a ``.npz`` file with arrays ``X`` and ``U``: the data of a
    :class:`resode.NeuralODE` with inputs (False for any other or unreadable file)."""
    p = Path(os.fspath(path))
    if p.suffix.lower() != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p, allow_pickle=False) as data:
            return {"X", "U"} <= set(data.files)
    except (OSError, EOFError, TypeError, ValueError, zipfile.BadZipFile):
        return False


def read_driven(
    path: PathLike,
    *,
    features: Sequence[Column] | None = None,
    task: str = "classification",
    require_target: bool = True,
    min_classes: int = 2,
    any_labels: bool = False,
) -> DrivenFile:
    """Read the data of a neural ODE with inputs (``NeuralODE(dim, inputs=C)``) from a ``.npz``.

    The file holds ``X`` ``(N, dim)`` (the initial states: finite numbers), ``U``
    ``(N, L, C)`` (the inputs ``u(t)``: NaN for missing values and for the padding of shorter
    series at their end), optionally ``times`` ``(L,)`` or ``(N, L)``, and ``y`` ``(N,)``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.
    features : sequence of int, optional
        Indices of ``X``'s columns to keep (default: all).
    task, require_target, min_classes, any_labels
        As for :func:`resode.data_files.read`.

    Returns
    -------
    DrivenFile
        ``X``, ``U``, ``times`` (None: the observation index) and ``y`` (None without).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        One line naming the file: not a ``.npz``, a missing ``X`` or ``U``, bad shapes
        (``X``'s rows must be ``U``'s series), non-finite ``X``, Inf in ``U``, bad labels.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "driven.npz")
    >>> np.savez(path, X=np.zeros((2, 3)), U=np.ones((2, 5, 1)), y=[0, 1])
    >>> data = read_driven(path)
    >>> data.X.shape, data.U.shape, data.times, data.y.tolist()
    ((2, 3), (2, 5, 1), None, [0, 1])
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.suffix.lower() != ".npz":
        raise ValueError(f"{p}: the inputs of a neural ODE come in a .npz file (X, U, times, y)")
    U, times, y = _read_series_npz(p, None, require_target)
    X = _initial_states(p, U.shape[0], features)
    if np.isinf(U).any():
        raise ValueError(f"{p}: U holds Inf (NaN marks a missing value)")
    if y is not None:
        y = check_targets(p, y, task, min_classes, any_labels)
    return DrivenFile(X, U, times, y)


def _initial_states(p: Path, n: int, features: Sequence[Column] | None) -> np.ndarray:
    """``X`` (n, dim) of a driven .npz: numeric, finite, one row per series of ``U``."""
    with np.load(p, allow_pickle=False) as data:
        if "X" not in data.files:
            raise ValueError(f"{p}: a .npz file of a neural ODE with inputs needs an array 'X'")
        X = np.asarray(data["X"])
    if X.dtype.kind not in "biuf" or X.ndim != 2 or X.shape[0] != n or X.shape[1] == 0:
        raise ValueError(
            f"{p}: X must be a numeric array (N, dim) with one row per series of U "
            f"(N = {n}), got {X.dtype} {X.shape}"
        )
    if features is not None:
        X = X[:, [column_index(p, c, None, X.shape[1]) for c in features]]
    if not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{p}: X[{row}, {col}] = {X[row, col]} is not finite")
    return np.ascontiguousarray(X, dtype=np.float64)


def read_driven_csv(
    path: PathLike,
    *,
    id: Column,
    static: Sequence[Column],
    time: Column | None = None,
    target: Column | None = None,
    features: Sequence[Column] | None = None,
    task: str = "classification",
    require_target: bool = True,
    min_classes: int = 2,
    any_labels: bool = False,
) -> DrivenFile:
    """Read the data of a neural ODE with inputs from a long-format CSV (one row per observation).

    The ``static`` columns hold each series' initial state ``X``: one value per series (the
    same on every row where it is given; empty cells allowed). The other columns but the id,
    time and target are the inputs ``u(t)`` (or those ``features`` names), read as
    :func:`read_series` reads a neural CDE's channels.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.csv`` file.
    id, time, target : str or int
        The columns (header name or 0-based index), as for :func:`read_series`.
    static : sequence of str or int
        The columns of the initial states ``X``.
    features : sequence of str or int, optional
        The input columns (default: every column but the id, time, static and target ones).
    task, require_target, min_classes, any_labels
        As for :func:`read_series`.

    Returns
    -------
    DrivenFile
        ``X``, ``U``, ``times``, ``y`` and the names of the header.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        As :func:`read_series`, and for a static column that is also an input, that has no
        value or several values in a series.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "long.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id,t,age,x,label\\na,0,30,1.0,0\\na,1,,2.0,0\\n"
    ...                 "b,0,50,,1\\nb,2,50,5.0,1\\n")
    >>> data = read_driven_csv(path, id="id", time="t", static=["age"])
    >>> data.X.tolist(), data.U.shape, data.channel_names
    ([[30.0], [50.0]], (2, 2, 1), ['x'])
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    if p.suffix.lower() != ".csv":
        raise ValueError(f"{p}: a neural ODE's long-format data (--id, --static) are a .csv file")
    rows = csv_rows(p)
    header = [cell.strip() for cell in rows[0][1]] if is_header(rows, True) else None
    width = len(header) if header is not None else len(rows[0][1])
    S = [column_index(p, c, header, width) for c in static]
    if not S:
        raise ValueError(f"{p}: name the columns of the initial states (--static)")
    used = {column_index(p, c, header, width) for c in (id, time) if c is not None} | set(S)
    t = None
    if target is not None:
        t = column_index(p, target, header, width)
    elif require_target:  # the last column but the id, time and static ones
        t = max(c for c in range(width) if c not in used)
    if features is None:
        channels = [c for c in range(width) if c not in used and c != t]
    else:
        channels = [column_index(p, c, header, width) for c in features]
    if not channels:
        raise ValueError(f"{p}: no input columns besides the id, time, static and target ones")
    if set(channels) & set(S):
        raise ValueError(f"{p}: a static column is also an input column (--features)")
    data = read_series(p, id=id, time=time, target=t, features=[*channels, *S], task=task,
                       require_target=require_target, min_classes=min_classes,
                       any_labels=any_labels)  # fmt: skip
    C = len(channels)
    names = data.channel_names
    X = _static_values(p, data.U[:, :, C:], [str(c) for c in S] if names is None else names[C:])
    U = np.ascontiguousarray(data.U[:, :, :C])
    return DrivenFile(X, U, data.times, data.y, None if names is None else names[C:],
                      None if names is None else names[:C], data.target_name)  # fmt: skip


def _static_values(p: Path, values: np.ndarray, names: list[str]) -> np.ndarray:
    """``X`` (N, S): each series' one value of each static column."""
    missing = np.argwhere(np.isnan(values).all(axis=1))
    if missing.size:
        n, s = missing[0]
        raise ValueError(f"{p}: series {n + 1} has no value in the static column {names[s]!r}")
    low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
    differ = np.argwhere(high != low)
    if differ.size:
        n, s = differ[0]
        raise ValueError(
            f"{p}: series {n + 1} has several values in the static column {names[s]!r} "
            f"({low[n, s]:g}, {high[n, s]:g}; one per series)"
        )
    return np.ascontiguousarray(low)
