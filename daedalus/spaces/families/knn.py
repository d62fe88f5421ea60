"""k-nearest neighbours on one-hot / standardised features."""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from sklearn.base import BaseEstimator
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.families.base import cap, make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.preprocessing import dense_preprocessor

MAX_NEIGHBORS = 100
DEFAULT_NEIGHBORS = 15


def _max_neighbors(n_rows: int) -> int:
    # A cross-validation fold trains on at least half the rows, and k-NN needs k <= its training rows.
    return cap(n_rows // 2, 2, MAX_NEIGHBORS)


class KNNFamily(ModelFamily):
    name = "knn"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {
            "n_neighbors": IntDistribution(1, _max_neighbors(n_rows), log=True),
            "weights": CategoricalDistribution(["uniform", "distance"]),
            "p": CategoricalDistribution([1, 2]),
        }

    def default_config(self, task: Task, n_rows: int) -> Config:
        return {"n_neighbors": min(DEFAULT_NEIGHBORS, _max_neighbors(n_rows)), "weights": "distance", "p": 2}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        c = resolve_config(self, config, task, {"n_neighbors": DEFAULT_NEIGHBORS, "weights": "distance", "p": 2})
        cls: Any = KNeighborsClassifier if task.is_classification else KNeighborsRegressor
        model = cls(n_neighbors=int(c["n_neighbors"]), weights=c["weights"], p=int(c["p"]), n_jobs=n_threads)
        return make_pipeline(dense_preprocessor(layout, seed), model)
