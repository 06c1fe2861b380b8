"""The ``resode`` command: ``resode train``, ``resode demo``, ``resode sweep``, ``resode predict``,
``resode plot`` and ``resode bench``; one module per command.

``resode train`` parses its options into a :class:`resode.config.RunConfig` (the parser is
generated from it) and calls :func:`resode.run.train_run`, which generates or reads the data,
builds a model, trains it with :func:`resode.fit` and writes into ``--out``: ``model.npz``
(:func:`resode.load` reads it), ``history.csv``, ``history.json``, ``config.toml`` (every
option; ``resode train --config`` reruns it), ``run.json`` (options, model and optimiser
config, results) and the plots ``trajectories.gif``, ``decision_boundary.png`` (2-D inputs),
``history.png``, ``controls.png`` and ``state_norm.png``. ``resode demo`` is ``resode train``
with the defaults of the demonstration (concentric spheres, augmented neural ODE) and
``--out runs/demo``.

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
import sys
from collections.abc import Sequence

from . import bench, demo, plot, predict, sweep, train
from .common import PROG, Parser, UsageError
from .demo import DEMO_DEFAULTS
from .train import TRAIN_DEFAULTS, check_train

__all__ = ["DEMO_DEFAULTS", "TRAIN_DEFAULTS", "build_parser", "check_train", "main"]

_COMMANDS = {"train": train, "demo": demo, "sweep": sweep, "bench": bench, "predict": predict,
             "plot": plot}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``resode`` argument parser (every sub-command)."""
    from .. import __version__

    parser = Parser(
        prog=PROG,
        description="Fast training of ResNets and neural ODEs: experiments from the shell.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``resode`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success, 1 training diverged, 2 bad arguments (a one-line
        ``resode <command>: error: ...`` message on stderr, no traceback), 130 interrupted.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    resode 0.1.0
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command in ("train", "demo"):
        return train.run_command(args)
    try:
        status: int = _COMMANDS[args.command].run_command(args)
        return status
    except (UsageError, ValueError, TypeError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every file is written atomically: none is left partial
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
