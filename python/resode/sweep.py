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
identity is a hash of its full resolved configuration, the sha256 of its ``--data`` and
``--validation`` files and the resode version; its results go to ``OUT/runs/<id>/``
(``result.json``, ``history.csv``, ``model.npz``, ``run.json``, ``log.txt``), written into the
driver's private scratch folder ``OUT/.resode-tmp/<driver>/`` and renamed into place, so a run
either has a complete ``result.json`` or no folder at all. Running the same sweep again skips
the finished runs (status ``ok`` or ``diverged``) and runs the rest. ``OUT/results.csv`` (and
``results.parquet`` with pyarrow) has one row per run, the grid columns first.

``OUT`` is a sweep folder: ``OUT/sweep.json`` (the spec and its hash) is written before anything
else, and a folder that is neither new, empty, nor the sweep folder of the same spec is refused.
One driver at a time works on a folder (``OUT/sweep.lock`` holds its host and pid; the lock of a
dead driver on this host is taken over). Ctrl-C closes the cluster, rewrites the table from the
finished runs and raises :class:`SweepInterrupted`.

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
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

__all__ = ["Run", "SweepInterrupted", "SweepResult", "expand", "load_spec", "run"]

PathLike = Union[str, "os.PathLike[str]"]

#: Options a sweep sets itself, refused in a spec.
_MANAGED = ("out", "overwrite", "resume", "config", "threads", "no_progress", "log_every",
            "checkpoint_every")  # fmt: skip
#: Resolved options that do not change a run's results (left out of its identity).
_NOT_RESULTS = ("out", "overwrite", "no_plots", "no_progress", "log_every", "threads")
#: Options naming files a run reads: their content's sha256 is part of the run's identity.
_INPUT_FILES = ("data", "validation")
_FINISHED = ("ok", "diverged")
#: The files of a sweep folder (see the module docstring).
_MARKER, _LOCK, _SCRATCH = "sweep.json", "sweep.lock", ".resode-tmp"


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
        tomllib = _toml()
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


def _toml() -> Any:
    """tomllib, or tomli before Python 3.11 (a dependency there); as ``resode train --config``,
    one line when neither is there."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ValueError(
                "a TOML spec needs Python >= 3.11 or the tomli package (pip install tomli)"
            ) from None
    return tomllib


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its grid values, the ``resode train`` arguments and its identity.

    ``inputs`` holds what the run reads besides its options (the resode version, the sha256 of
    its ``--data`` and ``--validation`` files); it is part of the identity and of
    ``result.json``.
    """

    id: str
    grid: dict[str, Any]
    argv: tuple[str, ...]
    options: dict[str, Any] = field(compare=False)
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)


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


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inputs(options: Mapping[str, Any], hashes: dict[str, str]) -> dict[str, Any]:
    """The resode version and the sha256 of each input file (``hashes`` caches them by path):
    a run on a changed data file, or with another resode, is another run."""
    from . import __version__

    inputs: dict[str, Any] = {"resode": __version__}
    for name in _INPUT_FILES:
        path = options.get(name)
        if path is not None and path not in hashes:
            try:
                hashes[path] = _file_sha256(path)
            except OSError as exc:
                raise ValueError(f"cannot read --{name} {path}: {exc.strerror or exc}") from None
        inputs[f"{name}_sha256"] = None if path is None else hashes[path]
    return inputs


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
    hashes: dict[str, str] = {}
    for point in _points(data):
        where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the base"
        options = {**base, **point}
        try:
            argv = _argv(options)
            key = json.dumps(_argv({k: v for k, v in options.items() if k != "seed"}))
            if key not in checked:
                checked[key] = check_train(argv)
            resolved = {**checked[key], "seed": check_train_seed(options.get("seed"))}
            inputs = _inputs(resolved, hashes)
        except ValueError as exc:
            raise ValueError(f"grid point {where}: {exc}") from None
        run_id = _identity({**resolved, **inputs})
        if run_id in seen:
            raise ValueError(f"grid point {where} repeats an earlier run exactly")
        seen.add(run_id)
        runs.append(Run(run_id, dict(point), tuple(argv), resolved, inputs))
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


def _execute(run: Run, out: Path, scratch: Path) -> dict[str, Any]:
    """Train one run in the driver's scratch folder and move it into place (worker side)."""
    with _RUN_LOCK:
        return _execute_locked(run, out, scratch)


def _diverged_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the run diverged, a result like any other (not a failure, which
    runs again): whether ``resode train`` reports them with exit status 1 or raises them."""
    from . import NonFiniteError, StepSizeError
    from .training import TrainingDiverged

    return (TrainingDiverged, NonFiniteError, StepSizeError)


def _execute_locked(run: Run, out: Path, scratch: Path) -> dict[str, Any]:
    from . import get_num_threads, set_num_threads
    from .cli import main

    threads = get_num_threads()
    done = _read_result(out, run.id)
    if done is not None and done.get("status") in _FINISHED:
        return done
    # not parents=True: once its driver has ended (and removed its scratch folder) a late task
    # fails here instead of writing into the sweep folder
    tmp = scratch / f"{run.id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    argv = ["train", *run.argv, "--out", str(tmp), "--overwrite", "--no-progress",
            "--threads", "1"]  # fmt: skip
    log = io.StringIO()
    start = time.perf_counter()
    status, message, epoch = "failed", "", None
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = main(argv)
        status = {0: "ok", 1: "diverged"}.get(code, "failed")
        if code not in (0, 1):
            message = log.getvalue().strip().splitlines()[-1] if log.getvalue().strip() else ""
    except _diverged_errors() as exc:
        status, message = "diverged", f"{type(exc).__name__}: {exc}"
        epoch = getattr(exc, "epoch", None)
    except Exception as exc:  # a bug: recorded, never dropped
        message = f"{type(exc).__name__}: {exc}"
    finally:
        set_num_threads(threads)
    seconds = time.perf_counter() - start
    (tmp / "log.txt").write_text(log.getvalue(), encoding="utf-8")
    result = _summary(run, tmp, status, message, seconds, epoch)
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


def _summary(
    run: Run, folder: Path, status: str, message: str, seconds: float, epoch: int | None = None
) -> dict[str, Any]:
    """result.json: the run's configuration, inputs, status and results (``epoch``: the epoch
    of a divergence that ``resode train`` raised instead of reporting)."""
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


def _execute_all(runs: Sequence[Run], out: str, scratch: str) -> list[dict[str, Any]]:
    """One Dask task: several runs (the seeds of a grid point, say) one after the other; a
    run whose bookkeeping fails (a file system error) is reported failed, alone."""
    results = []
    for r in runs:
        try:
            results.append(_execute(r, Path(out), Path(scratch)))
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


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` atomically: ``write`` fills a temporary file beside it, which replaces
    ``path``; the temporary file is removed if anything fails (Ctrl-C included)."""
    tmp = path.with_name(f".{path.stem}-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    """results.csv (and results.parquet with pyarrow), each written atomically."""
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    _replace(out / "results.csv", write_csv)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows])
    _replace(out / "results.parquet", lambda tmp: pq.write_table(table, tmp))


# --------------------------------------------------------------------------- the sweep folder


def _spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(_spec_text(spec).encode()).hexdigest()


def _spec_text(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text``, complete or not at all, unless it exists (False).

    The text goes to a temporary file that is hard-linked to ``path``: the link fails if
    ``path`` exists, so of two processes creating it at once exactly one succeeds, and a
    reader never sees a partial file. (File systems without hard links: an exclusive open.)
    """
    tmp = path.with_name(f".resode-new-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            try:
                with path.open("x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                return False
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _mark(out: Path, spec: Mapping[str, Any]) -> None:
    """Make ``out`` the sweep folder of ``spec`` (its ``sweep.json`` first of all), or check
    that it is one; refuse any other folder, touching nothing in it."""
    marker = out / _MARKER
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a folder")
    if not marker.exists():
        if out.is_dir() and any(not p.name.startswith(".resode-new-") for p in out.iterdir()):
            raise ValueError(
                f"out {out} is not empty and is not a resode sweep folder (no {_MARKER}): give a "
                "new or empty folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        from . import __version__

        record = {"resode": __version__, "spec_sha256": _spec_hash(spec),
                  "spec": json.loads(_spec_text(spec))}  # fmt: skip
        _create_exclusive(marker, json.dumps(record, indent=2) + "\n")  # False: a twin did
    recorded = _read_json(marker)
    if recorded is None or "spec_sha256" not in recorded:
        raise ValueError(f"out {out}: {marker} is not a resode sweep marker")
    if recorded["spec_sha256"] != _spec_hash(spec):
        raise ValueError(
            f"out {out} is the sweep folder of another spec (see its {_MARKER}): give another "
            "folder for this spec"
        )


def _process_started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), None if unknown: with the pid,
    it tells a live driver from a new process that reuses a dead driver's pid."""
    try:
        import psutil  # a dependency of distributed

        return float(psutil.Process(pid).create_time())
    except Exception:
        return None


def _alive(pid: int, started: Any) -> bool:
    """Whether the process ``pid`` that started at ``started`` runs (on this host)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - distributed requires psutil
        if os.name == "nt":
            return True  # unknown: keep the lock
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    if not psutil.pid_exists(pid):
        return False
    now = _process_started(pid)
    return now is None or not isinstance(started, (int, float)) or abs(now - started) < 1.0


def _lock(out: Path, driver: str) -> None:
    """Take ``OUT/sweep.lock`` for this driver; refuse while another live driver holds it, and
    take over the lock of a dead driver on this host (removing its scratch folder)."""
    lock = out / _LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": _process_started(os.getpid()), "driver": driver}  # fmt: skip
    for _ in range(3):
        if _create_exclusive(lock, json.dumps(me) + "\n"):
            return
        holder = _read_json(lock)
        if holder is None:  # removed since, or not a lock resode wrote
            if lock.exists():
                raise ValueError(f"out {out}: {lock} is not a lock resode can read; remove it")
            continue
        same_host = holder.get("host") == me["host"] and isinstance(holder.get("pid"), int)
        if not same_host or _alive(holder["pid"], holder.get("started")):
            raise ValueError(
                f"out {out} is in use by another resode sweep (host {holder.get('host')}, pid "
                f"{holder.get('pid')}; {_LOCK}): wait for it to end, or remove {lock} if that "
                "process is gone"
            )
        _take_over(lock, holder, out)
    raise ValueError(f"out {out}: could not take {lock}; another driver is starting")


def _take_over(lock: Path, holder: Mapping[str, Any], out: Path) -> None:
    """Remove the stale lock ``holder``: renamed aside first, so that of two drivers taking it
    over at once one removes it; a live lock renamed by mistake is put back."""
    aside = lock.with_name(f".resode-stale-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(lock, aside)
    except FileNotFoundError:  # the other driver took it over first
        return
    if _read_json(aside) == dict(holder):
        aside.unlink()
        driver = str(holder.get("driver", ""))
        if driver.isalnum():  # a name resode gave, not a path
            shutil.rmtree(out / _SCRATCH / driver, ignore_errors=True)  # the dead one's
    else:  # a new driver's lock: back in place unless yet another one exists
        with contextlib.suppress(OSError):
            os.link(aside, lock)
        with contextlib.suppress(OSError):
            aside.unlink()


def _unlock(out: Path, driver: str) -> None:
    lock = out / _LOCK
    holder = _read_json(lock)
    if holder is not None and holder.get("driver") == driver:
        with contextlib.suppress(OSError):
            lock.unlink()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C ignored for a while (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _claimed(out: Path, spec: Mapping[str, Any]) -> Iterator[Path]:
    """``out`` as the locked sweep folder of ``spec``; yields this driver's scratch folder,
    removed at the end with the lock (a Ctrl-C then does not cut that short)."""
    driver = uuid.uuid4().hex[:12]
    scratch = out / _SCRATCH / driver
    try:
        _mark(out, spec)
        _lock(out, driver)
    except OSError as exc:  # cannot create or read the folder
        raise ValueError(f"out {out}: {exc.strerror or exc}") from None
    try:
        scratch.mkdir(parents=True)
        (out / "runs").mkdir(exist_ok=True)
        yield scratch
    finally:
        with _sigint_ignored():
            shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(OSError):  # only when no other scratch folder is left
                (out / _SCRATCH).rmdir()
            _unlock(out, driver)


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


class SweepInterrupted(KeyboardInterrupt):
    """Raised by :func:`run` on Ctrl-C, once the cluster is closed and ``results.csv`` is
    rewritten from the runs finished so far; ``result`` holds their rows. Running the same
    sweep again continues it."""

    def __init__(self, result: SweepResult, total: int) -> None:
        self.result, self.total = result, total
        self.finished = result.count("ok") + result.count("diverged")
        super().__init__(
            f"interrupted: {self.finished} of {total} runs finished; run the same sweep again "
            "to continue"
        )


def _local_cluster(workers: int | None) -> Any:
    """A LocalCluster on 127.0.0.1: one single-threaded worker process per core."""
    from dask.distributed import LocalCluster

    try:
        import bokeh  # noqa: F401  (the dashboard needs it)

        dashboard = True
    except ImportError:
        dashboard = False
    # The worker processes inherit an ignored SIGINT: Ctrl-C in a terminal, sent to the whole
    # process group, then reaches the driver alone, which closes the cluster in order (workers
    # that die of it themselves make the nannies print tracebacks).
    with _sigint_ignored():
        return LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # the scheduler's HTTP server (the dashboard with bokeh) on a free port: no warning
            # that port 8787 is taken when another cluster runs
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": dashboard},
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
        The sweep's folder: new, empty, or the sweep folder of this same spec (which the sweep
        continues). It gets ``sweep.json``, ``runs/<id>/`` per run and ``results.csv``; while
        the sweep runs, ``sweep.lock`` and the scratch folder ``.resode-tmp/<driver>/``.
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
        On a bad spec, before any work; when ``out`` is a non-empty folder that is not a sweep
        folder, the sweep folder of another spec, or in use by another live driver (nothing
        in it touched).
    SweepInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), after closing the cluster and rewriting
        ``results.csv`` from the finished runs.
    """
    started = time.perf_counter()
    data = load_spec(spec)
    runs = expand(data)
    out_path = Path(os.fspath(out))
    with _claimed(out_path, data) as scratch:
        results = {r.id: res for r, res in _on_disk(out_path, runs) if res["status"] in _FINISHED}
        skipped = len(results)
        pending = [r for r in runs if r.id not in results]
        try:
            if pending:
                _submit(pending, out_path, scratch, results, runs, client, workers, retries,
                        progress, runs_per_task)  # fmt: skip
        except KeyboardInterrupt:
            with _sigint_ignored():  # a second Ctrl-C does not cut the table short
                results = {r.id: res for r, res in _on_disk(out_path, runs)}
                _write_table(out_path, _rows(runs, results))
            done = SweepResult(out_path, _rows(runs, results), skipped,
                               time.perf_counter() - started)  # fmt: skip
            raise SweepInterrupted(done, len(runs)) from None
        _write_table(out_path, _rows(runs, results))
    return SweepResult(out_path, _rows(runs, results), skipped, time.perf_counter() - started)


def _on_disk(out: Path, runs: Sequence[Run]) -> list[tuple[Run, dict[str, Any]]]:
    """The runs of ``runs`` that have a ``result.json`` in ``out``, with it."""
    found = ((r, _read_result(out, r.id)) for r in runs)
    return [(r, res) for r, res in found if res is not None]


def _submit(
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
    from dask.distributed import as_completed

    c, owned = _client(client, workers)
    bar = None
    futures: dict[Any, list[Run]] = {}
    try:
        if progress:
            from tqdm import tqdm

            link = getattr(c, "dashboard_link", None)
            if link:
                print(f"dask dashboard: {link}", file=sys.stderr, flush=True)
            bar = tqdm(total=len(pending), desc="runs", unit="run")
        workers_now = max(1, len(c.scheduler_info().get("workers", {})))
        where = (str(out.resolve()), str(scratch.resolve()))
        for task in _tasks(pending, runs_per_task, workers_now):
            fut = c.submit(_execute_all, task, *where, retries=retries, pure=False)
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
    except BaseException:  # Ctrl-C, say: a cluster of our own goes; on another, the tasks
        with _sigint_ignored(), contextlib.suppress(Exception):
            c.cancel(list(futures))
        raise
    finally:
        if bar is not None:
            bar.close()
        with _sigint_ignored():
            for thing in owned:
                with contextlib.suppress(Exception):
                    thing.close()


def _lost(run: Run, message: str) -> dict[str, Any]:
    """The row of a run whose task never returned (not written to disk: it runs again)."""
    return {"id": run.id, "grid": run.grid, "status": "failed", "message": message}
