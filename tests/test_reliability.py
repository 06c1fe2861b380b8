"""Reliability (issue 6): threads, determinism, no lost work, corrupted files, resource limits
and leaks. ``docs/guide/guarantees.md`` lists what each test proves and the figures measured.

- Threads: 4 Python threads calling ``loss_and_grad``, ``forward`` and ``odeint`` at once (on
  different models and on one shared model) get bitwise what serial calls get; gradients are
  bitwise identical at 1, 2, 3 and 4 core threads; ``OMP_NUM_THREADS`` is honoured.
- Determinism: ``fit`` twice with the same seed (and at different thread counts) gives bitwise
  identical parameters.
- No lost work: a training subprocess killed with SIGKILL leaves a checkpoint that loads intact
  and resumes to bitwise the parameters of an uninterrupted run.
- Corrupted files: truncation, bit flips, wrong shapes, huge declared sizes (npy header, ZIP
  member), extra arrays and pickles are refused with ValueError, quickly, without allocating
  the declared size and without running the pickle.
- Resource limits: a trajectory over 2**31 elements is refused before allocating.
- Leaks: 10**4 calls keep the RSS of a subprocess flat.

Subprocesses start with ``sys.executable`` and a clean copy of the environment; the conftest
restores the core thread count after every test.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import resode
from resode import _core
from resode.training import load_checkpoint

OPENMP = bool(_core.openmp)


@pytest.fixture(autouse=True)
def _restore_threads():
    before = resode.get_num_threads()
    yield
    resode.set_num_threads(before)


def run_python(code: str, *args: str, env: dict | None = None, timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter; returns the CompletedProcess (text output)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def last_json(stdout: str) -> Any:
    """The last line of ``stdout`` that is a JSON document (the editable build may print
    cmake lines before it)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise AssertionError(f"no JSON in the output:\n{stdout}")


# --------------------------------------------------------------------------- problems


def make_problem(kind: str, N: int, seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """A model and data; ``kind`` picks the field, the gradient and the loss."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    y: np.ndarray = rng.integers(0, 3, N)
    common = {"classes": 3, "augment": 1, "seed": seed}
    if kind == "resnet":
        model = resode.ResNet(3, 6, h=0.3, **common)
    elif kind == "resnet-bottleneck-float32":
        model = resode.ResNet(3, 5, field="bottleneck", hidden=6, dtype="float32", **common)
    elif kind == "node-rk4":
        model = resode.NeuralODE(3, T=1.0, pieces=3, substeps=2, **common)
    elif kind == "node-adjoint-turnpike":
        model = resode.NeuralODE(
            3, pieces=3, substeps=2, gradient="adjoint", turnpike=True, activation="relu", **common
        )
    elif kind == "node-checkpoints-inside":
        model = resode.NeuralODE(3, pieces=4, substeps=2, checkpoints=3, field="inside", **common)
    elif kind == "node-mse-midpoint":
        model = resode.NeuralODE(3, pieces=3, method="midpoint", loss="mse", **common)
        y = np.eye(3)[y]
    else:
        raise AssertionError(kind)
    return model, X, y


GRADIENT_KINDS = [
    "resnet",
    "resnet-bottleneck-float32",
    "node-rk4",
    "node-adjoint-turnpike",
    "node-checkpoints-inside",
    "node-mse-midpoint",
]


def node_kwargs(model: Any) -> dict[str, Any]:
    keys = ("T", "substeps", "method", "field", "activation", "augment")
    return {k: getattr(model, k) for k in keys}


def call(entry: str, model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """One entry point's outputs as a dict of arrays."""
    if entry == "loss_and_grad":
        loss, grads = model.loss_and_grad(X, y)
        return {"loss": np.array(loss), **grads}
    if entry == "forward":
        return {"logits": model.forward(X)}
    if entry == "odeint":
        return {"states": resode.odeint(model.params, X, **node_kwargs(model))}
    if entry == "odeint_vjp":
        cot = np.cos(np.arange(X.shape[0] * model.D)).reshape(X.shape[0], model.D)
        grads, dX = resode.odeint_vjp(
            model.params,
            X,
            cot,
            gradient=model.gradient,
            checkpoints=model.checkpoints,
            **node_kwargs(model),
        )
        return {**grads, "dX": dX}
    raise AssertionError(entry)


def assert_bitwise(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), what
    for k in want:
        assert got[k].dtype == want[k].dtype, f"{what}: {k} dtype"
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{what}: {k}")


# --------------------------------------------------------------------------- threads

PYTHON_THREADS = 4
THREAD_JOBS = {
    # entry -> the model kinds of the four threads (different models)
    "loss_and_grad": ["resnet", "node-rk4", "node-adjoint-turnpike", "node-checkpoints-inside"],
    "forward": ["resnet", "resnet-bottleneck-float32", "node-rk4", "node-mse-midpoint"],
    "odeint": ["node-rk4", "node-adjoint-turnpike", "node-checkpoints-inside", "node-rk4"],
}


@pytest.mark.parametrize("core_threads", [1, 2], ids=lambda n: f"core{n}")
@pytest.mark.parametrize("sharing", ["different-models", "shared-model"])
@pytest.mark.parametrize("entry", list(THREAD_JOBS))
def test_four_python_threads_match_serial_calls(entry, sharing, core_threads):
    """4 Python threads released together by a barrier, 3 rounds, bitwise equal to serial."""
    resode.set_num_threads(core_threads)
    N = 4000
    if sharing == "different-models":
        jobs = [make_problem(k, N, seed=i) for i, k in enumerate(THREAD_JOBS[entry])]
    else:  # one model object, different data per thread
        model = make_problem(THREAD_JOBS[entry][0], N)[0]
        jobs = [(model, *make_problem(THREAD_JOBS[entry][0], N, seed=i)[1:]) for i in range(4)]
    serial = [call(entry, m, X, y) for m, X, y in jobs]

    def work(i: int, barrier: threading.Barrier) -> dict[str, np.ndarray]:
        m, X, y = jobs[i]
        barrier.wait(timeout=60)
        return call(entry, m, X, y)

    with ThreadPoolExecutor(max_workers=PYTHON_THREADS) as pool:
        for round_ in range(3):
            barrier = threading.Barrier(PYTHON_THREADS)
            futures = [pool.submit(work, i, barrier) for i in range(PYTHON_THREADS)]
            for i, f in enumerate(futures):
                assert_bitwise(f.result(timeout=120), serial[i], f"round {round_}, thread {i}")


THREAD_COUNTS = (1, 2, 3, 4)


@pytest.mark.parametrize("entry", ["loss_and_grad", "odeint_vjp"])
@pytest.mark.parametrize("kind", GRADIENT_KINDS)
def test_gradients_are_bitwise_identical_for_any_thread_count(kind, entry):
    """Fixed groups of samples reduced in a fixed order: the thread count changes nothing."""
    if entry == "odeint_vjp" and kind.startswith("resnet"):
        pytest.skip("odeint_vjp integrates a neural ODE")
    model, X, y = make_problem(kind, 5000)  # ~20 blocks of samples
    results = {}
    for n in THREAD_COUNTS:
        resode.set_num_threads(n)
        results[n] = call(entry, model, X, y)
        assert_bitwise(call(entry, model, X, y), results[n], f"repeat at {n} threads")
    for n in THREAD_COUNTS[1:]:
        assert_bitwise(results[n], results[1], f"{n} threads vs 1")


@pytest.mark.parametrize("value", ["1", "3"])
def test_omp_num_threads_is_honoured(value):
    if value != "1" and not OPENMP:
        pytest.skip("built without OpenMP: always one thread")
    code = """
        import json, resode
        print(json.dumps({"threads": resode.get_num_threads()}))
    """
    proc = run_python(code, env={"OMP_NUM_THREADS": value})
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout) == {"threads": int(value)}


# --------------------------------------------------------------------------- determinism


def _fit_once(kind: str, threads: int) -> dict[str, np.ndarray]:
    resode.set_num_threads(threads)
    model, X, y = make_problem(kind, 600, seed=3)
    resode.fit(
        model,
        X,
        y,
        optimizer=resode.optim.Adam(lr=1e-2),
        epochs=4,
        batch_size=128,
        seed=11,
        progress=False,
    )
    return model.params


@pytest.mark.parametrize("kind", ["resnet", "node-adjoint-turnpike", "node-checkpoints-inside"])
def test_fit_same_seed_is_bitwise_identical(kind):
    first = _fit_once(kind, 2)
    assert_bitwise(_fit_once(kind, 2), first, "second run")
    if OPENMP:
        assert_bitwise(_fit_once(kind, 1), first, "run at 1 core thread")


# --------------------------------------------------------------------------- no lost work

TRAINING = """
import numpy as np
import resode

FINAL_EPOCH = 200


def problem():
    X, y = resode.datasets.concentric_spheres(256, seed=0)
    model = resode.NeuralODE(2, T=2.0, pieces=4, field="bottleneck", hidden=12, augment=1,
                             activation="relu", seed=0)
    return model, X, y


def train(model, X, y, **kw):
    resode.set_num_threads(1)
    return resode.fit(model, X, y, optimizer=resode.optim.Adam(lr=1e-2), epochs=FINAL_EPOCH,
                      batch_size=64, seed=7, progress=False, **kw)
"""

CHILD = """
import sys
ns = {}
exec(sys.argv[1], ns)
model, X, y = ns["problem"]()
ns["train"](model, X, y, checkpoint=sys.argv[2], checkpoint_every=1)
print("finished")
"""


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns  # os.replace gives every checkpoint a new inode


@pytest.mark.parametrize("versions", [2, 6], ids=lambda v: f"after-{v}-checkpoints")
def test_sigkilled_training_resumes_to_the_uninterrupted_result(tmp_path, versions):
    """Kill the trainer (SIGKILL) once ``versions`` checkpoints were written; the checkpoint is
    intact and resuming gives bitwise the parameters of an uninterrupted run."""
    path = tmp_path / "ckpt.npz"
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, TRAINING, str(path)], stdout=log, stderr=log
    )
    try:
        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + 120
        while len(seen) < versions:
            ident = _identity(path)
            if ident is not None and (not seen or ident != seen[-1]):
                seen.append(ident)
            assert child.poll() is None, "the trainer finished (or failed) before the kill"
            assert time.monotonic() < deadline, "no checkpoints written"
            time.sleep(0.0005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()
    assert child.returncode == -signal.SIGKILL, (tmp_path / "child.log").read_text()

    ns: dict[str, Any] = {}
    exec(TRAINING, ns)
    loaded = resode.load(path)  # a plain model reader accepts the checkpoint
    state = load_checkpoint(path)
    epoch = state["epoch"]
    assert versions - 1 <= epoch < ns["FINAL_EPOCH"], epoch
    assert len(state["history"]) == epoch and state["seed"] == 7
    for k, v in state["model"].params.items():
        assert np.isfinite(v).all()
        np.testing.assert_array_equal(loaded.params[k], v)
    leftovers = sorted(
        p.name for p in tmp_path.iterdir() if p.name not in ("ckpt.npz", "child.log")
    )

    resumed, X, y = ns["problem"]()
    history = ns["train"](resumed, X, y, resume=path)
    uninterrupted = ns["problem"]()[0]
    expected = ns["train"](uninterrupted, X, y)
    assert len(history) == ns["FINAL_EPOCH"]
    assert history.loss == expected.loss and history.accuracy == expected.accuracy
    assert_bitwise(resumed.params, uninterrupted.params, f"resumed from epoch {epoch}")
    print(f"\nkilled after checkpoint of epoch {epoch}; resumed to {len(history)}: bitwise equal")
    # A kill during a save may leave the writer's temporary file behind; never a torn file.
    # (resode.io.atomic_path names it .<stem>.<random>.tmp<suffix>)
    assert all(name.startswith(".ckpt.") and ".tmp" in name for name in leftovers), leftovers


def test_checkpoint_every_k_epochs_and_at_the_end(tmp_path):
    """checkpoint_every=3 over 7 epochs: checkpoints after epochs 3, 6 and 7 (the end)."""
    path = tmp_path / "c.npz"
    seen = []

    def probe(epoch, logs, model):  # runs before that epoch's own checkpoint is written
        seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)

    model, X, y = make_problem("resnet", 64)
    resode.fit(
        model,
        X,
        y,
        epochs=7,
        checkpoint=path,
        checkpoint_every=3,
        seed=0,
        progress=False,
        callbacks=[probe],
    )
    assert seen == [None, None, None, 3, 3, 3, 6]
    assert load_checkpoint(path)["epoch"] == 7


# --------------------------------------------------------------------------- corrupted files


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Any, bytes]:
    model = resode.NeuralODE(2, pieces=3, field="bottleneck", hidden=4, augment=1, seed=5)
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model.save(path)
    return model, path.read_bytes()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` (no data)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _assert_refused(path: Path, data: bytes, *, peak_mib: float = 64, seconds: float = 2.0):
    """``resode.load`` raises ValueError naming the file, within ``seconds``, allocating at
    most ``peak_mib`` MiB (tracemalloc: Python and NumPy allocations)."""
    path.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=re.escape(str(path))):
            resode.load(path)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"refusal took {elapsed:.2f} s"
    assert peak < peak_mib, f"refusal allocated {peak:.0f} MiB"


def test_every_truncation_is_refused(tmp_path, saved):
    _, data = saved
    for cut in range(0, len(data), 7):
        _assert_refused(tmp_path / "t.npz", data[:cut])


def test_every_bit_flip_is_refused_or_harmless(tmp_path, saved):
    """One flipped bit per byte position: a ValueError, or (outside all checked fields, e.g.
    a ZIP timestamp) exactly the original model."""
    model, data = saved
    path = tmp_path / "f.npz"
    refused = intact = 0
    for pos in range(len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (pos % 8)
        path.write_bytes(bytes(flipped))
        try:
            again = resode.load(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            refused += 1
            continue
        intact += 1
        assert again.config == model.config
        for k, v in model.params.items():
            np.testing.assert_array_equal(again.params[k], v)
    assert refused > 0.8 * len(data), (refused, intact)


@pytest.mark.parametrize(
    "edit",
    ["wrong-shape", "transposed", "wrong-dtype", "missing", "extra-param", "extra-array", "scalar"],
)
def test_hand_crafted_arrays_are_refused(tmp_path, saved, edit):
    model, data = saved
    members = _members(data)
    W1 = model.params["W1"]
    if edit == "wrong-shape":
        members["params/W1.npy"] = _npy(np.zeros((3, 4, 4)))
    elif edit == "transposed":
        members["params/W1.npy"] = _npy(np.ascontiguousarray(W1.transpose(0, 2, 1)))
    elif edit == "wrong-dtype":
        members["params/W1.npy"] = _npy(W1.astype(np.float32))
    elif edit == "missing":
        del members["params/W1.npy"]
    elif edit == "extra-param":
        members["params/W.npy"] = _npy(np.zeros((3, 3, 3)))
    elif edit == "extra-array":
        members["notes.npy"] = _npy(np.arange(3))
    elif edit == "scalar":
        members["params/b1.npy"] = _npy(np.float64(1.0))
    _assert_refused(tmp_path / "h.npz", _zip(members))


@pytest.mark.parametrize(
    "shape",
    [(10**12,), (10**6, 10**6), (2**32, 2**32), (2**62, 4), (3, 3, 2**61)],
    ids=["1e12", "1e6x1e6", "2^32x2^32-wraps-to-0", "2^62x4-wraps", "3x3x2^61-wraps"],
)
def test_huge_declared_npy_shape_is_refused_without_allocating(tmp_path, saved, shape):
    """The .npy header of params/W1 declares a huge shape (some products wrap around int64 to
    0) followed by 0 or 8 bytes: refused quickly, nothing near the declared size allocated."""
    _, data = saved
    for tail in (b"", b"\0" * 8):
        members = _members(data)
        members["params/W1.npy"] = _npy_header(shape) + tail
        _assert_refused(tmp_path / "huge.npz", _zip(members), peak_mib=16)


def test_zip_bomb_member_is_refused_without_inflating_it(tmp_path, saved):
    """A deflated member that inflates to 128 MiB (a 130 KiB file): the loader must not
    allocate the declared size (nothing in a model file needs it) and must answer quickly."""
    _, data = saved
    members = _members(data)
    n = 2**24  # 16 Mi float64 = 128 MiB of zeros, declared consistently in the .npy header
    payload = _npy_header((n,)) + bytes(8 * n)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, member in members.items():
            if name == "params/W1.npy":
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, payload, compresslevel=9)
            else:
                zf.writestr(name, member)
    bomb = buf.getvalue()
    assert len(bomb) < 2**20
    _assert_refused(tmp_path / "bomb.npz", bomb, peak_mib=64, seconds=5.0)


class _Marker:
    """Unpickling this creates the file at ``path`` (what a malicious pickle would do)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("where", ["whole-file", "object-array-member", "pickle-member"])
def test_pickle_payloads_are_refused_and_never_run(tmp_path, saved, where):
    _, data = saved
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Marker(str(marker)), protocol=2)
    if where == "whole-file":
        crafted = payload
    else:
        members = _members(data)
        if where == "object-array-member":
            header = _npy_header((), descr="|O")
            members["params/W1.npy"] = header + payload
        else:
            members["params/W1.pkl"] = payload
        crafted = _zip(members)
    _assert_refused(tmp_path / "p.npz", crafted)
    assert not marker.exists(), "the pickle was executed"
    pickle.loads(payload).close()  # the payload is live: unpickling does create the marker
    assert marker.exists()


# --------------------------------------------------------------------------- resource limits

HUGE_TRAJECTORY = """
import json, resource, time
import numpy as np
import resode

limit = 4 << 30  # 4 GiB of address space: allocating the trajectory would fail or be killed
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
model = resode.NeuralODE(2, pieces=100_000, substeps=100, augment=2, seed=0)  # 10^7 steps, D=4
X = np.zeros((100, 2))
out = {}
for name, fn in [("trajectory", lambda: model.trajectory(X)),
                 ("odeint", lambda: resode.odeint(model.params, X, T=1.0, substeps=100,
                                                  augment=2))]:
    t0 = time.perf_counter()
    try:
        fn()
        out[name] = ["returned", ""]
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
    out[name].append(time.perf_counter() - t0)
print(json.dumps(out))
"""


@pytest.mark.skipif(
    os.environ.get("RESODE_SANITIZED") == "1",
    reason="AddressSanitizer reserves and quarantines memory: RSS and huge mmaps mean nothing",
)
def test_trajectory_over_2_31_elements_is_refused_before_allocating():
    """(10^7 + 1) x 100 x 4 = 4e9 elements (32 GB): ValueError naming the size or memory,
    within seconds, in a process whose address space is capped at 4 GiB."""
    try:
        proc = run_python(HUGE_TRAJECTORY, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the request was not refused: the child was still computing after 60 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, (kind, message, seconds) in last_json(proc.stdout).items():
        assert kind == "ValueError", f"{name}: {kind}: {message}"
        assert any(w in message.lower() for w in ("memory", "size", "elements", "2**31")), message
        assert seconds < 5, f"{name}: refused after {seconds:.1f} s"
        print(f"\n{name}: {kind} after {seconds * 1e3:.1f} ms: {message}")


def test_trajectory_larger_than_available_memory_is_refused(monkeypatch) -> None:
    # The core reads MemAvailable; RESODE_MEMORY_LIMIT_BYTES stands in for it here, so the
    # refusal is exercised on any machine, far below the 2**31-element limit (tested above).
    model = resode.NeuralODE(2, pieces=10, substeps=100, augment=2, seed=0)
    X = np.zeros((100, 2))
    needed = (1000 + 1) * 100 * 4 * 8  # (steps + 1) x N x D float64
    monkeypatch.setenv("RESODE_MEMORY_LIMIT_BYTES", str(needed - 1))
    with pytest.raises(ValueError, match=r"^the trajectory .* would need 3 MiB, more memory than"):
        model.trajectory(X)
    monkeypatch.setenv("RESODE_MEMORY_LIMIT_BYTES", str(needed))
    assert model.trajectory(X).shape == (1001, 100, 4)


# --------------------------------------------------------------------------- leaks

LEAKS = """
import json, os, sys, tempfile
import numpy as np
import resode

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.default_rng(0)
X = rng.standard_normal((64, 3)); y = rng.integers(0, 2, 64)
resnet = resode.ResNet(3, 6, h=0.3, augment=1, seed=0)
node = resode.NeuralODE(3, pieces=4, substeps=2, field="bottleneck", hidden=8, augment=1,
                        checkpoints=3, seed=0)
adjoint = resode.NeuralODE(3, pieces=4, gradient="adjoint", turnpike=True, seed=0)
cot = rng.standard_normal((64, 4))
kw = dict(T=1.0, substeps=2, field="bottleneck", augment=1)
bad = resode.NeuralODE(3, pieces=2, seed=0); bad.params["W"][0, 0, 0] = np.nan
blowup = resode.NeuralODE(1, pieces=3, method="euler", field="inside", activation="identity",
                          seed=0)
blowup.params["W"][...] = 1e200
path = os.path.join(tempfile.mkdtemp(), "m.npz"); node.save(path)

def refused(fn):
    def run():
        try:
            fn()
        except ValueError:
            return
        raise AssertionError("expected ValueError")
    return run

cases = {
    "loss_and_grad resnet": (lambda: resnet.loss_and_grad(X, y), 1000, 10000),
    "loss_and_grad node checkpoints": (lambda: node.loss_and_grad(X, y), 1000, 10000),
    "loss_and_grad node adjoint": (lambda: adjoint.loss_and_grad(X, y), 1000, 10000),
    "trajectory": (lambda: node.trajectory(X), 100, 1000),
    "odeint_vjp": (lambda: resode.odeint_vjp(node.params, X, cot, **kw), 100, 1000),
    "NaN parameter refused": (refused(lambda: bad.loss_and_grad(X, y)), 100, 1000),
    "NonFiniteError": (refused(lambda: blowup.loss_and_grad(np.ones((64, 1)), y)), 100, 1000),
    "load": (lambda: resode.load(path), 100, 1000),
}
only = sys.argv[1:] or list(cases)
out = {}
for name in only:
    fn, warm, total = cases[name]
    for _ in range(warm):
        fn()
    before = rss()
    for _ in range(total - warm):
        fn()
    out[name] = [warm, total, before, rss()]
print(json.dumps(out))
"""


@pytest.mark.skipif(
    os.environ.get("RESODE_SANITIZED") == "1",
    reason="AddressSanitizer reserves and quarantines memory: RSS and huge mmaps mean nothing",
)
def test_repeated_calls_keep_rss_flat():
    """RSS after the warm-up calls vs after all of them (10^4 for loss_and_grad, 10^3 for the
    rest, including calls that raise): growth < 5 MiB."""
    proc = run_python(LEAKS, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = last_json(proc.stdout)
    lines = []
    for name, (warm, total, before, after) in report.items():
        growth = (after - before) / 2**20
        lines.append(
            f"{name}: RSS {before / 2**20:.1f} MiB after {warm} calls, "
            f"{after / 2**20:.1f} MiB after {total} ({growth:+.2f} MiB)"
        )
    print("\n" + "\n".join(lines))
    for _, _, before, after in report.values():
        assert after - before < 5 * 2**20, "\n".join(lines)


@pytest.mark.parametrize("second", [300, 500, 700, 1200, 2500, 4700])
def test_first_bad_step_is_the_same_from_every_entry_point(second: int) -> None:
    # x_{k+1} = x_k (1 + a) per layer: a sample starting at 1 overflows in step 30, one starting
    # at 1e300 in step 0. The late one sits in block 0, the early one in a later block (of the
    # same gradient group or not): every entry point must name step 0.
    model = resode.ResNet(1, 40, field="inside", activation="identity", h=1.0, seed=0)
    model.params["W"][...] = 1e10
    model.params["b"][...] = 0.0
    X = np.zeros((4800, 1))
    X[100, 0], X[second, 0] = 1.0, 1e300
    y = np.zeros(4800, dtype=np.int64)
    steps = []
    for call in (model.forward, model.trajectory, lambda X: model.loss_and_grad(X, y)):
        with pytest.raises(resode.NonFiniteError) as info:
            call(X)
        steps.append(info.value.step)
    assert steps == [0, 0, 0]
