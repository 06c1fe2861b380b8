"""Neural CDEs (issue 25, section 4): one training epoch, float64, one thread each, on
torchcde's spiral example (128 series of 100 observations, channels t, x, y; state 8,
bottleneck 128) and on the UEA JapaneseVowels training split (270 series, lengths 7-26,
12 channels + time; state 16, bottleneck 32), batches of 32, RK4 one step per observation
interval, Adam: resode against torchcde and a jitted diffrax CDE on the same model, method and
steps (``cde_peers.py``). Each peer's loss and gradients are checked against resode's before
it is timed. Goals: at least 20x torchcde and 5x diffrax per epoch.

The same table in one run: ``python benchmarks/cde_table.py``. Needs
``pip install torch==2.13.0 torchcde diffrax aeon``; a missing one skips its rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the workloads and peers live beside this file (pytest imports it in importlib mode)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cde_peers as cp


@pytest.fixture(autouse=True)
def _torch_one_thread():
    if cp.missing("torchcde") is not None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("impl", cp.IMPLS)
@pytest.mark.parametrize("workload", list(cp.WORKLOADS))
def test_cde_epoch(benchmark, run, workload, impl):
    lacking = cp.missing(impl)
    if lacking is not None:
        pytest.skip(f"{lacking} is not installed")
    if workload == "JapaneseVowels":
        pytest.importorskip("aeon")
    benchmark.group = f"neural CDE epoch: {workload} float64"
    work = cp.WORKLOADS[workload]()
    if impl != "resode":
        cp.check(work, impl)
    epoch = cp.EPOCHS[impl](work)
    epoch()  # warm-up: JAX compiles here
    run(epoch, slow=impl != "resode")
