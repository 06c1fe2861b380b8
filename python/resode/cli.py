"""The ``resode`` command: ``resode train``, ``resode demo``, ``resode sweep``, ``resode predict``,
``resode plot`` and ``resode bench``.

``resode train`` generates a data set, builds a model, trains it with :func:`resode.fit` and
writes into ``--out``: ``model.npz`` (:func:`resode.load` reads it), ``history.csv``,
``history.json``, ``config.toml`` (every option; ``resode train --config`` reruns it),
``run.json`` (options, model and optimiser config, results) and the plots
``trajectories.gif``, ``decision_boundary.png`` (2-D inputs), ``history.png``,
``controls.png`` and ``state_norm.png``. ``resode demo`` is ``resode train`` with the defaults
of the demonstration (concentric spheres, augmented neural ODE) and ``--out runs/demo``.

Options may also come from a TOML file (``--config run.toml``): keys are the long option
names (``n-samples`` or ``n_samples``), optionally grouped in tables (``[model]``,
``[training]``: the table names are ignored); options given on the command line win.

``--out``, ``--overwrite`` and ``--resume`` are command-line options only (a config file that
sets them is refused). Every file is written atomically (a temporary file in the same folder,
renamed over the target). Ctrl-C during training saves the model, history and a checkpoint of
the last finished epoch and prints the ``--resume`` command that continues the run;
``resode plot RUN_DIR`` draws a run's figures again.

Exit codes: 0 success, 1 training diverged (the last finite model and the history so far are
still written), 2 bad arguments or configuration (one line on stderr), 130 interrupted (Ctrl-C).

Examples
--------
>>> from resode.cli import main
>>> main(["train", "--dataset", "moons", "--model", "resnet", "--epochs", "5",
...       "--n-samples", "100", "--no-plots", "--out", "/tmp/resode-doctest"])  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

__all__ = ["DEMO_DEFAULTS", "TRAIN_DEFAULTS", "build_parser", "check_train", "main"]

PROG = "resode"

TRAIN_DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "spheres",
    "data": None,
    "target": None,
    "features": None,
    "validation": None,
    "n_samples": 1000,
    "dim": None,
    "noise": None,
    "test_size": 0.2,
    "seed": 0,
    # model
    "model": "node",
    "field": "bottleneck",
    "hidden": 32,
    "augment": 1,
    "activation": "tanh",
    "T": 5.0,
    "pieces": 10,
    "substeps": 1,
    "method": "rk4",
    "layers": 10,
    "h": None,
    "classes": None,
    "loss": "cross_entropy",
    "weight_decay": 0.0,
    "turnpike": False,
    "gradient": "discrete",
    "checkpoints": None,
    "rtol": None,
    "atol": None,
    "step_control": None,
    "first_step": None,
    "max_steps": None,
    "dtype": "float64",
    # training
    "epochs": 300,
    "batch_size": None,
    "optimizer": "adam",
    "lr": 1e-2,
    "momentum": 0.0,
    "nesterov": False,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "schedule": "none",
    "step_size": 100,
    "gamma": 0.1,
    "no_shuffle": False,
    "bound": None,
    "fixed_projection": False,
    "threads": None,
    "checkpoint_every": None,
    "resume": None,
    # output
    "out": None,
    "overwrite": False,
    "no_plots": False,
    "no_progress": False,
    "log_every": None,
}
"""Defaults of ``resode train`` (``out=None``: ``runs/<dataset>-<model>``)."""

DEMO_DEFAULTS: dict[str, Any] = {
    **TRAIN_DEFAULTS,
    "hidden": 32,
    "activation": "relu",
    "weight_decay": 1e-3,
    "epochs": 120,
    "batch_size": 200,
    "schedule": "cosine",
    "out": "runs/demo",
    "overwrite": True,
}
"""Defaults of ``resode demo``: concentric spheres, neural ODE with a bottleneck field (32
hidden units, ReLU), one augmented dimension, ``T = 5``, 10 pieces, RK4, Adam with a cosine
learning-rate schedule (the loss falls smoothly to the end)."""

_DATASET_CHOICES = ("spheres", "chess", "chess3", "tricolor", "moons", "spirals", "digits")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _UsageError(Exception):
    """A bad option value found after parsing; becomes a one-line message and exit code 2."""


# --------------------------------------------------------------------------- argument types


def _int(minimum: int) -> Any:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


def _float(*, positive: bool = False, unit: bool = False) -> Any:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
        if not positive and value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
        if unit and not 0 < value < 1:
            raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value:g}")
        return value

    convert.__name__ = "number"
    return convert


# --------------------------------------------------------------------------- parser


def _add_run_options(p: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """Options shared by ``train`` and ``demo`` (their defaults differ)."""
    from .models import ACTIVATIONS, FIELDS, GRADIENTS, LOSSES, METHODS

    p.add_argument(
        "--config", metavar="FILE.toml", help="read options from a TOML file (flags win)"
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=_DATASET_CHOICES, help="data set (default %(default)s)")
    g.add_argument(
        "--data",
        metavar="PATH",
        help="train on your own file instead of --dataset: .npz with X (N, dim) and y, or .csv",
    )
    g.add_argument(
        "--target",
        metavar="NAME|INDEX",
        help="the target column of a --data .csv file (default: the last)",
    )
    g.add_argument(
        "--features",
        metavar="COLUMNS",
        help="comma-separated feature columns of --data (names or 0-based indices; default: "
        "all but the target)",
    )
    g.add_argument(
        "--validation",
        metavar="PATH",
        help="a test file like --data (instead of splitting off --test-size)",
    )
    g.add_argument(
        "--n-samples",
        type=_int(4),
        metavar="N",
        help="samples in all (default %(default)s; digits: all 1797)",
    )
    g.add_argument("--dim", type=_int(1), help="dimension of the spheres data set (default 2)")
    g.add_argument("--noise", type=_float(), help="noise of moons / spirals")
    g.add_argument(
        "--test-size",
        type=_float(positive=True, unit=True),
        metavar="FRACTION",
        help="held-out fraction (default %(default)s)",
    )
    g.add_argument("--seed", type=_int(0), help="seed of data, init and batches (default 0)")

    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("node", "resnet"), help="default %(default)s")
    g.add_argument("--field", choices=FIELDS, help="default %(default)s")
    g.add_argument("--hidden", type=_int(1), help="bottleneck width (default %(default)s)")
    g.add_argument("--augment", type=_int(0), help="zero dimensions added (default %(default)s)")
    g.add_argument("--activation", choices=ACTIVATIONS, help="default %(default)s")
    g.add_argument("--T", type=_float(positive=True), help="final time (default %(default)s)")
    g.add_argument("--pieces", type=_int(1), help="control pieces (default %(default)s)")
    g.add_argument("--substeps", type=_int(1), help="steps per piece (default %(default)s)")
    g.add_argument("--method", choices=METHODS, help="integrator (default %(default)s)")
    g.add_argument("--layers", type=_int(1), help="ResNet layers (default %(default)s)")
    g.add_argument("--h", type=_float(positive=True), help="ResNet step size (default T / layers)")
    g.add_argument("--classes", type=_int(1), help="default: inferred from the data")
    g.add_argument("--loss", choices=LOSSES, help="default %(default)s")
    g.add_argument("--weight-decay", type=_float(), help="on theta (default %(default)s)")
    g.add_argument("--turnpike", action="store_true", default=None, help="integrated loss")
    g.add_argument("--gradient", choices=GRADIENTS, help="default %(default)s")
    g.add_argument("--checkpoints", type=_int(1), help="stored states (discrete gradient)")
    g.add_argument("--rtol", type=_float(), help="adaptive methods' relative tolerance (1e-7)")
    g.add_argument("--atol", type=_float(), help="adaptive methods' absolute tolerance (1e-9)")
    g.add_argument("--step-control", choices=("sample", "batch"), help="adaptive (sample)")
    g.add_argument(
        "--first-step", type=_float(positive=True), help="adaptive methods' first step (auto)"
    )
    g.add_argument(
        "--max-steps", type=_int(1), help="adaptive methods' steps per sample and piece (100000)"
    )
    g.add_argument("--dtype", choices=("float64", "float32"), help="default %(default)s")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=_int(0), help="default %(default)s")
    g.add_argument(
        "--batch-size", type=_int(1), help="samples per step (default %(default)s: full batch)"
    )
    g.add_argument("--optimizer", choices=("adam", "sgd"), help="default %(default)s")
    g.add_argument("--lr", type=_float(positive=True), help="learning rate (default %(default)s)")
    g.add_argument("--momentum", type=_float(), help="SGD momentum (default %(default)s)")
    g.add_argument("--nesterov", action="store_true", default=None, help="SGD Nesterov momentum")
    g.add_argument("--beta1", type=_float(), help="Adam beta1 (default %(default)s)")
    g.add_argument("--beta2", type=_float(), help="Adam beta2 (default %(default)s)")
    g.add_argument("--eps", type=_float(positive=True), help="Adam eps (default %(default)s)")
    g.add_argument(
        "--schedule",
        choices=("none", "cosine", "step"),
        help="lr schedule: cosine over the epochs, or step (times --gamma every --step-size)",
    )
    g.add_argument("--step-size", type=_int(1), help="epochs per step of --schedule step")
    g.add_argument("--gamma", type=_float(positive=True), help="factor of --schedule step")
    g.add_argument("--no-shuffle", action="store_true", default=None, help="keep the data order")
    g.add_argument("--bound", type=_float(positive=True), help="L1+Linf bound on the controls")
    g.add_argument("--fixed-projection", action="store_true", default=None, help="freeze P and c")
    g.add_argument("--threads", type=_int(1), help="threads of the core (default: all)")
    g.add_argument(
        "--checkpoint-every",
        type=_int(1),
        metavar="K",
        help="write OUT/checkpoint.npz every K epochs",
    )
    g.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint")

    g = p.add_argument_group("output")
    g.add_argument(
        "--out", metavar="DIR", help="output folder (default %(default)s; None: runs/DATASET-MODEL)"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="replace a model already in --out (train refuses to, so no trained model is lost)",
    )
    g.add_argument("--no-plots", action="store_true", default=None, help="skip the plots")
    g.add_argument(
        "--no-progress", action="store_true", default=None, help="no progress bar or log lines"
    )
    g.add_argument(
        "--log-every",
        type=_int(1),
        metavar="N",
        help="when stderr is not a terminal: a log line every N epochs (default: ~20 per run)",
    )
    p.set_defaults(**defaults)


def build_parser() -> argparse.ArgumentParser:
    """The ``resode`` argument parser (sub-commands ``train``, ``demo``, ``bench``)."""
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Fast training of ResNets and neural ODEs: experiments from the shell.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    train = sub.add_parser(
        "train",
        help="train a model on a toy data set, write model, history and plots",
        description="Train a model on a toy data set; write model, history and plots to --out.",
    )
    _add_run_options(train, TRAIN_DEFAULTS)
    demo = sub.add_parser(
        "demo",
        help="the demonstration: augmented neural ODE on concentric spheres",
        description="The demonstration experiment (concentric spheres, augmented neural ODE), "
        "written to runs/demo; every `train` option can change it.",
    )
    _add_run_options(demo, DEMO_DEFAULTS)
    sweep = sub.add_parser(
        "sweep",
        help="run a grid of train runs on Dask (a LocalCluster or a scheduler)",
        description="Run every run of a sweep spec (a TOML file: [base] train options, "
        "[grid] lists, seeds, [[repeat]] zipped lists) on Dask; rerunning skips finished runs.",
    )
    sweep.add_argument("spec", nargs="?", metavar="SPEC.toml", help="the sweep's spec")
    sweep.add_argument(
        "--experiment", choices=sorted(_EXPERIMENTS), help="a built-in spec instead of SPEC"
    )
    sweep.add_argument("--print-spec", action="store_true", help="print the spec and exit")
    sweep.add_argument("--out", metavar="DIR", help="the sweep's folder (required to run)")
    sweep.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler (tcp://host:8786)"
    )
    sweep.add_argument(
        "--workers", type=_int(1), help="LocalCluster worker processes (default: one per core)"
    )
    sweep.add_argument(
        "--retries", type=_int(0), default=2, help="reruns of a task whose worker died"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench = sub.add_parser("bench", help="run the benchmark suite and print the table")
    bench.add_argument("--full", action="store_true", help="the full suite (slow)")
    predict = sub.add_parser(
        "predict",
        help="predict with a trained model on a data file",
        description="Write the predictions of a trained model for the samples of a .npz or "
        ".csv file: labels and class probabilities, or values for regression.",
    )
    predict.add_argument("--model", required=True, metavar="MODEL.npz", help="a saved model")
    predict.add_argument("--data", required=True, metavar="PATH", help=".npz (X) or .csv file")
    predict.add_argument(
        "--target",
        metavar="NAME|INDEX",
        help="a target column in the .csv to leave out of the features (and score against)",
    )
    predict.add_argument(
        "--features", metavar="COLUMNS", help="comma-separated feature columns (as for train)"
    )
    predict.add_argument(
        "--out", metavar="FILE.csv", help="where to write the predictions (default: stdout)"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out (never --data)"
    )
    plot = sub.add_parser(
        "plot",
        help="draw the figures of a trained run again",
        description="Draw the figures of a run folder written by `resode train` from its "
        "model.npz, history.json and config.toml (its data are generated or read again).",
    )
    plot.add_argument("run", metavar="RUN_DIR", help="the --out folder of a resode train run")
    plot.add_argument("--overwrite", action="store_true", help="replace figures already there")
    return parser


# --------------------------------------------------------------------------- config files


def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise _UsageError(
                "--config needs Python >= 3.11 or the tomli package (pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise _UsageError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _UsageError(f"--config {path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            if isinstance(v, dict):
                raise _UsageError(f"--config {path}: tables nest at most one level ({k!r})")
            if k in flat:
                raise _UsageError(f"--config {path}: {k!r} is given twice")
            flat[k] = v
    return flat


_COMMAND_LINE_ONLY = ("out", "overwrite", "resume")


def _config_defaults(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """Convert and check the TOML values like command-line values, keyed by ``dest``."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    out: dict[str, Any] = {}
    for key, value in _read_toml(path).items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("config", "help"):
            raise _UsageError(f"--config {path}: unknown option {key!r}")
        if dest in _COMMAND_LINE_ONLY:  # a shared file must not choose what gets replaced
            flag = action.option_strings[0]
            raise _UsageError(
                f"--config {path}: {key!r} is a command-line option only (files are written, "
                f"replaced or resumed where the command line says); give {flag} there"
            )
        flag = action.option_strings[0]
        if action.nargs == 0:  # store_true flags
            if not isinstance(value, bool):
                raise _UsageError(f"--config {path}: {key} must be true or false")
            out[dest] = value
            continue
        if isinstance(value, (dict, list, bool)) or value is None:
            raise _UsageError(f"--config {path}: {key} must be a string or a number")
        if action.type is not None:
            try:
                value = action.type(str(value))
            except argparse.ArgumentTypeError as exc:
                raise _UsageError(f"--config {path}: {flag}: {exc}") from None
        if action.choices is not None and value not in action.choices:
            options = ", ".join(map(str, action.choices))
            raise _UsageError(f"--config {path}: {flag} must be one of {options}; got {value!r}")
        out[dest] = value
    return out


def _to_toml(options: Mapping[str, Any]) -> str:
    lines = ["# resode train options; rerun with: resode train --config config.toml"]
    unused = set(_not_applicable(argparse.Namespace(**options)))
    for key, value in options.items():
        if value is None or key in ("config", "command", "resume", "out", "overwrite"):
            continue
        if key in unused:
            continue
        name = key.replace("_", "-")
        if key in ("data", "validation"):  # rerunnable from any folder
            value = str(Path(value).resolve())
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(str(value))
        lines.append(f"{name} = {text}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- applicability


_ADAPTIVE_OPTIONS = ("rtol", "atol", "step_control", "first_step", "max_steps")


def _not_applicable(args: argparse.Namespace) -> dict[str, str]:
    """Options that mean nothing for this run, each with the reason (``dest -> reason``)."""
    out: dict[str, str] = {}
    if args.model == "resnet":
        for dest in ("pieces", "substeps", "method", "turnpike", "gradient", "checkpoints",
                     *_ADAPTIVE_OPTIONS):  # fmt: skip
            out[dest] = "applies to --model node only"
        if args.h is not None:
            out["T"] = "does not apply with --h (a ResNet's h is T / layers otherwise)"
    else:
        for dest in ("layers", "h"):
            out[dest] = "applies to --model resnet only"
        if args.method not in ("dopri5", "tsit5", "bosh3"):
            for dest in _ADAPTIVE_OPTIONS:
                out[dest] = f"applies to the adaptive methods only (not --method {args.method})"
    if args.field != "bottleneck":
        out["hidden"] = f"applies to --field bottleneck only (not {args.field})"
    if args.optimizer == "adam":
        for dest in ("momentum", "nesterov"):
            out[dest] = "applies to --optimizer sgd only"
    else:
        for dest in ("beta1", "beta2", "eps"):
            out[dest] = "applies to --optimizer adam only"
    if args.schedule != "step":
        for dest in ("step_size", "gamma"):
            out[dest] = "applies to --schedule step only"
    if getattr(args, "data", None) is not None:
        for dest in ("dataset", "n_samples", "dim", "noise"):
            out[dest] = "applies to the generated data sets, not --data"
    else:
        for dest in ("target", "features", "validation"):
            out[dest] = "applies with --data only"
        if args.dataset != "spheres":
            out["dim"] = f"applies to --dataset spheres only, not {args.dataset}"
        if args.dataset not in ("moons", "spirals"):
            out["noise"] = f"applies to moons and spirals only, not {args.dataset}"
    if getattr(args, "validation", None) is not None:
        out["test_size"] = "does not apply with --validation (the test data are given)"
    if args.no_progress:
        out["log_every"] = "does not apply with --no-progress"
    return out


_UNSET = object()


def _explicit(argv: Sequence[str], command: str) -> set[str]:
    """The options that ``argv`` gives on the command line (as ``dest`` names)."""
    parser = build_parser()
    sub = _subparser(parser, command)
    sub.set_defaults(**{a.dest: _UNSET for a in sub._actions if a.option_strings})
    args = parser.parse_args(argv)
    return {k for k, v in vars(args).items() if v is not _UNSET and k != "command"}


def _refuse_unused(args: argparse.Namespace, given: set[str], from_config: set[str]) -> None:
    """A usage error for the first given option that does not apply to this run."""
    parser = _subparser(build_parser(), args.command)
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    for dest, reason in _not_applicable(args).items():
        if dest in given or dest in from_config:
            where = f" (from --config {args.config})" if dest not in given else ""
            raise _UsageError(f"{flags[dest]}{where} {reason}")


# --------------------------------------------------------------------------- the run


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _task(args: argparse.Namespace) -> str:
    return "regression" if args.loss == "mse" else "classification"


def _read_data(
    args: argparse.Namespace, path: str, what: str, min_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of a --data / --validation file; every problem is a usage error."""
    from .data_files import load

    try:
        X, y = load(
            path,
            target=args.target,
            features=_columns(args.features),
            task=_task(args),
            min_classes=min_classes,
            any_labels=True,  # mapped to classes 0..K-1 by _data_and_model
        )
    except (OSError, ValueError) as exc:
        raise _UsageError(f"{what} {exc}") from None
    assert y is not None
    return X, y


def _dataset(args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    """(X_train, X_test, y_train, y_test) from --data / --validation or a generated set."""
    from . import datasets
    from .datasets import train_test_split

    if args.data is not None:
        X, y = _read_data(args, args.data, "--data")
        if args.validation is not None:
            X_te, y_te = _read_data(args, args.validation, "--validation", min_classes=1)
            if X_te.shape[1] != X.shape[1]:
                raise _UsageError(
                    f"--validation {args.validation} has {X_te.shape[1]} features, --data "
                    f"{args.data} has {X.shape[1]}"
                )
            if "U" in (y.dtype.kind, y_te.dtype.kind):  # text labels in one file: compare text
                y, y_te = _label_texts(y), _label_texts(y_te)
            return X, X_te, y, y_te
    elif args.dataset == "digits":
        X, y = datasets.digits()
    else:
        kwargs: dict[str, Any] = {"seed": args.seed}
        if args.dim is not None:
            kwargs["dim"] = args.dim
        if args.noise is not None:
            kwargs["noise"] = args.noise
        X, y = datasets.DATASETS[args.dataset](args.n_samples, **kwargs)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, args.test_size, seed=args.seed)
    return X_tr, X_te, y_tr, y_te


def _build_model(args: argparse.Namespace, dim: int, classes: int) -> Any:
    from .models import NeuralODE, ResNet

    hidden = args.hidden if args.field == "bottleneck" else None
    common = {
        "classes": classes,
        "field": args.field,
        "activation": args.activation,
        "hidden": hidden,
        "augment": args.augment,
        "loss": args.loss,
        "weight_decay": args.weight_decay,
        "dtype": args.dtype,
        "seed": args.seed,
    }
    if args.model == "resnet":
        h = args.h if args.h is not None else args.T / args.layers
        return ResNet(dim, args.layers, h=h, **common)
    return NeuralODE(
        dim,
        T=args.T,
        pieces=args.pieces,
        substeps=args.substeps,
        method=args.method,
        turnpike=bool(args.turnpike),
        gradient=args.gradient,
        checkpoints=args.checkpoints,
        rtol=args.rtol,
        atol=args.atol,
        step_control=args.step_control,
        first_step=args.first_step,
        max_steps=args.max_steps,
        **common,
    )


def _build_optimizer(args: argparse.Namespace) -> Any:
    from .optim import SGD, Adam, CosineLR, StepLR

    schedule: Any = None
    if args.schedule == "cosine":
        schedule = CosineLR(total_epochs=max(args.epochs, 1))
    elif args.schedule == "step":
        schedule = StepLR(step_size=args.step_size, gamma=args.gamma)
    if args.optimizer == "sgd":
        return SGD(
            lr=args.lr, momentum=args.momentum, nesterov=bool(args.nesterov), schedule=schedule
        )
    if args.momentum or args.nesterov:
        raise _UsageError("--momentum applies to --optimizer sgd only (and so does --nesterov)")
    return Adam(lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, schedule=schedule)


def _describe(model: Any) -> str:
    from .models import NeuralODE

    field = model.field + (f" {model.hidden}" if model.field == "bottleneck" else "")
    parts = [field, model.activation, f"augment {model.augment}"]
    if isinstance(model, NeuralODE):
        steps = f"{model.pieces} pieces" + (f" x {model.substeps}" if model.substeps > 1 else "")
        parts += [f"T={model.T:g}", steps, model.method]
    else:
        parts += [f"{model.layers} layers", f"h={model.h:g}"]
    return f"{type(model).__name__} ({', '.join(parts)})"


_FIGURES = ("trajectories.gif", "decision_boundary.png", "history.png", "controls.png",
            "state_norm.png")  # fmt: skip


def _plots(
    model: Any,
    data: tuple[np.ndarray, np.ndarray],
    labels: tuple[np.ndarray, np.ndarray] | None,
    history: Any,
    out: Path,
) -> tuple[list[str], list[str]]:
    """Write every plot; returns (files written, notices). ``labels`` is None for a
    regression on real values (no classes to colour or separate)."""
    try:
        from . import plot

        plot._require_matplotlib()
    except ImportError:
        return [], ["plots skipped: matplotlib is not installed (pip install resode[plot])"]
    X_tr, X_te = data
    written, notes = [], []
    if labels is not None:
        y_tr, y_te = labels
        plot.trajectories(model, X_tr, y_tr, out / "trajectories.gif")
        written.append("trajectories.gif")
        if model.dim == 2:
            plot.decision_boundary(
                model, X_tr, y_tr, X_te, y_te, path=out / "decision_boundary.png"
            )
            written.append("decision_boundary.png")
        else:
            notes.append(f"decision_boundary.png skipped: the inputs are {model.dim}-D, not 2-D")
    else:
        y_tr = None
        notes.append("trajectories.gif and decision_boundary.png skipped: no classes (regression)")
    if len(history):
        plot.history(history, out / "history.png")
        written.append("history.png")
    else:
        notes.append("history.png skipped: no epoch ran")
    plot.controls(model, out / "controls.png")
    plot.state_norm(model, X_tr, out / "state_norm.png", y=y_tr)
    written += ["controls.png", "state_norm.png"]
    return written, notes


def _class_labels(y_tr: np.ndarray, y_te: np.ndarray) -> np.ndarray | None:
    """The distinct labels of the data, sorted, when they are not the classes ``0 .. K-1``
    themselves (None then: the labels are the class numbers, as in files of older models)."""
    labels = np.unique(np.concatenate([y_tr, y_te]))
    return None if np.array_equal(labels, np.arange(len(labels))) else labels


def _label_texts(labels: np.ndarray) -> np.ndarray:
    """Labels as text, integers without a decimal point (1, not 1.0)."""
    if labels.dtype.kind == "U":
        return labels
    return np.array([str(int(v)) for v in labels], dtype=str)


def _label_list(labels: Any, limit: int = 6) -> str:
    shown = ", ".join(str(v) for v in list(labels)[:limit])
    return shown + (", ..." if len(labels) > limit else "")


def _data_and_model(args: argparse.Namespace) -> dict[str, Any]:
    """Data, model and optimiser of a run (nothing touches the file system); every problem
    here is a usage error or a ValueError of the library."""
    X_tr, X_te, y_tr, y_te = _dataset(args)
    values = args.data is not None and _task(args) == "regression"  # y: real numbers
    # a file's own labels; a generated set numbers its classes (a tiny one may miss a class)
    own_labels = args.data is not None and not values
    class_labels = _class_labels(y_tr, y_te) if own_labels else None
    if values:
        inferred = 1
    elif class_labels is not None:  # e.g. labels {1, 2}: two classes, none invented
        inferred = len(class_labels)
        y_tr, y_te = np.searchsorted(class_labels, y_tr), np.searchsorted(class_labels, y_te)
    else:
        inferred = int(max(y_tr.max(), y_te.max())) + 1
    classes = inferred if args.classes is None else args.classes
    if values and classes != 1:
        raise _UsageError(f"--classes {classes}: a regression on --data has one output")
    if classes < inferred:
        raise _UsageError(f"--classes {classes} is too small: the data have {inferred} classes")
    if class_labels is not None and classes != inferred:
        raise _UsageError(
            f"--classes {classes}: the data's {inferred} labels ({_label_list(class_labels)}) "
            f"are {inferred} classes"
        )
    model = _build_model(args, X_tr.shape[1], classes)
    model._class_labels = None if class_labels is None else class_labels.tolist()
    optimizer = _build_optimizer(args)

    def targets(y: np.ndarray) -> np.ndarray:
        """Labels, real values, or one-hot rows (mse on a classification data set)."""
        if _task(args) == "classification" or values:
            return y
        return np.eye(classes)[y]

    return {
        "data": (X_tr, X_te, targets(y_tr), targets(y_te)),
        "labels": None if values else (y_tr, y_te),  # classes to colour and separate
        "dim": X_tr.shape[1],
        "classes": classes,
        "model": model,
        "optimizer": optimizer,
    }


def check_train(argv: Sequence[str]) -> dict[str, Any]:
    """Check ``resode train`` arguments as the command would, without training or writing:
    the parse, the options that do not apply, the data, the model and the optimiser.

    Returns the resolved options (``dest -> value``, defaults included); raises ``ValueError``
    with the command's one-line message otherwise. ``resode sweep`` checks every run with it
    before any work starts.
    """
    import contextlib
    import io

    parser = build_parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(["train", *argv])
        _refuse_unused(args, _explicit(["train", *argv], "train"), set())
        _data_and_model(args)
    except SystemExit:
        raise ValueError(errors.getvalue().strip().removeprefix(f"{PROG}: error: ")) from None
    except (_UsageError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    # options added after sweeps hashed their runs' options are left out while unset, so
    # that a sweep's finished runs keep their ids
    unset_later = {k for k in ("first_step", "max_steps") if getattr(args, k) is None}
    return {k: v for k, v in vars(args).items() if k not in ("command", "config", *unset_later)}


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    """Data, model, optimiser and output folder; every problem here is a usage error, found
    before anything is written."""
    from . import set_num_threads
    from .training import check_resumable, load_checkpoint

    if args.threads is not None:
        set_num_threads(args.threads)
    setup = _data_and_model(args)
    model = setup["model"]
    out = Path(args.out if args.out is not None else _default_out(args))
    # a run that resumes its own checkpoint continues the model in --out; any other run must
    # not replace a trained model there without --overwrite
    own = args.resume is not None and Path(args.resume).resolve().parent == out.resolve()
    if (out / "model.npz").exists() and not args.overwrite and not own:
        resume = ""
        if (out / "checkpoint.npz").is_file():  # e.g. a run stopped by Ctrl-C
            command = _resume_command(args.command, out, str(out / "checkpoint.npz"))
            resume = f" (to continue its run: {command})"
        raise _UsageError(
            f"--out {out} already holds a trained model (model.npz): choose another --out or "
            f"pass --overwrite{resume}"
        )
    resumed_epochs, resumed_history = 0, None
    if args.resume is not None:
        if not Path(args.resume).is_file():
            raise _UsageError(f"--resume {args.resume}: no such file")
        try:
            state = load_checkpoint(args.resume)
            check_resumable(model, state, fixed_projection=bool(args.fixed_projection))
        except ValueError as exc:
            raise _UsageError(f"--resume {args.resume}: {exc}") from None
        if state["seed"] != args.seed:  # the seed also split the data: keep the test set apart
            raise _UsageError(
                f"--resume {args.resume}: the checkpoint was trained with --seed {state['seed']} "
                f"(it chose the train/test split), not {args.seed}"
            )
        if getattr(state["model"], "_class_labels", None) != model._class_labels:
            raise _UsageError(
                f"--resume {args.resume}: the checkpoint's class labels differ from the data's"
            )
        resumed_epochs, resumed_history = int(state["epoch"]), state["history"]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _UsageError(f"cannot create --out {out}: {exc.strerror or exc}") from None
    return {**setup, "out": out, "resumed_epochs": resumed_epochs, "resumed": resumed_history}


def _default_out(args: argparse.Namespace) -> str:
    source = Path(args.data).stem if args.data is not None else args.dataset
    return f"runs/{source}-{args.model}"


def _source(args: argparse.Namespace) -> str:
    return args.data if args.data is not None else args.dataset


class _EpochRecorder:
    """A :func:`resode.fit` callback that keeps the parameters, optimiser state and history
    at the end of the last finished epoch: fit's own history and checkpoint are lost with a
    Ctrl-C (KeyboardInterrupt), and the parameters in the model may be half-way through an
    epoch, so an interrupted run saves this instead."""

    def __init__(self, model: Any, optimizer: Any, resumed: Any) -> None:
        self.model, self.optimizer = model, optimizer
        self.rows: list[dict[str, float]] = []
        self.start = 0
        if resumed is not None:
            self.rows = [{k: resumed[k][i] for k in resumed.keys()} for i in range(len(resumed))]
            self.start = len(resumed)
        self.state: tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]] | None = None

    def __call__(self, epoch: int, logs: Mapping[str, float], model: Any) -> None:
        params = {k: np.array(v, copy=True) for k, v in model.params.items()}
        optimizer = self.optimizer.state_dict()  # copies
        self.rows.append(dict(logs))
        self.state = (epoch, params, optimizer)  # one assignment: all of the epoch or none

    @property
    def epoch(self) -> int:
        """Epochs finished (counting those of a resumed checkpoint)."""
        return self.start if self.state is None else self.state[0]

    def history(self) -> Any:
        from .training import History

        history = History()
        for row in self.rows[: self.epoch]:
            history.append(row)
        return history

    def restore(self) -> None:
        """Put the state of the last finished epoch back into the model and optimiser."""
        if self.state is not None:
            _, params, optimizer = self.state
            for name, value in params.items():
                self.model.params[name] = value
            self.optimizer.load_state_dict(optimizer)


def _train(
    args: argparse.Namespace, setup: Mapping[str, Any], recorder: _EpochRecorder
) -> tuple[Any, str, bool]:
    """Run :func:`resode.fit`: (history, divergence message or "", interrupted)."""
    from . import StepSizeError
    from .training import TrainingDiverged, fit

    X_tr, X_te, t_tr, t_te = setup["data"]
    try:
        history = fit(
            setup["model"],
            X_tr,
            t_tr,
            optimizer=setup["optimizer"],
            epochs=args.epochs,
            batch_size=args.batch_size,
            shuffle=not args.no_shuffle,
            seed=args.seed,
            validation_data=(X_te, t_te),
            bound=args.bound,
            fixed_projection=bool(args.fixed_projection),
            progress=not args.no_progress,
            log_every=args.log_every,
            checkpoint=_checkpoint(args, setup["out"]),
            checkpoint_every=args.checkpoint_every or 100,
            resume=args.resume,
            callbacks=[recorder],
        )
    except TrainingDiverged as exc:
        return exc.history, str(exc), False
    except StepSizeError as exc:  # an adaptive solve that failed while scoring an epoch
        message = f"training diverged after epoch {recorder.epoch} (scoring it): {exc}"
        return recorder.history(), message, False
    except KeyboardInterrupt:
        recorder.restore()
        return recorder.history(), "", True
    return history, "", False


def _checkpoint(args: argparse.Namespace, out: Path) -> Path | None:
    """Where fit checkpoints: OUT/checkpoint.npz with --checkpoint-every, and in a run that
    resumes that file (so it ends at the epoch reached, never stale behind the model)."""
    own = (
        args.resume is not None
        and Path(args.resume).resolve() == (out / "checkpoint.npz").resolve()
    )
    return out / "checkpoint.npz" if args.checkpoint_every or own else None


def _save_interrupted(args: argparse.Namespace, setup: Mapping[str, Any], history: Any) -> None:
    """The checkpoint of an interrupted run, as fit would have written it at its last epoch."""
    from .training import _save_checkpoint

    settings = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "shuffle": not args.no_shuffle,
        "bound": args.bound,
        "fixed_projection": bool(args.fixed_projection),
    }
    _save_checkpoint(setup["out"] / "checkpoint.npz", setup["model"], setup["optimizer"],
                     history, epoch=len(history), seed=args.seed, settings=settings)  # fmt: skip


def _resume_command(command: str, out: Path, checkpoint: str) -> str:
    import shlex

    config, where = shlex.quote(str(out / "config.toml")), shlex.quote(str(out))
    return f"{PROG} {command} --config {config} --out {where} --resume {shlex.quote(checkpoint)}"


def _run(args: argparse.Namespace, command: str, setup: Mapping[str, Any]) -> int:
    """Train, write the outputs and print the summary (``resode train`` / ``demo``)."""
    from . import NonFiniteError, StepSizeError, __version__
    from .io import write_text

    X_tr, X_te, t_tr, t_te = setup["data"]
    model, optimizer, out, classes = (
        setup["model"],
        setup["optimizer"],
        setup["out"],
        setup["classes"],
    )
    regression = model.task == "regression"
    kind = "outputs" if regression else "classes"
    print(
        f"{PROG} {command}: {_describe(model)} on {_source(args)} "
        f"({len(X_tr)} train / {len(X_te)} test samples, {setup['dim']}-D, {classes} {kind})",
        flush=True,
    )
    # -- training -------------------------------------------------------------------------
    t0 = time.perf_counter()
    recorder = _EpochRecorder(model, optimizer, setup["resumed"])
    history, error, interrupted = _train(args, setup, recorder)
    seconds = time.perf_counter() - t0
    status = 1 if error else 0
    if interrupted and len(history) == setup["resumed_epochs"]:
        _interrupted_before_an_epoch(args, command, out)
        return 130
    # -- outputs (each written atomically: a Ctrl-C leaves the old file or the new one) -----
    try:
        train_score, test_score = model.score(X_tr, t_tr), model.score(X_te, t_te)
        train_loss = _terminal_loss(model, X_tr, t_tr)
    except (NonFiniteError, StepSizeError):  # after a divergence the model may not solve
        train_score = test_score = train_loss = None
    if interrupted:
        _save_interrupted(args, setup, history)
    model.save(out / "model.npz")
    _write_history(history, out)
    options = {k: v for k, v in vars(args).items() if k not in ("config", "command")}
    write_text(out / "config.toml", _to_toml(options))
    ran = max(len(history) - setup["resumed_epochs"], 0)
    metric = "r2" if regression else "accuracy"
    run = {
        "resode": __version__,
        "command": command,
        "options": options,
        "kind": model._kind,
        "model": model.config,
        "optimizer": optimizer.config(),
        "class_labels": model._class_labels,
        "results": {
            "epochs": len(history),
            "epochs_this_run": ran,
            "seconds": seconds,
            "final_loss": history.to_jsonable()["loss"][-1] if len(history) else None,
            "train_loss": train_loss,
            f"train_{metric}": train_score,
            f"test_{metric}": test_score,
            "diverged": error or None,
            "interrupted": interrupted,
        },
    }
    write_text(out / "run.json", json.dumps(run, indent=2) + "\n")
    files = ["model.npz", "history.csv", "history.json", "config.toml", "run.json"]
    if (out / "checkpoint.npz").is_file() and (interrupted or _checkpoint(args, out)):
        files.append("checkpoint.npz")
    notes: list[str] = []
    if status == 0 and not interrupted and not args.no_plots:
        try:
            written, notes = _plots(model, (X_tr, X_te), setup["labels"], history, out)
        except KeyboardInterrupt:
            _interrupted_while_plotting(command, out, files)
            return 130
        files += written
    loss = f", final loss {history.loss[-1]:.4g}" if len(history) else ""
    epochs = f"{ran} epoch{'s' if ran != 1 else ''}"
    if setup["resumed_epochs"]:
        epochs += f" (resumed at epoch {setup['resumed_epochs']}, {len(history)} in all)"
    print(f"trained {epochs} in {seconds:.1f} s{loss}")
    name = "R^2" if regression else "accuracy"
    if train_score is None or test_score is None:
        print(f"{name}: not available (the model's states overflow)")
    elif regression:
        print(f"{name}: train {train_score:.4f}, test {test_score:.4f}")
    else:
        print(f"{name}: train {100 * train_score:.2f}%, test {100 * test_score:.2f}%")
    for note in notes:
        print(note)
    print(f"wrote {out}{os.sep}: {' '.join(files)}", flush=True)
    if error:
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
    if interrupted:
        resume = _resume_command(command, out, str(out / "checkpoint.npz"))
        print(
            f"{PROG} {command}: interrupted after epoch {len(history)} of {args.epochs}; the "
            f"model, history and checkpoint are in {out}{os.sep}; continue with: {resume}",
            file=sys.stderr,
        )
        return 130
    return status


def _write_history(history: Any, out: Path) -> None:
    from .io import atomic_path

    with atomic_path(out / "history.csv") as tmp:
        history.to_csv(tmp)
    with atomic_path(out / "history.json") as tmp:
        history.to_json(tmp)


def _interrupted_before_an_epoch(args: argparse.Namespace, command: str, out: Path) -> None:
    if args.resume is None:
        message = "interrupted before the first epoch finished: nothing was written"
    else:
        resume = _resume_command(command, out, args.resume)
        message = f"interrupted before an epoch finished; continue with: {resume}"
    print(f"{PROG} {command}: {message}", file=sys.stderr)


def _interrupted_while_plotting(command: str, out: Path, files: list[str]) -> None:
    import shlex

    drawn = [name for name in _FIGURES if (out / name).is_file()]
    again = f"{PROG} plot {shlex.quote(str(out))}" + (" --overwrite" if drawn else "")
    print(f"wrote {out}{os.sep}: {' '.join(files + drawn)}", flush=True)
    print(
        f"{PROG} {command}: interrupted while drawing the figures; the model and history are "
        f"saved; draw the figures with: {again}",
        file=sys.stderr,
    )


def _terminal_loss(model: Any, X: np.ndarray, targets: np.ndarray) -> float | None:
    """The data loss of the final states on the training data: no weight decay, no turnpike
    integral (the training error a large-time study compares across T)."""
    from .reference import data_loss

    with np.errstate(over="ignore", invalid="ignore"):  # a diverged model: None, no warning
        loss = data_loss(model.forward(X).astype(np.float64), targets, model.loss)
    return float(loss) if math.isfinite(loss) else None


def _predict(args: argparse.Namespace) -> int:
    """``resode predict``: predictions of a saved model for the samples of a data file."""
    import csv
    import io

    from .data_files import load as load_data
    from .io import load as load_model
    from .io import write_text

    if args.out is not None:
        _check_predict_out(args)
    try:
        model = load_model(args.model)
    except (OSError, ValueError) as exc:
        raise _UsageError(f"--model {args.model}: {exc}") from None
    try:
        X, y = load_data(
            args.data,
            target=args.target,
            features=_columns(args.features),
            task=model.task,
            require_target=False,
            min_classes=1,
            any_labels=True,
        )
    except (OSError, ValueError) as exc:
        raise _UsageError(f"--data {exc}") from None
    if X.shape[1] != model.dim:
        hint = ""
        if X.shape[1] == model.dim + 1 and args.target is None and args.features is None:
            hint = " (if one column is the target, name it with --target)"
        raise _UsageError(
            f"--data {args.data} has {X.shape[1]} feature columns, the model takes {model.dim}"
            + hint
        )
    # the data's own labels of the classes (a model trained on labels {1, 2}), or 0..K-1
    labels = np.asarray(getattr(model, "_class_labels", None) or np.arange(model.classes))
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")  # quotes a text label holding a comma
    if model.task == "regression":
        outputs = model.forward(X)
        names = ["prediction"] if model.classes == 1 else [f"y{k}" for k in range(model.classes)]
        writer.writerow(names)
        writer.writerows([repr(float(v)) for v in row] for row in outputs)
    else:
        proba = model.predict_proba(X)
        predicted = labels[np.argmax(proba, axis=1)]
        writer.writerow(["label"] + [f"p{label}" for label in labels])
        writer.writerows(
            [str(label), *(repr(float(v)) for v in row)]
            for label, row in zip(predicted.tolist(), proba)
        )
    text = table.getvalue()
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            write_text(args.out, text)
        except OSError as exc:
            raise _UsageError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}: {len(X)} predictions", file=sys.stderr)
    if y is not None:
        if model.task == "regression":
            name, score = "R^2", model.score(X, y)
        else:
            if "U" in (predicted.dtype.kind, y.dtype.kind):
                predicted, y = _label_texts(predicted), _label_texts(y)
            name, score = "accuracy", float(np.mean(predicted == y))
        print(f"{name} on {args.data}: {score:.4f}", file=sys.stderr)
    return 0


def _check_predict_out(args: argparse.Namespace) -> None:
    """``--out`` may replace a file only with ``--overwrite``, and never an input file."""
    out = Path(args.out)
    if not out.exists():
        return
    for option, path in (("--data", args.data), ("--model", args.model)):
        if Path(path).exists() and os.path.samefile(out, path):
            raise _UsageError(f"--out {args.out} is the {option} file: choose another --out")
    if out.is_dir():
        raise _UsageError(f"--out {args.out} is a folder: give a file name")
    if not args.overwrite:
        raise _UsageError(
            f"--out {args.out} already exists: choose another --out or pass --overwrite"
        )


def _plot(args: argparse.Namespace) -> int:
    """``resode plot RUN_DIR``: the figures of a trained run, drawn again from its files."""
    from .io import load as load_model
    from .training import History

    run = Path(args.run)
    for name in ("model.npz", "config.toml", "history.json"):
        if not (run / name).is_file():
            raise _UsageError(f"{run} has no {name}: not the --out folder of a resode train run")
    existing = [name for name in _FIGURES if (run / name).exists()]
    if existing and not args.overwrite:
        raise _UsageError(
            f"{run} already holds {', '.join(existing)}: pass --overwrite to draw them again"
        )
    try:
        model = load_model(run / "model.npz")
        history = History.from_dict(json.loads((run / "history.json").read_text("utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise _UsageError(f"{run}: {exc}") from None
    options = _run_options(run / "config.toml")
    setup = _data_and_model(options)
    if setup["dim"] != model.dim or setup["model"]._class_labels != model._class_labels:
        raise _UsageError(f"{run}: the data of its config.toml do not match its model.npz")
    X_tr, X_te = setup["data"][:2]
    written, notes = _plots(model, (X_tr, X_te), setup["labels"], history, run)
    for note in notes:
        print(note)
    print(f"wrote {run}{os.sep}: {' '.join(written)}")
    return 0


def _run_options(config: Path) -> argparse.Namespace:
    """The ``resode train`` options of a run's config.toml."""
    parser = build_parser()
    subparser = _subparser(parser, "train")
    subparser.set_defaults(**_config_defaults(subparser, str(config)))
    return parser.parse_args(["train", "--config", str(config)])


_EXPERIMENTS = {"large-time": "large_time.toml"}


def _sweep(args: argparse.Namespace) -> int:
    """``resode sweep``: a grid of ``resode train`` runs on Dask."""
    if args.experiment is not None and args.spec is not None:
        raise _UsageError("give SPEC.toml or --experiment, not both")
    if args.experiment is not None:
        spec = Path(__file__).parent / "experiments" / _EXPERIMENTS[args.experiment]
    elif args.spec is not None:
        spec = Path(args.spec)
    else:
        raise _UsageError("give a SPEC.toml or --experiment NAME")
    if args.print_spec:
        try:
            print(spec.read_text(encoding="utf-8"), end="")
        except OSError as exc:
            raise _UsageError(f"cannot read {spec}: {exc.strerror or exc}") from None
        return 0
    if args.out is None:
        raise _UsageError("--out DIR is required to run a sweep")
    from . import sweep as sweeps

    try:
        try:
            runs = sweeps.expand(spec)  # every run checked before any work
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            raise _UsageError("resode sweep needs Dask: pip install 'resode[sweep]'") from None
        print(f"{PROG} sweep: {len(runs)} runs of {spec} into {args.out}", flush=True)
        result = sweeps.run(spec, args.out, client=args.scheduler, workers=args.workers,
                            retries=args.retries, progress=not args.no_progress)  # fmt: skip
    except ValueError as exc:  # --out refused: not a sweep folder, another spec's, in use
        message = str(exc)
        raise _UsageError(f"--{message}" if message.startswith("out ") else message) from None
    except (OSError, TimeoutError) as exc:  # e.g. no scheduler at --scheduler
        where = f" at --scheduler {args.scheduler}" if args.scheduler else ""
        raise _UsageError(f"cannot run the sweep on Dask{where}: {exc}") from None
    except sweeps.SweepInterrupted as exc:  # the cluster is closed, the table rewritten
        print(f"{PROG} sweep: interrupted: {exc.finished} of {exc.total} runs finished; rerun "
              "the same command to continue", file=sys.stderr)  # fmt: skip
        return 130
    except KeyboardInterrupt:  # before the sweep started: nothing written
        print(f"{PROG} sweep: interrupted", file=sys.stderr)
        return 130
    print(result.summary)
    print(f"wrote {Path(args.out) / 'results.csv'}")
    return 1 if result.count("failed") else 0


def _bench(args: argparse.Namespace) -> int:
    try:
        from . import bench  # type: ignore[attr-defined]
    except ImportError:
        print(f"{PROG} bench: benchmarks not available", file=sys.stderr)
        return 1
    result = bench.run(quick=not args.full)
    if result is not None:
        print(result)
    return 0


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``resode`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success, 1 training diverged, 2 bad arguments (a one-line
        ``resode <command>: error: ...`` message on stderr, no traceback).

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    resode 0.1.0
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    from_config: set[str] = set()
    try:
        # a first pass finds the sub-command and --config; TOML values become defaults
        args, _ = parser.parse_known_args(argv)
        if getattr(args, "config", None):
            subparser = _subparser(parser, args.command)
            config = _config_defaults(subparser, args.config)
            from_config = set(config)
            subparser.set_defaults(**config)
        args = parser.parse_args(argv)
        if args.command in ("train", "demo"):
            _refuse_unused(args, _explicit(argv, args.command), from_config)
    except SystemExit as exc:  # --help, --version and argparse's usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except _UsageError as exc:
        print(f"{PROG} {argv[0] if argv else ''}: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "bench":
        return _bench(args)
    if args.command == "sweep":
        try:
            return _sweep(args)
        except _UsageError as exc:
            print(f"{PROG} sweep: error: {exc}", file=sys.stderr)
            return 2
    if args.command in ("predict", "plot"):
        try:
            return _predict(args) if args.command == "predict" else _plot(args)
        except (_UsageError, ValueError, TypeError) as exc:
            print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # every file is written atomically: none is left partial
            print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
            return 130
    try:
        setup = _setup(args)
    except (_UsageError, ValueError, TypeError) as exc:
        # option values that the library rejects, e.g. a too small --n-samples for a split
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, args.command, setup)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
