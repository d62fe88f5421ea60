"""TPE shaped by similar past trials (issue 12.4): what the search proposes after the warm start's queue.

A cold TPE learns only from this run's trials. A warm build also knows how configurations fared on similar tables:
the portfolio's members on the nearest corpus tasks, and every trial of the user's most similar past runs. Those
become *prior trials*: a configuration and its quantile on its own task (0 = the best there, 1 = the worst or a
failure). Scores of different tables are not comparable; ranks within each table are, and TPE only needs ranks (it
splits the trials into the better ``gamma`` share and the rest).

For the first ``SHAPED_PROPOSALS`` proposals after the queue, TPE is fitted on the prior trials together with this
run's finished trials (their quantiles within the run), this run's last (Optuna weighs recent trials most once
there are more than 25); from then on the run's own trials alone drive it, as in a cold search. The proposal is then
queued in the run's study and asked for as usual, so the study holds only this run's trials, and a resumed run
continues from the prior stored with the study (``PRIOR_ATTR``).

This module only plans and samples; ``OptunaDesigner`` decides when.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from daedalus.designers.optuna_queue import contains

SHAPED_PROPOSALS = 8  # TPE proposals after the queue that the prior trials shape
PRIOR_TASKS = 3  # nearest corpus tasks whose portfolio scores become prior trials
PRIOR_TRIALS_PER_RUN = 40  # at most this many trials of each similar past run (its best and worst ends kept)


@dataclass(frozen=True)
class PriorTrial:
    """A configuration tried on a similar task: ``quantile`` 0 was the best there, 1 the worst (or failed)."""

    family: str
    config: dict[str, Any]
    quantile: float
    source: str  # "corpus task aer_cps1988", "past run 3f2a91c04b1d"

    def to_record(self) -> list[Any]:
        return [self.family, self.config, self.quantile, self.source]

    @classmethod
    def from_record(cls, record: Any) -> PriorTrial | None:
        """A stored prior trial back, or None if the record is damaged (a study is a file another may write)."""
        try:
            family, config, quantile, source = record
            quantile = float(quantile)
        except (TypeError, ValueError):
            return None
        if not (isinstance(family, str) and isinstance(config, dict) and isinstance(source, str)
                and math.isfinite(quantile) and 0.0 <= quantile <= 1.0):
            return None
        return cls(family, config, quantile, source)


def quantiles(utilities: Sequence[float]) -> list[float]:
    """Each value's place among ``utilities`` (higher is better; NaN = failed): 0 for the best, 1 for the worst and
    for failures; ties share the mean of their places."""
    values = np.asarray(utilities, dtype=float)
    finite = np.isfinite(values)
    out = np.ones(len(values))
    count = int(finite.sum())
    if count == 1:
        out[finite] = 0.0
    elif count > 1:
        order = values[finite]
        # rank 0 = best; ties: the mean of the places they occupy
        below = np.array([(order > v).sum() for v in order], dtype=float)
        equal = np.array([(order == v).sum() for v in order], dtype=float)
        out[finite] = (below + (equal - 1) / 2) / (count - 1)
    return [float(x) for x in out]


def corpus_prior(scores_by_task: Sequence[tuple[str, Sequence[float]]],
                 candidates: Sequence[tuple[str, dict[str, Any]]]) -> list[PriorTrial]:
    """Prior trials from the nearest corpus tasks: each ``(task name, normalised score per candidate)`` ranks the
    usable ``candidates`` (family, configuration) on that task."""
    out = []
    for name, scores in scores_by_task:
        for (family, config), q in zip(candidates, quantiles(scores), strict=True):
            out.append(PriorTrial(family, dict(config), q, f"corpus task {name}"))
    return out


def run_prior(run_id: str, trials: Sequence[tuple[str, dict[str, Any], float]],
              limit: int = PRIOR_TRIALS_PER_RUN) -> list[PriorTrial]:
    """Prior trials from one past run: ``trials`` are (family, configuration, utility: higher is better, NaN =
    failed); a long run keeps its best and worst ends (the middle says least about where to look)."""
    q = quantiles([u for _, _, u in trials])
    ranked = sorted(range(len(trials)), key=lambda i: q[i])
    if len(ranked) > limit:
        ranked = ranked[:limit - limit // 4] + ranked[-(limit // 4):]
    return [PriorTrial(trials[i][0], dict(trials[i][1]), q[i], f"past run {run_id[:12]}") for i in ranked]


def own_quantiles(trials: Sequence[FrozenTrial], maximize: bool) -> list[tuple[FrozenTrial, float]]:
    """This run's finished trials with their quantiles within the run."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    sign = 1.0 if maximize else -1.0
    return list(zip(done, quantiles([sign * float(t.value) for t in done]), strict=True))  # type: ignore[arg-type]


def shaped_study(prior: Sequence[PriorTrial], own: Sequence[tuple[FrozenTrial, float]], family_param: str,
                 families: Sequence[str], distributions: Callable[[str], dict[str, BaseDistribution]],
                 seed: int) -> optuna.Study:
    """An in-memory study holding the prior trials, then this run's (values: quantiles, lower is better), with a
    TPE sampler like the run's, ready to ``ask``. A prior configuration outside this run's space is left out."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=0)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    family_dist = CategoricalDistribution(list(families))
    trials = []
    for p in prior:
        params = in_space(p, family_param, family_dist, distributions)
        if params is not None:
            trials.append(optuna.trial.create_trial(params=params[0], distributions=params[1], value=p.quantile))
    for t, q in own:
        trials.append(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=q))
    study.add_trials(trials)
    return study


def in_space(prior: PriorTrial, family_param: str, family_dist: CategoricalDistribution,
             distributions: Callable[[str], dict[str, BaseDistribution]]
             ) -> tuple[dict[str, Any], dict[str, BaseDistribution]] | None:
    """The prior trial as flat Optuna parameters and their distributions, or None when its family is not searched
    or a value lies outside this run's space (a corpus task of another size, a past run of another version)."""
    if prior.family not in family_dist.choices:
        return None
    space = distributions(prior.family)
    params: dict[str, Any] = {family_param: prior.family}
    dists: dict[str, BaseDistribution] = {family_param: family_dist}
    for key, value in prior.config.items():
        name = f"{prior.family}.{key}"
        dist = space.get(name)
        if dist is None or not contains(dist, value):
            return None
        params[name], dists[name] = value, dist
    return params, dists
