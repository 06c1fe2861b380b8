"""The command-line reference, generated at build time from resode's own parser.

``.. resode-cli::`` (in a MyST page, inside an ``{eval-rst}`` fence) renders
:func:`resode.cli.build_parser`: the ``resode`` command and then each sub-command, with its
usage line exactly as ``resode COMMAND --help`` prints it, its description, and every option
(Sphinx ``option`` entries, so ``:option:`resode train --lr``` links to one) with its help text,
its default and its choices. ``resode train`` and ``resode demo`` parse every option to None
(a ``--config`` file fills what the command line left out): their defaults come from
``resode.cli.TRAIN_DEFAULTS`` and ``DEMO_DEFAULTS``, the tables the commands themselves apply.
Nothing is written by hand, so the page cannot drift from ``resode --help``.

:func:`cli_rst` (plain Python, no Sphinx) builds the reStructuredText; tests/test_docs_site.py
checks it against the parser.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["cli_rst", "resode_cli_rst", "setup"]

_NO_DEFAULT = (None, argparse.SUPPRESS)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser``, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help of ``action`` as ``--help`` prints it (``%(default)s`` and the like expanded)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split())


def _default(action: argparse.Action, defaults: Mapping[str, Any]) -> str | None:
    """The default of an option as reStructuredText, or None when it has none to show.

    ``defaults`` are the command's effective defaults by destination (``resode train`` parses
    every option to None so that a ``--config`` file can fill what the command line left out:
    its defaults are :data:`resode.cli.TRAIN_DEFAULTS`). A flag is "on" or "off"."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return None
    value = defaults.get(action.dest, action.default)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "on" if value == action.const else "off"
    if value in _NO_DEFAULT:
        return None
    if isinstance(value, (list, tuple)):
        value = " ".join(str(item) for item in value)
    return f"``{value}``"


def _signature(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--lr LR`` or ``SPEC.toml``: the option as the usage line writes it."""
    formatter = parser._get_formatter()
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _escape(text: str) -> str:
    """Plain help text as reStructuredText: option names (``--out``) as literals (so that
    ``--`` does not become a dash), everything else with its markup characters escaped."""
    pieces = _OPTION.split(text)
    for i, piece in enumerate(pieces):
        if i % 2:
            pieces[i] = f"``{piece}``"
        else:
            for char in ("\\", "*", "`", "|", "_"):
                piece = piece.replace(char, "\\" + char)
            pieces[i] = piece
    return "".join(pieces)


def _option_rst(
    parser: argparse.ArgumentParser, action: argparse.Action, defaults: Mapping[str, Any]
) -> list[str]:
    lines = [f".. option:: {_signature(parser, action)}", ""]
    help_text = _help_text(parser, action)
    if help_text:
        lines += [f"   {_escape(help_text)}", ""]
    facts = []
    default = _default(action, defaults)
    if default is not None:
        facts.append(f"Default: {default}.")
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        facts.append("Choices: " + ", ".join(f"``{choice}``" for choice in action.choices) + ".")
    if facts:
        lines += ["   " + " ".join(facts), ""]
    return lines


def _parser_rst(
    parser: argparse.ArgumentParser, program: str, underline: str, defaults: Mapping[str, Any]
) -> list[str]:
    """One command: title, usage, description, epilog and its options by group."""
    lines = [f".. _cli-{program.replace(' ', '-')}:", "", program, underline * len(program), ""]
    usage = parser.format_usage().strip()
    lines += [".. code-block:: text", ""] + [f"   {line}" for line in usage.splitlines()] + [""]
    if parser.description:
        lines += [_escape(" ".join(parser.description.split())), ""]
    lines += [f".. program:: {program}", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._SubParsersAction)]
        if not actions:
            continue
        title = (group.title or "options").capitalize()
        lines += [f".. rubric:: {_escape(title)}", ""]
        if group.description:
            lines += [_escape(" ".join(group.description.split())), ""]
        for action in actions:
            lines += _option_rst(parser, action, defaults)
    if parser.epilog:
        epilog = [f"   {line}" for line in parser.epilog.splitlines()]
        lines += [".. code-block:: text", "", *epilog, ""]
    return lines


def cli_rst(
    parser: argparse.ArgumentParser, defaults: Mapping[str, Mapping[str, Any]] | None = None
) -> list[str]:
    """The reStructuredText of the whole command line: ``parser`` and each sub-command, with
    ``defaults[command]`` the effective defaults of a command whose parser leaves them None."""
    defaults = defaults or {}
    program = parser.prog
    lines = _parser_rst(parser, program, "-", {})
    for name, sub in _subcommands(parser).items():
        lines += _parser_rst(sub, f"{program} {name}", "-", defaults.get(name, {}))
    return lines


def resode_cli_rst() -> list[str]:
    """:func:`cli_rst` of resode's own parser and defaults (what the page shows)."""
    from resode.cli import DEMO_DEFAULTS, TRAIN_DEFAULTS, build_parser

    return cli_rst(build_parser(), {"train": TRAIN_DEFAULTS, "demo": DEMO_DEFAULTS})


def setup(app: Any) -> dict[str, Any]:
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class ResodeCli(SphinxDirective):
        """``.. resode-cli::``: the whole ``resode`` command line."""

        has_content = False

        def run(self) -> list[nodes.Node]:
            lines = resode_cli_rst()
            container = nodes.section()
            container.document = self.state.document
            source = self.get_source_info()[0]
            content = StringList(lines, source=f"{source} (generated from resode.cli)")
            nested_parse_with_titles(self.state, content, container)
            return list(container.children)

    app.add_directive("resode-cli", ResodeCli)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
