"""The neural CDE estimators: aeon/sktime layouts, the time channel, and the checks of
scikit-learn's check_estimator that apply to estimators of 3-D panels, written by hand
(check_estimator itself feeds 2-D tables)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

import resode
from resode.sklearn import NeuralCDEClassifier, NeuralCDERegressor, as_panel
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils import get_tags

_SMALL = {"state": 4, "hidden": 8, "epochs": 15, "lr": 5e-2}


def _waves(n: int = 24, length: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2, length)`` sines and cosines of two frequencies; the label is the frequency."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2.0 * np.pi, length)
    labels = np.arange(n) % 2
    freq = 1.0 + labels
    phase = rng.uniform(0, 2 * np.pi, size=n)
    X = np.stack([np.sin(freq[:, None] * t + phase[:, None]),
                  np.cos(freq[:, None] * t + phase[:, None])], axis=1)  # fmt: skip
    return X, labels


def _ragged(X: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [x[:, : rng.integers(6, X.shape[2] + 1)] for x in X]


# --------------------------------------------------------------------------- layouts


def test_as_panel_takes_the_aeon_layouts() -> None:
    X, _ = _waves(4, 10)
    U = as_panel(X)
    assert U.shape == (4, 10, 2) and np.array_equal(U[1, :, 0], X[1, 0])
    ragged = [X[0][:, :4], X[1]]
    U = as_panel(ragged)
    assert U.shape == (2, 10, 2)
    assert np.isnan(U[0, 4:]).all() and np.array_equal(U[0, :4], X[0][:, :4].T)
    assert as_panel(X[:, 0, :]).shape == (4, 10, 1)  # 2-D: univariate
    with pytest.raises(ValueError, match="same channels"):
        as_panel([np.ones((2, 3)), np.ones((3, 3))])
    with pytest.raises(ValueError, match="3-D array"):
        as_panel(np.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"X\[1\] must be a 2-D"):
        as_panel([np.ones((2, 3)), np.ones((1, 2, 3))])


def test_time_channel_is_the_observation_index_first() -> None:
    X, y = _waves(6, 8)
    clf = NeuralCDEClassifier(**{**_SMALL, "epochs": 1}, random_state=0).fit(_ragged(X), y)
    assert clf.model_.channels == 3 and clf.n_channels_in_ == 2
    off = NeuralCDEClassifier(**{**_SMALL, "epochs": 1}, time_channel=False, random_state=0)
    assert off.fit(X, y).model_.channels == 2
    with pytest.raises(TypeError, match="time_channel"):
        NeuralCDEClassifier(time_channel="yes").fit(X, y)
    U = resode.models.add_time_channel(as_panel([X[0][:, :3], X[1][:, :5]]))
    assert U[0, :, 0].tolist()[:3] == [0.0, 1.0, 2.0] and np.isnan(U[0, 3:, 0]).all()
    assert U[1, :5, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


# --------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("Estimator", [NeuralCDEClassifier, NeuralCDERegressor])
def test_clone_get_and_set_params(Estimator) -> None:
    est = Estimator(state=5, interpolation="linear", method="midpoint", random_state=3)
    params = est.get_params()
    assert params["state"] == 5 and params["interpolation"] == "linear"
    copy = clone(est)
    assert copy.get_params() == params and copy is not est
    assert est.set_params(substeps=2, time_channel=False) is est
    assert est.get_params()["substeps"] == 2 and not est.time_channel
    assert is_classifier(NeuralCDEClassifier()) and is_regressor(NeuralCDERegressor())
    tags = get_tags(est)
    assert tags.input_tags.three_d_array and tags.input_tags.allow_nan


@pytest.mark.parametrize("Estimator", [NeuralCDEClassifier, NeuralCDERegressor])
def test_not_fitted_error(Estimator) -> None:
    X, _ = _waves(4, 6)
    with pytest.raises(NotFittedError):
        Estimator().predict(X)


def test_classifier_fit_predict_shapes_and_labels() -> None:
    X, y = _waves(24, 16)
    labels = np.array(["one", "two"])[y]
    clf = NeuralCDEClassifier(**_SMALL, random_state=0)
    assert clf.fit(X, labels) is clf
    assert clf.classes_.tolist() == ["one", "two"]
    assert isinstance(clf.model_, resode.NeuralCDE) and clf.n_iter_ == 15
    assert len(clf.loss_curve_) == 15 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    pred, proba = clf.predict(X), clf.predict_proba(X)
    assert pred.shape == (24,) and set(pred) <= {"one", "two"}
    assert proba.shape == (24, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    assert 0.0 <= clf.score(X, labels) <= 1.0
    with pytest.raises(ValueError, match="3 channels, but NeuralCDEClassifier was fitted with 2"):
        clf.predict(np.ones((2, 3, 16)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        NeuralCDEClassifier(**_SMALL).fit(X, np.zeros(24))


def test_classifier_learns_the_frequency() -> None:
    X, y = _waves(32, 20)
    clf = NeuralCDEClassifier(state=6, hidden=16, epochs=60, lr=5e-2, random_state=0)
    assert clf.fit(X, y).score(X, y) >= 0.9


def test_unequal_lengths_list_of_series() -> None:
    X, y = _waves(20, 16)
    ragged = _ragged(X)
    clf = NeuralCDEClassifier(**_SMALL, random_state=0).fit(ragged, y)
    assert clf.predict(ragged).shape == (20,)
    # a series alone or in a batch of longer ones: the same prediction (its own end time)
    alone = clf.predict_proba([ragged[0]])
    assert np.allclose(alone, clf.predict_proba(ragged)[:1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("Estimator", [NeuralCDEClassifier, NeuralCDERegressor])
def test_deterministic_with_random_state(Estimator) -> None:
    X, y = _waves(12, 10)
    target = y if is_classifier(Estimator()) else X[:, 0, -1]
    a = Estimator(**_SMALL, batch_size=5, random_state=7).fit(X, target)
    b = Estimator(**_SMALL, batch_size=5, random_state=7).fit(X, target)
    c = Estimator(**_SMALL, batch_size=5, random_state=8).fit(X, target)
    for name, value in a.model_.params.items():
        assert np.array_equal(value, b.model_.params[name])
    assert not np.array_equal(a.model_.params["A"], c.model_.params["A"])


def test_regressor_shapes_and_multi_output() -> None:
    X, _ = _waves(20, 12)
    reg = NeuralCDERegressor(**_SMALL, random_state=0)
    assert reg.fit(X, X[:, 0, -1]) is reg
    assert reg.predict(X).shape == (20,)
    assert reg.model_.loss == "mse" and np.isfinite(reg.score(X, X[:, 0, -1]))
    Y = X[:, :, -1]
    assert reg.fit(X, Y).predict(X).shape == (20, 2)
    with pytest.raises(ValueError, match="y has 3 values"):
        reg.fit(X, np.zeros(3))


def test_early_stopping_keeps_the_best_epoch() -> None:
    X, y = _waves(40, 12)
    clf = NeuralCDEClassifier(**_SMALL, early_stopping=True, validation_fraction=0.25,
                              n_iter_no_change=3, random_state=0).fit(X, y)  # fmt: skip
    assert clf.validation_scores_ is not None and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_epoch_ is not None and 1 <= clf.best_epoch_ <= clf.n_iter_


def test_model_search_pickle_and_bad_parameters() -> None:
    X, y = _waves(16, 10)
    scores = cross_val_score(NeuralCDEClassifier(**_SMALL, random_state=0), X, y, cv=2)
    assert scores.shape == (2,)
    grid = GridSearchCV(NeuralCDEClassifier(**_SMALL, random_state=0),
                        {"interpolation": ["cubic", "linear"]}, cv=2).fit(X, y)  # fmt: skip
    assert grid.best_params_["interpolation"] in ("cubic", "linear")
    clf = grid.best_estimator_
    again = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="interpolation"):
        NeuralCDEClassifier(interpolation="spline").fit(X, y)
    with pytest.raises(ValueError, match="method"):
        NeuralCDEClassifier(method="rk45").fit(X, y)


# --------------------------------------------------------------------------- one voice

#: What the CDE estimators leave out, and why (the rest of every front end's options they take).
_EXCLUDED = {
    "channels": "inferred from X (n_channels_in_, plus the time channel)",
    "classes": "inferred from y",
    "seed": "random_state",
    "model": "fit's model (resode train's --model): the estimator's class builds it",
    "X": "fit's data",
    "y": "fit's data",
    "times": "fit's data: the estimators' times are the observation index (time_channel)",
    "u": "fit's data: the inputs of a NeuralODE with inputs > 0, not of a CDE",
    "validation_data": "early_stopping holds out validation_fraction",
    "callbacks": "Python hooks, not settings",
    "log_every": "resode train's log lines",
    "progress": "verbose",
    "checkpoint": "files: an estimator's fit writes none",
    "checkpoint_every": "files",
    "resume": "files",
    "record": "trajectories of points for resode.plot",
    "record_every": "as record",
    "train_metrics": "fit's default",
    "threads": "threadpoolctl around the estimator",
    "plots": "resode train's figures",
}


def _cde_front_end_options() -> set[str]:
    """The options of NeuralCDE, fit, the optimisers, and the run definition's model,
    optimiser and training fields that apply to ``--model cde``."""
    import inspect

    from resode import config

    names: set[str] = set()
    for source in (resode.NeuralCDE, resode.fit, resode.optim.Adam, resode.optim.SGD):
        names |= set(inspect.signature(source).parameters)
    run = {**config.RunConfig().flat(), "model": "cde"}
    for section, field, option in config.fields():
        if section != "data" and (option.applies is None or option.applies(run) is None):
            names.add(field.name)
    return names - {"betas", "self"}


@pytest.mark.parametrize("Estimator", [NeuralCDEClassifier, NeuralCDERegressor])
def test_estimators_take_every_cde_option_with_resode_trains_defaults(Estimator) -> None:
    from resode import config

    params = Estimator().get_params()
    wanted = _cde_front_end_options() - set(_EXCLUDED) - {"beta1", "beta2"}
    if Estimator is NeuralCDERegressor:
        wanted.discard("loss")  # the mean squared error
    missing = sorted(wanted - set(params))
    assert not missing, f"{Estimator.__name__} lacks {missing}"
    assert {"beta1", "beta2"} <= set(params)  # Adam's betas
    cli = {f.name: f.default for _, f, _ in config.fields()}
    for name in ("state", "field", "hidden", "activation", "output_activation",
                 "interpolation", "method", "substeps", "time_channel", "weight_decay",
                 "dtype", "lr", "epochs", "batch_size", "optimizer"):  # fmt: skip
        assert params[name] == cli[name], name
    assert params["pieces"] == 1  # resode train --model cde takes no --pieces: the model's 1
