"""``resode sweep``: a grid of ``resode train`` runs on Dask."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import PROG, UsageError, int_at_least

__all__ = ["EXPERIMENTS", "add_parser", "run_command"]

EXPERIMENTS = {"large-time": "large_time.toml"}
"""The built-in specs (``--experiment``), in ``resode/experiments/``."""


def add_parser(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a grid of train runs on Dask (a LocalCluster or a scheduler)",
        description="Run every run of a sweep spec (a TOML file: [base] train options, "
        "[grid] lists, seeds, [[repeat]] zipped lists) on Dask; rerunning skips finished runs.",
    )
    sweep.add_argument("spec", nargs="?", metavar="SPEC.toml", help="the sweep's spec")
    sweep.add_argument(
        "--experiment", choices=sorted(EXPERIMENTS), help="a built-in spec instead of SPEC"
    )
    sweep.add_argument("--print-spec", action="store_true", help="print the spec and exit")
    sweep.add_argument("--out", metavar="DIR", help="the sweep's folder (required to run)")
    sweep.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler (tcp://host:8786)"
    )
    sweep.add_argument(
        "--workers",
        type=int_at_least(1),
        help="LocalCluster worker processes (default: one per core)",
    )
    sweep.add_argument(
        "--retries", type=int_at_least(0), default=2, help="reruns of a task whose worker died"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")


def _spec_path(args: argparse.Namespace) -> Path:
    if args.experiment is not None and args.spec is not None:
        raise UsageError("give SPEC.toml or --experiment, not both")
    if args.experiment is not None:
        return Path(__file__).parent.parent / "experiments" / EXPERIMENTS[args.experiment]
    if args.spec is not None:
        return Path(args.spec)
    raise UsageError("give a SPEC.toml or --experiment NAME")


def run_command(args: argparse.Namespace) -> int:
    spec = _spec_path(args)
    if args.print_spec:
        try:
            print(spec.read_text(encoding="utf-8"), end="")
        except OSError as exc:
            raise UsageError(f"cannot read {spec}: {exc.strerror or exc}") from None
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required to run a sweep")
    from .. import sweep as sweeps

    try:
        try:
            runs = sweeps.expand(spec)  # every run checked before any work
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            import dask.distributed  # noqa: F401
        except ImportError:
            raise UsageError("resode sweep needs Dask: pip install 'resode[sweep]'") from None
        print(f"{PROG} sweep: {len(runs)} runs of {spec} into {args.out}", flush=True)
        result = sweeps.run(spec, args.out, client=args.scheduler, workers=args.workers,
                            retries=args.retries, progress=not args.no_progress)  # fmt: skip
    except ValueError as exc:  # --out refused: not a sweep folder, another spec's, in use
        message = str(exc)
        raise UsageError(f"--{message}" if message.startswith("out ") else message) from None
    except (OSError, TimeoutError) as exc:  # e.g. no scheduler at --scheduler
        where = f" at --scheduler {args.scheduler}" if args.scheduler else ""
        raise UsageError(f"cannot run the sweep on Dask{where}: {exc}") from None
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
