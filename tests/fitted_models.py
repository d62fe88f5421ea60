"""Every kind of model Daedalus saves, fitted small: the evidence behind ``store.artifacts.DAEDALUS_TYPES``.

:func:`family_models` fits one model family on binary, multiclass and regression data (whichever it supports),
on two layouts (numeric, categorical and text columns; numeric and categorical only, one numeric column entirely
missing, few enough columns that k-NN picks a KD-tree), with its default configuration and, on the second
layout, each choice of each categorical hyperparameter. :func:`mitigation_models` fits each fairness mitigation
around each base it accepts, the constraints taken in turn. :func:`saved_types` saves a model with ``save_model`` and
lists the names skops does not trust by default, which is what ``load_model`` checks against the list.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from optuna.distributions import CategoricalDistribution

from daedalus.data.schema import Task
from daedalus.data.sensitive import with_sensitive_columns
from daedalus.spaces.family import Config, ModelFamily
from daedalus.spaces.mitigation import BASE_PARAM, CONSTRAINT_PARAM, MITIGATION_CONSTRAINTS, MITIGATIONS
from daedalus.spaces.registry import FAMILIES
from daedalus.spaces.testing import toy_problem
from daedalus.store.artifacts import save_model

# Small fits: the types a model holds do not depend on how many trees or epochs it has.
CAPS = {"n_estimators": 10, "iterations": 10, "max_iter": 10}
N_ROWS = 60


def _capped(config: Config) -> Config:
    return {k: min(v, CAPS[k]) if k in CAPS and isinstance(v, int) else v for k, v in config.items()}


def _variants(family: ModelFamily, task: Task) -> Iterator[tuple[str, Config]]:
    """The default configuration, then each other choice of each categorical hyperparameter on top of it."""
    default = family.default_config(task, N_ROWS)
    yield "default", default
    for name, dist in family.space(task, N_ROWS).items():
        if isinstance(dist, CategoricalDistribution):
            for choice in dist.choices:
                if default.get(name) != choice:
                    yield f"{name}={choice}", {**default, name: choice}


def family_models(name: str) -> Iterator[tuple[str, Any]]:
    """(label, fitted estimator) for family ``name``: every task, both layouts, every categorical choice."""
    family = FAMILIES[name]
    for task in sorted(family.tasks, key=lambda t: t.value):
        X, y, layout = toy_problem(task, N_ROWS, seed=1)
        yield f"{name}/{task.value}/text", family.build(_capped(family.default_config(task, N_ROWS)), layout,
                                                        task, 0, 1).fit(X, y)
        X, y, layout = toy_problem(task, N_ROWS, seed=2, text=False)
        X["num2"] = np.nan  # a column with no value at fit time (the native preprocessor fills it)
        for label, config in _variants(family, task):
            yield f"{name}/{task.value}/{label}", family.build(_capped(config), layout, task, 0, 1).fit(X, y)


def mitigation_models(name: str) -> Iterator[tuple[str, Any]]:
    """(label, fitted estimator) for fairness mitigation ``name`` around each base (the constraint, which does
    not change what is saved, alternates)."""
    mitigation = MITIGATIONS[name]
    n = 160
    X, y, layout = toy_problem(Task.BINARY, n, seed=3)
    X = with_sensitive_columns(X, pd.DataFrame({"sex": np.where(np.arange(n) % 2, "F", "M")}, dtype=object))
    for i, base in enumerate(mitigation.bases):
        constraint = MITIGATION_CONSTRAINTS[i % len(MITIGATION_CONSTRAINTS)]
        base_config = _capped(FAMILIES[base].default_config(Task.BINARY, n))
        config: Config = {BASE_PARAM: base, CONSTRAINT_PARAM: constraint,
                          **{f"{base}.{k}": v for k, v in base_config.items()}}
        if "max_iter" in mitigation.own_defaults():
            config["max_iter"] = 5  # ExponentiatedGradient's rounds: each refits the base
        yield f"{name}/{base}/{constraint}", mitigation.build(config, layout, Task.BINARY, 0, 1).fit(X, y)


def saved_types(model: Any, path: Path) -> list[str]:
    """The names in ``model``'s skops file that skops does not trust by default."""
    save_model(model, path)
    return sio.get_untrusted_types(file=path)
