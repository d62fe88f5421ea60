"""A PyTorch MLP (see :mod:`daedalus.spaces.families.torch_mlp`) on one-hot / standardised features.

torch is imported inside ``build`` only: the search process needs the space, not torch, and importing torch
costs seconds of the time budget.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from sklearn.base import BaseEstimator

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.families.base import make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.preprocessing import dense_preprocessor

__all__ = ["MLPFamily"]


class MLPFamily(ModelFamily):
    name = "mlp"
    # Wall-clock cap of one fit (training stops after the epoch that crosses it); not a searched hyperparameter.
    max_seconds: float = 10.0
    max_epochs: int = 200

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        return {
            "n_layers": IntDistribution(1, 4),
            "width": IntDistribution(32, 512, log=True),
            "dropout": FloatDistribution(0.0, 0.5),
            "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
            "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
            "batch_size": CategoricalDistribution([64, 128, 256, 512]),
        }

    def default_config(self, task: Task, n_rows: int) -> Config:
        return {"n_layers": 3, "width": 128, "dropout": 0.2, "learning_rate": 1e-3, "weight_decay": 1e-4,
                "batch_size": 256}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        from daedalus.spaces.families.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

        c = resolve_config(self, config, task, self.default_config(task, 0))
        cls: Any = TorchMLPClassifier if task.is_classification else TorchMLPRegressor
        model = cls(n_layers=int(c["n_layers"]), width=int(c["width"]), dropout=float(c["dropout"]),
                    learning_rate=float(c["learning_rate"]), weight_decay=float(c["weight_decay"]),
                    batch_size=int(c["batch_size"]), max_epochs=self.max_epochs, patience=10,
                    validation_fraction=0.1, max_seconds=self.max_seconds, random_state=seed, n_threads=n_threads)
        return make_pipeline(dense_preprocessor(layout, seed), model)
