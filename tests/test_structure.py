"""The Python package's structure, read from the source with ``ast`` (ARCHITECTURE.md): no
import circle, no private name taken from a public sibling module, no model private state read
outside the models package, no module over 600 lines but the NumPy reference."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "resode"
LONGEST = 600
MODEL_NAMES = {"model", "models", "m", "fitted", "loaded", "model_"}  # how callers name models


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _modules()


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for each import of ``name`` (any depth)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            taken = [a.name for a in node.names]
            for t in taken:  # `from . import x` imports the module x
                if f"{target}.{t}" in MODULES:
                    found.append((f"{target}.{t}", []))
            found.append((target, taken))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return [(t, taken) for t, taken in found if t in MODULES]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_is_longer_than_600_lines_but_the_reference() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > LONGEST
        and name != "resode.reference"
    }
    assert not long, f"modules over {LONGEST} lines: {long}"


def test_no_import_circle() -> None:
    """No circle among the modules (a package's __init__ importing its own submodules, which
    import siblings, is not a circle: edges into a package's __init__ from inside it are
    left out)."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        edges = set()
        for target, _ in _imports(name):
            inside = name.startswith(target + ".") and MODULES[target].name == "__init__.py"
            if target != name and not inside:
                edges.add(target)
        graph[name] = edges
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_private_name_is_taken_from_a_public_sibling() -> None:
    """``from .sibling import _name`` only within one package (its private helpers), never
    across the package's public modules."""
    bad = []
    for name in MODULES:
        for target, taken in _imports(name):
            if target == "resode._core" or _is_private(target.rpartition(".")[2]):
                continue  # the compiled core, and private modules, are for use
            # within one subpackage (its modules share private helpers), never between the
            # top-level modules, each a public module of its own
            same_package = _package_of(name) == _package_of(target) != "resode"
            # private modules (resode._core, a package's _common) are for use: names only
            private = [t for t in taken if _is_private(t) and t != "_core"]
            private = [t for t in private if f"{target}.{t}" not in MODULES]
            if private and not same_package:
                bad.append(f"{name} takes {private} from {target}")
        bad.extend(_private_attributes_of_imported_modules(name))
    assert not bad, bad


def _private_attributes_of_imported_modules(name: str) -> list[str]:
    """``sibling._name`` where ``sibling`` is a public module of another package imported
    by name (``from . import cli`` ... ``cli._subparser``)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    aliases = {}
    for target, taken in _imports(name):
        for t in taken:
            module = f"{target}.{t}"
            if (
                module in MODULES
                and not _is_private(t)
                and _package_of(module) != _package_of(name)
            ):
                aliases[t] = module
    return [
        f"{name}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and _is_private(node.attr)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
    ]


def test_no_model_private_state_is_read_outside_the_models_package() -> None:
    bad = []
    for name, path in MODULES.items():
        if name.startswith("resode.models") or name == "resode.reference":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and _is_private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in MODEL_NAMES
            ):
                bad.append(f"{name}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not bad, bad
