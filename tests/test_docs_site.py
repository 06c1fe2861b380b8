"""The documentation site's own code (docs/_ext/), without Sphinx: the command-line reference
says what the parser says, the gallery's hooks, and the rules that resolve the API reference's
names. CI builds the whole site with warnings as errors after the tests (.ci/run)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from resode.cli import DEMO_DEFAULTS, TRAIN_DEFAULTS, build_parser
from resode.cli.common import subparser

EXT = Path(__file__).resolve().parents[1] / "docs" / "_ext"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_docs_ext_{name}", EXT / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cli_docs = _load("resode_cli_docs")
gallery = _load("resode_gallery")
coverage = _load("resode_api_coverage")
xref = _load("resode_xref")


def _entries(lines: list[str]) -> dict[str, dict[str, str]]:
    """program -> option signature -> the text of its entry, from the generated RST."""
    entries: dict[str, dict[str, str]] = {}
    program = ""
    current: list[str] = []
    for line in lines:
        if line.startswith(".. program:: "):
            program = line.split(":: ", 1)[1]
            entries[program] = {}
        elif line.startswith(".. option:: "):
            current = []
            entries[program][line.split(":: ", 1)[1]] = current  # type: ignore[assignment]
        elif line.startswith("   ") and current is not None:
            current.append(line.strip())
        elif line.startswith(".. "):
            current = None  # type: ignore[assignment]
    return {p: {k: " ".join(v) for k, v in opts.items()} for p, opts in entries.items()}


def test_the_cli_reference_lists_every_command_and_option_of_the_parser() -> None:
    parser = build_parser()
    entries = _entries(cli_docs.resode_cli_rst())
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(entries) == {"resode"} | {f"resode {name}" for name in commands.choices}
    for name in commands.choices:
        documented = " ".join(entries[f"resode {name}"])
        for action in subparser(parser, name)._actions:
            for option in action.option_strings or [action.metavar or action.dest]:
                assert re.search(rf"(^|[ ,]){re.escape(option)}([ ,]|$)", documented), (
                    name,
                    option,
                )


@pytest.mark.parametrize(
    ("command", "defaults"), [("train", TRAIN_DEFAULTS), ("demo", DEMO_DEFAULTS)]
)
def test_the_cli_reference_gives_the_defaults_the_command_applies(
    command: str, defaults: dict[str, object]
) -> None:
    # resode train parses every option to None (a --config file fills the gaps): the page
    # must show the command's effective defaults, not argparse's None
    entries = _entries(cli_docs.resode_cli_rst())[f"resode {command}"]
    by_option = {
        o: a for a in subparser(build_parser(), command)._actions for o in a.option_strings
    }
    assert by_option["--lr"].default is None  # what a reader of argparse alone would see
    assert f"Default: ``{defaults['lr']}``." in entries["--lr LR"]
    checked = 0
    for signature, text in entries.items():
        action = by_option[signature.split(",")[0].split()[0]]
        value = defaults.get(action.dest)
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            assert ("Default: on." if value == action.const else "Default: off.") in text
            checked += 1
        elif value is not None and action.dest != "help":
            assert f"Default: ``{value}``." in text, signature
            checked += 1
    assert checked >= 40


def test_the_cli_reference_keeps_option_names_and_markup_literal() -> None:
    text = cli_docs._escape("see --out and -h, a *star* and |bar| and x_1 (0-based)")
    assert text == r"see ``--out`` and ``-h``, a \*star\* and \|bar\| and x\_1 (0-based)"


def test_the_gallery_runs_each_example_but_those_needing_a_missing_framework(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain.py").write_text("import resode\n")
    (tmp_path / "with_torch.py").write_text("import numpy\nimport torch\n")
    (tmp_path / "layer.py").write_text("from resode.torch import NeuralODE\n")
    (tmp_path / "bridge.py").write_text("from resode import jax as rjax\n")
    pattern = gallery.runnable_pattern(tmp_path, ["torch", "jax"])
    runs = {p.name for p in tmp_path.glob("*.py") if re.search(pattern, str(p))}
    assert runs == {"plain.py"}
    assert re.search(gallery.runnable_pattern(tmp_path, ["jax"]), str(tmp_path / "layer.py"))


def test_the_gallery_shows_the_images_an_example_block_wrote(tmp_path: Path) -> None:
    shown: dict[Path, int] = {}
    (tmp_path / "a.png").write_bytes(b"png")
    assert gallery._new_images(tmp_path, shown) == [tmp_path / "a.png"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.gif").write_bytes(b"gif")
    (tmp_path / "notes.txt").write_text("not an image")
    assert gallery._new_images(tmp_path, shown) == [tmp_path / "sub" / "b.gif"]
    assert gallery._new_images(tmp_path, shown) == []  # each image is shown once


def test_reset_argv_gives_each_example_its_own_scratch_folder() -> None:
    first = gallery.reset_argv({}, {"src_file": "/x/examples/one.py"})
    second = gallery.reset_argv({}, {"src_file": "/x/examples/two.py"})
    assert len(first) == len(second) == 1 and first != second
    assert Path(first[0]).parent.is_dir() and "one" in Path(first[0]).parent.name


def test_a_short_reference_resolves_in_the_scopes_of_its_docstring() -> None:
    assert xref.candidates("resode.training.loop.fit", "constrain") == [
        "resode.training.loop.fit.constrain",
        "resode.training.loop.constrain",
        "resode.training.constrain",
        "resode.constrain",
    ]
    import resode

    assert xref._import("resode.training.fit") is resode.fit
    assert xref._import("resode.training.nothing_here") is None


def test_the_public_names_of_a_module_without_all_are_its_own_functions_and_classes() -> None:
    module = ModuleType("fake")
    exec("import os\nfrom math import sqrt\nX = 1\ndef f(): pass\nclass C: pass\ndef _g(): pass",
         module.__dict__)  # fmt: skip
    for value in (module.f, module.C):
        value.__module__ = "fake"
    assert coverage.public_names(module) == ["f", "C"]
    module.__all__ = ["f", "__version__", "X"]
    assert coverage.public_names(module) == ["f", "X"]
