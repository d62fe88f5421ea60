"""Helpers shared by the family modules: configuration checking and the pipeline shape every family builds."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from daedalus.data.schema import Task
from daedalus.errors import ConfigError
from daedalus.spaces.family import Config, ModelFamily


def resolve_config(family: ModelFamily, config: Config, task: Task, defaults: Config) -> Config:
    """``config`` completed from ``defaults`` (keys the space has but the config lacks, e.g. from an older
    run); a key the family does not know raises :class:`ConfigError`."""
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for model family "
                          f"'{family.name}' ({task.value}); its hyperparameters are {', '.join(sorted(defaults))}")
    return {**defaults, **config}


def make_pipeline(preprocessor: Any, model: BaseEstimator) -> Pipeline:
    """The shape of every built estimator: ``Pipeline([("prep", ...), ("model", ...)])``."""
    return Pipeline([("prep", preprocessor), ("model", model)])


def cap(value: int, low: int, high: int) -> int:
    return max(low, min(high, int(value)))
