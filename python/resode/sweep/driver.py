"""The driver of a sweep: expands the spec, claims ``OUT``, sends the pending runs to Dask
and writes what the workers return (the workers write nothing under ``OUT``)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .folder import FINISHED, claimed, read_result, sigint_ignored, store
from .results import SweepInterrupted, SweepResult, lost, rows, write_table
from .spec import PathLike, Run, expand, load_spec
from .worker import execute_all

__all__ = ["QUIET", "run", "save", "submit", "tasks"]


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401  (the dashboard needs it)
    except ImportError:
        return False
    return True


#: Dask's housekeeping on the sweep's own LocalCluster, made rarer: the statistical profiler
#: (it samples the running task's stack every 10 ms, for the dashboard's profile page), the
#: event-loop watchdog (every 20 ms in each server), the memory monitor (100 ms) and the
#: system monitor (500 ms) cost the workers and the driver about 90 ms of CPU a second when
#: idle, 14 ms with these settings: CPU that the runs of a 2-core machine need.
QUIET: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


def _local_cluster(workers: int | None) -> Any:
    """A LocalCluster on 127.0.0.1: one single-threaded worker process per core."""
    import dask
    from dask.distributed import LocalCluster

    # The worker processes inherit an ignored SIGINT: Ctrl-C in a terminal, sent to the whole
    # process group, then reaches the driver alone, which closes the cluster in order (workers
    # that die of it themselves make the nannies print tracebacks). The nannies pass the
    # configuration on to their workers.
    with sigint_ignored(), dask.config.set(QUIET):
        return LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # the scheduler's HTTP server (the dashboard with bokeh) on a free port: no warning
            # that port 8787 is taken when another cluster runs
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": _has_bokeh()},
            silence_logs=40,  # errors only
        )


def _client(client: Any, workers: int | None) -> tuple[Any, list[Any]]:
    """(client, things to close): a given Client, a scheduler address, or a LocalCluster."""
    from dask.distributed import Client

    if client is None:
        cluster = _local_cluster(workers)
        c = Client(cluster)
        return c, [c, cluster]
    if isinstance(client, str):
        c = Client(client)
        return c, [c]
    return client, []


def tasks(runs: Sequence[Run], runs_per_task: int | None, workers: int) -> list[list[Run]]:
    """Runs grouped into tasks: all the seeds of one grid point by default, split further
    when that leaves fewer than two tasks per worker (a sweep over seeds only, say), and the
    last ``workers`` tasks one run each, so that the workers finish within a run of each
    other rather than one of them finishing a whole grid point alone."""
    if runs_per_task is not None:
        return [list(runs[i : i + runs_per_task]) for i in range(0, len(runs), runs_per_task)]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r.grid.items() if k != "seed"}, sort_keys=True,
                         default=str)  # fmt: skip
        groups.setdefault(key, []).append(r)
    size = max(1, -(-len(runs) // (2 * workers)))
    if len(groups) >= 2 * workers:
        grouped = list(groups.values())
    else:
        grouped = [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]
    head, tail = grouped[: max(len(grouped) - workers, 0)], grouped[-workers:]
    return head + [[r] for task in tail for r in task]


def save(out: Path, scratch: Path, artefact: Mapping[str, Any]) -> dict[str, Any]:
    """Write one run that a worker returned into ``OUT/runs/<id>/`` (its log naming that
    folder); returns its record. A run that never returned a result.json is not written."""
    files = dict(artefact["files"])
    if "result.json" not in files:
        return dict(artefact["result"])
    final = out / "runs" / artefact["id"]
    if artefact.get("folder") and "log.txt" in files:
        text = files["log.txt"].decode("utf-8")
        files["log.txt"] = text.replace(str(artefact["folder"]), str(final)).encode("utf-8")
    store(out, scratch, artefact["id"], files)
    return read_result(out, artefact["id"]) or dict(artefact["result"])


def run(
    spec: Mapping[str, Any] | PathLike,
    out: PathLike,
    *,
    client: Any = None,
    workers: int | None = None,
    retries: int = 2,
    progress: bool = True,
    runs_per_task: int | None = None,
) -> SweepResult:
    """Run every run of ``spec`` not finished in ``out`` yet, on a Dask cluster.

    Parameters
    ----------
    spec : dict or path of a TOML file
        See :mod:`resode.sweep`.
    out : path
        The sweep's folder: new, empty, or the sweep folder of this same spec (which the sweep
        continues). It gets ``sweep.json``, ``runs/<id>/`` per run and ``results.csv``; while
        the sweep runs, ``sweep.lock`` and the scratch folder ``.resode-tmp/<driver>/``. Only
        this process writes there: the workers return each run's files through Dask.
    client : dask.distributed.Client, str or None
        A client, a scheduler address (``"tcp://host:8786"``), or None: a ``LocalCluster`` on
        127.0.0.1 with ``workers`` single-threaded worker processes (default: one per core),
        without Dask's statistical profiler and with rarer ticks and monitors (``QUIET``).
    workers : int or None, default None
        The local cluster's worker processes (``client=None`` only; None: one per core).
    retries : int, default 2
        Times Dask reruns a task whose worker died.
    progress : bool, default True
        A tqdm bar over runs on a terminal; plain lines on stderr otherwise.
    runs_per_task : int or None, default None
        Runs per Dask task; default: the seeds of one grid point together (short runs keep
        Dask's per-task overhead small), the last tasks one run each (the workers finish
        together).

    Returns
    -------
    SweepResult
        Every run's row (finished ones of earlier invocations included) and counts.

    Raises
    ------
    ValueError
        On a bad spec, before any work; when ``out`` is a non-empty folder that is not a sweep
        folder, the sweep folder of another spec, or in use by another live driver (nothing
        in it touched).
    SweepInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), after closing the cluster and rewriting
        ``results.csv`` from the finished runs.

    Examples
    --------
    Starting a Dask cluster takes seconds, so this example is not run as a test
    (``tests/test_sweep.py`` runs sweeps):

    >>> import resode.sweep
    >>> spec = {"base": {"dataset": "moons", "epochs": 5}, "grid": {"T": [1.0, 2.0]}, "seeds": 2}
    >>> result = resode.sweep.run(spec, "sweep-out", workers=2)  # doctest: +SKIP
    >>> result.summary  # doctest: +SKIP
    'runs 4: ok 4, diverged 0, failed 0, skipped (done before) 0; ...'
    """
    started = time.perf_counter()
    data = load_spec(spec)
    runs = expand(data)
    out_path = Path(os.fspath(out))
    with claimed(out_path, data) as scratch:
        results = {r.id: res for r, res in _on_disk(out_path, runs) if res["status"] in FINISHED}
        skipped = len(results)
        pending = [r for r in runs if r.id not in results]
        try:
            if pending:
                submit(pending, out_path, scratch, results, runs, client, workers, retries,
                       progress, runs_per_task)  # fmt: skip
        except KeyboardInterrupt:
            with sigint_ignored():  # a second Ctrl-C does not cut the table short
                results = {r.id: res for r, res in _on_disk(out_path, runs)}
                write_table(out_path, rows(runs, results))
            done = SweepResult(out_path, rows(runs, results), skipped,
                               time.perf_counter() - started)  # fmt: skip
            raise SweepInterrupted(done, len(runs)) from None
        write_table(out_path, rows(runs, results))
    return SweepResult(out_path, rows(runs, results), skipped, time.perf_counter() - started)


def _on_disk(out: Path, runs: Sequence[Run]) -> list[tuple[Run, dict[str, Any]]]:
    """The runs of ``runs`` that have a ``result.json`` in ``out``, with it."""
    found = ((r, read_result(out, r.id)) for r in runs)
    return [(r, res) for r, res in found if res is not None]


class _Progress:
    """A tqdm bar on a terminal; plain ``runs k/N`` lines on stderr otherwise."""

    def __init__(self, total: int, client: Any) -> None:
        self.total, self.done, self.bar = total, 0, None
        link = getattr(client, "dashboard_link", None)
        if link and _has_bokeh():
            print(f"dask dashboard: {link}", file=sys.stderr, flush=True)
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="runs", unit="run")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            print(f"runs {self.done}/{self.total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _input_files(client: Any, runs: Sequence[Run]) -> Any:
    """The bytes of every data / validation file the runs read (path -> bytes), read once on
    the driver and scattered to the workers once (a future), so the workers need not see the
    driver's disk; None when the runs read no file."""
    paths = sorted({p for r in runs for p in r.config.input_files().values() if p})
    if not paths:
        return None
    files = {p: Path(p).read_bytes() for p in paths}
    return client.scatter([files], broadcast=True)[0]  # one future (a dict would give many)


def submit(
    pending: Sequence[Run],
    out: Path,
    scratch: Path,
    results: dict[str, dict[str, Any]],
    runs: Sequence[Run],
    client: Any,
    workers: int | None,
    retries: int,
    progress: bool,
    runs_per_task: int | None,
) -> None:
    """Send ``pending`` to Dask; write each run as it comes back (``results`` updated)."""
    from dask.distributed import as_completed

    c, owned = _client(client, workers)
    bar = None
    futures: dict[Any, list[Run]] = {}
    try:
        if progress:
            bar = _Progress(len(pending), c)
        workers_now = max(1, len(c.scheduler_info().get("workers", {})))
        inputs = _input_files(c, pending)
        for task in tasks(pending, runs_per_task, workers_now):
            fut = c.submit(execute_all, task, inputs, retries=retries, pure=False)
            futures[fut] = task
        last_write = 0.0
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                for artefact in fut.result():
                    results[artefact["id"]] = save(out, scratch, artefact)
            except Exception as exc:  # the worker died (retries spent) or Dask failed
                for r in task:
                    results[r.id] = lost(r, f"{type(exc).__name__}: {exc}")
            if bar is not None:
                bar.update(len(task))
            if time.perf_counter() - last_write > 2.0:  # the table, now and then
                write_table(out, rows(runs, results))
                last_write = time.perf_counter()
    except BaseException:  # Ctrl-C, say: a cluster of our own goes; on another, the tasks
        with sigint_ignored(), contextlib.suppress(Exception):
            c.cancel(list(futures))
        raise
    finally:
        if bar is not None:
            bar.close()
        with sigint_ignored():
            for thing in owned:
                with contextlib.suppress(Exception):
                    thing.close()
