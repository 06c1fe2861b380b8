"""Every script in examples/ runs to the end in a scratch folder and delivers what it promises:
the accuracy (or R^2) it prints parses and clears a loose bound, and the files it says it wrote
exist and are readable (figures: valid, non-empty images).

No time is asserted (the examples' time limits are for people, not tests); each example's wall
time is recorded as the test's ``example_seconds`` property and listed at the end of the pytest
run (``conftest.py``), so it shows in the CI log.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
NUMBER = r"([0-9]*\.?[0-9]+)"


def _last_number(pattern: str, stdout: str) -> float:
    """The number captured by ``pattern`` in its last match in ``stdout``."""
    found = re.findall(pattern, stdout)
    assert found, f"no line matching {pattern!r} in:\n{stdout[-2000:]}"
    return float(found[-1])


def _check_image(path: Path, fmt: str) -> None:
    """``path`` is a non-empty image of format ``fmt`` ('PNG', 'GIF') that decodes."""
    from PIL import Image

    assert path.is_file(), f"{path.name} was not written"
    assert path.stat().st_size > 0, f"{path.name} is empty"
    with Image.open(path) as image:
        assert image.format == fmt, (path.name, image.format)
        image.load()
        assert min(image.size) > 50, (path.name, image.size)


def _check_resnet_step_by_step(stdout: str, out: Path) -> None:
    assert "states (21, 250, 3)" in stdout  # 20 layers + the input, the test split, D = 2 + 1
    assert _last_number(rf"test accuracy {NUMBER}", stdout) >= 0.9  # two moons: 1.000
    _check_image(out / "boundary.png", "PNG")  # the gallery shows it


def _check_seed_turnpike(stdout: str, out: Path) -> None:
    import resode

    assert _last_number(rf"test accuracy {NUMBER} after 200 epochs", stdout) >= 0.85  # 0.997
    # the turnpike: classified well before the horizon T = 5 (1.000 at t = 1.25)
    assert _last_number(rf"t = 2\.50: accuracy of the readout on x\(t\) {NUMBER}", stdout) >= 0.85
    model = resode.load(out / "model.npz")
    assert (model.T, model.pieces, model.turnpike) == (5.0, 16, True)
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 200 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    _check_image(out / "loss_along_time.png", "PNG")


def _check_regression_csv(stdout: str, out: Path) -> None:
    assert _last_number(rf"R\^2: train {NUMBER}", stdout) >= 0.9  # 0.9994
    assert _last_number(rf"R\^2: train [0-9.]+, test {NUMBER}", stdout) >= 0.9  # 0.9992
    data = np.loadtxt(out / "data.csv", delimiter=",", skiprows=1)
    assert data.shape == (600, 3)
    _check_image(out / "history.png", "PNG")


def _check_sklearn_grid_search(stdout: str, out: Path) -> None:
    assert _last_number(rf"cross-validated accuracy {NUMBER}", stdout) >= 0.8  # 0.964
    assert _last_number(rf"test accuracy {NUMBER}", stdout) >= 0.8  # digits: 0.971


LEIA_FIGURES = {
    "decision_regions.gif": "GIF",
    "decision_regions.png": "PNG",
    "loss_along_time.png": "PNG",
    "features.png": "PNG",
    "feature_history.gif": "GIF",
    "history.png": "PNG",
    "controls.png": "PNG",
    "state_norm.png": "PNG",
}


def _check_leia_chess3(stdout: str, out: Path) -> None:
    assert stdout.count("--- turnpike") == stdout.count("--- terminal loss") == 1, stdout[-2000:]
    turnpike, terminal = stdout.split("--- terminal loss")
    for part in (turnpike, terminal):  # chess3: 0.974 with the turnpike, 1.000 without
        assert _last_number(rf"epoch 300: .* accuracy {NUMBER}", part) >= 0.85
    assert "trained 2 x 300 epochs" in stdout
    for name, fmt in LEIA_FIGURES.items():
        _check_image(out / name, fmt)


def _check_demo_step_by_step(stdout: str, out: Path) -> None:
    import resode

    assert _last_number(rf"accuracy: train {NUMBER}", stdout) >= 0.95  # spheres: 1.000
    assert _last_number(rf"accuracy: train [0-9.]+, test {NUMBER}", stdout) >= 0.95  # 1.000
    assert _last_number(rf"reloaded: test accuracy {NUMBER}", stdout) >= 0.95
    assert resode.load(out / "model.npz").pieces == 10
    _check_image(out / "trajectories.gif", "GIF")
    for name in ("decision_boundary", "history", "controls", "state_norm"):
        _check_image(out / f"{name}.png", "PNG")


def _check_your_own_csv(stdout: str, out: Path) -> None:
    assert "classes ['setosa', 'versicolor', 'virginica']" in stdout
    assert _last_number(rf"test accuracy {NUMBER}", stdout) >= 0.9  # 0.989
    assert _last_number(rf"accuracy: train [0-9.]+%, test {NUMBER}%", stdout) >= 90  # the CLI
    # resode predict writes the labels' names back, one row per new flower, in order
    predicted = [line.split(",")[0] for line in stdout.splitlines() if line.count(",") == 3]
    assert predicted[-3:] == ["setosa", "versicolor", "virginica"], stdout[-2000:]
    assert (out / "flowers.csv").is_file() and (out / "run" / "model.npz").is_file()
    _check_image(out / "decision_boundary.png", "PNG")


def _check_regression_sine(stdout: str, out: Path) -> None:
    assert _last_number(rf"R\^2: train [0-9.]+, test {NUMBER}", stdout) >= 0.95  # 0.9927
    assert "'val_r2'" in stdout
    _check_image(out / "regression.png", "PNG")
    _check_image(out / "history.png", "PNG")


def _check_adaptive_steps(stdout: str, out: Path) -> None:
    assert _last_number(rf"training accuracy {NUMBER}", stdout) >= 0.9  # 1.000
    fewest = _last_number(rf"accepted steps per sample: min {NUMBER}", stdout)
    most = _last_number(rf"accepted steps per sample: .*, max {NUMBER}", stdout)
    batch = _last_number(rf"batch control: {NUMBER} steps for every sample", stdout)
    assert fewest < most <= batch  # per sample, the steps differ; one grid takes the most
    _check_image(out / "adaptive_steps.png", "PNG")


def _check_torch_layer(stdout: str, out: Path) -> None:
    accuracy = _last_number(rf"training accuracy {NUMBER}", stdout)
    assert accuracy >= 0.9  # spirals: 0.992
    assert _last_number(rf"the same model in resode: accuracy {NUMBER}", stdout) == accuracy
    _check_image(out / "torch_layer.png", "PNG")


def _check_small_sweep(stdout: str, out: Path) -> None:
    assert "runs 24: ok 24, diverged 0, failed 0" in stdout, stdout[-2000:]
    with open(out / "study" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {row["status"] for row in rows} == {"ok"}
    _check_image(out / "sweep.png", "PNG")


def _check_benchmark_tables(stdout: str, out: Path) -> None:
    # the chart's numbers are the tables' (the parser found all six rows of both runs)
    rows = [line.split() for line in stdout.splitlines() if line.startswith(("W1 ", "W2 "))]
    assert [" ".join(row[:4]) for row in rows] == [
        "W1 N = 2", "W1 N = 150", "W1 N = 1000", "W2 D = 2", "W2 D = 16", "W2 D = 64"
    ], stdout  # fmt: skip
    assert all(len(row) == 8 for row in rows)
    _check_image(out / "peers.png", "PNG")


# The UEA examples train for RESODE_EXAMPLE_EPOCHS epochs (their docstrings say so): fewer here.
UEA_EPOCHS = 8


def _check_uea(stdout: str, out: Path, figure: str, bound: float) -> None:
    """resode's test accuracy clears ``bound``; torchcde, trained from the same weights on the
    same batches, ends within one test sample in 20 of it (the runs agree for the first epochs,
    see the loss curves), and the figure is written."""
    accuracy = _last_number(rf"resode: test accuracy {NUMBER} after {UEA_EPOCHS} epochs", stdout)
    assert accuracy >= bound
    if "torchcde is not installed" not in stdout:
        theirs = _last_number(rf"torchcde: test accuracy {NUMBER} after {UEA_EPOCHS}", stdout)
        assert abs(theirs - accuracy) <= 0.05, (accuracy, theirs)
    _check_image(out / figure, "PNG")


def _check_uea_basic_motions(stdout: str, out: Path) -> None:
    _check_uea(stdout, out, "basic_motions.png", 0.5)  # 4 classes; 0.700 after 8 epochs


def _check_uea_japanese_vowels(stdout: str, out: Path) -> None:
    _check_uea(stdout, out, "japanese_vowels.png", 0.8)  # 9 classes; 0.924 after 8 epochs


CHECKS: dict[str, Callable[[str, Path], None]] = {
    "resnet_step_by_step": _check_resnet_step_by_step,
    "seed_turnpike": _check_seed_turnpike,
    "regression_csv": _check_regression_csv,
    "sklearn_grid_search": _check_sklearn_grid_search,
    "leia_chess3": _check_leia_chess3,
    "demo_step_by_step": _check_demo_step_by_step,
    "your_own_csv": _check_your_own_csv,
    "regression_sine": _check_regression_sine,
    "adaptive_steps": _check_adaptive_steps,
    "torch_layer": _check_torch_layer,
    "small_sweep": _check_small_sweep,
    "benchmark_tables": _check_benchmark_tables,
    "uea_basic_motions": _check_uea_basic_motions,
    "uea_japanese_vowels": _check_uea_japanese_vowels,
}
# what an example needs beyond the test extra (a missing one skips it; CI installs them all)
NEEDS = {"sklearn_grid_search": "sklearn", "torch_layer": "torch", "small_sweep": "distributed",
         "uea_basic_motions": "aeon", "uea_japanese_vowels": "aeon"}  # fmt: skip


def test_every_example_is_checked() -> None:
    assert {p.stem for p in EXAMPLES} == set(CHECKS)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(
    script: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    if script.stem in NEEDS:
        pytest.importorskip(NEEDS[script.stem])
    env = None
    if script.stem.startswith("uea_"):
        env = {**os.environ, "RESODE_EXAMPLE_EPOCHS": str(UEA_EPOCHS), "RESODE_EXAMPLE_SEEDS": "2"}
    out = tmp_path / "out"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,  # generous: CI also runs them under AddressSanitizer
    )
    record_property("example_seconds", round(time.perf_counter() - start, 2))
    assert done.returncode == 0, done.stderr[-2000:]
    CHECKS[script.stem](done.stdout, out)


def test_the_checks_refuse_a_poor_or_missing_result(tmp_path: Path) -> None:
    # the checks above can fail: a low accuracy, a missing line, a missing or empty figure
    from PIL import Image

    good = "300 steps in 0.05 s; states (21, 250, 3); test accuracy 1.000\n"
    Image.new("RGB", (64, 64)).save(tmp_path / "boundary.png")
    _check_resnet_step_by_step(good, tmp_path)
    with pytest.raises(AssertionError):
        _check_resnet_step_by_step(good.replace("1.000", "0.500"), tmp_path)
    with pytest.raises(AssertionError, match="no line matching"):
        _check_sklearn_grid_search("best: {} cross-validated accuracy 0.964\n", tmp_path)
    uea = "resode: test accuracy 0.924 after 8 epochs\ntorchcde: test accuracy 0.7 after 8 epochs"
    with pytest.raises(AssertionError):  # the same model in torchcde must end where resode does
        _check_uea_japanese_vowels(uea, tmp_path)
    (tmp_path / "controls.png").write_bytes(b"")
    with pytest.raises(AssertionError, match="empty"):
        _check_image(tmp_path / "controls.png", "PNG")
    with pytest.raises(AssertionError, match="not written"):
        _check_image(tmp_path / "history.png", "PNG")
