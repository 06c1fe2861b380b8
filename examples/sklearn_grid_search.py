"""
A neural ODE in a scikit-learn grid search
==========================================

``StandardScaler`` then :class:`~resode.sklearn.NeuralODEClassifier` on the 8x8 digits (64
features, 10 classes), a small grid over the horizon ``T`` and the learning rate, tuned by
``GridSearchCV`` with 3-fold cross-validation. Needs scikit-learn. Run it with
``python examples/sklearn_grid_search.py``.
"""

from resode import datasets
from resode.sklearn import NeuralODEClassifier
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = datasets.digits(seed=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
pipeline = make_pipeline(
    StandardScaler(),
    NeuralODEClassifier(
        pieces=4, field="outside", augment=0, epochs=30, batch_size=128, random_state=0
    ),
)
grid = {"neuralodeclassifier__T": [0.5, 1.0], "neuralodeclassifier__lr": [1e-2, 3e-2]}
search = GridSearchCV(pipeline, grid, cv=3).fit(X_train, y_train)
print("best:", search.best_params_, f"cross-validated accuracy {search.best_score_:.3f}")
print(f"test accuracy {search.score(X_test, y_test):.3f}")
