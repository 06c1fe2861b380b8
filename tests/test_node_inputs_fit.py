"""``resode.fit`` for the input-driven neural ODE ``NeuralODE(dim, inputs=C)``: the inputs ``u``
and their per-sample times travel with each batch (``Problem.rows``), and fit keeps everything
it has (shuffling, validation, early stopping, checkpoints, divergence, the history)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode


def _task(n: int, length: int = 8, seed: int = 0) -> tuple[np.ndarray, ...]:
    """X (n, 2) of noise, labels carried by the input series only: u(t) = +-sin(pi t) plus
    noise, on per-sample irregular times in about [0, 1], with a shorter (padded) sample and a
    missing value. Returns X, U (n, length, 1), y, times (n, length)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = rng.integers(0, 2, n)
    times = np.sort(rng.uniform(0.0, 1.0, size=(n, length)), axis=1)
    sign = (2.0 * y - 1.0)[:, None, None]
    U = sign * np.sin(np.pi * times)[:, :, None] + 0.2 * rng.normal(size=(n, length, 1))
    U[1, length - 2 :] = np.nan  # a shorter sample: its rows and times are padding
    times[1, length - 2 :] = np.nan
    U[2, 3, 0] = np.nan  # a missing value, filled by the path
    return X, U, y, times


def _model(**kw: Any) -> resode.NeuralODE:
    return resode.NeuralODE(2, inputs=1, T=1.0, pieces=2, augment=1, seed=kw.pop("seed", 0), **kw)


def _fit(**kw: Any) -> tuple[resode.NeuralODE, resode.History]:
    X, U, y, times = _task(24)
    model = kw.pop("model", None) or _model()
    options: dict[str, Any] = {
        "optimizer": resode.optim.Adam(lr=2e-2), "epochs": 3, "batch_size": 7, "seed": 5,
        "progress": False, **kw,
    }  # fmt: skip
    history = resode.fit(model, X, y, u=U, times=times, **options)
    return model, history


def _same(a: resode.NeuralODE, b: resode.NeuralODE) -> bool:
    return all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_fit_learns_a_label_carried_by_the_inputs() -> None:
    X, U, y, times = _task(80)
    model = _model()
    history = resode.fit(model, X, y, u=U, times=times, optimizer=resode.optim.Adam(lr=5e-2),
                         epochs=40, batch_size=20, seed=0, progress=False)  # fmt: skip
    assert history.loss[-1] < 0.4 * history.loss[0]
    assert history.accuracy[0] < 0.8 and history.accuracy[-1] >= 0.95
    assert history.accuracy[-1] == model.score(X, y, u=U, times=times)  # end-of-epoch score
    X_test, U_test, y_test, t_test = _task(80, seed=1)
    assert model.score(X_test, y_test, u=U_test, times=t_test) >= 0.9


def test_fit_is_bitwise_reproducible() -> None:
    a, ha = _fit()
    b, hb = _fit()
    assert _same(a, b) and ha.loss == hb.loss and ha.accuracy == hb.accuracy
    c, _ = _fit(seed=6)  # another shuffling
    assert not _same(a, c)


def test_fit_is_bitwise_the_same_at_any_thread_count() -> None:
    before = resode.get_num_threads()
    try:
        resode.set_num_threads(1)
        one, h1 = _fit()
        resode.set_num_threads(3)
        three, h3 = _fit()
    finally:
        resode.set_num_threads(before)
    assert _same(one, three) and h1.loss == h3.loss


def test_fit_is_the_loop_of_loss_and_grad_and_adam_over_the_same_batches() -> None:
    X, U, y, times = _task(24)
    model, _ = _fit(epochs=3)
    manual, adam = _model(), resode.optim.Adam(lr=2e-2)
    for epoch in range(3):
        order = np.random.default_rng([5, epoch]).permutation(24)
        for start in range(0, 24, 7):
            rows = order[start : start + 7]
            _, grads = manual.loss_and_grad(X[rows], y[rows], u=U[rows], times=times[rows])
            adam.step(manual.params, grads)
        adam.epoch_end()
    assert _same(model, manual)


def test_shared_times_and_the_default_times() -> None:
    X, U, y, _ = _task(12)
    shared = np.linspace(0.0, 1.0, 8)
    a = _model()
    resode.fit(a, X, y, u=U, times=shared, epochs=2, batch_size=5, seed=1, progress=False)
    b = _model()
    resode.fit(b, X, y, u=U, times=None, epochs=2, batch_size=5, seed=1, progress=False)
    c = _model()
    resode.fit(c, X, y, u=U, times=np.arange(8.0), epochs=2, batch_size=5, seed=1, progress=False)
    assert _same(b, c) and not _same(a, b)


def test_train_metrics_and_fixed_projection() -> None:
    exact, h_exact = _fit(train_metrics="exact")
    batches, h_batches = _fit(train_metrics="batches")
    assert _same(exact, batches) and h_exact.accuracy == h_batches.accuracy
    frozen, _ = _fit(fixed_projection=True)
    fresh = _model()
    assert all(np.array_equal(frozen.params[k], fresh.params[k]) for k in ("P", "c"))
    assert not np.array_equal(frozen.params["W"], fresh.params["W"])


def test_bound_constrains_each_piece_of_the_field() -> None:
    model, _ = _fit(bound=0.5, optimizer=resode.optim.Adam(lr=0.3))
    norms = np.abs(model.params["W"]).sum(axis=(1, 2)) + np.abs(model.params["b"]).sum(axis=1)
    assert np.all(norms <= 0.5 + 1e-12)


def test_regression_with_sign_targets_records_the_sign_agreement() -> None:
    X, U, y, times = _task(24)
    targets = 2.0 * y - 1.0
    model = _model(classes=1, loss="mse")
    history = resode.fit(model, X, targets, u=U, times=times, epochs=2, batch_size=8, seed=0,
                         validation_data=(X, targets, U, times), progress=False)  # fmt: skip
    assert history.accuracy[-1] == model.sign_accuracy(X, targets, u=U, times=times)
    assert history.val_r2[-1] == model.score(X, targets, u=U, times=times)
    assert model.predict(X, u=U, times=times).shape == (24,)  # flat targets, flat predictions


def test_validation_data_with_and_without_times_and_early_stopping() -> None:
    X_val, U_val, y_val, t_val = _task(10, seed=3)
    model, history = _fit(validation_data=(X_val, y_val, U_val, t_val))
    assert history.val_loss[-1] == model.loss_and_grad(X_val, y_val, u=U_val, times=t_val)[0]
    assert history.val_accuracy[-1] == model.score(X_val, y_val, u=U_val, times=t_val)
    model2, history2 = _fit(validation_data=(X_val, y_val, U_val))  # times 0 .. L-1
    assert history2.val_loss[-1] == model2.loss_and_grad(X_val, y_val, u=U_val)[0]
    stopper = resode.EarlyStopping("val_loss", patience=2)
    flipped = 1 - y_val  # the validation loss rises as the model learns: it stops early
    best, stopped = _fit(
        validation_data=(X_val, flipped, U_val, t_val), epochs=40, early_stopping=stopper
    )
    assert len(stopped) < 40 and stopped.best_epoch == stopper.best_epoch
    best_loss = best.loss_and_grad(X_val, flipped, u=U_val, times=t_val)[0]
    assert best_loss == stopped.val_loss[stopped.best_epoch - 1]  # the best parameters restored


def test_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    full, history = _fit(epochs=4)
    path = tmp_path / "ck.npz"
    _fit(epochs=2, checkpoint=path, checkpoint_every=1)
    state = resode.training.load_checkpoint(path)
    assert state["epoch"] == 2 and state["model"].inputs == 1
    resumed, again = _fit(epochs=4, resume=path, optimizer=None)
    assert _same(full, resumed)
    assert again.loss == history.loss


def test_divergence_keeps_the_last_finite_parameters() -> None:
    X, U, y, times = _task(20)
    model = _model(activation="identity")
    with pytest.raises(resode.TrainingDiverged, match="epoch 1"):
        resode.fit(model, X, y, u=1e3 * U, times=times, epochs=5, seed=0, progress=False,
                   optimizer=resode.optim.SGD(lr=1e8))  # fmt: skip
    assert all(np.isfinite(v).all() for v in model.params.values())


def test_bad_inputs_are_refused_naming_the_argument() -> None:
    X, U, y, times = _task(6)
    model = _model()
    before = {k: v.copy() for k, v in model.params.items()}

    def fit(m: Any, *args: Any, **kw: Any) -> None:
        resode.fit(m, *args, epochs=1, batch_size=2, progress=False, **kw)

    with pytest.raises(ValueError, match=r"training data: u must be given: the NeuralODE has"):
        fit(model, X, y)
    with pytest.raises(ValueError, match=r"training data: u applies to a resode\.NeuralODE with"):
        fit(resode.NeuralODE(2, seed=0), X, y, u=U)
    with pytest.raises(ValueError, match=r"training data: times applies .* inputs=0"):
        fit(resode.NeuralODE(2, seed=0), X, y, times=times)
    with pytest.raises(ValueError, match=r"u applies to a resode\.NeuralCDE .* not to a ResNet"):
        fit(resode.ResNet(2, 2, seed=0), X, y, u=U)
    with pytest.raises(ValueError, match=r"u applies to a resode\.NeuralODE .* NeuralCDE's"):
        fit(resode.NeuralCDE(1, 2, seed=0), U, y, u=U)
    with pytest.raises(ValueError, match=r"training data: u must have shape \(6, L, 1\)"):
        fit(model, X, y, u=U[:5])
    bad = U.copy()
    bad[4, 1:] = np.nan  # sample 4 has one observation
    with pytest.raises(ValueError, match="training data: u: sample 4 has 1 observed rows"):
        fit(model, X, y, u=bad, times=times)
    swapped = times.copy()
    swapped[0, [2, 3]] = times[0, [3, 2]]
    with pytest.raises(ValueError, match=r"training data: times must be strictly increasing"):
        fit(model, X, y, u=U, times=swapped)
    with pytest.raises(ValueError, match=r"training data: times must have shape"):
        fit(model, X, y, u=U, times=times[:, :3])
    with pytest.raises(TypeError, match=r"\(X_val, y_val, u_val\) or \(X_val, y_val, u_val"):
        fit(model, X, y, u=U, validation_data=(X, y))
    with pytest.raises(ValueError, match="validation_data: u: sample 0 has 0 observed rows"):
        fit(model, X, y, u=U, validation_data=(X, y, np.full_like(U, np.nan)))
    with pytest.raises(ValueError, match="record applies to the models without inputs"):
        fit(model, X, y, u=U, record=2)
    assert all(np.array_equal(before[k], model.params[k]) for k in before)  # never trained


def test_problem_slices_the_inputs_and_their_times_by_rows() -> None:
    X, U, y, times = _task(6)
    problem = _model().problem(X, y, u=U, times=times)
    part = problem.rows(np.array([4, 1]))
    assert np.array_equal(part.X, X[[4, 1]]) and np.array_equal(part.targets, y[[4, 1]])
    inputs = part.inputs()
    assert set(inputs) == {"u", "times"}
    assert np.array_equal(inputs["u"], U[[4, 1]], equal_nan=True)
    assert np.array_equal(inputs["times"], times[[4, 1]], equal_nan=True)
    shared = _model().problem(X, y, u=U).rows(np.array([0, 2]))
    assert np.array_equal(shared.times, np.arange(8.0))  # shared times stay shared
    assert resode.NeuralODE(2, seed=0).problem(X, y).inputs() == {}
