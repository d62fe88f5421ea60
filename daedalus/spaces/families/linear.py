"""Regularised linear models on one-hot / standardised features.

Classification: LogisticRegression, L2 with lbfgs or elastic net with saga (fast on standardised inputs).
Regression: Ridge (L2) or ElasticNet, both on a standardised target so that the penalty does not depend on the
target's scale.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.families.base import make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.preprocessing import dense_preprocessor


class LinearFamily(ModelFamily):
    name = "linear"

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        penalty = CategoricalDistribution(["l2", "elasticnet"])
        l1_ratio = FloatDistribution(0.0, 1.0)
        if task.is_classification:
            return {"penalty": penalty, "C": FloatDistribution(1e-3, 1e2, log=True), "l1_ratio": l1_ratio}
        return {"penalty": penalty, "alpha": FloatDistribution(1e-3, 1e4, log=True),
                "enet_alpha": FloatDistribution(1e-5, 1.0, log=True), "l1_ratio": l1_ratio}

    def default_config(self, task: Task, n_rows: int) -> Config:
        if task.is_classification:
            return {"penalty": "l2", "C": 1.0, "l1_ratio": 0.5}
        return {"penalty": "l2", "alpha": 1.0, "enet_alpha": 1e-3, "l1_ratio": 0.5}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        c = resolve_config(self, config, task, self.default_config(task, 0))
        model: Any
        if task.is_classification:
            if c["penalty"] == "l2":
                model = LogisticRegression(C=c["C"], l1_ratio=0.0, solver="lbfgs", max_iter=1000, random_state=seed)
            else:
                model = LogisticRegression(C=c["C"], l1_ratio=c["l1_ratio"], solver="saga", max_iter=300,
                                           tol=1e-4, random_state=seed)
        else:
            inner: Any
            if c["penalty"] == "l2":
                inner = Ridge(alpha=c["alpha"])
            else:
                inner = ElasticNet(alpha=c["enet_alpha"], l1_ratio=c["l1_ratio"], max_iter=2000,
                                   random_state=seed)
            model = TransformedTargetRegressor(regressor=inner, transformer=StandardScaler())
        return make_pipeline(dense_preprocessor(layout, seed), model)
