"""Tests for the ``resode`` command line (resode.cli.main), end to end with tiny runs."""

from __future__ import annotations

import csv
import json
import runpy
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode.cli import main

TINY = [
    "--n-samples", "60", "--epochs", "3", "--pieces", "3", "--hidden", "4", "--no-progress",
]  # fmt: skip

PLOTS = ["trajectories.gif", "decision_boundary.png", "history.png", "controls.png",
         "state_norm.png"]  # fmt: skip


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_train_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    out = tmp_path / "run"
    assert main(["train", *TINY, "--seed", "1", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "accuracy: train" in stdout and "test" in stdout and "trained 3 epochs" in stdout
    for name in PLOTS:
        with Image.open(out / name) as im:
            im.verify()
    model = resode.load(out / "model.npz")
    assert isinstance(model, resode.NeuralODE) and model.pieces == 3 and model.hidden == 4
    with (out / "history.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["epoch", "loss", "accuracy"] and len(rows) == 4
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2, 3]
    run = json.loads((out / "run.json").read_text())
    assert run["results"]["epochs"] == 3 and run["model"] == model.config
    assert 0.0 <= run["results"]["test_accuracy"] <= 1.0

    # config.toml reproduces the run bit for bit
    again = tmp_path / "again"
    cfg = out / "config.toml"
    assert main(["train", "--config", str(cfg), "--out", str(again), "--no-plots"]) == 0
    assert "skipped" not in capsys.readouterr().out
    rerun = resode.load(again / "model.npz")
    assert all(np.array_equal(rerun.params[k], v) for k, v in model.params.items())


def test_resnet_mse_float32_3d_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "r"
    argv = ["train", *TINY, "--model", "resnet", "--layers", "3", "--field", "inside",
            "--loss", "mse", "--dtype", "float32", "--dim", "3", "--optimizer", "sgd",
            "--momentum", "0.9", "--lr", "0.1", "--schedule", "cosine", "--bound", "2",
            "--fixed-projection", "--threads", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "decision_boundary.png skipped" in stdout  # 3-D inputs
    model = resode.load(out / "model.npz")
    assert isinstance(model, resode.ResNet) and model.dtype == np.float32 and model.dim == 3
    assert model.h == pytest.approx(5.0 / 3)  # default h = T / layers
    for name in set(PLOTS) - {"decision_boundary.png"}:
        assert (out / name).is_file()


def test_demo_runs_quickly_with_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert (
        main(["demo", "--n-samples", "80", "--epochs", "2", "--no-plots", "--out", str(out)]) == 0
    )
    stdout = capsys.readouterr().out
    assert stdout.startswith("resode demo: NeuralODE (bottleneck 32, relu, augment 1")
    assert (out / "model.npz").is_file()


def test_config_file_and_flag_precedence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'dataset = "moons"\nn_samples = 50\nno-plots = true\nno-progress = true\n'
        '[model]\nmodel = "resnet"\nlayers = 2\nfield = "outside"\n'
        "[training]\nepochs = 4\nlr = 0.05\n"
    )
    out = tmp_path / "o"
    assert main(["train", "--config", str(cfg), "--epochs", "2", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["options"]["dataset"] == "moons" and run["options"]["epochs"] == 2
    assert run["options"]["lr"] == 0.05 and run["kind"] == "resnet"
    assert run["results"]["epochs"] == 2
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("colour = 1\n", "unknown option 'colour'"),
        ("epochs = 2.5\n", "--epochs: expected an integer"),
        ("epochs = -1\n", "--epochs: must be >= 0"),
        ('activation = "swish"\n', "--activation must be one of"),
        ('turnpike = "yes"\n', "turnpike must be true or false"),
        ("lr = [1, 2]\n", "lr must be a string or a number"),
        ("epochs = \n", "not valid TOML"),
    ],
)
def test_bad_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert main(["train", "--config", str(cfg)]) == 2
    _one_line_error(capsys, "resode train: error:", needle)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--hidden", "0"], "--hidden: must be >= 1"),
        (["train", "--dataset", "circles"], "invalid choice"),
        (["train", "--lr", "fast"], "expected a number"),
        (["train", "--test-size", "1.5"], "must be in (0, 1)"),
        (["train", "--T", "nan"], "must be finite"),
        (["train", "--unknown-flag"], "unrecognized arguments"),
        (["train", "--dim", "3", "--dataset", "moons"], "--dim applies to --dataset spheres"),
        (["train", "--noise", "0.1"], "--noise applies to moons and spirals"),
        (["train", "--classes", "1"], "--classes 1 is too small"),
        (["train", "--momentum", "0.9"], "--momentum applies to --optimizer sgd"),
        (["train", "--config", "/nonexistent/run.toml"], "cannot read --config"),
        (["train", "--resume", "/nonexistent/ckpt.npz"], "--resume"),
        (["demo", "--n-samples", "4", "--test-size", "0.9", "--batch-size", "0"], "batch-size"),
        (["fly"], "invalid choice"),
        ([], "required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    argv = [*argv, "--out", str(tmp_path / "x")] if argv[:1] in (["train"], ["demo"]) else argv
    assert main(argv) == 2
    _one_line_error(capsys, "error:", needle)


def test_library_value_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError / TypeError that the library raises while setting up is a usage error."""

    def refuse(n: int, **kwargs: Any) -> Any:
        raise ValueError("n must be even for this data set")

    monkeypatch.setitem(resode.datasets.DATASETS, "spheres", refuse)
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, "resode train: error: n must be even")


def test_divergence_exits_1_and_keeps_the_finite_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "div"
    argv = ["train", *TINY, "--model", "resnet", "--activation", "relu", "--field", "outside",
            "--optimizer", "sgd", "--lr", "1e30", "--epochs", "50", "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "resode train: error: training diverged at" in captured.err
    model = resode.load(out / "model.npz")
    assert all(np.isfinite(v).all() for v in model.params.values())
    assert json.loads((out / "run.json").read_text())["results"]["diverged"]


def test_checkpoint_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["train", *TINY, "--no-plots", "--batch-size", "16"]
    assert main([*base, "--epochs", "4", "--out", str(a)]) == 0
    assert main([*base, "--epochs", "2", "--checkpoint-every", "1", "--out", str(b)]) == 0
    ckpt = b / "checkpoint.npz"
    assert main([*base, "--epochs", "4", "--resume", str(ckpt), "--out", str(b)]) == 0
    full, resumed = resode.load(a / "model.npz"), resode.load(b / "model.npz")
    assert all(np.array_equal(full.params[k], resumed.params[k]) for k in full.params)
    capsys.readouterr()


def test_missing_matplotlib_skips_plots_with_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "np"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "plots skipped: matplotlib is not installed" in stdout
    assert not (out / "history.png").exists() and (out / "model.npz").is_file()


def test_bench(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    fake = types.ModuleType("resode.bench")
    fake.run = lambda quick=True: calls.append(quick) or "| case | time |"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "resode.bench", fake)
    monkeypatch.setattr(resode, "bench", fake, raising=False)
    assert main(["bench"]) == 0 and main(["bench", "--full"]) == 0
    assert calls == [True, False]
    assert "| case | time |" in capsys.readouterr().out


def test_help_version_and_python_m(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"resode {resode.__version__}"
    assert main(["train", "--help"]) == 0
    assert "--batch-size" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["resode", "--version"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("resode", run_name="__main__")
    assert info.value.code == 0
    capsys.readouterr()
