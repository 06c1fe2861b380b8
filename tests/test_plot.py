"""Tests for resode.plot: every function writes a valid image (small models, few points)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

import resode  # noqa: E402
import resode.plot as rplot  # noqa: E402
from resode.plot import _common, _geometry, curves  # noqa: E402


def _check_image(path: Path, *, frames: int | None = None) -> tuple[int, int]:
    """Assert ``path`` is a readable image (with at least ``frames`` frames); its size."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        im.load()
        if frames is not None:
            assert getattr(im, "n_frames", 1) >= frames
        return im.size


@pytest.fixture(scope="module")
def trained() -> tuple[resode.NeuralODE, np.ndarray, np.ndarray, resode.History]:
    X, y = resode.datasets.concentric_spheres(80, seed=0)
    model = resode.NeuralODE(2, T=3.0, pieces=4, field="bottleneck", hidden=6, augment=1, seed=0)
    h = resode.fit(
        model,
        X,
        y,
        optimizer=resode.optim.Adam(lr=2e-2),
        epochs=5,
        validation_data=(X[:20], y[:20]),
        seed=0,
        progress=False,
    )
    return model, X, y, h


def test_trajectories_gif_3d(tmp_path: Path, trained: Any) -> None:
    model, X, y, _ = trained
    out = rplot.trajectories(model, X, y, tmp_path / "flow.gif", max_points=40, smooth=2)
    assert out == tmp_path / "flow.gif"
    width, _ = _check_image(out, frames=model.steps * 2 + 1)
    assert width > 100


@pytest.mark.parametrize(
    ("model", "dim"),
    [
        (resode.ResNet(2, 3, h=0.3, seed=0), 2),  # D = 2: the plane, decision line
        (resode.ResNet(2, 2, augment=2, classes=3, seed=0), 2),  # D = 4: first two coordinates
        (resode.NeuralODE(1, T=1.0, pieces=2, seed=0), 1),  # D = 1: the line
    ],
    ids=["2d", "4d", "1d"],
)
def test_trajectories_other_dimensions(tmp_path: Path, model: Any, dim: int) -> None:
    X = np.random.default_rng(0).normal(size=(30, dim))
    y = np.arange(30) % model.classes
    one_hot = np.eye(model.classes)[y]  # float targets are accepted as colours too
    out = rplot.trajectories(model, X, one_hot, str(tmp_path / "a.gif"), max_frames=5)
    _check_image(out, frames=2)


def test_trajectories_argument_errors(tmp_path: Path, trained: Any) -> None:
    model, X, y, _ = trained
    with pytest.raises(ValueError, match=r"gif or \.mp4"):
        rplot.trajectories(model, X, y, tmp_path / "a.png")
    with pytest.raises(ValueError, match="max_points"):
        rplot.trajectories(model, X, y, tmp_path / "a.gif", max_points=0)
    with pytest.raises(ValueError, match="shape"):
        rplot.trajectories(model, X, y[:5], tmp_path / "a.gif")
    with pytest.raises(TypeError, match="model"):
        rplot.trajectories("model", X, y, tmp_path / "a.gif")
    if shutil.which("ffmpeg") is None:
        with pytest.raises(RuntimeError, match="ffmpeg"):
            rplot.trajectories(model, X, y, tmp_path / "a.mp4")


# The only reason to skip the MP4 test; under CI (which installs ffmpeg) conftest.py turns this
# skip into a failure.
FFMPEG_NOT_FOUND = "ffmpeg not found"


def test_trajectories_mp4_with_ffmpeg(tmp_path: Path, trained: Any) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip(FFMPEG_NOT_FOUND)
    model, X, y, _ = trained
    out = rplot.trajectories(model, X, y, tmp_path / "a.mp4", max_frames=4)
    data = out.read_bytes()
    assert data[4:8] == b"ftyp", "not an MP4 container"
    # ffmpeg decodes it: count the video frames (stderr has "frame=    N")
    done = subprocess.run(
        [ffmpeg, "-v", "info", "-i", str(out), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frames = re.findall(r"frame=\s*(\d+)", done.stderr)
    assert frames and int(frames[-1]) >= 4, done.stderr[-2000:]


def test_decision_boundary(tmp_path: Path, trained: Any) -> None:
    model, X, y, _ = trained
    out = rplot.decision_boundary(
        model, X[:60], y[:60], X[60:], y[60:], path=tmp_path / "b.png", resolution=40
    )
    _check_image(out)
    three = resode.ResNet(2, 2, classes=3, seed=0)
    out = rplot.decision_boundary(three, X, y % 3, path=tmp_path / "b3.png", resolution=30)
    _check_image(out)
    with pytest.raises(ValueError, match="2-D inputs"):
        rplot.decision_boundary(
            resode.ResNet(3, 2, seed=0), np.zeros((4, 3)), np.zeros(4), path=tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="y_test"):
        rplot.decision_boundary(model, X, y, X, path=tmp_path / "x.png")


def test_history_plot_from_history_and_dict(tmp_path: Path, trained: Any) -> None:
    h = trained[3]
    _check_image(rplot.history(h, tmp_path / "h.png"))
    as_dict = {"loss": [1.0, 0.0], "accuracy": [0.5, 1.0]}  # no epoch column, a zero loss
    _check_image(rplot.history(as_dict, tmp_path / "d.png"))
    svg = rplot.history(h.to_dict(), tmp_path / "h.svg")  # the format follows the suffix
    assert svg.read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="accuracy"):
        rplot.history({"loss": [1.0]}, tmp_path / "x.png")


@pytest.mark.parametrize(
    "model",
    [
        resode.NeuralODE(2, T=2.0, pieces=5, field="bottleneck", hidden=4, seed=0),
        resode.ResNet(2, 4, seed=0),
    ],
    ids=["node", "resnet"],
)
def test_controls_and_state_norm(tmp_path: Path, model: Any) -> None:
    X = np.random.default_rng(0).normal(size=(25, 2))
    _check_image(rplot.controls(model, tmp_path / "c.png"))
    _check_image(rplot.state_norm(model, X, tmp_path / "n.png"))
    _check_image(rplot.state_norm(model, X, tmp_path / "n2.png", y=np.arange(25) % 2))
    with pytest.raises(ValueError, match="band"):
        rplot.state_norm(model, X, tmp_path / "n3.png", band=(0.9, 0.1))


def test_missing_matplotlib_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install resode\[plot\]"):
        rplot.controls(resode.ResNet(2, 2, seed=0), "never.png")


def test_frame_limits_never_degenerate() -> None:
    # two spread coordinates and an augmented one that is 0 at t = 0 and spreads later
    rng = np.random.default_rng(0)
    traj = np.zeros((3, 50, 3))
    traj[:, :, :2] = rng.normal(size=(50, 2))
    traj[1, :, 2], traj[2, :, 2] = 0.5 * rng.normal(size=50), 2.0 * rng.normal(size=50)
    lo, hi = _geometry.frame_limits(traj)
    extent = (traj.max(axis=(0, 1)) - traj.min(axis=(0, 1))).max()
    assert hi[0, 2] - lo[0, 2] >= 0.1 * extent * 0.999  # frame 0: not +-0.001
    assert np.all(lo <= traj.min(axis=1)) and np.all(hi >= traj.max(axis=1))
    assert np.all(np.diff(hi - lo, axis=0) >= -1e-12)  # the camera only zooms out


def test_principal_plane_projects_on_the_largest_spread() -> None:
    rng = np.random.default_rng(1)
    final = rng.normal(size=(200, 5)) * np.array([0.1, 5.0, 0.2, 2.0, 0.1])
    traj = np.stack([0.5 * final, final])
    proj = _geometry.principal_plane(traj)
    assert proj.shape == (2, 200, 2)
    spread = proj[-1].std(axis=0)
    assert spread[0] == pytest.approx(final[:, 1].std(), rel=0.05)
    assert spread[1] == pytest.approx(final[:, 3].std(), rel=0.05)


def test_readout_plane_last_frame_of_a_3d_flow(tmp_path: Path, trained: Any) -> None:
    model = trained[0]
    grid = _geometry.readout_plane_grid(model, [(-2.0, 2.0), (-2.0, 2.0), (-2.0, 2.0)])
    assert grid is not None
    points = np.stack([g.ravel() for g in grid], axis=1)
    points = points[np.isfinite(points).all(axis=1)]
    w = model.params["P"][1] - model.params["P"][0]
    b = model.params["c"][1] - model.params["c"][0]
    assert len(points) > 10 and np.abs(points).max() <= 2.0
    np.testing.assert_allclose(points @ w + b, 0.0, atol=1e-12)  # on the separating plane
    _check_image(rplot.trajectories(model, *trained[1:3], tmp_path / "t.gif"), frames=2)


def test_legends_sit_outside_the_axes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for k in range(10):
        ax.plot([0, 1], [k, k], label=f"class {k}")
    _common.legend_outside(ax)
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes, covering nothing
    plt.close(fig)
    X, y = resode.datasets.tricolor(60, seed=0)
    model = resode.NeuralODE(2, T=1.0, pieces=3, classes=10, seed=0)
    _check_image(rplot.state_norm(model, X, tmp_path / "n.png", y=y))


# --------------------------------------------------------------------------- studies


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_loss_along_time_draws_several_models(tmp_path: Path) -> None:
    X, y = resode.datasets.concentric_spheres(60, seed=0)
    models = {
        "T = 1": resode.NeuralODE(2, T=1.0, pieces=4, augment=1, seed=0),
        "T = 4": resode.NeuralODE(2, T=4.0, pieces=8, augment=1, seed=1),
        "resnet": resode.ResNet(2, 5, augment=1, seed=2),
    }
    path = rplot.loss_along_time(models, X, y, tmp_path / "l.png")
    width, height = _png_size(path)
    assert width > 300 and height > 200
    with pytest.raises(ValueError, match="at least one model"):
        rplot.loss_along_time({}, X, y, tmp_path / "none.png")


def test_sweep_plot_reads_a_results_table(tmp_path: Path) -> None:
    table = tmp_path / "results.csv"
    lines = ["T,turnpike,seed,status,train_loss"]
    for T in (1.0, 2.0, 4.0):
        for turnpike in (False, True):
            for seed in range(3):
                loss = (1.0 / T if not turnpike else np.exp(-2 * T)) * (1 + 0.1 * seed)
                lines.append(f"{T},{turnpike},{seed},ok,{loss}")
    lines.append("8.0,True,0,diverged,")
    lines.append("8.0,False,0,ok,0.0")  # an underflow to 0 is drawn at a floor
    table.write_text("\n".join(lines) + "\n")
    path = rplot.sweep(table, tmp_path / "s.png", x="T", y="train_loss", hue="turnpike")
    assert _png_size(path)[0] > 300
    with pytest.raises(ValueError, match=r"columns 'T' and 'nothing'"):
        rplot.sweep(table, tmp_path / "bad.png", y="nothing")


def test_sweep_fits_the_power_law_and_the_rate() -> None:
    _fit_line = curves._fit_line

    T = np.array([1.0, 2.0, 4.0, 8.0])
    assert _fit_line(np.log(T), np.log(3.0 / T)) == pytest.approx(-1.0)
    assert -_fit_line(T, np.log(np.exp(-0.5 * T))) == pytest.approx(0.5)


# --------------------------------------------------------------------------- issue 16


def _frames(path: Path) -> int:
    _check_image(path)
    with Image.open(path) as im:
        return int(getattr(im, "n_frames", 1))


def test_decision_regions_gif_has_a_frame_per_step_and_png_the_chosen_times(
    tmp_path: Path, trained: Any
) -> None:
    model, X, y, _ = trained
    gif = rplot.decision_regions(model, X, y, tmp_path / "r.gif", resolution=24)
    assert _frames(gif) == model.steps + 1
    png = rplot.decision_regions(model, X, y, tmp_path / "r.png", times=[0.0, 1.5, 3.0])
    width, height = _check_image(png)
    assert width > 2 * height  # three panels side by side
    part = rplot.decision_regions(model, X, y, tmp_path / "p.gif", times=[0, 3], resolution=8)
    assert _frames(part) == 2
    with pytest.raises(ValueError, match="times"):
        rplot.decision_regions(model, X, y, tmp_path / "x.png", times=[5.0])


@pytest.mark.parametrize(
    "model",
    [
        resode.NeuralODE(2, T=1.0, pieces=3, classes=1, loss="mse", readout="hardtanh", seed=0),
        resode.ResNet(2, 3, classes=3, augment=1, seed=0),
    ],
    ids=["one_output_hardtanh", "three_classes_resnet"],
)
def test_decision_regions_and_features_for_other_readouts(tmp_path: Path, model: Any) -> None:
    X, labels = resode.datasets.tricolor(30, seed=0)
    y = np.where(labels > 0, 1.0, -1.0) if model.classes == 1 else labels
    assert _frames(rplot.decision_regions(model, X, y, tmp_path / "r.gif", resolution=10)) == 4
    _check_image(rplot.features(model, X, y, tmp_path / "f.png"))


def test_features_draws_the_separating_plane_in_3d(tmp_path: Path, trained: Any) -> None:
    model, X, y, _ = trained
    _check_image(rplot.features(model, X, y, tmp_path / "f.png"))


def test_fit_records_features_and_feature_history_animates_them(tmp_path: Path) -> None:
    X, y = resode.datasets.chess3(60, seed=0)
    model = resode.NeuralODE(2, T=1.0, pieces=3, augment=1, seed=0)
    h = resode.fit(model, X, y, epochs=5, record=20, record_every=2, seed=1, progress=False)
    record = h.features
    assert record["epoch"] == [0, 2, 4, 5]
    assert len(record["states"]) == 4 and record["states"][0].shape == (20, 3)
    np.testing.assert_array_equal(record["states"][-1], model.trajectory(record["X"])[-1])
    assert _frames(rplot.feature_history(h, tmp_path / "f.gif")) == 4
    rows = resode.fit(
        resode.NeuralODE(2, pieces=2, seed=0), X, y, epochs=1, record=[0, 5], progress=False
    ).features
    np.testing.assert_array_equal(rows["X"], X[[0, 5]])
    with pytest.raises(ValueError, match="record"):
        resode.fit(model, X, y, epochs=1, record=0, progress=False)
    with pytest.raises(ValueError, match="no recorded features"):
        rplot.feature_history(resode.History(), tmp_path / "g.gif")


def test_history_of_several_runs_draws_mean_and_std_bands(tmp_path: Path) -> None:
    runs = [
        {
            "epoch": [1, 2, 3],
            "loss": [0.9 - 0.1 * s, 0.5, 0.2 + 0.01 * s],
            "accuracy": [0.5, 0.7, 0.9],
        }
        for s in range(3)
    ]
    runs[2] = {k: [*v, v[-1]] for k, v in runs[2].items()}  # a longer run: cut to 3 epochs
    _check_image(rplot.history(runs, tmp_path / "h.png"))
    with pytest.raises(ValueError, match="at least one"):
        rplot.history([], tmp_path / "e.png")


@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
@pytest.mark.parametrize("kind", ["node", "resnet"])
def test_controls_and_state_norm_for_every_field(tmp_path: Path, field: str, kind: str) -> None:
    hidden = 3 if field == "bottleneck" else None
    model = (
        resode.NeuralODE(2, T=1.0, pieces=3, field=field, hidden=hidden, seed=0)
        if kind == "node"
        else resode.ResNet(2, 3, field=field, hidden=hidden, seed=0)
    )
    _check_image(rplot.controls(model, tmp_path / "c.png"))
    _check_image(rplot.state_norm(model, np.ones((4, 2)), tmp_path / "n.png"))


def test_image_flow_png_and_gif_for_digit_sized_states(tmp_path: Path) -> None:
    X = np.random.default_rng(0).random((5, 64))
    model = resode.NeuralODE(64, T=1.0, pieces=4, classes=10, seed=0)
    _check_image(rplot.image_flow(model, X, tmp_path / "i.png", max_images=3))
    assert _frames(rplot.image_flow(model, X, tmp_path / "i.gif", max_images=2)) == 5
    with pytest.raises(ValueError, match="square"):
        rplot.image_flow(resode.NeuralODE(3, seed=0), X[:, :3], tmp_path / "x.png")


def test_loss_along_time_uses_the_clamped_readout(tmp_path: Path) -> None:
    X, labels = resode.datasets.chess3(40, seed=0)
    model = resode.NeuralODE(2, T=1.0, pieces=2, classes=1, loss="mse", readout="hardtanh", seed=0)
    model.params["P"][...] = 50.0  # unclamped outputs would be far from the +-1 targets
    _check_image(
        rplot.loss_along_time(model, X, np.where(labels > 0, 1.0, -1.0), tmp_path / "l.png")
    )


# --------------------------------------------------------------------------- issue 23


def _svg_text(draw: Any) -> str:
    """The SVG ``draw()`` writes, its text kept as text (not paths) so that it can be read."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):
        return Path(draw()).read_text(encoding="utf-8")


def _sign_classifier() -> resode.NeuralODE:
    """leia's setup (one output, hardtanh readout, mse on +-1 targets) with a known decision:
    a zero field (the flow is the identity) and the readout z = clip(4 x1, -1, 1)."""
    model = resode.NeuralODE(
        2, T=1.0, pieces=2, classes=1, loss="mse", readout="hardtanh", augment=1, seed=0
    )
    for name in ("W", "b", "c"):
        model.params[name][...] = 0.0
    model.params["P"][...] = [[4.0, 0.0, 0.0]]
    return model


def test_decision_boundary_of_a_one_output_sign_classifier(tmp_path: Path) -> None:
    """The decision is the sign of the output, the points are coloured by the sign of their
    targets and the accuracy is the sign agreement (it drew a blank plane, "train (0.0%)")."""
    model = _sign_classifier()
    X = np.random.default_rng(0).normal(size=(200, 2))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    y[:20] *= -1.0  # 20 of 200 on the wrong side: 90% sign agreement
    y_test = np.where(X[:50, 0] > 0, 1.0, -1.0)  # all right: 100%
    svg = _svg_text(
        lambda: rplot.decision_boundary(
            model, X, y, X[:50], y_test, path=tmp_path / "b.svg", resolution=40
        )
    )
    assert "train (90.0%)" in svg and "test (100.0%)" in svg
    assert "sign of the output" in svg
    png = rplot.decision_boundary(model, X, y, path=tmp_path / "b.png", resolution=60)
    import matplotlib.image

    rgb = matplotlib.image.imread(png)[..., :3]
    h, w = rgb.shape[:2]
    plane = rgb[h // 4 : 3 * h // 4, w // 5 : 3 * w // 5]  # inside the axes, left of the bar
    red = np.mean(plane[..., 0] > plane[..., 2] + 0.2)
    blue = np.mean(plane[..., 2] > plane[..., 0] + 0.2)
    assert red > 0.2 and blue > 0.2, (red, blue)  # both sides of x1 = 0 coloured
    assert len(np.unique(plane.reshape(-1, 3), axis=0)) > 10


def test_one_output_points_are_coloured_by_the_sign_of_their_targets(tmp_path: Path) -> None:
    """+-1 targets are labels [y > 0] in every figure (they were cast to -1 and 1, both drawn
    in the same colour)."""
    model = _sign_classifier()
    X = np.random.default_rng(1).normal(size=(40, 2))
    y = np.where(X[:, 0] > 0, 1.0, -1.0)
    svg = _svg_text(lambda: rplot.state_norm(model, X, tmp_path / "n.svg", y=y))
    assert "y &lt;= 0" in svg and "y &gt; 0" in svg and "class -1" not in svg
    _check_image(rplot.trajectories(model, X, y, tmp_path / "t.gif", max_frames=3), frames=2)


def test_history_of_a_sign_classifier_shows_its_accuracy(tmp_path: Path) -> None:
    both = {"loss": [0.5, 0.2], "r2": [-3.0, 0.4], "accuracy": [0.6, 0.95]}
    svg = _svg_text(lambda: rplot.history(both, tmp_path / "h.svg"))
    assert ">accuracy<" in svg and "R^2" not in svg
    svg = _svg_text(lambda: rplot.history({"loss": [0.5], "r2": [0.1]}, tmp_path / "r.svg"))
    assert "R^2" in svg


def test_import_resode_plot_does_not_import_matplotlib() -> None:
    code = (
        "import sys, resode; assert 'matplotlib' not in sys.modules; "
        "import resode.plot; assert 'matplotlib' not in sys.modules; "
        "assert callable(resode.plot.decision_boundary)"
    )
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
