"""resode.config (the run defined once) and resode.run.train_run: round trips through
config.toml, one-line errors naming the key, every field reaching every front end (the
``resode train`` parser, config.toml, sweep specs), and train_run equal to ``resode train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import config as run_config
from resode.cli import build_parser, main
from resode.config import RunConfig
from resode.run import train_run

SMALL = {"dataset": "moons", "n_samples": 60, "epochs": 3, "plots": False}

#: Options that make another option apply (tried in turn for each field).
_CONTEXTS: list[dict[str, Any]] = [
    {},
    {"model": "resnet"},
    {"method": "dopri5"},
    {"optimizer": "sgd"},
    {"schedule": "step"},
    {"data": "train.csv"},
    {"turnpike": True},
    {"dataset": "moons"},
    {"dataset": "chess3"},
    {"model": "cde"},
    {"model": "cde", "data": "train.csv"},
    {"data": "train.csv", "id": "patient"},  # a neural ODE's inputs in a long-format .csv
]


def _applicable(key: str) -> dict[str, Any]:
    """Options under which ``key`` applies."""
    for context in _CONTEXTS:
        values = RunConfig.from_options(context).flat()
        if key not in run_config.not_applicable(values):
            return context
    raise AssertionError(f"no context makes {key!r} apply")  # pragma: no cover


def _other_value(key: str, default: Any, option: run_config.Option) -> Any:
    """A valid value of ``key`` other than its default."""
    if option.choices is not None:
        return next(c for c in option.choices if c != default)
    if option.is_flag:
        return not default
    samples = {"data": "train.csv", "validation": "test.csv", "target": "y", "features": "a,b",
               "test_size": 0.3, "seed": 3, "n_samples": 80, "id": "patient",
               "time": "hours", "static": "age"}  # fmt: skip
    if key in samples:
        return samples[key]
    if isinstance(default, float):
        return default * 2 if default else 0.5
    return (default or 1) + 1


def _every_field() -> list[tuple[str, Any, run_config.Option]]:
    return [(f.name, f.default, o) for _, f, o in run_config.fields()]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("key", [name for name, _, _ in _every_field()])
def test_every_field_reaches_the_parser_config_toml_and_sweep_specs(
    tmp_path: Path, key: str
) -> None:
    """A new field that misses a front end fails here."""
    default, option = next((d, o) for name, d, o in _every_field() if name == key)
    value = _other_value(key, default, option)
    options = {**_applicable(key), key: value}
    config = RunConfig.from_options(options)
    assert config.flat()[key] == value
    # config.toml: written, and read back equal (data paths written absolute)
    assert key in config.options()
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    again = RunConfig.from_toml(path)
    want = str(Path(value).resolve()) if key in ("data", "validation") else value
    assert again.flat()[key] == want
    if "data" not in options:
        assert again == config
    # the parser of resode train: the same key, the same value
    from resode.cli.train import resolve

    parsed = build_parser().parse_args(["train", *config.argv()])
    assert getattr(parsed, key) == want
    assert resolve(parsed)[0] == again
    # a sweep spec: accepted, or refused as set by the sweep itself
    from resode.sweep.spec import run_config_of

    spec_options = {k.replace("_", "-"): v for k, v in options.items()}
    if option.sweep:
        assert run_config_of(spec_options).flat()[key] == want
    else:
        with pytest.raises(ValueError, match=f"option '{key}' is set by the sweep itself"):
            run_config_of(spec_options)


def test_options_round_trip_through_toml(tmp_path: Path) -> None:
    options = {"dataset": "spheres", "dim": 3, "noise": 0.05, "style": "leia", "model": "node",
               "method": "dopri5", "rtol": 1e-6, "max_steps": 500, "first_step": 0.01,
               "readout": "hardtanh", "l1": 0.005, "decay_readout": True, "optimizer": "sgd",
               "momentum": 0.9, "nesterov": True, "early_stopping": 5,
               "shuffle": False}  # fmt: skip
    config = RunConfig.from_options(options)
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert RunConfig.from_toml(path) == config
    assert RunConfig.from_options(config.options()) == config
    assert {k: config.options()[k] for k in options} == options


def test_older_config_files_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('dataset = "moons"\nn-samples = 100\nno-shuffle = true\nno-plots = true\n'
                    "no-progress = false\n[model]\nmodel = \"resnet\"\nlayers = 3\n")  # fmt: skip
    config = RunConfig.from_toml(path)
    assert not config.training.shuffle and not config.training.plots
    assert config.model.layers == 3 and config.data.n_samples == 100


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": 1}, "unknown option 'colour'"),
        ({"epochs": 2.5}, "epochs: expected an integer, got '2.5'"),
        ({"epochs": -1}, "epochs: must be >= 0, got -1"),
        ({"lr": [1, 2]}, "lr must be a string or a number"),
        ({"turnpike": "yes"}, "turnpike must be true or false"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"model": "resnet", "pieces": 3}, "pieces applies to --model node only"),
        ({"dataset": "chess", "noise": 0.1}, "noise applies to the data sets"),
        ({"dataset": "moons", "style": "leia"}, "style applies to the data sets"),
        ({"no_shuffle": True, "shuffle": True}, "shuffle is given twice"),
    ],
)
def test_errors_are_one_line_naming_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        RunConfig.from_options(options)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_identity_follows_the_results_and_the_data() -> None:
    config = RunConfig.from_options(SMALL)
    assert config.identity() == RunConfig.from_options(SMALL).identity()
    assert config.identity() != config.replace(lr=0.02).identity()
    assert config.identity() == config.replace(threads=1, log_every=2, plots=True).identity()
    assert config.identity({"data_sha256": "a"}) != config.identity({"data_sha256": "b"})


# --------------------------------------------------------------------------- train_run


def _history(data: bytes) -> dict[str, Any]:
    history = json.loads(data)
    return {k: v for k, v in history.items() if k != "time"}


def test_train_run_equals_resode_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = RunConfig.from_options({**SMALL, "model": "resnet", "layers": 3, "lr": 0.05,
                                     "batch_size": 16})  # fmt: skip
    out = tmp_path / "cli"
    assert main(["train", *config.argv(), "--out", str(out), "--no-progress"]) == 0
    in_memory = train_run(config, None)
    on_disk = train_run(config, tmp_path / "api")
    capsys.readouterr()
    assert in_memory.status == on_disk.status == "ok" and in_memory.out is None
    assert {"model.npz", "history.json", "config.toml", "run.json"} <= set(in_memory.files)
    (tmp_path / "memory.npz").write_bytes(in_memory.files["model.npz"])
    want = resode.load(out / "model.npz").params
    for got in (resode.load(tmp_path / "memory.npz").params,
                resode.load(tmp_path / "api" / "model.npz").params):  # fmt: skip
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    history = _history((out / "history.json").read_bytes())
    assert _history(in_memory.files["history.json"]) == history
    assert _history((tmp_path / "api" / "history.json").read_bytes()) == history
    assert in_memory.files["config.toml"] == (out / "config.toml").read_bytes()
    assert not list(tmp_path.glob("resode-run-*"))


def test_train_run_refuses_before_writing(tmp_path: Path) -> None:
    config = RunConfig.from_options({**SMALL, "classes": 1})
    with pytest.raises(ValueError, match="--classes 1 is too small"):
        train_run(config, tmp_path / "o")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- new options


def test_every_model_option_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "--n-samples", "60", "--epochs", "2", "--no-plots", "--no-progress",
            "--pieces", "3", "--hidden", "4"]  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*base, "--readout", "hardtanh", "--loss", "mse", "--l1", "0.005",
                 "--decay-readout", "--turnpike", "--turnpike-weight", "10.5",
                 "--out", str(a)]) == 0  # fmt: skip
    assert main([*base, "--method", "dopri5", "--max-steps", "10000", "--first-step", "0.01",
                 "--out", str(b)]) == 0  # fmt: skip
    capsys.readouterr()
    model = json.loads((a / "run.json").read_text())["model"]
    assert (model["readout"], model["l1"], model["decay_readout"]) == ("hardtanh", 0.005, True)
    assert model["turnpike_weight"] == 10.5
    model = json.loads((b / "run.json").read_text())["model"]
    assert (model["max_steps"], model["first_step"]) == (10000, 0.01)
    assert "turnpike-weight = 10.5" in (a / "config.toml").read_text()


def test_noise_and_style_wherever_the_data_set_takes_them() -> None:
    from resode.build import load_data

    plain = load_data(RunConfig.from_options({"n_samples": 100}))
    noisy = load_data(RunConfig.from_options({"n_samples": 100, "noise": 0.1}))
    leia = load_data(RunConfig.from_options({"n_samples": 100, "style": "leia"}))
    assert not np.array_equal(plain[0], noisy[0]) and not np.array_equal(plain[0], leia[0])
    X, y = resode.datasets.concentric_spheres(100, seed=0, noise=0.1)
    X_tr = resode.datasets.train_test_split(X, y, 0.2, seed=0)[0]
    np.testing.assert_array_equal(noisy[0], X_tr)
    RunConfig.from_options({"dataset": "chess3", "style": "leia"})
    RunConfig.from_options({"dataset": "tricolor", "noise": 0.1, "style": "leia"})


def test_early_stopping_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["train", "--dataset", "moons", "--n-samples", "60", "--model", "resnet",
            "--layers", "2", "--optimizer", "sgd", "--lr", "5", "--epochs", "100",
            "--early-stopping", "1", "--no-plots", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    epochs = json.loads((out / "run.json").read_text())["results"]["epochs"]
    assert 1 < epochs < 100
    assert "early-stopping = 1" in (out / "config.toml").read_text()


def test_predict_accepts_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    X, y = resode.datasets.moons(40, seed=1)
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    config = RunConfig.from_options({**SMALL, "model": "resnet", "layers": 2})
    train_run(config, out)
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--data", str(data)]) == 0
    by_folder = capsys.readouterr().out
    assert main(["predict", "--model", str(out / "model.npz"), "--data", str(data)]) == 0
    assert capsys.readouterr().out == by_folder
    assert main(["predict", "--model", str(tmp_path), "--data", str(data)]) == 2
    assert "is a folder without a model.npz" in capsys.readouterr().err


def test_the_parser_has_no_hand_written_run_options() -> None:
    """Every option of ``resode train`` is a field, or one of the command's own four."""
    parser = build_parser()
    from resode.cli.common import subparser

    train = subparser(parser, "train")
    dests = {a.dest for a in train._actions if a.option_strings} - {"help"}
    fields = {name for name, _, _ in _every_field()}
    assert dests - fields == {"config", "out", "overwrite", "resume", "no_progress"}
    assert fields <= dests


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for name, default, _ in _every_field():
        flag = ("--no-" + name.replace("_", "-")) if default is True else run_config.flag(name)
        assert flag in text, flag


# --------------------------------------------------------------------------- data files


def _table_file(path: Path, columns: dict[str, Any], delimiter: str = ",") -> Path:
    names = list(columns)
    rows = zip(*columns.values())
    lines = [delimiter.join(names)] + [delimiter.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _regression_columns(n: int = 60) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    a, b = rng.normal(100.0, 20.0, n), rng.normal(0.0, 0.01, n)
    return {"id": [f"row{i}" for i in range(n)], "a": a.tolist(), "b": b.tolist(),
            "y": (3.0 * a + 500.0 * b + 7.0).tolist()}  # fmt: skip


def _in_memory_load(monkeypatch: pytest.MonkeyPatch, model: Any) -> None:
    """predict reads this model (with the attributes set by train_run) whatever the file:
    the model file keeps feature_names, target_name and scaling once the models branch of
    issue 23 is merged (resode.io saves them)."""
    monkeypatch.setattr(resode.io, "load", lambda path: model)


def test_data_files_are_standardised_and_predict_applies_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _table_file(tmp_path / "train.csv", _regression_columns())
    options = {"data": str(data), "target": "y", "features": "a,b", "loss": "mse",
               "model": "resnet", "layers": 2, "epochs": 5, "plots": False}  # fmt: skip
    result = train_run(RunConfig.from_options(options), None)
    model = result.model
    X = np.loadtxt(data, delimiter=",", skiprows=1, usecols=(1, 2))
    y = np.loadtxt(data, delimiter=",", skiprows=1, usecols=3)
    X_tr = resode.datasets.train_test_split(X, y, 0.2, seed=0)[0]
    np.testing.assert_allclose(model.scaling["X_mean"], X_tr.mean(axis=0))
    np.testing.assert_allclose(model.scaling["X_scale"], X_tr.std(axis=0))
    assert model.scaling["y_mean"] is not None
    assert (model.feature_names, model.target_name) == (["a", "b"], "y")
    unscaled = train_run(RunConfig.from_options({**options, "scale": "none"}), None).model
    assert unscaled.scaling is None
    capsys.readouterr()
    _in_memory_load(monkeypatch, model)
    assert main(["predict", "--model", "m.npz", "--data", str(data)]) == 0
    captured = capsys.readouterr()
    predicted = np.array([float(v) for v in captured.out.split()[1:]])
    scaled = (X - model.scaling["X_mean"]) / model.scaling["X_scale"]
    want = model.forward(scaled)[:, 0] * model.scaling["y_scale"][0] + model.scaling["y_mean"][0]
    np.testing.assert_allclose(predicted, want, rtol=1e-12)
    assert f"R^2 on {data}: " in captured.err  # the target column found by its name


def test_predict_selects_the_features_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    columns = _regression_columns()
    data = _table_file(tmp_path / "train.csv", columns)
    options = {"data": str(data), "target": "y", "features": "a,b", "loss": "mse",
               "model": "resnet", "layers": 2, "epochs": 3, "plots": False}  # fmt: skip
    model = train_run(RunConfig.from_options(options), None).model
    capsys.readouterr()
    _in_memory_load(monkeypatch, model)
    assert main(["predict", "--model", "m.npz", "--data", str(data)]) == 0
    first = capsys.readouterr().out
    shuffled = {k: columns[k] for k in ("b", "id", "a")}  # another order, no target
    other = _table_file(tmp_path / "other.csv", shuffled, delimiter=";")
    assert main(["predict", "--model", "m.npz", "--data", str(other)]) == 0
    captured = capsys.readouterr()
    assert captured.out == first and "R^2" not in captured.err
    missing = _table_file(tmp_path / "missing.csv", {k: columns[k] for k in ("id", "a")})
    assert main(["predict", "--model", "m.npz", "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks the model's feature column b" in err


def test_columns_left_out_are_not_parsed_and_the_delimiter_is_detected(tmp_path: Path) -> None:
    from resode.data_files import read

    columns = {"id": ["x", "y", "z", "w"], "a": [1, 2, 3, 4], "label": [0, 1, 0, 1]}
    comma = read(_table_file(tmp_path / "c.csv", columns), features=["a"], target="label")
    for delimiter in (";", "\t", "|"):
        other = read(_table_file(tmp_path / "o.csv", columns, delimiter), features=["a"],
                     target="label")  # fmt: skip
        np.testing.assert_array_equal(other.X, comma.X)
        np.testing.assert_array_equal(other.y, comma.y)
    assert (comma.feature_names, comma.target_name) == (["a"], "label")
    with pytest.raises(ValueError, match="'x' is not a number"):
        read(tmp_path / "c.csv", target="label")  # the id column is a feature then
