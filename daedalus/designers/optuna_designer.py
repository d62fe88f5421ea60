"""Joint search over model family and hyperparameters with Optuna, after a portfolio of strong defaults.

The Optuna study *is* the trial database: it lives in the run's storage (SQLite by default, any SQLAlchemy
URL otherwise), so a resumed run continues the same study and the Optuna dashboard can read it. The family is
one categorical parameter; each family's hyperparameters are conditional on it and prefixed with its name
(``lightgbm.num_leaves``). TPE in its multivariate, grouped form handles that conditional space.

Before TPE proposes anything, every family's default configuration is enqueued, cheapest families first:
strong defaults find a good model within seconds, and they give TPE a spread of starting points.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from daedalus.data.schema import Task
from daedalus.designers.base import OK, PRUNED, Designer, Proposal, Result
from daedalus.designers.optuna_queue import (
    ENQUEUED_BY_ATTR,
    PORTFOLIO_ATTR,
    SHAPED_ATTR,
    STEERED_ATTR,
    WARM_REASON_ATTR,
    claim_waiting,
    draw_seed,
    drop_waiting,
    running_trial,
    sampler_state,
    set_sampler_state,
)
from daedalus.designers.tpe_prior import SHAPED_PROPOSALS, PriorTrial, own_quantiles, shaped_study
from daedalus.designers.warm_start import WarmProposal, WarmStartPlan
from daedalus.spaces.mitigation import (
    BASE_PARAM,
    CONSTRAINT_PARAM,
    MitigationFamily,
)
from daedalus.spaces.registry import get_family

FAMILY_PARAM = "family"
STATUS_ATTR = "status"
SKIPPED = "skipped"  # the status of a queued proposal dropped before it ran (drop_warm_queue)
REASON_ATTR = "reason"
# A trial's fairness constraint value (a list; <= 0 is feasible), measured by the search on its out-of-fold
# predictions; the designer sets it as the trial's Optuna constraint (``Trial.set_constraint``) before telling
# the result, and TPE then models feasible and infeasible trials apart (Optuna's constrained TPE).
CONSTRAINT_ATTR = "constraint"
CONSTRAINT_NAME = "fairness"
# The study's user attribute holding a warm start's prior trials (designers/tpe_prior.py), as records: a resumed
# run shapes its remaining TPE proposals from the same prior.
PRIOR_ATTR = "tpe_prior"


def join_params(family: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The study's parameters of ``family`` with ``config`` (the inverse of ``split_params``)."""
    return {FAMILY_PARAM: family, **{f"{family}.{k}": v for k, v in config.items()}}


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


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


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
        self._running: dict[int, tuple[optuna.trial.Trial, Proposal[dict[str, Any]]]] = {}  # asked, not yet told

    def enqueue_portfolio(self) -> None:
        """Queue each family's default configuration (called once, when the study is created)."""
        for name in self.families:
            self.study.enqueue_trial(self._default_params(name), user_attrs={PORTFOLIO_ATTR: True},
                                     skip_if_exists=False)

    def _default_params(self, name: str) -> dict[str, Any]:
        family = get_family(name)
        config = family.default_config(self.task, self.n_rows)
        if isinstance(family, MitigationFamily) and self.mitigation_constraint:
            config[CONSTRAINT_PARAM] = self.mitigation_constraint
        return join_params(name, config)

    def enqueue_warm_start(self, plan: WarmStartPlan, defaults_first: bool = True) -> None:
        """Queue a warm start (called once, when the study is created), each proposal marked with its reason and
        source. ``defaults_first`` (every build but --zero-shot, whose point is the plan's predicted best): the
        cold start's queue leads, every family's default in its order, and the plan follows; a past run on this
        very table goes right after the first default (the linear model, within a second while the libraries
        load), being better evidence than any default.

        Why the defaults lead: the plan is mined on 1,000-row subsamples of mostly small, noisy tables, where its
        regularised members shine; on the shared datasets (bigger tables, a 60-s budget) the plan first lost to
        the cold start on most (session 10's automl bench: on phoneme, the mined extra-trees scored 0.908 AUC in
        validation where the cold start's best reached 0.969 on test; on fars, 100,000 rows, a CatBoost member ran
        out the budget before LightGBM's default was tried). A warm start must not delay what a cold start tries:
        it adds to it."""
        proposals = list(plan.proposals)
        if defaults_first:
            defaults = [(name, self._default_params(name)) for name in self.families]
            default_keys = {_params_key(params) for _, params in defaults}
            same_table = [p for p in proposals if p.detail.get("same_table")]
            proposals = [p for p in proposals if not p.detail.get("same_table")
                         and _params_key(join_params(p.family, p.config)) not in default_keys]  # (not run twice)
            for position, (name, params) in enumerate(defaults):
                self.study.enqueue_trial(params, user_attrs={
                    PORTFOLIO_ATTR: True, ENQUEUED_BY_ATTR: "default",
                    WARM_REASON_ATTR: f"the {name} default, in the cold start's order: a warm start adds to what a "
                                      "cold start tries, and delays none of it"}, skip_if_exists=False)
                if position == 0:
                    self._enqueue_proposals(same_table)
        self._enqueue_proposals(proposals)
        if plan.prior:
            self.study.set_user_attr(PRIOR_ATTR, [p.to_record() for p in plan.prior])

    def _enqueue_proposals(self, proposals: Sequence[WarmProposal]) -> None:
        for proposal in proposals:
            self.study.enqueue_trial(join_params(proposal.family, proposal.config), user_attrs={
                PORTFOLIO_ATTR: True, WARM_REASON_ATTR: proposal.reason, ENQUEUED_BY_ATTR: proposal.source},
                skip_if_exists=False)

    def drop_warm_queue(self, reason: str) -> list[int]:
        """Drop the warm start's queued plan that has not started: TPE proposes after the family defaults still
        queued (the cold start's queue is never cut) and steering's proposals. Each dropped proposal is closed
        as failed with status ``SKIPPED`` and ``reason``; returns their trial numbers. (Session 10, car: a cut
        that dropped the defaults too lost the hist_gb default, the cold start's best: log loss 0.075 against
        0.011.)"""
        return drop_waiting(self.study, WARM_REASON_ATTR, SKIPPED, reason,
                            keep=lambda attrs: attrs.get(ENQUEUED_BY_ATTR) == "default")

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

    def enqueue(self, family: str, candidate: dict[str, Any], reason: str, by: str = "steering", *,
                skip_if_exists: bool = False) -> None:
        """Queue a configuration (parameters left out are sampled) to run next, ahead of the portfolio (the
        :class:`~daedalus.designers.base.Enqueues` capability); its proposal's reason is ``"{by}: {reason}"``."""
        if family not in self.families:
            raise ValueError(f"family {family!r} is not searched by this designer; use one of "
                             f"{', '.join(self.families)}")
        params = join_params(family, candidate)
        marks = {STEERED_ATTR: reason, **({} if by == "steering" else {ENQUEUED_BY_ATTR: by})}
        # skip_if_exists (Optuna's): not queued when a trial with the same parameters exists already, e.g. a
        # mitigation of a configuration whose mitigation the portfolio or an earlier session holds.
        self.study.enqueue_trial(params, user_attrs=marks, skip_if_exists=skip_if_exists)

    def ask(self) -> Proposal[dict[str, Any]]:
        # The family choice is a fixed categorical over the run's families, so its distribution stays the
        # same in every trial (Optuna needs that for TPE to model it).
        family_dist = CategoricalDistribution(self.families)
        # Enqueued trials first (steering's, the fairness mitigations'), then the queue (the portfolio), then TPE
        # (its first proposals shaped by a warm start's prior trials, queued here when the queue is empty).
        trial = claim_waiting(self.study, STEERED_ATTR)
        if trial is None:
            self._queue_shaped()
            trial = self.study.ask({FAMILY_PARAM: family_dist})
        family = suggest(trial, FAMILY_PARAM, family_dist)
        self._suggest_config(trial, family)
        _, config = split_params(trial.params)
        if STEERED_ATTR in trial.user_attrs:
            by = str(trial.user_attrs.get(ENQUEUED_BY_ATTR, "steering"))
            return self._proposal(trial, family, config, f"{by}: {trial.user_attrs[STEERED_ATTR]}", by)
        if WARM_REASON_ATTR in trial.user_attrs:
            by = str(trial.user_attrs.get(ENQUEUED_BY_ATTR, "portfolio"))
            return self._proposal(trial, family, config, f"{by}: {trial.user_attrs[WARM_REASON_ATTR]}", by)
        if SHAPED_ATTR in trial.user_attrs:
            return self._proposal(trial, family, config, f"TPE: {trial.user_attrs[SHAPED_ATTR]}", self.name)
        if trial.user_attrs.get(PORTFOLIO_ATTR):
            return self._proposal(trial, family, config, f"portfolio: the default configuration of {family}, "
                                  "tried before the search proper", "portfolio")
        return self._proposal(trial, family, config, "TPE: sampled from a density model of the "
                              f"{self._n_complete()} finished trials", self.name)

    def _queue_shaped(self) -> None:
        """Queue TPE's next proposal fitted on a warm start's prior trials and this run's finished ones, while the
        queue is empty and fewer than ``SHAPED_PROPOSALS`` such proposals were made (counted in the study, so a
        resumed run goes on counting). No prior (a cold run): nothing, and TPE proposes as it always did."""
        stored = self.study.user_attrs.get(PRIOR_ATTR)
        if not isinstance(stored, list) or not stored:
            return
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return
        if sum(SHAPED_ATTR in t.user_attrs for t in trials) >= SHAPED_PROPOSALS:
            return
        prior = [p for p in map(PriorTrial.from_record, stored) if p is not None]
        own = own_quantiles(trials, self.study.direction == optuna.study.StudyDirection.MAXIMIZE)
        shaped = shaped_study(prior, own, FAMILY_PARAM, self.families, self.distributions,
                              draw_seed(self.study.sampler))
        used = len(shaped.trials) - len(own)
        if used == 0:
            return  # nothing of the prior lies in this run's space
        family_dist = CategoricalDistribution(self.families)
        trial = shaped.ask({FAMILY_PARAM: family_dist})
        self._suggest_config(trial, suggest(trial, FAMILY_PARAM, family_dist))
        sources = sorted({p.source for p in prior})
        reason = (f"sampled from a density model of {used} trials of similar tasks ({', '.join(sources[:3])}"
                  f"{', ...' if len(sources) > 3 else ''}) and this run's {len(own)} finished trials")
        self.study.enqueue_trial(trial.params, user_attrs={SHAPED_ATTR: reason})

    def _proposal(self, trial: optuna.trial.Trial, family: str, config: dict[str, Any], reason: str,
                  designer: str) -> Proposal[dict[str, Any]]:
        proposal = Proposal(trial.number, family, config, reason, designer)
        self._running[trial.number] = (trial, proposal)
        return proposal

    def tell(self, proposal: Proposal[dict[str, Any]], result: Result) -> None:
        own = self._running.get(proposal.number)
        if own is None or own[1] != proposal:
            self._tell_foreign(proposal, result)
            return
        trial = self._running.pop(proposal.number)[0]
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

    def _tell_foreign(self, proposal: Proposal[dict[str, Any]], result: Result) -> None:
        """A result of a configuration this designer did not propose (a warm start): added to the study as a
        finished trial, so TPE learns from it too."""
        family, config = proposal.family, proposal.candidate
        params = join_params(family, config)
        spaces = {FAMILY_PARAM: CategoricalDistribution(self.families), **self.distributions(family)}
        model_family = get_family(family)
        if isinstance(model_family, MitigationFamily) and BASE_PARAM in config:
            spaces.update({f"{family}.{k}": d for k, d in
                           model_family.base_space(config[BASE_PARAM], self.task, self.n_rows).items()})
        unknown = sorted(set(params) - set(spaces))
        if family not in self.families or unknown:
            raise ValueError(f"a {family} configuration with {', '.join(unknown) or 'its family'} is outside this "
                             "designer's space; tell results of its families' hyperparameters only")
        ok = result.status == OK and result.score is not None
        state = TrialState.COMPLETE if ok else TrialState.PRUNED if result.status == PRUNED else TrialState.FAIL
        self.study.add_trial(optuna.trial.create_trial(
            state=state, value=result.score if ok else None, params=params,
            distributions={k: spaces[k] for k in params},
            user_attrs={**result.info, STATUS_ATTR: result.status, "told_by": proposal.designer}))

    def get_state(self) -> dict[str, Any]:
        """The study lives in the run's storage; this is what the designer holds beside it: the proposals in
        flight and the sampler's random position."""
        return {"running": [[p.number, p.family, p.candidate, p.reason, p.designer] for _, p in self._running.values()],
                "sampler": sampler_state(self.study.sampler)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        for number, family, config, reason, by in state["running"]:
            trial = running_trial(self.study, int(number))
            if trial is not None:  # else a resumed run closed it as interrupted (and queued it again)
                self._running[int(number)] = (trial, Proposal(int(number), family, dict(config), reason, by))
        set_sampler_state(self.study.sampler, state["sampler"])

    def _n_complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
