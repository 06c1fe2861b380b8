"""Quick benchmarks behind ``resode bench``: one training step (``loss_and_grad``) of each
workload of ``benchmarks/``, resode against the NumPy reference in the same run, with the
machine's single-thread GEMM rate (NumPy matmul, 512 x 512) for scale.

The pytest-benchmark suite in ``benchmarks/`` is the full, statistically careful version; this
module answers "how fast is it here?" in well under a minute.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from . import reference as ref
from ._core import get_num_threads, set_num_threads
from .models import NeuralODE, ResNet, _Model

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

    def cells(self, gemm: float) -> list[str]:
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
    """resode at n threads, NumPy's BLAS at 1 (threadpoolctl, when installed)."""
    before = get_num_threads()
    set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is in the test extra
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1, user_api="blas")  # not resode's OpenMP pool
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


def gemm_rate(n: int = 512, budget: float = 0.5) -> float:
    """GFLOP/s of NumPy's float64 matmul of two n x n matrices on one thread."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    with _threads(1):
        seconds = _best(lambda: a @ b, budget)
    return 2.0 * n**3 / seconds / 1e9


def _reference_call(model: _Model, X: np.ndarray, y: np.ndarray) -> Callable[[], Any]:
    common = {"field": model.field, "activation": model.activation, "augment": model.augment}
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


def _matmul_gflop(model: _Model, N: int) -> float:
    """FLOPs of the matrix products of one loss_and_grad (forward + twice for backward)."""
    stages = {"euler": 1, "midpoint": 2, "rk4": 4}[getattr(model, "method", "euler")]
    steps = model.steps if isinstance(model, NeuralODE) else model.layers
    width = 2 * model.D * model.hidden if model.field == "bottleneck" else model.D**2
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


def workloads(quick: bool = True) -> list[tuple[str, Callable[[str], _Model], int, bool]]:
    """(name, model factory taking a dtype, N, measure the reference) for each workload."""
    out: list[tuple[str, Callable[[str], _Model], int, bool]] = []
    for N in (2, 150, 1000) if quick else (2, 150, 1000, 100_000):
        for gradient in ("discrete", "adjoint"):
            out.append(
                (
                    f"W1 seed NODE N={N} {gradient}",
                    lambda dt, g=gradient: NeuralODE(2, **SEED_NODE, gradient=g, dtype=dt, seed=0),
                    N,
                    N <= 1000,
                )
            )
    for D in (2, 16, 64):
        out.append(
            (
                f"W2 ResNet L=100 D={D} N=1000",
                lambda dt, D=D: ResNet(D, 100, h=0.1, dtype=dt, seed=0),
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
            reference = None
            for t in threads:
                with _threads(t):
                    seconds = _best(lambda m=model, X=X, y=y: m.loss_and_grad(X, y), budget)
                    if with_reference and reference is None:
                        reference = _best(_reference_call(model, X, y), budget)
                rows.append(Row(name, dtype, t, seconds, reference, _matmul_gflop(model, N)))
    return rows


def table(rows: list[Row], gemm: float) -> str:
    """A Markdown table of the rows."""
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
    lines += ["| " + " | ".join(r.cells(gemm)) + " |" for r in rows]
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
    gemm = gemm_rate()
    dtypes = ("float64",) if quick else ("float64", "float32")
    threads = (1,) if quick else (1, 2)
    rows = measure(quick, dtypes, threads)
    header = (
        f"machine: {cpu_name()}, {os.cpu_count()} cores; resode kernels: {_core.isa}; "
        f"NumPy's BLAS: {numpy_blas()}; "
        f"NumPy float64 matmul 512x512 on 1 thread: {gemm:.1f} GFLOP/s"
    )
    return header + "\n\n" + table(rows, gemm)
