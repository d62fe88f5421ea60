"""TPE (Bergstra et al. 2011) over a genotype: one categorical per position, through Optuna's ask/tell API.

An in-memory Optuna study holds every result; ``optuna.samplers.TPESampler`` (multivariate, seeded) proposes.
The study is private to the designer: the caller's own bookkeeping (a run store, a benchmark loop) sees only
genotypes and scores.

- A result for a genotype the designer did not ask (a warm start, another designer's proposal) is added to the
  study as a completed trial, so TPE learns from it too. A repeated result is ignored: it adds no information.
- A proposal already seen is closed as failed (a failed trial is invisible to TPE) and TPE is asked again, up
  to ``reasks`` times; then it is replaced by an unseen, allowed neighbour drawn at random: TPE wants to sample
  there, and the nearest new point is one step away. Once TPE has converged it proposes mostly repeats, and
  re-asking it until it proposed something new took thousands of asks per hundred results, each slower than
  the last (on NAS-Bench-201, 2 re-asks scored as well as 5 and better than none).
- A proposal the constraint rejects is closed as pruned and *infeasible* (``Trial.set_constraint``), which
  puts it in TPE's "bad" group, so TPE learns to avoid the region rather than only retrying.
- After ``tries`` proposals in a row give nothing new and allowed, the ask falls back to an unseen random
  sample the constraint allows.

``Trial.set_constraint`` needs Optuna 5.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState, create_trial

from daedalus.designers.nas.base import Constraint, genotypes_in, genotypes_out
from daedalus.designers.nas.random_search import RandomDesigner
from daedalus.designers.optuna_queue import sampler_state, set_sampler_state
from daedalus.spaces.nas.base import ArchSpace, Genotype


class TPEDesigner(RandomDesigner):
    """Built on random search: its ``seen`` set and ``ask`` give the fallback sample."""

    name = "tpe"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None,
                 n_startup_trials: int = 10, reasks: int = 2, tries: int = 20) -> None:
        super().__init__(space, seed=seed, constraint=constraint)
        self.reasks, self.tries = reasks, tries
        # Positions by index: choice names are for people and need not be unique.
        self.distributions: dict[str, BaseDistribution] = {f"p{i}": CategoricalDistribution(tuple(range(c.size)))
                              for i, c in enumerate(space.choices)}
        # The study's per-trial INFO lines are noise here: the caller reports what matters.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate TPE is marked experimental; it models position interplay
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=n_startup_trials)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.pending: dict[Genotype, optuna.trial.Trial] = {}  # asked, not yet told
        self.told: set[Genotype] = set()

    def propose(self) -> Genotype:
        for attempt in range(self.tries):
            trial = self.study.ask(self.distributions)
            genotype = self._genotype(trial)
            if not self.allowed(genotype):
                trial.set_constraint("allowed", 1.0)  # > 0: infeasible
                self.study.tell(trial, state=TrialState.PRUNED)
            elif genotype in self.seen:
                self.study.tell(trial, state=TrialState.FAIL)
                if attempt < self.reasks:
                    continue
                fresh = [g for g in self.space.neighbours(genotype) if g not in self.seen and self.allowed(g)]
                if fresh:  # told later as a result it did not ask
                    genotype = fresh[int(self.rng.integers(len(fresh)))]
                    self.seen.add(genotype)
                    return genotype
            else:
                self.seen.add(genotype)
                self.pending[genotype] = trial
                return genotype
        return super().propose()

    def learn(self, genotype: Genotype, score: float | None) -> None:
        super().learn(genotype, score)
        trial = self.pending.pop(genotype, None)
        if trial is not None:
            if score is None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, float(score))
        elif genotype not in self.told:
            params = {k: int(v) for k, v in zip(self.distributions, genotype, strict=True)}
            self.study.add_trial(create_trial(
                state=TrialState.FAIL if score is None else TrialState.COMPLETE,
                value=None if score is None else float(score), params=params, distributions=self.distributions))
        self.told.add(genotype)

    def learned_state(self) -> dict[str, Any]:
        # The study holds every trial TPE asked, re-asks and rejections included: kept trial by trial, with the
        # sampler's random position, so a continued designer samples exactly as this one would.
        return {**super().learned_state(), "told": genotypes_out(self.told),
                "trials": [trial_form(t) for t in self.study.get_trials(deepcopy=False)],
                "sampler": sampler_state(self.study.sampler)}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        super().restore_learned(state)
        self.told = set(genotypes_in(state["told"]))
        running = forms_to_study(self.study, state["trials"], self.distributions)
        self.pending = {self._genotype(trial): trial for trial in running.values()}
        set_sampler_state(self.study.sampler, state["sampler"])  # last: asking the running trials drew from it

    def _genotype(self, trial: optuna.trial.Trial) -> Genotype:
        return self.space.canonical(tuple(int(trial.params[k]) for k in self.distributions))


def trial_form(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial of the designer's study as JSON (its system attributes hold Optuna's constraint values)."""
    return {"state": trial.state.name, "value": trial.value, "params": dict(trial.params),
            "system_attrs": dict(trial.system_attrs)}


def forms_to_study(study: optuna.Study, forms: list[Mapping[str, Any]],
                   distributions: Mapping[str, BaseDistribution]) -> dict[int, optuna.trial.Trial]:
    """Add ``trial_form``'s trials to an empty study, in order. A running one (asked, not yet told) is enqueued
    and asked again, so that it can be told; returns those by number."""
    running = {}
    for form in forms:
        state = TrialState[form["state"]]
        if state == TrialState.RUNNING:
            study.enqueue_trial(dict(form["params"]))
            trial = study.ask(dict(distributions))
            running[trial.number] = trial
        else:
            study.add_trial(create_trial(state=state, value=form["value"], params=dict(form["params"]),
                                         distributions=dict(distributions), system_attrs=dict(form["system_attrs"])))
    return running
