"""The model families Daedalus knows, by name (``catalog.FAMILIES``), and the fairness mitigations around them:
lookup with helpful errors, and the families a build searches."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from daedalus.data.schema import Task
from daedalus.errors import ConfigError
from daedalus.spaces.catalog import FAMILIES
from daedalus.spaces.family import ModelFamily
from daedalus.spaces.mitigation import MITIGATIONS

__all__ = ["FAMILIES", "config_problem", "get_family", "in_distribution", "resolve_families"]


# Common abbreviations, only to suggest the right name in an error message (names themselves are strict).
_ALIASES = {"lr": "linear", "logreg": "linear", "ridge": "linear", "rf": "random_forest", "et": "extra_trees",
            "hgb": "hist_gb", "hgbt": "hist_gb", "lgb": "lightgbm", "lgbm": "lightgbm", "gbm": "lightgbm",
            "xgb": "xgboost", "cb": "catboost", "nn": "neural", "torch": "neural", "mlp": "neural"}


def _unknown(name: str) -> ConfigError:
    lowered = name.strip().lower().replace("-", "_")
    if lowered in FAMILIES:
        close = [lowered]
    elif lowered in _ALIASES:
        close = [_ALIASES[lowered]]
    else:
        close = difflib.get_close_matches(lowered, list(FAMILIES), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown model family '{name}'; {hint}choose from {', '.join(FAMILIES)}")


def get_family(name: str) -> ModelFamily:
    """A model family, or a fairness mitigation (searched only when a build asks for fairness)."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        pass
    try:
        return MITIGATIONS[name]
    except (KeyError, TypeError):
        raise _unknown(str(name)) from None


def resolve_families(include: Sequence[str] | None, exclude: Sequence[str] | None, task: Task) -> list[str]:
    """The families to search, in :data:`FAMILIES` order: ``include`` (all when None or empty) minus ``exclude``,
    keeping only those that support ``task``. Unknown names, or an empty result, raise :class:`ConfigError`."""
    for name in [*(include or ()), *(exclude or ())]:
        get_family(name)
    wanted = set(include) if include else set(FAMILIES)
    unsupported = sorted(n for n in wanted if task not in FAMILIES[n].tasks)
    if include and unsupported:
        raise ConfigError(f"model famil{'y' if len(unsupported) == 1 else 'ies'} {', '.join(unsupported)} "
                          f"cannot do {task.value}; drop {'it' if len(unsupported) == 1 else 'them'} from the "
                          f"families option")
    chosen = [n for n, f in FAMILIES.items() if n in wanted and n not in set(exclude or ()) and task in f.tasks]
    if not chosen:
        raise ConfigError(f"no model family left to search: the families option gives "
                          f"{', '.join(sorted(wanted)) or 'none'} and the exclude option removes "
                          f"{', '.join(exclude or ()) or 'none'}; keep at least one of {', '.join(FAMILIES)}")
    return chosen


def config_problem(name: str, config: Mapping[str, Any], task: Task, n_rows: int) -> str | None:
    """Why ``config`` is not a configuration of family ``name`` for this task and table size, or None when it is:
    a name it does not know, a key outside its space, a value outside its distribution. A configuration read from a
    file (a mined portfolio, a knowledge base) is someone else's data and passes here before it is queued."""
    if name not in FAMILIES:
        return f"unknown model family {name!r}"
    family = FAMILIES[name]
    if task not in family.tasks:
        return f"{name} cannot do {task.value}"
    if not isinstance(config, Mapping):
        return f"a {type(config).__name__} where a configuration belongs"
    space = family.space(task, n_rows)
    for key, value in config.items():
        dist = space.get(key)
        if dist is None:
            return f"{name} has no hyperparameter {key!r}"
        if not in_distribution(value, dist):
            return f"{name}.{key} = {value!r} is outside {dist!r}"
    return None


def in_distribution(value: Any, dist: BaseDistribution) -> bool:
    """Whether ``value`` is one the distribution can give: a listed choice of the same type, or a finite number in
    range (an integer for an integer distribution); a bool is not a number here."""
    if isinstance(dist, CategoricalDistribution):
        return any(type(value) is type(c) and value == c for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if isinstance(dist, IntDistribution) and not float(value).is_integer():
        return False
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return bool(dist.low <= value <= dist.high)
    return False
