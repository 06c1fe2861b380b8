"""The optimisers: the base :class:`Optimizer`, :class:`SGD` and :class:`Adam`, and
:func:`from_config` to rebuild one with its schedule."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .. import _core
from .._validation import int_at_least
from ._common import _as_float
from .schedules import Schedule, schedule_from_config

__all__ = ["SGD", "Adam", "Optimizer", "from_config"]


class Optimizer(ABC):
    """Base class: learning rate, schedule, epoch/step counters and per-key state.

    Per-key state lives in named *slots* (``"buf"`` for SGD momentum, ``"m"`` and
    ``"v"`` for Adam), each a dict ``key -> array`` created lazily at the first
    :meth:`step`. Once state exists, every later ``step`` must use the same keys,
    shapes and float dtypes.

    Parameters
    ----------
    lr : float
        Base learning rate, ``> 0``.
    schedule : Schedule or None
        Multiplicative learning-rate schedule evaluated at the current epoch.

    Attributes
    ----------
    base_lr : float
        The constructor's ``lr``.
    schedule : Schedule or None
    epoch : int
        Number of :meth:`epoch_end` calls so far.
    step_count : int
        Number of :meth:`step` calls so far.

    Examples
    --------
    >>> from resode.optim import StepLR
    >>> opt = SGD(lr=0.5, schedule=StepLR(1, gamma=0.5))
    >>> opt.lr
    0.5
    >>> opt.epoch_end(); opt.lr
    0.25
    """

    _slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float, schedule: Schedule | None = None) -> None:
        self.base_lr = _as_float("lr", lr)
        if self.base_lr <= 0.0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        valid_schedule = schedule is None or isinstance(schedule, Schedule)
        if not valid_schedule:
            raise ValueError(f"schedule must be a resode.optim.Schedule or None, got {schedule!r}")
        self.schedule = schedule
        self.epoch = 0
        self.step_count = 0
        self._state: dict[str, dict[str, np.ndarray]] = {s: {} for s in self._slots}

    # -- learning rate / epochs ---------------------------------------------------------

    @property
    def lr(self) -> float:
        """Current learning rate: ``base_lr * schedule(epoch)`` (``base_lr`` if no schedule).

        Returns
        -------
        float
            The learning rate of the next :meth:`step`.

        Examples
        --------
        >>> from resode.optim import SGD, StepLR
        >>> opt = SGD(lr=0.5, schedule=StepLR(1, gamma=0.5))
        >>> opt.lr
        0.5
        """
        if self.schedule is None:
            return self.base_lr
        return self.base_lr * float(self.schedule(self.epoch))

    def epoch_end(self) -> None:
        """Advance the schedule by one epoch (call once at the end of every epoch).

        Examples
        --------
        >>> from resode.optim import SGD, StepLR
        >>> opt = SGD(lr=0.5, schedule=StepLR(1, gamma=0.5))
        >>> opt.epoch_end()
        >>> opt.epoch, opt.lr
        (1, 0.25)
        """
        self.epoch += 1

    # -- stepping -----------------------------------------------------------------------

    def _check(
        self, params: Mapping[str, np.ndarray], grads: Mapping[str, ArrayLike]
    ) -> dict[str, np.ndarray]:
        """Validate ``params`` / ``grads``; return the gradients cast to the param dtypes."""
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"grads is missing key {missing[0]!r} present in params")
        extra = [k for k in grads if k not in params]
        if extra:
            raise ValueError(f"grads has key {extra[0]!r} that is not in params")
        state_keys = next((set(s) for s in self._state.values() if s), None)
        if state_keys is not None and state_keys != set(params):
            bad = min(state_keys.symmetric_difference(params))
            raise ValueError(
                f"key {bad!r} differs between params and the optimiser state "
                f"(state keys: {sorted(state_keys)})"
            )
        out: dict[str, np.ndarray] = {}
        for k, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise ValueError(f"params[{k!r}] must be a floating-point numpy.ndarray")
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{k!r}] must be float32 or float64, got {p.dtype}")
            if not p.flags.writeable:
                raise ValueError(f"params[{k!r}] is read-only; it is updated in place")
            g = np.asarray(grads[k])
            if g.shape != p.shape:
                raise ValueError(f"shape mismatch for key {k!r}: params {p.shape}, grads {g.shape}")
            for slot, arrays in self._state.items():
                s = arrays.get(k)
                if s is None:
                    continue
                if s.shape != p.shape:
                    raise ValueError(
                        f"shape mismatch for key {k!r}: params {p.shape}, "
                        f"optimiser state {slot!r} {s.shape}"
                    )
                if s.dtype != p.dtype:
                    arrays[k] = s.astype(p.dtype)
            out[k] = g.astype(p.dtype, copy=False)
        return out

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, ArrayLike]) -> None:
        """Update ``params`` in place from ``grads``.

        Parameters
        ----------
        params : mapping of str to numpy.ndarray
            Writable floating-point arrays, updated in place (dtype preserved).
        grads : mapping of str to array_like
            Same keys and shapes as ``params``; cast to each parameter's dtype.

        Raises
        ------
        ValueError
            On mismatched keys (naming the key), mismatched shapes (naming the key),
            non-float or read-only parameters.

        Examples
        --------
        >>> params = {"w": np.array([1.0, -2.0])}
        >>> SGD(lr=0.5).step(params, {"w": np.array([2.0, 2.0])})
        >>> params["w"]
        array([ 0., -3.])
        """
        g = self._check(params, grads)
        targets, states, first = [], [], False
        for k, p in params.items():
            state, created = self._slot_arrays(k, p)
            targets.append(p if p.flags.c_contiguous else np.ascontiguousarray(p))
            states.append(state)
            first = first or created
        _core.optimizer_step(
            targets, [g[k] for k in params], states, lr=self.lr, step=self.step_count,
            first=first, **self._core_args(),
        )  # fmt: skip
        for target, p in zip(targets, params.values(), strict=True):
            if target is not p:
                p[...] = target
        self.step_count += 1

    def _core_state(self, params: Mapping[str, np.ndarray]) -> tuple[list[list[np.ndarray]], bool]:
        """The state arrays of every key of ``params`` (in its order) for a run of steps in
        the core (``_core.train_epoch``), and whether they were just created; call
        :meth:`_advance` with the number of steps taken afterwards."""
        self._check(params, params)
        arrays, created = [], []
        for k, p in params.items():
            state, first = self._slot_arrays(k, p)
            arrays.append(state)
            created.append(first)
        return arrays, any(created)

    def _advance(self, steps: int, first: bool) -> None:
        """Count ``steps`` steps taken in the core; forget state created for none."""
        self.step_count += steps
        if first and steps == 0:
            self._state = {s: {} for s in self._slots}

    def _slot_arrays(self, key: str, p: np.ndarray) -> tuple[list[np.ndarray], bool]:
        """The state arrays of ``key`` in slot order (created as zeros, C-ordered, in ``p``'s
        dtype on first use) and whether they were just created (no step has used them)."""
        slots = self._active_slots()
        first = any(key not in self._state[s] for s in slots)
        if first:
            for s in slots:
                self._state[s][key] = np.zeros(p.shape, dtype=p.dtype)
        return [self._state[s][key] for s in slots], first

    def _active_slots(self) -> tuple[str, ...]:
        """The slots this configuration keeps (SGD without momentum keeps none)."""
        return self._slots

    @abstractmethod
    def _core_args(self) -> dict[str, Any]:
        """The update rule's name and constants for ``_core.optimizer_step``."""

    # -- serialisation ------------------------------------------------------------------

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Return the JSON-serialisable constructor arguments, ``"name"`` and ``"schedule"``.

        Returns
        -------
        dict of str to object
            The input of :func:`resode.optim.from_config`.

        Examples
        --------
        >>> from resode.optim import SGD
        >>> SGD(lr=0.1).config()
        {'name': 'SGD', 'lr': 0.1, 'momentum': 0.0, 'nesterov': False, 'schedule': None}
        """

    def _schedule_config(self) -> dict[str, Any] | None:
        return None if self.schedule is None else self.schedule.config()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Return the mutable state as a flat dict of NumPy arrays (copies).

        Keys: ``"step"`` and ``"epoch"`` (0-d int64 arrays) and ``"<slot>/<param key>"``
        for the per-parameter state (``"buf/W"`` for SGD with momentum, ``"m/W"`` and
        ``"v/W"`` for Adam). Suitable for ``numpy.savez`` without pickle.

        Returns
        -------
        dict of str to numpy.ndarray
            ``"step"``, ``"epoch"`` and one array per slot and parameter key, in the
            parameter's shape and dtype.

        Examples
        --------
        >>> opt = Adam()
        >>> opt.step({"W": np.zeros(3)}, {"W": np.ones(3)})
        >>> sorted(opt.state_dict())
        ['epoch', 'm/W', 'step', 'v/W']
        """
        out: dict[str, np.ndarray] = {
            "step": np.array(self.step_count, dtype=np.int64),
            "epoch": np.array(self.epoch, dtype=np.int64),
        }
        for slot, arrays in self._state.items():
            for k, a in arrays.items():
                out[f"{slot}/{k}"] = a.copy()
        return out

    def load_state_dict(self, state: Mapping[str, ArrayLike]) -> None:
        """Restore the state saved by :meth:`state_dict` (arrays are copied exactly).

        Parameters
        ----------
        state : mapping of str to array_like
            Output of :meth:`state_dict`, or e.g. the ``NpzFile`` of ``numpy.load``.

        Raises
        ------
        ValueError
            On a missing ``"step"`` / ``"epoch"``, an unknown key, or inconsistent slots.

        Examples
        --------
        >>> opt = SGD(lr=0.1, momentum=0.9)
        >>> opt.step({"W": np.zeros(2)}, {"W": np.ones(2)})
        >>> other = SGD(lr=0.1, momentum=0.9)
        >>> other.load_state_dict(opt.state_dict())
        >>> other.step_count
        1
        """
        for name in ("step", "epoch"):
            if name not in state:
                raise ValueError(f"state is missing key {name!r}")
        step_count = int_at_least("step", np.asarray(state["step"]).item(), 0)
        epoch = int_at_least("epoch", np.asarray(state["epoch"]).item(), 0)
        slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in self._slots}
        for name in state:
            if name in ("step", "epoch"):
                continue
            slot, sep, key = name.partition("/")
            if not sep or not key or slot not in slots:
                raise ValueError(
                    f"unexpected key {name!r} in state for {type(self).__name__} "
                    f"(expected 'step', 'epoch' and '<slot>/<key>' with slot in "
                    f"{list(self._slots)})"
                )
            arr = np.array(state[name], copy=True, order="C")
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"state[{name!r}] must be a floating-point array")
            slots[slot][key] = arr
        key_sets = {slot: set(arrays) for slot, arrays in slots.items() if arrays}
        if key_sets:
            ref_slot, ref = next(iter(key_sets.items()))
            for slot, keys in key_sets.items():
                if keys != ref:
                    bad = min(keys.symmetric_difference(ref))
                    raise ValueError(
                        f"key {bad!r} is in only one of the state slots {ref_slot!r}, {slot!r}"
                    )
            self._validate_slots(slots)
        self.step_count = step_count
        self.epoch = epoch
        self._state = slots

    def _validate_slots(self, slots: dict[str, dict[str, np.ndarray]]) -> None:
        """Check that the loaded slots are complete (hook for subclasses)."""
        empty = [s for s, a in slots.items() if not a]
        if empty:
            raise ValueError(f"state has no entries for slot {empty[0]!r}")

    def __repr__(self) -> str:
        """``Name(arg=value, ...)`` from :meth:`config`."""
        cfg = self.config()
        name = cfg.pop("name")
        sched = cfg.pop("schedule")
        args = [f"{k}={v!r}" for k, v in cfg.items()]
        args.append(f"schedule={self.schedule!r}" if sched is not None else "schedule=None")
        return f"{name}({', '.join(args)})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, PyTorch semantics.

    With ``momentum > 0``: ``buf = momentum * buf + g`` (``buf = g`` at the first step),
    ``update = g + momentum * buf`` if ``nesterov`` else ``buf``; then
    ``p -= lr * update``. With ``momentum == 0``: ``p -= lr * g`` and no state.

    Parameters
    ----------
    lr : float, default 0.01
        Base learning rate, ``> 0``.
    momentum : float, default 0.0
        Momentum factor, ``>= 0``.
    nesterov : bool, default False
        Use Nesterov momentum (requires ``momentum > 0``).
    schedule : Schedule or None, default None
        Learning-rate schedule (factor of ``lr`` per epoch).

    Raises
    ------
    ValueError
        On ``lr <= 0``, ``momentum < 0``, or ``nesterov`` without momentum.

    Examples
    --------
    >>> params = {"w": np.array([1.0, -2.0])}
    >>> opt = SGD(lr=0.1, momentum=0.9)
    >>> opt.step(params, {"w": np.array([1.0, 1.0])})
    >>> params["w"]
    array([ 0.9, -2.1])
    """

    _slots: ClassVar[tuple[str, ...]] = ("buf",)

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__(lr, schedule)
        self.momentum = _as_float("momentum", momentum)
        if self.momentum < 0.0:
            raise ValueError(f"momentum must be >= 0, got {momentum!r}")
        is_bool = isinstance(nesterov, (bool, np.bool_))
        if not is_bool:
            raise ValueError(f"nesterov must be a bool, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True requires momentum > 0")

    def _active_slots(self) -> tuple[str, ...]:
        return self._slots if self.momentum != 0.0 else ()

    def _core_args(self) -> dict[str, Any]:
        return {"optimizer": "sgd", "momentum": self.momentum, "nesterov": self.nesterov}

    def _validate_slots(self, slots: dict[str, dict[str, np.ndarray]]) -> None:
        if self.momentum == 0.0 and slots["buf"]:
            raise ValueError("state has momentum buffers but this SGD has momentum=0")

    def config(self) -> dict[str, Any]:
        """Return ``{"name": "SGD", "lr", "momentum", "nesterov", "schedule"}``.

        Returns
        -------
        dict of str to object
            The constructor's arguments (the schedule as its own config, or None).

        Examples
        --------
        >>> SGD(lr=0.1, momentum=0.9).config()["momentum"]
        0.9
        """
        return {
            "name": "SGD",
            "lr": self.base_lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "schedule": self._schedule_config(),
        }


class Adam(Optimizer):
    """Adam with bias correction, PyTorch semantics (no weight decay, no amsgrad).

    With ``t`` the step count (starting at 1)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    so the first step is ``p -= lr * g / (|g| + eps)``, about ``lr * sign(g)``.

    Parameters
    ----------
    lr : float, default 1e-3
        Base learning rate, ``> 0``.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in ``[0, 1)``.
    eps : float, default 1e-8
        Denominator offset, ``> 0``.
    schedule : Schedule or None, default None
        Learning-rate schedule (factor of ``lr`` per epoch).

    Raises
    ------
    ValueError
        On ``lr <= 0``, ``betas`` not two numbers in ``[0, 1)``, or ``eps <= 0``.

    Examples
    --------
    >>> params = {"w": np.array([1.0, -2.0])}
    >>> opt = Adam(lr=0.1)
    >>> opt.step(params, {"w": np.array([3.0, -0.5])})
    >>> np.round(params["w"], 6)
    array([ 0.9, -1.9])
    """

    _slots: ClassVar[tuple[str, ...]] = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        schedule: Schedule | None = None,
    ) -> None:
        super().__init__(lr, schedule)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of floats, got {betas!r}") from None
        self.betas = (_as_float("betas[0]", b1), _as_float("betas[1]", b2))
        for i, b in enumerate(self.betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}")
        self.eps = _as_float("eps", eps)
        if self.eps <= 0.0:
            raise ValueError(f"eps must be > 0, got {eps!r}")

    def _core_args(self) -> dict[str, Any]:
        beta1, beta2 = self.betas
        return {"optimizer": "adam", "beta1": beta1, "beta2": beta2, "eps": self.eps}

    def config(self) -> dict[str, Any]:
        """Return ``{"name": "Adam", "lr", "betas", "eps", "schedule"}`` (betas as a list).

        Returns
        -------
        dict of str to object
            The constructor's arguments (the schedule as its own config, or None).

        Examples
        --------
        >>> Adam(lr=0.01).config()["betas"]
        [0.9, 0.999]
        """
        return {
            "name": "Adam",
            "lr": self.base_lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "schedule": self._schedule_config(),
        }


_OPTIMIZERS: dict[str, type[Optimizer]] = {"SGD": SGD, "Adam": Adam}


def from_config(cfg: Mapping[str, Any]) -> Optimizer:
    """Rebuild an optimiser (with its schedule) from :meth:`Optimizer.config` output.

    The result has fresh state (epoch 0, no moments); restore those with
    :meth:`Optimizer.load_state_dict`.

    Parameters
    ----------
    cfg : mapping
        ``{"name": "SGD" | "Adam", "schedule": None | {...}, **constructor_args}``,
        e.g. after a JSON round trip.

    Returns
    -------
    Optimizer
        A new :class:`SGD` or :class:`Adam` with the configured schedule.

    Raises
    ------
    ValueError
        On an unknown or missing ``"name"`` or bad constructor arguments.

    Examples
    --------
    >>> opt = from_config({"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True,
    ...                    "schedule": {"name": "CosineLR", "total_epochs": 50}})
    >>> opt
    SGD(lr=0.1, momentum=0.9, nesterov=True, schedule=CosineLR(total_epochs=50, min_factor=0.0))
    """
    args = dict(cfg)
    name = args.pop("name", None)
    if name not in _OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {sorted(_OPTIMIZERS)}, got {name!r}")
    args["schedule"] = schedule_from_config(args.get("schedule"))
    if "betas" in args and isinstance(args["betas"], list):
        args["betas"] = tuple(args["betas"])
    try:
        return _OPTIMIZERS[name](**args)
    except TypeError as exc:
        raise ValueError(f"bad optimizer config {dict(cfg)!r}: {exc}") from None
