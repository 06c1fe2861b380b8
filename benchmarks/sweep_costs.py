"""Where a short sweep run's time goes, in CPU milliseconds per run:
`python benchmarks/sweep_costs.py [runs]`.

CPU time, not wall time: it stays meaningful on a loaded machine (a shared machine inflates it
a little, uniformly; compare figures of one invocation). For the runs of
`resode sweep --experiment large-time` (the first `runs`, default 24), it prints

* the worker's side of a run, in this process: `execute` (what a Dask task does per run) and
  its parts: `prepare` (data, model, optimiser), the `fit`, the artefacts (files rendered or
  written and read back), `record` (result.json), the rest;
* the driver's side of a run: `save` (the run's files into `OUT/runs/<id>/`) and the table
  (`results.csv`, as often as the driver writes it);
* Dask's own cost per task, on a LocalCluster of one worker: the driver process (client and
  scheduler) and the worker process, for an empty task and for a task returning the files of
  a run of the study;
* the sweep's fixed costs: expanding the spec, starting and closing the LocalCluster, and
  Dask's housekeeping (CPU per second of the idle cluster: ticks, monitors, profiler).

The speed-up of 2 workers against 1 is `benchmarks/sweep.py --experiment large-time` (wall
time: an idle machine).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import resode.run
import resode.sweep
import resode.training
from resode.sweep import driver, results, worker

SPEC = Path(resode.__file__).parent / "experiments" / "large_time.toml"

#: (module, attribute): the worker's parts timed inside `execute`.
PARTS = {
    "prepare": (resode.run, "prepare"),
    "fit": (resode.training, "fit"),
    "  fit's callback EpochRecorder": (resode.run.EpochRecorder, "__call__"),
    "artefacts": (resode.run, "_outputs" if hasattr(resode.run, "_outputs") else "_write_outputs"),
    "record": (worker, "record"),
}


def _timed(spent: dict[str, float], name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - t

    return wrapper


def worker_side(runs: list[Any]) -> dict[str, float]:
    """CPU ms per run of `execute` and its parts (the median run of each), in a thread that
    is not the main thread, as in a Dask worker."""
    box: dict[str, dict[str, float]] = {}
    thread = threading.Thread(target=lambda: box.update(costs=_worker_side(runs)))
    thread.start()
    thread.join()
    return box["costs"]


def _worker_side(runs: list[Any]) -> dict[str, float]:
    worker.execute(runs[0])  # imports, first calls
    per_run: dict[str, list[float]] = {}
    saved = {}
    for name, (module, attr) in PARTS.items():
        if hasattr(module, attr):
            saved[name] = getattr(module, attr)
    try:
        for r in runs:
            spent: dict[str, float] = {}
            for name, f in saved.items():
                module, attr = PARTS[name]
                setattr(module, attr, _timed(spent, name, f))
            t, wall = time.thread_time(), time.perf_counter()
            worker.execute(r)
            spent["execute"] = time.thread_time() - t
            inside = sum(v for k, v in spent.items() if k != "execute" and not k.startswith(" "))
            spent["rest"] = spent["execute"] - inside
            spent["execute - fit (the overhead)"] = spent["execute"] - spent["fit"]
            spent["execute (wall; waits on the disk)"] = time.perf_counter() - wall
            for k, v in spent.items():
                per_run.setdefault(k, []).append(1e3 * v)
    finally:
        for name, f in saved.items():
            module, attr = PARTS[name]
            setattr(module, attr, f)
    return {k: statistics.median(v) for k, v in per_run.items()}


def driver_side(runs: list[Any]) -> dict[str, float]:
    """CPU ms per run of the driver's `save` and of rewriting the table every 2 s."""
    artefacts = [worker.execute(r) for r in runs]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        scratch = out / ".resode-tmp" / "bench"
        scratch.mkdir(parents=True)
        table: dict[str, Any] = {}
        t = time.thread_time()
        for a in artefacts:
            table[a["id"]] = driver.save(out, scratch, a)
        save = (time.thread_time() - t) / len(runs)
        t = time.thread_time()
        results.write_table(out, results.rows(runs, table))
        write = time.thread_time() - t
    return {"save": 1e3 * save, "table (one write, all rows)": 1e3 * write}


def _empty() -> None:
    return None


def _files(artefact: dict[str, Any]) -> dict[str, Any]:
    return artefact


def dask_side(artefact: dict[str, Any], tasks: int = 100) -> dict[str, float]:
    """CPU ms per task of the driver process and the worker process (one worker)."""
    import psutil
    from dask.distributed import Client, wait

    cluster = driver._local_cluster(1)
    client = Client(cluster)
    try:
        (pid,) = client.run(lambda: __import__("os").getpid()).values()
        process, me = psutil.Process(pid), psutil.Process()

        def cpu(p: Any) -> float:
            t = p.cpu_times()
            return float(t.user + t.system)

        out = {}
        for name, f, args in (("empty task", _empty, ()), ("task returning a run", _files,
                                                              (artefact,))):  # fmt: skip
            wait(client.submit(f, *args, pure=False))
            d, w = cpu(me), cpu(process)
            t = time.perf_counter()
            for fut in [client.submit(f, *args, pure=False) for _ in range(tasks)]:
                fut.result()
            wall = time.perf_counter() - t
            out[f"{name}: driver"] = 1e3 * (cpu(me) - d) / tasks
            out[f"{name}: worker"] = 1e3 * (cpu(process) - w) / tasks
            out[f"{name}: wall"] = 1e3 * wall / tasks
        return out
    finally:
        client.close()
        cluster.close()


def _process_cpu() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def fixed(idle: float = 3.0) -> dict[str, float]:
    """Expanding the spec (CPU ms); a LocalCluster of 2 workers started and closed (wall ms:
    the workers' start-up runs in other processes) and its housekeeping while idle (CPU ms
    per second, the workers and the driver together)."""
    from dask.distributed import Client

    t = time.process_time()
    resode.sweep.expand(SPEC)
    expand = time.process_time() - t
    t = time.perf_counter()
    cluster = driver._local_cluster(2)
    client = Client(cluster)
    up = time.perf_counter() - t
    time.sleep(1.0)
    before = sum(client.run(_process_cpu).values()) + _process_cpu()
    time.sleep(idle)
    after = sum(client.run(_process_cpu).values()) + _process_cpu()
    t = time.perf_counter()
    client.close()
    cluster.close()
    down = time.perf_counter() - t
    return {"expand (CPU)": 1e3 * expand, "cluster of 2 up (wall)": 1e3 * up,
            "cluster of 2 idle (CPU ms per s)": 1e3 * (after - before) / idle,
            "cluster of 2 closed (wall)": 1e3 * down}  # fmt: skip


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    runs = resode.sweep.expand(SPEC)[:n]
    print(f"CPU ms per run, the median of {n} runs of {SPEC.name}")
    print("worker side (execute and its parts):")
    for k, v in worker_side(runs).items():
        print(f"  {k:<32} {v:8.2f}")
    print("driver side:")
    for k, v in driver_side(runs).items():
        print(f"  {k:<32} {v:8.2f}")
    print("Dask, per task (one worker):")
    for k, v in dask_side(worker.execute(runs[0])).items():
        print(f"  {k:<32} {v:8.2f}")
    print("fixed, per sweep:")
    for k, v in fixed().items():
        print(f"  {k:<32} {v:8.1f}")


if __name__ == "__main__":
    main()
