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
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import _options as opt
from ._options import Option, OptionError
from ._toml import read_toml, toml_value

if TYPE_CHECKING:
    from .models.options import Activation, Field, Gradient, Loss, Method, Readout, StepControl

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

#: Keys of older files and specs: ``key -> field`` whose value is the negation.
NEGATED = {"no_shuffle": "shuffle", "no_plots": "plots"}


# --------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class DataConfig:
    """Where the data come from: a generated data set, or a file (``data``)."""

    dataset: str = opt.option(
        "spheres",
        "data set",
        opt.choice(*opt.DATASETS),
        applies=opt.generated_only,
        choices=opt.DATASETS,
    )
    data: str | None = opt.option(
        None,
        "train on your own file instead of --dataset: .npz with X (N, dim) and y, or .csv "
        "(--model cde: .npz with U (N, L, channels), times and y, or a long-format .csv; "
        "--model node with inputs u(t): .npz with X, U (N, L, inputs), times and y, or a "
        "long-format .csv with --id and --static)",
        opt.text,
        metavar="PATH",
    )
    target: str | None = opt.option(
        None,
        "the target column of a --data .csv file (default: the last)",
        opt.text,
        applies=opt.data_only,
        metavar="NAME|INDEX",
    )
    features: str | None = opt.option(
        None,
        "comma-separated feature columns of --data (names or 0-based indices; default: all but "
        "the target)",
        opt.text,
        applies=opt.data_only,
        metavar="COLUMNS",
    )
    id: str | None = opt.option(
        None,
        "the series column of a long-format --data .csv (one row per observation; --model cde, "
        "or node with --static)",
        opt.text,
        applies=opt.series_csv_only,
        metavar="NAME|INDEX",
    )
    time: str | None = opt.option(
        None,
        "the time column of a long-format --data .csv (default: the row order in each series)",
        opt.text,
        applies=opt.series_csv_only,
        metavar="NAME|INDEX",
    )
    static: str | None = opt.option(
        None,
        "comma-separated columns of a long-format --data .csv that hold each series' initial "
        "state X (one value per series); the other columns are the inputs u(t) of --model node",
        opt.text,
        applies=opt.static_columns,
        metavar="COLUMNS",
    )
    validation: str | None = opt.option(
        None,
        "a test file like --data (instead of splitting off --test-size)",
        opt.text,
        applies=opt.data_only,
        metavar="PATH",
    )
    n_samples: int = opt.option(
        1000,
        "samples in all (digits: all 1797)",
        opt.int_at_least(4),
        applies=opt.generated_only,
        metavar="N",
    )
    dim: int | None = opt.option(
        None,
        "dimension of the spheres data set (default 2)",
        opt.int_at_least(1),
        applies=opt.dataset_argument("dim", "--dataset"),
    )
    noise: float | None = opt.option(
        None,
        "noise of the data set (its function's default otherwise)",
        opt.number_in(),
        applies=opt.dataset_argument("noise", "the data sets"),
    )
    style: str = opt.option(
        "resode",
        "the data laws: resode's or leia's",
        opt.choice("resode", "leia"),
        applies=opt.dataset_argument("style", "the data sets"),
        choices=("resode", "leia"),
    )
    scale: str = opt.option(
        "standard",
        "standardise the features (and real targets) of --data; the statistics go into the "
        "model file and predict applies them",
        opt.choice("standard", "none"),
        applies=opt.data_only,
        choices=("standard", "none"),
    )
    test_size: float = opt.option(
        0.2,
        "held-out fraction",
        opt.number_in(positive=True, unit=True),
        applies=opt.test_size,
        metavar="FRACTION",
    )
    seed: int = opt.option(0, "seed of data, init and batches", opt.int_at_least(0))


def _choices(name: str) -> tuple[str, ...]:
    from . import models

    return tuple(getattr(models, name))


_FIELDS, _ACTIVATIONS = _choices("FIELDS"), _choices("ACTIVATIONS")
_METHODS, _GRADIENTS = _choices("METHODS"), _choices("GRADIENTS")
_LOSSES, _READOUTS = _choices("LOSSES"), _choices("READOUTS")
_INTERPOLATIONS = _choices("INTERPOLATIONS")


@dataclass(frozen=True)
class ModelConfig:
    """The model: a neural ODE (``model = "node"``), a ResNet or a neural CDE of time series
    (``model = "cde"``), and its loss terms."""

    model: str = opt.option(
        "node",
        "model: a neural ODE, a ResNet, or a neural CDE of time series (--data series files)",
        opt.choice("node", "resnet", "cde"),
        choices=("node", "resnet", "cde"),
    )
    state: int = opt.option(
        16, "width of a neural CDE's hidden state", opt.int_at_least(1), applies=opt.cde_only
    )
    interpolation: Literal["linear", "cubic"] = opt.option(  # models.options.Interpolation
        "cubic",
        "the path through a series' observations (--model cde, or node's inputs U)",
        opt.choice(*_INTERPOLATIONS),
        applies=opt.series_or_inputs,
        choices=_INTERPOLATIONS,
    )
    output_activation: Activation | None = opt.option(
        None,
        "activation on a neural CDE field's outputs (tanh keeps them bounded)",
        opt.choice(*_ACTIVATIONS),
        applies=opt.cde_only,
        choices=_ACTIVATIONS,
    )
    time_channel: bool = opt.option(
        True,
        "add the observation times as the first channel of the series",
        opt.boolean,
        applies=opt.cde_only,
    )
    field: Field = opt.option("bottleneck", "vector field", opt.choice(*_FIELDS), choices=_FIELDS)
    hidden: int = opt.option(
        32, "bottleneck width", opt.int_at_least(1), applies=opt.bottleneck_only
    )
    augment: int = opt.option(
        1, "zero dimensions added", opt.int_at_least(0), applies=opt.points_only
    )
    activation: Activation = opt.option(
        "tanh", "activation", opt.choice(*_ACTIVATIONS), choices=_ACTIVATIONS
    )
    T: float = opt.option(5.0, "final time", opt.number_in(positive=True), applies=opt.final_time)
    pieces: int = opt.option(10, "control pieces", opt.int_at_least(1), applies=opt.node_only)
    substeps: int = opt.option(
        1,
        "steps per piece (cde: per interval between observations)",
        opt.int_at_least(1),
        applies=opt.node_or_cde,
    )
    method: Method = opt.option(
        "rk4", "integrator", opt.choice(*_METHODS), applies=opt.node_or_cde, choices=_METHODS
    )
    layers: int = opt.option(10, "ResNet layers", opt.int_at_least(1), applies=opt.resnet_only)
    h: float | None = opt.option(
        None,
        "ResNet step size (default T / layers)",
        opt.number_in(positive=True),
        applies=opt.resnet_only,
    )
    classes: int | None = opt.option(
        None, "outputs (default: inferred from the data)", opt.int_at_least(1)
    )
    loss: Loss = opt.option("cross_entropy", "loss", opt.choice(*_LOSSES), choices=_LOSSES)
    weight_decay: float = opt.option(0.0, "weight decay on theta", opt.number_in())
    readout: Readout = opt.option(
        "linear",
        "the readout of the final state",
        opt.choice(*_READOUTS),
        applies=opt.points_only,
        choices=_READOUTS,
    )
    l1: float = opt.option(
        0.0, "L1 penalty on the controls", opt.number_in(), applies=opt.points_only
    )
    decay_readout: bool = opt.option(
        False, "weight decay on P and c too", opt.boolean, applies=opt.points_only
    )
    turnpike: bool = opt.option(
        False, "integrated (turnpike) loss", opt.boolean, applies=opt.node_only
    )
    turnpike_weight: float = opt.option(
        1.0,
        "weight of the integrated loss",
        opt.number_in(positive=True),
        applies=opt.turnpike_weight,
    )
    gradient: Gradient = opt.option(
        "discrete", "gradient", opt.choice(*_GRADIENTS), applies=opt.node_or_cde, choices=_GRADIENTS
    )
    checkpoints: int | None = opt.option(
        None, "stored states (discrete gradient)", opt.int_at_least(1), applies=opt.node_only
    )
    rtol: float | None = opt.option(
        None,
        "adaptive methods' relative tolerance (1e-7)",
        opt.number_in(),
        applies=opt.adaptive_only,
    )
    atol: float | None = opt.option(
        None,
        "adaptive methods' absolute tolerance (1e-9)",
        opt.number_in(),
        applies=opt.adaptive_only,
    )
    step_control: StepControl | None = opt.option(
        None,
        "adaptive step control (sample)",
        opt.choice("sample", "batch"),
        applies=opt.adaptive_only,
        choices=("sample", "batch"),
    )
    first_step: float | None = opt.option(
        None,
        "adaptive methods' first step (auto)",
        opt.number_in(positive=True),
        applies=opt.adaptive_only,
    )
    max_steps: int | None = opt.option(
        None,
        "adaptive methods' steps per sample and piece (100000)",
        opt.int_at_least(1),
        applies=opt.adaptive_only,
    )
    dtype: str = opt.option(
        "float64", "dtype", opt.choice("float64", "float32"), choices=("float64", "float32")
    )
    fixed_projection: bool = opt.option(False, "freeze P and c", opt.boolean)


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimiser and its learning-rate schedule."""

    optimizer: str = opt.option(
        "adam", "optimiser", opt.choice("adam", "sgd"), choices=("adam", "sgd")
    )
    lr: float = opt.option(1e-2, "learning rate", opt.number_in(positive=True))
    momentum: float = opt.option(0.0, "SGD momentum", opt.number_in(), applies=opt.sgd_only)
    nesterov: bool = opt.option(False, "SGD Nesterov momentum", opt.boolean, applies=opt.sgd_only)
    beta1: float = opt.option(0.9, "Adam beta1", opt.number_in(), applies=opt.adam_only)
    beta2: float = opt.option(0.999, "Adam beta2", opt.number_in(), applies=opt.adam_only)
    eps: float = opt.option(1e-8, "Adam eps", opt.number_in(positive=True), applies=opt.adam_only)
    schedule: str = opt.option(
        "none",
        "lr schedule: cosine over the epochs, or step (times --gamma every --step-size)",
        opt.choice("none", "cosine", "step"),
        choices=("none", "cosine", "step"),
    )
    step_size: int = opt.option(
        100,
        "epochs per step of --schedule step",
        opt.int_at_least(1),
        applies=opt.step_schedule_only,
    )
    gamma: float = opt.option(
        0.1,
        "factor of --schedule step",
        opt.number_in(positive=True),
        applies=opt.step_schedule_only,
    )


@dataclass(frozen=True)
class TrainingConfig:
    """The training loop and what a run writes besides its model."""

    epochs: int = opt.option(300, "epochs", opt.int_at_least(0))
    batch_size: int | None = opt.option(
        None, "samples per step (default: full batch)", opt.int_at_least(1)
    )
    shuffle: bool = opt.option(True, "shuffle the data each epoch", opt.boolean)
    bound: float | None = opt.option(
        None, "L1+Linf bound on the controls", opt.number_in(positive=True)
    )
    early_stopping: int = opt.option(
        0,
        "stop after PATIENCE epochs without a better validation loss and keep the best "
        "epoch's model (0: off)",
        opt.int_at_least(0),
        metavar="PATIENCE",
    )
    threads: int | None = opt.option(
        None, "threads of the core (default: all)", opt.int_at_least(1), results=False, sweep=False
    )
    checkpoint_every: int | None = opt.option(
        None,
        "write OUT/checkpoint.npz every K epochs",
        opt.int_at_least(1),
        metavar="K",
        results=False,
        sweep=False,
    )
    log_every: int | None = opt.option(
        None,
        "when stderr is not a terminal: a log line every N epochs (default: ~20 per run)",
        opt.int_at_least(1),
        metavar="N",
        results=False,
        sweep=False,
    )
    plots: bool = opt.option(True, "draw the figures", opt.boolean, results=False)


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "training": TrainingConfig,
}


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
        for key in ("no_progress", "no-progress"):  # the command's display, in older files
            options.pop(key, None)
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
            lines.append(f"{key.replace('_', '-')} = {toml_value(value)}")
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


def normalise(options: Mapping[str, Any], name: Callable[[str], str] = str) -> dict[str, Any]:
    """Keys with ``_`` for ``-`` and the negated keys of older files (``no_shuffle``) turned
    into their fields; ``ValueError`` when one is given twice."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        key = str(key).replace("-", "_")
        if key in NEGATED:
            try:
                value = not opt.boolean(value)
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
