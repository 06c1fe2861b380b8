"""The neural ODE estimators with inputs u(t): fit(X, y, u=U, times=...) trains what
resode.fit trains, predict/predict_proba/score take the same u, clone and get_params keep
``inputs``/``interpolation``, and a missing or malformed u is a ValueError naming it."""

from __future__ import annotations

import numpy as np
import pytest
import resode

sklearn = pytest.importorskip("sklearn")
from resode.sklearn import NeuralODEClassifier, NeuralODERegressor  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

_SMALL = {"pieces": 3, "hidden": 4, "epochs": 4, "lr": 5e-2}


def _data(n: int = 24, length: int = 6) -> tuple[np.ndarray, ...]:
    """X (n, 2), U (n, length, 2) with a missing value and a shorter series, times (n,
    length), labels: the sign of the first channel's mean."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 2))
    U = rng.normal(size=(n, length, 2))
    y = (U[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    times = np.sort(rng.uniform(0.0, 5.0, size=(n, length)), axis=1)
    U[2, 1, 1] = np.nan
    U[5, 4:] = np.nan
    times[5, 4:] = np.nan
    return X, U, times, y


def _seeds(random_state: int) -> tuple[int, int]:
    """The model's and fit's seeds an estimator draws from ``random_state``."""
    rng = np.random.RandomState(random_state)
    model_seed, fit_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
    return model_seed, fit_seed


@pytest.mark.parametrize("Estimator", [NeuralODEClassifier, NeuralODERegressor])
def test_fit_trains_what_resode_fit_trains(Estimator) -> None:
    X, U, times, y = _data()
    regression = Estimator is NeuralODERegressor
    targets = np.nanmean(U[:, :, 1], axis=1) if regression else y
    est = Estimator(**_SMALL, interpolation="linear", method="midpoint", random_state=7)
    est.fit(X, targets, u=U, times=times)
    model_seed, fit_seed = _seeds(7)
    model = resode.NeuralODE(
        2, T=5.0, pieces=3, method="midpoint", classes=1 if regression else 2,
        field="bottleneck", hidden=4, augment=1, loss="mse" if regression else "cross_entropy",
        inputs=2, interpolation="linear", seed=model_seed,
    )  # fmt: skip
    resode.fit(model, X, targets, u=U, times=times, optimizer=resode.optim.Adam(lr=5e-2),
               epochs=4, seed=fit_seed, progress=False)  # fmt: skip
    assert est.n_inputs_ == 2 and est.model_.inputs == 2
    for name, value in model.params.items():
        assert np.array_equal(est.model_.params[name], value), name
    if regression:
        expected = model.predict(X, u=U, times=times)
        assert np.array_equal(est.predict(X, u=U, times=times), expected)
        assert est.score(X, targets, u=U, times=times) == pytest.approx(
            model.score(X, targets, u=U, times=times), rel=1e-12
        )
    else:
        proba = model.predict_proba(X, u=U, times=times)
        assert np.array_equal(est.predict_proba(X, u=U, times=times), proba)
        assert np.array_equal(est.predict(X, u=U, times=times), proba.argmax(axis=1))
        assert est.score(X, y, u=U, times=times) == model.score(X, y, u=U, times=times)


def test_inputs_auto_and_an_explicit_count() -> None:
    X, U, _, y = _data()
    plain = NeuralODEClassifier(**_SMALL, random_state=0).fit(X, y)
    assert plain.n_inputs_ == 0 and plain.model_.inputs == 0
    shared = np.linspace(0.0, 1.0, U.shape[1])
    fixed = NeuralODEClassifier(**_SMALL, inputs=2, random_state=0).fit(X, y, u=U, times=shared)
    auto = NeuralODEClassifier(**_SMALL, random_state=0).fit(X, y, u=U, times=shared)
    for name, value in auto.model_.params.items():
        assert np.array_equal(fixed.model_.params[name], value), name
    assert fixed.model_.interpolation == "cubic"


def test_clone_get_params_and_a_grid_search_over_the_interpolation() -> None:
    est = NeuralODEClassifier(**_SMALL, inputs=2, interpolation="linear", random_state=3)
    params = est.get_params()
    assert params["inputs"] == 2 and params["interpolation"] == "linear"
    copy = clone(est)
    assert copy.get_params() == params and copy is not est
    assert NeuralODERegressor().get_params()["inputs"] == "auto"
    X, U, _, y = _data(32)
    # scikit-learn's metadata routing sends each fold's rows of u to fit and to score
    with sklearn.config_context(enable_metadata_routing=True):
        est = NeuralODEClassifier(**_SMALL, random_state=0)
        est = est.set_fit_request(u=True).set_score_request(u=True)
        grid = GridSearchCV(est, {"interpolation": ["linear", "cubic"]}, cv=2)
        grid.fit(X, y, u=U)
    assert grid.best_estimator_.n_inputs_ == 2 and np.isfinite(grid.best_score_)
    assert grid.best_params_["interpolation"] in ("linear", "cubic")


def test_early_stopping_holds_out_the_inputs_with_their_samples() -> None:
    X, U, times, y = _data(40)
    est = NeuralODEClassifier(**_SMALL, early_stopping=True, validation_fraction=0.25,
                              random_state=0)  # fmt: skip
    est.fit(X, y, u=U, times=times)
    assert len(est.validation_scores_) == 4 and est.best_epoch_ is not None
    reg = NeuralODERegressor(**_SMALL, early_stopping=True, random_state=0)
    assert reg.fit(X, U[:, 0, 0], u=U, times=times[0]).best_epoch_ is not None


@pytest.mark.parametrize(
    ("fit", "predict", "message"),
    [
        ({"inputs": 2}, None, "u must be given: NeuralODEClassifier has inputs=2"),
        ({"inputs": 3, "u": "U"}, None, r"u must have shape \(24, L, 3\)"),
        ({"inputs": 0, "u": "U"}, None, "u and times apply to a model with inputs"),
        ({"inputs": -1, "u": "U"}, None, "inputs must be 'auto' or an integer >= 0"),
        ({"u": "flat"}, None, r"u must have shape \(n_samples, L, channels\), got \(24, 6\)"),
        ({"interpolation": "linear"}, None, "interpolation='linear' applies to inputs u"),
        ({"u": "U"}, {}, "u must be given: NeuralODEClassifier was fitted with and has"),
        ({"u": "U"}, {"u": "narrow"}, r"u must have shape \(24, L, 2\)"),
        ({}, {"u": "U"}, "u and times apply to a model with inputs"),
    ],
)
def test_a_missing_or_malformed_u_is_a_value_error(fit, predict, message) -> None:
    X, U, _, y = _data()
    arrays = {"U": U, "narrow": U[:, :, :1], "flat": U[:, :, 0]}
    options = {k: v for k, v in fit.items() if k != "u"}
    est = NeuralODEClassifier(**_SMALL, **options, random_state=0)
    fit_u = {"u": arrays[fit["u"]]} if "u" in fit else {}
    if predict is None:
        with pytest.raises(ValueError, match=message):
            est.fit(X, y, **fit_u)
        return
    est.fit(X, y, **fit_u)
    predict_u = {k: arrays[v] for k, v in predict.items()}
    for method in (est.predict, est.predict_proba):
        with pytest.raises(ValueError, match=message):
            method(X, **predict_u)
    with pytest.raises(ValueError, match=message):
        est.score(X, y, **predict_u)
