"""Threads: the core's OpenMP thread count and calls from several Python threads.

- ``set_num_threads`` / ``get_num_threads`` round-trip; results at 1, 2 and 3 core threads
  are bitwise identical (as the README promises), and so are repeated calls.
- The GIL is released around the kernels: Python threads calling the core at the same time
  get exactly what serial calls get, and the main thread keeps running Python code while a
  worker thread is inside a long core call (checked by a handshake, not by timings).

The conftest restores the thread count after every test.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest
import resode
from resode import _core

OPENMP = bool(_core.openmp)


def make_problem(kind, N, seed=0, **kw):
    rng = np.random.default_rng(seed)
    if kind == "resnet":
        model = resode.ResNet(3, 6, classes=3, h=0.3, augment=1, seed=seed, **kw)
    else:
        model = resode.NeuralODE(
            3, T=1.0, pieces=3, substeps=2, classes=3, augment=1, seed=seed, **kw
        )
    X = rng.standard_normal((N, 3))
    y = rng.integers(0, 3, N)
    return model, X, y


def outputs(model, X, y, entry):
    if entry == "trajectory":
        return {"out": model.trajectory(X)}
    if entry == "forward":
        return {"out": model.forward(X)}
    if entry == "vjp":
        cot = np.cos(np.arange(X.shape[0] * model.D)).reshape(X.shape[0], model.D)
        kw = {
            k: getattr(model, k)
            for k in ("T", "substeps", "method", "field", "activation", "augment")
        }
        grads, dX = resode.odeint_vjp(
            model.params, X, cot, gradient=model.gradient, checkpoints=model.checkpoints, **kw
        )
        return {**grads, "dX": dX}
    loss, grads = model.loss_and_grad(X, y)
    return {"loss": np.array(loss), **grads}


ENTRIES = {
    # id: (kind, entry, model options)
    "resnet-loss_and_grad": ("resnet", "loss_and_grad", {}),
    "resnet-forward": ("resnet", "forward", {}),
    "resnet-trajectory": ("resnet", "trajectory", {"field": "bottleneck", "hidden": 5}),
    "node-discrete": ("node", "loss_and_grad", {}),
    "node-adjoint": ("node", "loss_and_grad", {"gradient": "adjoint"}),
    "node-checkpoints": ("node", "loss_and_grad", {"checkpoints": 2}),
    "node-turnpike-adjoint": ("node", "loss_and_grad", {"turnpike": True, "gradient": "adjoint"}),
    "node-mse": ("node", "loss_and_grad", {"loss": "mse"}),
    "node-vjp": ("node", "vjp", {"field": "inside"}),
    "node-vjp-adjoint": ("node", "vjp", {"gradient": "adjoint"}),
}


def _run(entry_id, N):
    kind, entry, kw = ENTRIES[entry_id]
    model, X, y = make_problem(kind, N, **kw)
    if kw.get("loss") == "mse":
        y = np.eye(3)[y]
    return outputs(model, X, y, entry)


def test_set_and_get_num_threads():
    assert isinstance(resode.get_num_threads(), int)
    assert resode.get_num_threads() >= 1
    for n in (1, 2, 3):
        resode.set_num_threads(n)
        assert resode.get_num_threads() == (n if OPENMP else 1)


@pytest.mark.parametrize("entry_id", list(ENTRIES))
def test_thread_counts_agree_and_repeat_bitwise(entry_id):
    N = 3000  # 4 features (3 + augment): ~12 blocks of samples
    results = {}
    for n in (1, 2, 3):
        resode.set_num_threads(n)
        first = _run(entry_id, N)
        again = _run(entry_id, N)
        for key in first:
            np.testing.assert_array_equal(first[key], again[key], err_msg=f"{key} at {n} threads")
        results[n] = first
    for n in (2, 3):
        for key, ref in results[1].items():
            np.testing.assert_array_equal(results[n][key], ref, err_msg=f"{key}: {n} threads")


def test_large_models_use_fewer_gradient_groups_and_stay_exact():
    """10.5 MB of parameters: the blocks form 3 gradient groups instead of 8 (a memory cap
    that depends on the model, never on the thread count). Results match the reference and
    are bitwise equal at 1, 2 and 3 threads."""
    rng = np.random.default_rng(7)
    model = resode.ResNet(256, 20, classes=3, h=0.2, seed=7)
    X = rng.standard_normal((400, 256))
    y = rng.integers(0, 3, 400)
    assert_same_across_threads_and_reference(model, X, y, h=0.2, rtol=1e-12)


def assert_same_across_threads_and_reference(model, X, y, *, h, rtol):
    """A ResNet's (outside, tanh) loss and gradient: bitwise equal at 1, 2 and 3 threads, and
    the float64 reference's within ``rtol``."""
    from resode import reference as ref

    results = {}
    for n in (1, 2, 3):
        resode.set_num_threads(n)
        results[n] = outputs(model, X, y, "loss_and_grad")
    for n in (2, 3):
        for key, value in results[1].items():
            np.testing.assert_array_equal(results[n][key], value, err_msg=f"{key} at {n}")
    p64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    loss, grads = ref.resnet_loss_and_grad(
        p64, X.astype(np.float64), y, field="outside", activation="tanh", h=h, augment=0
    )
    assert abs(results[1]["loss"] - loss) <= rtol * abs(loss)
    for key, g in grads.items():
        err = float(np.max(np.abs(results[1][key] - g)))
        assert err <= rtol * float(np.max(np.abs(g))), key


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_resnet_blocks_stay_exact_across_threads(dtype):
    """The W2 shape at D = 64 (outside tanh, N = 1000: six blocks, the last one padded; 10
    layers: 41 600 field parameters in each of six group accumulators, added in group order):
    bitwise the same results at 1, 2 and 3 threads, and the reference's."""
    rng = np.random.default_rng(64)
    model = resode.ResNet(64, 10, classes=2, h=0.1, dtype=dtype, seed=64)
    X = rng.standard_normal((1000, 64)).astype(dtype)
    y = rng.integers(0, 2, 1000)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    assert_same_across_threads_and_reference(model, X, y, h=0.1, rtol=rtol)


def test_more_threads_than_blocks():
    model, X, y = make_problem("node", 5)
    resode.set_num_threads(1)
    expected = outputs(model, X, y, "loss_and_grad")
    resode.set_num_threads(8)
    got = outputs(model, X, y, "loss_and_grad")
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_python_threads_match_serial_calls(threads):
    """Four Python threads on different models and data, released together by a barrier."""
    resode.set_num_threads(threads)
    N = 20000
    jobs = [
        ("resnet", {}, 0),
        ("node", {}, 1),
        ("node", {"gradient": "adjoint", "turnpike": True}, 2),
        ("node", {"field": "bottleneck", "hidden": 6, "checkpoints": 3}, 3),
    ]
    problems = [make_problem(kind, N, seed=seed, **kw) for kind, kw, seed in jobs]
    serial = [outputs(m, X, y, "loss_and_grad") for m, X, y in problems]

    barrier = threading.Barrier(len(problems))
    results = [None] * len(problems)
    errors = []

    def work(i):
        try:
            m, X, y = problems[i]
            barrier.wait()
            results[i] = [outputs(m, X, y, "loss_and_grad") for _ in range(2)]
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(problems))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    for i, expected in enumerate(serial):
        for got in results[i]:
            for key in expected:
                np.testing.assert_array_equal(got[key], expected[key], err_msg=f"job {i} {key}")


def test_concurrent_calls_on_one_shared_model():
    model, X, y = make_problem("node", 20000, gradient="adjoint")
    expected = outputs(model, X, y, "loss_and_grad")
    results, errors = [], []

    def work():
        try:
            results.append(outputs(model, X, y, "loss_and_grad"))
        except Exception as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors, errors
    assert len(results) == 3
    for got in results:
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])


def test_errors_in_one_thread_do_not_disturb_another():
    good_model, X, y = make_problem("node", 20000)
    expected = outputs(good_model, X, y, "loss_and_grad")
    bad = resode.NeuralODE(
        1, pieces=5, substeps=2, method="euler", field="inside", activation="identity", seed=0
    )
    bad.params["W"][...] = 1e101
    bad.params["b"][...] = 0.0
    caught, results = [], []

    def failing():
        for _ in range(20):
            try:
                bad.loss_and_grad(np.ones((2000, 1)), np.zeros(2000, dtype=int))
            except resode.NonFiniteError as exc:
                caught.append(exc)

    def working():
        results.append(outputs(good_model, X, y, "loss_and_grad"))

    workers = [threading.Thread(target=failing), threading.Thread(target=working)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert len(caught) == 20
    for key in expected:
        np.testing.assert_array_equal(results[0][key], expected[key])


# --------------------------------------------------------------------------- GIL release


def _raw_call(entry, N):
    """A raw core call on pre-validated arrays: from the flag to the kernel there are only a
    few bytecodes, so the handshake below measures the kernel itself."""
    rng = np.random.default_rng(0)
    model = resode.NeuralODE(3, T=1.0, pieces=4, substeps=8, classes=3, augment=1, seed=0)
    X = rng.standard_normal((N, 3))
    y = rng.integers(0, 3, N)
    theta = [model.params["W"], model.params["b"]]
    sweep = {
        "field": "outside",
        "activation": "tanh",
        "method": "rk4",
        "dt": 1.0 / 32,
        "substeps": 8,
        "augment": 1,
    }
    P, c = model.params["P"], model.params["c"]
    if entry == "loss_and_grad":
        return lambda: _core.loss_and_grad(X, y, theta, P, c, **sweep)
    if entry == "adjoint":
        return lambda: _core.loss_and_grad(X, y, theta, P, c, gradient="adjoint", **sweep)
    if entry == "trajectory":
        return lambda: _core.trajectory(X, theta, **sweep)
    if entry == "logits":
        return lambda: _core.logits(X, theta, P, c, **sweep)
    cot = np.ones((N, 4))
    return lambda: _core.vjp(X, cot, theta, **sweep)


@pytest.mark.parametrize("entry", ["loss_and_grad", "adjoint", "trajectory", "logits", "vjp"])
def test_main_thread_runs_python_while_a_worker_is_in_the_core(entry):
    """Handshake: the worker sets ``inside`` just before a long core call and clears it right
    after. The switch interval is raised to 10 s so the worker is never asked to give up the
    GIL in between; the only way the main thread can see ``inside`` set is that the kernel
    released the GIL. The main thread sleeps briefly in its loop so the GIL is free for the
    worker to take back when its call returns."""
    resode.set_num_threads(1)
    call = _raw_call(entry, 30000)
    call()  # warm-up
    state = {"inside": False, "done": False, "seen": 0, "loops": 0}

    def worker():
        state["inside"] = True
        call()
        state["inside"] = False
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        t = threading.Thread(target=worker)
        t.start()
        while not state["done"]:
            if state["inside"]:
                state["seen"] += 1
            state["loops"] += 1
            time.sleep(0.0002)
        t.join()
    finally:
        sys.setswitchinterval(old)
    print(
        f"{entry}: main thread saw the worker inside the core {state['seen']} times "
        f"in {state['loops']} loops"
    )
    assert state["seen"] > 0, "the main thread never ran while the worker was in the core"


def test_recycled_workspaces_give_bitwise_equal_results():
    # The core recycles workspace memory between calls (uninitialised, never zero-filled):
    # calls of other sizes, dtypes and gradients in between must not change a result.
    rng = np.random.default_rng(3)
    wide = resode.NeuralODE(5, pieces=3, substeps=4, hidden=30, field="bottleneck", seed=1)
    X, y = rng.standard_normal((300, 5)), rng.integers(0, 2, 300)
    first = wide.loss_and_grad(X, y)
    small = resode.ResNet(2, 7, seed=2, dtype="float32")
    small.loss_and_grad(rng.standard_normal((3, 2)), np.array([0, 1, 1]))
    resode.NeuralODE(5, pieces=2, gradient="adjoint", seed=4).loss_and_grad(X, y)
    resode.ResNet(40, 3, seed=5).loss_and_grad(rng.standard_normal((500, 40)), np.zeros(500, int))
    again = wide.loss_and_grad(X, y)
    assert first[0] == again[0]
    for key in first[1]:
        np.testing.assert_array_equal(first[1][key], again[1][key])
