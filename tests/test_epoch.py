"""The whole-epoch loop in the core (``_core.train_epoch``, used by ``resode.fit``) against the
per-batch loop it replaces, written out here in Python: ``loss_and_grad``, ``Optimizer.step``
and ``constrain`` per mini-batch. Both run the same kernels, so parameters, optimiser state and
every history column but the wall time must agree bitwise, for every optimiser, the bound,
a fixed projection, both dtypes, both models, regression, and a resumed run. The training
score: with ``train_metrics="exact"`` the model's score after the epoch (bitwise); with the
default ``"batches"`` from each batch's own predictions before its update (the accuracy
exactly, R^2 to 1e-12)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode.models import is_sign_target
from resode.optim import SGD, Adam, CosineLR, Optimizer, StepLR
from resode.training import TrainingDiverged, constrain, load_checkpoint

OPTIMIZERS: dict[str, Callable[[], Optimizer]] = {
    "sgd": lambda: SGD(lr=0.05),
    "momentum": lambda: SGD(lr=0.05, momentum=0.9, schedule=StepLR(2, 0.5)),
    "nesterov": lambda: SGD(lr=0.05, momentum=0.8, nesterov=True, schedule=CosineLR(4, 0.1)),
    "adam": lambda: Adam(lr=0.01, schedule=CosineLR(5)),
    "adam_betas": lambda: Adam(lr=0.02, betas=(0.5, 0.9), eps=1e-6),
}


def per_batch_fit(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    optimizer: Optimizer,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    bound: float | None = None,
    fixed_projection: bool = False,
    start: int = 0,
    train_metrics: str = "batches",
) -> list[dict[str, float]]:
    """fit's documented loop, one Python call per batch; returns the history rows."""
    Xc = model._X(X)
    n = Xc.shape[0]
    batch = min(batch_size, n)
    trained = [k for k in model.params if not (fixed_projection and k in ("P", "c"))]
    metric = "r2" if model.task == "regression" else "accuracy"
    sign = metric == "r2" and model.classes == 1 and is_sign_target(y)
    rows = []
    for epoch in range(start, epochs):
        lr = optimizer.lr
        shuffle = batch < n
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        loss_sum = norm_sum = 0.0
        batches = 0
        judged = BatchPredictions(y, n, model.dtype)
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch]
            if train_metrics == "batches":  # with the parameters this batch runs with
                judged.add(idx, model.forward(Xc[idx]))
            loss, grads = model.loss_and_grad(Xc[idx], y[idx])
            g = {k: grads[k] for k in trained}
            optimizer.step({k: model.params[k] for k in trained}, g)
            if bound is not None:
                constrain(model, bound)
            loss_sum += loss * len(idx)
            norm_sum += _core.grad_norm(list(g.values()))
            batches += 1
        row = {"epoch": epoch + 1, "loss": loss_sum / n, "grad_norm": norm_sum / batches, "lr": lr}
        if train_metrics == "batches":
            row.update(judged.scores(metric, sign))
        else:
            row[metric] = model.score(Xc, y)
            if sign:
                row["accuracy"] = model.sign_accuracy(Xc, y)
        rows.append(row)
        optimizer.epoch_end()
    return rows


class BatchPredictions:
    """The epoch's predictions, batch by batch, and the training score they give: accuracy =
    correct argmax / N (for +-1 targets the sign agreement); ``R^2 = mean_j (1 - SSE_j /
    SS_tot_j)``, ``SSE_j`` over the batches' predictions, ``SS_tot_j = sum_i (y_ij -
    mean_j)^2`` over all the training targets (as the model holds them: in its dtype)."""

    def __init__(self, y: np.ndarray, n: int, dtype: Any) -> None:
        self.y = np.asarray(y)
        self.values = self.y.astype(dtype).astype(np.float64).reshape(n, -1)
        self.n, self.correct, self.sse = n, 0, 0.0

    def add(self, idx: np.ndarray, z: np.ndarray) -> None:
        if self.y.dtype.kind in "iu":  # labels
            self.correct += int(np.sum(np.argmax(z, axis=1) == self.y[idx]))
            return
        self.sse = self.sse + np.sum((z.astype(np.float64) - self.values[idx]) ** 2, axis=0)
        self.correct += int(np.sum((z[:, 0] > 0) == (self.values[idx, 0] > 0)))

    def scores(self, metric: str, sign: bool) -> dict[str, float]:
        if metric == "accuracy":
            return {"accuracy": self.correct / self.n}
        spread = np.sum((self.values - self.values.mean(axis=0)) ** 2, axis=0)
        out = {"r2": float(np.mean(1.0 - self.sse / spread))}
        return {**out, "accuracy": self.correct / self.n} if sign else out


def _history_rows(history: resode.History) -> list[dict[str, float]]:
    keys = [k for k in history.keys() if k != "time"]
    return [{k: history[k][i] for k in keys} for i in range(len(history))]


def _assert_same_rows(got: list[dict[str, float]], expected: list[dict[str, float]]) -> None:
    """Every column bitwise, but R^2 from the batches: ``1 - R^2`` (the mean of SSE / SS_tot,
    well conditioned where R^2 is near 0) to 1e-12 relative, as its sums run in another order
    in the core."""
    assert [row.keys() for row in got] == [row.keys() for row in expected]
    for a, b in zip(got, expected):
        r2_a, r2_b = a.pop("r2", None), b.pop("r2", None)
        assert a == b  # bitwise: == on floats
        if r2_a is not None:
            assert 1.0 - r2_a == pytest.approx(1.0 - r2_b, rel=1e-12, abs=0.0)


def _assert_same(model_a: Any, model_b: Any, opt_a: Optimizer, opt_b: Optimizer) -> None:
    for k in model_a.params:
        assert model_a.params[k].dtype == model_b.params[k].dtype
        np.testing.assert_array_equal(model_a.params[k], model_b.params[k], err_msg=k)
    state_a, state_b = opt_a.state_dict(), opt_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for k in state_a:
        np.testing.assert_array_equal(state_a[k], state_b[k], err_msg=k)


def _node(dtype: Any = np.float64, dim: int = 2, **kw: Any) -> resode.NeuralODE:
    args: dict[str, Any] = dict(
        T=2.0,
        pieces=4,
        method="rk4",
        field="bottleneck",
        hidden=6,
        augment=1,
        activation="tanh",
        dtype=dtype,
        seed=3,
    )
    args.update(kw)
    return resode.NeuralODE(dim, **args)


def _compare(
    make_model: Callable[[], Any],
    make_opt: Callable[[], Optimizer],
    X: np.ndarray,
    y: np.ndarray,
    **kw: Any,
) -> None:
    epochs, batch_size, seed = kw.pop("epochs", 4), kw.pop("batch_size", 23), 7
    fitted, looped = make_model(), make_model()
    opt_fit, opt_loop = make_opt(), make_opt()
    history = resode.fit(
        fitted,
        X,
        y,
        optimizer=opt_fit,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        progress=False,
        **kw,
    )
    rows = per_batch_fit(
        looped, X, y, opt_loop, epochs=epochs, batch_size=batch_size, seed=seed, **kw
    )
    if kw.get("train_metrics", "batches") == "exact":
        assert _history_rows(history) == rows  # bitwise: == on floats
    else:
        _assert_same_rows(_history_rows(history), rows)
    _assert_same(fitted, looped, opt_fit, opt_loop)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_epoch_equals_per_batch_loop_for_every_optimiser(name: str, dtype: Any) -> None:
    X, y = resode.datasets.concentric_spheres(90, seed=0)
    _compare(lambda: _node(dtype), OPTIMIZERS[name], X, y)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_epoch_equals_per_batch_loop_with_bound_and_fixed_projection(name: str) -> None:
    X, y = resode.datasets.moons(70, seed=1)
    cases: list[dict[str, Any]] = [
        {"bound": 0.8},
        {"fixed_projection": True},
        {"bound": 1.5, "fixed_projection": True},
    ]
    for kw in cases:
        _compare(lambda: _node(field="outside", hidden=None), OPTIMIZERS[name], X, y, **kw)


@pytest.mark.parametrize("field", ["outside", "inside", "bottleneck"])
def test_epoch_equals_per_batch_loop_for_resnets(field: str) -> None:
    X, y = resode.datasets.moons(64, seed=2)
    hidden = 5 if field == "bottleneck" else None
    _compare(
        lambda: resode.ResNet(2, 5, h=0.5, field=field, hidden=hidden, augment=1, seed=1),
        OPTIMIZERS["adam"],
        X,
        y,
        bound=2.0,
    )


def test_epoch_equals_per_batch_loop_for_regression_turnpike_and_adjoint() -> None:
    X, y = resode.datasets.sine(60, seed=0)
    _compare(
        lambda: _node(dim=1, loss="mse", classes=1, weight_decay=1e-3),
        OPTIMIZERS["adam"],
        X,
        y.reshape(-1, 1),
    )
    Xc, yc = resode.datasets.concentric_spheres(50, seed=4)
    _compare(lambda: _node(turnpike=True, gradient="adjoint"), OPTIMIZERS["nesterov"], Xc, yc)
    _compare(lambda: _node(checkpoints=2), OPTIMIZERS["momentum"], Xc, yc)


@pytest.mark.parametrize("batch_size", [1, 50, 1000])
def test_epoch_equals_per_batch_loop_for_any_batch_size(batch_size: int) -> None:
    X, y = resode.datasets.moons(50, seed=3)
    _compare(lambda: _node(), OPTIMIZERS["momentum"], X, y, batch_size=batch_size, epochs=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exact_train_metrics_are_the_score_after_each_epoch_bitwise(dtype: Any) -> None:
    # "exact" keeps the end-of-epoch pass bitwise: the score of the epoch's final parameters
    X, y = resode.datasets.concentric_spheres(90, seed=0)
    _compare(lambda: _node(dtype), OPTIMIZERS["adam"], X, y, train_metrics="exact")
    Xs, ys = resode.datasets.sine(60, seed=0)
    regression = lambda: _node(dtype, dim=1, loss="mse", classes=1)  # noqa: E731
    _compare(regression, OPTIMIZERS["momentum"], Xs, ys.reshape(-1, 1), train_metrics="exact")
    three = np.column_stack([X[:, 0], X[:, 1] ** 2, 2.0 * y])
    _compare(lambda: _node(dtype, classes=3, loss="mse"), OPTIMIZERS["sgd"], X, three,
             train_metrics="exact", bound=2.0)  # fmt: skip


def test_batch_metrics_of_several_outputs_and_sign_targets() -> None:
    # R^2 averaged over 3 outputs, and the sign agreement of a hardtanh model's +-1 targets,
    # from the batches' own predictions; and the same with the adjoint, turnpike, float32
    X, y = resode.datasets.concentric_spheres(90, seed=0)
    three = np.column_stack([X[:, 0], X[:, 1] ** 2, 2.0 * y])
    _compare(lambda: _node(classes=3, loss="mse"), OPTIMIZERS["adam"], X, three)
    signs = np.where(y == 1, 1.0, -1.0)
    hardtanh = lambda: _node(classes=1, loss="mse", readout="hardtanh")  # noqa: E731
    _compare(hardtanh, OPTIMIZERS["adam"], X, signs)
    _compare(hardtanh, OPTIMIZERS["adam"], X, signs, train_metrics="exact")
    adjoint = lambda: _node(np.float32, turnpike=True, gradient="adjoint")  # noqa: E731
    _compare(adjoint, OPTIMIZERS["nesterov"], X, y)
    _compare(lambda: _node(np.float32, classes=3, loss="mse"), OPTIMIZERS["adam"], X, three)


def test_batch_metrics_are_not_the_score_after_the_epoch() -> None:
    # full batch: the epoch's one batch ran with the parameters from before the epoch
    X, y = resode.datasets.sine(60, seed=0)
    model, before = _node(dim=1, loss="mse", classes=1), _node(dim=1, loss="mse", classes=1)
    h = resode.fit(model, X, y, optimizer=Adam(lr=0.05), epochs=1, progress=False)
    assert h.r2[0] == pytest.approx(before.score(X, y), rel=1e-12)
    assert h.r2[0] != model.score(X, y)
    exact = resode.fit(before, X, y, optimizer=Adam(lr=0.05), epochs=1, progress=False,
                       train_metrics="exact")  # fmt: skip
    assert exact.r2 == [before.score(X, y)] and exact.loss == h.loss


def test_batch_metrics_are_bitwise_the_same_for_any_thread_count() -> None:
    # batches of 1000 samples: several blocks each, summed in block order, not thread order
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 2))
    targets = np.column_stack([np.sin(X[:, 0]), X[:, 1] ** 2])
    labels = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    before = resode.get_num_threads()
    try:
        for y, loss in ((targets, "mse"), (labels, "cross_entropy")):
            rows = []
            for threads in (1, 2, 3):
                resode.set_num_threads(threads)
                model = _node(classes=2, loss=loss)
                h = resode.fit(model, X, y, epochs=2, batch_size=1000, seed=0, progress=False)
                rows.append(_history_rows(h))
            assert rows[0] == rows[1] == rows[2]
    finally:
        resode.set_num_threads(before)


def test_adaptive_models_score_the_training_set_after_the_epoch() -> None:
    # their per-batch sweeps do not return predictions: the exact pass, also by default
    X, y = resode.datasets.moons(40, seed=0)
    model = resode.NeuralODE(2, T=1.0, method="dopri5", seed=1)
    h = resode.fit(model, X, y, epochs=2, batch_size=10, seed=0, progress=False)
    assert h.accuracy[-1] == model.score(X, y)


@pytest.mark.parametrize("bad", ["Batches", "", None, 1])
def test_train_metrics_is_checked(bad: Any) -> None:
    X, y = resode.datasets.moons(20, seed=0)
    error = ValueError if isinstance(bad, str) else TypeError
    with pytest.raises(error, match=r"^train_metrics must be 'batches' or 'exact', got "):
        resode.fit(_node(), X, y, epochs=1, progress=False, train_metrics=bad)


def test_resumed_run_equals_per_batch_loop(tmp_path: Path) -> None:
    X, y = resode.datasets.concentric_spheres(60, seed=5)
    fitted, looped = _node(), _node()
    opt_fit, opt_loop = OPTIMIZERS["adam"](), OPTIMIZERS["adam"]()
    ckpt = tmp_path / "run.npz"
    resode.fit(
        fitted,
        X,
        y,
        optimizer=opt_fit,
        epochs=2,
        batch_size=16,
        seed=1,
        checkpoint=ckpt,
        progress=False,
    )
    resumed = _node()
    opt_resumed = OPTIMIZERS["adam"]()
    history = resode.fit(
        resumed, X, y, optimizer=opt_resumed, epochs=4, batch_size=16, resume=ckpt, progress=False
    )
    rows = per_batch_fit(looped, X, y, opt_loop, epochs=4, batch_size=16, seed=1)
    _assert_same_rows(_history_rows(history), rows)
    assert load_checkpoint(ckpt)["settings"]["train_metrics"] == "batches"
    _assert_same(resumed, looped, opt_resumed, opt_loop)


def test_optimiser_state_created_by_a_failed_epoch_is_forgotten() -> None:
    X, y = resode.datasets.moons(20, seed=0)
    X = X.copy()
    X[3] = 1e308  # the first batch's forward sweep overflows
    model = resode.ResNet(2, 2, activation="relu", seed=0)
    opt = SGD(lr=0.1, momentum=0.9)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at epoch 1, batch 1: "):
        resode.fit(
            model, X, y, optimizer=opt, epochs=1, shuffle=False, batch_size=10, progress=False
        )
    assert opt.step_count == 0
    assert sorted(opt.state_dict()) == ["epoch", "step"]


# --------------------------------------------------------------------------- divergence


def test_non_finite_sweep_names_the_batch_and_keeps_the_last_update() -> None:
    X, y = resode.datasets.moons(40, seed=0)
    X = X.copy()
    X[25] = 1e308  # in the third batch of 10 when visited in order: the sweep overflows
    model, reference = (resode.ResNet(2, 3, activation="relu", seed=0) for _ in range(2))
    opt, opt_ref = Adam(lr=0.1), Adam(lr=0.1)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at epoch 1, batch 3: ") as info:
        resode.fit(
            model, X, y, optimizer=opt, epochs=3, batch_size=10, shuffle=False, progress=False
        )
    err = info.value
    assert (err.epoch, err.batch, len(err.history)) == (1, 3, 0)
    assert isinstance(err.__cause__, resode.NonFiniteError)
    assert err.__cause__.step == 1 and "layer 1" in str(err)  # the core's message and step
    for lo in (0, 10):  # the two batches before it, by hand
        _, grads = reference.loss_and_grad(X[lo : lo + 10], y[lo : lo + 10])
        opt_ref.step(reference.params, grads)
    _assert_same(model, reference, opt, opt_ref)


@pytest.mark.parametrize("make_opt", [lambda: SGD(lr=1e300), lambda: Adam(lr=1e300)])
def test_update_that_overflows_restores_the_parameters_before_it(
    make_opt: Callable[[], Optimizer],
) -> None:
    X, y = resode.datasets.moons(40, seed=0)
    model = resode.ResNet(2, 3, dtype=np.float32, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    pattern = (
        r"^training diverged at epoch 1, batch 1: the optimiser step made the parameters "
        r"non-finite \(lr=1e\+300\); parameters restored to before the step$"
    )
    opt = make_opt()
    with pytest.raises(TrainingDiverged, match=pattern):  # lr * g overflows in float32
        resode.fit(model, X, y, optimizer=opt, epochs=2, batch_size=10, progress=False)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], before[k], err_msg=k)
    assert opt.step_count == 1  # the step was taken; the optimiser state is not rolled back


def test_epoch_refuses_parameters_it_cannot_update_in_place() -> None:
    model = _node()
    X, y = resode.datasets.moons(10, seed=0)
    args = dict(
        batch=5,
        field="bottleneck",
        activation="tanh",
        method="rk4",
        dt=0.5,
        augment=1,
        optimizer="sgd",
        lr=0.1,
        step=0,
    )
    theta = [model.params[k] for k in ("W1", "b1", "W2", "b2")]
    state: list[list[np.ndarray]] = [[] for _ in range(6)]
    order = np.arange(10)
    read_only = model.params["P"].copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"^P is read-only; it is updated in place$"):
        _core.train_epoch(X, y, theta, read_only, model.params["c"], order, state=state, **args)
    strided = np.asfortranarray(np.repeat(model.params["W1"], 2, axis=2))[:, :, ::2]
    with pytest.raises(ValueError, match=r"^theta\[0\] must be C-contiguous"):
        _core.train_epoch(
            X,
            y,
            [strided, *theta[1:]],
            model.params["P"],
            model.params["c"],
            order,
            state=state,
            **args,
        )
    with pytest.raises(ValueError, match=r"^order must index X's rows$"):
        _core.train_epoch(
            X, y, theta, model.params["P"], model.params["c"], order + 1, state=state, **args
        )
    with pytest.raises(ValueError, match=r"^state must hold one list per trained array \(6\)"):
        _core.train_epoch(
            X, y, theta, model.params["P"], model.params["c"], order, state=state[:4], **args
        )


def test_fit_converts_foreign_parameter_arrays_once() -> None:
    X, y = resode.datasets.moons(30, seed=0)
    model, reference = resode.ResNet(2, 2, seed=0), resode.ResNet(2, 2, seed=0)
    model.params["W"] = np.asfortranarray(model.params["W"])
    model.params["P"] = model.params["P"].tolist()  # type: ignore[assignment]
    resode.fit(model, X, y, epochs=2, batch_size=10, seed=0, progress=False)
    resode.fit(reference, X, y, epochs=2, batch_size=10, seed=0, progress=False)
    for k in model.params:
        assert isinstance(model.params[k], np.ndarray) and model.params[k].flags.c_contiguous
        np.testing.assert_array_equal(model.params[k], reference.params[k])


def test_grad_norm_is_the_euclidean_norm_without_overflow() -> None:
    a, b = np.array([3.0, 0.0]), np.array([[4.0]])
    assert _core.grad_norm([a, b]) == 5.0
    assert _core.grad_norm([np.zeros(3)]) == 0.0
    huge = np.array([1e300, 1e300])
    assert math.isclose(_core.grad_norm([huge]), math.sqrt(2) * 1e300, rel_tol=1e-15)
    small = np.array([3.0, 4.0], dtype=np.float32)
    assert _core.grad_norm([small]) == 5.0
