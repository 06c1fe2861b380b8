"""``resode train`` and ``resode demo``: parse into a :class:`~resode.config.RunConfig` and
call :func:`resode.run.train_run`.

The parser is generated from :mod:`resode.config`: every field of the run is an option,
``--<key>`` (``--n-samples``); a flag for a boolean that is off by default (``--turnpike``),
``--no-<key>`` for one that is on (``--no-shuffle``). Options may also come from a TOML file
(``--config run.toml``, the keys of ``config.toml``); the command line wins. ``--out``,
``--overwrite`` and ``--resume`` are command-line options only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import config as run_config
from ..config import RunConfig
from .common import PROG, Parser, UsageError

__all__ = [
    "TRAIN_DEFAULTS",
    "add_parser",
    "add_run_options",
    "check_train",
    "resolve",
    "run_command",
]

#: Options of the command that are not part of the run (never read from a config file but
#: no-progress, a display setting).
_COMMAND_ONLY = {"out": None, "overwrite": False, "resume": None, "no_progress": False}
_COMMAND_LINE_ONLY = ("out", "overwrite", "resume")

TRAIN_DEFAULTS: dict[str, Any] = {
    **{f.name: f.default for _, f, _ in run_config.fields()},
    **_COMMAND_ONLY,
}
"""Defaults of ``resode train`` (``out=None``: ``runs/<dataset>-<model>``)."""

_GROUPS = {"data": "data", "model": "model", "optimizer": "optimiser", "training": "training"}


# --------------------------------------------------------------------------- the parser


def _argparse_type(check: Any) -> Any:
    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(getattr(exc, "message", None) or str(exc)) from None

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _add_field(group: Any, key: str, default: Any, option: run_config.Option) -> None:
    shown = "" if default is None else f" (default {default})"
    if option.is_flag:
        if default:  # on by default: --no-<key> turns it off
            group.add_argument("--no-" + key.replace("_", "-"), dest=key, action="store_const",
                               const=False, default=None, help=f"do not {option.help}")  # fmt: skip
        else:
            group.add_argument(run_config.flag(key), dest=key, action="store_true",
                               default=None, help=option.help)  # fmt: skip
        return
    kwargs: dict[str, Any] = {"dest": key, "default": None, "help": option.help + shown}
    if option.choices is not None:
        kwargs["choices"] = option.choices
    else:
        kwargs["type"] = _argparse_type(option.check)
    if option.metavar is not None:
        kwargs["metavar"] = option.metavar
    group.add_argument(run_config.flag(key), **kwargs)


def add_run_options(p: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """Every field of the run, then the command's own options (``defaults``: the
    command's, shown in the help and used by :func:`resolve`)."""
    p.set_defaults(command_defaults=defaults)
    p.add_argument(
        "--config", metavar="FILE.toml", help="read options from a TOML file (flags win)"
    )
    groups = {section: p.add_argument_group(title) for section, title in _GROUPS.items()}
    for section, f, option in run_config.fields():
        _add_field(groups[section], f.name, defaults.get(f.name), option)
    g = p.add_argument_group("output")
    g.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint")
    g.add_argument(
        "--out", metavar="DIR",
        help=f"output folder (default {defaults['out'] or 'runs/DATASET-MODEL'})",
    )  # fmt: skip
    g.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="replace a model already in --out (train refuses to, so no trained model is lost)",
    )
    g.add_argument(
        "--no-progress", action="store_true", default=None, help="no progress bar or log lines"
    )


def add_parser(sub: Any) -> None:
    """The ``train`` sub-command."""
    train = sub.add_parser(
        "train",
        help="train a model on a toy data set, write model, history and plots",
        description="Train a model on a toy data set; write model, history and plots to --out.",
    )
    add_run_options(train, TRAIN_DEFAULTS)


def _train_parser() -> argparse.ArgumentParser:
    """``resode`` with the ``train`` sub-command alone (its messages read as the command's)."""
    parser = Parser(prog=PROG)
    add_parser(parser.add_subparsers(dest="command"))
    return parser


# --------------------------------------------------------------------------- options -> run


def _file_options(path: str) -> tuple[dict[str, Any], bool | None]:
    """The run options of a ``--config`` file (checked) and its no-progress setting."""
    try:
        options = run_config.normalise(run_config.read_toml(path), run_config.flag)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("cannot read "):
            raise UsageError(
                f"cannot read --config {message.removeprefix('cannot read ')}"
            ) from None
        if message.startswith(f"{path} "):
            raise UsageError(f"--config {message}") from None
        raise UsageError(f"--config {path}: {message}") from None
    for key in _COMMAND_LINE_ONLY:
        if key in options:  # a shared file must not choose what gets replaced
            raise UsageError(
                f"--config {path}: {key!r} is a command-line option only (files are written, "
                f"replaced or resumed where the command line says); give --{key} there"
            )
    no_progress = options.pop("no_progress", None)
    try:
        if no_progress is not None:
            no_progress = run_config.normalise({"no_progress": no_progress})["no_progress"]
            if not isinstance(no_progress, bool):
                raise ValueError("--no-progress must be true or false")
        run_config.build(options, explicit=set(), name=run_config.flag)  # the values alone
    except ValueError as exc:
        raise UsageError(f"--config {path}: {exc}") from None
    return options, no_progress


def resolve(args: argparse.Namespace) -> tuple[RunConfig, dict[str, Any]]:
    """The run of parsed ``train``/``demo`` arguments and the command's own settings
    (``out``, ``overwrite``, ``resume``, ``progress``); a UsageError on any problem."""
    defaults = args.command_defaults
    keys = [f.name for _, f, _ in run_config.fields()]
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    from_file: dict[str, Any] = {}
    no_progress = args.no_progress
    if args.config:
        from_file, file_no_progress = _file_options(args.config)
        if no_progress is None:
            no_progress = file_no_progress

    def name(key: str) -> str:
        where = f" (from --config {args.config})" if key in from_file and key not in given else ""
        return run_config.flag(key) + where

    run_defaults = {k: v for k, v in defaults.items() if k in keys}
    try:
        config = run_config.build({**from_file, **given}, explicit={*from_file, *given},
                                  name=name, defaults=run_defaults)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if no_progress and config.training.log_every is not None and "log_every" in given:
        raise UsageError("--log-every does not apply with --no-progress")
    settings = {
        "out": args.out if args.out is not None else defaults["out"],
        "overwrite": bool(args.overwrite if args.overwrite is not None else defaults["overwrite"]),
        "resume": args.resume,
        "progress": not no_progress,
    }
    return config, settings


def check_train(argv: Sequence[str]) -> dict[str, Any]:
    """Check ``resode train`` arguments as the command would, without training or writing:
    the parse, the options that do not apply, the data, the model and the optimiser.

    Returns the run's options (:meth:`RunConfig.options`); raises ``ValueError`` with the
    command's one-line message otherwise.
    """
    from ..run import prepare

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = _train_parser().parse_args(["train", *argv])
        config, _ = resolve(args)
        prepare(config)
    except SystemExit:
        raise ValueError(errors.getvalue().strip().removeprefix(f"{PROG}: error: ")) from None
    except (UsageError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return config.options()


def run_command(args: argparse.Namespace) -> int:
    """``resode train`` / ``resode demo``: the exit status."""
    import sys

    from ..run import default_out, train_run

    command = args.command
    try:
        config, settings = resolve(args)
    except UsageError as exc:
        print(f"{PROG} {command}: error: {exc}", file=sys.stderr)
        return 2
    out = Path(settings["out"]) if settings["out"] is not None else default_out(config)
    try:
        result = train_run(config, out, resume=settings["resume"],
                           overwrite=settings["overwrite"], progress=settings["progress"],
                           command=command)  # fmt: skip
    except (ValueError, TypeError) as exc:
        # option values that the library rejects, e.g. a too small --n-samples for a split
        print(f"{PROG} {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted", file=sys.stderr)
        return 130
    return result.exit_code


def run_options(config_toml: str | os.PathLike[str]) -> RunConfig:
    """The run of a run folder's ``config.toml`` (as ``resode train --config`` reads it)."""
    args = _train_parser().parse_args(["train", "--config", str(config_toml)])
    return resolve(args)[0]
