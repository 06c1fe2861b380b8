"""One run of a sweep, on a Dask worker: :func:`execute` trains it with
:func:`resode.run.train_run` (``out=None``: nothing written where the driver looks) and
returns its files, which the driver writes into ``OUT``. Workers need no access to ``OUT``."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .results import lost, record
from .spec import Run

__all__ = ["execute", "execute_all"]

# One run at a time per process: a run redirects the process's stdout/stderr and sets the
# core's thread count, so runs on several threads of one worker would mix their logs. (The
# LocalCluster's workers have one thread; a worker with more runs its runs one by one.)
_RUN_LOCK = threading.Lock()


def _diverged_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the run diverged, a result like any other (not a failure, which
    runs again)."""
    from .. import NonFiniteError, StepSizeError
    from ..training import TrainingDiverged

    return (TrainingDiverged, NonFiniteError, StepSizeError)


@contextlib.contextmanager
def _local_copies(inputs: Mapping[str, bytes] | None) -> Iterator[dict[str, str]]:
    """The driver's input files (path -> bytes) written to a private folder of this worker
    under their own names (the suffix says the format); yields path -> local copy."""
    if not inputs:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="resode-inputs-") as folder:
        copies = {}
        for i, (path, data) in enumerate(sorted(inputs.items())):
            local = Path(folder) / str(i) / Path(path).name
            local.parent.mkdir()
            local.write_bytes(data)
            copies[path] = str(local)
        yield copies


def execute(run: Run, inputs: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Train ``run`` with the core on one thread; returns ``{"id", "result", "files",
    "folder"}``: the ``result.json`` record, every file's bytes (``log.txt`` and
    ``result.json`` included) and the temporary folder the log names. ``inputs``: the bytes of
    the run's data files, sent by the driver (the worker need not see its disk)."""
    from .. import get_num_threads, set_num_threads
    from .. import run as runs

    with _RUN_LOCK, _local_copies(inputs) as sources:
        threads = get_num_threads()
        set_num_threads(1)
        log = io.StringIO()
        start = time.perf_counter()
        status, message, epoch = "failed", "", None
        files: dict[str, bytes] = {}
        folder = None
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                result = runs.train_run(run.config, None, progress=False, sources=sources)
            files, folder = result.files, result.folder
            status = result.status if result.status in ("ok", "diverged") else "failed"
            message = result.message
        except _diverged_errors() as exc:
            status, message = "diverged", f"{type(exc).__name__}: {exc}"
            epoch = getattr(exc, "epoch", None)
        except Exception as exc:  # a bug or a refused run: recorded, never dropped
            message = f"{type(exc).__name__}: {exc}"
        finally:
            set_num_threads(threads)
        seconds = time.perf_counter() - start
        files["log.txt"] = log.getvalue().encode("utf-8")
        result_record = record(run, files, status, message, seconds, epoch)
        files["result.json"] = (json.dumps(result_record, indent=2) + "\n").encode("utf-8")
        return {"id": run.id, "result": result_record, "files": files, "folder": folder}


def execute_all(
    runs: Sequence[Run], inputs: Mapping[str, bytes] | None = None
) -> list[dict[str, Any]]:
    """One Dask task: several runs (the seeds of a grid point, say) one after the other; a
    run whose bookkeeping fails is reported failed, alone. ``inputs``: the bytes of the data
    files the runs read (path -> bytes)."""
    out = []
    for r in runs:
        try:
            out.append(execute(r, inputs))
        except Exception as exc:
            out.append({"id": r.id, "result": lost(r, f"{type(exc).__name__}: {exc}"),
                        "files": {}, "folder": None})  # fmt: skip
    return out
