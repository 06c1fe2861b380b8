"""One run: :func:`train_run` does what ``resode train`` does, for a :class:`RunConfig`.

It reads or generates the data, builds the model and optimiser, trains with
:func:`resode.fit` and writes into ``out``: ``model.npz``, ``history.csv``, ``history.json``,
``config.toml``, ``run.json`` and the figures (``config.training.plots``). With ``out=None``
nothing is written where the caller can see it: the files come back in memory
(``RunResult.files``), which is how a sweep worker sends a run to its driver.

Every problem found before training (bad data, a model the data do not fit, a folder that
holds another run's model) is a ``ValueError`` raised before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .build import build_model, build_optimizer, label_texts, load_data, prepare
from .config import RunConfig
from .figures import FIGURES, draw

__all__ = ["RunResult", "build_model", "build_optimizer", "label_texts", "load_data", "prepare",
           "train_run"]  # fmt: skip

PROG = "resode"


@dataclass
class RunResult:
    """What :func:`train_run` returns.

    ``status`` is ``"ok"``, ``"diverged"`` (the last finite model and the history so far are
    kept) or ``"interrupted"`` (Ctrl-C: the last finished epoch is kept, with a checkpoint);
    ``results`` is the ``results`` table of ``run.json``; ``files`` holds every file's bytes
    when ``out`` was None (else it is empty).
    """

    config: RunConfig
    out: Path | None
    status: str
    message: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    history: Any = None
    model: Any = None
    files: dict[str, bytes] = field(default_factory=dict)
    folder: str | None = None  # with out=None: the temporary folder the report names

    @property
    def exit_code(self) -> int:
        """``resode train``'s exit status: 0, 1 (diverged) or 130 (interrupted)."""
        return {"ok": 0, "diverged": 1}.get(self.status, 130)


# --------------------------------------------------------------------------- the output folder


def default_out(config: RunConfig) -> Path:
    """``runs/<dataset or data file>-<model>``."""
    d = config.data
    source = Path(d.data).stem if d.data is not None else d.dataset
    return Path(f"runs/{source}-{config.model.model}")


def resume_command(command: str, out: Path, checkpoint: str | os.PathLike[str]) -> str:
    """The command line that continues a run from ``checkpoint``."""
    import shlex

    config, where = shlex.quote(str(out / "config.toml")), shlex.quote(str(out))
    return (
        f"{PROG} {command} --config {config} --out {where} --resume {shlex.quote(str(checkpoint))}"
    )


def _claim(config: RunConfig, out: Path, resume: Path | None, overwrite: bool, command: str,
           setup: Mapping[str, Any]) -> tuple[int, Any]:  # fmt: skip
    """Check ``out`` and ``resume``; returns (epochs resumed, their history)."""
    from .training import check_resumable, load_checkpoint

    model = setup["model"]
    # a run that resumes its own checkpoint continues the model in out; any other run must
    # not replace a trained model there without overwrite
    own = resume is not None and resume.resolve().parent == out.resolve()
    if (out / "model.npz").exists() and not overwrite and not own:
        hint = ""
        if (out / "checkpoint.npz").is_file():  # e.g. a run stopped by Ctrl-C
            hint = f" (to continue its run: {resume_command(command, out, out / 'checkpoint.npz')})"
        raise ValueError(
            f"--out {out} already holds a trained model (model.npz): choose another --out or "
            f"pass --overwrite{hint}"
        )
    if resume is None:
        return 0, None
    if not resume.is_file():
        raise ValueError(f"--resume {resume}: no such file")
    try:
        state = load_checkpoint(resume)
        check_resumable(model, state, fixed_projection=config.model.fixed_projection)
    except ValueError as exc:
        raise ValueError(f"--resume {resume}: {exc}") from None
    seed = config.data.seed
    if state["seed"] != seed:  # the seed also split the data: keep the test set apart
        raise ValueError(
            f"--resume {resume}: the checkpoint was trained with --seed {state['seed']} "
            f"(it chose the train/test split), not {seed}"
        )
    if state["model"].class_labels != model.class_labels:
        raise ValueError(f"--resume {resume}: the checkpoint's class labels differ from the data's")
    return int(state["epoch"]), state["history"]


# --------------------------------------------------------------------------- training


class EpochRecorder:
    """A :func:`resode.fit` callback that keeps the parameters, optimiser state and history
    at the end of the last finished epoch: fit's own history and checkpoint are lost with a
    Ctrl-C (KeyboardInterrupt), and the parameters in the model may be half-way through an
    epoch, so an interrupted run saves this instead."""

    def __init__(self, model: Any, optimizer: Any, resumed: Any) -> None:
        self.model, self.optimizer = model, optimizer
        self.rows: list[dict[str, float]] = []
        self.start = 0
        if resumed is not None:
            self.rows = [{k: resumed[k][i] for k in resumed.keys()} for i in range(len(resumed))]
            self.start = len(resumed)
        self.state: tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
        # Ctrl-C raises KeyboardInterrupt in the main thread only: in another thread (a Dask
        # worker's task) nothing interrupts fit, and copying the state at every epoch (some
        # 5% of a short run) would buy nothing
        self.keeps_state = threading.current_thread() is threading.main_thread()
        self.finished = self.start

    def __call__(self, epoch: int, logs: Mapping[str, float], model: Any) -> None:
        if not self.keeps_state:
            self.rows.append(dict(logs))
            self.finished = epoch
            return
        params = {k: np.array(v, copy=True) for k, v in model.params.items()}
        optimizer = self.optimizer.state_dict()  # copies
        self.rows.append(dict(logs))
        self.state = (epoch, params, optimizer)  # one assignment: all of the epoch or none

    @property
    def epoch(self) -> int:
        """Epochs finished (counting those of a resumed checkpoint)."""
        if not self.keeps_state:
            return self.finished
        return self.start if self.state is None else self.state[0]

    def history(self) -> Any:
        from .training import History

        history = History()
        for row in self.rows[: self.epoch]:
            history.append(row)
        return history

    def restore(self) -> None:
        """Put the state of the last finished epoch back into the model and optimiser."""
        if self.state is not None:
            _, params, optimizer = self.state
            for name, value in params.items():
                self.model.params[name] = value
            self.optimizer.load_state_dict(optimizer)


def _early_stopping(patience: int) -> dict[str, Any]:
    """fit's keyword arguments for early stopping on the validation loss, the best epoch's
    model kept (0: none)."""
    from .training import EarlyStopping

    if not patience:
        return {}
    return {"early_stopping": EarlyStopping(monitor="val_loss", patience=patience,
                                            restore_best=True)}  # fmt: skip


def _checkpoint_path(config: RunConfig, out: Path, resume: Path | None) -> Path | None:
    """Where fit checkpoints: OUT/checkpoint.npz with checkpoint_every, and in a run that
    resumes that file (so it ends at the epoch reached, never stale behind the model)."""
    own = resume is not None and resume.resolve() == (out / "checkpoint.npz").resolve()
    return out / "checkpoint.npz" if config.training.checkpoint_every or own else None


def _fit(config: RunConfig, setup: Mapping[str, Any], out: Path, resume: Path | None,
         progress: bool, recorder: EpochRecorder) -> tuple[Any, str, bool]:  # fmt: skip
    """Run :func:`resode.fit`: (history, divergence message or "", interrupted)."""
    from . import StepSizeError
    from .training import TrainingDiverged, fit

    t = config.training
    X_tr, X_te, t_tr, t_te = setup["data"]
    times_tr, times_te = setup.get("times", (None, None))
    u_tr, u_te = setup.get("inputs", (None, None))
    validation: tuple[Any, ...] = (X_te, t_te) if u_te is None else (X_te, t_te, u_te)
    if times_te is not None:
        validation += (times_te,)
    stopping = _early_stopping(t.early_stopping)
    callbacks = [*stopping.pop("callbacks", []), recorder]
    try:
        history = fit(setup["model"], X_tr, t_tr, u=u_tr, times=times_tr,
                      optimizer=setup["optimizer"], epochs=t.epochs, batch_size=t.batch_size,
                      shuffle=t.shuffle,
                      seed=config.data.seed, validation_data=validation, bound=t.bound,
                      fixed_projection=config.model.fixed_projection, progress=progress,
                      log_every=t.log_every, checkpoint=_checkpoint_path(config, out, resume),
                      checkpoint_every=t.checkpoint_every or 100, resume=resume,
                      callbacks=callbacks, **stopping)  # fmt: skip
    except TrainingDiverged as exc:
        return exc.history, str(exc), False
    except StepSizeError as exc:  # an adaptive solve that failed while scoring an epoch
        message = f"training diverged after epoch {recorder.epoch} (scoring it): {exc}"
        return recorder.history(), message, False
    except KeyboardInterrupt:
        if not recorder.keeps_state:  # not from Ctrl-C; no finished epoch to go back to
            raise
        recorder.restore()
        return recorder.history(), "", True
    return history, "", False


def data_arguments(setup: Mapping[str, Any], part: int) -> dict[str, Any]:
    """The keyword arguments of ``forward`` / ``score`` beside the data of ``setup``'s train
    (``part`` 0) or test (1) part: a neural CDE's ``times``, a neural ODE's inputs ``u`` and
    their ``times``."""
    times = setup.get("times", (None, None))[part]
    u = setup.get("inputs", (None, None))[part]
    return {**({} if u is None else {"u": u}), **({} if times is None else {"times": times})}


def _terminal_loss(model: Any, X: np.ndarray, targets: np.ndarray,
                   arguments: Mapping[str, Any]) -> float | None:  # fmt: skip
    """The data loss of the final states on the training data: no weight decay, no turnpike
    integral (the training error a large-time study compares across T)."""
    from .reference import data_loss

    with np.errstate(over="ignore", invalid="ignore"):  # a diverged model: None, no warning
        outputs = model.forward(X, **arguments).astype(np.float64)
        loss = data_loss(outputs, targets, model.loss)
    return float(loss) if math.isfinite(loss) else None


def _width(model: Any, dim: int) -> str:
    """``2-D`` (points), ``3 channels`` (series) or ``2-D, 3 input channels``."""
    if model.kind == "cde":
        return f"{dim} channels"
    inputs = getattr(model, "inputs", 0)
    return f"{dim}-D" + (f", {inputs} input channel{'s' if inputs > 1 else ''}" if inputs else "")


def describe(model: Any) -> str:
    """``NeuralODE (bottleneck 32, tanh, augment 1, T=5, 10 pieces, rk4)``."""
    field_ = model.field + (f" {model.hidden}" if model.field == "bottleneck" else "")
    if model.kind == "cde":
        steps = model.method + (f" x {model.substeps}" if model.substeps > 1 else "")
        parts = [f"state {model.state}", field_, model.activation, model.interpolation, steps]
        return f"{type(model).__name__} ({', '.join(parts)})"
    parts = [field_, model.activation, f"augment {model.augment}"]
    if model.kind == "node":
        steps = f"{model.pieces} pieces" + (f" x {model.substeps}" if model.substeps > 1 else "")
        parts += [f"T={model.T:g}", steps, model.method]
        if model.inputs:
            parts.append(f"{model.interpolation} inputs")
    else:
        parts += [f"{model.layers} layers", f"h={model.h:g}"]
    return f"{type(model).__name__} ({', '.join(parts)})"


# --------------------------------------------------------------------------- train_run


def train_run(
    config: RunConfig,
    out: str | os.PathLike[str] | None,
    *,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    command: str = "train",
    sources: Mapping[str, str] | None = None,
) -> RunResult:
    """Train the run of ``config`` as ``resode train`` does; write its files into ``out``.

    Parameters
    ----------
    config : RunConfig
    out : path or None
        The run's folder (created; a trained model there is replaced only with
        ``overwrite``), or None: the files come back in ``RunResult.files`` (written in a
        private temporary folder, removed before returning).
    resume : path, optional
        A checkpoint to continue from (written with ``checkpoint_every``, or by Ctrl-C).
    progress : bool
        A progress bar (a terminal) or log lines on stderr.
    command : str
        The command named in the printed report (``train``, ``demo``).
    sources : mapping of str to path, optional
        Local copies to read instead of the configuration's ``data`` / ``validation`` files
        (keyed by the configuration's paths, which the run's files still name): how a sweep
        worker that cannot see the driver's disk reads the files the driver sent it.

    Raises
    ------
    ValueError
        On any problem found before training (bad data or options, a trained model in
        ``out``, a checkpoint of another run); nothing is written then.
    """
    if threads := config.training.threads:
        from . import set_num_threads

        set_num_threads(threads)
    setup = prepare(config, sources)
    if out is None:
        if resume is not None:
            raise ValueError("resume needs an out folder (the run continues there)")
        return _in_memory(config, setup, progress, command)
    out_path = Path(out)
    resume_path = None if resume is None else Path(resume)
    resumed_epochs, resumed = _claim(config, out_path, resume_path, overwrite, command, setup)
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create --out {out_path}: {exc.strerror or exc}") from None
    return _train(config, setup, out_path, resume_path, (resumed_epochs, resumed), progress,
                  command)  # fmt: skip


def _in_memory(config: RunConfig, setup: Mapping[str, Any], progress: bool,
               command: str) -> RunResult:  # fmt: skip
    """Train and return the files' bytes: the outputs rendered in memory (written nowhere:
    no temporary file to sync and delete), the figures and an interrupted run's checkpoint
    through a private temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="resode-run-"))
    try:
        rendered: dict[str, bytes] = {}
        result = _train(config, setup, folder, None, (0, None), progress, command, rendered)
        drawn = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        result.files = dict(sorted({**drawn, **rendered}.items()))
        result.out, result.folder = None, str(folder)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _train(config: RunConfig, setup: Mapping[str, Any], out: Path, resume: Path | None,
           resumed: tuple[int, Any], progress: bool, command: str,
           rendered: dict[str, bytes] | None = None) -> RunResult:  # fmt: skip
    """Train, write the outputs (or render them into ``rendered``) and print the summary."""
    from . import NonFiniteError, StepSizeError

    X_tr, X_te, t_tr, t_te = setup["data"]
    model, optimizer = setup["model"], setup["optimizer"]
    resumed_epochs, resumed_history = resumed
    regression = model.task == "regression"
    d = config.data
    print(f"{PROG} {command}: {describe(model)} on {d.data if d.data is not None else d.dataset} "
          f"({len(X_tr)} train / {len(X_te)} test samples, {_width(model, setup['dim'])}, "
          f"{setup['classes']} "
          f"{'outputs' if regression else 'classes'})", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    recorder = EpochRecorder(model, optimizer, resumed_history)
    history, error, interrupted = _fit(config, setup, out, resume, progress, recorder)
    seconds = time.perf_counter() - t0
    result = RunResult(config, out, "diverged" if error else "ok", error, history=history,
                       model=model)  # fmt: skip
    if interrupted and len(history) == resumed_epochs:
        if resume is None:
            message = "interrupted before the first epoch finished: nothing was written"
        else:
            again = resume_command(command, out, resume)
            message = f"interrupted before an epoch finished; continue with: {again}"
        print(f"{PROG} {command}: {message}", file=sys.stderr)
        result.status = "interrupted"
        return result
    # -- outputs (each written atomically: a Ctrl-C leaves the old file or the new one) -----
    try:
        train_args, test_args = data_arguments(setup, 0), data_arguments(setup, 1)
        train_score = model.score(X_tr, t_tr, **train_args)
        test_score = model.score(X_te, t_te, **test_args)
        train_loss = _terminal_loss(model, X_tr, t_tr, train_args)
    except (NonFiniteError, StepSizeError):  # after a divergence the model may not solve
        train_score = test_score = train_loss = None
    if interrupted:
        _save_interrupted(config, setup, out, history)
    ran = max(len(history) - resumed_epochs, 0)
    metric = "r2" if regression else "accuracy"
    result.results = {
        "epochs": len(history),
        "epochs_this_run": ran,
        "seconds": seconds,
        "final_loss": _finite(history.loss[-1]) if len(history) else None,
        "train_loss": train_loss,
        f"train_{metric}": train_score,
        f"test_{metric}": test_score,
        "diverged": error or None,
        "interrupted": interrupted,
    }
    if rendered is None:
        files = _write_outputs(config, model, optimizer, history, out, command, result.results)
    else:
        rendered.update(_outputs(config, model, optimizer, history, command, result.results))
        files = list(rendered)
    if (out / "checkpoint.npz").is_file() and (
        interrupted or _checkpoint_path(config, out, resume)
    ):
        files.append("checkpoint.npz")
    notes: list[str] = []
    if not error and not interrupted and config.training.plots:
        try:
            written, notes = draw(model, (X_tr, X_te), setup["labels"], history, out,
                                  times=setup.get("times", (None, None))[0],
                                  inputs=setup.get("inputs", (None, None))[0])  # fmt: skip
        except KeyboardInterrupt:
            _interrupted_while_plotting(command, out, files)
            result.status = "interrupted"
            return result
        files += written
    _report(result, resumed_epochs, ran, seconds, notes, files, out)
    if error:
        print(f"{PROG} {command}: error: {error}", file=sys.stderr)
    if interrupted:
        again = resume_command(command, out, out / "checkpoint.npz")
        print(
            f"{PROG} {command}: interrupted after epoch {len(history)} of "
            f"{config.training.epochs}; the model, history and checkpoint are in {out}{os.sep}; "
            f"continue with: {again}",
            file=sys.stderr,
        )
        result.status = "interrupted"
    return result


def _finite(value: float) -> float | None:
    """``value``, None when not finite (as :meth:`History.to_jsonable` writes it)."""
    return value if math.isfinite(value) else None


def _write_outputs(config: RunConfig, model: Any, optimizer: Any, history: Any, out: Path,
                   command: str, results: Mapping[str, Any]) -> list[str]:  # fmt: skip
    from .io import atomic_path, write_text

    model.save(out / "model.npz")
    with atomic_path(out / "history.csv") as tmp:
        history.to_csv(tmp)
    with atomic_path(out / "history.json") as tmp:
        history.to_json(tmp)
    write_text(out / "config.toml", config.to_toml())
    write_text(out / "run.json", _run_json(config, model, optimizer, command, results))
    return ["model.npz", "history.csv", "history.json", "config.toml", "run.json"]


def _run_json(config: RunConfig, model: Any, optimizer: Any, command: str,
              results: Mapping[str, Any]) -> str:  # fmt: skip
    from . import __version__

    run = {
        "resode": __version__,
        "command": command,
        "options": config.options(),
        "kind": model.kind,
        "model": model.config,
        "optimizer": optimizer.config(),
        "class_labels": model.class_labels,
        "results": dict(results),
    }
    return json.dumps(run, indent=2) + "\n"


def _outputs(config: RunConfig, model: Any, optimizer: Any, history: Any, command: str,
             results: Mapping[str, Any]) -> dict[str, bytes]:  # fmt: skip
    """The files of :func:`_write_outputs`, their bytes, written nowhere (``history.csv``
    as :meth:`History.to_csv` writes it, ``history.json`` as :meth:`History.to_json`)."""
    from .io import model_bytes

    keys = history.keys()
    columns = [history[k] for k in keys]
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(keys)
    writer.writerows([repr(v) for v in row] for row in zip(*columns))
    texts = {
        "history.csv": table.getvalue(),
        "history.json": json.dumps(history.to_jsonable(), allow_nan=False) + "\n",
        "config.toml": config.to_toml(),
        "run.json": _run_json(config, model, optimizer, command, results),
    }
    return {"model.npz": model_bytes(model), **{k: v.encode("utf-8") for k, v in texts.items()}}


def _report(result: RunResult, resumed_epochs: int, ran: int, seconds: float,
            notes: list[str], files: list[str], out: Path) -> None:  # fmt: skip
    history, model = result.history, result.model
    regression = model.task == "regression"
    train_score = result.results.get("train_r2" if regression else "train_accuracy")
    test_score = result.results.get("test_r2" if regression else "test_accuracy")
    loss = f", final loss {history.loss[-1]:.4g}" if len(history) else ""
    epochs = f"{ran} epoch{'s' if ran != 1 else ''}"
    if resumed_epochs:
        epochs += f" (resumed at epoch {resumed_epochs}, {len(history)} in all)"
    print(f"trained {epochs} in {seconds:.1f} s{loss}")
    name = "R^2" if regression else "accuracy"
    if train_score is None or test_score is None:
        print(f"{name}: not available (the model's states overflow)")
    elif regression:
        print(f"{name}: train {train_score:.4f}, test {test_score:.4f}")
    else:
        print(f"{name}: train {100 * train_score:.2f}%, test {100 * test_score:.2f}%")
    for note in notes:
        print(note)
    print(f"wrote {out}{os.sep}: {' '.join(files)}", flush=True)


def _save_interrupted(config: RunConfig, setup: Mapping[str, Any], out: Path, history: Any) -> None:
    """The checkpoint of an interrupted run, as fit would have written it at its last epoch."""
    from .training import save_checkpoint

    t = config.training
    settings = {"epochs": t.epochs, "batch_size": t.batch_size, "shuffle": t.shuffle,
                "bound": t.bound, "fixed_projection": config.model.fixed_projection}  # fmt: skip
    save_checkpoint(out / "checkpoint.npz", setup["model"], setup["optimizer"], history,
                    epoch=len(history), seed=config.data.seed, settings=settings)  # fmt: skip


def _interrupted_while_plotting(command: str, out: Path, files: list[str]) -> None:
    import shlex

    drawn = [name for name in FIGURES if (out / name).is_file()]
    again = f"{PROG} plot {shlex.quote(str(out))}" + (" --overwrite" if drawn else "")
    print(f"wrote {out}{os.sep}: {' '.join(files + drawn)}", flush=True)
    print(
        f"{PROG} {command}: interrupted while drawing the figures; the model and history are "
        f"saved; draw the figures with: {again}",
        file=sys.stderr,
    )
