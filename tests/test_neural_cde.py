"""resode.NeuralCDE, resode.cdeint/cdeint_vjp and fit on time series: the model against the
NumPy reference (loss, gradients, dU), times, per-sample times, NaN padding, the model file,
training (the spiral problem, reproducibility, checkpoints, validation) and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import reference

FIELDS = ("outside", "inside", "bottleneck")


def spirals(
    n: int, length: int = 40, *, seed: int = 0, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torchcde's example problem: anticlockwise (label 1) and clockwise (label 0) spirals
    ``(t, x(t), y(t))``, time as the first channel. Returns (U (n, length, 3), y (n,), t)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 4 * np.pi, length)
    start = rng.uniform(0, 2 * np.pi, size=n)
    radius = 1 / (1 + 0.5 * t)
    x = np.cos(start[:, None] + t) * radius
    y = np.sin(start[:, None] + t) * radius
    labels = (np.arange(n) % 2).astype(np.int64)
    y[labels == 0] *= -1  # clockwise
    U = np.stack([np.broadcast_to(t, x.shape), x, y], axis=2)
    U[:, :, 1:] += noise * rng.normal(size=(n, length, 2))
    return U, labels, t


def model_of(field: str, **kwargs: Any) -> resode.NeuralCDE:
    options: dict[str, Any] = {"field": field, "seed": 3, **kwargs}
    if field == "bottleneck":
        options.setdefault("hidden", 5)
    return resode.NeuralCDE(3, 4, **options)


def series(n: int = 5, length: int = 7, *, seed: int = 0) -> np.ndarray:
    """U (n, length, 3) with a missing value and a shorter (NaN-padded) sample."""
    U = np.random.default_rng(seed).normal(size=(n, length, 3))
    U[1, 2, 0] = np.nan
    U[2, length - 2 :, :] = np.nan
    return U


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


# --------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"interpolation": "linear", "method": "midpoint", "substeps": 2},
        {"method": "euler", "pieces": 3, "output_activation": "tanh", "activation": "relu"},
    ],
    ids=["cubic-rk4", "linear-midpoint", "euler-pieces"],
)
def test_loss_grads_and_dU_match_the_reference(
    field: str, dtype: str, tol: float, options: dict[str, Any]
) -> None:
    model = model_of(field, dtype=dtype, weight_decay=0.01, **options)
    U = series().astype(dtype)
    times = np.array([0.0, 0.5, 1.5, 2.0, 3.5, 4.0, 6.0])
    y = np.array([0, 1, 1, 0, 1])
    loss, grads, dU = model.loss_and_grad(U, y, times, return_dU=True)
    p64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    args = {k: v for k, v in model.config.items() if k in ("field", "activation", "method")}
    args.update(output_activation=model.output_activation, substeps=model.substeps,
                interpolation=model.interpolation)  # fmt: skip
    r_loss, r_grads, r_dU = reference.cde_loss_and_grad(
        p64, U.astype(np.float64), y, times, **args, weight_decay=0.01
    )
    assert abs(loss - r_loss) <= tol * max(1.0, abs(r_loss))
    assert set(grads) == set(model.params)
    for name, g in grads.items():
        assert g.dtype == np.dtype(dtype) and g.shape == model.params[name].shape
        assert rel(g, r_grads[name]) <= tol, name
    assert dU.dtype == np.dtype(dtype) and rel(dU, r_dU) <= tol
    assert np.all(dU[np.isnan(U)] == 0)
    assert rel(model.forward(U, times), reference.cde_logits(p64, U, times, **args)) <= tol
    t = np.array([0.0, 0.25, 2.0, 5.0])
    assert (
        rel(model.trajectory(U, times, t=t), reference.cde_solve(p64, U, times, **args, t=t)) <= tol
    )


def test_loss_and_grad_without_dU_is_the_same() -> None:
    model = model_of("outside")
    U, y = series(), np.arange(5) % 2
    loss, grads = model.loss_and_grad(U, y)
    again, grads2, _ = model.loss_and_grad(U, y, return_dU=True)
    assert loss == again and all(np.array_equal(grads[k], grads2[k]) for k in grads)


def test_dU_matches_central_differences() -> None:
    model = model_of("inside", interpolation="cubic")
    U, y = series(3, 5), np.array([1, 0, 1])
    _, _, dU = model.loss_and_grad(U, y, return_dU=True)
    eps = 1e-6
    for index in [(0, 0, 0), (0, 3, 2), (1, 4, 1), (2, 1, 2)]:
        up, down = U.copy(), U.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (model.loss_and_grad(up, y)[0] - model.loss_and_grad(down, y)[0]) / (2 * eps)
        assert abs(dU[index] - numeric) < 1e-7 * max(1.0, abs(numeric)), index


def test_times_none_means_0_to_L_minus_1() -> None:
    model = model_of("bottleneck")
    U, y = series(), np.arange(5) % 2
    steps = np.arange(7.0)
    assert np.array_equal(model.forward(U), model.forward(U, steps))
    assert np.array_equal(model.trajectory(U), model.trajectory(U, steps, t=steps))
    loss, grads = model.loss_and_grad(U, y)
    loss2, grads2 = model.loss_and_grad(U, y, np.tile(steps, (5, 1)))
    assert loss == loss2 and all(np.array_equal(grads[k], grads2[k]) for k in grads)


def test_per_sample_times_match_the_reference_and_each_sample_alone() -> None:
    model = model_of("outside")
    U = series()
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.2, 1.0, size=(5, 7)), axis=1)
    times[2, 5:] = np.nan  # sample 2 is padded there
    expected = reference.cde_logits(model.params, U, times, field="outside")
    logits = model.forward(U, times)
    assert rel(logits, expected) <= 1e-10
    for i in range(5):  # one piece: a sample's result does not depend on its batch
        alone = model.forward(U[i : i + 1], times[i : i + 1])
        np.testing.assert_allclose(alone[0], logits[i], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="t is required"):
        model.trajectory(U, times)
    assert model.trajectory(U, times, t=[1.0, 2.0]).shape == (2, 5, 4)


def test_nan_padding_is_the_shorter_series() -> None:
    model = model_of("outside", interpolation="linear")
    U = series()
    short = U[2:3, :5]  # sample 2 without its two NaN rows
    assert not np.isnan(short).any()
    np.testing.assert_allclose(model.forward(U)[2], model.forward(short)[0], rtol=1e-13)
    _, _, dU = model.loss_and_grad(U, np.arange(5) % 2, return_dU=True)
    assert np.all(dU[2, 5:] == 0) and dU[1, 2, 0] == 0
    z_end = resode.cdeint(model, U)
    np.testing.assert_allclose(z_end[2], resode.cdeint(model, short)[0], rtol=1e-13)


def test_trajectory_ends_at_each_samples_own_end() -> None:
    model = model_of("outside")
    U = series()
    U[:, -1] = np.nan  # no sample observed at t = 6: the default grid stops at 5
    traj = model.trajectory(U)
    assert traj.shape == (6, 5, 4)
    z_end = resode.cdeint(model, U)
    np.testing.assert_allclose(traj[-1, [0, 1, 3, 4]], z_end[[0, 1, 3, 4]], rtol=1e-12)
    np.testing.assert_allclose(traj[-1, 2], z_end[2], rtol=1e-12)  # held after its end


def test_predict_proba_predict_and_score() -> None:
    model = model_of("outside", classes=3)
    U = series()
    p = model.predict_proba(U)
    assert p.shape == (5, 3) and np.allclose(p.sum(axis=1), 1)
    labels = model.predict(U)
    assert labels.dtype == np.int64 and np.array_equal(labels, np.argmax(p, axis=1))
    assert model.score(U, labels) == 1.0
    assert model.score(U, np.eye(3)[labels]) == 1.0
    regressor = model_of("outside", classes=1, loss="mse")
    target = np.linspace(-1, 1, 5)
    h = resode.fit(regressor, U, target, epochs=2, progress=False, seed=0)
    assert regressor.predict(U).shape == (5,) and "r2" in h
    assert regressor.score(U, target) == pytest.approx(
        1 - np.sum((regressor.predict(U) - target) ** 2) / np.sum((target - target.mean()) ** 2)
    )


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("field", FIELDS)
def test_save_load_round_trip_is_bitwise(tmp_path: Path, field: str) -> None:
    model = model_of(field, output_activation="tanh", pieces=2, dtype="float32", classes=3)
    model.class_labels = ["a", "b", "c"]
    model.feature_names = ["t", "x", "y"]
    again = resode.load(model.save(tmp_path / "cde.npz"))
    assert type(again) is resode.NeuralCDE and again.config == model.config
    for name, value in model.params.items():
        assert again.params[name].dtype == value.dtype
        assert np.array_equal(again.params[name], value)
    assert again.class_labels == ["a", "b", "c"] and again.feature_names == ["t", "x", "y"]
    U = series().astype(np.float32)
    assert np.array_equal(again.forward(U), model.forward(U))


def test_the_command_line_refuses_points_for_a_series_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from resode.cli import main

    path = model_of("outside").save(tmp_path / "cde.npz")
    np.savez(tmp_path / "points.npz", X=np.ones((4, 3)))
    assert main(["predict", "--model", str(path), "--data", str(tmp_path / "points.npz")]) == 2
    err = capsys.readouterr().err  # resode predict reads series for it (tests/test_cli_cde.py)
    assert "needs an array 'U' (N, L, channels)" in err and len(err.strip().splitlines()) == 1


def test_initialisation_is_seeded_and_shaped() -> None:
    a, b = model_of("bottleneck", seed=7), model_of("bottleneck", seed=7)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert a.param_shapes == {
        "A": (4, 3), "a": (4,), "W1": (1, 5, 4), "b1": (1, 5), "W2": (1, 12, 5),
        "b2": (1, 12), "P": (2, 4), "c": (2,),
    }  # fmt: skip
    assert {k: v.shape for k, v in a.params.items()} == a.param_shapes
    assert not np.array_equal(a.params["W1"], model_of("bottleneck", seed=8).params["W1"])
    assert np.all(np.abs(a.params["A"]) <= 1 / np.sqrt(3))  # fan-in: the channels
    assert np.all(np.abs(a.params["W2"]) <= 1 / np.sqrt(5))  # fan-in: hidden
    assert resode.models.KINDS["cde"] is resode.NeuralCDE


# --------------------------------------------------------------------------- training


def test_fit_learns_the_spirals() -> None:
    U, y, t = spirals(100, 40, seed=0)
    model = resode.NeuralCDE(3, 8, field="bottleneck", hidden=16, output_activation="tanh",
                             seed=0)  # fmt: skip
    before = model.loss_and_grad(U, y, t)[0]
    history = resode.fit(model, U, y, times=t, epochs=25, batch_size=25, seed=0,
                         optimizer=resode.optim.Adam(lr=1e-2), progress=False)  # fmt: skip
    assert history.loss[-1] < 0.2 * before
    assert model.score(U, y, t) >= 0.95
    U_test, y_test, _ = spirals(60, 40, seed=1)
    assert model.score(U_test, y_test, t) >= 0.9


def _fit(**kwargs: Any) -> tuple[resode.NeuralCDE, resode.History]:
    U, y, t = spirals(24, 12, seed=2)
    model = resode.NeuralCDE(3, 4, seed=1)
    options: dict[str, Any] = {"times": t, "epochs": 4, "batch_size": 7, "seed": 5,
                               "progress": False,
                               "optimizer": resode.optim.Adam(lr=1e-2)}  # fmt: skip
    options.update(kwargs)
    return model, resode.fit(model, U, y, **options)


def test_fit_is_bitwise_reproducible() -> None:
    a, ha = _fit()
    b, hb = _fit()
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert ha.loss == hb.loss
    c, _ = _fit(seed=6)  # another shuffling: other parameters
    assert not np.array_equal(a.params["W"], c.params["W"])


def test_fit_is_bitwise_the_same_at_any_thread_count() -> None:
    U, y, t = spirals(200, 10, seed=5)  # enough samples for several blocks per thread

    def run(threads: int) -> resode.NeuralCDE:
        resode.set_num_threads(threads)
        model = resode.NeuralCDE(3, 4, seed=1)
        resode.fit(model, U, y, times=t, epochs=2, batch_size=100, seed=0, progress=False)
        return model

    one, three = run(1), run(3)
    assert all(np.array_equal(one.params[k], three.params[k]) for k in one.params)


def test_fit_is_the_loop_of_loss_and_grad_with_per_sample_times() -> None:
    U, y, _ = spirals(10, 9, seed=3)
    times = np.cumsum(np.random.default_rng(0).uniform(0.1, 1.0, size=(10, 9)), axis=1)
    U[3, 7:] = np.nan  # a shorter sample, its times padded with NaN
    times[3, 7:] = np.nan
    model = resode.NeuralCDE(3, 4, seed=0)
    manual = resode.NeuralCDE(3, 4, seed=0)
    opt, manual_opt = resode.optim.Adam(lr=1e-2), resode.optim.Adam(lr=1e-2)
    resode.fit(model, U, y, times=times, epochs=2, batch_size=4, seed=9, optimizer=opt,
               progress=False)  # fmt: skip
    for epoch in range(2):
        order = np.random.default_rng([9, epoch]).permutation(10)
        for start in range(0, 10, 4):
            rows = order[start : start + 4]
            _, grads = manual.loss_and_grad(U[rows], y[rows], times[rows])
            manual_opt.step(manual.params, grads)
        manual_opt.epoch_end()
    assert all(np.array_equal(model.params[k], manual.params[k]) for k in model.params)


def test_fixed_projection_trains_A_and_the_field_only() -> None:
    model, _ = _fit(fixed_projection=True, epochs=1)
    fresh = resode.NeuralCDE(3, 4, seed=1)
    for name in ("P", "c"):
        assert np.array_equal(model.params[name], fresh.params[name])
    for name in ("A", "a", "W", "b"):
        assert not np.array_equal(model.params[name], fresh.params[name])


def test_bound_constrains_each_piece_of_the_field() -> None:
    U, y, t = spirals(12, 8, seed=0)
    model = resode.NeuralCDE(3, 4, field="bottleneck", hidden=5, pieces=2, seed=0)
    resode.fit(model, U, y, times=t, bound=0.5, epochs=2, batch_size=6, seed=0, progress=False,
               optimizer=resode.optim.Adam(lr=0.1))  # fmt: skip
    norms = sum(
        np.abs(model.params[k]).reshape(2, -1).sum(axis=1) for k in ("W1", "b1", "W2", "b2")
    )
    assert np.all(norms <= 0.5 + 1e-12)


def test_divergence_keeps_the_last_finite_parameters() -> None:
    U = 100 * np.random.default_rng(0).normal(size=(20, 10, 3))
    model = resode.NeuralCDE(3, 4, activation="identity", seed=0)
    # epoch 1's update overflows; its batch scores need no sweep, so epoch 2's first batch fails
    with pytest.raises(resode.TrainingDiverged, match="epoch 2, batch 1") as caught:
        resode.fit(model, U, np.arange(20) % 2, epochs=5, optimizer=resode.optim.SGD(lr=1e6),
                   seed=0, progress=False)  # fmt: skip
    assert isinstance(caught.value.__cause__, resode.NonFiniteError)
    assert all(np.isfinite(v).all() for v in model.params.values())


def test_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    full, history = _fit(epochs=4)
    path = tmp_path / "ck.npz"
    _fit(epochs=2, checkpoint=path, checkpoint_every=1)
    state = resode.training.load_checkpoint(path)
    assert state["epoch"] == 2 and type(state["model"]) is resode.NeuralCDE
    resumed, again = _fit(epochs=4, resume=path, optimizer=None)
    assert all(np.array_equal(full.params[k], resumed.params[k]) for k in full.params)
    assert again.loss == history.loss


def test_validation_data_with_and_without_times() -> None:
    U_val, y_val, t = spirals(12, 12, seed=4)
    model, history = _fit(validation_data=(U_val, y_val, t), train_metrics="exact")
    assert history.val_loss[-1] == model.loss_and_grad(U_val, y_val, t)[0]
    assert history.val_accuracy[-1] == model.score(U_val, y_val, t)
    U, y, _ = spirals(24, 12, seed=2)
    assert history.accuracy[-1] == model.score(U, y, t)
    model2, history2 = _fit(validation_data=(U_val, y_val))  # times 0 .. L-1
    assert history2.val_loss[-1] == model2.loss_and_grad(U_val, y_val)[0]
    stopper = resode.EarlyStopping("val_loss", patience=1)
    _, stopped = _fit(validation_data=(U_val, y_val, t), epochs=30, early_stopping=stopper)
    assert len(stopped) <= 30 and stopped.best_epoch == stopper.best_epoch


def test_fit_refuses_bad_series_before_training() -> None:
    U, y, t = spirals(6, 5, seed=0)
    model = resode.NeuralCDE(3, 2, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    bad = U.copy()
    bad[5, 1:] = np.nan  # the last sample has one observation
    with pytest.raises(ValueError, match="training data: U: sample 5 has 1 observed rows"):
        resode.fit(model, bad, y, times=t, epochs=1, batch_size=2, progress=False)
    assert all(np.array_equal(before[k], model.params[k]) for k in before)
    with pytest.raises(ValueError, match="validation_data: times must have shape"):
        resode.fit(model, U, y, validation_data=(U, y, t[:3]), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"times applies to a resode\.NeuralCDE"):
        resode.fit(resode.ResNet(2, 2, seed=0), np.ones((4, 2)), [0, 1, 0, 1], times=t,
                   epochs=1, progress=False)  # fmt: skip
    with pytest.raises(TypeError, match=r"\(X_val, y_val\)"):
        resode.fit(resode.ResNet(2, 2, seed=0), np.ones((4, 2)), [0, 1, 0, 1], epochs=1,
                   validation_data=(np.ones((4, 2)), [0, 1, 0, 1], t), progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="record applies"):
        resode.fit(model, U, y, record=2, epochs=1, progress=False)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "U, times, match",
    [
        (np.ones((4, 3)), None, r"U must be 3-D \(N, L, 3\)"),
        (np.ones((2, 4, 2)), None, "U must have 3 channels"),
        (np.ones((2, 4, 3)), np.arange(3.0), r"times must have shape \(4,\)"),
        (np.ones((2, 4, 3)), np.ones((3, 4)), r"or \(2, 4\) \(per sample\)"),
        (np.ones((2, 4, 3)), [0.0, 1.0, 1.0, 2.0], "strictly increasing"),
        (np.full((2, 4, 3), np.inf), None, "Inf"),
        (np.array([[[1.0, 2.0, np.nan]] * 4] * 2), None, "channel 2 of sample 0"),
    ],
)
def test_bad_series_are_refused_naming_the_argument(U: Any, times: Any, match: str) -> None:
    model = resode.NeuralCDE(3, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        model.problem(U, [0, 1] if np.ndim(U) == 3 else None, times)
    if "strictly" not in match and "channel" not in match and "Inf" not in match:
        with pytest.raises(ValueError, match=match):
            model.forward(U, times)


def test_bad_labels_and_options_are_refused() -> None:
    model = resode.NeuralCDE(3, 2, seed=0)
    U = np.ones((2, 4, 3))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        model.loss_and_grad(U, [0, 2])
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        model.loss_and_grad(U, [0, 1, 1])
    with pytest.raises(ValueError, match="rtol apply to the adaptive methods"):
        resode.NeuralCDE(3, 2, method="rk4", rtol=1e-3)
    with pytest.raises(ValueError, match="hidden must be given"):
        resode.NeuralCDE(3, 2, field="bottleneck")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        resode.NeuralCDE(3, 2, interpolation="quadratic")
    with pytest.raises(ValueError, match="output_activation must be one of"):
        resode.NeuralCDE(3, 2, output_activation="softmax")
    with pytest.raises(TypeError, match="state must be an integer"):
        resode.NeuralCDE(3, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        resode.NeuralCDE(3, 2, step_control="batch")  # type: ignore[call-arg]
    with pytest.raises(AttributeError, match="no single step grid"):
        _ = model.steps


# --------------------------------------------------------------------------- cdeint


@pytest.mark.parametrize("field", FIELDS)
def test_cdeint_and_its_vjp_match_the_reference(field: str) -> None:
    model = model_of(field, output_activation="tanh")
    params = {k: v for k, v in model.params.items() if k not in ("P", "c")}
    U = series()
    times = np.array([0.0, 0.5, 1.5, 2.0, 3.5, 4.0, 6.0])
    options = {"output_activation": "tanh", "interpolation": "linear", "method": "midpoint",
               "substeps": 2}  # fmt: skip
    if field == "inside":
        options["field"] = "inside"  # W, b: "outside" unless named
    z = resode.cdeint(params, U, times, **options)
    assert rel(z, reference.cde_solve(params, U, times, field=field, **{
        k: v for k, v in options.items() if k != "field"})) <= 1e-10  # fmt: skip
    t = np.array([0.5, 1.0, 5.0])
    zt = resode.cdeint(params, U, times, t=t, **options)
    assert zt.shape == (3, 5, 4)
    cot = np.random.default_rng(0).normal(size=zt.shape)
    grads, dU = resode.cdeint_vjp(params, U, times, cot, t=t, **options)
    r_grads, r_dU = reference.cde_vjp(params, U, times, cot, field=field, t=t, **{
        k: v for k, v in options.items() if k != "field"})  # fmt: skip
    assert set(grads) == set(params)
    assert all(rel(grads[k], r_grads[k]) <= 1e-10 for k in params)
    assert rel(dU, r_dU) <= 1e-10 and np.all(dU[np.isnan(U)] == 0)


def test_cdeint_takes_a_model() -> None:
    model = model_of("bottleneck", interpolation="linear", substeps=2)
    U = series()
    assert np.array_equal(resode.cdeint(model, U), resode.cdeint(model.params, U, None,
                          field="bottleneck", interpolation="linear", substeps=2))  # fmt: skip
    assert np.array_equal(resode.cdeint(model, U, t=np.arange(7.0)), model.trajectory(U))
    grads, dU = resode.cdeint_vjp(model, U, None, np.ones((5, 4)))
    assert dU.shape == U.shape
    assert set(grads) == set(model.params) and np.all(grads["P"] == 0)
    with pytest.raises(ValueError, match="taken from the model"):
        resode.cdeint(model, U, method="euler")
    with pytest.raises(TypeError, match="params must be a dict"):
        resode.cdeint([1, 2], U)
    with pytest.raises(ValueError, match="params must hold"):
        resode.cdeint({"A": np.ones((2, 3)), "a": np.ones(2)}, U)
    with pytest.raises(ValueError, match="method"):
        resode.cdeint(model.params, U, method="rk45")
    with pytest.raises(ValueError, match="method must be one of"):
        resode.cdeint(model.params, U, method="heun")
    float32 = {k: v.astype(np.float32) for k, v in model.params.items()}
    assert resode.cdeint(float32, U, field="bottleneck").dtype == np.float32
