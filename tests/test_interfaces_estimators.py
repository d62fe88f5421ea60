"""The Python API follows scikit-learn's estimator contract."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.utils.estimator_checks import check_estimator

import daedalus
from daedalus import AutoClassifier, AutoRegressor
from daedalus.oversight.approval import approve
from tests.conftest import reviewer_key

pytestmark = pytest.mark.slow


def test_classifier_fit_predict_and_reload(tmp_path):
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    y = y.map({0: "malignant", 1: "benign"})
    # explain=False: explanations are not what is tested here (test_regressor_on_numpy_arrays keeps them on)
    model = AutoClassifier(n_trials=3, families=("linear", "lightgbm"), run_dir=str(tmp_path / "r"), explain=False,
                           n_threads=1)
    assert model.fit(X, y) is model
    assert list(model.classes_) == ["benign", "malignant"]
    proba = model.predict_proba(X.head(20))
    assert proba.shape == (20, 2) and np.allclose(proba.sum(axis=1), 1)
    assert set(model.predict(X)) <= {"benign", "malignant"}
    assert model.score(X, y) > 0.9
    assert {"trial", "family", "score", "status"} <= set(model.leaderboard_.columns)
    reviewer_key("tester")  # decisions are signed
    approve(tmp_path / "r", "tester", "reloaded for use: the approval gate applies (tests/test_oversight_load_gate.py)")
    again = daedalus.load(tmp_path / "r")
    assert isinstance(again, AutoClassifier)
    assert np.allclose(again.predict_proba(X.head(20)), proba)


def test_regressor_on_numpy_arrays():
    X, y = load_diabetes(return_X_y=True)
    model = AutoRegressor(n_trials=2, families=("linear",)).fit(X, y)
    pred = model.predict(X[:10])
    assert pred.shape == (10,) and model.score(X, y) > 0.3
    assert model.leaderboard_["metric"].iloc[0] == "rmse"


def test_params_are_stored_as_given():
    model = AutoClassifier(time_budget=5, families=("knn",), seed=7)
    assert model.get_params()["families"] == ("knn",) and model.get_params()["seed"] == 7
    assert not hasattr(model, "classes_")


# The contract checks fit some hundred times: explanations (tested elsewhere) would triple their time.
@pytest.mark.parametrize("estimator", [
    AutoClassifier(n_trials=1, families=("linear",), keep_leaks=True, n_threads=1, explain=False),
    AutoRegressor(n_trials=1, families=("linear",), keep_leaks=True, n_threads=1, explain=False),
])
def test_sklearn_estimator_checks(estimator):
    expected = {
        # By design, a target with a single value is a user error (DataError naming the fix), not a model.
        "check_fit2d_1sample": "one row has one target value: rejected as a user error",
        "check_classifiers_one_label": "a single class is rejected as a user error",
    }
    check_estimator(estimator, expected_failed_checks=expected)


def test_dataframe_with_categories_is_accepted():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=120), "c": rng.choice(["x", "y"], 120)})
    y = (X["a"] > 0).astype(int) ^ (X["c"] == "x")
    model = AutoClassifier(n_trials=2, families=("lightgbm",), keep_leaks=True, explain=False,
                           n_threads=1).fit(X, y)
    assert model.predict(X).shape == (120,)
