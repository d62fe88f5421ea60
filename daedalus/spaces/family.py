"""A model family: a named search space of hyperparameters plus a builder that turns one configuration
into an unfitted scikit-learn estimator (a Pipeline with the family's own preprocessing).

A family never trains or scores anything; it only describes and builds. The search (``designers``)
samples configurations from ``space``; the evaluator (``evaluation``) fits what ``build`` returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from optuna.distributions import BaseDistribution
from sklearn.base import BaseEstimator

from daedalus.data.schema import FeatureLayout, Task

Config = dict[str, Any]


class ModelFamily(ABC):
    """Subclasses set ``name`` and ``tasks`` and implement the three methods below."""

    name: str
    tasks: frozenset[Task] = frozenset(Task)

    @abstractmethod
    def space(self, task: Task, n_rows: int) -> dict[str, BaseDistribution]:
        """Hyperparameter distributions (Optuna's). Names are the family's own, without a prefix."""

    @abstractmethod
    def default_config(self, task: Task, n_rows: int) -> Config:
        """A strong default, tried before the search proper. Every key must be in ``space``."""

    @abstractmethod
    def build(self, config: Config, layout: FeatureLayout, task: Task, seed: int, n_threads: int) -> BaseEstimator:
        """An unfitted estimator taking the prepared frame (``layout.columns``) and the encoded target.

        For classification the target is encoded as integers 0..k-1; ``predict_proba`` must return k columns.
        """
