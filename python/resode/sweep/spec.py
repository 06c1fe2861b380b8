"""A sweep's spec and its expansion into runs, each a :class:`~resode.config.RunConfig`.

A spec (a dict, or a TOML file) has a ``base`` table of run options (the keys of
``config.toml``), a ``grid`` table mapping options to lists (their Cartesian product), optional
``seeds`` (a count ``N`` for seeds ``0..N-1``, or a list) and optional ``[[repeat]]`` blocks
whose lists are zipped (equal lengths), not multiplied. A sweep draws no figures unless the
spec asks for them (``plots = true``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .. import config as run_config
from ..config import RunConfig

__all__ = ["Run", "expand", "load_spec", "toml"]

PathLike = Union[str, "os.PathLike[str]"]

#: Options of ``resode train`` that are not part of a run, refused in a spec.
_COMMAND = ("out", "overwrite", "resume", "config", "no_progress")
#: Options naming files a run reads: their content's sha256 is part of the run's identity.
INPUT_FILES = ("data", "validation")


def toml() -> Any:
    """tomllib, or tomli before Python 3.11 (a dependency there); one line when neither is."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ValueError(
                "a TOML spec needs Python >= 3.11 or the tomli package (pip install tomli)"
            ) from None
    return tomllib


def load_spec(spec: Mapping[str, Any] | PathLike) -> dict[str, Any]:
    """The spec as a dict: ``spec`` itself, or the TOML file it names.

    Raises
    ------
    ValueError
        On an unreadable file, invalid TOML, or unknown top-level keys.
    """
    if isinstance(spec, Mapping):
        data = dict(spec)
    else:
        path = Path(os.fspath(spec))
        tomllib = toml()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read the spec {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"the spec {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"base", "grid", "seeds", "repeat"})
    if unknown:
        raise ValueError(
            f"unknown spec key {unknown[0]!r}: a spec has base, grid, seeds and repeat"
        )
    return data


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its grid values, its configuration and its identity.

    ``inputs`` holds what the run reads besides its options (the resode version, the sha256 of
    its ``data`` and ``validation`` files); it is part of the identity and of
    ``result.json``.
    """

    id: str
    grid: dict[str, Any]
    config: RunConfig = field(compare=False)
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def options(self) -> dict[str, Any]:
        """The run's flat options (``RunConfig.options``)."""
        return self.config.options()

    @property
    def argv(self) -> tuple[str, ...]:
        """The ``resode train`` arguments of the same run (for people, not for workers)."""
        return tuple(self.config.argv())


def _dest(name: str) -> str:
    return name.replace("-", "_")


def _points(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Grid points: the product of ``grid``, times each zipped ``repeat`` block, times seeds."""
    grid = dict(spec.get("grid", {}) or {})
    if not isinstance(spec.get("grid", {}) or {}, Mapping):
        raise ValueError("grid must be a table of option = [values]")
    seeds = spec.get("seeds")
    if "seeds" in grid:  # `seeds = N` written below [grid] in TOML lands in the grid table
        if seeds is not None:
            raise ValueError("seeds is given twice (at the top and in grid)")
        seeds = grid.pop("seeds")
    axes: list[list[dict[str, Any]]] = []
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid entry {name!r} must be a non-empty list, got {values!r}")
        axes.append([{_dest(name): v} for v in values])
    repeats = spec.get("repeat", []) or []
    if isinstance(repeats, Mapping):
        repeats = [repeats]
    for block in repeats:
        lengths = {len(v) if isinstance(v, list) else -1 for v in block.values()}
        if len(lengths) != 1 or -1 in lengths or 0 in lengths:
            raise ValueError(f"repeat block {dict(block)!r}: lists of one non-zero length each")
        n = lengths.pop()
        axes.append([{_dest(k): v[i] for k, v in block.items()} for i in range(n)])
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, (int, list)) or seeds == []:
            raise ValueError(f"seeds must be a count or a non-empty list, got {seeds!r}")
        values = list(range(seeds)) if isinstance(seeds, int) else seeds
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        axes.append([{"seed": s} for s in values])
    points = []
    for combo in itertools.product(*axes):
        point: dict[str, Any] = {}
        for part in combo:
            for key, value in part.items():
                if key in point:
                    raise ValueError(f"option {key!r} appears in two grid or repeat entries")
                point[key] = value
        points.append(point)
    return points


def run_config_of(options: Mapping[str, Any]) -> RunConfig:
    """The run of a spec's options (``base`` and a grid point); figures off unless asked."""
    managed = {f.name for _, f, o in run_config.fields() if not o.sweep}
    given = run_config.normalise(options, run_config.flag)
    for key in given:
        if key in _COMMAND or key in managed:
            raise ValueError(f"option {key!r} is set by the sweep itself; leave it out")
    known = {f.name for _, f, _ in run_config.fields()}
    for key in given:
        if key not in known:
            raise ValueError(f"unknown option {key!r} (not a resode train option)")
    given.setdefault("plots", False)
    for name in INPUT_FILES:  # workers may run elsewhere: absolute paths
        if given.get(name) is not None:
            given[name] = str(Path(str(given[name])).resolve())
    return run_config.build(given, explicit=None, name=run_config.flag)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inputs(config: RunConfig, hashes: dict[str, str]) -> dict[str, Any]:
    """The resode version and the sha256 of each input file (``hashes`` caches them by path):
    a run on a changed data file, or with another resode, is another run."""
    from .. import __version__

    inputs: dict[str, Any] = {"resode": __version__}
    for name in INPUT_FILES:
        path = getattr(config.data, name)
        if path is not None and path not in hashes:
            try:
                hashes[path] = _file_sha256(path)
            except OSError as exc:
                raise ValueError(f"cannot read --{name} {path}: {exc.strerror or exc}") from None
        inputs[f"{name}_sha256"] = None if path is None else hashes[path]
    return inputs


def expand(spec: Mapping[str, Any] | PathLike) -> list[Run]:
    """Every run of ``spec``, each checked as ``resode train`` checks its options (the data,
    the model and the optimiser built once per grid point but the seed).

    Raises
    ------
    ValueError
        On a bad spec: an unknown option, an empty grid entry, or a value ``resode train``
        would refuse (the message names the grid point).

    Examples
    --------
    >>> runs = expand({"base": {"dataset": "moons", "epochs": 2, "model": "resnet"},
    ...                "grid": {"layers": [2, 4]}, "seeds": 2})
    >>> [(r.grid["layers"], r.grid["seed"]) for r in runs]
    [(2, 0), (2, 1), (4, 0), (4, 1)]
    """
    from ..run import prepare

    data = load_spec(spec)
    base = data.get("base", {}) or {}
    if not isinstance(base, Mapping):
        raise ValueError("base must be a table of resode train options")
    runs: list[Run] = []
    seen: set[str] = set()
    checked: set[str] = set()  # the checks do not depend on the seed: once each
    hashes: dict[str, str] = {}
    for point in _points(data):
        where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the base"
        try:
            config = run_config_of({**base, **point})
            key = json.dumps({k: v for k, v in config.options().items() if k != "seed"},
                             sort_keys=True)  # fmt: skip
            if key not in checked:
                prepare(config)
                checked.add(key)
            inputs = _inputs(config, hashes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"grid point {where}: {exc}") from None
        run_id = config.identity({k: v for k, v in inputs.items() if k != "resode"})
        if run_id in seen:
            raise ValueError(f"grid point {where} repeats an earlier run exactly")
        seen.add(run_id)
        runs.append(Run(run_id, dict(point), config, inputs))
    if not runs:
        raise ValueError("the spec has no runs")
    return runs
