"""The TOML side of :mod:`resode.config`: reading a ``config.toml`` (or a ``--config`` file)
into flat options, and writing one value."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["read_toml", "toml_value"]


def toml_value(value: Any) -> str:
    """A value as TOML writes it (``true``, ``3``, ``0.5``, ``"text"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The flat options of a TOML file (keys as written; tables one level deep, their names
    ignored). ``ValueError`` (one line) on an unreadable or invalid file."""
    try:  # (mypy targets 3.10, whose standard library has no tomllib)
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError(
                "--config needs Python >= 3.11 or the tomli package (pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            if isinstance(v, dict):
                raise ValueError(f"{path}: tables nest at most one level ({k!r})")
            if k in flat:
                raise ValueError(f"{path}: {k!r} is given twice")
            flat[k] = v
    return flat
