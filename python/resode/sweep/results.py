"""A sweep's results: each run's ``result.json`` record, the table ``OUT/results.csv`` (and
``results.parquet`` with pyarrow), and what :func:`resode.sweep.run` returns."""

from __future__ import annotations

import csv
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .folder import replace
from .spec import Run

__all__ = ["SweepInterrupted", "SweepResult", "lost", "record", "rows", "write_table"]

_RESULT_COLUMNS = ("status", "epochs", "final_loss", "min_loss", "train_loss", "train_accuracy",
                   "test_accuracy", "train_r2", "test_r2", "diverged_epoch", "seconds",
                   "host", "id", "message")  # fmt: skip


def _json(files: Mapping[str, bytes], name: str) -> Any:
    try:
        return json.loads(files[name].decode("utf-8"))
    except (KeyError, ValueError):
        return None


def record(run: Run, files: Mapping[str, bytes], status: str, message: str, seconds: float,
           epoch: int | None = None) -> dict[str, Any]:  # fmt: skip
    """result.json: the run's configuration, inputs, status and results, from its files
    (``epoch``: the epoch of a divergence raised instead of reported)."""
    results = (_json(files, "run.json") or {}).get("results", {})
    history = _json(files, "history.json") or {}
    losses = [v for v in history.get("loss", []) if v is not None]
    metric = "r2" if run.config.model.loss == "mse" else "accuracy"
    epochs = results.get("epochs")
    diverged_epoch = None
    if status == "diverged":
        message = results.get("diverged") or message
        diverged_epoch = epochs + 1 if epochs is not None else epoch
    return {
        "id": run.id,
        "grid": run.grid,
        "config": run.options,
        **run.inputs,
        "argv": list(run.argv),
        "status": status,
        "message": message or None,
        "epochs": epochs,
        "diverged_epoch": diverged_epoch,
        "final_loss": results.get("final_loss"),
        "train_loss": results.get("train_loss"),
        "min_loss": min(losses) if losses else None,
        f"train_{metric}": results.get(f"train_{metric}"),
        f"test_{metric}": results.get(f"test_{metric}"),
        "seconds": seconds,
        "host": socket.gethostname(),
    }


def lost(run: Run, message: str) -> dict[str, Any]:
    """The row of a run whose task never returned (not written to disk: it runs again)."""
    return {"id": run.id, "grid": run.grid, "status": "failed", "message": message}


def rows(runs: Sequence[Run], results: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run with a result: the grid columns, then the results (a result named
    like a grid option gets ``_run`` appended)."""
    grid_keys = list(dict.fromkeys(k for r in runs for k in r.grid))
    out = []
    for r in runs:
        res = results.get(r.id)
        if res is None:
            continue
        row = {k: r.grid.get(k) for k in grid_keys}
        for k in _RESULT_COLUMNS:
            if k in res or k == "status":
                row[f"{k}_run" if k in grid_keys else k] = res.get(k)
        out.append(row)
    return out


def write_table(out: Path, table: list[dict[str, Any]]) -> None:
    """results.csv (and results.parquet with pyarrow), each written atomically."""
    if not table:
        return
    columns = list(dict.fromkeys(k for row in table for k in row))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(table)

    replace(out / "results.csv", write_csv)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    data = pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in table])
    replace(out / "results.parquet", lambda tmp: pq.write_table(data, tmp))


@dataclass
class SweepResult:
    """What :func:`resode.sweep.run` returns: one row per run (grid columns, then results).

    Parameters
    ----------
    out : pathlib.Path
        The sweep's folder.
    rows : list of dict
        One row per run, as in ``results.csv``.
    skipped : int
        The runs finished by an earlier invocation.
    seconds : float
        The wall time of this invocation.

    Examples
    --------
    >>> from pathlib import Path
    >>> rows = [{"T": 1.0, "status": "ok"}, {"T": 2.0, "status": "diverged"}]
    >>> result = SweepResult(Path("out"), rows, skipped=0, seconds=30.0)
    >>> result.count("ok"), len(result.rows)
    (1, 2)
    """

    out: Path
    rows: list[dict[str, Any]]
    skipped: int
    seconds: float

    def count(self, status: str) -> int:
        """Count the runs with this status.

        Parameters
        ----------
        status : {"ok", "diverged", "failed"}
            The status.

        Returns
        -------
        int
            The number of rows with that status.

        Examples
        --------
        >>> from pathlib import Path
        >>> rows = [{"T": 1.0, "status": "ok"}, {"T": 2.0, "status": "diverged"}]
        >>> result = SweepResult(Path("out"), rows, skipped=0, seconds=30.0)
        >>> result.count("diverged")
        1
        """
        return sum(1 for r in self.rows if r.get("status") == status)

    @property
    def summary(self) -> str:
        """One line: the runs, their statuses, the time and the rate.

        ``runs N: ok A, diverged B, failed C, skipped (done before) S; T s, R runs/min`` (no rate
        when no run ran).

        Returns
        -------
        str
            The line.

        Examples
        --------
        >>> from pathlib import Path
        >>> rows = [{"T": 1.0, "status": "ok"}, {"T": 2.0, "status": "diverged"}]
        >>> result = SweepResult(Path("out"), rows, skipped=0, seconds=30.0)
        >>> result.summary
        'runs 2: ok 1, diverged 1, failed 0, skipped (done before) 0; 30.0 s, 4.0 runs/min'
        """
        ran = len(self.rows) - self.skipped
        rate = f", {60.0 * ran / self.seconds:.1f} runs/min" if ran and self.seconds > 0 else ""
        return (f"runs {len(self.rows)}: ok {self.count('ok')}, diverged "
                f"{self.count('diverged')}, failed {self.count('failed')}, skipped (done "
                f"before) {self.skipped}; {self.seconds:.1f} s{rate}")  # fmt: skip

    def __repr__(self) -> str:
        return f"SweepResult({self.out}, {self.summary})"


class SweepInterrupted(KeyboardInterrupt):
    """Raised by :func:`resode.sweep.run` on Ctrl-C, once the cluster is closed.

    ``results.csv`` is rewritten from the runs finished so far and ``result`` holds their
    rows; running the same sweep again continues it.

    Parameters
    ----------
    result : SweepResult
        The runs finished so far.
    total : int
        The runs of the whole sweep.

    Examples
    --------
    >>> from pathlib import Path
    >>> done = SweepResult(Path("out"), [{"status": "ok"}], skipped=0, seconds=1.0)
    >>> err = SweepInterrupted(done, total=4)
    >>> err.finished, isinstance(err, KeyboardInterrupt)
    (1, True)
    """

    def __init__(self, result: SweepResult, total: int) -> None:
        self.result, self.total = result, total
        self.finished = result.count("ok") + result.count("diverged")
        super().__init__(
            f"interrupted: {self.finished} of {total} runs finished; run the same sweep again "
            "to continue"
        )
