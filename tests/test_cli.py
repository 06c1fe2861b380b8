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
import resode.build
from resode.cli import main

SMALL = ["--n-samples", "60", "--epochs", "3", "--no-progress"]
TINY = [*SMALL, "--pieces", "3", "--hidden", "4"]  # the default model: a bottleneck neural ODE

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
    argv = ["train", *SMALL, "--model", "resnet", "--layers", "3", "--field", "inside",
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
        (["train", "--dataset", "chess", "--noise", "0.1"], "--noise applies to the data sets"),
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
    argv = ["train", *SMALL, "--model", "resnet", "--activation", "relu", "--field", "outside",
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


# --------------------------------------------------------------------------- your own data


def _write_data(tmp_path: Path) -> dict[str, Path]:
    """A classification .npz, a regression .csv with a header, and a labelled .csv."""
    X, y = resode.datasets.moons(80, noise=0.1, seed=0)
    np.savez(tmp_path / "moons.npz", X=X, y=y)
    Xs, ys = resode.datasets.sine(80, seed=0)
    rows = np.column_stack([ys, Xs[:, 0], np.zeros(80)])  # target first, then 2 features
    np.savetxt(tmp_path / "sine.csv", rows, delimiter=",", header="y,x,zero", comments="")
    np.savetxt(tmp_path / "moons.csv", np.column_stack([X, y]), delimiter=",")  # no header
    return {
        "npz": tmp_path / "moons.npz",
        "sine": tmp_path / "sine.csv",
        "csv": tmp_path / "moons.csv",
    }


def test_train_on_npz_and_csv_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _write_data(tmp_path)
    for source in (files["npz"], files["csv"]):
        out = tmp_path / f"run-{source.suffix[1:]}"
        argv = ["train", "--data", str(source), "--epochs", "3", "--no-progress", "--no-plots",
                "--hidden", "4", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        stdout = capsys.readouterr().out
        assert f"on {source}" in stdout and "(64 train / 16 test samples, 2-D, 2 classes)" in stdout
        assert resode.load(out / "model.npz").dim == 2


def test_regression_on_a_csv_with_target_and_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _write_data(tmp_path)
    out = tmp_path / "reg"
    argv = ["train", "--data", str(files["sine"]), "--target", "y", "--features", "x",
            "--loss", "mse", "--epochs", "150", "--hidden", "16", "--no-progress", "--no-plots",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "1 outputs" in stdout and "R^2: train 0.9" in stdout
    model = resode.load(out / "model.npz")
    assert model.task == "regression" and model.classes == 1 and model.dim == 1
    history = json.loads((out / "history.json").read_text())
    assert "r2" in history and "val_r2" in history and "accuracy" not in history
    assert history["r2"][-1] >= 0.9
    # --target by index and --validation instead of a split
    val = tmp_path / "val.csv"
    val.write_text((files["sine"]).read_text())
    argv = ["train", "--data", str(files["sine"]), "--target", "0", "--features", "1",
            "--validation", str(val), "--loss", "mse", "--epochs", "2", "--hidden", "4",
            "--no-progress", "--no-plots", "--out", str(tmp_path / "reg2")]  # fmt: skip
    assert main(argv) == 0
    assert "(80 train / 80 test samples, 1-D, 1 outputs)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        ("a,b,c\n1,2,0\n3,4\n", "line 3: 2 columns, expected 3"),
        ("a,b,c\n1,x,0\n3,4,1\n", "line 2, column 2 ('b'): 'x' is not a number"),
        ("a,b,c\n1,nan,0\n3,4,1\n", "line 2, column 2 ('b'): 'nan' is not finite"),
        ("a,b,c\n1,2,0\n3,4,0\n", "holds 1 class (0); need >= 2"),
        ("1,,0\n3,4,1\n", "line 1, column 2: '' is not a number"),
        ("a,b,c\n1,2,0.5\n3,4,1\n", "integer labels in the target column, got 0.5 "),
        ("a,b,c\n", "no samples (only a header)"),
        ("", "the file is empty"),
    ],
    ids=[
        "missing",
        "ragged",
        "non-numeric",
        "nan",
        "one-class",
        "empty-cell",
        "real-labels",
        "header",
        "empty",
    ],
)
def test_malformed_data_files_exit_2_and_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, needle: str
) -> None:
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    assert main(["train", "--data", str(path), "--no-progress", "--out", str(out)]) == 2
    _one_line_error(capsys, "resode train: error: --data", needle)
    assert not out.exists()


def test_bad_npz_and_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "noy.npz", X=np.zeros((5, 2)))
    files = _write_data(tmp_path)
    cases = [
        (["--data", str(tmp_path / "noy.npz")], "needs an array 'y'"),
        (["--data", str(files["sine"]), "--target", "nope"], "no column 'nope'"),
        (["--data", str(files["csv"]), "--target", "label"], "given by name, but the file has no"),
        (["--data", str(files["csv"]), "--target", "7"], "column index 7 out of range"),
        (["--data", str(files["npz"]), "--target", "0"], "target applies to .csv files"),
        (["--data", str(tmp_path / "x.txt")], "no such file"),
    ]
    for extra, needle in cases:
        assert main(["train", *extra, "--no-progress", "--out", str(tmp_path / "o")]) == 2
        _one_line_error(capsys, needle)
        assert not (tmp_path / "o").exists()


def test_predict_writes_labels_probabilities_and_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _write_data(tmp_path)
    clf, reg = tmp_path / "clf", tmp_path / "reg"
    base = ["--no-progress", "--no-plots", "--hidden", "4", "--epochs", "20"]
    assert main(["train", "--data", str(files["npz"]), *base, "--out", str(clf)]) == 0
    assert main(["train", "--data", str(files["sine"]), "--target", "y", "--features", "x",
                 "--loss", "mse", *base, "--out", str(reg)]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "p.csv"
    argv = ["predict", "--model", str(clf / "model.npz"), "--data", str(files["npz"])]
    assert main([*argv, "--out", str(out)]) == 0
    assert "accuracy on" in capsys.readouterr().err  # the file has labels: scored too
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", "p0", "p1"] and len(rows) == 81
    model = resode.load(clf / "model.npz")
    # --data features are standardised by default; predict applies the model's statistics
    X = resode.build.scale_inputs(model.scaling, np.load(files["npz"])["X"])
    assert [int(r[0]) for r in rows[1:]] == model.predict(X).tolist()
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 1:], model.predict_proba(X))
    assert main(["predict", "--model", str(reg / "model.npz"), "--data", str(files["sine"]),
                 "--target", "y", "--features", "x"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "prediction" and len(lines) == 81
    # a file with the wrong number of features
    assert main(["predict", "--model", str(reg / "model.npz"), "--data", str(files["npz"])]) == 2
    _one_line_error(capsys, "has 2 feature columns, the model takes 1")
    assert (
        main(["predict", "--model", str(tmp_path / "none.npz"), "--data", str(files["npz"])]) == 2
    )
    _one_line_error(capsys, "resode predict: error: --model")


# ------------------------------------------------------------------- options that do not apply


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "resnet", "--pieces", "3"], "--pieces applies to --model node only"),
        (["--model", "resnet", "--turnpike"], "--turnpike applies to --model node only"),
        (["--layers", "4"], "--layers applies to --model resnet only"),
        (["--field", "outside", "--hidden", "4"], "--hidden applies to --field bottleneck only"),
        (["--optimizer", "sgd", "--beta1", "0.8"], "--beta1 applies to --optimizer adam only"),
        (["--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
        (["--gamma", "0.5"], "--gamma applies to --schedule step only"),
        (["--target", "y"], "--target applies with --data only"),
        (["--dataset", "moons", "--dim", "3"], "--dim applies to --dataset spheres only"),
        (["--dataset", "chess", "--noise", "0.1"], "--noise applies to the data sets"),
        (["--max-steps", "50"], "--max-steps applies to the adaptive methods only"),
        (["--first-step", "0.1"], "--first-step applies to the adaptive methods only"),
        (
            ["--model", "resnet", "--max-steps", "5"],
            "--max-steps applies to --model node and cde only",
        ),
    ],
)
def test_options_that_do_not_apply_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    out = tmp_path / "o"
    assert main(["train", *extra, "--out", str(out)]) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


def test_data_options_refuse_generated_data_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _write_data(tmp_path)
    for extra, needle in (
        (["--dataset", "moons"], "--dataset applies to the generated data sets"),
        (["--n-samples", "50"], "--n-samples applies to the generated data sets"),
        (["--validation", str(files["npz"]), "--test-size", "0.3"], "--test-size does not"),
    ):
        assert main(["train", "--data", str(files["npz"]), *extra, "--out", str(tmp_path)]) == 2
        _one_line_error(capsys, needle)


def test_config_written_for_one_model_refuses_nothing_and_reports_its_origin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    assert main(["train", *SMALL, "--model", "resnet", "--field", "inside", "--layers", "3",
                 "--no-plots", "--out", str(out)]) == 0  # fmt: skip
    text = (out / "config.toml").read_text()
    assert "pieces" not in text and "hidden" not in text and "beta1" in text
    again = ["train", "--config", str(out / "config.toml"), "--no-plots", "--out"]
    assert main([*again, str(tmp_path / "again")]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "resnet"\npieces = 4\n')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys, f"--pieces (from --config {bad}) applies to --model node only")


def test_hidden_with_a_field_that_has_none_is_refused_in_python() -> None:
    with pytest.raises(ValueError, match=r"hidden applies to field='bottleneck' only"):
        resode.NeuralODE(2, field="outside", hidden=8)
    with pytest.raises(ValueError, match=r"hidden applies to field='bottleneck' only"):
        resode.ResNet(2, 3, field="inside", hidden=8)


# ------------------------------------------------------------------- resume, divergence, logs


def test_resume_with_another_models_checkpoint_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a"
    assert main(["train", *TINY, "--no-plots", "--checkpoint-every", "1", "--out", str(a)]) == 0
    capsys.readouterr()
    out = tmp_path / "b"
    argv = ["train", *SMALL, "--model", "resnet", "--resume", str(a / "checkpoint.npz"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    _one_line_error(capsys, "--resume", "does not match the model")
    assert not out.exists()
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    argv = ["train", *TINY, "--resume", str(tmp_path / "junk.npz"), "--out", str(out)]
    assert main(argv) == 2
    _one_line_error(capsys, "--resume")
    assert not out.exists()


def test_resumed_summary_counts_this_runs_epochs_and_lists_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    base = ["train", *TINY, "--no-plots", "--checkpoint-every", "1", "--out", str(out)]
    assert main([*base, "--epochs", "2"]) == 0
    first = capsys.readouterr().out
    assert "trained 2 epochs in" in first and "checkpoint.npz" in first.splitlines()[-1]
    assert main([*base, "--epochs", "5", "--resume", str(out / "checkpoint.npz")]) == 0
    stdout = capsys.readouterr().out
    assert "trained 3 epochs (resumed at epoch 2, 5 in all)" in stdout
    assert json.loads((out / "run.json").read_text())["results"]["epochs_this_run"] == 3


def test_overflowing_epoch_loss_is_a_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "big"
    assert main(["train", *TINY, "--T", "1e308", "--no-plots", "--out", str(out)]) == 1
    assert "training diverged at epoch 1" in capsys.readouterr().err


def test_log_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--n-samples", "60", "--epochs", "6", "--pieces", "3", "--hidden", "4",
            "--no-plots", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main([*argv, "--log-every", "2"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["2/6", "4/6", "6/6"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert f"  {key} " in lines[-1]
    assert lines[-1].endswith(" s")
    assert main([*argv, "--overwrite", "--no-progress"]) == 0
    assert "epoch" not in capsys.readouterr().err


def test_data_files_of_other_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = "".join(f"{x},{-x},{int(x > 0)}\n" for x in np.linspace(-1, 1, 40))
    (tmp_path / "bom.csv").write_text("\ufeffx1,x2,label\n" + rows, encoding="utf-8")
    X, y = resode.datasets.load(tmp_path / "bom.csv", target="label", features=["x1", "x2"])
    assert X.shape == (40, 2) and y.shape == (40,)  # Excel's byte-order mark is no text
    (tmp_path / "year.csv").write_text("x,2020,label\n" + rows)
    _, y20 = resode.datasets.load(tmp_path / "year.csv", target="2020", task="regression")
    np.testing.assert_allclose(y20, -np.linspace(-1, 1, 40))  # a header name that is a number
    np.save(tmp_path / "plain.npy", np.zeros((3, 2)))
    (tmp_path / "plain.npy").rename(tmp_path / "fake.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "fake.npz").read_bytes()[:40])
    for bad in ("fake.npz", "cut.npz"):
        assert main(["train", "--data", str(tmp_path / bad), "--out", str(tmp_path / "o")]) == 2
        _one_line_error(capsys, "not a readable .npz archive")
        assert (
            main(["predict", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / bad)])
            == 2
        )
        capsys.readouterr()


def test_a_test_file_may_hold_one_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _write_data(tmp_path)
    X, y = np.load(files["npz"])["X"], np.load(files["npz"])["y"]
    np.savez(tmp_path / "ones.npz", X=X[y == 1], y=y[y == 1])
    out = tmp_path / "r"
    argv = ["train", "--data", str(files["npz"]), "--validation", str(tmp_path / "ones.npz"),
            "--hidden", "4", "--epochs", "2", "--no-plots", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert (
        main(["predict", "--model", str(out / "model.npz"), "--data", str(tmp_path / "ones.npz")])
        == 0
    )
    assert "accuracy on" in capsys.readouterr().err
    # a CSV with one column too many: the target must be named, never guessed
    assert main(["predict", "--model", str(out / "model.npz"), "--data", str(files["csv"])]) == 2
    _one_line_error(capsys, "if one column is the target, name it with --target")


def test_resume_guards_other_models_and_the_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, other = tmp_path / "a", tmp_path / "other"
    assert main(["train", *TINY, "--no-plots", "--checkpoint-every", "1", "--out", str(a)]) == 0
    assert main(["train", *TINY, "--no-plots", "--seed", "3", "--out", str(other)]) == 0
    capsys.readouterr()
    before = (other / "model.npz").read_bytes()
    resume = ["train", *TINY, "--no-plots", "--resume", str(a / "checkpoint.npz")]
    assert main([*resume, "--out", str(other)]) == 2  # another run's model: --overwrite needed
    _one_line_error(capsys, "already holds a trained model")
    assert (other / "model.npz").read_bytes() == before
    assert main([*resume, "--seed", "5", "--out", str(a)]) == 2  # another train/test split
    _one_line_error(capsys, "trained with --seed 0 (it chose the train/test split), not 5")


def test_more_options_that_do_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--model", "resnet", "--h", "0.5", "--T", "3"], "--T does not apply with --h"),
        (["--no-progress", "--log-every", "3"], "--log-every does not apply with --no-progress"),
    ]
    for extra, needle in cases:
        assert main(["train", *extra, "--out", str(tmp_path / "o")]) == 2
        _one_line_error(capsys, needle)


def test_config_stores_absolute_data_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data", "moons.npz", "--hidden", "4", "--epochs", "1", "--no-plots",
            "--no-progress", "--out", "r"]  # fmt: skip
    assert main(argv) == 0
    assert f'data = "{tmp_path / "moons.npz"}"' in (tmp_path / "r" / "config.toml").read_text()
    monkeypatch.chdir(tmp_path / "r")  # rerun from another folder, as config.toml says
    assert main(["train", "--config", "config.toml", "--no-progress", "--out", "again"]) == 0
    capsys.readouterr()


def test_zero_epochs_write_no_history_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "z"
    assert (
        main(
            ["train", *SMALL, "--pieces", "3", "--hidden", "4", "--epochs", "0", "--out", str(out)]
        )
        == 0
    )
    assert "history.png skipped: no epoch ran" in capsys.readouterr().out
    assert not (out / "history.png").exists() and (out / "controls.png").is_file()


# ------------------------------------------------------------------- files never replaced


def test_predict_refuses_an_existing_out_and_never_writes_over_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _write_data(tmp_path)
    run = tmp_path / "clf"
    argv = ["train", "--data", str(files["csv"]), "--no-progress", "--no-plots", "--hidden", "4",
            "--epochs", "2", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    predict = ["predict", "--model", str(run / "model.npz"), "--data", str(files["csv"]),
               "--target", "-1"]  # fmt: skip
    kept = tmp_path / "kept.csv"
    kept.write_text("mine\n")
    assert main([*predict, "--out", str(kept)]) == 2
    _one_line_error(capsys, f"--out {kept} already exists", "--overwrite")
    assert kept.read_text() == "mine\n"
    data = files["csv"].read_bytes()
    same = tmp_path / "." / files["csv"].name  # the --data file, spelt another way
    for extra in ([], ["--overwrite"]):
        assert main([*predict, "--out", str(same), *extra]) == 2
        _one_line_error(capsys, "is the --data file")
        assert files["csv"].read_bytes() == data
    assert main([*predict, "--out", str(run / "model.npz"), "--overwrite"]) == 2
    _one_line_error(capsys, "is the --model file")
    assert main([*predict, "--out", str(kept), "--overwrite"]) == 0
    assert kept.read_text().startswith("label,p0,p1\n") and len(kept.read_text().split()) == 81
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    capsys.readouterr()


@pytest.mark.parametrize(
    ("line", "flag"),
    [
        ('out = "elsewhere"', "--out"),
        ("overwrite = true", "--overwrite"),
        ('resume = "elsewhere/checkpoint.npz"', "--resume"),
    ],
)
def test_a_config_file_cannot_choose_where_files_are_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    line: str, flag: str
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "shared.toml").write_text(f"epochs = 1\n[output]\n{line}\n")
    assert main(["train", "--config", "shared.toml", *TINY, "--no-plots"]) == 2
    _one_line_error(capsys, "--config shared.toml:", "command-line option only", flag)
    assert list((tmp_path / "elsewhere").iterdir()) == [] and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------- Ctrl-C and resode plot


def test_interrupted_training_saves_its_last_epoch_and_resumes_bit_for_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    base = ["train", *TINY, "--epochs", "5", "--batch-size", "16", "--no-plots"]
    full = tmp_path / "full"
    assert main([*base, "--out", str(full)]) == 0
    epochs = resode.training.loop.run_epoch
    calls = []

    def ctrl_c_in_epoch_3(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:  # part of the epoch's steps done, as a real Ctrl-C finds it
            epochs(*args, **kwargs)
            raise KeyboardInterrupt
        return epochs(*args, **kwargs)

    monkeypatch.setattr(resode.training.loop, "run_epoch", ctrl_c_in_epoch_3)
    out = tmp_path / "cut"
    capsys.readouterr()
    assert main([*base, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted after epoch 2 of 5" in err and "Traceback" not in err
    assert resode.training.load_checkpoint(out / "checkpoint.npz")["epoch"] == 2
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2]
    assert json.loads((out / "run.json").read_text())["results"]["interrupted"] is True
    resode.load(out / "model.npz")
    monkeypatch.setattr(resode.training.loop, "run_epoch", epochs)
    command = shlex.split(err.split("continue with: ")[1])
    assert command[:2] == ["resode", "train"]
    assert main(command[1:]) == 0  # the printed command continues to the 5 epochs asked for
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2, 3, 4, 5]
    # the checkpoint it resumed from moved on with the model (a later --resume is not stale)
    assert resode.training.load_checkpoint(out / "checkpoint.npz")["epoch"] == 5
    done, resumed = resode.load(full / "model.npz"), resode.load(out / "model.npz")
    assert all(np.array_equal(done.params[k], resumed.params[k]) for k in done.params)
    capsys.readouterr()


def test_interrupt_before_the_first_epoch_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(resode.training.loop, "run_epoch", ctrl_c)
    out = tmp_path / "o"
    assert main(["train", *TINY, "--out", str(out)]) == 130
    assert "before the first epoch finished: nothing was written" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_interrupted_plots_leave_no_partial_figure_and_resode_plot_draws_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    save = Image.Image.save

    def ctrl_c_while_writing(self: Any, fp: Any, *args: Any, **kwargs: Any) -> None:
        Path(fp).write_bytes(b"GIF89a")  # the start of the file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", ctrl_c_while_writing)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"draw the figures with: resode plot {out}" in err and "--overwrite" not in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.npz", "history.csv", "history.json", "config.toml", "run.json"]
    )  # no trajectories.gif at all, empty or partial, and no temporary file
    monkeypatch.setattr(Image.Image, "save", save)
    assert main(["train", *TINY, "--out", str(out)]) == 2  # the model is kept: never replaced
    _one_line_error(capsys, "already holds a trained model")
    assert main(["plot", str(out)]) == 0
    for name in PLOTS:
        with Image.open(out / name) as im:
            im.verify()
    before = (out / "history.png").read_bytes()
    assert main(["plot", str(out)]) == 2
    _one_line_error(capsys, "resode plot: error:", "already holds trajectories.gif", "--overwrite")
    assert (out / "history.png").read_bytes() == before
    assert main(["plot", str(out), "--overwrite"]) == 0
    assert main(["plot", str(tmp_path)]) == 2
    _one_line_error(capsys, "has no model.npz")


# ------------------------------------------------------------------- labels, adaptive options


def test_labels_that_are_not_0_to_k_minus_1_are_mapped_never_invented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = resode.datasets.moons(80, noise=0.1, seed=0)
    for labels in ([1, 2], [-1, 1], [3, 70000]):
        data = tmp_path / f"labels{labels[0]}.csv"
        rows = np.column_stack([X, np.array(labels)[y]])
        np.savetxt(data, rows, delimiter=",", header="x1,x2,label", comments="", fmt="%.17g")
        out = tmp_path / f"run{labels[0]}"
        argv = ["train", "--data", str(data), "--hidden", "4", "--epochs", "30", "--no-plots",
                "--no-progress", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        assert "2-D, 2 classes)" in capsys.readouterr().out
        model = resode.load(out / "model.npz")
        assert model.classes == 2 and model.class_labels == labels
        assert json.loads((out / "run.json").read_text())["class_labels"] == labels
        predictions = tmp_path / f"p{labels[0]}.csv"
        argv = ["predict", "--model", str(out / "model.npz"), "--data", str(data),
                "--target", "label", "--out", str(predictions)]  # fmt: skip
        assert main(argv) == 0
        assert "accuracy on" in capsys.readouterr().err
        with predictions.open(newline="") as f:
            table = list(csv.reader(f))
        assert table[0] == ["label", f"p{labels[0]}", f"p{labels[1]}"]
        predicted = [int(row[0]) for row in table[1:]]
        assert set(predicted) <= set(labels)
        expected = np.array(labels)[model.predict(resode.build.scale_inputs(model.scaling, X))]
        assert predicted == expected.tolist()
    # --classes cannot add a class that no label names
    argv = ["train", "--data", str(tmp_path / "labels1.csv"), "--classes", "3", "--out",
            str(tmp_path / "x")]  # fmt: skip
    assert main(argv) == 2
    _one_line_error(capsys, "--classes 3: the data's 2 labels (1, 2) are 2 classes")


def test_load_refuses_labels_that_do_not_number_classes_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,2,0\n3,4,1e13\n5,6,-1\n")
    with pytest.raises(ValueError, match="integer labels >= 0"):
        resode.datasets.load(path)
    _, y = resode.datasets.load(path, any_labels=True)
    assert y.tolist() == [0, 10**13, -1]


def test_adaptive_step_options_reach_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a"
    argv = ["train", *TINY, "--epochs", "1", "--method", "dopri5", "--max-steps", "5000",
            "--first-step", "0.01", "--no-plots", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    model = resode.load(out / "model.npz")
    assert model.max_steps == 5000 and model.first_step == 0.01
    text = (out / "config.toml").read_text()
    assert "max-steps = 5000" in text and "first-step = 0.01" in text
    assert main(["train", "--config", str(out / "config.toml"), "--out", str(tmp_path / "b")]) == 0
    assert resode.load(tmp_path / "b" / "model.npz").config == model.config
    # unset, they are left out of check_train's options: sweeps keep their runs' ids
    assert "max_steps" not in resode.cli.check_train(["--n-samples", "60"])
    capsys.readouterr()


def test_step_size_failure_is_a_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    argv = ["train", *TINY, "--method", "dopri5", "--max-steps", "3", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        err.startswith("resode train: error: training diverged at epoch 1") and "max_steps" in err
    )
    assert resode.load(out / "model.npz").max_steps == 3
    assert json.loads((out / "run.json").read_text())["results"]["diverged"]


def test_text_labels_are_classes_with_or_without_a_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = resode.datasets.moons(80, noise=0.1, seed=0)
    names = np.array(["setosa", "virginica, var."])  # a comma: the CSV quotes it
    body = "".join(f'{a:.17g},{b:.17g},"{names[k]}"\n' for (a, b), k in zip(X, y))
    (tmp_path / "named.csv").write_text("x1,x2,species\n" + body)
    (tmp_path / "bare.csv").write_text(body)
    _, labels = resode.datasets.load(tmp_path / "bare.csv", any_labels=True)
    assert labels.tolist() == names[y].tolist()  # no first row taken for a header
    for source in ("named.csv", "bare.csv"):
        out = tmp_path / source.replace(".csv", "")
        argv = ["train", "--data", str(tmp_path / source), "--hidden", "4", "--epochs", "30",
                "--no-plots", "--no-progress", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        assert "(64 train / 16 test samples, 2-D, 2 classes)" in capsys.readouterr().out
        assert resode.load(out / "model.npz").class_labels == names.tolist()
        predictions = tmp_path / f"p-{source}"
        argv = ["predict", "--model", str(out / "model.npz"), "--data", str(tmp_path / source),
                "--target", "-1", "--out", str(predictions)]  # fmt: skip
        assert main(argv) == 0
        assert "accuracy on" in capsys.readouterr().err
        with predictions.open(newline="") as f:
            table = list(csv.reader(f))
        assert table[0] == ["label", "psetosa", "pvirginica, var."] and len(table) == 81
        model = resode.load(out / "model.npz")
        scaled = resode.build.scale_inputs(model.scaling, X)  # --scale standard by default
        assert [row[0] for row in table[1:]] == names[model.predict(scaled)].tolist()
    with pytest.raises(ValueError, match="'setosa' is not a number"):
        resode.datasets.load(tmp_path / "bare.csv")  # text labels only where asked for
