"""The PyTorch MLP estimators: scikit-learn's estimator checks, persistence-friendly state, side effects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.utils.estimator_checks import check_estimator

from daedalus.spaces.families.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

# Small and quick, but able to learn the checks' toy problems (blobs, a 1-informative-feature regression).
FAST: dict[str, Any] = {"widths": (32,), "max_epochs": 40, "learning_rate": 1e-2, "batch_size": 64,
                        "random_state": 0, "n_threads": 1}


@pytest.mark.parametrize("estimator", [TorchMLPClassifier(**FAST), TorchMLPRegressor(**FAST)],
                         ids=["classifier", "regressor"])
def test_sklearn_estimator_checks(estimator: object) -> None:
    check_estimator(estimator, on_skip=None)  # the only skip: array-API input, which needs SCIPY_ARRAY_API


def test_state_is_numpy_only_and_predictions_match_a_rebuilt_module() -> None:
    X, y = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
    clf = TorchMLPClassifier(**{**FAST, "widths": (32, 32)}).fit(X, y)
    assert clf.state_ and all(isinstance(v, np.ndarray) for v in clf.state_.values())
    for value in vars(clf).values():
        assert not isinstance(value, (torch.Tensor, torch.nn.Module, torch.optim.Optimizer))
    assert (clf.n_numeric_, clf.cardinalities_, clf.n_outputs_) == (6, (), 3)
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])
    assert np.mean(clf.predict(X) == y) > 0.8


def test_same_seed_same_model_and_no_global_side_effects() -> None:
    X, y = make_regression(150, 5, noise=1.0, random_state=1)
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    threads = torch.get_num_threads()
    a = TorchMLPRegressor(**{**FAST, "n_threads": 2, "random_state": 5}).fit(X, y)
    assert torch.get_num_threads() == threads  # restored
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected_next.numpy())  # global RNG untouched
    b = TorchMLPRegressor(**{**FAST, "n_threads": 2, "random_state": 5}).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    c = TorchMLPRegressor(**{**FAST, "n_threads": 2, "random_state": 6}).fit(X, y)
    assert not np.array_equal(a.predict(X), c.predict(X))


def test_regressor_standardises_its_target() -> None:
    X, y = make_regression(300, 4, noise=0.5, random_state=2)
    target = 1e6 + 1e4 * y
    reg = TorchMLPRegressor(**{**FAST, "max_epochs": 80}).fit(X, target)
    assert reg.score(X, target) > 0.9
    assert reg.y_mean_ == pytest.approx(target.mean()) and reg.y_scale_ == pytest.approx(target.std())


def test_time_cap_and_early_stopping() -> None:
    X, y = make_classification(300, 5, random_state=3)
    capped = TorchMLPClassifier(**{**FAST, "max_epochs": 500, "max_seconds": 0.0}).fit(X, y)
    assert capped.n_epochs_ == 1
    stopped = TorchMLPClassifier(**{**FAST, "max_epochs": 500, "patience": 3}).fit(X, y)
    assert stopped.n_epochs_ < 500
    assert stopped.n_epochs_ - stopped.best_epoch_ == 3


def test_tiny_data_trains_without_a_validation_split() -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    clf = TorchMLPClassifier(**FAST).fit(X, ["a", "b", "a", "b"])
    assert clf.predict_proba(X).shape == (4, 2)
    assert set(clf.predict(X)) <= {"a", "b"}


def test_invalid_hyperparameters_raise_at_fit() -> None:
    X, y = make_classification(50, 3, n_informative=2, n_redundant=0, random_state=0)
    with pytest.raises(ValueError, match="dropout"):
        TorchMLPClassifier(dropout=1.5).fit(X, y)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_categorical_codes_go_through_embeddings(norm: str) -> None:
    """The last n_categorical columns are codes (-1 missing); the label depends on the category alone."""
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 6, size=400)
    X = np.column_stack([rng.normal(size=(400, 3)), codes])
    y = np.isin(codes, [0, 2, 5]).astype(int)
    clf = TorchMLPClassifier(**{**FAST, "widths": (32, 32), "norm": norm, "residual": True, "n_categorical": 1,
                                "max_epochs": 60}).fit(X, y)
    assert clf.cardinalities_ == (6,)
    assert clf.n_numeric_ == 3
    assert np.mean(clf.predict(X) == y) > 0.95
    unseen = X[:5].copy()
    unseen[:, 3] = 99  # a code never seen in training: treated as missing, no error
    assert clf.predict_proba(unseen).shape == (5, 2)
