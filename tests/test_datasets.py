"""Tests for resode.datasets (pure NumPy toy data sets)."""

from __future__ import annotations

import numpy as np
import pytest
from resode import datasets

HALF = 1.4
GAP = 0.1
CLASSES = {"spheres": 2, "chess": 2, "chess3": 2, "tricolor": 3, "moons": 2, "spirals": 2}
NAMES = sorted(CLASSES)


def _check_xy(X: np.ndarray, y: np.ndarray, n: int, dim: int, classes: int) -> None:
    assert isinstance(X, np.ndarray)
    assert isinstance(y, np.ndarray)
    assert X.shape == (n, dim)
    assert y.shape == (n,)
    assert X.dtype == np.float64
    assert y.dtype == np.int64
    assert X.flags.c_contiguous
    assert y.flags.c_contiguous
    assert np.isfinite(X).all()
    assert set(np.unique(y).tolist()) <= set(range(classes))


# --------------------------------------------------------------------------- generic


def test_registry_has_all_generators() -> None:
    assert set(datasets.DATASETS) == set(CLASSES)
    assert datasets.DATASETS["spheres"] is datasets.concentric_spheres
    for name in datasets.__all__:
        assert hasattr(datasets, name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 2, 7, 300, 301])
def test_shapes_dtypes_and_exact_balance(name: str, n: int) -> None:
    k = CLASSES[name]
    X, y = datasets.DATASETS[name](n, seed=0)
    _check_xy(X, y, n, 2, k)
    counts = np.bincount(y, minlength=k)
    assert counts.sum() == n
    # n // k per class, the remainder to the highest-numbered classes
    expected = [n // k + (1 if c >= k - n % k else 0) for c in range(k)]
    assert counts.tolist() == expected


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_data_different_seed_differs(name: str) -> None:
    gen = datasets.DATASETS[name]
    X1, y1 = gen(200, seed=123)
    X2, y2 = gen(200, seed=123)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, _ = gen(200, seed=124)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("name", NAMES)
def test_seed_none_gives_fresh_data(name: str) -> None:
    X1, _ = datasets.DATASETS[name](100)
    X2, _ = datasets.DATASETS[name](100)
    assert not np.array_equal(X1, X2)


@pytest.mark.parametrize("name", NAMES)
def test_generator_as_seed(name: str) -> None:
    gen = datasets.DATASETS[name]
    X1, _ = gen(50, seed=np.random.default_rng(5))
    X2, _ = gen(50, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(X1, X2)


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_shuffled(name: str) -> None:
    _, y = datasets.DATASETS[name](400, seed=0)
    # Not sorted by class: labels change many times along the sample axis.
    assert np.count_nonzero(np.diff(y)) > 50


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [0, -3, 2.5, "10", None, True])
def test_bad_n(name: str, n: object) -> None:
    with pytest.raises(ValueError, match=r"\bn\b"):
        datasets.DATASETS[name](n)


def test_numpy_integer_n_accepted() -> None:
    X, _ = datasets.chess(np.int64(10), seed=0)
    assert X.shape == (10, 2)


# --------------------------------------------------------------------------- spheres


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_spheres_radii_within_shells(dim: int) -> None:
    inner, outer = (0.2, 0.6), (1.0, 1.5)
    X, y = datasets.concentric_spheres(1000, dim=dim, inner=inner, outer=outer, seed=1)
    _check_xy(X, y, 1000, dim, 2)
    r = np.linalg.norm(X, axis=1)
    eps = 1e-12
    assert ((r[y == 0] >= inner[0] - eps) & (r[y == 0] <= inner[1] + eps)).all()
    assert ((r[y == 1] >= outer[0] - eps) & (r[y == 1] <= outer[1] + eps)).all()


def test_spheres_default_inner_is_ball_and_remainder_to_class_1() -> None:
    X, y = datasets.concentric_spheres(1001, seed=2)
    assert np.bincount(y).tolist() == [500, 501]
    r = np.linalg.norm(X, axis=1)
    assert r[y == 0].max() <= 0.5 + 1e-12
    assert r[y == 1].min() >= 1.0 - 1e-12
    assert r[y == 1].max() <= 1.5 + 1e-12


def test_spheres_uniform_in_volume_dim3() -> None:
    # Uniform in a 3-ball of radius R: P(r <= R * 2^(-1/3)) = 1/2.
    X, y = datasets.concentric_spheres(40000, dim=3, seed=3)
    r0 = np.linalg.norm(X[y == 0], axis=1)
    frac = np.mean(r0 <= 0.5 * 2.0 ** (-1.0 / 3.0))
    assert abs(frac - 0.5) < 0.02
    # Uniform in the shell [1, 1.5]: the median radius is ((1 + 1.5^3) / 2)^(1/3).
    r1 = np.linalg.norm(X[y == 1], axis=1)
    assert abs(np.median(r1) - ((1.0 + 1.5**3) / 2.0) ** (1.0 / 3.0)) < 0.01
    # Directions are isotropic: the mean of the unit vectors is near zero.
    assert np.abs((X / np.linalg.norm(X, axis=1, keepdims=True)).mean(axis=0)).max() < 0.02


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"dim": 0}, "dim"),
        ({"dim": 1.5}, "dim"),
        ({"inner": (0.5, 0.2)}, "inner"),
        ({"inner": (-0.1, 0.5)}, "inner"),
        ({"inner": (0.3, 0.3)}, "inner"),
        ({"inner": (0.0, float("nan"))}, "inner"),
        ({"inner": (0.0,)}, "inner"),
        ({"inner": 0.5}, "inner"),
        ({"outer": (1.5, 1.0)}, "outer"),
        ({"outer": (1.0, float("inf"))}, "outer"),
        ({"inner": (0.0, 1.2), "outer": (1.0, 1.5)}, "inner"),
    ],
)
def test_spheres_bad_arguments(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg):
        datasets.concentric_spheres(10, **kwargs)


def test_spheres_touching_shells_allowed() -> None:
    X, y = datasets.concentric_spheres(20, inner=(0.0, 1.0), outer=(1.0, 2.0), seed=0)
    _check_xy(X, y, 20, 2, 2)


# --------------------------------------------------------------------------- chess


def test_chess_geometry_and_xor_labels() -> None:
    X, y = datasets.chess(5000, seed=4)
    x0, x1 = X[:, 0], X[:, 1]
    assert (np.abs(X) <= HALF).all()
    assert (np.abs(x0) >= GAP).all()
    assert (np.abs(x1) >= GAP).all()
    np.testing.assert_array_equal(y, ((x0 > 0) ^ (x1 > 0)).astype(np.int64))
    # All four quadrants are populated about equally.
    quadrant = 2 * (x0 > 0) + (x1 > 0)
    counts = np.bincount(quadrant, minlength=4)
    assert counts.min() > 0.2 * len(X)


def test_chess_uniform_within_quadrant() -> None:
    X, _ = datasets.chess(20000, seed=5)
    a = np.abs(X)  # uniform in [GAP, HALF]^2 after folding the quadrants
    assert abs(a.mean() - (GAP + HALF) / 2) < 0.01
    assert abs(a.var() - (HALF - GAP) ** 2 / 12) < 0.01


def _chess3_cells(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = 2 * HALF / 3
    idx = np.floor((X + HALF) / width).astype(int)
    return np.clip(idx[:, 0], 0, 2), np.clip(idx[:, 1], 0, 2)


def test_chess3_geometry_and_labels() -> None:
    X, y = datasets.chess3(6000, seed=6)
    assert (np.abs(X) <= HALF).all()
    boundaries = np.array([-HALF / 3, HALF / 3])
    dist = np.abs(X[:, :, None] - boundaries[None, None, :]).min(axis=2)
    assert (dist >= GAP - 1e-12).all()
    i, j = _chess3_cells(X)
    np.testing.assert_array_equal(y, (i + j) % 2)
    # All nine cells are populated.
    counts = np.bincount(3 * i + j, minlength=9)
    assert counts.min() > 0.05 * len(X)


def test_chess3_uniform_within_class() -> None:
    # Class 1 = the four edge cells, all of the same area: about equally populated.
    X, y = datasets.chess3(40000, seed=7)
    i, j = _chess3_cells(X[y == 1])
    counts = np.bincount(3 * i + j, minlength=9)[[1, 3, 5, 7]]
    assert counts.min() / counts.max() > 0.9


# --------------------------------------------------------------------------- tricolor


def test_tricolor_regions() -> None:
    X, y = datasets.tricolor(3000, seed=8)
    r = np.hypot(X[:, 0], X[:, 1])
    eps = 1e-12
    assert (r[y == 0] <= 0.5 + eps).all()
    assert ((r[y == 1] >= 0.7 - eps) & (r[y == 1] <= 1.0 + eps)).all()
    assert ((r[y == 2] >= 1.2 - eps) & (r[y == 2] <= 1.5 + eps)).all()


def test_tricolor_uniform_in_area() -> None:
    X, y = datasets.tricolor(30000, seed=9)
    r0 = np.hypot(*X[y == 0].T)
    # Uniform in a disc of radius 0.5: P(r <= 0.5 / sqrt(2)) = 1/2.
    assert abs(np.mean(r0 <= 0.5 / np.sqrt(2.0)) - 0.5) < 0.02


# --------------------------------------------------------------------------- moons


def test_moons_noiseless_on_the_half_circles() -> None:
    X, y = datasets.moons(401, noise=0.0, seed=10)
    a, b = X[y == 0], X[y == 1]
    assert len(a) == 200
    assert len(b) == 201
    np.testing.assert_allclose(np.hypot(a[:, 0], a[:, 1]), 1.0, atol=1e-12)
    assert (a[:, 1] >= -1e-12).all()
    np.testing.assert_allclose(np.hypot(b[:, 0] - 1.0, b[:, 1] - 0.5), 1.0, atol=1e-12)
    assert (b[:, 1] <= 0.5 + 1e-12).all()


def test_moons_matches_sklearn_formula() -> None:
    sk = pytest.importorskip("sklearn.datasets")
    X, y = datasets.moons(101, noise=0.0, seed=0)
    X_ref, y_ref = sk.make_moons(101, noise=0.0, shuffle=False)
    for c in (0, 1):
        mine = X[y == c]
        ref = X_ref[y_ref == c]
        mine = mine[np.lexsort(mine.T[::-1])]
        ref = ref[np.lexsort(ref.T[::-1])]
        np.testing.assert_allclose(mine, ref, atol=1e-12)


def test_moons_noise_level() -> None:
    X0, y0 = datasets.moons(20000, noise=0.0, seed=11)
    X1, y1 = datasets.moons(20000, noise=0.2, seed=11)
    # Same seed: same shuffle, noise drawn after it, so the difference is the noise.
    np.testing.assert_array_equal(y0, y1)
    assert abs((X1 - X0).std() - 0.2) < 0.005


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf"), "a"])
@pytest.mark.parametrize("name", ["moons", "spirals"])
def test_bad_noise(name: str, noise: object) -> None:
    with pytest.raises(ValueError, match="noise"):
        datasets.DATASETS[name](10, noise=noise)


# --------------------------------------------------------------------------- spirals


def test_spirals_noiseless_on_the_curves() -> None:
    X, y = datasets.spirals(2000, noise=0.0, seed=12)
    theta_max = 3.0 * np.pi
    r = np.hypot(X[:, 0], X[:, 1])
    assert (r >= 0.25 - 1e-12).all()
    assert (r <= 1.5 + 1e-12).all()
    theta = r * theta_max / 1.5  # Archimedean: r = 1.5 * theta / theta_max
    # Angular offset of each point from class 0's curve: 0 for class 0, pi for class 1.
    offset = np.mod(np.arctan2(X[:, 1], X[:, 0]) - theta, 2.0 * np.pi)
    dist_to_expected = np.abs(np.angle(np.exp(1j * (offset - np.pi * y))))
    assert dist_to_expected.max() < 1e-9


def test_spirals_arms_interleave() -> None:
    # Along the positive x-axis the classes alternate with increasing radius.
    X, y = datasets.spirals(20000, noise=0.0, seed=13)
    near_axis = (np.abs(X[:, 1]) < 0.01) & (X[:, 0] > 0)
    order = np.argsort(X[near_axis, 0])
    labels = y[near_axis][order]
    runs = 1 + np.count_nonzero(np.diff(labels))
    assert runs >= 3


# --------------------------------------------------------------------------- digits


def test_digits() -> None:
    pytest.importorskip("sklearn")
    X, y = datasets.digits()
    _check_xy(X, y, 1797, 64, 10)
    assert X.min() >= 0.0
    assert X.max() <= 1.0
    assert X.max() == 1.0
    assert sorted(np.unique(y).tolist()) == list(range(10))


def test_digits_without_sklearn_raises_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install resode\[sklearn\]"):
        datasets.digits()


# --------------------------------------------------------------------------- split


@pytest.mark.parametrize(
    ("n", "test_size", "n_test"), [(100, 0.25, 25), (100, 0.2, 20), (101, 0.25, 26), (2, 0.01, 1)]
)
def test_train_test_split_sizes_and_disjointness(n: int, test_size: float, n_test: int) -> None:
    X = np.arange(3 * n, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, test_size=test_size, seed=0)
    assert X_te.shape == (n_test, 3)
    assert y_te.shape == (n_test,)
    assert X_tr.shape == (n - n_test, 3)
    assert y_tr.shape == (n - n_test,)
    assert X_tr.dtype == np.float32
    assert y_tr.dtype == np.int64
    # Rows stay paired with their labels, parts are disjoint and cover everything.
    np.testing.assert_array_equal(X_tr[:, 0], 3 * y_tr)
    np.testing.assert_array_equal(X_te[:, 0], 3 * y_te)
    assert not set(y_tr.tolist()) & set(y_te.tolist())
    assert sorted(y_tr.tolist() + y_te.tolist()) == list(range(n))


def test_train_test_split_is_shuffled_and_seeded() -> None:
    X, y = np.arange(200.0).reshape(100, 2), np.arange(100)
    a = datasets.train_test_split(X, y, seed=1)
    b = datasets.train_test_split(X, y, seed=1)
    c = datasets.train_test_split(X, y, seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])
    assert not np.array_equal(np.sort(a[3]), np.arange(75, 100))  # not just the tail
    assert np.count_nonzero(np.diff(a[2]) < 0) > 0  # training part not in input order


def test_train_test_split_on_generated_data() -> None:
    X, y = datasets.moons(200, seed=0)
    X_tr, X_te, y_tr, y_te = datasets.train_test_split(X, y, seed=0)
    assert len(X_tr) == 150
    assert len(X_te) == 50
    assert X_tr.flags.c_contiguous
    assert X_te.flags.c_contiguous
    assert len(np.unique(np.concatenate([X_tr, X_te]), axis=0)) == 200
    assert np.bincount(np.concatenate([y_tr, y_te])).tolist() == np.bincount(y).tolist()


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.5, 1.5, float("nan"), "x"])
def test_train_test_split_bad_test_size(test_size: object) -> None:
    with pytest.raises(ValueError, match="test_size"):
        datasets.train_test_split(np.zeros((10, 2)), np.zeros(10), test_size=test_size)


def test_train_test_split_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        datasets.train_test_split(np.zeros((10, 2)), np.zeros(9))


def test_train_test_split_too_few_samples() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        datasets.train_test_split(np.zeros((1, 2)), np.zeros(1))


# --------------------------------------------------------------------------- sine, load


def test_sine_is_a_seeded_regression_problem() -> None:
    X, y = datasets.sine(50, seed=3)
    assert X.shape == (50, 1) and y.shape == (50,) and y.dtype == np.float64
    assert np.all(np.abs(X) <= np.pi)
    np.testing.assert_array_equal(y, np.sin(X[:, 0]))
    Xn, yn = datasets.sine(50, noise=0.1, seed=3)
    np.testing.assert_array_equal(Xn, X)
    assert 0.0 < np.std(yn - y) < 0.2
    with pytest.raises(ValueError):
        datasets.sine(0)


def test_load_csv_and_npz(tmp_path) -> None:
    X, y = datasets.moons(20, seed=0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    Xl, yl = datasets.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(Xl, X)
    assert yl.dtype == np.int64 and np.array_equal(yl, y)
    Xf, _ = datasets.load(tmp_path / "d.npz", features=[1])
    np.testing.assert_array_equal(Xf, X[:, 1:])
    rows = np.column_stack([X, y])
    np.savetxt(tmp_path / "plain.csv", rows, delimiter=",")
    Xc, yc = datasets.load(tmp_path / "plain.csv")  # no header: the last column is the target
    np.testing.assert_allclose(Xc, X, rtol=1e-15)
    assert np.array_equal(yc, y)
    np.savetxt(tmp_path / "h.csv", rows, delimiter=",", header="a,b,label", comments="")
    for target in ("label", 2, -1, "2"):
        Xh, yh = datasets.load(tmp_path / "h.csv", target=target)
        assert Xh.shape == (20, 2) and np.array_equal(yh, y)
    Xa, ya = datasets.load(tmp_path / "h.csv", target="a", features=["b"], task="regression")
    np.testing.assert_allclose(ya, X[:, 0], rtol=1e-15)
    np.testing.assert_allclose(Xa[:, 0], X[:, 1], rtol=1e-15)
    Xo, yo = datasets.load(tmp_path / "h.csv", require_target=False)
    assert Xo.shape == (20, 3) and yo is None
    with pytest.raises(ValueError, match=r"the target column \(label\) is also a feature"):
        datasets.load(tmp_path / "h.csv", features=["a", "label"])
    with pytest.raises(ValueError, match="task must be one of"):
        datasets.load(tmp_path / "h.csv", task="ranking")
    with pytest.raises(ValueError, match=r"unknown data format '\.txt'"):
        (tmp_path / "d.txt").write_text("1,2\n")
        datasets.load(tmp_path / "d.txt")


# --------------------------------------------------------------------------- leia's data laws
# leia = github.com/borjanG/leia, data/dataloaders.py. Its Chess3 cells, copied from its code
# (random_point_in_square(x1, y1, x2, y2) and the MSE target of each cell): (x1, y1, x2, y2, t).
LEIA_CHESS3 = [
    (-0.9, -0.9, -0.37, -0.37, -1),
    (-0.28, -0.9, 0.28, -0.37, 1),
    (0.37, -0.9, 0.9, -0.37, -1),
    (-0.9, -0.28, -0.35, 0.28, 1),
    (-0.28, -0.28, 0.28, 0.28, -1),
    (0.37, -0.28, 0.9, 0.28, 1),
    (-0.9, 0.37, -0.37, 0.9, -1),
    (-0.28, 0.37, 0.28, 0.9, 1),
    (0.37, 0.37, 0.9, 0.9, -1),
]


def _leia_cell(X: np.ndarray) -> np.ndarray:
    """Index of the leia Chess3 cell holding each point, -1 if none."""
    cell = np.full(len(X), -1)
    for k, (x1, y1, x2, y2, _) in enumerate(LEIA_CHESS3):
        inside = (X[:, 0] >= x1) & (X[:, 0] <= x2) & (X[:, 1] >= y1) & (X[:, 1] <= y2)
        assert not (inside & (cell >= 0)).any()  # the cells are disjoint
        cell[inside] = k
    return cell


def test_chess3_leia_style_is_leias_board_cells_and_labels() -> None:
    n = 9 * 2000 + 4
    X, y = datasets.chess3(n, seed=2, style="leia")
    _check_xy(X, y, n, 2, 2)
    assert np.abs(X).max() <= 0.9
    cell = _leia_cell(X)
    assert (cell >= 0).all()
    targets = np.array([t for *_, t in LEIA_CHESS3])
    np.testing.assert_array_equal(y, (targets[cell] + 1) // 2)  # -1 -> 0, +1 -> 1
    counts = np.bincount(cell, minlength=9)
    np.testing.assert_array_equal(counts, [2000] * 5 + [2001] * 4)  # n // 9, rest to the last
    # The gap bands 0.28 < |t| < 0.37 hold no point, but for leia's middle-left cell, whose
    # right edge is x = -0.35.
    in_band = (np.abs(X) > 0.28) & (np.abs(X) < 0.37)
    assert not in_band[:, 1].any()
    assert not (in_band[:, 0] & (cell != 3)).any()
    assert (X[cell == 3, 0] <= -0.35).all() and (X[cell == 3, 0] > -0.37).any()
    # Uniform in each cell: the mean is the cell's centre, the variance width^2 / 12.
    for k, (x1, y1, x2, y2, _) in enumerate(LEIA_CHESS3):
        pts = X[cell == k]
        np.testing.assert_allclose(pts.mean(axis=0), [(x1 + x2) / 2, (y1 + y2) / 2], atol=0.01)
        np.testing.assert_allclose(
            pts.var(axis=0), [(x2 - x1) ** 2 / 12, (y2 - y1) ** 2 / 12], rtol=0.08
        )


def test_chess3_styles_differ_and_reject_unknown() -> None:
    X, _ = datasets.chess3(500, seed=0)
    assert np.abs(X).max() > 1.0  # resode's board is [-1.4, 1.4]^2, not leia's
    with pytest.raises(ValueError, match="style"):
        datasets.chess3(10, style="torch")


@pytest.mark.parametrize("name", ["concentric_spheres", "tricolor"])
def test_resode_noise_is_independent_jitter_and_zero_is_the_noiseless_data(name: str) -> None:
    make = getattr(datasets, name)
    X0, y0 = make(4000, seed=3)
    Xz, yz = make(4000, seed=3, noise=0.0)
    np.testing.assert_array_equal(X0, Xz)
    np.testing.assert_array_equal(y0, yz)
    Xn, yn = make(4000, seed=3, noise=0.15)
    np.testing.assert_array_equal(yn, y0)  # the same points, labels and order, then jitter
    d = Xn - X0
    assert np.std(d) == pytest.approx(0.15, rel=0.05)
    assert abs(np.corrcoef(d[:, 0], d[:, 1])[0, 1]) < 0.1  # independent coordinates
    with pytest.raises(ValueError, match="noise"):
        make(10, noise=-0.1)


@pytest.mark.parametrize("name", ["concentric_spheres", "tricolor"])
def test_leia_noise_is_one_gaussian_number_per_point_on_all_coordinates(name: str) -> None:
    make = getattr(datasets, name)
    X0, y0 = make(20000, seed=4, noise=0.0, style="leia")
    X, y = make(20000, seed=4, style="leia")  # leia's default noise, 0.15
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(X, make(20000, seed=4, noise=0.15, style="leia")[0])
    d = X - X0
    np.testing.assert_allclose(d[:, 0], d[:, 1], atol=1e-12)  # the same number on both
    assert abs(d[:, 0].mean()) < 0.01
    assert d[:, 0].std() == pytest.approx(0.15, rel=0.03)
    d2 = make(20000, seed=4, noise=0.3, style="leia")[0] - X0
    assert d2[:, 0].std() == pytest.approx(0.3, rel=0.03)


def test_tricolor_leia_style_has_leias_radii_and_radius_law() -> None:
    X, y = datasets.tricolor(30000, seed=1, noise=0.0, style="leia")
    _check_xy(X, y, 30000, 2, 3)
    np.testing.assert_array_equal(np.bincount(y), [10000] * 3)
    r = np.hypot(X[:, 0], X[:, 1])
    for c, (lo, hi) in enumerate([(0.0, 0.5), (0.75, 1.25), (1.5, 2.0)]):
        rc = r[y == c]
        assert rc.min() >= lo - 1e-12 and rc.max() <= hi + 1e-12
        # r = lo + (hi - lo) sqrt(u): P(r <= lo + (hi - lo) / 2) = 1/4.
        assert abs(np.mean(rc <= lo + (hi - lo) / 2) - 0.25) < 0.02
    with pytest.raises(ValueError, match="style"):
        datasets.tricolor(10, style="torch")


def test_concentric_spheres_leia_style_has_leias_radius_law() -> None:
    X, y = datasets.concentric_spheres(40000, dim=3, seed=5, noise=0.0, style="leia")
    _check_xy(X, y, 40000, 3, 2)
    r = np.linalg.norm(X, axis=1)
    for c, (lo, hi) in enumerate([(0.0, 0.5), (1.0, 1.5)]):
        rc = r[y == c]
        assert rc.min() >= lo - 1e-12 and rc.max() <= hi + 1e-12
        # r = lo + (hi - lo) u^(1/3): P(r <= lo + (hi - lo) / 2) = 1/8 (resode's law: more).
        assert abs(np.mean(rc <= lo + (hi - lo) / 2) - 0.125) < 0.01
