"""Gradient-boosted trees: scikit-learn's HistGradientBoosting, LightGBM, XGBoost and CatBoost.

All four use their native categorical handling on :func:`native_preprocessor`'s output (categorical columns
first). Only HistGradientBoosting can early-stop without a separate validation set (``early_stopping="auto"``:
on when there are more than 10,000 rows); the three libraries get a tuned number of trees and learning rate,
bounded so that one fit stays within seconds on a 2-core machine.

The three libraries are imported inside ``build``: the process that runs the search only needs the spaces, and
importing them costs seconds of the time budget (the trial workers import them once, in the forkserver).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.families.base import make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.preprocessing import native_categorical_indices, native_feature_types, native_preprocessor


class ContiguousLabelClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Fits ``estimator`` on the labels re-coded as 0..m-1 and reports the original ones in ``classes_``.

    XGBoost insists on labels 0..m-1, but a cross-validation fold can lack a rare class (labels {0, 2}).
    CatBoost's own ``predict`` returns a column, not a vector, for multiclass; here ``predict`` is the arg-max
    of ``predict_proba`` for every library. With a single class there is nothing to learn: its probability is 1.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> ContiguousLabelClassifier:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator_ = None if len(self.classes_) < 2 else clone(self.estimator).fit(X, codes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        if self.estimator_ is None:
            return np.ones((X.shape[0], 1))
        return np.asarray(self.estimator_.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])


def _default_rounds(task: Task) -> tuple[int, float]:
    """Boosting rounds and learning rate of the defaults. A multiclass booster grows one tree per class per
    round (letter: 26), so its default takes fewer, larger steps: 300 rounds there cost more than a whole
    60 s budget on 2 cores."""
    return (100, 0.1) if task is Task.MULTICLASS else (300, 0.05)


def _max_rounds(task: Task) -> int:
    return 300 if task is Task.MULTICLASS else 1000


def _learning_rate() -> FloatDistribution:
    return FloatDistribution(0.01, 0.3, log=True)


class HistGBFamily(ModelFamily):
    name = "hist_gb"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {
            "learning_rate": _learning_rate(),
            "max_iter": IntDistribution(50, _max_rounds(task), log=True),
            "max_leaf_nodes": IntDistribution(8, 128, log=True),
            "min_samples_leaf": IntDistribution(2, 100, log=True),
            "l2_regularization": FloatDistribution(1e-4, 10.0, log=True),
            "max_features": FloatDistribution(0.3, 1.0),
        }

    def default_config(self, task: Task, n_rows: int) -> Config:
        return {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                "l2_regularization": 1e-4, "max_features": 1.0}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        # Threads: HistGradientBoosting uses OpenMP; the evaluator caps it with threadpoolctl.
        c = resolve_config(self, config, task, self.default_config(task, 0))
        cats = native_categorical_indices(layout)
        cls = HistGradientBoostingClassifier if task.is_classification else HistGradientBoostingRegressor
        model = cls(learning_rate=c["learning_rate"], max_iter=int(c["max_iter"]),
                    max_leaf_nodes=int(c["max_leaf_nodes"]), min_samples_leaf=int(c["min_samples_leaf"]),
                    l2_regularization=c["l2_regularization"], max_features=c["max_features"],
                    categorical_features=cats or None, early_stopping="auto", random_state=seed)
        return make_pipeline(native_preprocessor(layout, seed), model)


class LightGBMFamily(ModelFamily):
    name = "lightgbm"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {
            "n_estimators": IntDistribution(50, _max_rounds(task), log=True),
            "learning_rate": _learning_rate(),
            "num_leaves": IntDistribution(4, 256, log=True),
            "min_child_samples": IntDistribution(2, 100, log=True),
            "colsample_bytree": FloatDistribution(0.3, 1.0),
            "subsample": FloatDistribution(0.5, 1.0),
            "reg_lambda": FloatDistribution(1e-3, 10.0, log=True),
            "extra_trees": CategoricalDistribution([False, True]),
        }

    def default_config(self, task: Task, n_rows: int) -> Config:
        trees, rate = _default_rounds(task)
        return {"n_estimators": trees, "learning_rate": rate, "num_leaves": 31, "min_child_samples": 20,
                "colsample_bytree": 0.8, "subsample": 1.0, "reg_lambda": 1e-3, "extra_trees": False}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        from lightgbm import LGBMClassifier, LGBMRegressor

        c = resolve_config(self, config, task, self.default_config(task, 0))
        cats = native_categorical_indices(layout)
        extra: dict[str, Any] = {"cat_feature": cats} if cats else {}
        cls = LGBMClassifier if task.is_classification else LGBMRegressor
        model = cls(n_estimators=int(c["n_estimators"]), learning_rate=c["learning_rate"],
                    num_leaves=int(c["num_leaves"]), min_child_samples=int(c["min_child_samples"]),
                    colsample_bytree=c["colsample_bytree"], subsample=c["subsample"],
                    subsample_freq=1 if c["subsample"] < 1.0 else 0, reg_lambda=c["reg_lambda"],
                    extra_trees=bool(c["extra_trees"]), n_jobs=n_threads, random_state=seed, verbose=-1,
                    **extra)
        return make_pipeline(native_preprocessor(layout, seed), model)


class XGBoostFamily(ModelFamily):
    name = "xgboost"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {
            "n_estimators": IntDistribution(50, _max_rounds(task), log=True),
            "learning_rate": _learning_rate(),
            "max_depth": IntDistribution(2, 10),
            "min_child_weight": FloatDistribution(0.5, 20.0, log=True),
            "subsample": FloatDistribution(0.5, 1.0),
            "colsample_bytree": FloatDistribution(0.3, 1.0),
            "reg_lambda": FloatDistribution(1e-3, 10.0, log=True),
            "reg_alpha": FloatDistribution(1e-3, 10.0, log=True),
        }

    def default_config(self, task: Task, n_rows: int) -> Config:
        trees, rate = _default_rounds(task)
        return {"n_estimators": trees, "learning_rate": rate, "max_depth": 6, "min_child_weight": 1.0,
                "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "reg_alpha": 1e-3}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        from xgboost import XGBClassifier, XGBRegressor

        c = resolve_config(self, config, task, self.default_config(task, 0))
        has_cats = bool(layout.categorical)
        params: dict[str, Any] = {
            "n_estimators": int(c["n_estimators"]), "learning_rate": c["learning_rate"],
            "max_depth": int(c["max_depth"]), "min_child_weight": c["min_child_weight"],
            "subsample": c["subsample"], "colsample_bytree": c["colsample_bytree"],
            "reg_lambda": c["reg_lambda"], "reg_alpha": c["reg_alpha"],
            "tree_method": "hist", "enable_categorical": has_cats,
            "feature_types": native_feature_types(layout) if has_cats else None,
            "n_jobs": n_threads, "random_state": seed, "verbosity": 0,
        }
        model: Any = (ContiguousLabelClassifier(XGBClassifier(**params)) if task.is_classification
                      else XGBRegressor(**params))
        return make_pipeline(native_preprocessor(layout, seed), model)


class CatBoostFamily(ModelFamily):
    name = "catboost"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {
            "iterations": IntDistribution(50, _max_rounds(task), log=True),
            "learning_rate": _learning_rate(),
            "depth": IntDistribution(3, 8),
            "l2_leaf_reg": FloatDistribution(0.5, 30.0, log=True),
        }

    def default_config(self, task: Task, n_rows: int) -> Config:
        trees, rate = _default_rounds(task)
        return {"iterations": trees, "learning_rate": min(0.3, rate * 1.6), "depth": 6, "l2_leaf_reg": 3.0}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        from catboost import CatBoostClassifier, CatBoostRegressor

        c = resolve_config(self, config, task, self.default_config(task, 0))
        cats = native_categorical_indices(layout)
        cls = CatBoostClassifier if task.is_classification else CatBoostRegressor
        # cat_features as a tuple: CatBoost copies a list, which breaks sklearn.base.clone.
        model: Any = cls(iterations=int(c["iterations"]), learning_rate=c["learning_rate"], depth=int(c["depth"]),
                         l2_leaf_reg=c["l2_leaf_reg"], cat_features=tuple(cats) or None, thread_count=n_threads,
                         random_seed=seed, logging_level="Silent", allow_writing_files=False)
        if task.is_classification:
            model = ContiguousLabelClassifier(model)
        return make_pipeline(native_preprocessor(layout, seed, categories="strings"), model)
