"""Resolve a docstring's short cross-reference the way Python resolves the name where the
docstring is written.

A docstring is written in its defining module: ``fit``'s in ``resode.training.loop``, where
``:func:`constrain``` means ``resode.training.constrain`` and ``:meth:`NeuralODE.save``` in
``resode.io`` means ``resode.NeuralODE.save``. The API reference documents the object under its
public name (``resode.fit``), where Sphinx looks up ``resode.constrain`` and fails. When Sphinx
finds no target, this tries the enclosing scopes of the defining name, innermost first
(``resode.training.loop.fit``, ``resode.training.loop``, ``resode.training``, ``resode``), and
links to the first documented object found. Failing that, a name that imports (in one of those
scopes, or in the page's current module) as an object documented under another public name
links there: ``resode.training.fit`` is ``resode.fit``. A name documented nowhere stays
unresolved: under ``-n -W`` that is still a build error.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

__all__ = ["candidates", "setup"]

_DOCSTRING_OF = re.compile(r"docstring of ([\w.]+)")


def candidates(defining_name: str, target: str) -> list[str]:
    """The full names ``target`` may mean inside ``defining_name``'s docstring, innermost
    scope first."""
    parts = defining_name.split(".")
    return [".".join([*parts[:end], target]) for end in range(len(parts), 0, -1)]


def _import(name: str) -> Any:
    """The object that the dotted ``name`` imports as, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        try:
            for attribute in parts[end:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


_DOCUMENTED_OBJECTS: dict[int, dict[int, str]] = {}  # id(env) -> id(object) -> documented name


def _documented_name(env: Any, obj: Any) -> str | None:
    """The shortest documented name of ``obj`` (``resode.fit`` for ``resode.training.fit``)."""
    by_object = _DOCUMENTED_OBJECTS.get(id(env))
    if by_object is None:
        by_object = {}
        names = sorted(env.get_domain("py").objects, key=lambda n: (n.count("."), len(n), n))
        for name in names:
            documented = _import(name)
            if documented is not None and not isinstance(documented, (str, int, float, tuple)):
                by_object.setdefault(id(documented), name)
        _DOCUMENTED_OBJECTS.clear()
        _DOCUMENTED_OBJECTS[id(env)] = by_object
    return by_object.get(id(obj))


def _resolve(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    from sphinx.util.nodes import make_refnode

    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target or target.startswith((".", "~")):
        return None
    found = _DOCSTRING_OF.search(str(node.source or ""))
    names = candidates(found.group(1), target) if found else []
    if node.get("py:module"):
        names.append(f"{node['py:module']}.{target}")
    domain = env.get_domain("py")
    objects = domain.objects
    for name in names:
        if name in objects:
            return make_refnode(
                app.builder, node["refdoc"], objects[name].docname, objects[name].node_id,
                contnode, name,
            )  # fmt: skip
    for name in names:
        obj = _import(name)
        documented = _documented_name(env, obj) if obj is not None else None
        if documented is not None:
            entry = objects[documented]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, documented
            )
    return None


def setup(app: Any) -> dict[str, Any]:
    app.connect("missing-reference", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
