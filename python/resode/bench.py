"""Quick benchmarks behind ``resode bench``: one training step (``loss_and_grad``) of each
workload of ``benchmarks/``, resode against the NumPy reference in the same run, with the
machine's GEMM rate (NumPy matmul, 512 x 512) for scale.

Like against like: a row at n threads compares with the reference at n BLAS threads and with
the GEMM rate of the same dtype at n threads. When the machine sets ``OPENBLAS_CORETYPE``
(which pins NumPy's OpenBLAS to a lower kernel set than the CPU has), the table is measured in
a child process without it, so both sides run the best kernels of the CPU; the header names
the kernel set that ran.

The pytest-benchmark suite in ``benchmarks/`` is the full, statistically careful version; this
module answers "how fast is it here?" in well under a minute.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from . import reference as ref
from ._core import get_num_threads, set_num_threads
from .models import Model, NeuralODE, ResNet
from .models.options import Gradient

__all__ = ["Row", "gemm_rate", "numpy_blas", "run", "workloads"]


@dataclass
class Row:
    """One measured workload: times in seconds per ``loss_and_grad`` call."""

    name: str
    dtype: str
    threads: int
    resode: float
    reference: float | None
    gflop: float | None  # multiply-add FLOPs (2 per multiply-add) of the matrix products

    def cells(self, gemm: float | None) -> list[str]:
        ratio = f"{self.reference / self.resode:.1f}x" if self.reference else "-"
        ref_ms = f"{self.reference * 1e3:.2f}" if self.reference else "-"
        rate = self.gflop / self.resode if self.gflop else None
        rate_s = f"{rate:.1f}" if rate else "-"
        frac = f"{rate / gemm:.0%}" if rate and gemm else "-"
        return [
            self.name,
            self.dtype,
            str(self.threads),
            f"{self.resode * 1e3:.3f}",
            ref_ms,
            ratio,
            rate_s,
            frac,
        ]


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """resode and NumPy's BLAS at n threads (threadpoolctl, when installed)."""
    before = get_num_threads()
    set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is in the test extra
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n, user_api="blas")  # not resode's OpenMP pool
    try:
        with limits:
            yield
    finally:
        set_num_threads(before)


def _best(fn: Callable[[], Any], budget: float, min_repeats: int = 3) -> float:
    """Best wall time of repeated calls within about `budget` seconds (after one warm-up)."""
    fn()
    best, spent, repeats = float("inf"), 0.0, 0
    while repeats < min_repeats or spent < budget:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, repeats = min(best, elapsed), spent + elapsed, repeats + 1
        if repeats >= 1000:
            break
    return best


def gemm_rate(n: int = 512, budget: float = 0.5, dtype: str = "float64", threads: int = 1) -> float:
    """GFLOP/s of NumPy's matmul of two n x n matrices of ``dtype`` on ``threads`` threads."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)).astype(dtype), rng.normal(size=(n, n)).astype(dtype)
    with _threads(threads):
        seconds = _best(lambda: a @ b, budget)
    return 2.0 * n**3 / seconds / 1e9


def _reference_call(model: Model, X: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    common: dict[str, Any] = {
        "field": model.field,
        "activation": model.activation,
        "augment": model.augment,
    }
    if isinstance(model, ResNet):
        return lambda: ref.resnet_loss_and_grad(model.params, X, y, h=model.h, **common)
    assert isinstance(model, NeuralODE)
    return lambda: ref.node_loss_and_grad(
        model.params,
        X,
        y,
        T=model.T,
        substeps=model.substeps,
        method=model.method,
        gradient=model.gradient,
        turnpike=model.turnpike,
        **common,
    )


def _matmul_gflop(model: ResNet | NeuralODE, N: int) -> float:
    """FLOPs of the matrix products of one loss_and_grad (forward + twice for backward)."""
    stages = {"euler": 1, "midpoint": 2, "rk4": 4}[model.method]
    steps = model.steps
    # hidden: field="bottleneck" only
    width = 2 * model.D * model.hidden if model.hidden is not None else model.D**2
    return 3 * 2.0 * N * width * steps * stages / 1e9


#: The seed experiment's neural ODE (dim 2): ``NeuralODE(2, **SEED_NODE, seed=0)``.
SEED_NODE: dict[str, Any] = {
    "T": 5.0,
    "pieces": 16,
    "field": "bottleneck",
    "hidden": 50,
    "augment": 1,
    "activation": "relu",
}


def _seed_node(dtype: str, gradient: Gradient) -> NeuralODE:
    return NeuralODE(2, **SEED_NODE, gradient=gradient, dtype=dtype, seed=0)


def _resnet_w2(D: int, dtype: str) -> ResNet:
    return ResNet(D, 100, h=0.1, dtype=dtype, seed=0)


def workloads(
    quick: bool = True,
) -> list[tuple[str, Callable[[str], ResNet | NeuralODE], int, bool]]:
    """(name, model factory taking a dtype, N, measure the reference) for each workload."""
    out: list[tuple[str, Callable[[str], ResNet | NeuralODE], int, bool]] = []
    for N in (2, 150, 1000) if quick else (2, 150, 1000, 100_000):
        for gradient in ("discrete", "adjoint"):
            out.append(
                (
                    f"W1 seed NODE N={N} {gradient}",
                    functools.partial(_seed_node, gradient=gradient),
                    N,
                    N <= 1000,
                )
            )
    for D in (2, 16, 64):
        out.append(
            (
                f"W2 ResNet L=100 D={D} N=1000",
                functools.partial(_resnet_w2, D),
                1000,
                True,
            )
        )
    if not quick:
        out.append(
            (
                "W3 NODE D=256 N=1024 4x5 rk4",
                lambda dt: NeuralODE(256, T=1.0, pieces=4, substeps=5, dtype=dt, seed=0),
                1024,
                True,
            )
        )
    return out


def measure(
    quick: bool = True, dtypes: tuple[str, ...] = ("float64",), threads: tuple[int, ...] = (1,)
) -> list[Row]:
    """Measure every workload for every dtype and thread count."""
    budget = 0.3 if quick else 1.0
    rows = []
    for name, factory, N, with_reference in workloads(quick):
        for dtype in dtypes:
            model = factory(dtype)
            rng = np.random.default_rng(0)
            X = rng.normal(size=(N, model.dim)).astype(dtype)
            y = (np.linalg.norm(X, axis=1) > np.sqrt(model.dim)).astype(np.int64)
            for t in threads:
                with _threads(t):  # the reference at as many BLAS threads
                    seconds = _best(functools.partial(model.loss_and_grad, X, y), budget)
                    reference = (
                        _best(_reference_call(model, X, y), budget) if with_reference else None
                    )
                rows.append(Row(name, dtype, t, seconds, reference, _matmul_gflop(model, N)))
    return rows


def table(rows: list[Row], gemm: dict[tuple[str, int], float]) -> str:
    """A Markdown table of the rows; ``gemm[(dtype, threads)]`` is the GEMM rate of each."""
    head = [
        "workload",
        "dtype",
        "threads",
        "resode ms",
        "reference ms",
        "speed-up",
        "GFLOP/s",
        "of GEMM",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r.cells(gemm.get((r.dtype, r.threads)))) + " |" for r in rows]
    return "\n".join(lines)


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), or platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas() -> str:
    """NumPy's BLAS and the kernel set it runs (threadpoolctl), e.g. ``"openblas 0.3.31
    (Haswell kernels)"``, and whether ``OPENBLAS_CORETYPE`` chose that set."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is in the test extra
        return "unknown (install threadpoolctl)"
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            kernels = info.get("architecture")
            text = f"{info.get('internal_api')} {info.get('version')}"
            if kernels:
                text += f" ({kernels} kernels"
                forced = os.environ.get("OPENBLAS_CORETYPE")
                text += f", set by OPENBLAS_CORETYPE={forced})" if forced else ")"
            return text
    return "unknown"


def run(quick: bool = True) -> str:
    """Measure and return the table (``resode bench``; ``--full`` for quick=False)."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced:
        return _run_without_coretype(quick, forced)
    dtypes = ("float64",) if quick else ("float64", "float32")
    threads = (1,) if quick else (1, 2)
    gemm = {(d, t): gemm_rate(dtype=d, threads=t) for d in dtypes for t in threads}
    rows = measure(quick, dtypes, threads)
    rates = ", ".join(f"{d} {t} thread{'s' * (t > 1)} {r:.1f}" for (d, t), r in gemm.items())
    header = (
        f"machine: {cpu_name()}, {os.cpu_count()} cores; resode kernels: {_core.isa}; "
        f"NumPy's BLAS: {numpy_blas()}; NumPy matmul 512x512, GFLOP/s: {rates}"
    )
    return header + "\n\n" + table(rows, gemm)


def _run_without_coretype(quick: bool, forced: str) -> str:
    """The table measured by a child process without ``OPENBLAS_CORETYPE``."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    cmd = [sys.executable, "-m", "resode", "bench", *([] if quick else ["--full"])]
    child = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    note = (
        f"OPENBLAS_CORETYPE={forced} is set here; measured in a child process without it, so "
        "NumPy's OpenBLAS runs the kernels it picks for this CPU, as resode does"
    )
    return note + "\n" + child.stdout.rstrip("\n")
