"""Benchmarks run single-threaded unless a test asks otherwise (the `threads` fixture): resode
at one thread and NumPy's BLAS pool limited to one, so ratios compare like with like."""

from __future__ import annotations

import pytest
import resode
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_thread():
    before = resode.get_num_threads()
    resode.set_num_threads(1)
    # BLAS only: a limit on every pool would also cap resode's OpenMP runtime at one thread
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    resode.set_num_threads(before)


@pytest.fixture
def threads():
    """threads(n): resode at n threads for the rest of this test (NumPy's BLAS stays at 1)."""
    return resode.set_num_threads


@pytest.fixture
def run(benchmark):
    """run(fn, slow=False): benchmark `fn`; slow workloads (> ~50 ms a call) get 3 rounds."""

    def _run(fn, slow: bool = False):
        if slow:
            return benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
        return benchmark(fn)

    return _run
