"""scikit-learn estimators: :class:`NeuralODEClassifier`, :class:`ResNetClassifier`,
:class:`NeuralODERegressor` and :class:`ResNetRegressor` for points, and
:class:`NeuralCDEClassifier` and :class:`NeuralCDERegressor` for time series (panels in the
layouts of aeon and sktime: ``(n_cases, n_channels, n_timepoints)``, or a list of
``(n_channels, n_timepoints_i)`` arrays of unequal lengths; see :func:`as_panel`).

They wrap :class:`resode.NeuralODE` / :class:`resode.ResNet` and :func:`resode.fit` behind the
scikit-learn API (``fit``, ``predict``, ``predict_proba`` for classifiers, ``score``,
``get_params``, ``set_params``), so they work in ``Pipeline``, ``GridSearchCV`` and
``cross_val_score``. Every model, optimiser and training option is an estimator parameter,
with the defaults of ``resode train``; ``early_stopping``, ``validation_fraction``,
``n_iter_no_change`` and ``tol`` have the meanings of scikit-learn's ``MLPRegressor``.
Classifier labels may be any sortable values (ints, strings, ...); they are mapped to
``0..n_classes-1`` through ``classes_``. The neural ODE estimators also take inputs
``u(t)`` beside ``X``: ``fit(X, y, u=U, times=None)`` and the same ``u`` in ``predict``,
``predict_proba`` and ``score`` train and apply ``NeuralODE(dim, inputs=C)``
(``inputs="auto"``). Regressors fit real targets ``(n,)`` or
``(n, n_outputs)`` with the mean squared error and score R^2. ``X`` may be a pandas DataFrame
(its column names become ``feature_names_in_``). The features are used as given: standardise
them with scikit-learn's ``StandardScaler`` in a ``Pipeline``. Needs scikit-learn
(``pip install resode[sklearn]``).

Examples
--------
>>> import resode
>>> from resode.sklearn import NeuralODEClassifier
>>> X, y = resode.datasets.concentric_spheres(200, seed=0)
>>> clf = NeuralODEClassifier(epochs=150, random_state=0).fit(X, y)
>>> clf.score(X, y) >= 0.95
True
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
    import threadpoolctl  # noqa: F401  (a dependency of scikit-learn)
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "resode.sklearn needs scikit-learn; install it with `pip install resode[sklearn]` "
        "(or `pip install scikit-learn`)"
    ) from exc

from ._base import in_parallel_worker
from ._cde import NeuralCDEClassifier, NeuralCDERegressor, as_panel
from ._estimators import (
    NeuralODEClassifier,
    NeuralODERegressor,
    ResNetClassifier,
    ResNetRegressor,
)

__all__ = [
    "NeuralCDEClassifier",
    "NeuralCDERegressor",
    "NeuralODEClassifier",
    "NeuralODERegressor",
    "ResNetClassifier",
    "ResNetRegressor",
    "as_panel",
    "in_parallel_worker",
]
