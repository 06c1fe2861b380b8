"""scikit-learn estimators: the full check_estimator suite and a few integration checks."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

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


# a horizon of 1 and 16 hidden units fit a sine in a third of the default's time
@pytest.mark.parametrize(
    ("Regressor", "small"), [(NeuralODERegressor, {"T": 1.0}), (ResNetRegressor, {"h": 0.1})]
)
def test_regressors_fit_a_sine(Regressor, small) -> None:
    X, y = resode.datasets.sine(300, seed=0)
    reg = Regressor(epochs=300, lr=2e-2, hidden=16, random_state=0, **small).fit(X, y)
    assert reg.predict(X).shape == (300,)
    assert reg.score(X, y) >= 0.99
    assert reg.history_.r2[-1] == pytest.approx(reg.score(X, y), abs=1e-3)
    two = np.column_stack([y, -y])  # two outputs keep their shape
    assert reg.fit(X, two).predict(X).shape == (300, 2)


def test_estimator_history_scores_the_batches_predictions() -> None:
    # fit's default train_metrics="batches": full batch, epoch 2's R^2 is that of the
    # parameters after epoch 1, not after epoch 2
    X, y = resode.datasets.sine(80, seed=0)
    one = ResNetRegressor(epochs=1, lr=5e-2, hidden=8, random_state=0).fit(X, y)
    two = ResNetRegressor(epochs=2, lr=5e-2, hidden=8, random_state=0).fit(X, y)
    assert two.history_.r2[1] == pytest.approx(one.score(X, y), rel=1e-12)
    assert two.history_.r2[1] != two.score(X, y)


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


# --------------------------------------------------------------------------- every option


_ALL = (NeuralODEClassifier, NeuralODERegressor, ResNetClassifier, ResNetRegressor)

# Options of the models, fit and the optimisers that the estimators take under another name.
_RENAMED = {
    "seed": ("random_state",),  # scikit-learn's name (one seed for the model, fit and split)
    "progress": ("verbose",),  # scikit-learn's name
    "betas": ("beta1", "beta2"),  # as resode train's --beta1 --beta2
}
# Options no estimator takes, and why.
_EXCLUDED = {
    "dim": "inferred from X (n_features_in_)",
    "classes": "inferred from y (classes_, or the columns of a regressor's y)",
    "model": "fit's model (and resode train's --model): the estimator's class builds it",
    "X": "fit's data",
    "y": "fit's data",
    "times": "the observation times of a series or of u: fit's data (fit(X, y, u=U, times=t))",
    "u": "a NeuralODE's inputs u(t) (inputs > 0): fit's data (fit(X, y, u=U))",
    "validation_data": "early_stopping holds out validation_fraction, as scikit-learn does",
    "callbacks": "Python hooks, not settings",
    "log_every": "resode train's log lines; verbose shows a progress bar",
    "checkpoint": "files: an estimator's fit writes none (GridSearchCV refits instead)",
    "checkpoint_every": "files, as checkpoint",
    "resume": "files, as checkpoint",
    "record": "recorded trajectories are for resode.plot, not for scikit-learn",
    "record_every": "as record",
    "train_metrics": "the history's training score: fit's default, the batches' (loss_curve_'s)",
    # resode.config fields of the command line's run that an estimator has no use for
    "threads": "set_num_threads (or threadpoolctl) around the estimator",
    "plots": "resode train's figures; resode.plot draws a fitted model_",
}


def _front_end_options(estimator: type) -> set[str]:
    """The options every front end must offer, for ``estimator``: the run definition's model,
    optimiser and training fields (:mod:`resode.config`) that apply to its model kind, and the
    parameters of its model's constructor, of :func:`resode.fit` and of the optimisers."""
    import inspect

    from resode import config

    node = "NeuralODE" in estimator.__name__
    model = resode.NeuralODE if node else resode.ResNet
    names: set[str] = set()
    for source in (model, resode.fit, resode.optim.Adam, resode.optim.SGD):
        names |= set(inspect.signature(source).parameters)
    # a field applies unless its rule says it means nothing for this kind of model (the
    # adaptive-only options are judged with an adaptive method, where they apply)
    run = {**config.RunConfig().flat(), "model": "node" if node else "resnet", "method": "dopri5"}
    for section, field, option in config.fields():
        if section != "data" and (option.applies is None or option.applies(run) is None):
            names.add(field.name)
    if "Regressor" in estimator.__name__:
        names.discard("loss")  # the regressors' loss is the mean squared error
    if not node:
        names.discard("T")  # a ResNet estimator takes h itself (resode train's h is T / layers)
    return names


@pytest.mark.parametrize("Estimator", _ALL)
def test_estimators_take_every_model_and_training_option(Estimator) -> None:
    """A new option of the models, fit or the optimisers that the estimators miss fails
    here: take it (an explicit __init__ parameter) or list it in _EXCLUDED with the reason."""
    params = set(Estimator().get_params())
    missing = []
    for name in sorted(_front_end_options(Estimator)):
        if name in _EXCLUDED:
            continue
        if not set(_RENAMED.get(name, (name,))) <= params:
            missing.append(name)
    assert not missing, f"{Estimator.__name__} lacks {missing}"


def _cli_defaults() -> dict:
    """The defaults of resode train: the run definition's (:mod:`resode.config`)."""
    from resode import config

    return {field.name: field.default for _, field, _ in config.fields()}


def _api_default(name: str, Estimator: type):
    """The default of ``name`` in the model constructor, fit or the optimisers."""
    import inspect

    model = resode.NeuralODE if "NeuralODE" in Estimator.__name__ else resode.ResNet
    for source in (model, resode.fit, resode.optim.Adam, resode.optim.SGD):
        parameter = inspect.signature(source).parameters.get(name)
        if parameter is not None:
            return parameter.default
    raise KeyError(name)


@pytest.mark.parametrize("Estimator", _ALL)
def test_estimator_defaults_are_resode_train_defaults(Estimator) -> None:
    """One voice: an estimator's default is resode train's (else the model's, fit's or the
    optimiser's where resode train lacks the option), but for the documented exceptions."""
    cli = _cli_defaults()
    cli["h"] = cli["T"] / cli["layers"]  # resode train's --h default: T / layers
    exceptions = {
        # scikit-learn's convention (a new seed each fit); resode train seeds 0
        "random_state",
        # the channels of fit's u (none without), where NeuralODE's 0 means none
        "inputs",
        "verbose",  # no progress bar by default: fits in GridSearchCV run by the dozen
        # resode train has no early stopping today; these are scikit-learn's MLP defaults
        "early_stopping",
        "validation_fraction",
        "n_iter_no_change",
        "tol",
    }
    params = Estimator().get_params()
    wrong = {}
    for name, value in params.items():
        if name in exceptions:
            continue
        if name in ("beta1", "beta2"):
            expected = cli[name]
        else:
            expected = cli[name] if name in cli else _api_default(name, Estimator)
        if value != expected:
            wrong[name] = (value, expected)
    assert not wrong, f"{Estimator.__name__}: (estimator, resode train) defaults {wrong}"


@pytest.mark.parametrize("Estimator", [NeuralODEClassifier, ResNetRegressor])
def test_the_loss_terms_reach_the_model_and_grid_search_tunes_them(Estimator) -> None:
    X, y = resode.datasets.moons(60, noise=0.1, seed=0)
    small = {"hidden": 4, "epochs": 3, "random_state": 0}
    if Estimator is NeuralODEClassifier:
        small |= {"pieces": 2, "turnpike": True, "turnpike_weight": 2.5}
    est = Estimator(readout="hardtanh", l1=0.01, decay_readout=True, **small).fit(X, y)
    model = est.model_
    assert (model.readout, model.l1, model.decay_readout) == ("hardtanh", 0.01, True)
    if Estimator is NeuralODEClassifier:
        assert model.turnpike_weight == 2.5
    grid = GridSearchCV(Estimator(**small), {"l1": [0.0, 0.01]}, cv=2).fit(X, y)
    assert grid.best_params_["l1"] in (0.0, 0.01)


def test_optimiser_options_reach_the_optimiser(monkeypatch) -> None:
    import resode.sklearn._base as base

    seen = []
    real_fit = base.fit

    def fit(model, X, y, *, optimizer, **kwargs):
        seen.append((optimizer.config(), kwargs["shuffle"]))
        return real_fit(model, X, y, optimizer=optimizer, **kwargs)

    monkeypatch.setattr(base, "fit", fit)
    X, y = resode.datasets.moons(40, seed=0)
    small = {"layers": 2, "hidden": 4, "epochs": 2, "random_state": 0}
    ResNetClassifier(beta1=0.8, beta2=0.99, eps=1e-6, schedule="cosine", **small).fit(X, y)
    ResNetClassifier(optimizer="sgd", nesterov=True, momentum=0.5, schedule="step",
                     step_size=3, gamma=0.5, shuffle=False, **small).fit(X, y)  # fmt: skip
    (adam, shuffle_adam), (sgd, shuffle_sgd) = seen
    assert adam["betas"] == [0.8, 0.99] and adam["eps"] == 1e-6 and shuffle_adam is True
    assert adam["schedule"]["name"] == "CosineLR"
    assert sgd["nesterov"] is True and sgd["schedule"]["step_size"] == 3 and not shuffle_sgd


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("beta1", 1.0),
        ("schedule", "linear"),
        ("validation_fraction", 1.5),
        ("n_iter_no_change", 0),
        ("tol", -1.0),
        ("early_stopping", "yes"),
    ],
)
def test_bad_values_are_named_by_their_parameter(param, value) -> None:
    X, y = resode.datasets.moons(40, seed=0)
    est = ResNetClassifier(layers=2, hidden=4, epochs=2, early_stopping=True)
    with pytest.raises((ValueError, TypeError), match=f"^{param} must"):
        est.set_params(**{param: value}).fit(X, y)


def test_a_validation_split_too_small_names_validation_fraction() -> None:
    X, y = resode.datasets.moons(20, seed=0)
    with pytest.raises(ValueError, match=r"validation_fraction=0\.05 of 20 samples"):
        ResNetClassifier(epochs=2, early_stopping=True, validation_fraction=0.05).fit(X, y)


# --------------------------------------------------------------------------- early stopping


def _diabetes():
    """The diabetes table, a held-out quarter, features and target standardised on the
    training part (as a new user would, with StandardScaler)."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_train)
    mean, std = y_train.mean(), y_train.std()
    return (scaler.transform(X_train), (y_train - mean) / std,
            scaler.transform(X_test), (y_test - mean) / std)  # fmt: skip


def test_early_stopping_holds_what_the_default_regressor_reached() -> None:
    """The default regressor overfits the diabetes table to a held-out R^2 below 0 by epoch
    200; with early_stopping it stops and keeps the parameters of its best epoch."""
    X, y, X_test, y_test = _diabetes()
    plain = NeuralODERegressor(epochs=200, random_state=2).fit(X, y)
    assert plain.score(X_test, y_test) < 0.0
    assert plain.validation_scores_ is None and plain.best_epoch_ is None
    assert plain.loss_curve_ == plain.history_.loss and plain.n_iter_ == 200

    stopped = NeuralODERegressor(epochs=200, early_stopping=True, random_state=2).fit(X, y)
    assert stopped.score(X_test, y_test) > 0.25
    best, scores = stopped.best_epoch_, stopped.validation_scores_
    assert stopped.n_iter_ < 200 and len(scores) == stopped.n_iter_
    assert stopped.n_iter_ - best <= stopped.n_iter_no_change + 1  # MLP's rule
    assert scores[best - 1] == stopped.best_validation_score_ == max(scores)
    assert scores == stopped.history_.val_r2
    # the model holds the best epoch's parameters: those of the same run cut at that epoch
    cut = NeuralODERegressor(epochs=best, early_stopping=True, n_iter_no_change=10**6,
                             random_state=2).fit(X, y)  # fmt: skip
    np.testing.assert_array_equal(stopped.predict(X_test), cut.predict(X_test))


def test_early_stopping_of_a_classifier_is_stratified_and_scores_accuracy(monkeypatch) -> None:
    import resode.sklearn._base as base

    splits = []
    real_split = base.train_test_split

    def train_test_split(*arrays, **kwargs):
        parts = real_split(*arrays, **kwargs)
        splits.append((kwargs["stratify"], parts[1]))
        return parts

    monkeypatch.setattr(base, "train_test_split", train_test_split)
    X, y = resode.datasets.moons(100, noise=0.2, seed=0)
    y = np.where(np.arange(100) < 10, 2, y)  # a rare class: a stratified split has 2 of 10
    for loss in ("cross_entropy", "mse"):
        clf = ResNetClassifier(layers=3, hidden=4, epochs=30, loss=loss, early_stopping=True,
                               validation_fraction=0.2, random_state=0).fit(X, y)  # fmt: skip
        stratify, X_val = splits.pop()
        assert np.array_equal(stratify, y) and len(X_val) == 20
        assert np.isin(X[:10], X_val).all(axis=1).sum() == 2
        scores = np.asarray(clf.validation_scores_)
        # accuracies of 20 samples (multiples of 1/20), with either loss
        np.testing.assert_allclose(scores * 20, np.round(scores * 20), atol=1e-9)
        assert clf.best_validation_score_ == scores.max()


# --------------------------------------------------------------------------- DataFrames


@pytest.mark.parametrize("Estimator", [NeuralODEClassifier, ResNetRegressor])
def test_dataframes_record_their_feature_names(Estimator) -> None:
    """A DataFrame's column names become feature_names_in_ (and the model's feature_names);
    predict checks them as scikit-learn does: a reordered frame is refused, an array after a
    frame (or a frame after an array) warns."""
    pd = pytest.importorskip("pandas")  # in the test extra; not a dependency of resode
    X, y = resode.datasets.moons(60, seed=0)
    frame = pd.DataFrame(X, columns=["width", "height"])
    target = pd.Series(np.where(y == 1, "up", "down"), name="side")
    if Estimator is ResNetRegressor:
        target = pd.Series(y.astype(float), name="height_gain")
    est = Estimator(hidden=4, epochs=2, random_state=0).fit(frame, target)
    assert list(est.feature_names_in_) == ["width", "height"]
    assert est.model_.feature_names == ["width", "height"]
    assert est.model_.target_name == target.name
    with tempfile.TemporaryDirectory() as folder:  # the model file keeps the names
        saved = resode.load(est.model_.save(Path(folder) / "model.npz"))
    assert saved.feature_names == ["width", "height"] and saved.target_name == target.name
    with pytest.raises(ValueError, match="feature names should match"):
        est.predict(frame[["height", "width"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = est.predict(X)
    np.testing.assert_array_equal(from_array, est.predict(frame))

    plain = Estimator(hidden=4, epochs=2, random_state=0).fit(X, np.asarray(target))
    assert not hasattr(plain, "feature_names_in_") and plain.model_.feature_names is None
    assert plain.model_.target_name is None
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(frame)
