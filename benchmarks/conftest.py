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
    """threads(n): resode and NumPy's BLAS at n threads for the rest of this test, so a
    2-thread resode row compares with the reference at 2 BLAS threads."""
    limits = []

    def _set(n: int) -> None:
        resode.set_num_threads(n)
        limits.append(threadpool_limits(limits=n, user_api="blas"))

    yield _set
    for limit in reversed(limits):
        limit.restore_original_limits()


@pytest.fixture
def run(benchmark):
    """run(fn, slow=False): benchmark `fn`; slow workloads (> ~50 ms a call) get 3 rounds."""

    def _run(fn, slow: bool = False):
        if slow:
            return benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
        return benchmark(fn)

    return _run
