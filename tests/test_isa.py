"""The kernel set: ``resode._core.isa`` names it, ``RESODE_ISA`` forces a lower one.

Each forced set runs in its own interpreter (the core reads the variable once, at import), and
its loss and gradients must agree with the NumPy reference and with the CPU's own set; a set
the CPU lacks is never chosen, and an unknown name is ignored with a warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import resode
from resode import _core
from resode import reference as ref

LEVELS = ("baseline", "avx2", "avx512")

# Loss and gradients of a small neural ODE per field, printed as JSON by a child interpreter.
_CHILD = r"""
import json, sys
import numpy as np
import resode
out = {"isa": resode._core.isa, "results": {}}
rng = np.random.default_rng(0)
X = rng.normal(size=(37, 2))
y = rng.integers(0, 3, 37)
for field in ("outside", "inside", "bottleneck"):
    for act in ("tanh", "relu"):
        model = resode.NeuralODE(2, T=1.0, pieces=3, substeps=2, classes=3, field=field,
                                 hidden=5 if field == "bottleneck" else None, augment=1,
                                 activation=act, seed=1)
        loss, grads = model.loss_and_grad(X, y)
        out["results"][f"{field}-{act}"] = [loss, {k: v.tolist() for k, v in grads.items()}]
print(json.dumps(out))
"""


def _python(code: str, **env: str) -> str:
    """stdout of ``python -c code`` in a child with RESODE_ISA / RESODE_DISABLE_AVX512 unset,
    then ``env`` set."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("RESODE_ISA", "RESODE_DISABLE_AVX512")
    }
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def _run_child(**env: str) -> dict:
    return json.loads(_python(_CHILD, **env))


@pytest.fixture(scope="module")
def native() -> dict:
    return _run_child()


def test_isa_is_named() -> None:
    assert _core.isa in LEVELS


@pytest.mark.parametrize("forced", ["baseline", "avx2"])
def test_forced_isa_is_lower_and_agrees_with_reference(forced: str, native: dict) -> None:
    child = _run_child(RESODE_ISA=forced)
    expected = LEVELS[min(LEVELS.index(forced), LEVELS.index(native["isa"]))]
    assert child["isa"] == expected
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 2))
    y = rng.integers(0, 3, 37)
    for key, (loss, grads) in child["results"].items():
        field, act = key.split("-")
        model = resode.NeuralODE(
            2,
            T=1.0,
            pieces=3,
            substeps=2,
            classes=3,
            field=field,
            hidden=5 if field == "bottleneck" else None,
            augment=1,
            activation=act,
            seed=1,
        )
        loss_ref, grads_ref = ref.node_loss_and_grad(
            model.params, X, y, T=1.0, substeps=2, field=field, activation=act, augment=1
        )
        native_loss, native_grads = native["results"][key]
        assert loss == pytest.approx(loss_ref, rel=1e-12), key
        assert loss == pytest.approx(native_loss, rel=1e-12), key
        for name, g in grads.items():
            scale = np.max(np.abs(grads_ref[name]))
            np.testing.assert_allclose(g, grads_ref[name], rtol=0, atol=1e-11 * scale)
            np.testing.assert_allclose(g, native_grads[name], rtol=0, atol=1e-11 * scale)


def test_disable_avx512_is_an_alias_of_avx2(native: dict) -> None:
    child = _run_child(RESODE_DISABLE_AVX512="1")
    assert child["isa"] == ("avx2" if native["isa"] == "avx512" else native["isa"])


def test_unknown_isa_is_ignored_with_a_warning(native: dict) -> None:
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import resode\n"
        "print(resode._core.isa)\n"
        "print([str(w.message) for w in caught])\n"
    )
    isa, messages = _python(code, RESODE_ISA="sse9").splitlines()
    assert isa == native["isa"]
    assert "RESODE_ISA='sse9' is not one of" in messages
