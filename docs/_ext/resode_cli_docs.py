"""The command-line reference, generated at build time from resode's own parser.

``.. resode-cli::`` (in MyST: a ``{resode-cli}`` fence) renders :func:`resode.cli.build_parser`:
the ``resode`` command and then each sub-command, with its usage line exactly as
``resode COMMAND --help`` prints it, its description, and every option (Sphinx ``option``
entries, so ``:option:`resode train --lr``` links to one) with its help text and its default.
Nothing is written by hand, so the page cannot drift from ``resode --help``.

:func:`cli_rst` (plain Python, no Sphinx) builds the reStructuredText; tests/test_docs_site.py
checks it against the parser.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["cli_rst", "setup"]

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


def _default(action: argparse.Action) -> str | None:
    """The default of an option, or None when it has none to show (flags, help, version)."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if action.default in _NO_DEFAULT:
        return "none"
    if isinstance(action.default, (list, tuple)):
        return " ".join(str(value) for value in action.default) or "none"
    return str(action.default)


def _signature(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--lr LR`` or ``SPEC.toml``: the option as the usage line writes it."""
    formatter = parser._get_formatter()
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest)(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def _escape(text: str) -> str:
    """Plain help text made safe for reStructuredText (``*``, backquotes, ``|``, ``_``)."""
    for char in ("\\", "*", "`", "|", "_"):
        text = text.replace(char, "\\" + char)
    return text


def _option_rst(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    lines = [f".. option:: {_signature(parser, action)}", ""]
    help_text = _help_text(parser, action)
    if help_text:
        lines += [f"   {_escape(help_text)}", ""]
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        choices = ", ".join(f"``{choice}``" for choice in action.choices)
        lines += [f"   Choices: {choices}.", ""]
    default = _default(action)
    if default is not None:
        lines += [f"   Default: ``{default}``." if default not in ("none", "off", "on")
                  else f"   Default: {default}.", ""]  # fmt: skip
    return lines


def _parser_rst(parser: argparse.ArgumentParser, program: str, underline: str) -> list[str]:
    """One command: title, usage, description, epilog and its options by group."""
    lines = [f".. _cli-{program.replace(' ', '-')}:", "", program, underline * len(program), ""]
    usage = parser.format_usage().strip()
    lines += ["::", ""] + [f"   {line}" for line in usage.splitlines()] + [""]
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
            lines += _option_rst(parser, action)
    if parser.epilog:
        lines += ["::", ""] + [f"   {line}" for line in parser.epilog.splitlines()] + [""]
    return lines


def cli_rst(parser: argparse.ArgumentParser) -> list[str]:
    """The reStructuredText of the whole command line: ``parser`` and each sub-command."""
    program = parser.prog
    lines = _parser_rst(parser, program, "-")
    for name, sub in _subcommands(parser).items():
        lines += _parser_rst(sub, f"{program} {name}", "-")
    return lines


def setup(app: Any) -> dict[str, Any]:
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class ResodeCli(SphinxDirective):
        """``.. resode-cli::``: the whole ``resode`` command line."""

        has_content = False

        def run(self) -> list[nodes.Node]:
            from resode.cli import build_parser

            lines = cli_rst(build_parser())
            container = nodes.section()
            container.document = self.state.document
            source = self.get_source_info()[0]
            content = StringList(lines, source=f"{source} (generated from resode.cli)")
            nested_parse_with_titles(self.state, content, container)
            return list(container.children)

    app.add_directive("resode-cli", ResodeCli)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
