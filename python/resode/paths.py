"""The interpolated path ``X(t)`` of a batch of series, evaluated by the core.

A neural CDE sees its data only through the path ``X`` that interpolates the observations
(missing values filled, shorter series padded). :func:`interpolate` evaluates that path at any
times with the core's own interpolation: it solves the controlled equation ``dz = dX`` (the
field is the identity matrix, ``z(t_0) = x_0``), whose solution is ``z(t) = X(t)``. RK4 is
exact here: on each observation interval ``dX/dt`` is a polynomial of degree at most 2 and
RK4's quadrature is exact up to degree 3. So the path drawn is the path the models integrate.
"""

from __future__ import annotations

import numpy as np

from ._typing import ArrayLike, FloatArray
from .cdeint import cdeint
from .models import as_series, as_times, default_output_times
from .models.options import Interpolation

__all__ = ["interpolate"]


def interpolate(
    U: ArrayLike,
    times: ArrayLike | None = None,
    t: ArrayLike | None = None,
    *,
    interpolation: Interpolation = "cubic",
) -> FloatArray:
    """Evaluate the interpolated paths ``X_i(t)`` of the series ``U`` at the times ``t``.

    Parameters
    ----------
    U : array_like, shape (N, L, C)
        The observations; NaN for missing values and for the padding of shorter series.
    times : array_like, shape (L,) or (N, L), optional
        The observation times; default ``0, 1, ..., L-1``.
    t : array_like, shape (Q,), optional
        Sorted times within ``[min_i t_{i,0}, max_i T_i]``. Default with shared times: the
        observation times. Before a sample's first observation its path holds its first
        value, after its last the last value.
    interpolation : {"cubic", "linear"}, default "cubic"
        As :class:`resode.NeuralCDE`'s.

    Returns
    -------
    numpy.ndarray, shape (Q, N, C), float64
        ``X_i(t_q)`` in row ``q``; equal to the (filled) observations at their times.

    Raises
    ------
    ValueError
        On bad series or times, naming the argument.

    Examples
    --------
    >>> import numpy as np
    >>> U = np.array([[[0.0], [1.0], [4.0]]])
    >>> X = interpolate(U, t=[0.0, 0.5, 1.5, 2.0], interpolation="linear")
    >>> np.round(X[:, 0, 0], 12).tolist()
    [0.0, 0.5, 2.5, 4.0]
    """
    arr = as_series(U, None, np.dtype(np.float64))
    if t is None:
        t = default_output_times(arr, as_times(times, arr.shape[0], arr.shape[1]))
    channels = arr.shape[2]
    eye = np.eye(channels)
    # the identity field: F(z) = b reshaped (C, C) with row d*C + c, i.e. dz_d = dX_d
    params = {"A": eye, "a": np.zeros(channels), "W": np.zeros((1, channels * channels, channels)),
              "b": eye.reshape(1, channels * channels)}  # fmt: skip
    return np.asarray(cdeint(params, arr, times, t=t, field="outside", activation="identity",
                             interpolation=interpolation, method="rk4"))  # fmt: skip
