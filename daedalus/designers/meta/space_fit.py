"""A configuration mined on one task, made valid for another: the one rule both the matrix builder and the
portfolio use, so a member is evaluated offline exactly as a build will run it."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import FloatDistribution, IntDistribution

from daedalus.data.schema import Task
from daedalus.spaces.registry import get_family, in_distribution

Config = dict[str, Any]


def fit_to_space(family: str, config: Config | None, task: Task, n_rows: int) -> Config:
    """``config`` (None: the family's default) projected onto ``family``'s space for ``task`` and ``n_rows``:
    keys the space lacks are dropped, numbers clipped into range, a categorical value the space does not offer
    and a missing key take the family's default. A regression task has no ``criterion``, a large table fewer
    trees at most: the mined configuration keeps everything that still applies."""
    model_family = get_family(family)
    default = model_family.default_config(task, n_rows)
    if config is None:
        return dict(default)
    space = model_family.space(task, n_rows)
    out: Config = {}
    for key, dist in space.items():
        value = config.get(key, default.get(key))
        if in_distribution(value, dist):
            out[key] = value
        elif isinstance(dist, (IntDistribution, FloatDistribution)) and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and math.isfinite(value):
            clipped = min(max(value, dist.low), dist.high)
            out[key] = int(round(clipped)) if isinstance(dist, IntDistribution) else float(clipped)
        else:
            out[key] = default.get(key)
    return out
