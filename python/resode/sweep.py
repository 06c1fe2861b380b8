"""Sweeps: the same ``resode train`` experiment over a grid of options and seeds, one run per
Dask task, on a laptop's ``LocalCluster`` or any Dask cluster.

A spec (a dict, or a TOML file) has a ``base`` table of ``resode train`` options, a ``grid``
table mapping options to lists (their Cartesian product), optional ``seeds`` (a count ``N``
for seeds ``0..N-1``, or a list) and optional ``[[repeat]]`` blocks whose lists are zipped
(equal lengths), not multiplied::

    [base]
    dataset = "spheres"
    epochs = 100
    [grid]
    T = [1.0, 2.0, 4.0]
    turnpike = [false, true]
    seeds = 5

Every run is checked as ``resode train`` would check it before any work starts. A run's
identity is a hash of its full resolved configuration; its results go to ``OUT/runs/<id>/``
(``result.json``, ``history.csv``, ``model.npz``, ``run.json``, ``log.txt``), written into a
temporary folder and renamed into place, so a run either has a complete ``result.json`` or no
folder at all. Running the same sweep again skips the finished runs (status ``ok`` or
``diverged``) and runs the rest. ``OUT/results.csv`` (and ``results.parquet`` with pyarrow) has
one row per run, the grid columns first.

Each run is ``resode.cli.main(["train", ...])`` in a worker process with the core on one
thread: its results are bitwise those of ``resode train`` with the same options, whatever the
number of workers or the order in which runs finish.

Requires ``pip install "resode[sweep]"`` (``dask[distributed]``); ``import resode`` does not
import Dask.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

__all__ = ["Run", "SweepResult", "expand", "load_spec", "run"]

PathLike = Union[str, "os.PathLike[str]"]

#: Options a sweep sets itself, refused in a spec.
_MANAGED = ("out", "overwrite", "resume", "config", "threads", "no_progress", "log_every",
            "checkpoint_every")  # fmt: skip
#: Resolved options that do not change a run's results (left out of its identity).
_NOT_RESULTS = ("out", "overwrite", "no_plots", "no_progress", "log_every", "threads")
_FINISHED = ("ok", "diverged")


# --------------------------------------------------------------------------- the spec


def load_spec(spec: Mapping[str, Any] | PathLike) -> dict[str, Any]:
    """The spec as a dict: ``spec`` itself, or the TOML file it names.

    Raises
    ------
    ValueError
        On an unreadable file, invalid TOML, or unknown top-level keys.
    """
    if isinstance(spec, Mapping):
        data = dict(spec)
    else:
        path = Path(os.fspath(spec))
        try:
            import tomllib  # type: ignore[import-not-found]
        except ImportError:  # Python < 3.11
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read the spec {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"the spec {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"base", "grid", "seeds", "repeat"})
    if unknown:
        raise ValueError(
            f"unknown spec key {unknown[0]!r}: a spec has base, grid, seeds and repeat"
        )
    return data


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its grid values, the ``resode train`` arguments and its identity."""

    id: str
    grid: dict[str, Any]
    argv: tuple[str, ...]
    options: dict[str, Any] = field(compare=False)


def _dest(name: str) -> str:
    return name.replace("-", "_")


def _points(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Grid points: the product of ``grid``, times each zipped ``repeat`` block, times seeds."""
    grid = dict(spec.get("grid", {}) or {})
    if not isinstance(spec.get("grid", {}) or {}, Mapping):
        raise ValueError("grid must be a table of option = [values]")
    seeds = spec.get("seeds")
    if "seeds" in grid:  # `seeds = N` written below [grid] in TOML lands in the grid table
        if seeds is not None:
            raise ValueError("seeds is given twice (at the top and in grid)")
        seeds = grid.pop("seeds")
    axes: list[list[dict[str, Any]]] = []
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid entry {name!r} must be a non-empty list, got {values!r}")
        axes.append([{_dest(name): v} for v in values])
    repeats = spec.get("repeat", []) or []
    if isinstance(repeats, Mapping):
        repeats = [repeats]
    for block in repeats:
        lengths = {len(v) if isinstance(v, list) else -1 for v in block.values()}
        if len(lengths) != 1 or -1 in lengths or 0 in lengths:
            raise ValueError(f"repeat block {dict(block)!r}: lists of one non-zero length each")
        n = lengths.pop()
        axes.append([{_dest(k): v[i] for k, v in block.items()} for i in range(n)])
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, (int, list)) or seeds == []:
            raise ValueError(f"seeds must be a count or a non-empty list, got {seeds!r}")
        values = list(range(seeds)) if isinstance(seeds, int) else seeds
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        axes.append([{"seed": s} for s in values])
    points = []
    for combo in itertools.product(*axes):
        point: dict[str, Any] = {}
        for part in combo:
            for key, value in part.items():
                if key in point:
                    raise ValueError(f"option {key!r} appears in two grid or repeat entries")
                point[key] = value
        points.append(point)
    return points


def _argv(options: Mapping[str, Any]) -> list[str]:
    """``resode train`` arguments for ``options`` (``dest -> value``)."""
    from .cli import _subparser, build_parser

    train = _subparser(build_parser(), "train")
    flags = {a.dest: a for a in train._actions if a.option_strings}
    out: list[str] = []
    for dest, value in options.items():
        action = flags.get(dest)
        if action is None or dest in ("help", "config"):
            raise ValueError(f"unknown option {dest!r} (not a resode train option)")
        if dest in _MANAGED:
            raise ValueError(f"option {dest!r} is set by the sweep itself; leave it out")
        if value is None:
            continue
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise ValueError(f"option {dest!r} must be true or false, got {value!r}")
            if value:
                out.append(action.option_strings[0])
            continue
        if dest in ("data", "validation"):  # workers may run elsewhere: absolute paths
            value = str(Path(str(value)).resolve())
        out += [action.option_strings[0], str(value)]
    return out


def _identity(options: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in sorted(options.items()) if k not in _NOT_RESULTS}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_train_seed(seed: Any) -> int:
    """The resolved ``--seed`` (resode train's default 0 when not given)."""
    from .cli import TRAIN_DEFAULTS

    if seed is None:
        return int(TRAIN_DEFAULTS["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {seed!r}")
    return seed


def expand(spec: Mapping[str, Any] | PathLike) -> list[Run]:
    """Every run of ``spec``, each checked as ``resode train`` checks its arguments.

    Raises
    ------
    ValueError
        On a bad spec: an unknown option, an empty grid entry, or a value ``resode train``
        would refuse (the message names the grid point).

    Examples
    --------
    >>> runs = expand({"base": {"dataset": "moons", "epochs": 2, "model": "resnet"},
    ...                "grid": {"layers": [2, 4]}, "seeds": 2})
    >>> [(r.grid["layers"], r.grid["seed"]) for r in runs]
    [(2, 0), (2, 1), (4, 0), (4, 1)]
    """
    from .cli import check_train

    data = load_spec(spec)
    base = data.get("base", {}) or {}
    if not isinstance(base, Mapping):
        raise ValueError("base must be a table of resode train options")
    base = {_dest(k): v for k, v in base.items()}
    runs: list[Run] = []
    seen: set[str] = set()
    checked: dict[str, dict[str, Any]] = {}  # the checks do not depend on the seed: once each
    for point in _points(data):
        where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the base"
        options = {**base, **point}
        try:
            argv = _argv(options)
            key = json.dumps(_argv({k: v for k, v in options.items() if k != "seed"}))
            if key not in checked:
                checked[key] = check_train(argv)
            resolved = {**checked[key], "seed": check_train_seed(options.get("seed"))}
        except ValueError as exc:
            raise ValueError(f"grid point {where}: {exc}") from None
        run_id = _identity(resolved)
        if run_id in seen:
            raise ValueError(f"grid point {where} repeats an earlier run exactly")
        seen.add(run_id)
        runs.append(Run(run_id, dict(point), tuple(argv), resolved))
    if not runs:
        raise ValueError("the spec has no runs")
    return runs


# --------------------------------------------------------------------------- one run (worker)


def _result_path(out: Path, run_id: str) -> Path:
    return out / "runs" / run_id / "result.json"


def _read_result(out: Path, run_id: str) -> dict[str, Any] | None:
    path = _result_path(out, run_id)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# One run at a time per process: a run redirects the process's stdout/stderr and sets the
# core's thread count, so runs on several threads of one worker would mix their logs. (The
# LocalCluster's workers have one thread; a worker with more runs its runs one by one.)
_RUN_LOCK = threading.Lock()


def _execute(run: Run, out: Path) -> dict[str, Any]:
    """Train one run into a temporary folder and move it into place (worker side)."""
    with _RUN_LOCK:
        return _execute_locked(run, out)


def _execute_locked(run: Run, out: Path) -> dict[str, Any]:
    from . import get_num_threads, set_num_threads
    from .cli import main

    threads = get_num_threads()
    done = _read_result(out, run.id)
    if done is not None and done.get("status") in _FINISHED:
        return done
    tmp = out / "tmp" / f"{run.id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    argv = ["train", *run.argv, "--out", str(tmp), "--overwrite", "--no-progress",
            "--threads", "1"]  # fmt: skip
    log = io.StringIO()
    start = time.perf_counter()
    status, message = "failed", ""
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = main(argv)
        status = {0: "ok", 1: "diverged"}.get(code, "failed")
        if code not in (0, 1):
            message = log.getvalue().strip().splitlines()[-1] if log.getvalue().strip() else ""
    except Exception as exc:  # a bug: recorded, never dropped
        message = f"{type(exc).__name__}: {exc}"
    finally:
        set_num_threads(threads)
    seconds = time.perf_counter() - start
    (tmp / "log.txt").write_text(log.getvalue(), encoding="utf-8")
    result = _summary(run, tmp, status, message, seconds)
    (tmp / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    final = out / "runs" / run.id
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # an unfinished or failed earlier attempt: replaced
        previous = _read_result(out, run.id)
        if previous is not None and previous.get("status") in _FINISHED:
            shutil.rmtree(tmp, ignore_errors=True)
            return previous
        shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return result


def _summary(run: Run, folder: Path, status: str, message: str, seconds: float) -> dict[str, Any]:
    """result.json: the run's configuration, status and results."""
    results: dict[str, Any] = {}
    try:
        results = json.loads((folder / "run.json").read_text(encoding="utf-8"))["results"]
    except (OSError, ValueError, KeyError):
        pass
    losses: list[float] = []
    try:
        history = json.loads((folder / "history.json").read_text(encoding="utf-8"))
        losses = [v for v in history.get("loss", []) if v is not None]
    except (OSError, ValueError):
        pass
    metric = "r2" if run.options.get("loss") == "mse" else "accuracy"
    epochs = results.get("epochs")
    if status == "diverged":
        message = results.get("diverged") or message
    return {
        "id": run.id,
        "grid": run.grid,
        "config": run.options,
        "argv": list(run.argv),
        "status": status,
        "message": message or None,
        "epochs": epochs,
        "diverged_epoch": (epochs or 0) + 1 if status == "diverged" else None,
        "final_loss": results.get("final_loss"),
        "train_loss": results.get("train_loss"),
        "min_loss": min(losses) if losses else None,
        f"train_{metric}": results.get(f"train_{metric}"),
        f"test_{metric}": results.get(f"test_{metric}"),
        "seconds": seconds,
        "host": socket.gethostname(),
    }


def _execute_all(runs: Sequence[Run], out: str) -> list[dict[str, Any]]:
    """One Dask task: several runs (the seeds of a grid point, say) one after the other; a
    run whose bookkeeping fails (a file system error) is reported failed, alone."""
    results = []
    for r in runs:
        try:
            results.append(_execute(r, Path(out)))
        except Exception as exc:
            results.append(_lost(r, f"{type(exc).__name__}: {exc}"))
    return results


# --------------------------------------------------------------------------- the table


_RESULT_COLUMNS = ("status", "epochs", "final_loss", "min_loss", "train_loss", "train_accuracy",
                   "test_accuracy", "train_r2", "test_r2", "diverged_epoch", "seconds",
                   "host", "id", "message")  # fmt: skip


def _rows(runs: Sequence[Run], results: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    grid_keys = list(dict.fromkeys(k for r in runs for k in r.grid))
    rows = []
    for r in runs:
        res = results.get(r.id)
        if res is None:
            continue
        row = {k: r.grid.get(k) for k in grid_keys}
        for k in _RESULT_COLUMNS:  # a result named like a grid option (epochs): "<name>_run"
            if k in res or k == "status":
                row[f"{k}_run" if k in grid_keys else k] = res.get(k)
        rows.append(row)
    return rows


def _write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    """results.csv (and results.parquet with pyarrow), each written atomically."""
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = out / f".results-{uuid.uuid4().hex[:8]}.csv"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out / "results.csv")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows])
    tmp = out / f".results-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(table, tmp)
    os.replace(tmp, out / "results.parquet")


# --------------------------------------------------------------------------- the driver


@dataclass
class SweepResult:
    """What :func:`run` returns: one row per run (grid columns, then results) and counts."""

    out: Path
    rows: list[dict[str, Any]]
    skipped: int
    seconds: float

    def count(self, status: str) -> int:
        """Runs with this status (``"ok"``, ``"diverged"`` or ``"failed"``)."""
        return sum(1 for r in self.rows if r.get("status") == status)

    @property
    def summary(self) -> str:
        """``runs N: ok A, diverged B, failed C, skipped (done before) S; T s, R runs/min``."""
        ran = len(self.rows) - self.skipped
        rate = 60.0 * ran / self.seconds if self.seconds > 0 else float("nan")
        return (f"runs {len(self.rows)}: ok {self.count('ok')}, diverged "
                f"{self.count('diverged')}, failed {self.count('failed')}, skipped (done "
                f"before) {self.skipped}; {self.seconds:.1f} s, {rate:.1f} runs/min")  # fmt: skip

    def __repr__(self) -> str:
        return f"SweepResult({self.out}, {self.summary})"


def _local_cluster(workers: int | None) -> Any:
    """A LocalCluster on 127.0.0.1: one single-threaded worker process per core."""
    from dask.distributed import LocalCluster

    try:
        import bokeh  # noqa: F401  (the dashboard needs it)

        dashboard: str | None = "127.0.0.1:0"
    except ImportError:
        dashboard = None
    return LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=dashboard,
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


def _tasks(runs: Sequence[Run], runs_per_task: int | None, workers: int) -> list[list[Run]]:
    """Runs grouped into tasks: all the seeds of one grid point by default, split further
    when that leaves fewer than two tasks per worker (a sweep over seeds only, say)."""
    if runs_per_task is not None:
        return [list(runs[i : i + runs_per_task]) for i in range(0, len(runs), runs_per_task)]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r.grid.items() if k != "seed"}, sort_keys=True,
                         default=str)  # fmt: skip
        groups.setdefault(key, []).append(r)
    if len(groups) >= 2 * workers:
        return list(groups.values())
    size = max(1, -(-len(runs) // (2 * workers)))
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


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
        See the module docstring.
    out : path
        The sweep's folder: ``runs/<id>/`` per run, ``results.csv``.
    client : dask.distributed.Client, str or None
        A client, a scheduler address (``"tcp://host:8786"``), or None: a ``LocalCluster`` on
        127.0.0.1 with ``workers`` single-threaded worker processes (default: one per core).
    retries : int, default 2
        Times Dask reruns a task whose worker died.
    progress : bool
        A tqdm bar over runs on stderr.
    runs_per_task : int or None
        Runs per Dask task; default: the seeds of one grid point together (short runs keep
        Dask's per-task overhead small).

    Returns
    -------
    SweepResult
        Every run's row (finished ones of earlier invocations included) and counts.

    Raises
    ------
    ValueError
        On a bad spec, before any work.
    """
    started = time.perf_counter()
    runs = expand(spec)
    out_path = Path(os.fspath(out))
    out_path.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for r in runs:
        done = _read_result(out_path, r.id)
        if done is not None and done.get("status") in _FINISHED:
            results[r.id] = done
    skipped = len(results)
    pending = [r for r in runs if r.id not in results]
    if pending:
        _submit(pending, out_path, results, runs, client, workers, retries, progress,
                runs_per_task)  # fmt: skip
    _write_table(out_path, _rows(runs, results))
    shutil.rmtree(out_path / "tmp", ignore_errors=True)
    return SweepResult(out_path, _rows(runs, results), skipped, time.perf_counter() - started)


def _submit(
    pending: Sequence[Run],
    out: Path,
    results: dict[str, dict[str, Any]],
    runs: Sequence[Run],
    client: Any,
    workers: int | None,
    retries: int,
    progress: bool,
    runs_per_task: int | None,
) -> None:
    from dask.distributed import as_completed

    c, owned = _client(client, workers)
    bar = None
    if progress:
        from tqdm import tqdm

        link = getattr(c, "dashboard_link", None)
        if link:
            print(f"dask dashboard: {link}", file=sys.stderr, flush=True)

        bar = tqdm(total=len(pending), desc="runs", unit="run")
    try:
        futures = {}
        workers_now = max(1, len(c.scheduler_info().get("workers", {})))
        for task in _tasks(pending, runs_per_task, workers_now):
            fut = c.submit(_execute_all, task, str(out.resolve()), retries=retries, pure=False)
            futures[fut] = task
        last_write = 0.0
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                for res in fut.result():
                    results[res["id"]] = res
            except Exception as exc:  # the worker died (retries spent) or Dask failed
                for r in task:
                    results[r.id] = _lost(r, f"{type(exc).__name__}: {exc}")
            if bar is not None:
                bar.update(len(task))
            if time.perf_counter() - last_write > 2.0:  # the table, now and then
                _write_table(out, _rows(runs, results))
                last_write = time.perf_counter()
    finally:
        if bar is not None:
            bar.close()
        for thing in owned:
            thing.close()


def _lost(run: Run, message: str) -> dict[str, Any]:
    """The row of a run whose task never returned (not written to disk: it runs again)."""
    return {"id": run.id, "grid": run.grid, "status": "failed", "message": message}
