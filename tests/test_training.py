"""Tests for resode.fit, History, callbacks, the bound constraint, divergence and checkpoints."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode.optim import SGD, Adam, CosineLR
from resode.training import EarlyStopping, History, TrainingDiverged, constrain, load_checkpoint


def _spheres_node(**kw: Any) -> resode.NeuralODE:
    args: dict[str, Any] = dict(
        T=5.0, pieces=8, field="bottleneck", hidden=12, augment=1, activation="relu", seed=0
    )
    args.update(kw)
    return resode.NeuralODE(2, **args)


def _same_params(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a
    )


# --------------------------------------------------------------------------- accuracy


def test_fit_spheres_augmented_node_reaches_99_percent() -> None:
    X, y = resode.datasets.concentric_spheres(300, seed=1)
    model = _spheres_node()
    h = resode.fit(model, X, y, optimizer=Adam(lr=1e-2), epochs=80, seed=0, progress=False)
    assert h.accuracy[-1] >= 0.99
    assert model.score(X, y) >= 0.99
    assert h.loss[-1] < h.loss[0]


def test_fit_moons_resnet_reaches_95_percent() -> None:
    X, y = resode.datasets.moons(300, noise=0.1, seed=1)
    model = resode.ResNet(2, layers=8, h=0.5, field="inside", seed=0)
    h = resode.fit(
        model, X, y, optimizer=Adam(lr=2e-2), epochs=40, batch_size=50, seed=0, progress=False
    )
    assert h.accuracy[-1] >= 0.95
    assert model.score(X, y) >= 0.95


def test_fit_mse_targets_and_float32() -> None:
    # loss="mse" is a regression: one-hot targets are fitted as real outputs, scored by R^2
    X, y = resode.datasets.concentric_spheres(200, seed=2)
    model = _spheres_node(loss="mse", dtype="float32")
    targets = np.eye(2)[y]
    h = resode.fit(model, X, targets, optimizer=Adam(lr=1e-2), epochs=60, seed=0, progress=False,
                   train_metrics="exact")  # fmt: skip
    assert model.params["W1"].dtype == np.float32
    assert "accuracy" not in h and h.r2[-1] >= 0.8
    assert h.r2[-1] == pytest.approx(model.score(X, targets), rel=1e-6)
    assert np.mean(np.argmax(model.predict(X), axis=1) == y) >= 0.95


# --------------------------------------------------------------------------- history


def test_history_columns_validation_and_exports(tmp_path: Path) -> None:
    X, y = resode.datasets.moons(120, noise=0.1, seed=0)
    Xv, yv = resode.datasets.moons(40, noise=0.1, seed=1)
    model = resode.ResNet(2, layers=4, h=0.5, field="inside", seed=0)
    opt = SGD(lr=0.5, momentum=0.9, schedule=CosineLR(total_epochs=5))
    h = resode.fit(
        model,
        X,
        y,
        optimizer=opt,
        epochs=5,
        batch_size=32,
        seed=0,
        validation_data=(Xv, yv),
        progress=False,
    )
    assert h.keys() == [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "grad_norm",
        "lr",
        "time",
    ]
    assert len(h) == 5 and h.epoch == [1, 2, 3, 4, 5]
    assert h["loss"] is h.loss
    assert h.lr[0] == 0.5 and h.lr[1] < 0.5  # cosine schedule advanced per epoch
    assert all(b > a for a, b in zip(h.time, h.time[1:]))
    assert all(g > 0 for g in h.grad_norm)
    assert h.val_accuracy[-1] == model.score(Xv, yv)
    assert h.val_loss[-1] == model.loss_and_grad(Xv, yv)[0]
    # the training accuracy of the batches' own predictions (tests/test_epoch.py checks it)
    assert round(h.accuracy[-1] * 120) == pytest.approx(h.accuracy[-1] * 120, abs=1e-9)
    assert "val_loss" in h and "nonsense" not in h
    with pytest.raises(AttributeError, match="no column"):
        _ = h.nonsense
    assert "epochs=5" in repr(h)

    d = h.to_dict()
    assert History.from_dict(json.loads(json.dumps(d))).to_dict() == d
    assert json.loads(h.to_json(tmp_path / "h.json").read_text()) == d
    with h.to_csv(tmp_path / "h.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == h.keys() and len(rows) == 6
    assert [float(v) for v in rows[-1]] == [d[k][-1] for k in rows[0]]


def test_history_without_validation_has_no_val_columns() -> None:
    X, y = resode.datasets.moons(50, seed=0)
    h = resode.fit(resode.ResNet(2, 2, seed=0), X, y, epochs=2, progress=False)
    assert "val_loss" not in h and h.val_loss == []
    with pytest.raises(ValueError, match="differ in length"):
        History.from_dict({"epoch": [1, 2], "loss": [0.1]})


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("batch_size", [None, 32])
def test_same_seed_gives_bitwise_equal_params(batch_size: int | None) -> None:
    X, y = resode.datasets.concentric_spheres(100, seed=0)
    runs = []
    for _ in range(2):
        model = _spheres_node(pieces=4, hidden=6)
        resode.fit(
            model,
            X,
            y,
            optimizer=Adam(lr=1e-2),
            epochs=6,
            batch_size=batch_size,
            seed=7,
            progress=False,
        )
        runs.append(model.params)
    assert _same_params(runs[0], runs[1])


def test_different_seed_changes_minibatch_order() -> None:
    X, y = resode.datasets.concentric_spheres(100, seed=0)
    params = []
    for seed in (1, 2):
        model = _spheres_node(pieces=4, hidden=6)
        resode.fit(model, X, y, epochs=2, batch_size=16, seed=seed, progress=False)
        params.append(model.params)
    assert not _same_params(params[0], params[1])


# --------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("field", ["bottleneck", "outside"])
def test_bound_holds_after_fit(field: str) -> None:
    X, y = resode.datasets.concentric_spheres(100, seed=0)
    model = _spheres_node(field=field, hidden=8 if field == "bottleneck" else None, pieces=4)
    bound = 1.5
    resode.fit(model, X, y, optimizer=Adam(lr=5e-2), epochs=10, seed=0, bound=bound, progress=False)
    names = ("W1", "b1", "W2", "b2") if field == "bottleneck" else ("W", "b")
    sums = sum(np.abs(model.params[n]).reshape(4, -1).sum(axis=1) for n in names)
    assert np.all(sums <= bound)
    assert np.any(sums > 0.99 * bound)  # the constraint is active, not trivially satisfied


def test_constrain_leaves_small_pieces_alone() -> None:
    model = resode.ResNet(2, layers=3, seed=0)
    model.params["W"][1] *= 100.0
    before = {k: v.copy() for k, v in model.params.items()}
    constrain(model, 5.0)  # initial pieces have sum|W_k| + sum|b_k| <= 6 / sqrt(2) < 5
    assert np.array_equal(model.params["W"][0], before["W"][0])
    assert np.array_equal(model.params["P"], before["P"])
    s1 = np.abs(model.params["W"][1]).sum() + np.abs(model.params["b"][1]).sum()
    assert 5.0 * (1 - 1e-12) < s1 <= 5.0


def test_fixed_projection_keeps_P_and_c() -> None:
    X, y = resode.datasets.concentric_spheres(100, seed=0)
    model = _spheres_node(pieces=4, hidden=6)
    P, c, W1 = (model.params[k].copy() for k in ("P", "c", "W1"))
    resode.fit(
        model,
        X,
        y,
        optimizer=Adam(lr=1e-2),
        epochs=5,
        seed=0,
        fixed_projection=True,
        progress=False,
    )
    assert np.array_equal(model.params["P"], P) and np.array_equal(model.params["c"], c)
    assert not np.array_equal(model.params["W1"], W1)


# --------------------------------------------------------------------------- callbacks


def test_callbacks_stop_training_and_receive_logs() -> None:
    X, y = resode.datasets.moons(60, seed=0)
    seen: list[tuple[int, float]] = []

    def record(epoch: int, logs: dict, model: Any) -> None:
        seen.append((epoch, logs["loss"]))

    class StopAt3:
        def on_epoch_end(self, epoch: int, logs: dict, model: Any) -> bool:
            return epoch == 3

    def raise_at_5(epoch: int, logs: dict, model: Any) -> None:
        if epoch == 5:
            raise StopIteration

    model = resode.ResNet(2, 3, seed=0)
    h = resode.fit(model, X, y, epochs=10, callbacks=[record, StopAt3()], progress=False)
    assert len(h) == 3 and [e for e, _ in seen] == [1, 2, 3]
    assert seen[-1][1] == h.loss[-1]
    h = resode.fit(model, X, y, epochs=10, callbacks=[raise_at_5], progress=False)
    assert len(h) == 5
    h = resode.fit(
        model, X, y, epochs=50, callbacks=[EarlyStopping("accuracy", patience=1)], progress=False
    )
    assert len(h) < 50
    with pytest.raises(TypeError, match="callback"):
        resode.fit(model, X, y, epochs=1, callbacks=[42], progress=False)


# --------------------------------------------------------------------------- divergence


def test_divergence_raises_and_keeps_last_finite_params() -> None:
    X, y = resode.datasets.concentric_spheres(100, seed=0)
    model = resode.ResNet(2, layers=4, h=1.0, field="outside", activation="relu", seed=0)
    with pytest.raises(TrainingDiverged, match=r"epoch \d+, batch \d+") as info:
        resode.fit(
            model, X, y, optimizer=SGD(lr=1e30), epochs=50, batch_size=25, seed=0, progress=False
        )
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.epoch >= 1 and 1 <= err.batch <= 4
    assert len(err.history) == err.epoch - 1
    assert all(np.isfinite(v).all() for v in model.params.values())


def test_an_adaptive_step_size_failure_is_a_divergence_caused_by_it() -> None:
    """A StepSizeError in a training batch stops fit as a divergence whose __cause__ is the
    StepSizeError itself (with its sample), not a NonFiniteError made from its message."""
    X, y = resode.datasets.concentric_spheres(60, seed=0)
    model = resode.NeuralODE(2, T=2.0, pieces=4, method="dopri5", max_steps=3, seed=0)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 1: .*max_steps") as info:
        resode.fit(model, X, y, epochs=2, batch_size=30, seed=0, progress=False)
    cause = info.value.__cause__
    assert type(cause) is resode.StepSizeError and cause.sample >= 0
    assert info.value.epoch == 1 and info.value.batch == 1


@pytest.mark.parametrize("where", ["score", "validation"])
@pytest.mark.parametrize("error", ["StepSizeError", "NonFiniteError"])
def test_a_failure_scoring_the_epoch_is_a_divergence_caused_by_it(
    monkeypatch: pytest.MonkeyPatch, where: str, error: str
) -> None:
    """The end-of-epoch scoring and validation treat both failures of a sweep as a divergence
    (a StepSizeError escaped as a bare ValueError), with the original as __cause__."""
    X, y = resode.datasets.concentric_spheres(60, seed=0)
    model = resode.NeuralODE(2, T=2.0, pieces=4, method="bosh3", rtol=1e-4, seed=0)
    failure = getattr(resode, error)("the sweep failed")
    loss_and_grad = model.loss_and_grad

    def fail(*args: Any) -> Any:
        raise failure

    def fail_on_validation(X: Any, y: Any) -> Any:
        if len(X) == 7:
            raise failure
        return loss_and_grad(X, y)

    if where == "score":
        monkeypatch.setattr(model, "score", fail)
    else:
        monkeypatch.setattr(model, "loss_and_grad", fail_on_validation)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 2 \(evaluating") as info:
        resode.fit(
            model, X, y, epochs=2, batch_size=30, seed=0, progress=False,
            validation_data=(X[:7], y[:7]),
        )  # fmt: skip
    assert info.value.__cause__ is failure and info.value.epoch == 1


def test_divergence_from_nan_parameters_is_refused_up_front() -> None:
    X, y = resode.datasets.moons(20, seed=0)
    model = resode.ResNet(2, 2, seed=0)
    model.params["W"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        resode.fit(model, X, y, epochs=1, progress=False)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    X, y = resode.datasets.concentric_spheres(80, seed=0)

    def run(epochs: int, **kw: Any) -> tuple[resode.NeuralODE, History]:
        model = _spheres_node(pieces=4, hidden=6)
        opt = Adam(lr=1e-2, schedule=CosineLR(total_epochs=8))
        h = resode.fit(
            model, X, y, optimizer=opt, epochs=epochs, batch_size=24, seed=3, progress=False, **kw
        )
        return model, h

    full, h_full = run(8)
    ckpt = tmp_path / "ckpt.npz"
    run(5, checkpoint=ckpt, checkpoint_every=2)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 5 and state["seed"] == 3 and len(state["history"]) == 5
    assert state["optimizer"].epoch == 5

    resumed = _spheres_node(pieces=4, hidden=6, seed=99)  # params come from the checkpoint
    resumed_cfg = resumed.config
    h_res = resode.fit(resumed, X, y, epochs=8, batch_size=24, resume=ckpt, progress=False)
    assert resumed.config == resumed_cfg
    assert len(h_res) == 8 and h_res.loss == h_full.loss
    assert _same_params(resumed.params, full.params)
    # resode.load reads the model out of a checkpoint too
    assert _same_params(resode.load(ckpt).params, state["model"].params)


def test_checkpoint_seed_none_is_stored_and_replayed(tmp_path: Path) -> None:
    X, y = resode.datasets.moons(60, seed=0)
    ckpt = tmp_path / "c.npz"
    m1 = resode.ResNet(2, 3, seed=0)
    resode.fit(m1, X, y, epochs=2, batch_size=16, checkpoint=ckpt, progress=False)
    seed = load_checkpoint(ckpt)["seed"]
    resode.fit(m1, X, y, epochs=4, batch_size=16, resume=ckpt, progress=False)
    m2 = resode.ResNet(2, 3, seed=0)
    resode.fit(m2, X, y, epochs=4, batch_size=16, seed=seed, progress=False)
    assert _same_params(m1.params, m2.params)


def test_resume_rejects_mismatched_model_and_model_files(tmp_path: Path) -> None:
    X, y = resode.datasets.moons(30, seed=0)
    ckpt = tmp_path / "c.npz"
    resode.fit(resode.ResNet(2, 3, seed=0), X, y, epochs=1, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="does not match"):
        resode.fit(resode.ResNet(2, 4, seed=0), X, y, epochs=2, resume=ckpt, progress=False)
    with pytest.raises(ValueError, match="fixed_projection"):
        resode.fit(
            resode.ResNet(2, 3, seed=0),
            X,
            y,
            epochs=2,
            resume=ckpt,
            fixed_projection=True,
            progress=False,
        )
    plain = tmp_path / "m.npz"
    resode.ResNet(2, 3, seed=0).save(plain)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_checkpoint(plain)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"epochs": -1}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"bound": -1.0}, ValueError, "bound"),
        ({"seed": -3}, TypeError, "seed"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every"),
        ({"validation_data": np.zeros((3, 2))}, TypeError, "validation_data"),
    ],
)
def test_bad_arguments(kwargs: dict, exc: type, match: str) -> None:
    X, y = resode.datasets.moons(20, seed=0)
    with pytest.raises(exc, match=match):
        resode.fit(resode.ResNet(2, 2, seed=0), X, y, progress=False, **kwargs)


def test_bad_data_names_the_argument() -> None:
    model = resode.ResNet(2, 2, seed=0)
    with pytest.raises(ValueError, match="training data: X"):
        resode.fit(model, np.zeros((5, 3)), np.zeros(5), progress=False)
    with pytest.raises(ValueError, match="training data: y"):
        resode.fit(model, np.zeros((5, 2)), np.array([0, 1, 2, 0, 1]), progress=False)
    with pytest.raises(TypeError, match="model"):
        resode.fit("model", np.zeros((5, 2)), np.zeros(5), progress=False)


def test_label_out_of_range_in_a_late_batch_is_refused_before_any_step() -> None:
    model = resode.ResNet(2, 3, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    X = np.random.default_rng(0).standard_normal((40, 2))
    y = np.zeros(40, dtype=np.int64)
    y[-1] = 2  # classes = 2: only the last batch holds the bad label
    with pytest.raises(ValueError, match=r"training data: y must hold labels in \[0, 2\), got 2"):
        resode.fit(model, X, y, epochs=2, batch_size=8, shuffle=False, progress=False)
    for key, value in before.items():
        np.testing.assert_array_equal(model.params[key], value)


# --------------------------------------------------------------------------- progress bar


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    X, y = resode.datasets.moons(30, seed=0)
    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    resode.fit(resode.ResNet(2, 2, seed=0), X, y, epochs=3, progress=True)
    out = fake.getvalue()
    assert "3/3" in out and "loss=" in out and "accuracy=" in out
    fake2 = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake2)
    resode.fit(resode.ResNet(2, 2, seed=0), X, y, epochs=3, progress=False)
    assert fake2.getvalue() == ""
    plain = io.StringIO()  # not a terminal: plain log lines instead of a bar
    monkeypatch.setattr(sys, "stderr", plain)
    resode.fit(resode.ResNet(2, 2, seed=0), X, y, epochs=3, progress=True)
    assert "\r" not in plain.getvalue() and "epoch 3/3  loss " in plain.getvalue()


# --------------------------------------------------------------------------- optional deps

_BLOCK_OPTIONAL = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("matplotlib", "sklearn", "tqdm", "PIL", "scipy"):
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import resode
X, y = resode.datasets.moons(20, seed=0)
resode.fit(resode.ResNet(2, 2, seed=0), X, y, epochs=2, progress=True)
try:
    resode.sklearn
except ImportError as exc:
    assert "pip install resode[sklearn]" in str(exc), exc
else:
    raise AssertionError("resode.sklearn imported without scikit-learn")
assert callable(resode.plot.trajectories)  # importable; matplotlib is needed only to draw
print("ok")
"""


def test_import_and_fit_need_only_numpy() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_OPTIONAL], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_training_diverged_pickles_with_its_attributes() -> None:
    import pickle

    h = History()
    h.append({"epoch": 1, "loss": 0.5})
    err = pickle.loads(pickle.dumps(TrainingDiverged("boom", epoch=2, batch=3, history=h)))
    assert (str(err), err.epoch, err.batch, err.history.loss) == ("boom", 2, 3, [0.5])


# --------------------------------------------------------------------------- regression


def test_regression_fits_a_sine_with_r2_history() -> None:
    X, y = resode.datasets.sine(300, seed=0)
    Xv, yv = resode.datasets.sine(100, seed=1)
    model = resode.NeuralODE(
        1, T=2.0, pieces=8, classes=1, loss="mse", field="bottleneck", hidden=16, augment=1, seed=0
    )
    h = resode.fit(
        model, X, y, optimizer=Adam(lr=2e-2), epochs=300, seed=0, validation_data=(Xv, yv),
        progress=False,
    )  # fmt: skip
    assert "accuracy" not in h and "val_accuracy" not in h
    assert h.r2[-1] >= 0.99 and h.val_r2[-1] >= 0.99
    assert model.score(Xv, yv) == pytest.approx(h.val_r2[-1], rel=1e-12)
    assert model.predict(X).shape == (300,)  # 1-D targets in, 1-D predictions out
    np.testing.assert_array_equal(model.predict(X), model.forward(X)[:, 0])
    # R^2 as scikit-learn defines it
    z = model.forward(Xv)[:, 0]
    expected = 1 - np.sum((yv - z) ** 2) / np.sum((yv - yv.mean()) ** 2)
    assert model.score(Xv, yv) == pytest.approx(expected, rel=1e-12)
    resode.fit(model, X, y[:, None], epochs=1, progress=False)
    assert model.predict(X).shape == (300, 1)  # (N, 1) targets: (N, 1) predictions


def test_r2_of_several_outputs_is_their_mean() -> None:
    from resode.models import r2_score

    y = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    z = np.array([[1.0, 2.0], [2.5, 2.0], [2.5, 2.0]])
    assert r2_score(y, z) == pytest.approx((1 - 0.5 / 2.0 + 1.0) / 2)  # constant column: 1


def test_mse_y_shape_errors_name_both_shapes() -> None:
    model = resode.ResNet(2, 2, classes=1, loss="mse", seed=0)
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(4, 1\) or \(4,\)"):
        model.loss_and_grad(X, np.zeros(3))
    z = model.forward(X)[:, 0]
    assert model.score(X, z) == 1.0  # constant targets predicted exactly: 1, as scikit-learn
    assert model.score(X, z + 1.0) == 0.0  # and missed: 0


def test_epoch_mean_loss_overflow_is_a_divergence() -> None:
    # each batch loss is finite (about 1e308) but their sample-weighted sum overflows
    model = resode.ResNet(1, 1, classes=1, loss="mse", seed=0)
    X, y = np.zeros((10, 1)), np.full(10, 1e154)
    with pytest.raises(resode.TrainingDiverged, match="the epoch's mean loss is not finite"):
        resode.fit(model, X, y, epochs=2, batch_size=5, progress=False)


def test_constrain_accepts_strided_parameters() -> None:
    model, reference = resode.ResNet(2, 3, seed=0), resode.ResNet(2, 3, seed=0)
    model.params["W"] = np.asfortranarray(model.params["W"] * 5)
    reference.params["W"] = reference.params["W"] * 5
    constrain(model, 0.5)
    constrain(reference, 0.5)
    np.testing.assert_array_equal(model.params["W"], reference.params["W"])


@pytest.mark.parametrize("writer", ["to_csv", "to_json"])
def test_history_files_are_replaced_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """An interrupted write leaves the previous file whole and no temporary file behind."""
    import os

    history = resode.History()
    history.append({"epoch": 1, "loss": 0.5})
    path = tmp_path / f"history.{writer[3:]}"
    path.write_text("previous\n")

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        getattr(history, writer)(path)
    assert path.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    monkeypatch.undo()
    getattr(history, writer)(path)
    assert path.read_text() != "previous\n"


# --------------------------------------------------------------------------- early stopping


def _overfitting_regression() -> tuple[np.ndarray, ...]:
    """24 noisy training points of a smooth law and 200 held out: a wide model fits the noise
    (the held-out R^2 peaks near epoch 11 and falls below half of it by epoch 300)."""
    rng = np.random.default_rng(0)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.uniform(-2, 2, size=(n, 3))
        return X, np.sin(X[:, 0]) + 0.5 * rng.normal(size=n)

    return (*draw(24), *draw(200))


def _wide_regressor() -> resode.ResNet:
    return resode.ResNet(3, layers=4, h=0.5, field="bottleneck", hidden=32, augment=2,
                         classes=1, loss="mse", seed=0)  # fmt: skip


def _fit_overfitting(model: resode.ResNet, epochs: int = 300, **kw: Any) -> History:
    X, y, Xv, yv = _overfitting_regression()
    return resode.fit(model, X, y, optimizer=Adam(lr=1e-2), epochs=epochs, seed=0,
                      validation_data=(Xv, yv), progress=False, **kw)  # fmt: skip


def test_early_stopping_keeps_the_best_epoch_of_an_overfitting_regressor() -> None:
    _, _, Xv, yv = _overfitting_regression()
    overfit = _wide_regressor()
    h_all = _fit_overfitting(overfit)
    best = int(np.argmin(h_all.val_loss)) + 1
    assert h_all.best_epoch is None and overfit.score(Xv, yv) < 0.5 * max(h_all.val_r2)

    model = _wide_regressor()
    h = _fit_overfitting(model, early_stopping=EarlyStopping("val_loss", patience=20))
    assert h.best_epoch == best and len(h) == best + 20
    # the held-out R^2 is the best epoch's, not the last one's
    assert model.score(Xv, yv) == h.val_r2[best - 1] > h.val_r2[-1]
    # and the parameters are bitwise those of a run that ended at the best epoch
    at_best = _wide_regressor()
    _fit_overfitting(at_best, epochs=best)
    assert _same_params(model.params, at_best.params)


def test_early_stopping_without_restore_keeps_the_last_epoch() -> None:
    model = _wide_regressor()
    stop = EarlyStopping("val_loss", patience=20, restore_best=False)
    h = _fit_overfitting(model, early_stopping=stop)
    last = _wide_regressor()
    _fit_overfitting(last, epochs=len(h))
    assert h.best_epoch == stop.best_epoch < len(h) and _same_params(model.params, last.params)


def test_early_stopping_restores_the_best_epoch_when_all_epochs_ran() -> None:
    model = _wide_regressor()
    h = _fit_overfitting(model, epochs=40, early_stopping=EarlyStopping(patience=1000))
    assert len(h) == 40 and h.best_epoch < 40
    at_best = _wide_regressor()
    _fit_overfitting(at_best, epochs=h.best_epoch)
    assert _same_params(model.params, at_best.params)


def test_early_stopping_in_callbacks_acts_as_early_stopping() -> None:
    a, b = _wide_regressor(), _wide_regressor()
    ha = _fit_overfitting(a, early_stopping=EarlyStopping(patience=5))
    hb = _fit_overfitting(b, callbacks=[EarlyStopping(patience=5)])
    assert ha.to_dict().keys() == hb.to_dict().keys() and ha.best_epoch == hb.best_epoch
    assert ha.val_loss == hb.val_loss and _same_params(a.params, b.params)


def test_early_stopping_resumes_with_its_best_epoch_and_weights(tmp_path: Path) -> None:
    stop = {"monitor": "val_loss", "patience": 20}
    full = _wide_regressor()
    h_full = _fit_overfitting(full, early_stopping=EarlyStopping(**stop))
    assert h_full.best_epoch < 15  # so that the checkpoint at epoch 15 must carry its weights

    path = tmp_path / "ckpt.npz"
    cut = _wide_regressor()
    _fit_overfitting(cut, epochs=15, early_stopping=EarlyStopping(**stop), checkpoint=path)
    state = load_checkpoint(path)
    assert state["epoch"] == 15 and state["history"].best_epoch == h_full.best_epoch
    assert state["best_params"] is not None
    assert state["settings"]["early_stopping"]["patience"] == 20

    resumed = _wide_regressor()
    h = _fit_overfitting(resumed, early_stopping=EarlyStopping(**stop), resume=path)
    assert h.best_epoch == h_full.best_epoch and h.val_loss == h_full.val_loss
    assert _same_params(resumed.params, full.params)

    # a checkpoint written when early stopping stopped: resuming trains no further epoch
    end = tmp_path / "end.npz"
    _fit_overfitting(_wide_regressor(), early_stopping=EarlyStopping(**stop), checkpoint=end)
    again = _wide_regressor()
    h = _fit_overfitting(again, early_stopping=EarlyStopping(**stop), resume=end)
    assert len(h) == len(h_full) and _same_params(again.params, full.params)


def test_resuming_with_early_stopping_needs_the_best_weights(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    _fit_overfitting(_wide_regressor(), epochs=15, checkpoint=path)
    with pytest.raises(ValueError, match="no parameters of that epoch"):
        _fit_overfitting(_wide_regressor(), early_stopping=EarlyStopping(), resume=path)


def test_best_epoch_is_saved_in_history_json(tmp_path: Path) -> None:
    h = _fit_overfitting(_wide_regressor(), epochs=30, early_stopping=EarlyStopping(patience=5))
    data = json.loads(h.to_json(tmp_path / "h.json").read_text())
    assert data["best_epoch"] == h.best_epoch and "best_epoch" not in h.to_dict()
    again = History.from_dict(data)
    assert again.best_epoch == h.best_epoch and again.to_dict() == h.to_dict()
    with pytest.raises(ValueError, match="best_epoch"):
        History.from_dict({"epoch": [1], "best_epoch": 0})


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"early_stopping": EarlyStopping("val_loss")}, "needs validation_data|val_\\* columns"),
        ({"early_stopping": EarlyStopping("r2")}, "does not record"),
        ({"early_stopping": EarlyStopping("loss"), "callbacks": [EarlyStopping("loss")]}, "one"),
        ({"early_stopping": "loss"}, "EarlyStopping"),
    ],
)
def test_bad_early_stopping_is_refused_up_front(kw: dict[str, Any], match: str) -> None:
    X, y = resode.datasets.moons(20, seed=0)
    model = resode.ResNet(2, 2, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises((ValueError, TypeError), match=match):
        resode.fit(model, X, y, epochs=2, progress=False, **kw)
    assert _same_params(model.params, before)


@pytest.mark.parametrize(
    "kw",
    [{"patience": -1}, {"patience": 1.5}, {"min_delta": -0.1}, {"restore_best": 1}, {"mode": "up"}],
)
def test_bad_early_stopping_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        EarlyStopping(**kw)


# --------------------------------------------------------------------------- sign accuracy


def test_history_reports_sign_accuracy_beside_r2_for_plus_minus_one_targets() -> None:
    X, labels = resode.datasets.moons(60, seed=0)
    y = np.where(labels == 1, 1.0, -1.0)
    model = resode.ResNet(2, 3, classes=1, loss="mse", readout="hardtanh", seed=0)
    h = resode.fit(model, X, y, optimizer=Adam(lr=1e-2), epochs=5, seed=0, progress=False,
                   validation_data=(X[:20], y[:20]), train_metrics="exact")  # fmt: skip
    assert {"r2", "accuracy", "val_r2", "val_accuracy"} <= set(h.keys())
    assert h.accuracy[-1] == model.sign_accuracy(X, y) and h.r2[-1] == model.score(X, y)
    assert h.val_accuracy[-1] == model.sign_accuracy(X[:20], y[:20])
    # other regression targets: R^2 only (validation targets not +-1: no val_accuracy)
    h = resode.fit(model, X, y, epochs=1, progress=False, validation_data=(X[:20], y[:20] * 2))
    assert "accuracy" in h and "val_accuracy" not in h and "val_r2" in h
    h = resode.fit(model, X, y * 0.5, epochs=1, progress=False)
    assert "accuracy" not in h and "r2" in h


def test_early_stopping_can_monitor_the_sign_accuracy() -> None:
    X, labels = resode.datasets.moons(60, seed=0)
    y = np.where(labels == 1, 1.0, -1.0)
    model = resode.ResNet(2, 3, classes=1, loss="mse", readout="hardtanh", seed=0)
    stop = EarlyStopping("val_accuracy", patience=3)
    h = resode.fit(model, X, y, optimizer=Adam(lr=1e-2), epochs=200, seed=0, progress=False,
                   validation_data=(X, y), early_stopping=stop)  # fmt: skip
    assert stop.mode == "max" and h.val_accuracy[h.best_epoch - 1] == max(h.val_accuracy)
    assert model.sign_accuracy(X, y) == max(h.val_accuracy)


def test_a_fixed_step_epoch_is_one_call_into_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    train_epoch = resode._core.train_epoch

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(resode._core, "train_epoch", counted)
    X, y = resode.datasets.moons(40, seed=0)
    resode.fit(resode.ResNet(2, 2, seed=0), X, y, epochs=3, batch_size=8, progress=False)
    resode.fit(resode.NeuralODE(2, pieces=2, seed=0), X, y, epochs=2, progress=False)
    assert len(calls) == 5
    resode.fit(resode.NeuralODE(2, pieces=2, method="bosh3", seed=0), X, y, epochs=2,
               batch_size=20, progress=False)  # fmt: skip
    assert len(calls) == 5  # the adaptive epoch steps batch by batch in Python


def test_fit_records_a_dataframe_s_column_names_and_a_series_name(tmp_path: Path) -> None:
    """The Python API takes pandas objects and records their names in the model (and its
    file), as scikit-learn's feature_names_in_; plain arrays record nothing."""
    pd = pytest.importorskip("pandas")  # in the test extra; not a dependency of resode
    X, y = resode.datasets.moons(60, seed=0)
    model = resode.ResNet(2, layers=2, seed=0)
    resode.fit(model, pd.DataFrame(X, columns=["u", "v"]), pd.Series(y, name="side"),
               epochs=1, progress=False)  # fmt: skip
    assert model.feature_names == ["u", "v"] and model.target_name == "side"
    loaded = resode.load(model.save(tmp_path / "m.npz"))
    assert loaded.feature_names == ["u", "v"] and loaded.target_name == "side"
    plain = resode.ResNet(2, layers=2, seed=0)
    resode.fit(plain, X, y, epochs=1, progress=False)
    assert plain.feature_names is None and plain.target_name is None
