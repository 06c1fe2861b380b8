"""The definition of a run: every option of ``resode train``, once.

A run is a value: a frozen :class:`RunConfig` made of a :class:`DataConfig`, a
:class:`ModelConfig`, an :class:`OptimizerConfig` and a :class:`TrainingConfig`. Each field
carries, in its ``dataclasses.field`` metadata (an :class:`Option`), its help text, its check
(which converts text from a command line or a value from a TOML file) and its applicability
rule (when the option means nothing for a run, e.g. ``pieces`` for a ResNet). From this one
definition come the ``resode train`` parser (:mod:`resode.cli.train`), ``config.toml``
reading and writing, the keys of a sweep spec and the identity of a run in a sweep.

Flat options (the keys of ``config.toml``, of a sweep spec and of :meth:`RunConfig.options`)
are the field names; ``-`` may stand for ``_`` (``n-samples``). The keys of older files
``no-shuffle`` and ``no-plots`` are read as ``shuffle`` and ``plots`` negated.

Examples
--------
>>> config = RunConfig.from_options({"dataset": "moons", "model": "resnet", "layers": 4})
>>> config.model.layers, config.data.dataset, config.training.epochs
(4, 'moons', 300)
>>> RunConfig.from_options({"model": "resnet", "pieces": 3})
Traceback (most recent call last):
...
ValueError: pieces applies to --model node only
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Option",
    "RunConfig",
    "TrainingConfig",
    "fields",
    "read_toml",
]

DATASETS = ("spheres", "chess", "chess3", "tricolor", "moons", "spirals", "digits")
ADAPTIVE = ("dopri5", "tsit5", "bosh3")
#: Keys of older files and specs: ``key -> field`` whose value is the negation.
NEGATED = {"no_shuffle": "shuffle", "no_plots": "plots"}


class OptionError(ValueError):
    """A bad option value; ``str()`` is one line naming the option (front ends reword it)."""

    def __init__(self, key: str, message: str, joined: bool = True) -> None:
        self.key, self.message, self.joined = key, message, joined
        super().__init__(self.render(key))

    def render(self, name: str) -> str:
        """The message with the option called ``name`` (a flag, a key)."""
        return f"{name}: {self.message}" if self.joined else f"{name} {self.message}"


@dataclass(frozen=True)
class Option:
    """What a field of the configuration says about itself (its ``metadata["option"]``).

    ``check`` converts and checks a value (text from a command line, or a TOML value) and
    raises ``ValueError`` with a message that does not name the option. ``applies`` returns,
    for the resolved flat options of a run, why the option means nothing there (None: it
    applies). ``results`` is False for options that do not change a run's results (left out
    of its identity); ``sweep`` is False for options a sweep sets itself.
    """

    help: str
    check: Callable[[Any], Any]
    applies: Callable[[Mapping[str, Any]], str | None] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    results: bool = True
    sweep: bool = True

    @property
    def is_flag(self) -> bool:
        return self.check is _bool


def _option(default: Any, help: str, check: Callable[[Any], Any], **kwargs: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, check, **kwargs)})


# --------------------------------------------------------------------------- checks


def _number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise OptionError("", "must be a string or a number", joined=False)
    word = "an integer" if kind is int else "a number"
    try:
        return kind(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"expected {word}, got {str(value)!r}") from None


def _int(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = _number(value, int)
        if number < minimum:
            raise ValueError(f"must be >= {minimum}, got {number}")
        return int(number)

    check.__name__ = "integer"
    return check


def _float(*, positive: bool = False, unit: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number = _number(value, float)
        if not math.isfinite(number):
            raise ValueError(f"must be finite, got {str(value)!r}")
        if positive and number <= 0:
            raise ValueError(f"must be > 0, got {number:g}")
        if not positive and number < 0:
            raise ValueError(f"must be >= 0, got {number:g}")
        if unit and not 0 < number < 1:
            raise ValueError(f"must be in (0, 1), got {number:g}")
        return number

    check.__name__ = "number"
    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError("", "must be true or false", joined=False)
    return value


def _text(value: Any) -> str:
    if isinstance(value, (bool, list, dict)) or value is None:
        raise OptionError("", "must be a string or a number", joined=False)
    return str(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise OptionError(
                "", f"must be one of {', '.join(choices)}; got {value!r}", joined=False
            )
        return str(value)

    return check


# --------------------------------------------------------------------------- applicability


def _node_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --model node only" if o["model"] == "resnet" else None


def _resnet_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --model resnet only" if o["model"] != "resnet" else None


def _adaptive_only(o: Mapping[str, Any]) -> str | None:
    if o["model"] == "resnet":
        return "applies to --model node only"
    if o["method"] not in ADAPTIVE:
        return f"applies to the adaptive methods only (not --method {o['method']})"
    return None


def _bottleneck_only(o: Mapping[str, Any]) -> str | None:
    field_ = o["field"]
    return f"applies to --field bottleneck only (not {field_})" if field_ != "bottleneck" else None


def _T(o: Mapping[str, Any]) -> str | None:
    if o["model"] == "resnet" and o.get("h") is not None:
        return "does not apply with --h (a ResNet's h is T / layers otherwise)"
    return None


def _turnpike_weight(o: Mapping[str, Any]) -> str | None:
    if o["model"] == "resnet":
        return "applies to --model node only"
    return None if o.get("turnpike") else "applies with --turnpike only"


def _sgd_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --optimizer sgd only" if o["optimizer"] != "sgd" else None


def _adam_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --optimizer adam only" if o["optimizer"] != "adam" else None


def _step_schedule_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --schedule step only" if o["schedule"] != "step" else None


def _generated_only(o: Mapping[str, Any]) -> str | None:
    return "applies to the generated data sets, not --data" if o.get("data") else None


def _data_only(o: Mapping[str, Any]) -> str | None:
    return None if o.get("data") else "applies with --data only"


def _takes(dataset: str) -> set[str]:
    """The keyword arguments of a generated data set's function (digits: none)."""
    from . import datasets

    function = datasets.DATASETS.get(dataset)
    return set() if function is None else set(inspect.signature(function).parameters)


def _dataset_argument(name: str, text: str) -> Callable[[Mapping[str, Any]], str | None]:
    """The rule of an option passed to the data set's function when it takes it."""

    def applies(o: Mapping[str, Any]) -> str | None:
        if o.get("data"):
            return "applies to the generated data sets, not --data"
        if name not in _takes(o["dataset"]):
            users = [d for d in DATASETS if name in _takes(d)]
            return f"applies to {text} {', '.join(users)} only, not {o['dataset']}"
        return None

    return applies


def _test_size(o: Mapping[str, Any]) -> str | None:
    if o.get("validation"):
        return "does not apply with --validation (the test data are given)"
    return None


# --------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class DataConfig:
    """Where the data come from: a generated data set, or a file (``data``)."""

    dataset: str = _option(
        "spheres", "data set", _choice(*DATASETS), applies=_generated_only, choices=DATASETS
    )
    data: str | None = _option(
        None,
        "train on your own file instead of --dataset: .npz with X (N, dim) and y, or .csv",
        _text,
        metavar="PATH",
    )
    target: str | None = _option(
        None,
        "the target column of a --data .csv file (default: the last)",
        _text,
        applies=_data_only,
        metavar="NAME|INDEX",
    )
    features: str | None = _option(
        None,
        "comma-separated feature columns of --data (names or 0-based indices; default: all but "
        "the target)",
        _text,
        applies=_data_only,
        metavar="COLUMNS",
    )
    validation: str | None = _option(
        None,
        "a test file like --data (instead of splitting off --test-size)",
        _text,
        applies=_data_only,
        metavar="PATH",
    )
    n_samples: int = _option(
        1000, "samples in all (digits: all 1797)", _int(4), applies=_generated_only, metavar="N"
    )
    dim: int | None = _option(
        None, "dimension of the spheres data set (default 2)", _int(1),
        applies=_dataset_argument("dim", "--dataset"),
    )  # fmt: skip
    noise: float | None = _option(
        None, "noise of the data set (its function's default otherwise)", _float(),
        applies=_dataset_argument("noise", "the data sets"),
    )  # fmt: skip
    style: str = _option(
        "resode", "the data laws: resode's or leia's", _choice("resode", "leia"),
        applies=_dataset_argument("style", "the data sets"), choices=("resode", "leia"),
    )  # fmt: skip
    test_size: float = _option(
        0.2,
        "held-out fraction",
        _float(positive=True, unit=True),
        applies=_test_size,
        metavar="FRACTION",
    )
    seed: int = _option(0, "seed of data, init and batches", _int(0))


def _choices(name: str) -> tuple[str, ...]:
    from . import models

    return tuple(getattr(models, name))


_FIELDS, _ACTIVATIONS = _choices("FIELDS"), _choices("ACTIVATIONS")
_METHODS, _GRADIENTS = _choices("METHODS"), _choices("GRADIENTS")
_LOSSES, _READOUTS = _choices("LOSSES"), _choices("READOUTS")


@dataclass(frozen=True)
class ModelConfig:
    """The model: a neural ODE (``model = "node"``) or a ResNet, and its loss terms."""

    model: str = _option("node", "model", _choice("node", "resnet"), choices=("node", "resnet"))
    field: str = _option("bottleneck", "vector field", _choice(*_FIELDS), choices=_FIELDS)
    hidden: int = _option(32, "bottleneck width", _int(1), applies=_bottleneck_only)
    augment: int = _option(1, "zero dimensions added", _int(0))
    activation: str = _option("tanh", "activation", _choice(*_ACTIVATIONS), choices=_ACTIVATIONS)
    T: float = _option(5.0, "final time", _float(positive=True), applies=_T)
    pieces: int = _option(10, "control pieces", _int(1), applies=_node_only)
    substeps: int = _option(1, "steps per piece", _int(1), applies=_node_only)
    method: str = _option(
        "rk4", "integrator", _choice(*_METHODS), applies=_node_only, choices=_METHODS
    )
    layers: int = _option(10, "ResNet layers", _int(1), applies=_resnet_only)
    h: float | None = _option(
        None, "ResNet step size (default T / layers)", _float(positive=True), applies=_resnet_only
    )
    classes: int | None = _option(None, "outputs (default: inferred from the data)", _int(1))
    loss: str = _option("cross_entropy", "loss", _choice(*_LOSSES), choices=_LOSSES)
    weight_decay: float = _option(0.0, "weight decay on theta", _float())
    readout: str = _option(
        "linear", "the readout of the final state", _choice(*_READOUTS), choices=_READOUTS
    )
    l1: float = _option(0.0, "L1 penalty on the controls", _float())
    decay_readout: bool = _option(False, "weight decay on P and c too", _bool)
    turnpike: bool = _option(False, "integrated (turnpike) loss", _bool, applies=_node_only)
    turnpike_weight: float = _option(
        1.0, "weight of the integrated loss", _float(positive=True), applies=_turnpike_weight
    )
    gradient: str = _option(
        "discrete", "gradient", _choice(*_GRADIENTS), applies=_node_only, choices=_GRADIENTS
    )
    checkpoints: int | None = _option(
        None, "stored states (discrete gradient)", _int(1), applies=_node_only
    )
    rtol: float | None = _option(
        None, "adaptive methods' relative tolerance (1e-7)", _float(), applies=_adaptive_only
    )
    atol: float | None = _option(
        None, "adaptive methods' absolute tolerance (1e-9)", _float(), applies=_adaptive_only
    )
    step_control: str | None = _option(
        None, "adaptive step control (sample)", _choice("sample", "batch"),
        applies=_adaptive_only, choices=("sample", "batch"),
    )  # fmt: skip
    first_step: float | None = _option(
        None, "adaptive methods' first step (auto)", _float(positive=True), applies=_adaptive_only
    )
    max_steps: int | None = _option(
        None, "adaptive methods' steps per sample and piece (100000)", _int(1),
        applies=_adaptive_only,
    )  # fmt: skip
    dtype: str = _option(
        "float64", "dtype", _choice("float64", "float32"), choices=("float64", "float32")
    )
    fixed_projection: bool = _option(False, "freeze P and c", _bool)


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimiser and its learning-rate schedule."""

    optimizer: str = _option("adam", "optimiser", _choice("adam", "sgd"), choices=("adam", "sgd"))
    lr: float = _option(1e-2, "learning rate", _float(positive=True))
    momentum: float = _option(0.0, "SGD momentum", _float(), applies=_sgd_only)
    nesterov: bool = _option(False, "SGD Nesterov momentum", _bool, applies=_sgd_only)
    beta1: float = _option(0.9, "Adam beta1", _float(), applies=_adam_only)
    beta2: float = _option(0.999, "Adam beta2", _float(), applies=_adam_only)
    eps: float = _option(1e-8, "Adam eps", _float(positive=True), applies=_adam_only)
    schedule: str = _option(
        "none", "lr schedule: cosine over the epochs, or step (times --gamma every --step-size)",
        _choice("none", "cosine", "step"), choices=("none", "cosine", "step"),
    )  # fmt: skip
    step_size: int = _option(
        100, "epochs per step of --schedule step", _int(1), applies=_step_schedule_only
    )
    gamma: float = _option(
        0.1, "factor of --schedule step", _float(positive=True), applies=_step_schedule_only
    )


@dataclass(frozen=True)
class TrainingConfig:
    """The training loop and what a run writes besides its model."""

    epochs: int = _option(300, "epochs", _int(0))
    batch_size: int | None = _option(None, "samples per step (default: full batch)", _int(1))
    shuffle: bool = _option(True, "shuffle the data each epoch", _bool)
    bound: float | None = _option(None, "L1+Linf bound on the controls", _float(positive=True))
    early_stopping: int = _option(
        0, "stop after PATIENCE epochs without a better validation loss and keep the best "
        "epoch's model (0: off)", _int(0), metavar="PATIENCE",
    )  # fmt: skip
    threads: int | None = _option(
        None, "threads of the core (default: all)", _int(1), results=False, sweep=False
    )
    checkpoint_every: int | None = _option(
        None, "write OUT/checkpoint.npz every K epochs", _int(1), metavar="K", results=False,
        sweep=False,
    )  # fmt: skip
    log_every: int | None = _option(
        None, "when stderr is not a terminal: a log line every N epochs (default: ~20 per run)",
        _int(1), metavar="N", results=False, sweep=False,
    )  # fmt: skip
    plots: bool = _option(True, "draw the figures", _bool, results=False)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optimizer": OptimizerConfig,
            "training": TrainingConfig}  # fmt: skip


def fields() -> Iterator[tuple[str, dataclasses.Field[Any], Option]]:
    """Every option: ``(section, field, option)``, in the order of the sections."""
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield section, f, f.metadata["option"]


def flag(key: str) -> str:
    """The command-line flag of a field (``n_samples`` -> ``--n-samples``)."""
    return "--" + key.replace("_", "-")


def _defaults() -> dict[str, Any]:
    return {f.name: f.default for _, f, _ in fields()}


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunConfig:
    """One run: data, model, optimiser and training (each section a frozen dataclass)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunConfig:
        """The run of flat options (``key -> value``; missing keys take their defaults).

        Raises ``ValueError`` (one line naming the key) on an unknown key, a bad value or an
        option that does not apply to this run.
        """
        return build(options, explicit=None, name=lambda key: key)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> RunConfig:
        """The run of a ``config.toml`` (tables one level deep, their names ignored)."""
        options = read_toml(path)
        options.pop("no_progress", None)  # a display setting of the command in older files
        return cls.from_options(options)

    def flat(self) -> dict[str, Any]:
        """Every field, applicable or not (``key -> value``)."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            out.update(dataclasses.asdict(getattr(self, section)))
        return out

    def options(self) -> dict[str, Any]:
        """The flat options that apply to this run and are set (None left out): the keys of
        ``config.toml``; ``RunConfig.from_options(c.options()) == c``."""
        values = self.flat()
        unused = not_applicable(values)
        return {k: v for k, v in values.items() if v is not None and k not in unused}

    def results_options(self) -> dict[str, Any]:
        """:meth:`options` without those that do not change the run's results."""
        kept = {f.name for _, f, o in fields() if o.results}
        return {k: v for k, v in self.options().items() if k in kept}

    def to_toml(self) -> str:
        """``config.toml``: :meth:`options`, data paths made absolute."""
        lines = ["# resode train options; rerun with: resode train --config config.toml"]
        for key, value in self.options().items():
            if key in ("data", "validation"):  # rerunnable from any folder
                value = str(Path(value).resolve())
            lines.append(f"{key.replace('_', '-')} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    def argv(self) -> list[str]:
        """The ``resode train`` arguments of this run: the options that differ from the
        defaults (data paths made absolute)."""
        out: list[str] = []
        defaults = _defaults()
        for key, value in self.options().items():
            if value == defaults[key] and type(value) is type(defaults[key]):
                continue
            if isinstance(value, bool):
                out.append(flag(key) if value else "--no-" + key.replace("_", "-"))
                continue
            if key in ("data", "validation"):
                value = str(Path(value).resolve())
            out += [flag(key), repr(value) if isinstance(value, float) else str(value)]
        return out

    def input_files(self) -> dict[str, str]:
        """The files the run reads: ``{"data": path, "validation": path}`` when set."""
        return {k: v for k in ("data", "validation") if (v := getattr(self.data, k))}

    def identity(self, data_hashes: Mapping[str, str | None] | None = None) -> str:
        """A hash (16 hex digits) of the options that change the results, of the sha256 of
        the data files (``data_hashes``: ``{"data_sha256": ..., ...}``) and of the resode
        version: two runs with the same identity compute the same thing."""
        from . import __version__

        record = {
            "options": self.results_options(),
            "inputs": dict(sorted((data_hashes or {}).items())),
            "resode": __version__,
        }
        text = json.dumps(record, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **options: Any) -> RunConfig:
        """A copy with some flat options changed (checked again)."""
        return RunConfig.from_options({**self.options(), **options})


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def normalise(options: Mapping[str, Any], name: Callable[[str], str] = str) -> dict[str, Any]:
    """Keys with ``_`` for ``-`` and the negated keys of older files (``no_shuffle``) turned
    into their fields; ``ValueError`` when one is given twice."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        key = str(key).replace("-", "_")
        if key in NEGATED:
            try:
                value = not _bool(value)
            except OptionError as exc:
                raise ValueError(exc.render(name(key))) from None
            key = NEGATED[key]
        if key in out:
            raise ValueError(f"{name(key)} is given twice")
        out[key] = value
    return out


def build(
    options: Mapping[str, Any],
    *,
    explicit: set[str] | None,
    name: Callable[[str], str],
    defaults: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The run of ``options`` over ``defaults`` (each value checked); an option in
    ``explicit`` (all of ``options`` when None) that does not apply is refused. Errors name
    the option with ``name(key)`` (a flag on the command line, the key elsewhere)."""
    known = _defaults()
    values = dict(known)
    values.update(normalise(defaults or {}))
    given = normalise(options, name)
    checks = {f.name: o.check for _, f, o in fields()}
    for key, value in given.items():
        if key not in known:
            raise ValueError(f"unknown option {key!r}")
        if value is not None:
            try:
                value = checks[key](value)
            except OptionError as exc:
                raise ValueError(exc.render(name(key))) from None
            except ValueError as exc:
                raise ValueError(f"{name(key)}: {exc}") from None
        values[key] = value
    chosen = set(given) if explicit is None else explicit
    for key, reason in not_applicable(values).items():
        if key in chosen and values[key] is not None:
            raise ValueError(f"{name(key)} {reason}")
    sections = {
        section: cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})
        for section, cls in SECTIONS.items()
    }
    return RunConfig(**sections)


def not_applicable(values: Mapping[str, Any]) -> dict[str, str]:
    """The options that mean nothing for the run of ``values`` (every field resolved), each
    with the reason."""
    out: dict[str, str] = {}
    for _, f, option in fields():
        if option.applies is not None:
            reason = option.applies(values)
            if reason is not None:
                out[f.name] = reason
    return out


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The flat options of a TOML file (keys as written; tables one level deep, their names
    ignored). ``ValueError`` (one line) on an unreadable or invalid file."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
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
