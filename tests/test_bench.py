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
    monkeypatch.setattr(bench, "gemm_rate", lambda: 10.0)
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


def test_two_thread_rows_run_resode_on_two_threads():
    # NumPy's BLAS is held to one thread there, resode's own pool is not: the "threads = 2"
    # rows of the table must measure two threads wherever the machine has them.
    before = resode.get_num_threads()
    resode.set_num_threads(2)
    available = resode.get_num_threads()  # 2, or 1 without OpenMP or with one core
    resode.set_num_threads(before)
    seen = []
    with bench._threads(2):
        seen.append(resode.get_num_threads())
    with bench._threads(1):
        seen.append(resode.get_num_threads())
    assert seen == [available, 1]
    assert resode.get_num_threads() == before


def test_header_names_the_kernel_sets(monkeypatch):
    monkeypatch.setattr(bench, "workloads", lambda quick=True: [])
    monkeypatch.setattr(bench, "gemm_rate", lambda: 10.0)
    header = bench.run().splitlines()[0]
    assert f"resode kernels: {resode._core.isa};" in header
    assert f"NumPy's BLAS: {bench.numpy_blas()};" in header
