"""``resode train --model node`` and ``resode predict`` on a .npz with inputs: ``X`` the
initial states, ``U`` (N, L, C) the inputs u(t), ``times`` and ``y``; round trips, the run's
config.toml and sweep specs, and one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import resode
from resode.build import scale_inputs, scale_series
from resode.cli import main
from resode.config import RunConfig

_FAST = ["--pieces", "3", "--hidden", "4", "--epochs", "5", "--no-progress", "--no-plots"]


def _driven(n: int = 24, length: int = 6) -> dict[str, np.ndarray]:
    """X (n, 2), U (n, length, 2) with a missing value and a shorter series, per-sample
    times (n, length), labels: the sign of the first channel's mean."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))
    U = rng.normal(size=(n, length, 2))
    y = (np.nanmean(U[:, :, 0], axis=1) > 0).astype(np.int64)
    times = np.sort(rng.uniform(0.0, 5.0, size=(n, length)), axis=1)
    U[1, 2, 1] = np.nan  # a missing value
    U[3, 4:] = np.nan  # a shorter series: its padding
    times[3, 4:] = np.nan
    return {"X": X, "U": U, "times": times, "y": y}


@pytest.fixture()
def npz(tmp_path: Path) -> Path:
    np.savez(tmp_path / "driven.npz", **_driven())
    return tmp_path / "driven.npz"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_and_predict_a_npz_with_inputs(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    code, out, err = _cli(capsys, "train", "--data", str(npz), *_FAST, "--interpolation",
                          "linear", "--method", "midpoint", "--out", str(run))  # fmt: skip
    assert code == 0, err
    assert "linear inputs" in out and "2-D, 2 input channels" in out
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "node" and info["model"]["inputs"] == 2
    assert 'interpolation = "linear"' in (run / "config.toml").read_text()
    model = resode.load(run / "model.npz")
    assert (model.inputs, model.interpolation, model.method) == (2, "linear", "midpoint")
    assert len(model.scaling["u_mean"]) == 2  # U standardised per channel
    code, out, err = _cli(capsys, "predict", "--model", str(run), "--data", str(npz))
    assert code == 0 and "accuracy on" in err, err
    lines = out.strip().splitlines()
    assert lines[0] == "label,p0,p1" and len(lines) == 25
    # the numbers of the model in Python, with the run's scaling of X and U
    data = np.load(npz)
    proba = model.predict_proba(scale_inputs(model.scaling, data["X"]),
                                u=scale_series(model.scaling, data["U"]),
                                times=data["times"])  # fmt: skip
    got = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    assert np.allclose(got, proba, rtol=1e-12, atol=1e-15)
    # the run's config.toml trains the same run again
    again = RunConfig.from_toml(run / "config.toml")
    assert again.model.interpolation == "linear" and again.data.data == str(npz.resolve())
    rerun = tmp_path / "rerun"
    code, _, err = _cli(capsys, "train", "--config", str(run / "config.toml"), "--no-progress",
                        "--out", str(rerun))  # fmt: skip
    assert code == 0, err
    for name, value in resode.load(rerun / "model.npz").params.items():
        assert np.array_equal(model.params[name], value), name


def test_the_cli_trains_what_fit_trains(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--scale none --validation: the model of resode.fit on the same arrays, seed and
    options, bit for bit."""
    test = tmp_path / "test.npz"
    np.savez(test, **_driven(8))
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--data", str(npz), "--validation", str(test),
                        "--scale", "none", *_FAST, "--seed", "3", "--lr", "0.05",
                        "--out", str(run))  # fmt: skip
    assert code == 0, err
    data, held = _driven(), _driven(8)
    model = resode.NeuralODE(2, T=5.0, pieces=3, field="bottleneck", hidden=4, augment=1,
                             inputs=2, seed=3)  # fmt: skip
    resode.fit(model, data["X"], data["y"], u=data["U"], times=data["times"],
               optimizer=resode.optim.Adam(lr=0.05), epochs=5, seed=3, progress=False,
               validation_data=(held["X"], held["y"], held["U"], held["times"]))  # fmt: skip
    trained = resode.load(run / "model.npz")
    for name, value in model.params.items():
        assert np.array_equal(trained.params[name], value), name


def test_a_regression_and_shared_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = _driven()
    arrays["y"] = np.nanmean(arrays["U"][:, :, 0], axis=1) * 10.0 + 3.0
    arrays["times"] = np.linspace(0.0, 5.0, arrays["U"].shape[1])
    arrays["U"][3, 4:] = 0.0  # shared times: no padding
    path = tmp_path / "reg.npz"
    np.savez(path, **arrays)
    run = tmp_path / "run"
    code, out, err = _cli(capsys, "train", "--data", str(path), "--loss", "mse", *_FAST,
                          "--out", str(run))  # fmt: skip
    assert code == 0 and "R^2: train" in out, err
    code, out, err = _cli(capsys, "predict", "--model", str(run), "--data", str(path))
    assert code == 0 and "R^2 on" in err
    assert out.splitlines()[0] == "prediction" and len(out.strip().splitlines()) == 25


def _write_long(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The long format: id, hours, the static columns age and height (X, given on the first
    row of each series only), the inputs a and b (empty: missing), the label; rows in reverse
    time order (the reader sorts them)."""
    X, U, times, y = arrays["X"], arrays["U"], arrays["times"], arrays["y"]
    rows = []
    for i in range(len(U)):
        last = max(k for k in range(U.shape[1]) if not np.isnan(U[i, k]).all())
        for k in reversed(range(last + 1)):
            static = [repr(float(v)) for v in X[i]] if k == 0 else ["", ""]
            cells = ["" if np.isnan(v) else repr(float(v)) for v in U[i, k]]
            rows.append(",".join([f"s{i}", repr(float(times[i, k])), *static, *cells,
                                  str(y[i])]))  # fmt: skip
    path.write_text("id,hours,age,height,a,b,label\n" + "\n".join(rows) + "\n")


def test_a_long_csv_trains_the_model_of_its_npz(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--id/--time/--static: X from the static columns, U from the others; the same model as
    the .npz of the same arrays (names from the header), and predict reads the same file."""
    path = tmp_path / "long.csv"
    _write_long(path, _driven())
    a, b = tmp_path / "a", tmp_path / "b"
    csv_options = ["--id", "id", "--time", "hours", "--static", "age,height"]
    assert _cli(capsys, "train", "--data", str(npz), *_FAST, "--out", str(a))[0] == 0
    code, _, err = _cli(capsys, "train", "--data", str(path), *csv_options, *_FAST,
                        "--out", str(b))  # fmt: skip
    assert code == 0, err
    model_a, model_b = resode.load(a / "model.npz"), resode.load(b / "model.npz")
    for name, value in model_a.params.items():
        assert np.allclose(value, model_b.params[name], rtol=1e-9, atol=1e-12), name
    assert model_b.feature_names == ["age", "height"] and model_b.target_name == "label"
    code, out, err = _cli(capsys, "predict", "--model", str(b), "--data", str(path), "--id",
                          "id", "--time", "hours")  # fmt: skip
    assert code == 0 and "accuracy on" in err, err
    _, expected, _ = _cli(capsys, "predict", "--model", str(b), "--data", str(npz))
    assert out == expected  # the model's feature names pick the static columns


def test_a_run_with_plots_draws_the_history(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    fast = [a for a in _FAST if a != "--no-plots"]
    code, out, err = _cli(capsys, "train", "--data", str(npz), *fast, "--out", str(run))
    assert code == 0, err
    assert (run / "history.png").stat().st_size > 0 and "skipped" in out
    code, out, _ = _cli(capsys, "plot", str(run), "--overwrite")
    assert code == 0 and "history.png" in out


def test_a_sweep_spec_with_inputs_expands(npz: Path) -> None:
    from resode.sweep.spec import expand

    spec = {"base": {"model": "node", "data": str(npz), "epochs": 1},
            "grid": {"interpolation": ["linear", "cubic"]}}  # fmt: skip
    runs = expand(spec)
    assert [r.config.model.interpolation for r in runs] == ["linear", "cubic"]
    assert len({r.id for r in runs}) == 2 and runs[0].inputs["data_sha256"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{points}", "--interpolation", "linear"], "holds no array U"),
        (["--interpolation", "linear"], "--interpolation applies to --model cde, and to"),
        (["--data", "{only_u}"], "U holds series: use --model cde, or add X"),
        (["--data", "{rows}"], "X must be a numeric array (N, dim) with one row per series"),
        (["--data", "{inf}"], "U holds Inf"),
        (["--data", "{npz}", "--validation", "{points}"], "holds no arrays X and U like --data"),
        (["--data", "{npz}", "--validation", "{wide}"], "2 features and 3 input channels"),
        (["--data", "{npz}", "--id", "id"], "(--id, --static) are a .csv file"),
        (["--data", "{npz}", "--target", "y"], "--target applies to .csv files"),
        (["--model", "resnet", "--data", "{npz}", "--id", "id"], "--id applies to --model cde"),
        (["--data", "{npz}", "--static", "a"], "--static applies to --model node with a long"),
        (["--data", "{csv}", "--id", "id"], "name the columns of the initial states (--static)"),
        (["--data", "{csv}", "--id", "id", "--static", "a,t"], "no input columns besides"),
        (["--data", "{csv}", "--id", "id", "--static", "a", "--features", "a"], "also an input"),
        (["--data", "{two}", "--id", "id", "--static", "s"], "series 2 has several values"),
        (["--data", "{npz}", "--method", "euler", "--rtol", "1e-6"], "--rtol applies to the"),
    ],
)
def test_train_errors_are_one_line_with_exit_2(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    arrays = _driven()
    files = {"{npz}": npz, "{csv}": tmp_path / "long.csv", "{two}": tmp_path / "two.csv"}
    files["{csv}"].write_text("id,t,a,label\na,0,1,0\na,1,2,0\nb,0,1,1\nb,1,3,1\n")
    files["{two}"].write_text("id,s,x,label\na,1,1,0\na,1,2,0\nb,1,1,1\nb,2,3,1\n")
    for name, change in {
        "points": {"U": None},
        "only_u": {"X": None},
        "rows": {"X": arrays["X"][:5]},
        "inf": {"U": np.where(np.isnan(arrays["U"]), np.inf, arrays["U"])},
        "wide": {"U": np.concatenate([arrays["U"], arrays["U"][:, :, :1]], axis=2)},
    }.items():
        kept = {k: v for k, v in {**arrays, **change}.items() if v is not None}
        files["{" + name + "}"] = tmp_path / f"{name}.npz"
        np.savez(files["{" + name + "}"], **kept)
    argv = [str(files.get(a, a)) for a in argv]
    code, _, err = _cli(capsys, "train", *argv, "--epochs", "1", "--out", str(tmp_path / "o"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_predict_errors_are_one_line_with_exit_2(
    tmp_path: Path, npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert _cli(capsys, "train", "--data", str(npz), *_FAST, "--out", str(run))[0] == 0
    arrays = _driven()
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, X=arrays["X"], U=arrays["U"][:, :, :1])
    points = tmp_path / "points.npz"
    np.savez(points, X=arrays["X"])
    for argv, message in [
        (["--data", str(narrow)], "U with 1 channels, the model takes 2 and 2"),
        (["--data", str(points)], "needs an array 'U'"),
        (["--data", str(npz), "--time", "t"], "--time applies to a long-format .csv (with --id)"),
    ]:
        code, _, err = _cli(capsys, "predict", "--model", str(run), *argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_the_inputs_scaling_is_checked_and_saved(tmp_path: Path) -> None:
    scaling = {"X_mean": [0.0, 1.0], "X_scale": [1.0, 2.0], "u_mean": [0.5], "u_scale": [3.0]}
    with pytest.raises(ValueError, match="apply to a model with inputs"):
        resode.NeuralODE(2).scaling = scaling
    model = resode.NeuralODE(2, inputs=1, seed=0)
    with pytest.raises(ValueError, match=r"scaling\['u_scale'\] must be a list of 1 numbers"):
        model.scaling = {**scaling, "u_scale": [1.0, 2.0]}
    with pytest.raises(ValueError, match="must both be given or both None"):
        model.scaling = {**scaling, "u_scale": None}
    model.scaling = scaling
    loaded = resode.load(model.save(tmp_path / "model.npz"))
    assert loaded.scaling["u_mean"] == [0.5] and loaded.scaling["u_scale"] == [3.0]
    U = np.ones((2, 3, 1))
    assert np.array_equal(scale_series(loaded.scaling, U), (U - 0.5) / 3.0)
