"""resode.bench: the table behind `resode bench`, on a tiny workload (no timing asserted)."""

from __future__ import annotations

import pytest
import resode
from resode import bench


def test_run_prints_a_table_of_every_workload(monkeypatch):
    tiny = [
        ("tiny ResNet", lambda dt: resode.ResNet(2, 3, dtype=dt, seed=0), 8, True),
        ("tiny NODE", lambda dt: resode.NeuralODE(2, pieces=2, dtype=dt, seed=0), 8, False),
    ]
    monkeypatch.setattr(bench, "workloads", lambda quick=True: tiny)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(bench, "gemm_rate", lambda dtype, threads: 10.0)
    monkeypatch.setattr(bench, "_best", lambda fn, budget, min_repeats=3: (fn(), 1e-3)[1])
    text = bench.run(quick=False)
    lines = text.splitlines()
    assert "GFLOP/s" in lines[0]
    rows = [line for line in lines if line.startswith("| tiny")]
    # 2 workloads x 2 dtypes x 2 thread counts
    assert len(rows) == 8
    assert all(row.count("|") == 9 for row in rows)
    assert "1.0x" in rows[0] and "| - |" in rows[-1]  # reference measured / not measured


def test_gemm_rate_counts_two_flops_per_multiply_add(monkeypatch):
    # 2 n^3 FLOPs of an n x n product over the best time, in GFLOP/s
    monkeypatch.setattr(bench, "_best", lambda fn, budget, min_repeats=3: (fn(), 0.004)[1])
    assert bench.gemm_rate(n=64, budget=0.01) == pytest.approx(2 * 64**3 / 0.004 / 1e9)


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return next(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_two_thread_rows_run_resode_and_the_reference_on_two_threads():
    # the "threads = 2" rows must measure two threads of resode wherever the machine has them,
    # against the reference with two BLAS threads (like against like)
    before = resode.get_num_threads()
    resode.set_num_threads(2)
    available = resode.get_num_threads()  # 2, or 1 without OpenMP or with one core
    resode.set_num_threads(before)
    seen = []
    with bench._threads(2):
        seen.append((resode.get_num_threads(), _blas_threads()))
    with bench._threads(1):
        seen.append((resode.get_num_threads(), _blas_threads()))
    assert seen == [(available, 2), (1, 1)]
    assert resode.get_num_threads() == before


def test_of_gemm_uses_the_rate_of_the_same_dtype_and_thread_count(monkeypatch):
    tiny = [("tiny ResNet", lambda dt: resode.ResNet(2, 3, dtype=dt, seed=0), 8, False)]
    rates = {("float64", 1): 1.0, ("float64", 2): 2.0, ("float32", 1): 4.0, ("float32", 2): 8.0}
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(bench, "workloads", lambda quick=True: tiny)
    monkeypatch.setattr(bench, "gemm_rate", lambda dtype, threads: rates[(dtype, threads)])
    monkeypatch.setattr(bench, "_best", lambda fn, budget, min_repeats=3: (fn(), 1e-3)[1])
    rows = [line.split(" | ") for line in bench.run(quick=False).splitlines() if "tiny" in line]
    gflop = float(rows[0][6])  # the same model and time in every row
    for row in rows:
        dtype, threads, of_gemm = row[1], int(row[2]), row[7].rstrip(" |")
        assert of_gemm == f"{gflop / rates[(dtype, threads)]:.0%}"


def test_a_forced_openblas_coretype_is_measured_without_it(monkeypatch):
    calls = []

    def fake_run(cmd, env, **kw):
        calls.append((cmd, env))
        return type("Done", (), {"stdout": "machine: x\n\n| table |\n"})()

    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    text = bench.run(quick=False)
    ((cmd, env),) = calls
    assert cmd[1:] == ["-m", "resode", "bench", "--full"] and "OPENBLAS_CORETYPE" not in env
    assert text.splitlines()[0].startswith("OPENBLAS_CORETYPE=Haswell is set here; measured in")
    assert text.splitlines()[1:] == ["machine: x", "", "| table |"]


def test_header_names_the_kernel_sets(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(bench, "workloads", lambda quick=True: [])
    monkeypatch.setattr(bench, "gemm_rate", lambda dtype, threads: 10.0)
    header = bench.run().splitlines()[0]
    assert f"resode kernels: {resode._core.isa};" in header
    assert f"NumPy's BLAS: {bench.numpy_blas()};" in header
