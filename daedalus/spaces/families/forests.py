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
from daedalus.errors import ConfigError
from daedalus.spaces.families.base import make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.preprocessing import tree_preprocessor

# max_features choices: strings so that a stored configuration never confuses 1.0 (all) with 1 (one feature).
MAX_FEATURES = {"sqrt": "sqrt", "log2": "log2", "0.25": 0.25, "0.5": 0.5, "0.75": 0.75, "1.0": 1.0}


def _trees(n_rows: int) -> tuple[int, int]:
    """(default, maximum) number of trees: fewer on large data, where each tree costs more to grow and to
    store (a fully grown tree has about one leaf per training row)."""
    if n_rows <= 10_000:
        return 300, 500
    if n_rows <= 25_000:
        return 200, 300
    return 100, 200


def _max_features(family: str, value: Any) -> Any:
    try:
        return MAX_FEATURES[str(value)]
    except KeyError:
        raise ConfigError(f"{family}.max_features must be one of {', '.join(MAX_FEATURES)}, got {value!r}") from None


class _ForestFamily(ModelFamily):
    classifier: type[Any]
    regressor: type[Any]
    default_bootstrap: bool = True
    default_regression_max_features: str = "1.0"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        space: dict[str, BaseDistribution] = {
            "n_estimators": IntDistribution(50, _trees(n_rows)[1], log=True),
            "max_features": CategoricalDistribution(list(MAX_FEATURES)),
            "min_samples_leaf": IntDistribution(1, 32, log=True),
            "bootstrap": CategoricalDistribution([False, True]),
        }
        if task.is_classification:
            space["criterion"] = CategoricalDistribution(["gini", "entropy"])
        return space

    def default_config(self, task: Task, n_rows: int) -> Config:
        config: Config = {
            "n_estimators": _trees(n_rows)[0],
            "max_features": "sqrt" if task.is_classification else self.default_regression_max_features,
            "min_samples_leaf": 1,
            "bootstrap": self.default_bootstrap,
        }
        if task.is_classification:
            config["criterion"] = "gini"
        return config

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        c = resolve_config(self, config, task, self.default_config(task, 0))
        params: dict[str, Any] = {
            "n_estimators": int(c["n_estimators"]),
            "max_features": _max_features(self.name, c["max_features"]),
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
    default_regression_max_features = "0.5"  # half the cost of all features, close to R's p/3 default


class ExtraTreesFamily(_ForestFamily):
    name = "extra_trees"
    classifier = ExtraTreesClassifier
    regressor = ExtraTreesRegressor
    default_bootstrap = False
    default_regression_max_features = "1.0"  # Geurts et al.'s default for regression; ET splits are cheap
