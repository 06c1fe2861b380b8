"""``resode bench``: the benchmark suite's table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import PROG

__all__ = ["add_parser", "run_command"]


def add_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run the benchmark suite and print the table")
    bench.add_argument("--full", action="store_true", help="the full suite (slow)")


def run_command(args: argparse.Namespace) -> int:
    try:
        from .. import bench
    except ImportError:
        print(f"{PROG} bench: benchmarks not available", file=sys.stderr)
        return 1
    result = bench.run(quick=not args.full)
    if result is not None:
        print(result)
    return 0
