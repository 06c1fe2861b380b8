"""python/resode/_core.pyi against the compiled core: the same names, and for every function
the same parameters (names, positional or keyword-only, defaults) as the signature pybind11
writes on the first line of its docstring. mypy's stubtest (CI: .ci/run) checks the names
and the classes, but it cannot read the signatures of pybind11's builtins."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from resode import _core

STUB = Path(__file__).resolve().parents[1] / "python" / "resode" / "_core.pyi"
_MISSING = object()  # a parameter without a default


def _stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _stub_names() -> set[str]:
    names = set()
    for node in ast.parse(STUB.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def _stub_parameters(node: ast.FunctionDef) -> list[tuple[str, bool, Any]]:
    """(name, keyword-only, default) of each parameter of the stub's function."""
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [_MISSING] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults
    ]
    out = [(a.arg, False, d) for a, d in zip(positional, defaults)]
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append((a.arg, True, _MISSING if d is None else ast.literal_eval(d)))
    return out


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _runtime_parameters(name: str) -> list[tuple[str, bool, Any]]:
    """(name, keyword-only, default) from pybind11's ``name(a: T, *, b: T = 1) -> R``, or
    from the CPython text signature a binding declares instead (``inspect.signature``)."""
    function = getattr(_core, name)
    if getattr(function, "__text_signature__", None):
        return [
            (p.name, p.kind is p.KEYWORD_ONLY, _MISSING if p.default is p.empty else p.default)
            for p in inspect.signature(function).parameters.values()
        ]
    first = function.__doc__.splitlines()[0]
    assert first.startswith(name + "("), first
    inside = first[len(name) + 1 : first.rindex(") ->")]
    out, keyword_only = [], False
    for part in _split_top_level(inside):
        if part == "*":
            keyword_only = True
            continue
        declared, _, default = part.partition(" = ")
        value = ast.literal_eval(default) if default else _MISSING
        out.append((declared.partition(":")[0].strip(), keyword_only, value))
    return out


def _runtime_names() -> set[str]:
    return {n for n in dir(_core) if not n.startswith("_")}


def test_the_stub_declares_exactly_the_core_s_public_names() -> None:
    assert _stub_names() == _runtime_names()


@pytest.mark.parametrize("name", sorted(_stub_functions()))
def test_each_stub_function_has_the_core_s_parameters(name: str) -> None:
    assert _stub_parameters(_stub_functions()[name]) == _runtime_parameters(name)


def test_the_comparison_sees_a_drifted_parameter() -> None:
    """The check itself: a renamed parameter, a lost default and a keyword made positional
    are all differences."""
    stub = _stub_parameters(_stub_functions()["trajectory"])
    runtime = _runtime_parameters("trajectory")
    assert stub == runtime
    renamed = [("Y", *stub[0][1:]), *stub[1:]]
    no_default = [*stub[:-1], (stub[-1][0], stub[-1][1], _MISSING)]
    positional = [*stub[:2], (stub[2][0], False, stub[2][2]), *stub[3:]]
    for drifted in (renamed, no_default, positional):
        assert drifted != runtime
