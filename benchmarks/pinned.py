"""Run a benchmark cell in its own process pinned to one core (the last one this process may
use), so each program's timing is its own: no shared interpreter, allocator or thread pools."""

from __future__ import annotations

import os
import subprocess
import sys


def number_from_pinned_process(arguments: list[str]) -> float:
    """``python arguments...`` in a child pinned to the last allowed core; the last word it
    prints, as a float (the cell's time)."""
    core = max(os.sched_getaffinity(0))
    out = subprocess.run(
        [sys.executable, *arguments], check=True, capture_output=True, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )  # fmt: skip
    return float(out.stdout.split()[-1])
