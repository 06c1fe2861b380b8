"""What every ``resode`` command shares: the one-line usage errors and the program name."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

__all__ = ["PROG", "Parser", "UsageError", "int_at_least", "subparser"]

PROG = "resode"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(Exception):
    """A bad option value found after parsing; becomes a one-line message and exit code 2."""


def int_at_least(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The sub-command parser ``name`` of the ``resode`` parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise KeyError(name)  # pragma: no cover
