"""Joint search over model family and hyperparameters with Optuna, after a portfolio of strong defaults.

The Optuna study *is* the trial database: it lives in the run's storage (SQLite by default, any SQLAlchemy
URL otherwise), so a resumed run continues the same study and the Optuna dashboard can read it. The family is
one categorical parameter; each family's hyperparameters are conditional on it and prefixed with its name
(``lightgbm.num_leaves``). TPE in its multivariate, grouped form handles that conditional space.

Before TPE proposes anything, every family's default configuration is enqueued, cheapest families first:
strong defaults find a good model within seconds, and they give TPE a spread of starting points.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from daedalus.data.schema import Task
from daedalus.designers.base import OK, PRUNED, Designer, Proposal, Result
from daedalus.spaces.mitigation import BASE_PARAM, CONSTRAINT_PARAM, MitigationFamily
from daedalus.spaces.registry import get_family

FAMILY_PARAM = "family"
STATUS_ATTR = "status"
REASON_ATTR = "reason"
PORTFOLIO_ATTR = "portfolio"
# A trial's fairness constraint value (a list; <= 0 is feasible), measured by the search on its out-of-fold
# predictions; the designer sets it as the trial's Optuna constraint (``Trial.set_constraint``) before telling
# the result, and TPE then models feasible and infeasible trials apart (Optuna's constrained TPE).
CONSTRAINT_ATTR = "constraint"
CONSTRAINT_NAME = "fairness"
MITIGATION_OF_ATTR = "mitigation_of"  # the trial a mitigation was proposed around
STEERED_ATTR = "steered"  # a configuration enqueued by 'daedalus steer enqueue': why, as the audit log says


def split_params(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A trial's flat Optuna parameters as (family, that family's configuration without the prefix)."""
    family = params[FAMILY_PARAM]
    prefix = family + "."
    return family, {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def suggest(trial: optuna.trial.Trial, name: str, dist: BaseDistribution) -> Any:
    """Ask the trial for a value of a pre-built distribution, through Optuna's public suggest API."""
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"unsupported distribution {dist!r}")


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    # multivariate/group TPE is marked experimental in Optuna, yet it is what conditional spaces need.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5)


class OptunaDesigner(Designer[dict[str, Any]]):
    name = "tpe"

    def __init__(self, study: optuna.Study, families: Sequence[str], task: Task, n_rows: int,
                 mitigation_constraint: str | None = None) -> None:
        self.study = study
        self.families = list(families)
        self.task = task
        self.n_rows = n_rows
        # Fairlearn's name of the fairness constraint that mitigation families enforce in this run (one only).
        self.mitigation_constraint = mitigation_constraint
        self._running: dict[int, optuna.trial.Trial] = {}

    def enqueue_portfolio(self) -> None:
        """Queue each family's default configuration (called once, when the study is created)."""
        for name in self.families:
            family = get_family(name)
            config = family.default_config(self.task, self.n_rows)
            if isinstance(family, MitigationFamily) and self.mitigation_constraint:
                config[CONSTRAINT_PARAM] = self.mitigation_constraint
            params = {FAMILY_PARAM: name, **{f"{name}.{k}": v for k, v in config.items()}}
            self.study.enqueue_trial(params, user_attrs={PORTFOLIO_ATTR: True}, skip_if_exists=False)

    def distributions(self, family: str) -> dict[str, BaseDistribution]:
        model_family = get_family(family)
        space = model_family.space(self.task, self.n_rows)
        if isinstance(model_family, MitigationFamily):
            # A mitigation enforces the run's constraint and wraps only the run's families.
            if self.mitigation_constraint:
                space[CONSTRAINT_PARAM] = CategoricalDistribution([self.mitigation_constraint])
            bases = [b for b in model_family.bases if b in self.families]
            if bases:
                space[BASE_PARAM] = CategoricalDistribution(bases)
        return {f"{family}.{k}": d for k, d in space.items()}

    def _suggest_config(self, trial: optuna.trial.Trial, family: str) -> None:
        """Suggest every hyperparameter of ``family``; a mitigation's base family's hyperparameters are
        conditional on the base chosen (``fair_threshold.lightgbm.num_leaves``)."""
        model_family = get_family(family)
        for name, dist in self.distributions(family).items():
            value = suggest(trial, name, dist)
            if isinstance(model_family, MitigationFamily) and name == f"{family}.{BASE_PARAM}":
                for sub, sub_dist in model_family.base_space(value, self.task, self.n_rows).items():
                    suggest(trial, f"{family}.{sub}", sub_dist)

    def enqueue(self, family: str, config: dict[str, Any], *, attrs: Mapping[str, Any],
                skip_if_exists: bool = False) -> None:
        """Queue a configuration of ``family`` (parameters left out are sampled); ``attrs`` mark it as the
        trial's user attributes: ``STEERED_ATTR`` or ``MITIGATION_OF_ATTR`` trials are taken ahead of the
        portfolio's queue. ``skip_if_exists``: not when a trial with the same parameters exists (Optuna's)."""
        params = {FAMILY_PARAM: family, **{f"{family}.{k}": v for k, v in config.items()}}
        self.study.enqueue_trial(params, user_attrs=dict(attrs), skip_if_exists=skip_if_exists)

    def enqueue_steered(self, family: str, config: dict[str, Any], why: str) -> None:
        """Queue a configuration (parameters left out are sampled) to run next, ahead of the portfolio."""
        self.enqueue(family, config, attrs={STEERED_ATTR: why})

    def ask(self) -> Proposal[dict[str, Any]]:
        # The family choice is a fixed categorical over the run's families, so its distribution stays the
        # same in every trial (Optuna needs that for TPE to model it).
        family_dist = CategoricalDistribution(self.families)
        # Steered trials first, then mitigations of a model that breaks the fairness constraint, then the queue.
        trial = (self._claim_waiting(STEERED_ATTR) or self._claim_waiting(MITIGATION_OF_ATTR)
                 or self.study.ask({FAMILY_PARAM: family_dist}))
        family = suggest(trial, FAMILY_PARAM, family_dist)
        self._suggest_config(trial, family)
        _, config = split_params(trial.params)
        if trial.user_attrs.get(MITIGATION_OF_ATTR) is not None:
            return self._proposal(trial, family, config, "mitigation: Fairlearn's ThresholdOptimizer around trial "
                                  f"{trial.user_attrs[MITIGATION_OF_ATTR]}, the best model so far that breaks "
                                  "the fairness constraint", "mitigation")
        if STEERED_ATTR in trial.user_attrs:
            return self._proposal(trial, family, config, f"steering: {trial.user_attrs[STEERED_ATTR]}", "steering")
        if trial.user_attrs.get(PORTFOLIO_ATTR):
            return self._proposal(trial, family, config, f"portfolio: the default configuration of {family}, "
                                  "tried before the search proper", "portfolio")
        return self._proposal(trial, family, config, "TPE: sampled from a density model of the "
                              f"{self._n_complete()} finished trials", self.name)

    def _proposal(self, trial: optuna.trial.Trial, family: str, config: dict[str, Any], reason: str,
                  designer: str) -> Proposal[dict[str, Any]]:
        self._running[trial.number] = trial
        return Proposal(trial.number, family, config, reason, designer)

    def _claim_waiting(self, attr: str) -> optuna.trial.Trial | None:
        """A waiting trial marked with ``attr`` (steered, or a mitigation), taken out of the queue before the
        older (portfolio) ones, as Optuna's own ``ask`` takes a waiting trial: by moving it to RUNNING."""
        for waiting in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if attr in waiting.user_attrs and self.study._storage.set_trial_state_values(
                    waiting._trial_id, TrialState.RUNNING):
                return optuna.trial.Trial(self.study, waiting._trial_id)
        return None

    def tell(self, proposal: Proposal[dict[str, Any]], result: Result) -> None:
        trial = self._running.pop(proposal.number)
        status, value, info = result.status, result.score, result.info
        for key, val in info.items():
            trial.set_user_attr(key, val)
        trial.set_user_attr(STATUS_ATTR, status)
        if status == OK and value is not None:
            if info.get(CONSTRAINT_ATTR) is not None:
                trial.set_constraint(CONSTRAINT_NAME, max(info[CONSTRAINT_ATTR]))
            self.study.tell(trial, value)
        elif status == PRUNED:  # not evaluated at all (an excluded family): TPE ranks it below every result
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, state=TrialState.FAIL)

    def _n_complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
