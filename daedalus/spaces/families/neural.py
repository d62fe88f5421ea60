"""The ``neural`` family: networks of the NAS tabular MLP space (:class:`~daedalus.spaces.nas.mlp.MLPSpace`),
searched jointly with their training hyperparameters, and trained by the PyTorch estimators of
:mod:`daedalus.spaces.families.torch_mlp`.

Each position of the architecture genotype is one categorical hyperparameter (``depth``, ``width_1`` ..
``width_6``, ``activation``, ``norm``, ``dropout``, ``residual``, ``embedding_dim``), so the AutoML search's TPE
explores architectures the same way the NAS designers do. Widths beyond the chosen depth are ignored.

torch is imported inside ``build`` only: the search process needs the space, not torch, and importing torch
costs seconds of the time budget.
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from sklearn.base import BaseEstimator

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.families.base import make_pipeline, resolve_config
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.nas.mlp import MLPSpace
from daedalus.spaces.preprocessing import embedding_preprocessor

__all__ = ["NeuralFamily"]

SPACE = MLPSpace()


class NeuralFamily(ModelFamily):
    name = "neural"
    # Wall-clock cap of one fit (training stops after the epoch that crosses it); not a searched hyperparameter.
    max_seconds: float = 10.0
    max_epochs: int = 200

    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        architecture = {c.name: CategoricalDistribution(c.options) for c in SPACE.choices}
        return {**architecture,
                "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
                "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
                "batch_size": CategoricalDistribution([64, 128, 256, 512])}

    def default_config(self, task: Task, n_rows: int) -> Config:
        # The fixed MLP Daedalus used before the space existed: 3 x 128 ReLU, dropout 0.2.
        architecture = {c.name: c.options[0] for c in SPACE.choices}
        architecture.update({"depth": 3, "width_1": 128, "width_2": 128, "width_3": 128, "dropout": 0.2,
                             "embedding_dim": 8})
        return {**architecture, "learning_rate": 1e-3, "weight_decay": 1e-4, "batch_size": 256}

    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        from daedalus.spaces.families.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

        c = resolve_config(self, config, task, self.default_config(task, 0))
        network = SPACE.network_arguments(SPACE.from_config(c))
        cls: Any = TorchMLPClassifier if task.is_classification else TorchMLPRegressor
        model = cls(**network, n_categorical=len(layout.categorical), learning_rate=float(c["learning_rate"]),
                    weight_decay=float(c["weight_decay"]), batch_size=int(c["batch_size"]),
                    max_epochs=self.max_epochs, patience=10, validation_fraction=0.1,
                    max_seconds=self.max_seconds, random_state=seed, n_threads=n_threads)
        return make_pipeline(embedding_preprocessor(layout, seed), model)
