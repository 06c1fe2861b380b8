"""resode.sweep and ``resode sweep``: specs, a real LocalCluster (2 worker processes), resume
after the driver is killed, a worker killed mid-run, failed and diverged runs, equality with
``resode train``, a scheduler started from the command line, the sweep folder (marker, lock,
private scratch, refusals), data files in a run's identity, and Ctrl-C."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import cli

dd = pytest.importorskip("dask.distributed")
import resode.run  # noqa: E402
from resode import sweep  # noqa: E402

BASE = {"dataset": "moons", "model": "resnet", "layers": 3, "epochs": 4, "n-samples": 80,
        "no-plots": True}  # fmt: skip


#: One short run.
ONE = {"base": {**BASE, "epochs": 2}}


def _spec(**grid: Any) -> dict[str, Any]:
    return {"base": dict(BASE), "grid": grid or {"lr": [0.01, 0.05]}, "seeds": 2}


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def _table(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _execute(run: Any, out: Path, scratch: Path) -> dict[str, Any]:
    """One run as a worker trains it and the driver writes it."""
    return sweep.driver.save(out, scratch, sweep.worker.execute(run))


def _scratch(folder: Path) -> Path:
    """A driver's scratch folder, for runs executed directly."""
    scratch = folder / ".resode-tmp" / "test"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


@pytest.fixture(scope="module")
def client():
    # the scheduler's HTTP server on a free port: 8787 may be taken by another cluster, and
    # distributed's warning about it is an error here
    cluster = dd.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}, silence_logs=40,
    )  # fmt: skip
    c = dd.Client(cluster)
    yield c
    c.close()
    cluster.close()


# --------------------------------------------------------------------------- specs


def test_expand_products_zips_and_seeds() -> None:
    spec = {"base": dict(BASE), "grid": {"lr": [0.01, 0.1]}, "seeds": [3, 4],
            "repeat": [{"layers": [2, 5], "h": [0.5, 0.2]}]}  # fmt: skip
    runs = sweep.expand(spec)
    assert [(r.grid["lr"], r.grid["layers"], r.grid["h"], r.grid["seed"]) for r in runs] == [
        (lr, layers, h, seed)
        for lr in (0.01, 0.1)
        for layers, h in ((2, 0.5), (5, 0.2))
        for seed in (3, 4)
    ]
    assert len({r.id for r in runs}) == 8


def test_seeds_under_the_grid_table_of_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text('[base]\ndataset = "moons"\nmodel = "resnet"\nepochs = 1\n'
                    '[grid]\nlayers = [2, 3]\nseeds = 3\n')  # fmt: skip
    assert len(sweep.expand(path)) == 6


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base": BASE, "grid": {"lr": []}}, r"^grid entry 'lr' must be a non-empty list"),
        ({"base": BASE, "grid": {"colour": [1]}}, r"^grid point colour=1: unknown option"),
        ({"base": BASE, "grid": {"out": ["x"]}}, r"^grid point out='x': option 'out' is set by"),
        (
            {"base": {"dataset": "moons"}, "grid": {"hidden": [4], "field": ["inside"]}},
            r"^grid point hidden=4, field='inside': --hidden applies to --field bottleneck only",
        ),
        ({"base": BASE, "grid": {"lr": [-1.0]}}, r"^grid point lr=-1.0: .*--lr"),
        ({"base": BASE, "griddle": {}}, r"^unknown spec key 'griddle'"),
    ],
)
def test_bad_specs_are_refused_before_any_work(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sweep.expand(spec)


def test_bad_spec_on_the_command_line_exits_2_with_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[base]\ndataset = "moons"\n[grid]\nlayers = [0]\nmodel = ["resnet"]\n')
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "resode", "sweep", str(path), "--out", str(out)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("resode sweep: error: grid point layers=0, model='resnet': ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_the_built_in_study_prints_and_expands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", "--experiment", "large-time", "--print-spec"]) == 0
    text = capsys.readouterr().out
    assert "[grid]" in text and "turnpike" in text
    path = Path(resode.__file__).parent / "experiments" / "large_time.toml"
    assert len(sweep.expand(path)) == 120


# --------------------------------------------------------------------------- running


def _params(folder: Path) -> dict[str, np.ndarray]:
    return resode.load(folder / "model.npz").params


def test_a_sweep_equals_resode_train_runs_and_resumes(client: Any, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = sweep.run(_spec(), out, client=client, progress=False)
    assert len(result.rows) == 4 and result.count("ok") == 4 and result.skipped == 0
    table = (out / "results.csv").read_text().splitlines()
    assert table[0].startswith("lr,seed,status,")
    assert len(table) == 5
    # each run equals resode train with the same options, run on its own
    for r in sweep.expand(_spec()):
        alone = tmp_path / f"alone-{r.id}"
        assert cli.main(["train", *r.argv, "--out", str(alone), "--no-progress"]) == 0
        got, want = _params(out / "runs" / r.id), _params(alone)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        res = json.loads((out / "runs" / r.id / "result.json").read_text())
        assert res["status"] == "ok" and res["epochs"] == 4 and res["grid"] == r.grid
    # a second invocation computes nothing and leaves every file alone
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    again = sweep.run(_spec(), out, client=client, progress=False)
    assert again.skipped == 4 and again.count("ok") == 4
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")} == stamps


def _watch_writes(folder: str) -> None:
    """On a worker: record every file or folder created, written or renamed under
    ``folder`` (an audit hook, which stays for the worker's life)."""
    import builtins

    seen: list[str] = []
    builtins._resode_writes = seen  # type: ignore[attr-defined]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        paths: list[Any] = []
        if event == "open" and args[1] is not None and set(str(args[1])) & set("wax+"):
            paths = [args[0]]
        elif event == "open" and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR):
            paths = [args[0]]
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.link"):
            paths = list(args[:2])
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)) and os.fsdecode(p).startswith(folder):
                seen.append(f"{event} {os.fsdecode(p)}")

    sys.addaudithook(hook)


def _writes() -> list[str]:
    import builtins

    return list(getattr(builtins, "_resode_writes", []))


def test_workers_write_nothing_under_out(client: Any, tmp_path: Path) -> None:
    """The workers return each run's files through Dask; the driver alone writes OUT (a
    cluster without a shared file system works)."""
    out = tmp_path / "sweep"
    client.run(_watch_writes, str(tmp_path))
    result = sweep.run(_spec(lr=[0.02]), out, client=client, progress=False)
    assert result.count("ok") == 2
    assert all(writes == [] for writes in client.run(_writes).values())
    for r in sweep.expand(_spec(lr=[0.02])):
        folder = out / "runs" / r.id
        names = {"result.json", "model.npz", "history.csv", "history.json", "run.json",
                 "config.toml", "log.txt"}  # fmt: skip
        assert {p.name for p in folder.iterdir()} == names
        assert f"wrote {folder}{os.sep}: model.npz" in (folder / "log.txt").read_text()
    # the hook sees what a worker writes there: the test can fail
    client.run(lambda: (tmp_path / "probe").write_text("x"))
    assert all(writes for writes in client.run(_writes).values())


def _watch_opens(path: str) -> None:
    """On a worker: record every open of ``path`` (any mode)."""
    import builtins

    seen: list[str] = []
    builtins._resode_opens = seen  # type: ignore[attr-defined]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            if os.path.abspath(os.fsdecode(args[0])) == path:
                seen.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)


def _opens() -> list[str]:
    import builtins

    return list(getattr(builtins, "_resode_opens", []))


def test_workers_read_the_data_files_the_driver_sends(client: Any, tmp_path: Path) -> None:
    """A sweep over a --data file: the driver reads it and sends its bytes through Dask, so
    the workers need not see the driver's disk; the run equals resode train on the file."""
    X, y = resode.datasets.moons(80, seed=1)
    data = tmp_path / "points.csv"
    rows = "".join(f"{float(a)!r},{float(b)!r},{int(c)}\n" for (a, b), c in zip(X, y))
    data.write_text("a,b,label\n" + rows)
    client.run(_watch_opens, str(data))
    base = {k: v for k, v in BASE.items() if k not in ("dataset", "n-samples")}
    spec = {"base": {**base, "data": str(data)}, "grid": {"lr": [0.02]}}
    result = sweep.run(spec, tmp_path / "s", client=client, progress=False)
    assert result.count("ok") == 1
    assert all(opens == [] for opens in client.run(_opens).values())
    (run,) = sweep.expand(spec)
    alone = tmp_path / "alone"
    assert cli.main(["train", *run.argv, "--out", str(alone)]) == 0
    swept = resode.load(tmp_path / "s" / "runs" / run.id / "model.npz")
    trained = resode.load(alone / "model.npz")
    assert all(np.array_equal(swept.params[k], trained.params[k]) for k in trained.params)
    # the hook sees a worker's read of the file: the test can fail
    client.run(lambda: data.read_bytes())
    assert all(opens for opens in client.run(_opens).values())


def test_progress_lines_off_a_terminal_and_no_rate_without_runs(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    first = sweep.run(_spec(lr=[0.03]), out, client=client, progress=True)
    err = capsys.readouterr().err
    assert err.splitlines() == ["runs 1/2", "runs 2/2"] or err.splitlines() == ["runs 2/2"]
    if importlib.util.find_spec("bokeh") is None:  # no dashboard page: no link to it
        assert "dashboard" not in err
    assert "runs/min" in first.summary
    again = sweep.run(_spec(lr=[0.03]), out, client=client, progress=True)
    assert again.skipped == 2 and "runs/min" not in again.summary
    assert again.summary.endswith(" s") and capsys.readouterr().err == ""
    for r in sweep.expand(_spec(lr=[0.03])):  # no figures unless the spec asks
        assert not list((out / "runs" / r.id).glob("*.png"))


def test_divergence_is_a_result(client: Any, tmp_path: Path) -> None:
    spec = {"base": {**BASE, "optimizer": "sgd", "epochs": 30}, "grid": {"lr": [0.05, 1e30]}}
    result = sweep.run(spec, tmp_path / "s", client=client, progress=False)
    by_lr = {row["lr"]: row for row in result.rows}
    assert by_lr[0.05]["status"] == "ok"
    assert by_lr[1e30]["status"] == "diverged"
    assert by_lr[1e30]["diverged_epoch"] >= 1
    assert "diverged" in by_lr[1e30]["message"]


def test_a_run_that_raises_is_recorded_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (run,) = sweep.expand({"base": BASE})

    def broken(config: Any, out: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(resode.run, "train_run", broken)
    result = _execute(run, tmp_path, _scratch(tmp_path))
    assert result["status"] == "failed" and result["message"] == "RuntimeError: a bug"
    saved = json.loads((tmp_path / "runs" / run.id / "result.json").read_text())
    assert saved["status"] == "failed"
    monkeypatch.undo()  # a failed run is not finished: the next attempt replaces it
    assert _execute(run, tmp_path, _scratch(tmp_path))["status"] == "ok"


def _rows(data: bytes) -> list[dict[str, str]]:
    """history.csv's rows without the time column."""
    rows = list(csv.DictReader(data.decode("utf-8").splitlines()))
    return [{k: v for k, v in row.items() if k != "time"} for row in rows]


def test_a_workers_run_renders_its_files_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = {k: v for k, v in BASE.items() if k != "layers"}
    (run,) = sweep.expand({"base": {**node, "model": "node", "pieces": 3}})
    assert resode.run.train_run(run.config, tmp_path / "disk").status == "ok"
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    in_memory = resode.run.train_run(run.config, None)
    assert synced == []  # nothing written, so nothing to sync (and no file to delete)
    disk = {p.name: p.read_bytes() for p in (tmp_path / "disk").iterdir()}
    assert sorted(in_memory.files) == sorted(disk)
    assert in_memory.files["config.toml"] == disk["config.toml"]
    assert _rows(in_memory.files["history.csv"]) == _rows(disk["history.csv"])
    assert in_memory.files["history.csv"].splitlines()[0] == disk["history.csv"].splitlines()[0]
    history = json.loads(in_memory.files["history.json"])
    assert history.keys() == json.loads(disk["history.json"]).keys()
    memory_run, disk_run = json.loads(in_memory.files["run.json"]), json.loads(disk["run.json"])
    for record in (memory_run, disk_run):
        record["results"].pop("seconds")
    assert memory_run == disk_run
    (tmp_path / "memory.npz").write_bytes(in_memory.files["model.npz"])
    got, want = resode.load(tmp_path / "memory.npz"), resode.load(tmp_path / "disk" / "model.npz")
    assert got.config == want.config
    for k in want.params:
        np.testing.assert_array_equal(got.params[k], want.params[k])


def test_a_run_in_a_worker_thread_keeps_no_state_per_epoch() -> None:
    (run,) = sweep.expand({"base": BASE})
    recorders: list[Any] = []
    original = resode.run.EpochRecorder

    class Spy(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            recorders.append(self)

    box: dict[str, Any] = {}
    resode.run.EpochRecorder = Spy
    try:
        main = resode.run.train_run(run.config, None)
        thread = threading.Thread(target=lambda: box.update(result=sweep.worker.execute(run)))
        thread.start()
        thread.join()
    finally:
        resode.run.EpochRecorder = original
    in_main, in_thread = recorders
    assert in_main.keeps_state and in_main.state is not None
    # Ctrl-C reaches the main thread only: a task thread copies nothing per epoch
    assert not in_thread.keeps_state and in_thread.state is None
    assert in_thread.epoch == in_main.epoch == BASE["epochs"]
    files = box["result"]["files"]
    assert box["result"]["result"]["status"] == main.status == "ok"
    assert json.loads(files["history.json"])["loss"] == main.history.loss
    for k, want in main.model.params.items():  # the same parameters, bitwise
        got = np.load(io.BytesIO(files["model.npz"]))[f"params/{k}"]
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "error",
    [
        resode.StepSizeError("step size 1e-14 below the minimum at t = 0.5"),
        resode.NonFiniteError("the state is not finite at t = 0.25"),
        resode.TrainingDiverged("non-finite loss in epoch 3, batch 1", epoch=3, batch=1),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_run_whose_training_raises_a_divergence_is_diverged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    (run,) = sweep.expand({"base": BASE})

    def diverging(config: Any, out: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(resode.run, "train_run", diverging)
    result = _execute(run, tmp_path, _scratch(tmp_path))
    assert result["status"] == "diverged"
    assert result["message"] == f"{type(error).__name__}: {error}"
    assert result["diverged_epoch"] == getattr(error, "epoch", None)
    monkeypatch.undo()  # a divergence is a result: never run again
    assert _execute(run, tmp_path, _scratch(tmp_path)) == result


def test_a_killed_worker_is_retried_and_the_sweep_completes(client: Any, tmp_path: Path) -> None:
    spec = {"base": {**BASE, "epochs": 300, "n-samples": 400}, "grid": {"lr": [0.01, 0.02]},
            "seeds": 2}  # fmt: skip
    box: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: box.update(result=sweep.run(spec, tmp_path / "s", client=client,
                                                   progress=False, runs_per_task=1))
    )  # fmt: skip
    thread.start()
    deadline = time.time() + 30
    while time.time() < deadline and not client.processing().get(
        next(iter(client.scheduler_info()["workers"]), None)
    ):
        time.sleep(0.05)
    pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)  # the nanny starts a new worker
    thread.join(timeout=180)
    result = box["result"]
    assert result.count("ok") == 4, result.rows


def test_the_driver_killed_mid_sweep_loses_only_the_runs_in_flight(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ndataset = "moons"\nmodel = "resnet"\nlayers = 3\nepochs = 150\n'
                    'n-samples = 300\nno-plots = true\n[grid]\nlr = [0.01, 0.02, 0.03, 0.04]\n'
                    'seeds = 2\n')  # fmt: skip
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "resode", "sweep", str(spec), "--out", str(out), "--workers",
           "2", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("runs/*/result.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its LocalCluster
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert 2 <= len(finished) < 8
    for p in out.glob("runs/*"):  # every run folder is complete
        assert (p / "result.json").is_file() and (p / "model.npz").is_file()
    assert (out / "sweep.lock").is_file()  # the killed driver's: taken over (pid dead)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"skipped (done before) {len(finished)}" in done.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not recomputed
    assert len(list(out.glob("runs/*/result.json"))) == 8
    # the dead driver's scratch folder (its runs in flight) went with its lock
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "runs", "sweep.json"]


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a terminated dask process; kill it if it lingers. (A dask-worker's nanny
    waits 8 s for its worker process before killing it, longer on a loaded machine: how long
    a cluster takes to shut down is not what these tests check.)"""
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def test_a_scheduler_and_workers_started_from_the_command_line(tmp_path: Path) -> None:
    file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(file)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    workers = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not file.exists():
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                 "1", "--host", "127.0.0.1", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        spec = tmp_path / "spec.toml"
        spec.write_text('[base]\ndataset = "moons"\nmodel = "resnet"\nepochs = 3\n'
                        'n-samples = 60\n[grid]\nlayers = [2, 3]\n')  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "resode", "sweep", str(spec), "--out", str(tmp_path / "o"),
             "--scheduler", address, "--no-progress"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "runs 2: ok 2" in proc.stdout
    finally:
        for p in [*workers, scheduler]:
            p.terminate()
        for p in [*workers, scheduler]:
            _reap(p)


# --------------------------------------------------------------------------- scikit-learn


def test_grid_search_on_dask_equals_the_serial_search(client: Any) -> None:
    pytest.importorskip("sklearn")
    import joblib
    from resode.sklearn import NeuralODEClassifier
    from sklearn.model_selection import GridSearchCV

    X, y = resode.datasets.concentric_spheres(120, seed=0)
    est = NeuralODEClassifier(T=2.0, pieces=4, hidden=6, epochs=15, random_state=0)
    grid = {"T": [1.0, 2.0], "hidden": [4, 6]}
    serial = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(X, y)
    with joblib.parallel_config(backend="dask"):
        on_dask = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(X, y)
    assert on_dask.best_params_ == serial.best_params_
    np.testing.assert_array_equal(on_dask.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])  # fmt: skip


def test_estimators_use_one_core_thread_inside_parallel_workers(client: Any) -> None:
    pytest.importorskip("sklearn")
    from resode.sklearn import in_parallel_worker

    assert in_parallel_worker() is False
    assert client.submit(in_parallel_worker, pure=False).result() is True
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(in_parallel_worker()))
    thread.start()
    thread.join()
    assert seen == [True]


def test_tasks_keep_every_worker_busy() -> None:
    runs = sweep.expand({"base": BASE, "seeds": 8})  # seeds only: one grid point
    tasks = sweep.driver.tasks(runs, None, workers=2)
    # two tasks per worker, the last two split into single runs: the workers end together
    assert [len(t) for t in tasks] == [2, 2, 1, 1, 1, 1]
    grid = sweep.expand({"base": BASE, "grid": {"lr": [0.1, 0.2, 0.3, 0.4]}, "seeds": 3})
    tasks = sweep.driver.tasks(grid, None, workers=2)
    assert [len(t) for t in tasks] == [3, 3, 1, 1, 1, 1, 1, 1]
    assert [r.id for t in tasks for r in t] == [r.id for r in grid]  # each run once, in order
    assert [len(t) for t in sweep.driver.tasks(grid, None, workers=8)] == [1] * 12
    assert [len(t) for t in sweep.driver.tasks(grid, 5, workers=2)] == [5, 5, 2]


def _config(keys: list[str]) -> dict[str, Any]:
    import dask

    return {k: dask.config.get(k) for k in keys}


def test_the_sweeps_own_cluster_keeps_dasks_housekeeping_rare() -> None:
    cluster = sweep.driver._local_cluster(1)
    client = dd.Client(cluster)
    try:  # no profiler sampling the runs' stacks every 10 ms, no 20 ms ticks
        got = client.run(_config, list(sweep.driver.QUIET))
        assert list(got.values()) == [sweep.driver.QUIET]
    finally:
        client.close()
        cluster.close()


def test_a_result_named_like_a_grid_option_keeps_both() -> None:
    (run,) = sweep.expand({"base": BASE, "grid": {"epochs": [7]}})
    rows = sweep.results.rows([run], {run.id: {"id": run.id, "status": "diverged", "epochs": 3}})
    assert rows[0]["epochs"] == 7 and rows[0]["epochs_run"] == 3


# --------------------------------------------------------------------------- the sweep folder


@pytest.mark.parametrize("mine", ["tmp/notes.txt", "results.csv", "runs/x/result.json"])
def test_a_folder_that_is_not_a_sweep_folder_is_refused_untouched(
    client: Any, tmp_path: Path, mine: str
) -> None:
    out = tmp_path / "project"  # `--out .` in a project, say
    (out / mine).parent.mkdir(parents=True)
    (out / mine).write_text("mine\n")
    before = _tree(out)
    message = rf"^out {re.escape(str(out))} is not empty and is not a resode sweep folder"
    with pytest.raises(ValueError, match=message):
        sweep.run(ONE, out, client=client, progress=False)
    assert _tree(out) == before
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"^out .*file is a file, not a folder$"):
        sweep.run(ONE, tmp_path / "file", client=client, progress=False)


def test_the_command_refuses_a_folder_that_is_not_a_sweep_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ndataset = "moons"\nmodel = "resnet"\nepochs = 2\nno-plots = true\n')
    out = tmp_path / "project"
    (out / "tmp").mkdir(parents=True)
    (out / "tmp" / "keep.txt").write_text("mine\n")
    code = cli.main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"resode sweep: error: --out {out} is not empty and is not a resode sweep folder (no "
        "sweep.json): give a new or empty folder"
    ]
    assert _tree(out) == {"tmp": None, "tmp/keep.txt": b"mine\n"}


def test_a_sweep_folder_holds_its_spec_and_refuses_another(client: Any, tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep.run(ONE, out, client=client, progress=False)
    marker = json.loads((out / "sweep.json").read_text())
    assert marker["spec"] == ONE and re.fullmatch(r"[0-9a-f]{64}", marker["spec_sha256"])
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "runs", "sweep.json"]
    before = _tree(out)
    other = {"base": {**BASE, "epochs": 3}}
    with pytest.raises(ValueError, match=r"^out .* is the sweep folder of another spec"):
        sweep.run(other, out, client=client, progress=False)
    assert _tree(out) == before
    again = sweep.run(ONE, out, client=client, progress=False)  # its own spec: resumed
    assert again.skipped == 1 and again.count("ok") == 1


def test_a_live_driver_keeps_the_folder_and_its_scratch(client: Any, tmp_path: Path) -> None:
    out = tmp_path / "s"
    sweep.run(ONE, out, client=client, progress=False)
    in_flight = out / ".resode-tmp" / "0123abcd" / "a-run"
    in_flight.mkdir(parents=True)
    (in_flight / "log.txt").write_text("training\n")
    host, pid = socket.gethostname(), os.getpid()  # this live process holds the lock
    live = {
        "host": host,
        "pid": pid,
        "started": sweep.folder.process_started(pid),
        "driver": "0123abcd",
    }
    for holder in (live, {**live, "host": "elsewhere", "pid": 1}):  # elsewhere: cannot tell
        (out / "sweep.lock").write_text(json.dumps(holder))
        before = _tree(out)
        message = rf"in use by another resode sweep \(host {holder['host']}, pid {holder['pid']};"
        with pytest.raises(ValueError, match=message):
            sweep.run(ONE, out, client=client, progress=False)
        assert _tree(out) == before
    (out / "sweep.lock").unlink()
    sweep.run(ONE, out, client=client, progress=False)
    assert (in_flight / "log.txt").read_text() == "training\n"  # another driver's: left alone
    assert [p.name for p in (out / ".resode-tmp").iterdir()] == ["0123abcd"]
    assert not (out / "sweep.lock").exists()


@pytest.mark.parametrize("gone", ["pid dead", "pid reused"])
def test_the_lock_of_a_dead_driver_is_taken_over(client: Any, tmp_path: Path, gone: str) -> None:
    out = tmp_path / "s"
    sweep.run(ONE, out, client=client, progress=False)
    if gone == "pid dead":
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                               capture_output=True, text=True, check=True)  # fmt: skip
        pid, started = int(ended.stdout), None
    else:  # a live process that started after the driver did: not the driver
        pid, started = os.getpid(), 1.0
    stale = {"host": socket.gethostname(), "pid": pid, "started": started, "driver": "dead0001"}
    (out / "sweep.lock").write_text(json.dumps(stale))
    (out / ".resode-tmp" / "dead0001" / "half-a-run").mkdir(parents=True)
    result = sweep.run(ONE, out, client=client, progress=False)
    assert result.skipped == 1
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "runs", "sweep.json"]


def test_an_interrupted_table_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (run,) = sweep.expand(ONE)
    rows = sweep.results.rows([run], {run.id: {"id": run.id, "status": "ok"}})
    sweep.results.write_table(tmp_path, rows)
    table = (tmp_path / "results.csv").read_bytes()

    def interrupted(self: Any, rows: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep.results.write_table(tmp_path, rows)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    assert (tmp_path / "results.csv").read_bytes() == table


# --------------------------------------------------------------------------- data files


def test_a_changed_data_file_is_another_run(client: Any, tmp_path: Path) -> None:
    X, y = resode.datasets.moons(120, seed=0)
    data, validation = tmp_path / "data.csv", tmp_path / "val.csv"
    np.savetxt(data, np.column_stack([X[:80], y[:80]]), delimiter=",")
    np.savetxt(validation, np.column_stack([X[80:], y[80:]]), delimiter=",")
    spec = {"base": {"data": str(data), "validation": str(validation), "model": "resnet",
                     "layers": 2, "epochs": 2, "no-plots": True}}  # fmt: skip
    out = tmp_path / "s"

    def recorded() -> dict[str, Any]:
        (run,) = sweep.expand(spec)
        assert [row["id"] for row in _table(out)] == [run.id]
        return json.loads((out / "runs" / run.id / "result.json").read_text())

    assert sweep.run(spec, out, client=client, progress=False).count("ok") == 1
    first = recorded()
    assert first["resode"] == resode.__version__
    assert first["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert first["validation_sha256"] == hashlib.sha256(validation.read_bytes()).hexdigest()
    np.savetxt(data, np.column_stack([X[:80], 1 - y[:80]]), delimiter=",")  # the data fixed
    again = sweep.run(spec, out, client=client, progress=False)
    assert again.skipped == 0 and again.count("ok") == 1  # trained on the new data
    second = recorded()
    assert second["id"] != first["id"]
    assert second["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert second["validation_sha256"] == first["validation_sha256"]


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_rewrites_the_table_from_the_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {"base": {**BASE, "epochs": 2}, "grid": {"lr": [0.01, 0.05, 0.1]}}

    def interrupted(pending: Any, out: Path, scratch: Path, *rest: Any) -> None:
        for r in pending[:2]:  # two runs finish (the driver has not seen them yet), then ^C
            _execute(r, out, scratch)
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep.driver, "submit", interrupted)
    out = tmp_path / "s"
    with pytest.raises(sweep.SweepInterrupted, match=r"^interrupted: 2 of 3 runs finished") as info:
        sweep.run(spec, out, progress=False)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.finished, info.value.total) == (2, 3)
    assert [row["lr"] for row in _table(out)] == ["0.01", "0.05"]
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "runs", "sweep.json"]


_DRIVER = """import signal, sys

if __name__ == "__main__":  # the LocalCluster's worker processes import this file again
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from resode.cli import main

    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_on_the_command_closes_the_cluster_in_one_line(tmp_path: Path) -> None:
    # two runs finish at once, two would take hours: Ctrl-C comes after the first finished
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ndataset = "moons"\nmodel = "resnet"\nlayers = 3\nn-samples = 1000\n'
                    'no-plots = true\n[grid]\nepochs = [1, 2, 1000000, 1000001]\n')  # fmt: skip
    # `python -m resode` would do, but a shell's background job starts with SIGINT ignored:
    # the driver script restores Python's handler
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    out = tmp_path / "out"
    cmd = [sys.executable, str(driver), "sweep", str(spec), "--out", str(out), "--workers", "2",
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(out.glob("runs/*/result.json")):
            time.sleep(0.05)
        assert list(out.glob("runs/*/result.json")), "no run finished within 180 s"
        with pytest.raises(ValueError, match=rf"in use by another resode sweep \(host .*, pid "
                           rf"{proc.pid};"):  # fmt: skip
            sweep.run(spec, out, progress=False)  # a second driver, while the first runs
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the driver and its workers
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    finished = len(list(out.glob("runs/*/result.json")))
    assert stderr.splitlines() == [
        f"resode sweep: interrupted: {finished} of 4 runs finished; rerun the same command to "
        "continue"
    ]
    table = _table(out)
    assert len(table) == finished and {row["epochs"] for row in table} <= {"1", "2"}
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "runs", "sweep.json"]


# --------------------------------------------------------------------------- TOML, packaging


def test_a_toml_spec_without_a_toml_reader_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ndataset = "moons"\n')
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python < 3.11 without tomli
    monkeypatch.setitem(sys.modules, "tomli", None)
    message = "a TOML spec needs Python >= 3.11 or the tomli package (pip install tomli)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        sweep.load_spec(spec)
    assert cli.main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"resode sweep: error: {message}"]
    assert not (tmp_path / "o").exists()


def test_tomli_is_a_dependency_before_python_3_11() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = sweep.spec.toml().loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert 'tomli>=1.1; python_version < "3.11"' in project["dependencies"]
