"""What a model records about its data besides its parameters: the original class labels,
the feature and target names, and the scaling a front end standardised the data with. Each is
``None`` by default, saved in the model file when set, and checked here on assignment and on
loading."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .options import check_bool

__all__ = [
    "SCALING_KEYS",
    "RecordedData",
    "check_class_labels",
    "check_feature_names",
    "check_scaling",
    "check_target_name",
]

SCALING_KEYS = ("X_mean", "X_scale", "y_mean", "y_scale", "u_mean", "u_scale")


def _as_list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        if not isinstance(value, np.ndarray) or value.ndim != 1:
            raise ValueError(f"{name} must be a list, got {value!r}")
    return list(value)


def check_class_labels(labels: Any, classes: int) -> list[int | str] | None:
    """``labels`` as a list of ``classes`` distinct ints or strings (None stays None)."""
    if labels is None:
        return None
    out: list[int | str] = []
    for label in _as_list("class labels", labels):
        if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
            out.append(int(label))
        elif isinstance(label, str):
            out.append(label)
        else:
            raise ValueError(f"class labels must be integers or strings, got {label!r}")
    if len(out) != classes or len(set(out)) != len(out):
        raise ValueError(f"class labels must be {classes} distinct labels, got {out!r}")
    return out


def check_feature_names(names: Any, dim: int) -> list[str] | None:
    """``names`` as a list of ``dim`` distinct strings (None stays None)."""
    if names is None:
        return None
    out = _as_list("feature_names", names)
    if not all(isinstance(n, str) for n in out):
        raise ValueError(f"feature_names must be strings, got {out!r}")
    if len(out) != dim or len(set(out)) != len(out):
        raise ValueError(f"feature_names must be {dim} distinct names (one per input), got {out!r}")
    return out


def check_target_name(name: Any) -> str | None:
    """``name`` as a string (None stays None)."""
    if name is not None and not isinstance(name, str):
        raise ValueError(f"target_name must be a string or None, got {name!r}")
    return name


def _floats(key: str, value: Any, size: int, positive: bool) -> list[float]:
    values = _as_list(f"scaling[{key!r}]", value)
    ok = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)
    if not ok or len(values) != size:
        raise ValueError(f"scaling[{key!r}] must be a list of {size} numbers, got {value!r}")
    out = [float(v) for v in values]
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in out):
        kind = "finite numbers > 0" if positive else "finite numbers"
        raise ValueError(f"scaling[{key!r}] must hold {kind}, got {out!r}")
    return out


def check_scaling(
    scaling: Any, dim: int, outputs: int, inputs: int = 0
) -> dict[str, list[float] | None] | None:
    """``scaling`` as ``{"X_mean", "X_scale": dim floats, "y_mean", "y_scale": outputs floats
    or None}`` (None stays None): the statistics a front end standardised the data with,
    ``x_scaled = (x - X_mean) / X_scale``. A model with ``inputs`` channels of ``u(t)`` also
    has ``"u_mean", "u_scale"``: ``inputs`` floats each, or None (``u`` not scaled)."""
    if scaling is None:
        return None
    if not isinstance(scaling, Mapping) or set(scaling) - set(SCALING_KEYS):
        raise ValueError(f"scaling must be a dict with keys {list(SCALING_KEYS)}, got {scaling!r}")
    out: dict[str, list[float] | None] = {
        "X_mean": _floats("X_mean", scaling.get("X_mean"), dim, False),
        "X_scale": _floats("X_scale", scaling.get("X_scale"), dim, True),
    }
    pairs = [("y", outputs)] + ([("u", inputs)] if inputs else [])
    for name, size in pairs:
        for key, positive in ((f"{name}_mean", False), (f"{name}_scale", True)):
            value = scaling.get(key)
            out[key] = None if value is None else _floats(key, value, size, positive)
        if (out[f"{name}_mean"] is None) != (out[f"{name}_scale"] is None):
            raise ValueError(
                f"scaling['{name}_mean'] and scaling['{name}_scale'] must both be given or both "
                "None"
            )
    if not inputs and (scaling.get("u_mean") is not None or scaling.get("u_scale") is not None):
        raise ValueError("scaling['u_mean'] and scaling['u_scale'] apply to a model with inputs")
    return out


class RecordedData:
    """What a model records about its data: a base of :class:`resode.models.Model`.

    Each property is None (``flat_targets``: False) until a front end sets it, and is checked
    on assignment against the model's ``dim`` and ``classes``.
    """

    dim: int
    classes: int
    # what the model records about its data, unset (class defaults: a model pickled before
    # these existed still answers)
    _flat = False
    _class_labels_: list[int | str] | None = None
    _feature_names: list[str] | None = None
    _target_name: str | None = None
    _scaling: dict[str, Any] | None = None

    @property
    def class_labels(self) -> list[int | str] | None:
        """The data's own label of each class, ``0`` to ``classes - 1``, or None.

        Set by front ends that map labels, e.g. ``resode train --data``; None: the classes are
        their labels. Saved in the model file.

        Returns
        -------
        list of int or str, or None
            One label per class.

        Examples
        --------
        >>> import resode
        >>> model = resode.ResNet(2, layers=1, classes=2)
        >>> model.class_labels = ["cat", "dog"]
        >>> model.class_labels
        ['cat', 'dog']
        """
        return self._class_labels_

    @class_labels.setter
    def class_labels(self, labels: Any) -> None:
        self._class_labels_ = check_class_labels(labels, self.classes)

    @property
    def feature_names(self) -> list[str] | None:
        """The names of the ``dim`` inputs, in order (set by front ends; None by default).

        Returns
        -------
        list of str or None
            One name per input feature.

        Examples
        --------
        >>> import resode
        >>> model = resode.ResNet(2, layers=1)
        >>> model.feature_names = ["x1", "x2"]
        >>> model.feature_names
        ['x1', 'x2']
        """
        return self._feature_names

    @feature_names.setter
    def feature_names(self, names: Any) -> None:
        self._feature_names = check_feature_names(names, self.dim)

    @property
    def target_name(self) -> str | None:
        """The name of the target (set by front ends; None by default).

        Returns
        -------
        str or None
            The target column's name.

        Examples
        --------
        >>> import resode
        >>> model = resode.ResNet(2, layers=1)
        >>> model.target_name = "label"
        >>> model.target_name
        'label'
        """
        return self._target_name

    @target_name.setter
    def target_name(self, name: Any) -> None:
        self._target_name = check_target_name(name)

    @property
    def scaling(self) -> dict[str, Any] | None:
        """The statistics a front end standardised the data with, or None.

        ``{"X_mean", "X_scale", "y_mean", "y_scale"}``: the model sees ``(X - X_mean) / X_scale``
        and predicts ``(y - y_mean) / y_scale`` (``y_*`` None when the targets were not scaled);
        a neural ODE with inputs also ``"u_mean", "u_scale"`` (per channel of ``u``).
        Saved in the model file; the model itself never applies it.

        Returns
        -------
        dict of str to object, or None
            The scaling statistics (lists of float, or None).

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(2, layers=1).scaling is None
        True
        """
        return self._scaling

    @scaling.setter
    def scaling(self, scaling: Any) -> None:
        self._scaling = check_scaling(scaling, self.dim, self.classes, getattr(self, "inputs", 0))

    @property
    def flat_targets(self) -> bool:
        """Whether a 1-output regressor predicts ``(N,)`` rather than ``(N, 1)``.

        Set by :func:`resode.fit`: True when it was fitted on targets of shape ``(N,)``.

        Returns
        -------
        bool
            True for ``(N,)`` predictions.

        Examples
        --------
        >>> import resode
        >>> resode.ResNet(1, layers=1, classes=1, loss="mse").flat_targets
        False
        """
        return self._flat

    @flat_targets.setter
    def flat_targets(self, flat: bool) -> None:
        self._flat = check_bool("flat_targets", flat)
