"""First-order optimisers and learning-rate schedules for dicts of NumPy arrays.

The optimisers follow PyTorch's update rules (``torch.optim.SGD`` without dampening and
weight decay, ``torch.optim.Adam`` without weight decay / amsgrad). Parameters and
gradients are dicts ``name -> numpy.ndarray`` with the same keys and shapes; ``step``
updates the parameter arrays **in place** and keeps their dtype (float32 or float64: the
update is computed in the parameter's dtype, gradients are cast to it, optimiser state has
it too). The update rules live in the compiled core (``resode/optimizers.hpp``), shared with
the whole-epoch loop of :func:`resode.fit`: one Adam, one SGD.

The learning rate is ``base_lr * schedule(epoch)``; the training loop calls
:meth:`Optimizer.epoch_end` once per epoch. Everything needed to resume is in
:meth:`Optimizer.config` (JSON-serialisable constructor arguments, rebuilt by
:func:`from_config`) and :meth:`Optimizer.state_dict` (a flat dict of NumPy arrays that
``numpy.savez`` stores without pickle). Resuming from both gives bitwise the same
trajectory as an uninterrupted run.

Examples
--------
>>> import numpy as np
>>> from resode.optim import Adam, CosineLR, from_config
>>> params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
>>> opt = Adam(lr=0.1, schedule=CosineLR(total_epochs=10))
>>> opt.step(params, {"W": 2 * params["W"], "b": params["b"] - 1.0})
>>> opt.epoch_end()
>>> state, cfg = opt.state_dict(), opt.config()
>>> resumed = from_config(cfg)
>>> resumed.load_state_dict(state)
>>> resumed.lr == opt.lr
True
"""

from __future__ import annotations

from .optimizers import SGD, Adam, Optimizer, from_config
from .schedules import CosineLR, Schedule, StepLR, schedule_from_config

__all__ = [
    "SGD",
    "Adam",
    "CosineLR",
    "Optimizer",
    "Schedule",
    "StepLR",
    "from_config",
    "schedule_from_config",
]
