"""The parts of :mod:`resode.config`'s fields: the option metadata, the checks of values and
the rules that say when an option applies to a run."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("spheres", "chess", "chess3", "tricolor", "moons", "spirals", "digits")
ADAPTIVE = ("dopri5", "tsit5", "bosh3")


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
        return self.check is boolean


def option(default: Any, help: str, check: Callable[[Any], Any], **kwargs: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, check, **kwargs)})


# --------------------------------------------------------------------------- checks


def to_number(value: Any, kind: type) -> Any:
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise OptionError("", "must be a string or a number", joined=False)
    word = "an integer" if kind is int else "a number"
    try:
        return kind(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"expected {word}, got {str(value)!r}") from None


def int_at_least(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = to_number(value, int)
        if number < minimum:
            raise ValueError(f"must be >= {minimum}, got {number}")
        return int(number)

    check.__name__ = "integer"
    return check


def number_in(*, positive: bool = False, unit: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number: float = to_number(value, float)
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


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError("", "must be true or false", joined=False)
    return value


def text(value: Any) -> str:
    if isinstance(value, (bool, list, dict)) or value is None:
        raise OptionError("", "must be a string or a number", joined=False)
    return str(value)


def choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise OptionError(
                "", f"must be one of {', '.join(choices)}; got {value!r}", joined=False
            )
        return str(value)

    return check


# --------------------------------------------------------------------------- applicability


def node_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --model node only" if o["model"] != "node" else None


def node_or_cde(o: Mapping[str, Any]) -> str | None:
    return "applies to --model node and cde only" if o["model"] == "resnet" else None


def cde_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --model cde only" if o["model"] != "cde" else None


def series_or_inputs(o: Mapping[str, Any]) -> str | None:
    """The path through observations: a neural CDE's series, or a neural ODE's inputs
    ``u(t)`` (``--model node --data`` with an array U; the file itself is read later)."""
    if o["model"] == "cde" or (o["model"] == "node" and o.get("data")):
        return None
    return "applies to --model cde, and to --model node with --data inputs U"


def points_only(o: Mapping[str, Any]) -> str | None:
    return "does not apply to --model cde" if o["model"] == "cde" else None


def series_csv_only(o: Mapping[str, Any]) -> str | None:
    """The columns of a long-format CSV file of series (``--model cde --data FILE.csv``, or
    a neural ODE's inputs: ``--model node --data FILE.csv --id ... --static ...``)."""
    if o["model"] == "resnet":
        return "applies to --model cde and node only"
    return None if o.get("data") else "applies with --data only"


def static_columns(o: Mapping[str, Any]) -> str | None:
    """The initial states' columns of a long-format CSV file of a neural ODE's inputs."""
    if o["model"] != "node" or not o.get("data") or not o.get("id"):
        return "applies to --model node with a long-format --data .csv (with --id)"
    return None


def resnet_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --model resnet only" if o["model"] != "resnet" else None


def adaptive_only(o: Mapping[str, Any]) -> str | None:
    if o["model"] == "resnet":
        return "applies to --model node and cde only"
    if o["method"] not in ADAPTIVE:
        return f"applies to the adaptive methods only (not --method {o['method']})"
    return None


def bottleneck_only(o: Mapping[str, Any]) -> str | None:
    field_ = o["field"]
    return f"applies to --field bottleneck only (not {field_})" if field_ != "bottleneck" else None


def final_time(o: Mapping[str, Any]) -> str | None:
    if o["model"] == "cde":
        return "does not apply to --model cde (each series ends at its last observation)"
    if o["model"] == "resnet" and o.get("h") is not None:
        return "does not apply with --h (a ResNet's h is T / layers otherwise)"
    return None


def turnpike_weight(o: Mapping[str, Any]) -> str | None:
    if o["model"] != "node":
        return "applies to --model node only"
    return None if o.get("turnpike") else "applies with --turnpike only"


def sgd_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --optimizer sgd only" if o["optimizer"] != "sgd" else None


def adam_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --optimizer adam only" if o["optimizer"] != "adam" else None


def step_schedule_only(o: Mapping[str, Any]) -> str | None:
    return "applies to --schedule step only" if o["schedule"] != "step" else None


def generated_only(o: Mapping[str, Any]) -> str | None:
    return "applies to the generated data sets, not --data" if o.get("data") else None


def data_only(o: Mapping[str, Any]) -> str | None:
    return None if o.get("data") else "applies with --data only"


def takes(dataset: str) -> set[str]:
    """The keyword arguments of a generated data set's function (digits: none)."""
    from . import datasets

    function = datasets.DATASETS.get(dataset)
    return set() if function is None else set(_parameters(function))


@functools.lru_cache(maxsize=64)
def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    # inspect.signature takes ~0.1 ms; every RunConfig.options() asks some 9 times
    return tuple(inspect.signature(function).parameters)


def dataset_argument(name: str, text: str) -> Callable[[Mapping[str, Any]], str | None]:
    """The rule of an option passed to the data set's function when it takes it."""

    def applies(o: Mapping[str, Any]) -> str | None:
        if o.get("data"):
            return "applies to the generated data sets, not --data"
        if name not in takes(o["dataset"]):
            users = [d for d in DATASETS if name in takes(d)]
            return f"applies to {text} {', '.join(users)} only, not {o['dataset']}"
        return None

    return applies


def test_size(o: Mapping[str, Any]) -> str | None:
    if o.get("validation"):
        return "does not apply with --validation (the test data are given)"
    return None
