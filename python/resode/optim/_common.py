"""What the schedules and the optimisers share: the check of their real-valued arguments."""

from __future__ import annotations

import math
import numbers


def _as_float(name: str, value: object) -> float:
    """Return ``value`` as a finite ``float`` or raise ``ValueError`` naming ``name``."""
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    out = float(value) if isinstance(value, numbers.Real) and is_real else math.nan
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return out
