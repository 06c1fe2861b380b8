"""scikit-learn estimators: the full check_estimator suite and a few integration checks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("sklearn")

import resode
from resode.sklearn import (
    NeuralODEClassifier,
    NeuralODERegressor,
    ResNetClassifier,
    ResNetRegressor,
)
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

# Small models keep the ~50 fits of the check suite fast.
_ESTIMATORS = [
    NeuralODEClassifier(pieces=4, hidden=8, epochs=60, lr=3e-2),
    ResNetClassifier(layers=4, h=0.25, hidden=8, epochs=60, lr=3e-2),
    NeuralODERegressor(pieces=4, hidden=8, epochs=60, lr=3e-2),
    ResNetRegressor(layers=4, h=0.25, hidden=8, epochs=60, lr=3e-2),
]


@parametrize_with_checks(_ESTIMATORS)
def test_check_estimator(estimator, check) -> None:
    check(estimator)


def test_string_labels_and_attributes() -> None:
    X, y = resode.datasets.concentric_spheres(200, seed=0)
    labels = np.array(["inner", "outer"])[y]
    clf = NeuralODEClassifier(T=5.0, pieces=8, epochs=80, lr=2e-2, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["inner", "outer"]
    assert clf.n_features_in_ == 2 and clf.n_iter_ == 80
    assert isinstance(clf.model_, resode.NeuralODE) and len(clf.history_) == 80
    assert clf.score(X, labels) >= 0.95
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))


def test_mse_loss_and_sgd() -> None:
    X, y = resode.datasets.moons(150, noise=0.05, seed=0)
    clf = ResNetClassifier(
        h=0.5, loss="mse", optimizer="sgd", lr=0.2, momentum=0.9, epochs=80, random_state=0
    )
    assert clf.fit(X, y + 5).score(X, y + 5) >= 0.85
    assert set(clf.predict(X)) <= {5, 6}


def test_pipeline_and_grid_search() -> None:
    X, y = resode.datasets.moons(120, noise=0.1, seed=1)
    pipe = make_pipeline(StandardScaler(), ResNetClassifier(layers=4, epochs=20, random_state=0))
    grid = GridSearchCV(pipe, {"resnetclassifier__lr": [1e-2, 5e-2]}, cv=2).fit(X, y)
    assert grid.best_params_["resnetclassifier__lr"] in (1e-2, 5e-2)
    assert grid.score(X, y) > 0.7


def test_bad_hyperparameters_fail_at_fit() -> None:
    X, y = resode.datasets.moons(20, seed=0)
    clf = NeuralODEClassifier(method="euler2")  # stored as given, checked at fit
    assert clf.get_params()["method"] == "euler2"
    with pytest.raises(ValueError, match="method"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="optimizer"):
        ResNetClassifier(optimizer="lbfgs").fit(X, y)


@pytest.mark.parametrize("Regressor", [NeuralODERegressor, ResNetRegressor])
def test_regressors_fit_a_sine(Regressor) -> None:
    X, y = resode.datasets.sine(300, seed=0)
    reg = Regressor(epochs=300, lr=2e-2, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (300,)
    assert reg.score(X, y) >= 0.99
    assert reg.history_.r2[-1] == pytest.approx(reg.score(X, y), rel=1e-9)
    two = np.column_stack([y, -y])  # two outputs keep their shape
    assert reg.fit(X, two).predict(X).shape == (300, 2)


def test_regressor_in_a_grid_search() -> None:
    X, y = resode.datasets.sine(120, noise=0.05, seed=1)
    grid = GridSearchCV(ResNetRegressor(epochs=40), {"lr": [1e-2, 3e-2]}, cv=2).fit(X, y)
    assert grid.best_params_["lr"] in (1e-2, 3e-2)
    assert np.isfinite(grid.best_score_)


@pytest.mark.parametrize("Estimator", [NeuralODEClassifier, NeuralODERegressor])
def test_first_step_and_max_steps_reach_the_model(Estimator) -> None:
    """The adaptive error says "raise max_steps": the estimators take it (and first_step),
    None meaning the model's default, as rtol and atol do."""
    X, y = resode.datasets.moons(40, seed=0)
    est = Estimator(method="dopri5", pieces=2, hidden=4, epochs=2, random_state=0)
    params = est.get_params()
    assert params["first_step"] is None and params["max_steps"] is None
    est.fit(X, y)
    assert est.model_.max_steps == resode.models.ADAPTIVE_DEFAULTS["max_steps"]
    assert est.model_.first_step is None
    est.set_params(first_step=1e-3, max_steps=5_000)
    assert est.get_params()["max_steps"] == 5_000 and clone(est).get_params()["first_step"] == 1e-3
    est.fit(X, y)
    assert (est.model_.first_step, est.model_.max_steps) == (1e-3, 5_000)
    # two attempted steps cannot cross a piece: the fit stops with the model's error, as a
    # diverging fit does
    with pytest.raises(resode.TrainingDiverged, match="raise max_steps"):
        est.set_params(first_step=None, max_steps=2).fit(X, y)
    with pytest.raises(ValueError, match="max_steps apply to the adaptive methods"):
        Estimator(max_steps=5, epochs=1).fit(X, y)


def test_interleaved_fits_on_threads_keep_the_process_thread_count(monkeypatch) -> None:
    """Fits on worker threads run the core on one thread each, without touching the count
    of the rest of the process. Fit A starts, fit B starts while A runs, the main thread
    reads its count, A ends, then B: a
    saved-and-restored process-wide count left the process on B's saved 1 (then every later
    call ran on one core)."""
    import resode.sklearn._base as rs  # where the estimators call fit

    steps = {name: threading.Event() for name in ("a_inside", "b_inside", "main_read", "a_done")}
    seen: dict[str, int] = {}
    real_fit = rs.fit

    def fit(*args, **kwargs):
        name = threading.current_thread().name
        seen[name] = resode.get_num_threads()
        if name == "A":
            steps["a_inside"].set()
            assert steps["main_read"].wait(60)
        else:
            steps["b_inside"].set()
            assert steps["a_done"].wait(60)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(rs, "fit", fit)
    X, y = resode.datasets.moons(30, seed=0)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            if name == "B":
                assert steps["a_inside"].wait(60)
            NeuralODEClassifier(pieces=2, hidden=4, epochs=1, random_state=0).fit(X, y)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            if name == "A":
                steps["a_done"].set()

    before = resode.get_num_threads()
    resode.set_num_threads(3)  # above the 1 of the workers, whatever the machine's cores
    try:
        threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("A", "B")]
        for t in threads:
            t.start()
        assert steps["b_inside"].wait(60)  # both fits are running
        seen["main during"] = resode.get_num_threads()
        steps["main_read"].set()
        for t in threads:
            t.join()
        after = resode.get_num_threads()
    finally:
        resode.set_num_threads(before)
    assert not errors, errors
    assert seen == {"A": 1, "B": 1, "main during": 3}
    assert after == 3
