"""Random forest and extra trees (scikit-learn), on ordinal-coded categoricals with NaN-aware splits."""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.families.base import make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.preprocessing import tree_preprocessor

# max_features choices: strings so that a stored configuration never confuses 1.0 (all) with 1 (one feature).
MAX_FEATURES = {"sqrt": "sqrt", "log2": "log2", "0.25": 0.25, "0.5": 0.5, "0.75": 0.75, "1.0": 1.0}


class _ForestFamily(ModelFamily):
    classifier: type[Any]
    regressor: type[Any]

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        space: dict[str, BaseDistribution] = {
            "n_estimators": IntDistribution(50, 500, log=True),
            "max_features": CategoricalDistribution(list(MAX_FEATURES)),
            "min_samples_leaf": IntDistribution(1, 32, log=True),
            "bootstrap": CategoricalDistribution([False, True]),
        }
        if task.is_classification:
            space["criterion"] = CategoricalDistribution(["gini", "entropy"])
        return space

    def default_config(self, task: Task, n_rows: int) -> Config:
        config: Config = {
            "n_estimators": 300,
            "max_features": "sqrt" if task.is_classification else "1.0",
            "min_samples_leaf": 1,
            "bootstrap": self.default_bootstrap,
        }
        if task.is_classification:
            config["criterion"] = "gini"
        return config

    default_bootstrap: bool = True

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        c = resolve_config(self, config, task, self.default_config(task, 0))
        params: dict[str, Any] = {
            "n_estimators": int(c["n_estimators"]),
            "max_features": MAX_FEATURES[str(c["max_features"])],
            "min_samples_leaf": int(c["min_samples_leaf"]),
            "bootstrap": bool(c["bootstrap"]),
            "n_jobs": n_threads,
            "random_state": seed,
        }
        if task.is_classification:
            model = self.classifier(criterion=c["criterion"], **params)
        else:
            model = self.regressor(**params)
        return make_pipeline(tree_preprocessor(layout, seed), model)


class RandomForestFamily(_ForestFamily):
    name = "random_forest"
    classifier = RandomForestClassifier
    regressor = RandomForestRegressor
    default_bootstrap = True


class ExtraTreesFamily(_ForestFamily):
    name = "extra_trees"
    classifier = ExtraTreesClassifier
    regressor = ExtraTreesRegressor
    default_bootstrap = False
