"""The models' public protocol (issue 23): kind, param_shapes, steps/dt/method/trajectory on
both models, problem() -> Problem, and what a model records about its data (class_labels,
feature_names, target_name, scaling), saved in the model file; the package structure."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode.models import KINDS, Model, Problem
from resode.training import EarlyStopping, save_checkpoint

PACKAGE = Path(resode.__file__).parent


def _models() -> list[Model]:
    return [
        resode.ResNet(2, 3, h=0.5, seed=0),
        resode.ResNet(2, 4, field="bottleneck", hidden=3, classes=1, loss="mse", seed=1),
        resode.NeuralODE(2, T=2.0, pieces=3, substeps=2, method="midpoint", turnpike=True, seed=2),
        resode.NeuralODE(2, pieces=2, method="dopri5", classes=1, loss="mse", seed=3),
        resode.NeuralODE(2, pieces=2, classes=3, dtype="float32", gradient="adjoint", seed=4),
    ]


def _data(model: Model, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, model.dim))
    if model.task == "classification":
        return X, np.arange(n) % model.classes
    return X, rng.normal(size=(n, model.classes))


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.kind}-{m.method}-{m.loss}")
def test_problem_is_what_the_private_methods_gave(model: Model) -> None:
    X, y = _data(model)
    problem = model.problem(X, y)
    assert isinstance(problem, Problem)
    old_X = model._X(X)
    assert problem.X.dtype == model.dtype and np.array_equal(problem.X, old_X)
    old_y = model._targets(y, len(X))
    assert problem.targets.dtype == old_y.dtype and np.array_equal(problem.targets, old_y)
    assert problem.core_args == {
        **model._sweep_args(), **model._loss_args(), **model._gradient_args()
    }  # fmt: skip
    assert problem.flat_targets is False
    assert model.problem(X).targets is None and model.problem(X).core_args == problem.core_args
    with pytest.raises(AttributeError):  # frozen
        problem.X = X  # type: ignore[misc]


def test_problem_of_flat_regression_targets() -> None:
    model = resode.ResNet(2, 2, classes=1, loss="mse", seed=0)
    X = np.ones((4, 2))
    flat = model.problem(X, np.arange(4.0))
    assert flat.flat_targets is True and flat.targets.shape == (4, 1)
    assert model.problem(X, np.arange(4.0).reshape(4, 1)).flat_targets is False
    with pytest.raises(ValueError, match="y must have shape"):
        model.problem(X, np.ones((3, 1)))


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.kind}-{m.method}")
def test_kind_and_param_shapes_are_the_old_private_names(model: Model) -> None:
    assert KINDS[model.kind] is type(model)
    assert model.param_shapes == {k: v.shape for k, v in model.params.items()}
    assert isinstance(model, resode.models.Model)


def test_resnet_has_steps_dt_method_and_trajectory_times() -> None:
    model = resode.ResNet(2, 4, h=0.25, augment=1, seed=0)
    assert (model.steps, model.dt, model.method, model.adaptive) == (4, 0.25, "euler", False)
    X = np.random.default_rng(0).normal(size=(5, 2))
    grid = model.trajectory(X)
    assert grid.shape == (5, 5, 3)
    assert np.array_equal(model.trajectory(X, t=None), grid)
    picked = model.trajectory(X, t=[0.0, 0.5, 0.75, 1.0])
    assert np.array_equal(picked, grid[[0, 2, 3, 4]])
    assert np.array_equal(model.trajectory(X, t=np.arange(5) * 0.25), grid)
    for bad in ([0.1], [1.25], [-0.25]):
        with pytest.raises(ValueError, match="layer times"):
            model.trajectory(X, t=bad)
    with pytest.raises(ValueError, match="sorted"):
        model.trajectory(X, t=[0.5, 0.25])
    with pytest.raises(ValueError, match="1-d"):
        model.trajectory(X, t=[[0.0]])


def test_neural_ode_and_resnet_answer_the_same_questions() -> None:
    node = resode.NeuralODE(2, T=2.0, pieces=4, substeps=2, method="rk4", seed=0)
    assert (node.steps, node.dt, node.method, node.adaptive) == (8, 0.25, "rk4", False)
    X = np.ones((3, 2))
    for model in (node, resode.ResNet(2, 8, h=0.25, seed=0)):
        assert model.trajectory(X, t=[0.0, 2.0]).shape == (2, 3, 2)


# --------------------------------------------------------------------------- metadata


def _with_metadata(model: Model) -> Model:
    model.class_labels = ["cat", "dog"] if model.classes == 2 else None
    model.feature_names = [f"x{i}" for i in range(model.dim)]
    model.target_name = "label"
    y_stats = [0.5] * model.classes if model.task == "regression" else None
    model.scaling = {
        "X_mean": [0.1 * i for i in range(model.dim)],
        "X_scale": [1.0 + i for i in range(model.dim)],
        "y_mean": y_stats,
        "y_scale": y_stats,
    }
    return model


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.kind}-{m.method}")
def test_metadata_round_trips_through_the_model_file(tmp_path: Path, model: Model) -> None:
    _with_metadata(model)
    model.save(tmp_path / "m.npz")
    again = resode.load(tmp_path / "m.npz")
    for key in ("class_labels", "feature_names", "target_name", "scaling"):
        assert getattr(again, key) == getattr(model, key), key


def test_metadata_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    model = _with_metadata(resode.ResNet(2, 2, seed=0))
    optimizer = resode.optim.Adam()
    save_checkpoint(tmp_path / "c.npz", model, optimizer, resode.History(), epoch=0, seed=1,
                    settings={"fixed_projection": False})  # fmt: skip
    state = resode.training.load_checkpoint(tmp_path / "c.npz")
    assert state["model"].feature_names == ["x0", "x1"] and state["model"].scaling == model.scaling
    assert state["best_params"] is None


def test_files_without_metadata_load_with_none(tmp_path: Path) -> None:
    model = resode.ResNet(2, 2, seed=0)
    model.save(tmp_path / "plain.npz")
    with zipfile.ZipFile(tmp_path / "plain.npz") as zf:
        header = json.loads(np.lib.format.read_array(zf.open("header.npy")).tobytes())
    # what resode wrote before the metadata existed: the same header keys
    assert set(header) == {"format", "version", "kind", "config"}
    again = resode.load(tmp_path / "plain.npz")
    assert again.class_labels is None and again.feature_names is None
    assert again.target_name is None and again.scaling is None and again.flat_targets is False


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("feature_names", ["a"], "2 distinct names"),
        ("feature_names", ["a", "a"], "2 distinct names"),
        ("feature_names", ["a", 1], "strings"),
        ("feature_names", "ab", "a list"),
        ("target_name", 3, "string"),
        ("class_labels", [0, 0], "distinct"),
        ("class_labels", [0.5, 1], "integers or strings"),
        ("scaling", {"X_mean": [0, 0]}, "X_scale"),
        ("scaling", {"X_mean": [0, 0], "X_scale": [1, 0]}, "> 0"),
        ("scaling", {"X_mean": [0, 0], "X_scale": [1, 1], "y_mean": [0, 0]}, "both"),
        ("scaling", {"X_mean": [0], "X_scale": [1, 1]}, "2 numbers"),
        ("scaling", {"X_mean": [0, 0], "X_scale": [1, 1], "bad": 1}, "keys"),
        ("flat_targets", 1, "bool"),
    ],
)
def test_bad_metadata_is_refused_naming_it(key: str, value: Any, match: str) -> None:
    model = resode.ResNet(2, 2, seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        setattr(model, key, value)


def test_a_file_with_bad_metadata_is_refused(tmp_path: Path) -> None:
    model = resode.ResNet(2, 2, seed=0)
    header = {"format": "resode", "version": 1, "kind": "resnet", "config": model.config,
              "feature_names": ["only one"]}  # fmt: skip
    arrays = {f"params/{k}": v for k, v in model.params.items()}
    resode.io.write_file(tmp_path / "bad.npz", header, arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: invalid resode file: feature_names"):
        resode.load(tmp_path / "bad.npz")


# --------------------------------------------------------------------------- sign accuracy


def test_sign_accuracy_of_a_one_output_model() -> None:
    model = resode.ResNet(2, 2, classes=1, loss="mse", readout="hardtanh", seed=0)
    X = np.random.default_rng(0).normal(size=(40, 2))
    z = model.forward(X)[:, 0]
    y = np.where(np.arange(40) % 3 == 0, 1.0, -1.0)
    expected = np.mean((z > 0) == (y > 0))
    assert model.sign_accuracy(X, y) == expected
    assert model.sign_accuracy(X, y.reshape(-1, 1)) == expected
    assert model.sign_accuracy(X, np.where(z > 0, 1, -1)) == 1.0
    with pytest.raises(ValueError, match=r"-1, \+1"):
        model.sign_accuracy(X, np.zeros(40))
    with pytest.raises(ValueError, match="1-output"):
        resode.ResNet(2, 2, seed=0).sign_accuracy(X, y)


# --------------------------------------------------------------------------- structure


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_models_do_not_import_the_loader_nor_training() -> None:
    for path in (PACKAGE / "models").glob("*.py"):
        names = _imports(path)
        assert not {"..io", "resode.io", "..training", "resode.training"} & names, path.name


def test_modules_of_the_packages_stay_short() -> None:
    for package in ("models", "training"):
        for path in (PACKAGE / package).glob("*.py"):
            assert len(path.read_text().splitlines()) <= 600, path


def test_import_resode_loads_no_optional_dependency() -> None:
    code = (
        "import sys, resode; "
        "print(sorted(m for m in ('tqdm', 'matplotlib', 'sklearn', 'torch', 'jax', 'pandas', "
        "'dask', 'scipy', 'aeon', 'numba', 'torchcde', 'diffrax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_early_stopping_is_public_with_its_defaults() -> None:
    stop = EarlyStopping()
    assert (stop.monitor, stop.patience, stop.min_delta, stop.restore_best) == (
        "val_loss",
        10,
        0.0,
        True,
    )
