"""The data, model and optimiser of a :class:`~resode.config.RunConfig` (nothing here
touches the file system but the data files it reads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import RunConfig

__all__ = ["build_model", "build_optimizer", "label_texts", "load_data", "prepare",
           "read_series_file", "scale_inputs", "scale_series", "scale_targets", "series_inputs",
           "standardisation", "unscale_outputs"]  # fmt: skip


# --------------------------------------------------------------------------- data


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _task(config: RunConfig) -> str:
    return "regression" if config.model.loss == "mse" else "classification"


def label_texts(labels: np.ndarray) -> np.ndarray:
    """Labels as text, integers without a decimal point (1, not 1.0)."""
    if labels.dtype.kind == "U":
        return labels
    return np.array([str(int(v)) for v in labels], dtype=str)


def _read(config: RunConfig, path: str, what: str, min_classes: int = 2,
          sources: Mapping[str, str] | None = None) -> Any:  # fmt: skip
    """The DataFile of a data / validation file; every problem is a ValueError naming it.
    ``sources`` maps a file of the configuration to the local copy to read instead (a sweep
    worker's copy of the driver's file)."""
    from .data_files import read

    d = config.data
    try:
        local = (sources or {}).get(path, path)
        data = read(local, target=d.target, features=_columns(d.features), task=_task(config),
                    min_classes=min_classes, any_labels=True)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {exc}") from None
    assert data.y is not None
    return data


def load_data(config: RunConfig) -> tuple[np.ndarray, ...]:
    """(X_train, X_test, y_train, y_test): the files of ``config.data`` or a generated set."""
    return _load(config)[0]


def _load(
    config: RunConfig, sources: Mapping[str, str] | None = None
) -> tuple[tuple[np.ndarray, ...], tuple[Any, Any]]:
    """:func:`load_data` and the names of the features and the target (None unknown)."""
    from . import datasets
    from .datasets import train_test_split

    d = config.data
    names: tuple[Any, Any] = (None, None)
    if d.data is not None:
        data = _read(config, d.data, "--data", sources=sources)
        X, y, names = data.X, data.y, (data.feature_names, data.target_name)
        if d.validation is not None:
            X_te, y_te = _read(config, d.validation, "--validation", 1, sources)[:2]
            if X_te.shape[1] != X.shape[1]:
                raise ValueError(
                    f"--validation {d.validation} has {X_te.shape[1]} features, --data "
                    f"{d.data} has {X.shape[1]}"
                )
            if "U" in (y.dtype.kind, y_te.dtype.kind):  # text labels in one file: compare text
                y, y_te = label_texts(y), label_texts(y_te)
            return (X, X_te, y, y_te), names
    elif d.dataset == "digits":
        X, y = datasets.digits()
    else:
        kwargs: dict[str, Any] = {"seed": d.seed}
        if d.dim is not None:
            kwargs["dim"] = d.dim
        if d.noise is not None:
            kwargs["noise"] = d.noise
        if d.style != "resode":
            kwargs["style"] = d.style
        X, y = datasets.DATASETS[d.dataset](d.n_samples, **kwargs)
    return tuple(train_test_split(X, y, d.test_size, seed=d.seed)), names


def _class_labels(y_tr: np.ndarray, y_te: np.ndarray) -> np.ndarray | None:
    """The distinct labels of the data, sorted, when they are not the classes ``0 .. K-1``
    themselves (None then: the labels are the class numbers, as in files of older models)."""
    labels = np.unique(np.concatenate([y_tr, y_te]))
    return None if np.array_equal(labels, np.arange(len(labels))) else labels


def _label_list(labels: Any, limit: int = 6) -> str:
    shown = ", ".join(str(v) for v in list(labels)[:limit])
    return shown + (", ..." if len(labels) > limit else "")


# --------------------------------------------------------------------------- model, optimiser


def build_model(config: RunConfig, dim: int, classes: int, inputs: int = 0) -> Any:
    """The untrained model of ``config`` for ``dim`` inputs and ``classes`` outputs (a neural
    ODE with ``inputs > 0``: that many channels of inputs ``u(t)``)."""
    from .models import NeuralCDE, NeuralODE, ResNet

    m = config.model
    if m.model == "cde":  # dim: the series' channels
        return NeuralCDE(dim, m.state, field=m.field,
                         hidden=m.hidden if m.field == "bottleneck" else None,
                         activation=m.activation, output_activation=m.output_activation,
                         classes=classes, loss=m.loss, weight_decay=m.weight_decay,
                         interpolation=m.interpolation, method=m.method, substeps=m.substeps,
                         rtol=m.rtol, atol=m.atol, first_step=m.first_step,
                         max_steps=m.max_steps, gradient=m.gradient, dtype=m.dtype,
                         seed=config.data.seed)  # fmt: skip
    common: dict[str, Any] = {
        "classes": classes,
        "field": m.field,
        "activation": m.activation,
        "hidden": m.hidden if m.field == "bottleneck" else None,
        "augment": m.augment,
        "loss": m.loss,
        "weight_decay": m.weight_decay,
        "readout": m.readout,
        "l1": m.l1,
        "decay_readout": m.decay_readout,
        "dtype": m.dtype,
        "seed": config.data.seed,
    }
    if m.model == "resnet":
        h = m.h if m.h is not None else m.T / m.layers
        return ResNet(dim, m.layers, h=h, **common)
    return NeuralODE(dim, T=m.T, pieces=m.pieces, substeps=m.substeps, method=m.method,
                     turnpike=m.turnpike, turnpike_weight=m.turnpike_weight,
                     gradient=m.gradient, checkpoints=m.checkpoints, rtol=m.rtol, atol=m.atol,
                     step_control=m.step_control, first_step=m.first_step,
                     max_steps=m.max_steps, inputs=inputs,
                     interpolation=m.interpolation if inputs else None, **common)  # fmt: skip


def build_optimizer(config: RunConfig) -> Any:
    """The optimiser of ``config`` with its learning-rate schedule."""
    from .optim import SGD, Adam, CosineLR, StepLR

    o = config.optimizer
    schedule: Any = None
    if o.schedule == "cosine":
        schedule = CosineLR(total_epochs=max(config.training.epochs, 1))
    elif o.schedule == "step":
        schedule = StepLR(step_size=o.step_size, gamma=o.gamma)
    if o.optimizer == "sgd":
        return SGD(lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, schedule=schedule)
    return Adam(lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, schedule=schedule)


# --------------------------------------------------------------------------- scaling


def standardisation(X: np.ndarray, y: np.ndarray | None = None) -> dict[str, Any]:
    """The statistics that standardise ``X`` (and real targets ``y``): ``model.scaling``.
    A constant column keeps scale 1 (it is only centred). Series ``X`` (N, L, channels): per
    channel over the observed values (NaN, missing or padding, left out)."""

    def stats(a: np.ndarray) -> tuple[list[float], list[float]]:
        scale = np.nanstd(a, axis=0)
        return np.nanmean(a, axis=0).tolist(), np.where(scale > 0, scale, 1.0).tolist()

    values = np.asarray(X, dtype=np.float64)
    X_mean, X_scale = stats(values.reshape(-1, values.shape[-1]))
    y_mean = y_scale = None
    if y is not None:
        y_mean, y_scale = stats(np.asarray(y, dtype=np.float64).reshape(len(y), -1))
    return {"X_mean": X_mean, "X_scale": X_scale, "y_mean": y_mean, "y_scale": y_scale}


def scale_inputs(scaling: dict[str, Any] | None, X: np.ndarray) -> np.ndarray:
    """``(X - X_mean) / X_scale`` (``X`` itself without scaling)."""
    if scaling is None:
        return X
    scaled: np.ndarray = (X - np.asarray(scaling["X_mean"])) / np.asarray(scaling["X_scale"])
    return scaled


def scale_targets(scaling: dict[str, Any] | None, y: np.ndarray) -> np.ndarray:
    """Real targets standardised like the training targets (unchanged without)."""
    if scaling is None or scaling.get("y_mean") is None:
        return y
    mean, scale = np.asarray(scaling["y_mean"]), np.asarray(scaling["y_scale"])
    scaled: np.ndarray = ((y.reshape(len(y), -1) - mean) / scale).reshape(y.shape)
    return scaled


def unscale_outputs(scaling: dict[str, Any] | None, outputs: np.ndarray) -> np.ndarray:
    """A regression model's outputs in the units of the training targets."""
    if scaling is None or scaling.get("y_mean") is None:
        return outputs
    unscaled: np.ndarray = outputs * np.asarray(scaling["y_scale"]) + np.asarray(scaling["y_mean"])
    return unscaled


def prepare(config: RunConfig, sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Data, model and optimiser of a run (nothing touches the file system); every problem
    is a ``ValueError`` (or a ``TypeError`` of the library). ``sources``: local copies of the
    configuration's data files (see :func:`_read`)."""
    if config.model.model == "cde":
        return _prepare_series(config, sources)
    data = config.data.data
    if config.model.model == "node" and data is not None:
        from .series_files import holds_inputs

        if config.data.id is not None or holds_inputs((sources or {}).get(data, data)):
            return _prepare_driven(config, sources)
        if config.model.interpolation != "cubic":  # the default: no choice made
            raise ValueError(
                f"--interpolation applies to inputs u(t): --data {data} holds no array U"
            )
    (X_tr, X_te, y_tr, y_te), names = _load(config, sources)
    task = _task(config)
    values = config.data.data is not None and task == "regression"  # y: real numbers
    scaling = None
    if config.data.data is not None and config.data.scale == "standard":
        scaling = standardisation(X_tr, y_tr if values else None)
        X_tr, X_te = scale_inputs(scaling, X_tr), scale_inputs(scaling, X_te)
        if values:
            y_tr, y_te = scale_targets(scaling, y_tr), scale_targets(scaling, y_te)
    # a file's own labels; a generated set numbers its classes (a tiny one may miss a class)
    own_labels = config.data.data is not None and not values
    y_tr, y_te, classes, class_labels = _classes(config, y_tr, y_te, own_labels, values)
    model = build_model(config, X_tr.shape[1], classes)
    return _setup(config, model, (X_tr, X_te, y_tr, y_te), names, scaling, class_labels)


def _classes(config: RunConfig, y_tr: np.ndarray, y_te: np.ndarray, own_labels: bool,
             values: bool) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:  # fmt: skip
    """The targets as classes ``0 .. K-1`` (the data's own labels mapped), the number of
    outputs and the labels (None: the class numbers themselves)."""
    class_labels = _class_labels(y_tr, y_te) if own_labels else None
    if values:
        inferred = 1
    elif class_labels is not None:  # e.g. labels {1, 2}: two classes, none invented
        inferred = len(class_labels)
        y_tr, y_te = np.searchsorted(class_labels, y_tr), np.searchsorted(class_labels, y_te)
    else:
        inferred = int(max(y_tr.max(), y_te.max())) + 1
    classes = inferred if config.model.classes is None else config.model.classes
    if values and classes != 1:
        raise ValueError(f"--classes {classes}: a regression on --data has one output")
    if classes < inferred:
        raise ValueError(f"--classes {classes} is too small: the data have {inferred} classes")
    if class_labels is not None and classes != inferred:
        raise ValueError(
            f"--classes {classes}: the data's {inferred} labels ({_label_list(class_labels)}) "
            f"are {inferred} classes"
        )
    return y_tr, y_te, classes, class_labels


def _setup(config: RunConfig, model: Any, data: tuple[np.ndarray, ...], names: tuple[Any, Any],
           scaling: dict[str, Any] | None, class_labels: np.ndarray | None,
           times: tuple[Any, Any] = (None, None),
           inputs: tuple[Any, Any] = (None, None)) -> dict[str, Any]:  # fmt: skip
    """What :func:`prepare` returns, the metadata recorded in the model."""
    X_tr, X_te, y_tr, y_te = data
    task, classes = _task(config), model.classes
    values = config.data.data is not None and task == "regression"
    model.class_labels = None if class_labels is None else class_labels.tolist()
    model.feature_names, model.target_name = names
    model.scaling = scaling

    def targets(y: np.ndarray) -> np.ndarray:
        """Labels, real values, or one-hot rows (mse on a classification data set)."""
        return y if task == "classification" or values else np.eye(classes)[y]

    return {
        "data": (X_tr, X_te, targets(y_tr), targets(y_te)),
        "labels": None if values else (y_tr, y_te),  # classes to colour and separate
        "dim": model.dim,
        "classes": classes,
        "times": times,  # observation times of the series or inputs (train, test); None: 0..L-1
        "inputs": inputs,  # a neural ODE's inputs u (train, test); None: no inputs
        "model": model,
        "optimizer": build_optimizer(config),
    }


# --------------------------------------------------------------------------- series


def read_series_file(path: str, config: RunConfig, what: str, *, require_target: bool = True,
                     min_classes: int = 2) -> Any:  # fmt: skip
    """The :class:`~resode.series_files.SeriesFile` of a ``--model cde`` data file, read with
    the run's columns; every problem is a ValueError naming ``what`` (an option)."""
    from .series_files import read_series

    d = config.data
    try:
        return read_series(path, id=d.id, time=d.time, target=d.target,
                           features=_columns(d.features), task=_task(config),
                           require_target=require_target, min_classes=min_classes,
                           any_labels=True)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {exc}") from None


def series_inputs(U: np.ndarray, times: np.ndarray | None, time_channel: bool) -> np.ndarray:
    """``U`` with the observation times (the index for None) as its first channel, or as is."""
    from .models import add_time_channel

    return add_time_channel(U, times) if time_channel else U


def _split_series(config: RunConfig, data: Any) -> tuple[tuple[Any, Any], ...]:
    """((U_tr, U_te), (times_tr, times_te), (y_tr, y_te)) split by ``test_size``."""
    from .datasets import train_test_split

    d = config.data
    order = np.arange(len(data.U))
    tr, te, y_tr, y_te = train_test_split(order, data.y, d.test_size, seed=d.seed)
    times = data.times
    if times is None or times.ndim == 1:
        pair: tuple[Any, Any] = (times, times)
    else:
        pair = (times[tr], times[te])
    return (data.U[tr], data.U[te]), pair, (y_tr, y_te)


def _prepare_series(config: RunConfig, sources: Mapping[str, str] | None) -> dict[str, Any]:
    """:func:`prepare` for ``--model cde``: series files, the time channel, per-channel
    standardisation over the observed values."""
    d = config.data
    if d.data is None:
        raise ValueError(
            "--model cde trains on series: give --data (a .npz with U (N, L, channels), "
            "times and y, or a long-format .csv with --id)"
        )
    data = read_series_file((sources or {}).get(d.data, d.data), config, "--data")
    if d.validation is not None:
        test = read_series_file((sources or {}).get(d.validation, d.validation), config,
                                "--validation", min_classes=1)  # fmt: skip
        if test.U.shape[2] != data.U.shape[2]:
            raise ValueError(f"--validation {d.validation} has {test.U.shape[2]} channels, "
                             f"--data {d.data} has {data.U.shape[2]}")  # fmt: skip
        U, times, y = (data.U, test.U), (data.times, test.times), (data.y, test.y)
        if "U" in (data.y.dtype.kind, test.y.dtype.kind):
            y = (label_texts(data.y), label_texts(test.y))
    else:
        U, times, y = _split_series(config, data)
    time_channel = config.model.time_channel
    U_tr, U_te = (series_inputs(u, t, time_channel) for u, t in zip(U, times))
    values = _task(config) == "regression"
    y_tr, y_te = y
    scaling = None
    if d.scale == "standard":
        scaling = standardisation(U_tr, y_tr if values else None)
        U_tr, U_te = scale_inputs(scaling, U_tr), scale_inputs(scaling, U_te)
        if values:
            y_tr, y_te = scale_targets(scaling, y_tr), scale_targets(scaling, y_te)
    y_tr, y_te, classes, class_labels = _classes(config, y_tr, y_te, not values, values)
    model = build_model(config, U_tr.shape[2], classes)
    names = data.channel_names
    if names is not None and time_channel:
        names = [d.time or "index", *names]
    return _setup(config, model, (U_tr, U_te, y_tr, y_te), (names, data.target_name), scaling,
                  class_labels, times)  # fmt: skip


# --------------------------------------------------------------------------- driven ODE


def _read_driven(config: RunConfig, path: str, what: str, min_classes: int,
                 sources: Mapping[str, str] | None) -> Any:  # fmt: skip
    """The :class:`~resode.series_files.DrivenFile` of a data / validation file: a
    long-format .csv with ``--id`` (and ``--static``), a .npz otherwise."""
    from .series_files import holds_inputs, read_driven, read_driven_csv

    d, local = config.data, (sources or {}).get(path, path)
    try:
        if d.id is not None:
            return read_driven_csv(local, id=d.id, static=_columns(d.static) or [], time=d.time,
                                   target=d.target, features=_columns(d.features),
                                   task=_task(config), min_classes=min_classes,
                                   any_labels=True)  # fmt: skip
        if what == "--validation" and not holds_inputs(local):
            raise ValueError(f"{path}: holds no arrays X and U like --data {d.data}")
        if d.target is not None:
            raise ValueError(f"{path}: --target applies to .csv files (a .npz has its array y)")
        return read_driven(local, features=_columns(d.features), task=_task(config),
                           min_classes=min_classes, any_labels=True)  # fmt: skip
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {exc}") from None


def _split_driven(config: RunConfig, data: Any, test: Any) -> tuple[tuple[Any, Any], ...]:
    """((X_tr, X_te), (U_tr, U_te), (times_tr, times_te), (y_tr, y_te)): the --validation
    file, or a split of --data by ``test_size``."""
    from .datasets import train_test_split

    if test is not None:
        if test.X.shape[1] != data.X.shape[1] or test.U.shape[2] != data.U.shape[2]:
            raise ValueError(
                f"--validation {config.data.validation} has {test.X.shape[1]} features and "
                f"{test.U.shape[2]} input channels, --data {config.data.data} has "
                f"{data.X.shape[1]} and {data.U.shape[2]}"
            )
        y = (data.y, test.y)
        if "U" in (data.y.dtype.kind, test.y.dtype.kind):
            y = (label_texts(data.y), label_texts(test.y))
        return (data.X, test.X), (data.U, test.U), (data.times, test.times), y
    order = np.arange(len(data.X))
    tr, te, y_tr, y_te = train_test_split(order, data.y, config.data.test_size,
                                          seed=config.data.seed)  # fmt: skip
    times = data.times
    pair = (times, times) if times is None or times.ndim == 1 else (times[tr], times[te])
    return (data.X[tr], data.X[te]), (data.U[tr], data.U[te]), pair, (y_tr, y_te)


def scale_series(scaling: dict[str, Any] | None, U: np.ndarray) -> np.ndarray:
    """A neural ODE's inputs ``U`` (N, L, C) standardised per channel (as is without)."""
    if scaling is None or scaling.get("u_mean") is None:
        return U
    scaled: np.ndarray = (U - np.asarray(scaling["u_mean"])) / np.asarray(scaling["u_scale"])
    return scaled


def _prepare_driven(config: RunConfig, sources: Mapping[str, str] | None) -> dict[str, Any]:
    """:func:`prepare` for ``--model node`` on a ``.npz`` with inputs (``X`` (N, dim) the
    initial states, ``U`` (N, L, C) the inputs, ``times`` and ``y``) or a long-format .csv
    (``--id``, ``--static``); ``X`` standardised per feature and ``U`` per channel over its
    observed values."""
    d = config.data
    assert d.data is not None
    data = _read_driven(config, d.data, "--data", 2, sources)
    test = None
    if d.validation is not None:
        test = _read_driven(config, d.validation, "--validation", 1, sources)
    (X_tr, X_te), (U_tr, U_te), times, (y_tr, y_te) = _split_driven(config, data, test)
    values = _task(config) == "regression"
    scaling = None
    if d.scale == "standard":
        scaling = standardisation(X_tr, y_tr if values else None)
        u_stats = standardisation(U_tr)
        scaling.update(u_mean=u_stats["X_mean"], u_scale=u_stats["X_scale"])
        X_tr, X_te = scale_inputs(scaling, X_tr), scale_inputs(scaling, X_te)
        U_tr, U_te = scale_series(scaling, U_tr), scale_series(scaling, U_te)
        if values:
            y_tr, y_te = scale_targets(scaling, y_tr), scale_targets(scaling, y_te)
    y_tr, y_te, classes, class_labels = _classes(config, y_tr, y_te, not values, values)
    model = build_model(config, X_tr.shape[1], classes, inputs=U_tr.shape[2])
    names = (data.feature_names, data.target_name)
    return _setup(config, model, (X_tr, X_te, y_tr, y_te), names, scaling, class_labels, times,
                  (U_tr, U_te))  # fmt: skip
