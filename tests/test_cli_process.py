"""The command line as a user runs it: `python -m resode ...` in a child process, judged by its
exit code, its stderr and what it leaves on disk (the in-process cases are in test_cli.py)."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import resode


def _resode(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resode", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data files and a trained checkpoint that the cases below refer to."""
    root = tmp_path_factory.mktemp("cli")
    X, y = resode.datasets.moons(60, noise=0.1, seed=0)
    np.savez(root / "moons.npz", X=X, y=y)
    (root / "ragged.csv").write_text("a,b,c\n1,2,0\n3,4\n")
    Xs, ys = resode.datasets.sine(60, seed=0)
    np.savetxt(root / "sine.csv", np.column_stack([Xs, ys]), delimiter=",", header="x,y",
               comments="")  # fmt: skip
    done = _resode("train", "--data", "moons.npz", "--hidden", "4", "--epochs", "2",
                   "--checkpoint-every", "1", "--no-plots", "--out", "node", cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--data", "ragged.csv"], "line 3: 2 columns, expected 3"),
        (["train", "--data", "missing.csv"], "no such file"),
        (["train", "--model", "resnet", "--pieces", "3"], "--pieces applies to --model node only"),
        (["train", "--field", "inside", "--hidden", "8"], "--hidden applies to --field bottleneck"),
        (["train", "--model", "resnet", "--resume", "node/checkpoint.npz"], "does not match"),
        (["train", "--epochs", "-1"], "--epochs"),
    ],
    ids=["ragged", "missing", "pieces-resnet", "hidden-inside", "resume-other-model", "epochs"],
)
def test_usage_errors_exit_2_with_one_line_and_write_nothing(
    folder: Path, args: list[str], needle: str
) -> None:
    done = _resode(*args, "--out", "fresh", cwd=folder)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert needle in done.stderr and done.stderr.startswith("resode train: error: ")
    assert not (folder / "fresh").exists()


def test_regression_and_predict_through_the_shell(folder: Path) -> None:
    done = _resode("train", "--data", "sine.csv", "--loss", "mse", "--hidden", "8",
                   "--epochs", "20", "--out", "reg", cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "R^2: train" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert lines and lines[-1].startswith("epoch 20/20") and " r2 " in lines[-1]
    done = _resode("predict", "--model", "reg/model.npz", "--data", "sine.csv", "--target", "y",
                   "--out", "p.csv", cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "R^2 on sine.csv" in done.stderr
    assert (folder / "p.csv").read_text().splitlines()[0] == "prediction"
    assert len((folder / "p.csv").read_text().splitlines()) == 61


def test_divergence_exits_1_and_keeps_the_model(folder: Path) -> None:
    done = _resode("train", "--n-samples", "60", "--pieces", "3", "--hidden", "4", "--T",
                   "1e308", "--epochs", "2", "--no-plots", "--out", "big", cwd=folder)  # fmt: skip
    assert done.returncode == 1
    assert "training diverged at epoch 1" in done.stderr and "Traceback" not in done.stderr
    assert (folder / "big" / "model.npz").is_file()


# `python -m resode` with Python's own Ctrl-C handler even when the test runner was started with
# SIGINT ignored (a background job of a shell), as a user's terminal delivers it
_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('resode', run_name='__main__')"
)


def _wait_until(ready, child: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert child.poll() is None, "resode train ended before the test could interrupt it"
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_saves_the_run_and_the_printed_command_resumes_it(folder: Path) -> None:
    log = folder / "ctrl-c.log"
    argv = ["train", "--n-samples", "400", "--pieces", "3", "--hidden", "4", "--epochs",
            "10000000", "--log-every", "1", "--no-plots", "--out", "cut"]  # fmt: skip
    with log.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", _WITH_CTRL_C, *argv], cwd=folder,
                                 stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
        try:
            _wait_until(lambda: "epoch 1/" in log.read_text(), child, 120)
            child.send_signal(signal.SIGINT)  # during a later epoch: 10^7 never end in time
            stdout, _ = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    err = log.read_text()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "checkpoint.npz" in stdout
    line = err.splitlines()[-1]
    assert line.startswith("resode train: interrupted after epoch "), err
    reached = int(line.split("epoch ")[1].split()[0])
    assert reached >= 1
    assert resode.training.load_checkpoint(folder / "cut" / "checkpoint.npz")["epoch"] == reached
    assert len(json.loads((folder / "cut" / "history.json").read_text())["epoch"]) == reached
    resode.load(folder / "cut" / "model.npz")
    command = shlex.split(line.split("continue with: ")[1])
    assert command[:2] == ["resode", "train"] and "--resume" in command
    done = _resode(*command[1:], "--epochs", str(reached + 2), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert f"trained 2 epochs (resumed at epoch {reached}, {reached + 2} in all)" in done.stdout
    history = json.loads((folder / "cut" / "history.json").read_text())
    assert history["epoch"] == list(range(1, reached + 3))


def test_adaptive_step_failure_is_one_line_and_exit_1(folder: Path) -> None:
    argv = ["train", "--n-samples", "60", "--pieces", "3", "--hidden", "4", "--method", "dopri5",
            "--max-steps", "3", "--epochs", "2", "--out", "steps"]  # fmt: skip
    done = _resode(*argv, cwd=folder)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "training diverged at epoch 1" in done.stderr and "max_steps" in done.stderr
    assert (folder / "steps" / "model.npz").is_file()
