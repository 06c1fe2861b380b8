"""
Against PyTorch and JAX, per kernel set
=======================================

The measured tables of ``benchmarks/README.md`` as a chart: one training step (forward sweep,
loss, backward sweep, every gradient) of the seed neural ODE at three batch sizes and of a
100-layer ResNet at three widths, float64, one thread, on a 2-core AMD EPYC with AVX2
(2026-12-04, ``python -m pytest benchmarks/test_peers.py``). resode ran twice, with its AVX2
kernels and with its baseline (SSE2) kernels; PyTorch (eager, autograd) and JAX (jitted, the
faster of a ``lax.scan`` and an unrolled loop) ran their own AVX2 code both times. This script
reads the numbers from that file and measures nothing itself: rerun the benchmark to get your
machine's.

Run it with ``python examples/benchmark_tables.py [OUT_FOLDER]`` from a checkout.
"""

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; sphinx-gallery shows them
import matplotlib.pyplot as plt
import numpy as np

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmark-tables")
out.mkdir(parents=True, exist_ok=True)
BENCHMARKS = Path(sys.argv[0]).resolve().parents[1] / "benchmarks" / "README.md"

# %%
# The two tables
# --------------
# Each starts with the line naming its kernel set; a row is
# ``| workload | resode ms | best JAX ms | PyTorch ms | vs best JAX | vs PyTorch |``. W1 is the
# seed neural ODE at N samples, W2 the ResNet of 100 layers and width D on 1000 samples.
text = BENCHMARKS.read_text(encoding="utf-8")
NUMBER = re.compile(r"[0-9]*\.?[0-9]+")


def peers_table(title: str) -> dict[str, tuple[float, float, float]]:
    """The table after the line that starts with ``title``: workload -> (resode, JAX, torch)."""
    after = text.split("\n" + title, 1)[1]
    rows = {}
    for line in after.split("\n\n", 2)[1].splitlines()[2:]:  # skip the header and the rule
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        # "W1 seed NODE N = 150" -> "W1 N = 150", "W2 ResNet L = 100, N = 1000, D = 2" -> "W2 D = 2"
        size = re.search(r"[ND] = [0-9]+$", cells[0]).group()
        workload = f"{cells[0][:2]} {size}"
        rows[workload] = tuple(float(NUMBER.search(cell).group()) for cell in cells[1:4])
    return rows


avx2 = peers_table("`RESODE_ISA=avx2` (the default here):")
baseline = peers_table("`RESODE_ISA=baseline` (SSE2")
workloads = list(avx2)
print(f"{'workload':<18} {'avx2':>8} {'baseline':>9} {'best JAX':>9} {'PyTorch':>8}  (ms)")
for name in workloads:
    resode_avx2, jax_ms, torch_ms = avx2[name]
    print(
        f"{name:<18} {resode_avx2:>8.3g} {baseline[name][0]:>9.3g} {jax_ms:>9.3g} {torch_ms:>8.3g}"
    )

# %%
# The chart
# ---------
# Time per training step on a log scale (lower is faster). The peers' bars are those of the
# ``avx2`` run.
series = {
    "resode, avx2 kernels": [avx2[w][0] for w in workloads],
    "resode, baseline kernels": [baseline[w][0] for w in workloads],
    "best JAX (jit)": [avx2[w][1] for w in workloads],
    "PyTorch (eager)": [avx2[w][2] for w in workloads],
}
x = np.arange(len(workloads))
width = 0.2
fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
for i, (label, values) in enumerate(series.items()):
    ax.bar(x + (i - 1.5) * width, values, width, label=label)
ax.set_yscale("log")
ax.set_xticks(x, workloads)
ax.set(ylabel="ms per training step", title="one training step, float64, 1 thread, AVX2 EPYC")
ax.grid(axis="y", which="both", alpha=0.3)
ax.legend(ncols=2)
fig.savefig(out / "peers.png", dpi=100)
plt.close(fig)
