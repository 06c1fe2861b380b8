"""fit(..., train_metrics="batches") for a NeuralCDE scores the epoch from the logits that the
core's ``cde_loss_and_grad`` returns with the loss (``return_logits``), as the fused epoch of
the models of points does: the history's training accuracy / R^2 equal those of logits
computed separately with each batch's parameters, and no extra forward sweep runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode.models import r2_from_sums, target_spread


def data(n: int = 10, length: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    U = rng.normal(size=(n, length, 2))
    times = np.cumsum(rng.uniform(0.3, 1.0, size=(n, length)), axis=1)
    U[3, length - 2 :] = np.nan  # a shorter sample
    times[3, length - 2 :] = np.nan
    return U, times, rng.normal(size=(n, 2))


@pytest.mark.parametrize("gradient", ["discrete", "adjoint"])
@pytest.mark.parametrize("method", ["rk4", "bosh3"])
def test_loss_and_grad_returns_the_logits_of_forward(method: str, gradient: str) -> None:
    U, times, _ = data()
    model = resode.NeuralCDE(2, 3, pieces=2, method=method, gradient=gradient, seed=0)
    y = np.arange(10) % 2
    loss, grads, logits = model.loss_and_grad(U, y, times, return_logits=True)
    np.testing.assert_allclose(logits, model.forward(U, times), rtol=1e-12, atol=1e-14)
    loss2, grads2, dU, logits2 = model.loss_and_grad(
        U, y, times, return_dU=True, return_logits=True
    )
    assert loss == loss2 and np.array_equal(logits, logits2) and dU.shape == U.shape
    assert all(np.array_equal(grads[k], grads2[k]) for k in grads)
    assert len(model.loss_and_grad(U, y, times)) == 2


def _replayed_logits(
    model: resode.NeuralCDE, U: np.ndarray, y: np.ndarray, times: np.ndarray, batch: int,
    lr: float,
) -> np.ndarray:  # fmt: skip
    """One epoch replayed by hand (shuffle off, SGD): each batch's logits by forward with
    the parameters it runs with, then the step."""
    opt = resode.optim.SGD(lr=lr)
    out = []
    for start in range(0, len(y), batch):
        rows = np.arange(start, min(start + batch, len(y)))
        out.append(model.forward(U[rows], times[rows]))
        _, grads = model.loss_and_grad(U[rows], y[rows], times[rows])
        opt.step(model.params, grads)
    return np.concatenate(out)


def test_batch_accuracy_is_that_of_the_batches_logits() -> None:
    U, times, _ = data()
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    model = resode.NeuralCDE(2, 3, pieces=2, seed=1)
    manual = resode.NeuralCDE(2, 3, pieces=2, seed=1)
    manual.window = resode.models.series.observation_window(U, times)
    history = resode.fit(model, U, y, times=times, epochs=1, batch_size=4, shuffle=False,
                         optimizer=resode.optim.SGD(lr=0.5), progress=False)  # fmt: skip
    logits = _replayed_logits(manual, U, y, times, 4, 0.5)
    assert all(np.array_equal(model.params[k], manual.params[k]) for k in model.params)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y))
    assert history["accuracy"][0] == accuracy
    exact = resode.fit(resode.NeuralCDE(2, 3, pieces=2, seed=1), U, y, times=times, epochs=1,
                       batch_size=4, shuffle=False, optimizer=resode.optim.SGD(lr=0.5),
                       train_metrics="exact", progress=False)  # fmt: skip
    assert exact["accuracy"][0] == model.score(U, y, times)


def test_batch_r2_and_sign_agreement_are_those_of_the_batches_logits() -> None:
    U, times, targets = data()
    for y, classes in ((targets, 2), (np.where(targets[:, 0] > 0, 1.0, -1.0), 1)):
        model = resode.NeuralCDE(2, 3, classes=classes, loss="mse", seed=1)
        manual = resode.NeuralCDE(2, 3, classes=classes, loss="mse", seed=1)
        history = resode.fit(model, U, y, times=times, epochs=1, batch_size=3, shuffle=False,
                             optimizer=resode.optim.SGD(lr=0.1), progress=False)  # fmt: skip
        logits = _replayed_logits(manual, U, y, times, 3, 0.1).astype(np.float64)
        assert all(np.array_equal(model.params[k], manual.params[k]) for k in model.params)
        y2 = y.reshape(len(y), -1)
        sse = np.sum((logits - y2) ** 2, axis=0)
        assert history["r2"][0] == pytest.approx(r2_from_sums(sse, target_spread(y2)), rel=1e-12)
        if classes == 1:
            assert history["accuracy"][0] == float(np.mean((logits[:, 0] > 0) == (y > 0)))


def test_batch_metrics_run_no_extra_forward_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    U, times, targets = data()
    calls = {"cde_logits": 0, "cde_solve": 0, "cde_loss_and_grad": 0}

    def counting(name: str) -> Any:
        original = getattr(_core, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    for name in calls:
        monkeypatch.setattr(_core, name, counting(name))
    y = np.arange(10) % 2
    resode.fit(resode.NeuralCDE(2, 3, seed=0), U, y, times=times, epochs=2, batch_size=4,
               progress=False)  # fmt: skip
    assert calls == {"cde_logits": 0, "cde_solve": 0, "cde_loss_and_grad": 6}
    resode.fit(resode.NeuralCDE(2, 3, loss="mse", seed=0), U, targets, times=times, epochs=1,
               batch_size=5, progress=False)  # fmt: skip
    assert calls == {"cde_logits": 0, "cde_solve": 0, "cde_loss_and_grad": 8}
    resode.fit(resode.NeuralCDE(2, 3, seed=0), U, y, times=times, epochs=1, batch_size=5,
               train_metrics="exact", progress=False)  # fmt: skip
    assert calls["cde_logits"] == 1  # the counter sees the exact pass's sweep
