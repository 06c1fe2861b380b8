"""``resode train --model cde`` and ``resode predict`` on series files: a .npz with U, times
and y, and a long-format CSV (one row per observation); round trips and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import resode
from resode.build import scale_inputs
from resode.cli import main
from resode.config import RunConfig
from resode.series_files import read_series

_FAST = ["--state", "4", "--hidden", "8", "--epochs", "15", "--no-progress", "--no-plots"]


def _waves(n: int = 30, length: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (n, length, 2), shared times (length,), labels: the frequency of the waves."""
    rng = np.random.default_rng(0)
    times = np.linspace(0.0, 2.0 * np.pi, length)
    y = np.arange(n) % 2
    arg = (1.0 + y)[:, None] * times + rng.uniform(0, 6, n)[:, None]
    return np.stack([np.sin(arg), np.cos(arg)], axis=2), times, y


def _write_csv(path: Path, U: np.ndarray, times: np.ndarray, labels: list[str]) -> None:
    """The long format: id, time, channels, label; missing cells empty, each series' rows in
    reverse time order (the reader sorts them)."""
    rows = []
    for i in range(len(U)):
        for k in reversed(range(U.shape[1])):
            if np.isnan(U[i, k]).all():
                continue
            cells = ["" if np.isnan(v) else repr(float(v)) for v in U[i, k]]
            rows.append(f"s{i},{float(times[k])!r},{','.join(cells)},{labels[i]}")
    path.write_text("id,hours,a,b,label\n" + "\n".join(rows) + "\n")


@pytest.fixture()
def npz(tmp_path: Path) -> Path:
    U, times, y = _waves()
    U[0, 3, 1] = np.nan  # a missing value
    U[4, 7:] = np.nan  # a shorter series
    np.savez(tmp_path / "series.npz", U=U, times=times, y=y)
    return tmp_path / "series.npz"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_and_predict_a_npz(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, _ = _cli(capsys, "train", "--model", "cde", "--data", str(npz), *_FAST,
                        "--interpolation", "linear", "--out", str(run))  # fmt: skip
    assert code == 0 and "NeuralCDE (state 4, bottleneck 8, tanh, linear, rk4)" in out
    assert "3 channels" in out  # the time channel and the two of the file
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "cde" and info["model"]["channels"] == 3
    assert 'model = "cde"' in (run / "config.toml").read_text()
    model = resode.load(run / "model.npz")
    assert isinstance(model, resode.NeuralCDE) and model.interpolation == "linear"
    code, out, err = _cli(capsys, "predict", "--model", str(run), "--data", str(npz))
    assert code == 0 and "accuracy on" in err
    lines = out.strip().splitlines()
    assert lines[0] == "label,p0,p1" and len(lines) == 31
    # the same numbers as the model in Python: the time channel, then the run's scaling
    data = np.load(npz)
    U = resode.models.add_time_channel(data["U"], data["times"])
    proba = model.predict_proba(scale_inputs(model.scaling, U), data["times"])
    got = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.allclose(got, proba, rtol=1e-12, atol=1e-15)
    # the run's config.toml trains the same run again
    again = RunConfig.from_toml(run / "config.toml")
    assert again.model.model == "cde" and again.model.interpolation == "linear"


def test_train_and_predict_a_long_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    U, times, y = _waves()
    U[2, 5, 0] = np.nan
    U[6, 8:] = np.nan
    labels = [["low", "high"][v] for v in y]
    path = tmp_path / "long.csv"
    _write_csv(path, U, times, labels)
    data = read_series(path, id="id", time="hours", target="label", any_labels=True)
    assert data.U.shape == (30, 10, 2) and data.channel_names == ["a", "b"]
    assert np.array_equal(np.isnan(data.U), np.isnan(U))
    assert np.allclose(np.nan_to_num(data.U), np.nan_to_num(U), rtol=0, atol=1e-15)
    assert data.y.tolist() == labels and np.isnan(data.times[6, 8:]).all()
    run = tmp_path / "run"
    code, _, _ = _cli(capsys, "train", "--model", "cde", "--data", str(path), "--id", "id",
                      "--time", "hours", *_FAST, "--out", str(run))  # fmt: skip
    assert code == 0
    model = resode.load(run / "model.npz")
    assert model.class_labels == ["high", "low"] and model.feature_names == ["hours", "a", "b"]
    preds = tmp_path / "pred.csv"
    code, _, err = _cli(capsys, "predict", "--model", str(run), "--data", str(path), "--id",
                        "id", "--time", "hours", "--out", str(preds))  # fmt: skip
    assert code == 0 and "wrote" in err and "accuracy on" in err
    rows = preds.read_text().strip().splitlines()
    assert rows[0] == "label,phigh,plow" and len(rows) == 31
    assert {r.split(",")[0] for r in rows[1:]} <= {"low", "high"}


def test_the_csv_and_the_npz_of_the_same_series_train_the_same_model(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.load(npz)
    path = tmp_path / "long.csv"
    _write_csv(path, data["U"], data["times"], [str(v) for v in data["y"]])
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cli(capsys, "train", "--model", "cde", "--data", str(npz), *_FAST,
                "--out", str(a))[0] == 0  # fmt: skip
    assert _cli(capsys, "train", "--model", "cde", "--data", str(path), "--id", "id",
                "--time", "hours", *_FAST, "--out", str(b))[0] == 0  # fmt: skip
    model_a, model_b = resode.load(a / "model.npz"), resode.load(b / "model.npz")
    for name, value in model_a.params.items():
        assert np.allclose(value, model_b.params[name], rtol=1e-9, atol=1e-12), name


def test_a_run_draws_the_series_figures(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    fast = [a for a in _FAST if a != "--no-plots"]
    code, out, _ = _cli(capsys, "train", "--model", "cde", "--data", str(npz), *fast,
                        "--out", str(run))  # fmt: skip
    assert code == 0
    for name in ("series.png", "hidden_state.png", "decision_along_time.png", "history.png"):
        assert (run / name).stat().st_size > 0 and name in out
    code, out, _ = _cli(capsys, "plot", str(run), "--overwrite")
    assert code == 0 and "series.png" in out


@pytest.mark.parametrize(
    "options", [["--method", "dopri5", "--rtol", "1e-6"], ["--gradient", "adjoint"]]
)
def test_adaptive_methods_and_the_adjoint_train_from_the_command_line(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--model", "cde", "--data", str(npz), *_FAST, *options,
                        "--out", str(run))  # fmt: skip
    assert code == 0, err
    import resode

    model = resode.load(run / "model.npz")
    assert (model.method, model.rtol, model.gradient) == (
        ("dopri5", 1e-6, "discrete") if "--method" in options else ("rk4", None, "adjoint")
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "cde"], "--model cde trains on series: give --data"),
        (["--model", "cde", "--data", "{csv}"], "needs its id column (--id)"),
        (["--data", "{npz}"], "U holds series: use --model cde"),
        (["--model", "cde", "--data", "{npz}", "--rtol", "1e-6"], "--rtol applies to the adaptive"),
        (
            ["--model", "cde", "--data", "{npz}", "--pieces", "2"],
            "--pieces applies to --model node",
        ),
        (["--data", "{npz}", "--state", "3"], "--state applies to --model cde only"),
        (["--model", "cde", "--data", "{npz}", "--id", "id"], "id applies to long-format .csv"),
        (["--model", "cde", "--data", "{bad}", "--id", "id"], "series 's1' has several target"),
        (["--model", "cde", "--data", "{dup}", "--id", "id", "--time", "t"], "two rows at the"),
    ],
)
def test_train_errors_are_one_line_with_exit_2(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    csv = tmp_path / "long.csv"
    csv.write_text("id,t,x,label\na,0,1,0\na,1,2,0\nb,0,1,1\nb,1,3,1\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,t,x,label\ns1,0,1,0\ns1,1,2,1\ns2,0,1,1\ns2,1,3,1\n")
    dup = tmp_path / "dup.csv"
    dup.write_text("id,t,x,label\ns1,0,1,0\ns1,0,2,0\ns2,0,1,1\ns2,1,3,1\n")
    files = {"{csv}": str(csv), "{npz}": str(npz), "{bad}": str(bad), "{dup}": str(dup)}
    argv = [files.get(a, a) for a in argv]
    code, _, err = _cli(capsys, "train", *argv, "--epochs", "1", "--out", str(tmp_path / "o"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_predict_errors_are_one_line_with_exit_2(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, "train", "--model", "cde", "--data", str(npz), *_FAST,
                "--out", str(run))[0] == 0  # fmt: skip
    wide = tmp_path / "wide.npz"
    np.savez(wide, U=np.ones((2, 4, 5)))
    for argv, message in [
        (["--data", str(wide)], "has 5 channels, the model takes 3"),
        (["--data", str(npz), "--time", "t"], "time applies to long-format .csv"),
    ]:
        code, _, err = _cli(capsys, "predict", "--model", str(run), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
