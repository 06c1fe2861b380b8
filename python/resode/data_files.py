"""Users' own data: read ``.npz`` and ``.csv`` files into ``(X, y)``.

:func:`load` (also :func:`resode.datasets.load`) is what ``resode train --data`` and
``resode predict --data`` read. Every problem with a file raises ``ValueError`` (or
``FileNotFoundError``) with one line that names the file and, for CSV, the line and column.

Formats
-------
``.npz``
    Arrays ``X`` of shape ``(N, dim)`` and ``y`` of shape ``(N,)`` (``y`` may be absent when
    only features are needed, e.g. for prediction).
``.csv``
    One sample per row, comma-separated numbers. The first row is a header when any of its
    cells is not a number. The target is the last column unless ``target`` names another
    (by header name or by 0-based index, negative from the end); ``features`` chooses the
    feature columns (default: all others).

Examples
--------
>>> import numpy as np, tempfile, os
>>> from resode.data_files import load
>>> path = os.path.join(tempfile.mkdtemp(), "data.csv")
>>> with open(path, "w") as f:
...     _ = f.write("x1,x2,label\\n0.5,1.0,0\\n-0.2,0.3,1\\n")
>>> X, y = load(path)
>>> X.shape, y.tolist()
((2, 2), [0, 1])
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Union

import numpy as np

__all__ = ["TASKS", "DataFile", "header", "load", "read"]

TASKS = ("classification", "regression")

PathLike = Union[str, "os.PathLike[str]"]
Column = Union[int, str]

#: The delimiters a CSV file may use, tried on its first line.
DELIMITERS = (",", ";", "\t", "|")


class DataFile(NamedTuple):
    """What ``read`` returns: the arrays and the names of their columns (None for a
    ``.npz`` file or a CSV file without a header)."""

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str] | None
    target_name: str | None


def load(
    path: PathLike,
    *,
    target: Column | None = None,
    features: Sequence[Column] | None = None,
    task: str = "classification",
    require_target: bool = True,
    min_classes: int = 2,
    any_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Read ``(X, y)`` from a ``.npz`` or ``.csv`` file (``read`` without the names).

    Parameters
    ----------
    path : str or os.PathLike
        The file, ``.npz`` (arrays ``X`` and, optionally, ``y``) or ``.csv`` (one sample a
        row, an optional header).
    target : str or int, optional
        CSV only: the target column, by header name or 0-based index (negative counts from
        the end). Default: the last column.
    features : sequence of str or int, optional
        The feature columns (CSV: names or indices; ``.npz``: indices into ``X``'s columns).
        Default: every column but the target.
    task : {"classification", "regression"}
        Classification targets must be integer labels ``>= 0`` with at least 2 classes;
        regression targets any finite numbers.
    require_target : bool, default True
        ``False``: a file without targets is accepted and ``y`` is ``None``.
    min_classes : int, default 2
        Classification: the fewest distinct labels the file must hold.
    any_labels : bool, default False
        Classification: accept any integer or (CSV) text labels, for a caller that maps
        them to classes ``0 .. K-1`` itself.

    Returns
    -------
    X : numpy.ndarray of float64, shape (N, dim)
        The features, one sample a row.
    y : numpy.ndarray, shape (N,), or None
        The int64 labels (classification; str for text labels with ``any_labels``), float64
        values (regression), or None for a file without targets.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For an unknown extension, ragged rows, non-numeric or non-finite values, unknown
        columns, an empty file, or classification labels that are not integers ``>= 0`` in
        at least 2 classes.

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("points.csv").write_text("x1,x2,label\n0.5,1.0,0\n-1.5,2.0,1\n")
    >>> X, y = load("points.csv")
    >>> X.shape, X.dtype, y.tolist()
    ((2, 2), dtype('float64'), [0, 1])
    """
    data = read(path, target=target, features=features, task=task,
                require_target=require_target, min_classes=min_classes,
                any_labels=any_labels)  # fmt: skip
    return data.X, data.y


def read(
    path: PathLike,
    *,
    target: Column | None = None,
    features: Sequence[Column] | None = None,
    task: str = "classification",
    require_target: bool = True,
    min_classes: int = 2,
    any_labels: bool = False,
) -> DataFile:
    """Read ``X``, ``y`` and the names of their columns from a ``.npz`` or ``.csv`` file.

    A CSV file's delimiter is the one of ``,``, ``;``, tab and ``|`` that its first line
    holds most often (``,`` when it holds none); only the feature and target columns are
    parsed (a text column left out of ``features`` is no error).

    Parameters
    ----------
    path : str or os.PathLike
        The file, ``.npz`` (arrays ``X`` and, optionally, ``y``) or ``.csv``.
    target : str or int, optional
        CSV only: the target column, by header name or 0-based index (negative counts from
        the end). Default: the last column.
    features : sequence of str or int, optional
        The feature columns (CSV: names or indices; ``.npz``: indices into ``X``'s columns).
        Default: every column but the target.
    task : {"classification", "regression"}
        Classification targets must be integer labels ``>= 0`` with at least 2 classes;
        regression targets any finite numbers.
    require_target : bool, default True
        ``False``: a file without targets is accepted and ``y`` is ``None`` (CSV: all columns
        are features unless ``target`` is given).
    min_classes : int, default 2
        Classification: the fewest distinct labels the file must hold (a training file needs
        two; a test file may hold one).
    any_labels : bool, default False
        Classification: accept any integer labels (negative, or far apart) and, in a CSV
        file, text labels (then ``y`` holds str; a first row is a header only if one of its
        text cells stands above a number), for a caller that maps the distinct labels to
        classes ``0 .. K-1`` itself (``resode train --data``). ``False``: the labels must
        number the classes, integers ``>= 0``.

    Returns
    -------
    DataFile
        ``X``: float64, shape (N, dim); ``y``: shape (N,) or None, int64 labels
        (classification; str for text labels with ``any_labels``) or float64 values
        (regression); ``feature_names`` and ``target_name``: the CSV header's names of the
        columns read (None without a header, and for ``.npz`` files).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For an unknown extension, ragged rows, non-numeric or non-finite values, unknown
        columns, an empty file, or classification labels that are not integers ``>= 0`` in
        at least 2 classes.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        if target is not None:
            raise ValueError(f"{p}: target applies to .csv files (a .npz file has its array y)")
        X, y = _read_npz(p, features, require_target)
        names: tuple[list[str] | None, str | None] = (None, None)
    elif suffix == ".csv":
        text_labels = any_labels and task == "classification"
        X, y, names = _read_csv(p, target, features, require_target, text_labels)
    else:
        raise ValueError(
            f"{p}: unknown data format {suffix or '(no extension)'!r}; use .npz or .csv"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{p}: no samples")
    if X.shape[1] == 0:
        raise ValueError(f"{p}: no feature columns")
    if not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(
            f"{p}: feature value {X[row, col]} (sample {row}, feature {col}) is not finite"
        )
    if y is None:
        return DataFile(X, None, names[0], None)
    return DataFile(X, check_targets(p, y, task, min_classes, any_labels), *names)


def header(path: PathLike) -> list[str] | None:
    """The column names of a CSV file's header (None: no header, or not a CSV file)."""
    p = Path(os.fspath(path))
    if p.suffix.lower() != ".csv":
        return None
    rows = csv_rows(p)
    return [cell.strip() for cell in rows[0][1]] if is_header(rows, True) else None


def _delimiter(first_line: str) -> str:
    counts = [(first_line.count(d), -i, d) for i, d in enumerate(DELIMITERS)]
    count, _, delimiter = max(counts)
    return delimiter if count else ","


def csv_rows(p: Path) -> list[tuple[int, list[str]]]:
    """The non-empty rows of a CSV file (1-based line numbers), split at its delimiter."""
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:  # -sig: a BOM (Excel) is no text
            text = f.read()
        first = next((line for line in text.splitlines() if line.strip()), "")
        reader = csv.reader(text.splitlines(), delimiter=_delimiter(first))
        rows = [(i + 1, row) for i, row in enumerate(reader) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{p}: not a readable CSV file ({exc})") from None
    if not rows:
        raise ValueError(f"{p}: the file is empty")
    return rows


def check_targets(
    p: Path, y: np.ndarray, task: str, min_classes: int, any_labels: bool
) -> np.ndarray:
    if y.dtype.kind == "U":  # text labels of a CSV file (any_labels): no numeric checks
        _check_class_count(p, np.unique(y), min_classes)
        return y
    if not np.isfinite(y).all():
        row = int(np.argwhere(~np.isfinite(y))[0][0])
        raise ValueError(f"{p}: target {y[row]} (sample {row}) is not finite")
    if task == "regression":
        return np.ascontiguousarray(y, dtype=np.float64)
    bad = np.flatnonzero((y != np.round(y)) | (np.abs(y) >= 2.0**53 if any_labels else y < 0))
    if bad.size:
        which = "integer labels" if any_labels else "integer labels >= 0"
        raise ValueError(
            f"{p}: classification needs {which} in the target column, got "
            f"{float(y[bad[0]])!r} (sample {bad[0]}); use --loss mse for a regression target"
        )
    distinct = np.unique(y)
    # labels name classes 0..K-1: a huge label would make a model with that many outputs
    if not any_labels and distinct[-1] >= max(1000, 10 * len(distinct)):
        raise ValueError(
            f"{p}: label {distinct[-1]:.0f} is far beyond the {len(distinct)} distinct labels: "
            "classes must be numbered 0..K-1 (remap them, or use --loss mse for a regression)"
        )
    _check_class_count(p, distinct, min_classes)
    return y.astype(np.int64)


def _check_class_count(p: Path, distinct: np.ndarray, min_classes: int) -> None:
    if len(distinct) < min_classes:
        label = f"{distinct[0]:.0f}" if distinct.dtype.kind == "f" else str(distinct[0])
        raise ValueError(
            f"{p}: the target column holds {len(distinct)} class ({label}); need >= {min_classes}"
        )


def _read_npz(
    p: Path, features: Sequence[Column] | None, require_target: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(p, allow_pickle=False) as data:
            names = set(data.files)
            if "X" not in names:
                hint = ""
                if "U" in names:  # a CDE's series, or a driven ODE's inputs without X
                    hint = " (U holds series: use --model cde, or add X for inputs to --model node)"
                raise ValueError(f"{p}: a .npz data file needs an array 'X' (N, dim){hint}")
            X = np.asarray(data["X"])
            y = np.asarray(data["y"]) if "y" in names else None
    except ValueError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise ValueError(f"{p}: not a readable .npz archive ({exc})") from None
    except (OSError, EOFError, TypeError, zipfile.BadZipFile) as exc:
        # TypeError: np.load gave a plain array (a .npy file named .npz), no archive
        raise ValueError(f"{p}: not a readable .npz archive ({exc})") from None
    if X.dtype.kind not in "biuf" or (y is not None and y.dtype.kind not in "biuf"):
        raise ValueError(f"{p}: X and y must be numeric arrays")
    if X.ndim != 2:
        raise ValueError(f"{p}: X must have shape (N, dim), got {X.shape}")
    if features is not None:
        columns = [column_index(p, c, None, X.shape[1]) for c in features]
        X = X[:, columns]
    if y is None:
        if require_target:
            raise ValueError(f"{p}: a .npz data file needs an array 'y' (N,) of targets")
        return np.ascontiguousarray(X, dtype=np.float64), None
    if y.shape != (X.shape[0],):
        raise ValueError(f"{p}: y must have shape ({X.shape[0]},) like X's rows, got {y.shape}")
    return np.ascontiguousarray(X, dtype=np.float64), y.astype(np.float64)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def column_index(p: Path, column: Column, header: list[str] | None, width: int) -> int:
    """0-based index of a column given by name (a header name wins, even one like "2020") or
    index (negative from the end); ValueError naming it otherwise."""
    if isinstance(column, str) and header is not None and column in header:
        return header.index(column)
    if isinstance(column, str) and not _is_int(column):
        if header is None:
            raise ValueError(f"{p}: column {column!r} given by name, but the file has no header")
        raise ValueError(f"{p}: no column {column!r} (columns: {', '.join(header)})")
    index = int(column)
    if not -width <= index < width:
        raise ValueError(f"{p}: column index {index} out of range for {width} columns")
    return index % width


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _read_csv(
    p: Path,
    target: Column | None,
    features: Sequence[Column] | None,
    require_target: bool,
    text_labels: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, tuple[list[str] | None, str | None]]:
    rows = csv_rows(p)
    header: list[str] | None = None
    if is_header(rows, text_labels):
        header = [cell.strip() for cell in rows[0][1]]
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{p}: no samples (only a header)")
    width = len(header) if header is not None else len(rows[0][1])
    has_target = require_target or target is not None
    t = column_index(p, target if target is not None else -1, header, width) if has_target else None
    text_column = t if text_labels else None  # parsed below, once all its cells are known
    if features is not None:
        columns = [column_index(p, c, header, width) for c in features]
        if len(set(columns)) != len(columns):
            raise ValueError(f"{p}: a feature column is given twice: {list(features)}")
        if t is not None and t in columns:
            name = header[t] if header else str(t)
            raise ValueError(f"{p}: the target column ({name}) is also a feature")
    else:
        columns = [c for c in range(width) if c != t]
    parsed = sorted({*columns, *([] if t is None or t == text_column else [t])})
    values = np.zeros((len(rows), width), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{p}, line {line}: {len(row)} columns, expected {width}")
        for c in parsed:  # columns left out are not parsed: an id column may hold text
            values[r, c] = cell_value(p, line, c, row[c], header)
    y: np.ndarray | None = None
    if t is not None:
        y = values[:, t].copy()
        if text_column is not None:
            y = _label_column(p, rows, t, header)
    X = np.ascontiguousarray(values[:, columns])
    names = (
        (None, None)
        if header is None
        else ([header[c] for c in columns], None if t is None else header[t])
    )
    return X, y, names


def is_header(rows: list[tuple[int, list[str]]], text_labels: bool) -> bool:
    """Whether the first row names the columns: one of its cells is text (an empty cell in a
    first data row is an error later). Where labels may be text, a text cell counts only
    above a number (every row of a file without a header has text in its label column)."""
    first = rows[0][1]
    texts = [c for c, cell in enumerate(first) if cell.strip() and not is_number(cell)]
    if not text_labels or len(rows) < 2:
        return bool(texts)
    second = rows[1][1]
    return any(c < len(second) and is_number(second[c]) for c in texts)


def cell_value(p: Path, line: int, c: int, cell: str, header: list[str] | None) -> float:
    """The number in a cell; ValueError naming the line and column otherwise."""
    name = f" ({header[c]!r})" if header else ""
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(
            f"{p}, line {line}, column {c + 1}{name}: {cell.strip()!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{p}, line {line}, column {c + 1}{name}: {cell.strip()!r} is not finite")
    return value


def _label_column(
    p: Path, rows: list[tuple[int, list[str]]], t: int, header: list[str] | None
) -> np.ndarray:
    """The labels of column ``t``: numbers if every cell is one, else text labels (str)."""
    cells = [row[t].strip() for _, row in rows]
    if all(is_number(cell) for cell in cells):
        return np.array([cell_value(p, line, t, row[t], header) for line, row in rows])
    for (line, _), cell in zip(rows, cells):
        if not cell:
            name = f" ({header[t]!r})" if header else ""
            raise ValueError(f"{p}, line {line}, column {t + 1}{name}: the label is empty")
    return np.array(cells, dtype=str)


# --------------------------------------------------------------------------- series
