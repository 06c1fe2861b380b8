"""Until the models-training branch (issue 23, part A) is merged: the public model protocol
names that the front ends use, aliased onto today's models. The lead removes this module
(and its imports in run.py, cli/ and sweep/) after the merge."""

from __future__ import annotations

from typing import Any

from . import training
from .models import NeuralODE, ResNet


def _install() -> None:
    for cls in (ResNet, NeuralODE):
        if not hasattr(cls, "kind"):
            cls.kind = property(lambda self: self._kind)  # type: ignore[attr-defined]
        if not hasattr(cls, "class_labels"):
            cls.class_labels = property(  # type: ignore[attr-defined]
                lambda self: getattr(self, "_class_labels", None),
                lambda self, value: setattr(self, "_class_labels", value),
            )
        for name in ("feature_names", "target_name", "scaling"):
            if not hasattr(cls, name):
                setattr(cls, name, None)  # plain attributes, not saved until part A


_install()
save_checkpoint: Any = getattr(training, "save_checkpoint", None) or training._save_checkpoint
