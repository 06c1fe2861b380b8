"""The neural CDE figures (resode.plot.series, hidden_state, decision_along_time) and the path
they draw (resode.paths.interpolate, evaluated by the core)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import resode
from resode.paths import interpolate

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import resode.plot as rplot  # noqa: E402
from resode.plot.timeseries import decision_curve  # noqa: E402


def _pixels(path: Path) -> np.ndarray:
    """The image's RGB pixels; the file must be a readable, non-blank image."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 5.0
    return pixels


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    U = np.cumsum(rng.normal(size=(5, 9, 2)), axis=1)
    U[1, 6:] = np.nan  # a shorter series
    U[2, 3, 0] = np.nan  # a missing value
    times = np.sort(rng.uniform(0, 5, size=9))
    return U, times


# --------------------------------------------------------------------------- the path


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_the_path_passes_through_the_observations(interpolation: str, data) -> None:
    U, times = data
    X = interpolate(U, times, times, interpolation=interpolation)
    observed = ~np.isnan(U)
    assert X.shape == (9, 5, 2)
    assert np.allclose(X.transpose(1, 0, 2)[observed], U[observed], rtol=0, atol=1e-12)
    # a missing value is filled linearly in time between its neighbours (both methods)
    w = (times[3] - times[2]) / (times[4] - times[2])
    assert X[3, 2, 0] == pytest.approx((1 - w) * U[2, 2, 0] + w * U[2, 4, 0], abs=1e-12)
    # after a shorter series' end its path holds its last value
    assert np.allclose(X[6:, 1], U[1, 5], rtol=0, atol=1e-12)


def test_linear_and_cubic_paths_between_the_observations() -> None:
    U = np.array([[[0.0], [1.0], [4.0], [9.0]]])
    linear = interpolate(U, t=[0.5, 1.5, 2.5], interpolation="linear")[:, 0, 0]
    assert np.allclose(linear, [0.5, 2.5, 6.5], rtol=0, atol=1e-12)
    # torchcde's Hermite cubic with backward differences: on [1, 2] the ends' slopes are
    # 1 (x1 - x0) and 3 (x2 - x1); at the midpoint (x1 + x2)/2 + (m1 - m2)/8 = 2.5 - 0.25
    cubic = interpolate(U, t=[1.5], interpolation="cubic")[0, 0, 0]
    assert cubic == pytest.approx(2.25, abs=1e-12)


# --------------------------------------------------------------------------- the figures


def test_series_and_hidden_state(tmp_path: Path, data) -> None:
    U, times = data
    model = resode.NeuralCDE(2, 3, seed=0)
    a = _pixels(rplot.series(model, U, tmp_path / "s0.png", times, names=["a", "b"]))
    b = _pixels(rplot.series(model, U, tmp_path / "s1.png", times, sample=1))
    assert a.shape == b.shape and not np.array_equal(a, b)  # another series, another picture
    _pixels(rplot.hidden_state(model, U, tmp_path / "z.png", times, sample=2))
    _pixels(rplot.hidden_state(model, U, tmp_path / "zf.png", times, points=100))
    assert rplot.hidden_state(model, U, tmp_path / "z.svg", times).suffix == ".svg"
    with pytest.raises(ValueError, match="sample must be an index in"):
        rplot.series(model, U, tmp_path / "x.png", sample=5)
    with pytest.raises(ValueError, match="names must hold 2 names"):
        rplot.series(model, U, tmp_path / "x.png", names=["a"])
    with pytest.raises(TypeError, match=r"resode\.NeuralCDE"):
        rplot.series(resode.NeuralODE(2, T=1.0, pieces=2), U, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_decision_along_time_ends_at_predict_proba(tmp_path: Path, data) -> None:
    U, times = data
    model = resode.NeuralCDE(2, 3, classes=3, seed=1)
    t, proba = decision_curve(model, U, times, 1, None)
    assert np.array_equal(t, times[:6])  # the shorter series' own observations
    assert np.allclose(proba.sum(axis=1), 1.0)
    # after each observation: the decision on the series observed so far
    for k in (2, 5):
        alone = model.predict_proba(U[1:2, : k + 1], times[: k + 1])[0]
        assert np.allclose(proba[k], alone, rtol=1e-10, atol=1e-12)
    t, fine = decision_curve(model, U, times, 1, 50)  # finer steps: close, not equal
    assert t[0] == times[0] and t[-1] == times[5] and len(t) >= 50
    assert np.allclose(fine[-1], proba[-1], atol=0.05)
    _pixels(rplot.decision_along_time(model, U, tmp_path / "d.png", times, sample=1,
                                      labels=["a", "b", "c"]))  # fmt: skip
    regression = resode.NeuralCDE(2, 3, classes=1, loss="mse", seed=0)
    with pytest.raises(ValueError, match="needs a classifier"):
        rplot.decision_along_time(regression, U, tmp_path / "r.png", times)
