"""``resode plot RUN_DIR``: the figures of a trained run, drawn again from its files."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .common import UsageError

__all__ = ["add_parser", "run_command"]


def add_parser(sub: Any) -> None:
    plot = sub.add_parser(
        "plot",
        help="draw the figures of a trained run again",
        description="Draw the figures of a run folder written by `resode train` from its "
        "model.npz, history.json and config.toml (its data are generated or read again).",
    )
    plot.add_argument("run", metavar="RUN_DIR", help="the --out folder of a resode train run")
    plot.add_argument("--overwrite", action="store_true", help="replace figures already there")


def run_command(args: argparse.Namespace) -> int:
    from ..figures import FIGURES, draw
    from ..io import load as load_model
    from ..run import prepare
    from ..training import History
    from .train import run_options

    run = Path(args.run)
    for name in ("model.npz", "config.toml", "history.json"):
        if not (run / name).is_file():
            raise UsageError(f"{run} has no {name}: not the --out folder of a resode train run")
    existing = [name for name in FIGURES if (run / name).exists()]
    if existing and not args.overwrite:
        raise UsageError(
            f"{run} already holds {', '.join(existing)}: pass --overwrite to draw them again"
        )
    try:
        model = load_model(run / "model.npz")
        history = History.from_dict(json.loads((run / "history.json").read_text("utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{run}: {exc}") from None
    setup = prepare(run_options(run / "config.toml"))
    if setup["dim"] != model.dim or setup["model"].class_labels != model.class_labels:
        raise UsageError(f"{run}: the data of its config.toml do not match its model.npz")
    X_tr, X_te = setup["data"][:2]
    written, notes = draw(model, (X_tr, X_te), setup["labels"], history, run,
                          times=setup["times"][0], inputs=setup["inputs"][0])  # fmt: skip
    for note in notes:
        print(note)
    print(f"wrote {run}{os.sep}: {' '.join(written)}")
    return 0
