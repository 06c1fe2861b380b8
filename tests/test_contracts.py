"""Contract details found by an independent review: errors name the argument, nothing is
silently ignored, no trained model is overwritten, thread limits from threadpoolctl apply."""

from __future__ import annotations

import numpy as np
import pytest
import resode
from resode.cli import main


def test_non_finite_error_carries_step_and_time_and_does_not_say_resnet_for_a_node():
    model = resode.NeuralODE(1, T=1.0, pieces=5, field="inside", activation="identity", seed=0)
    model.params["W"][:] = 1e200
    with pytest.raises(resode.NonFiniteError) as info:
        model.forward(np.ones((3, 1)))
    assert info.value.step == 0 and info.value.t == pytest.approx(0.2)
    assert "step 0" in str(info.value) and "t = 0.2" in str(info.value)


def test_score_refuses_targets_of_the_wrong_width():
    model = resode.ResNet(2, 2, seed=0)
    X, y = np.ones((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\by\b"):
        model.score(X, y[:, None])
    assert model.score(X, np.eye(2)[y]) == model.score(X, y)  # one-hot targets are fine
    with pytest.raises(ValueError, match=r"\by\b"):
        model.score(X, np.array([0, 1, 2, 1]))  # label outside [0, classes)


@pytest.mark.parametrize(
    ("seed", "exc"), [(-1, ValueError), ("abc", TypeError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_seed_names_seed(seed, exc):
    with pytest.raises(exc, match="seed"):
        resode.ResNet(2, 3, seed=seed)


def test_settings_that_would_be_ignored_are_refused():
    with pytest.raises(ValueError, match="checkpoints"):
        resode.NeuralODE(2, gradient="adjoint", checkpoints=3)
    params = resode.NeuralODE(2, pieces=2, seed=0).params
    with pytest.raises(ValueError, match="checkpoints"):
        resode.odeint_vjp(
            params, np.ones((2, 2)), np.ones((2, 2)), T=1.0, gradient="adjoint", checkpoints=2
        )
    with pytest.raises(ValueError, match="classes"):
        resode.ResNet(2, 3, classes=1)
    resode.ResNet(2, 3, classes=1, loss="mse")  # one output is fine for regression


def test_fit_names_an_unexpected_params_key():
    model = resode.ResNet(2, 2, seed=0)
    model.params["extra"] = np.zeros(2)
    with pytest.raises(ValueError, match="extra"):
        resode.fit(model, np.ones((4, 2)), np.array([0, 1, 0, 1]), epochs=1, progress=False)


def test_threadpoolctl_limits_apply_after_set_num_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = resode.get_num_threads()
    try:
        resode.set_num_threads(2)
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert resode.get_num_threads() == 1
    finally:
        resode.set_num_threads(before)


def test_train_refuses_to_overwrite_a_trained_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "moons",
        "--model",
        "resnet",
        "--layers",
        "2",
        "--epochs",
        "1",
        "--n-samples",
        "40",
        "--no-plots",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    first = (out / "model.npz").read_bytes()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.npz").read_bytes() == first
    assert main([*args, "--overwrite"]) == 0
    saved = (out / "config.toml").read_text().splitlines()
    assert not any(line.startswith(("out ", "overwrite ")) for line in saved)


def test_digits_takes_a_seed():
    pytest.importorskip("sklearn")
    a, b = resode.datasets.digits(seed=3), resode.datasets.digits(seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], resode.datasets.digits()[1])
