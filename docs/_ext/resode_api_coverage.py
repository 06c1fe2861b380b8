"""Every public name has an API reference entry, or the build warns (an error under ``-W``).

The public names of a module are its ``__all__`` (without dunder names such as
``__version__``); a module without ``__all__`` counts the functions and classes it defines.
The modules are conf.py's ``resode_api_modules``. After Sphinx has read every page, each name
must be a documented Python object (``resode.fit``) or module (``resode.datasets``), or the
same object must be documented under another module's public name (``resode.training.fit`` is
``resode.fit``), so a name added to ``__all__`` without a line in docs/api/ fails the build.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

__all__ = ["public_names", "setup"]


def public_names(module: ModuleType) -> list[str]:
    """The names of ``module`` that the API reference documents."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == module.__name__
        ]
    return [name for name in names if not (name.startswith("__") and name.endswith("__"))]


def _documented_elsewhere(modules: list[str], obj: object, documented: set[str]) -> bool:
    """Whether ``obj`` is documented under its name in another module (``resode.History`` is
    ``resode.training.History``: one entry, which the other page links to)."""
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            if getattr(module, name) is obj and f"{module_name}.{name}" in documented:
                return True
    return False


def _check(app: Any, env: Any) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    domain = env.get_domain("py")
    documented = {name for name, *_ in domain.get_objects()}
    for module_name in app.config.resode_api_modules:
        if module_name not in documented:
            logger.warning("API reference: module %s has no page", module_name)
            continue
        module = importlib.import_module(module_name)
        for name in public_names(module):
            if f"{module_name}.{name}" not in documented and not _documented_elsewhere(
                app.config.resode_api_modules, getattr(module, name), documented
            ):
                logger.warning(
                    "API reference: %s.%s is public (in __all__) but has no entry under docs/api/",
                    module_name,
                    name,
                )


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("resode_api_modules", [], "env")
    app.connect("env-check-consistency", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
