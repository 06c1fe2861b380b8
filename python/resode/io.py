"""Saving and loading models (and training checkpoints) as plain ``.npz`` files, never pickle.

File format (version 1)
-----------------------
A ZIP archive as written by :func:`numpy.savez` (uncompressed) holding

* ``header``: a 1-D ``uint8`` array, the UTF-8 bytes of a JSON object
  ``{"format": "resode", "version": 1, "kind": "node" | "resnet" | "cde", "config": {...}}``
  where ``config`` is ``model.config`` (the constructor arguments);
* one array per model parameter, named ``params/<name>`` (``params/W``, ``params/b`` or
  ``params/W1`` ... ``params/b2``, then ``params/P``, ``params/c``; a NeuralCDE's begin with
  ``params/A``, ``params/a``), of the model's dtype;
* what the model records about its data, when set (files without them load with None):
  ``"class_labels"`` (the data's label of each class ``0 .. K-1``, e.g. from
  ``resode train --data``; ``resode predict`` writes them back), ``"feature_names"``,
  ``"target_name"`` and ``"scaling"`` (see ``resode.models.Model``), and
  ``"flat_targets": true`` for a 1-output regressor fitted on targets ``(N,)``;
* training checkpoints (written by :func:`resode.fit` with ``checkpoint=``) add a
  ``"checkpoint"`` object to the header and the optimiser state as ``optimizer/<key>``
  arrays (see :meth:`resode.optim.Optimizer.state_dict`); under early stopping with
  ``restore_best`` also the best epoch's parameters as ``best/<name>`` arrays.

Loading never unpickles (``allow_pickle=False``), reads every member with its CRC checked,
validates the header and the config (the model is rebuilt through its constructor), the name,
shape, dtype and finiteness of every parameter, and refuses missing or extra arrays. Any
problem raises a ``ValueError`` that names the file. Saving is atomic: the archive is written
to a temporary file in the target directory, flushed to disk and renamed over the target.

Examples
--------
>>> import os, tempfile, numpy as np, resode
>>> model = resode.NeuralODE(2, T=1.0, pieces=4, seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> _ = model.save(path)
>>> again = resode.load(path)
>>> bool(np.array_equal(again.params["W"], model.params["W"]))
True
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np

from .models import FIELDS, KINDS, Model, cde_param_shapes, field_param_shapes, set_file_writer
from .models.metadata import (
    check_class_labels,
    check_feature_names,
    check_scaling,
    check_target_name,
)
from .npy_members import available_memory_bytes, read_member

__all__ = ["FORMAT_VERSION", "atomic_path", "load", "read_file", "save", "write_file", "write_text"]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_VERSION = 1
"""Version of the file format written by :func:`save`."""

_KINDS = KINDS
_HEADER = "header"
_PARAM_PREFIX = "params/"
_OPTIMIZER_PREFIX = "optimizer/"
_BEST_PREFIX = "best/"
# What a model records about its data, in the header when set (see resode.models.Model).
_METADATA = ("class_labels", "feature_names", "target_name", "scaling")


# --------------------------------------------------------------------------- writing


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give (mkstemp makes files private, 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` when the block succeeds.

    The block writes the temporary file (its name ends with ``path``'s suffix, so writers
    that choose a format by suffix still do); on a normal exit it is renamed over ``path``
    (:func:`os.replace`, atomic), on any exception (Ctrl-C included) it is removed. A reader
    of ``path`` therefore sees the old file or the complete new one, never a partial or
    empty one.

    Examples
    --------
    >>> import os, tempfile
    >>> from resode.io import atomic_path
    >>> target = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> open(target).read()
    'done'
    """
    target = Path(os.fspath(path))
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():  # name the user's path, not the temporary file's
        raise FileNotFoundError(f"cannot write {target}: no such folder {directory}")
    fd, name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=directory
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync it, rename it."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    directory = path.parent if str(path.parent) else Path(".")
    # Make the rename itself durable (POSIX; not possible on every platform/file system).
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path`` (see :func:`atomic_path`); returns it."""
    target = Path(os.fspath(path))
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_file(
    path: PathLike,
    header: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> Path:
    """Atomically write ``header`` (as JSON in a ``uint8`` array) and ``arrays`` to ``path``.

    Low-level helper shared by :func:`save` and the training checkpoints; most users want
    :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; written exactly there (no ``.npz`` suffix is appended).
    header : mapping
        JSON-serialisable (strict JSON: no NaN or infinity).
    arrays : mapping of str to numpy.ndarray
        Numeric arrays (no object dtype), stored under their keys.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(os.fspath(path))
    data = _file_bytes(header, arrays)
    _atomic_write(path, lambda f: f.write(data))
    return path


def _file_bytes(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """The bytes :func:`write_file` writes, written nowhere."""
    if _HEADER in arrays:
        raise ValueError(f"array name {_HEADER!r} is reserved")
    text = json.dumps(header, allow_nan=False, sort_keys=True)
    payload: dict[str, Any] = {_HEADER: np.frombuffer(text.encode("utf-8"), np.uint8)}
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"array {name!r} must be numeric, got dtype {a.dtype}")
        payload[name] = a
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    return buffer.getvalue()


def save(model: Model, path: PathLike) -> Path:
    """Save a model's config and parameters to one ``.npz`` file, atomically.

    Parameters
    ----------
    model : ResNet, NeuralODE or NeuralCDE
    path : str or os.PathLike
        Target file (conventionally ending ``.npz``; used exactly as given).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If a parameter is missing or not finite (such a file could not be loaded back).

    Examples
    --------
    >>> import os, tempfile, resode
    >>> target = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> path = resode.io.save(resode.ResNet(2, 3, seed=0), target)
    >>> resode.load(path).layers
    3
    """
    header, arrays = model_payload(model)
    return write_file(path, header, arrays)


set_file_writer(save)  # Model.save writes through it (the models do not import io)


def model_bytes(model: Model) -> bytes:
    """The bytes :func:`save` writes for ``model``, written nowhere (a sweep worker returns
    them to its driver).

    Examples
    --------
    >>> import resode
    >>> resode.io.model_bytes(resode.ResNet(2, 3, seed=0))[:2]
    b'PK'
    """
    header, arrays = model_payload(model)
    return _file_bytes(header, arrays)


def model_payload(model: Model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the ``params/<name>`` arrays that :func:`save` writes for ``model``."""
    kind = getattr(model, "kind", "")
    if kind not in _KINDS or not isinstance(model, _KINDS[kind]):
        raise TypeError(
            f"model must be a resode.ResNet, NeuralODE or NeuralCDE, got {type(model)!r}"
        )
    expected = _expected_shapes(model.config)
    arrays: dict[str, np.ndarray] = {}
    if not isinstance(model.params, Mapping):
        raise TypeError(f"model.params must be a dict of arrays, got {type(model.params).__name__}")
    for name, shape in expected.items():
        if name not in model.params:
            raise ValueError(f"model.params is missing {name!r}")
        a = np.asarray(model.params[name])
        if a.shape != shape or a.dtype != model.dtype:
            raise ValueError(
                f"model.params[{name!r}] must have shape {shape} and dtype {model.dtype}, "
                f"got {a.shape} {a.dtype}"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"model.params[{name!r}] contains NaN or Inf; refusing to save")
        arrays[_PARAM_PREFIX + name] = a
    extra = sorted(set(model.params) - set(expected))
    if extra:
        raise ValueError(f"model.params has unexpected entries {extra}")
    header = {"format": "resode", "version": FORMAT_VERSION, "kind": kind, "config": model.config}
    if model.flat_targets:  # a regressor fitted on y (N,) predicts (N,)
        header["flat_targets"] = True
    header.update(_metadata(model))
    return header, arrays


def _metadata(model: Model) -> dict[str, Any]:
    """The set ones of ``class_labels``, ``feature_names``, ``target_name``, ``scaling``
    (absent keys keep the file readable by resode versions without them)."""
    values = {
        "class_labels": check_class_labels(model.class_labels, model.classes),
        "feature_names": check_feature_names(model.feature_names, model.dim),
        "target_name": check_target_name(model.target_name),
        "scaling": check_scaling(
            model.scaling, model.dim, model.classes, getattr(model, "inputs", 0)
        ),
    }
    return {k: v for k, v in values.items() if v is not None}


# --------------------------------------------------------------------------- reading


def _expected_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes implied by a (plausible) model config."""
    if "channels" in config:  # a NeuralCDE
        return cde_param_shapes(
            config["field"], config["pieces"], config["channels"], config["state"],
            config["hidden"], config["classes"],
        )  # fmt: skip
    dim, augment, classes = config["dim"], config["augment"], config["classes"]
    pieces = config["layers"] if "layers" in config else config["pieces"]
    D = dim + augment
    field = config["field"]
    H = config["hidden"] if field == "bottleneck" else D
    shapes = field_param_shapes(field, pieces, D, H, config.get("inputs", 0))
    shapes.update({"P": (classes, D), "c": (classes,)})
    return shapes


# Largest .npy header plus payload of the JSON header member, before its contents are known.
_MAX_HEADER_BYTES = 1 << 20


def _read_archive(path: Path) -> dict[str, np.ndarray]:
    """All members of the archive at ``path`` as arrays (CRC-checked, never unpickled).

    The JSON header is read first; every other member's declared (uncompressed) size is then
    checked against the largest array the header's model can have before it is inflated, so a
    hostile archive (a "zip bomb") is refused without allocating its contents.
    """
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            raise ValueError("duplicate members")
        for member in names:
            if not member.endswith(".npy"):
                raise ValueError(f"unexpected member {member!r} (not an .npy array)")
        header_member = _HEADER + ".npy"
        if header_member not in names:
            raise ValueError(f"no {_HEADER!r} array (not a resode model file)")
        arrays[_HEADER] = read_member(zf, header_member, _MAX_HEADER_BYTES)
        limit = _max_member_bytes(_parse_header(arrays))
        for member in names:
            if member != header_member:
                arrays[member[: -len(".npy")]] = read_member(zf, member, limit)
    return arrays


def _max_member_bytes(header: Mapping[str, Any]) -> int:
    """Bytes of the largest .npy member the header's model can have (8-byte items, 4 KiB of
    .npy header), or the header limit if the config is unusable (it is rejected later)."""
    try:
        _, config = _check_config(header.get("kind"), header.get("config"))
        shapes = _expected_shapes(config)
        largest = max(int(np.prod(shape, dtype=np.float64)) for shape in shapes.values())
    except Exception:
        return _MAX_HEADER_BYTES
    return int(min(8.0 * largest, available_memory_bytes())) + 4096


def _parse_header(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    if _HEADER not in arrays:
        raise ValueError(f"no {_HEADER!r} array (not a resode model file)")
    raw = arrays[_HEADER]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{_HEADER!r} must be a 1-D uint8 array of JSON text")

    def no_constants(token: str) -> Any:
        raise ValueError(f"{token} is not valid JSON")

    try:
        header = json.loads(raw.tobytes().decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{_HEADER!r} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{_HEADER!r} must be a JSON object")
    if header.get("format") != "resode":
        raise ValueError(f"header 'format' must be 'resode', got {header.get('format')!r}")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"unsupported format version {header.get('version')!r} (this resode reads version "
            f"{FORMAT_VERSION})"
        )
    allowed = {"format", "version", "kind", "config", "checkpoint", "flat_targets", *_METADATA}
    extra = sorted(set(header) - allowed)
    if extra:
        raise ValueError(f"unknown header keys {extra}")
    return header


# (the adaptive options are in the config of adaptive-method models only)
_LATER_OPTIONS = ("readout", "l1", "decay_readout", "turnpike_weight", "rtol", "atol", "first_step",
                  "max_steps", "step_control", "inputs", "interpolation")  # fmt: skip


def _check_config(kind: Any, config: Any) -> tuple[type, dict[str, Any]]:
    if kind not in _KINDS:
        raise ValueError(f"header 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    if not isinstance(config, dict):
        raise ValueError("header 'config' must be a JSON object")
    sig = inspect.signature(cls.__init__)
    names = {p for p in sig.parameters if p != "self"}
    # Options added after format version 1 was fixed: files written before them lack the keys
    # and mean the defaults.
    later = {k: sig.parameters[k].default for k in _LATER_OPTIONS if k in names}
    config = {**{k: v for k, v in later.items() if k not in config}, **config}
    missing, extra = sorted(names - set(config)), sorted(set(config) - names)
    if missing or extra:
        raise ValueError(
            f"config keys do not match {cls.__name__}: missing {missing}, unknown {extra}"
        )
    for key in (
        "dim",
        "classes",
        "augment",
        "layers",
        "pieces",
        "substeps",
        "inputs",
        "channels",
        "state",
    ):
        v = config.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 2**31:
            raise ValueError(f"config {key!r} must be a non-negative integer, got {v!r}")
    if config["field"] not in FIELDS:
        raise ValueError(f"config 'field' must be one of {list(FIELDS)}, got {config['field']!r}")
    hidden = config["hidden"]
    if hidden is not None and (
        isinstance(hidden, bool) or not isinstance(hidden, int) or not 0 <= hidden <= 2**31
    ):
        raise ValueError(f"config 'hidden' must be null or a non-negative integer, got {hidden!r}")
    if config["field"] == "bottleneck" and hidden is None:
        raise ValueError("config 'hidden' must be an integer for field 'bottleneck'")
    if config["field"] != "bottleneck" and hidden is not None:
        # files written before `hidden` was refused for other fields: it never had an effect
        config = {**config, "hidden": None}
    return cls, config


def _build(arrays: Mapping[str, np.ndarray], header: Mapping[str, Any]) -> Model:
    """Validate the parameter arrays against the config and rebuild the model."""
    cls, config = _check_config(header.get("kind"), header.get("config"))
    expected = _expected_shapes(config)
    found = {k[len(_PARAM_PREFIX) :] for k in arrays if k.startswith(_PARAM_PREFIX)}
    missing, extra = sorted(set(expected) - found), sorted(found - set(expected))
    if missing:
        raise ValueError(f"missing parameter arrays {missing}")
    if extra:
        raise ValueError(f"unexpected parameter arrays {extra}")
    dtype = np.dtype(config["dtype"]) if config["dtype"] in ("float32", "float64") else None
    params: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        a = arrays[_PARAM_PREFIX + name]
        if a.shape != shape:
            raise ValueError(f"parameter {name!r} has shape {a.shape}, expected {shape}")
        if dtype is not None and a.dtype != dtype:
            raise ValueError(f"parameter {name!r} has dtype {a.dtype}, expected {dtype}")
        if not np.isfinite(a).all():
            raise ValueError(f"parameter {name!r} contains NaN or Inf")
        params[name] = a
    try:
        model: Model = cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid config for {cls.__name__}: {exc}") from None
    # a fixed-step model's config leaves the adaptive options out (they are None); an
    # adaptive model's keeps first_step None (the solver picks the first step)
    unset = {k for k in ("rtol", "atol", "first_step", "max_steps", "step_control")
             if config.get(k, 0) is None and k not in model.config}  # fmt: skip
    # a model without inputs leaves inputs (0) and interpolation (None) out of its config
    unset |= {k for k in ("inputs", "interpolation") if config.get(k) in (0, None)
              and k not in model.config}  # fmt: skip
    if model.config != {k: v for k, v in config.items() if k not in unset}:
        raise ValueError(f"config does not round-trip through {cls.__name__}: {config}")
    model.params = params
    flat = header.get("flat_targets", False)
    if not isinstance(flat, bool):
        raise ValueError(f"header 'flat_targets' must be true or false, got {flat!r}")
    model.flat_targets = flat
    for key in _METADATA:  # each absent from files that do not set it (None)
        setattr(model, key, header.get(key))
    return model


def read_file(path: PathLike) -> tuple[Model, dict[str, Any], dict[str, np.ndarray]]:
    """Read and validate a model or checkpoint file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    model : ResNet, NeuralODE or NeuralCDE
        Rebuilt and holding the stored parameters.
    header : dict
        The parsed JSON header (``"checkpoint"`` present for training checkpoints).
    extra : dict of str to numpy.ndarray
        The ``optimizer/<key>`` arrays (prefix removed) of a checkpoint, and its
        ``best/<name>`` arrays (under their full name); empty for a model.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For anything malformed, naming the file.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    try:
        arrays = _read_archive(p)
        header = _parse_header(arrays)
        model = _build(arrays, header)
        extra: dict[str, np.ndarray] = {}
        for name, a in arrays.items():
            if name == _HEADER or name.startswith(_PARAM_PREFIX):
                continue
            if "checkpoint" in header and name.startswith(_OPTIMIZER_PREFIX):
                extra[name[len(_OPTIMIZER_PREFIX) :]] = a
            elif "checkpoint" in header and name.startswith(_BEST_PREFIX):
                extra[name] = a
            else:
                raise ValueError(f"unexpected array {name!r}")
        if "checkpoint" in header and not isinstance(header["checkpoint"], dict):
            raise ValueError("header 'checkpoint' must be a JSON object")
    except ValueError as exc:
        raise ValueError(f"{p}: invalid resode file: {exc}") from None
    except Exception as exc:  # zipfile/zlib/EOF/struct errors from a damaged archive
        raise ValueError(
            f"{p}: invalid resode file (damaged or not a .npz archive): {type(exc).__name__}: {exc}"
        ) from None
    return model, header, extra


def load(path: PathLike) -> Model:
    """Load a model written by :meth:`ResNet.save` or :meth:`NeuralODE.save`.

    The model in a training checkpoint written by :func:`resode.fit` loads as well.

    Parameters
    ----------
    path : str or os.PathLike
        A model file (``.npz``) or a training checkpoint.

    Returns
    -------
    ResNet, NeuralODE or NeuralCDE
        A new model, built from the stored config, with the stored parameters (same dtype,
        bitwise equal).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid resode model file: not a ZIP/``.npz`` archive, truncated,
        damaged (CRC mismatch), pickled or object arrays, bad JSON header, a config the
        constructor rejects, missing, extra or misshapen arrays, wrong dtype, NaN/Inf.

    Examples
    --------
    >>> import os, tempfile, resode
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> _ = resode.ResNet(2, layers=4, seed=1).save(path)
    >>> model = resode.load(path)
    >>> type(model).__name__, model.layers, model.dtype.name
    ('ResNet', 4, 'float64')
    """
    model, _, _ = read_file(path)
    return model
