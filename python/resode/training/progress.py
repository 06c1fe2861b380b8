"""Progress reporting of :func:`resode.fit` on stderr: a tqdm bar on a terminal, plain log
lines otherwise (batch jobs, captured output, ``2> log``)."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["Progress", "default_log_every", "log_line"]


def default_log_every(epochs: int) -> int:
    """About 20 log lines per run."""
    return max(1, math.ceil(epochs / 20))


def log_line(row: Mapping[str, float], epochs: int) -> str:
    """One plain progress line: epoch, loss, score, validation, lr and elapsed time."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}", f"loss {row['loss']:.4g}"]
    for key in ("accuracy", "r2", "val_loss", "val_accuracy", "val_r2"):
        if key in row:
            parts.append(f"{key} {row[key]:.4g}")
    parts += [f"lr {row['lr']:.3g}", f"{row['time']:.1f} s"]
    return "  ".join(parts)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class Progress:
    """The progress of one run: a bar when ``enabled`` and stderr is a terminal, else a log
    line every ``log_every`` epochs (and at the last or a stopping epoch) when ``enabled``.
    Use it as a context manager (the bar is closed on exit)."""

    def __init__(self, enabled: bool, epochs: int, start: int, log_every: int, metric: str):
        self.epochs, self.log_every, self.metric = epochs, log_every, metric
        self.bar = None
        if enabled and _is_terminal(sys.stderr):
            from tqdm import tqdm

            self.bar = tqdm(
                total=epochs, initial=min(start, epochs), desc="epochs", unit="epoch",
                file=sys.stderr,
            )  # fmt: skip
        self.log = enabled and self.bar is None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def epoch_end(self, row: Mapping[str, float], stop: bool) -> None:
        """Report the epoch of ``row`` (``stop``: training ends after it)."""
        epoch, metric = int(row["epoch"]), self.metric
        if self.bar is not None:
            postfix = {"loss": f"{row['loss']:.4g}", metric: f"{row[metric]:.3f}"}
            if "val_" + metric in row:
                postfix["val_" + metric] = f"{row['val_' + metric]:.3f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        elif self.log and (epoch % self.log_every == 0 or epoch == self.epochs or stop):
            print(log_line(row, self.epochs), file=sys.stderr, flush=True)
