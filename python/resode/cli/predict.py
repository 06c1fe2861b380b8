"""``resode predict``: the predictions of a saved model for the samples of a data file."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .common import UsageError

__all__ = ["add_parser", "run_command"]


def add_parser(sub: Any) -> None:
    predict = sub.add_parser(
        "predict",
        help="predict with a trained model on a data file",
        description="Write the predictions of a trained model for the samples of a .npz or "
        ".csv file: labels and class probabilities, or values for regression.",
    )
    predict.add_argument(
        "--model", required=True, metavar="MODEL.npz|RUN_DIR",
        help="a saved model, or the --out folder of a resode train run",
    )  # fmt: skip
    predict.add_argument(
        "--data", required=True, metavar="PATH",
        help=".npz (X; a neural CDE's U; a neural ODE with inputs: X, U, times) or .csv file",
    )  # fmt: skip
    predict.add_argument(
        "--target",
        metavar="NAME|INDEX",
        help="a target column in the .csv to leave out of the features (and score against)",
    )
    predict.add_argument(
        "--features", metavar="COLUMNS", help="comma-separated feature columns (as for train)"
    )
    predict.add_argument(
        "--id",
        metavar="NAME|INDEX",
        help="a neural CDE's long-format .csv: the series column (one row per observation)",
    )
    predict.add_argument(
        "--time", metavar="NAME|INDEX", help="a neural CDE's long-format .csv: the time column"
    )
    predict.add_argument(
        "--static",
        metavar="COLUMNS",
        help="a neural ODE with inputs' long-format .csv (with --id): the columns of the "
        "initial states (default: the model's feature names)",
    )
    predict.add_argument(
        "--out", metavar="FILE.csv", help="where to write the predictions (default: stdout)"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (never --data)"
    )


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _by_name(args: argparse.Namespace, model: Any) -> tuple[list[str] | None, str | None]:
    """The feature and target columns to read: ``--features`` / ``--target``, or the model's
    own feature names when the file's header has them (any order; the target's column
    too when present, to score against)."""
    from ..data_files import header

    if args.features is not None or args.target is not None or not model.feature_names:
        return _columns(args.features), args.target
    names = header(args.data)
    if names is None:
        return None, None
    missing = [n for n in model.feature_names if n not in names]
    if missing:
        raise ValueError(
            f"{args.data} lacks the model's feature column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (its columns: {', '.join(names)})"
        )
    target = model.target_name if model.target_name in names else None
    return list(model.feature_names), target


def _model_file(path: str) -> Path:
    """``--model``: a model file, or a run folder holding ``model.npz``."""
    model = Path(path)
    if model.is_dir():
        if not (model / "model.npz").is_file():
            raise UsageError(f"--model {path} is a folder without a model.npz")
        return model / "model.npz"
    return model


def run_command(args: argparse.Namespace) -> int:
    """Write the predictions (stdout or ``--out``) and score them when the data have labels."""
    from ..build import label_texts, scale_targets
    from ..io import load as load_model
    from ..io import write_text

    if args.out is not None:
        _check_out(args)
    try:
        model = load_model(_model_file(args.model))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {args.model}: {exc}") from None
    arguments: dict[str, Any] = {}  # of forward and score beside X: u, times
    if model.kind == "cde":
        X, times, y = _series(args, model)
        arguments = {} if times is None else {"times": times}
    elif getattr(model, "inputs", 0):
        X, arguments, y = _driven(args, model)
    else:
        X, y = _points(args, model)
    text, predicted = _table(model, X, arguments)
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            write_text(args.out, text)
        except OSError as exc:
            raise UsageError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}: {len(X)} predictions", file=sys.stderr)
    if y is not None:
        if model.task == "regression":
            name, score = "R^2", model.score(X, scale_targets(model.scaling, y), **arguments)
        else:
            if "U" in (predicted.dtype.kind, y.dtype.kind):
                predicted, y = label_texts(predicted), label_texts(y)
            name, score = "accuracy", float(np.mean(predicted == y))
        print(f"{name} on {args.data}: {score:.4f}", file=sys.stderr)
    return 0


def _points(args: argparse.Namespace, model: Any) -> tuple[np.ndarray, Any]:
    """The scaled features of ``--data`` for a model of points, and its targets (or None)."""
    from ..build import scale_inputs
    from ..data_files import load as load_data

    for option in ("id", "time", "static"):
        if getattr(args, option) is not None:
            raise UsageError(
                f"--{option} applies to series: a neural CDE's, or a neural ODE with inputs'"
            )
    try:
        features, target = _by_name(args, model)
        X, y = load_data(args.data, target=target, features=features, task=model.task,
                         require_target=False, min_classes=1, any_labels=True)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data {exc}") from None
    if X.shape[1] != model.dim:
        hint = ""
        if X.shape[1] == model.dim + 1 and args.target is None and args.features is None:
            hint = " (if one column is the target, name it with --target)"
        raise UsageError(
            f"--data {args.data} has {X.shape[1]} feature columns, the model takes {model.dim}"
            + hint
        )
    return scale_inputs(model.scaling, X), y  # the statistics of the training data


def _series(args: argparse.Namespace, model: Any) -> tuple[np.ndarray, Any, Any]:
    """The series of ``--data`` for a neural CDE (the time channel added when the model took
    one: it has one channel more than the file), scaled; their times and targets."""
    from ..build import scale_inputs, series_inputs
    from ..data_files import header
    from ..series_files import read_series

    if args.static is not None:
        raise UsageError("--static applies to a neural ODE with inputs (not a neural CDE)")
    target = args.target
    names = header(args.data) if Path(args.data).suffix.lower() == ".csv" else None
    if target is None and names is not None and model.target_name in names:
        target = model.target_name
    try:
        data = read_series(args.data, id=args.id, time=args.time, target=target,
                           features=_columns(args.features), task=model.task,
                           require_target=False, min_classes=1, any_labels=True)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data {exc}") from None
    channels = data.U.shape[2]
    if channels not in (model.channels, model.channels - 1):
        raise UsageError(
            f"--data {args.data} has {channels} channels, the model takes {model.channels} "
            f"(or {model.channels - 1} and the time channel it adds)"
        )
    U = series_inputs(data.U, data.times, channels < model.channels)
    return scale_inputs(model.scaling, U), data.times, data.y


def _driven(args: argparse.Namespace, model: Any) -> tuple[np.ndarray, dict[str, Any], Any]:
    """The scaled initial states of ``--data`` for a neural ODE with inputs, the keyword
    arguments ``u`` (scaled) and ``times``, and the targets (or None)."""
    from ..build import scale_inputs, scale_series

    try:
        data = _read_driven(args, model)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data {exc}") from None
    if data.X.shape[1] != model.dim or data.U.shape[2] != model.inputs:
        raise UsageError(
            f"--data {args.data} has X with {data.X.shape[1]} features and U with "
            f"{data.U.shape[2]} channels, the model takes {model.dim} and {model.inputs}"
        )
    arguments = {"u": scale_series(model.scaling, data.U)}
    if data.times is not None:
        arguments["times"] = data.times
    return scale_inputs(model.scaling, data.X), arguments, data.y


def _read_driven(args: argparse.Namespace, model: Any) -> Any:
    """The DrivenFile of ``--data``: a long-format .csv with ``--id`` (the static columns:
    ``--static``, or the model's feature names), a .npz otherwise."""
    from ..data_files import header
    from ..series_files import read_driven, read_driven_csv

    common = {"features": _columns(args.features), "task": model.task, "require_target": False,
              "min_classes": 1, "any_labels": True}  # fmt: skip
    if args.id is None:
        for option in ("time", "target", "static"):
            if getattr(args, option) is not None:
                raise UsageError(f"--{option} applies to a long-format .csv (with --id); a "
                                 ".npz holds X, U, times and y")  # fmt: skip
        return read_driven(args.data, **common)
    static = _columns(args.static) or model.feature_names
    if not static:
        raise UsageError("--static: name the columns of the initial states (the model has no "
                         "feature names)")  # fmt: skip
    target = args.target
    names = header(args.data) if Path(args.data).suffix.lower() == ".csv" else None
    if target is None and names is not None and model.target_name in names:
        target = model.target_name
    return read_driven_csv(args.data, id=args.id, static=static, time=args.time, target=target,
                           **common)  # fmt: skip


def _table(model: Any, X: np.ndarray, arguments: dict[str, Any]) -> tuple[str, Any]:
    """The predictions as CSV text, and the predicted labels (None for a regression);
    ``arguments``: those of ``forward`` beside ``X`` (a neural CDE's times, a neural ODE's
    inputs ``u`` and their times)."""
    import csv
    import io

    from ..build import unscale_outputs

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")  # quotes a text label holding a comma
    if model.task == "regression":
        outputs = unscale_outputs(model.scaling, model.forward(X, **arguments))
        names = ["prediction"] if model.classes == 1 else [f"y{k}" for k in range(model.classes)]
        writer.writerow(names)
        writer.writerows([repr(float(v)) for v in row] for row in outputs)
        return table.getvalue(), None
    # the data's own labels of the classes (a model trained on labels {1, 2}), or 0..K-1
    labels = np.asarray(model.class_labels or np.arange(model.classes))
    proba = model.predict_proba(X, **arguments)
    predicted = labels[np.argmax(proba, axis=1)]
    writer.writerow(["label"] + [f"p{label}" for label in labels])
    writer.writerows(
        [str(label), *(repr(float(v)) for v in row)]
        for label, row in zip(predicted.tolist(), proba)
    )
    return table.getvalue(), predicted


def _check_out(args: argparse.Namespace) -> None:
    """``--out`` may replace a file only with ``--overwrite``, and never an input file."""
    out = Path(args.out)
    if not out.exists():
        return
    for option, path in (("--data", args.data), ("--model", args.model)):
        if Path(path).exists() and os.path.samefile(out, path):
            raise UsageError(f"--out {args.out} is the {option} file: choose another --out")
    if out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give a file name")
    if not args.overwrite:
        raise UsageError(
            f"--out {args.out} already exists: choose another --out or pass --overwrite"
        )
