"""The table run's search: the one loop (``loop.py``) with the :class:`TableEvaluator`, which fits a
configuration fold by fold in a worker and keeps the best trials' fold models.

Every step is written before the next begins: the Optuna study holds the trial, ``RunStore.oof_path(N)`` its
out-of-fold predictions, the audit log the proposal and the result, and ``best/`` the best model so far. So a
run killed at any moment loses at most the trials in flight, which ``resume`` runs again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from daedalus.designers.base import Proposal, Result
from daedalus.designers.optuna_designer import SKIPPED, OptunaDesigner
from daedalus.ensembles.model import Member, ModelSpec, write_model_dir
from daedalus.errors import RunError
from daedalus.evaluation.runner import Job, TrialRunner
from daedalus.evaluation.trial import EvalContext, TrialOutcome, TrialSpec, run_trial, run_trial_shipped
from daedalus.evaluation.validation import ValidationPlan
from daedalus.evaluation.worker import WorkerResult
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.fairness_search import SearchFairness
from daedalus.orchestration.loop import (
    MIN_TRIAL_SECONDS,
    Done,
    Evaluator,
    Limits,
    SearchLoop,
    TrialRecord,
)
from daedalus.orchestration.options import BuildOptions
from daedalus.orchestration.parallel import Parallelism, make_runner, plan_parallelism
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.steered import SteeredDesigner
from daedalus.oversight.steering import family_spaces
from daedalus.store.faults import crash_point
from daedalus.store.integrity import ARTIFACTS_FIELD, relative_name
from daedalus.store.layout import BEST_MODEL
from daedalus.store.run import RunStore, save_shipped_files

__all__ = ["COLD_START_FAMILIES", "MIN_TRIAL_SECONDS", "Search", "TableEvaluator", "TrialRecord", "load_records"]

Config = dict[str, Any]
KEEP_MODELS_TOP = 10  # fold models are kept for this many of the best trials (ensemble candidates)
DEFAULT_TRIAL_TIMEOUT = 600.0  # per-trial cap when only --trials bounds the run
EXPLANATION_SHARE, EXPLANATION_CAP_SECONDS = 0.08, 30.0  # of the budget, kept for the end-of-build explanations
REFIT_RESERVE_SHARE = 0.3  # of the budget, at most, kept for the final stage when it refits (explanations included)
# Families cheap enough to run in a worker forked from the run itself while the forkserver is still importing
# the model libraries (tens of seconds on a busy machine): the portfolio's first trial, so a run always has a
# model early. Others wait for the forkserver, within their trial's time limit (which the budget bounds).
COLD_START_FAMILIES = frozenset({"linear"})
# A warm start's queue (the family defaults, then the plan) may use this share of the search's time; what is left
# of the plan then is dropped (never the defaults), and TPE (shaped by the warm start's prior) proposes the rest.
# The plan was mined on 1,000-row subsamples: on a bigger table its ~12 configurations would fill a 60-s budget
# where a cold start tunes its best default.
WARM_QUEUE_SHARE = 0.5


class TableEvaluator(Evaluator[Config]):
    """A configuration fitted under the validation plan in a worker (``evaluation.trial.run_trial``); its
    out-of-fold predictions saved, its fold models kept while it is among the ``KEEP_MODELS_TOP`` best."""

    def __init__(self, store: RunStore, ctx: EvalContext, options: BuildOptions, records: list[TrialRecord],
                 threads: int, fairness: SearchFairness | None = None) -> None:
        self.store, self.ctx, self.options, self.records, self.fairness = store, ctx, options, records, fairness
        self.threads = threads  # per trial
        # True when the trials run where the run's directory is not (a Ray cluster): their fold models come back
        # as bytes and are written here (set by the search from its runner)
        self.ship_files = False
        # Rows the final ensemble is refit on: all of the table's, more than the search's own on a subsample
        # (orchestration/rows.py); the final stage's reserve grows with them.
        self.refit_rows = len(ctx.y)
        self.metric = ctx.metric
        self._proposals: dict[int, Proposal[Config]] = {}
        self._written: dict[int, tuple[dict[str, str], dict[str, Any], bool]] = {}  # finished, not yet recorded

    # -- budget --------------------------------------------------------------------------------------------
    def reserve(self, records: list[TrialRecord], clock: BudgetClock) -> float:
        """Seconds to leave for ensembling and refit: a refit costs about one fold fit per member, scaled up to
        all rows; the bagged models of k-fold validation need no refit at all. Until a trial has succeeded, the
        search may use the explanations' and refit's share too (not the last second or two that writing the
        model takes): on a machine so busy that the start-up ate most of the budget, a run with a model and no
        explanations beats a run with neither."""
        reserve = self.final_stage_reserve(records, clock)
        if clock.seconds is not None and not any(r.status == "ok" for r in records):
            reserve = min(reserve, _writing_reserve(clock))
        return reserve

    def final_stage_reserve(self, records: list[TrialRecord], clock: BudgetClock) -> float:
        if clock.seconds is None:
            return 0.0
        # The explanations (permutation importance of the final model, by default) get their share too.
        explanations = min(EXPLANATION_SHARE * clock.seconds, EXPLANATION_CAP_SECONDS)
        base = _writing_reserve(clock) + explanations
        if self.ctx.plan.kind == "kfold" and self.refit_rows == len(self.ctx.y):
            return base
        best = sorted((r for r in records if r.status == "ok"),
                      key=lambda r: -self.metric.utility(r.score or 0.0))[:3]
        cap = REFIT_RESERVE_SHARE * clock.seconds
        if self.refit_rows == len(self.ctx.y):
            return min(base + refit_seconds([r.fit_seconds for r in best], self.ctx.plan, self.refit_rows), cap)
        # After a search on a subsample the final stage refits the members it has time for, the heaviest first
        # (finalize). Room for the best trials' refits while they fit under the cap; none past one that does not:
        # the heaviest member is most often the best trial, and time kept for the refits of others it outweighs
        # was idle (a 300-s build on 1M rows ended at 230 s, its CatBoost never refittable, LightGBM's reserved).
        reserve = base
        for record in best:
            cost = refit_seconds([record.fit_seconds], self.ctx.plan, self.refit_rows)
            if reserve + cost > cap:
                break
            reserve += cost
        return reserve

    # -- one trial -----------------------------------------------------------------------------------------
    def rank_key(self, record: TrialRecord) -> tuple[float, ...]:
        if self.fairness is not None:  # feasible trials first, then the least infeasible, then the metric
            return self.fairness.rank_key(record.number, record.score)
        return (-self.metric.utility(record.score or 0.0), record.number)

    def _feasible(self, record: TrialRecord) -> bool:
        return self.fairness is None or self.fairness.feasible(record.number)

    def _keep_threshold(self) -> float | None:
        ranked = self.ranked_ok()
        if len(ranked) < KEEP_MODELS_TOP or not self._feasible(ranked[KEEP_MODELS_TOP - 1]):
            return None  # (a feasible newcomer outranks an infeasible trial whatever its score)
        return self.metric.utility(ranked[KEEP_MODELS_TOP - 1].score or 0.0)

    def start(self, proposal: Proposal[Config], timeout: float, limits: Limits) -> Job:
        spec = TrialSpec(number=proposal.number, family=proposal.family, config=proposal.candidate,
                         seed=self.options.seed, n_threads=self.threads,
                         out_dir=self.store.trial_dir(proposal.number), keep_models_above=self._keep_threshold())
        crash_point("trial_started")
        self._proposals[proposal.number] = proposal
        return Job(proposal.number, run_trial_shipped if self.ship_files else run_trial, (self.ctx, spec),
                   timeout=timeout, memory_mb=limits.memory_mb, cold=proposal.family in COLD_START_FAMILIES,
                   shared=1)

    def finished(self, key: int, result: WorkerResult) -> list[Done[Config]]:
        proposal = self._proposals.pop(key)
        if result.status == "ok" and self.ship_files:
            result = self._write_shipped(proposal.number, result)
        if result.status == "ok":
            outcome: TrialOutcome = result.value
            # The hashes of what this trial wrote (its worker hashed its fold models) go into its audit record.
            artifacts = self.store.save_oof(proposal.number, outcome.oof)
            artifacts.update(digests_in(self.store, self.store.trial_dir(proposal.number), outcome.artifacts))
            info: dict[str, Any] = {
                "score": outcome.score, "fit_seconds": round(outcome.fit_seconds, 3),
                "predict_seconds": round(outcome.predict_seconds, 3), "fold_scores": list(outcome.fold_scores),
                "models_saved": outcome.models_saved, "designer": proposal.designer}
            fair = self.fairness.evaluate(proposal.number, outcome.oof) if self.fairness is not None else {}
            info.update(fair)
            record = TrialRecord(proposal.number, proposal.family, "ok", outcome.score, outcome.fit_seconds, "",
                                 designer=proposal.designer)
            self._written[proposal.number] = (artifacts, fair, outcome.models_saved)
            return [Done(proposal, record, Result("ok", outcome.score, info))]
        reason = result.reason.strip().splitlines()[0] if result.reason else result.status
        record = TrialRecord(proposal.number, proposal.family, result.status, None, result.seconds, reason,
                             designer=proposal.designer)
        return [Done(proposal, record, Result(result.status, None, {
            "reason": result.reason[-2000:], "fit_seconds": round(result.seconds, 3),
            "designer": proposal.designer}))]

    def _write_shipped(self, number: int, result: WorkerResult) -> WorkerResult:
        """Write the files a trial sent back (``run_trial_shipped``); a trial whose files came back damaged
        failed (a crash, with the reason), and the run goes on."""
        outcome, files = result.value
        try:
            save_shipped_files(self.store.trial_dir(number), files, outcome.artifacts)
        except RunError as exc:
            self.store.drop_models(number)
            return WorkerResult("crash", None, str(exc), result.seconds)
        return WorkerResult("ok", outcome, "", result.seconds)

    def recorded(self, done: Done[Config], ranked: list[TrialRecord]) -> None:
        record = done.record
        assert record is not None  # every table proposal is a trial
        if record.status != "ok":
            self.store.audit.append("trial_failed", trial=record.number, family=record.family,
                                    status=record.status, reason=record.reason)
            self.store.drop_models(record.number)
            return
        crash_point("trial_recorded")
        artifacts, fair, models_saved = self._written.pop(record.number)
        self.store.audit.append("trial_result", trial=record.number, family=record.family, status="ok",
                                score=record.score, metric=self.metric.name,
                                fit_seconds=round(record.fit_seconds, 3), **fair, **{ARTIFACTS_FIELD: artifacts})
        for stale in ranked[KEEP_MODELS_TOP:]:
            if self.store.has_models(stale.number):
                self.store.drop_models(stale.number)
        if ranked[0].number == record.number and models_saved:
            self._save_best(record)

    def _save_best(self, record: TrialRecord) -> None:
        """Make the new best trial's fold models the run's usable model until the final one exists."""
        files = self.store.fold_models(record.number)
        member = Member(trial=record.number, family=record.family, weight=1.0, files=tuple(f.name for f in files))
        spec = ModelSpec(kind="best-so-far", task=self.ctx.task, n_classes=self.ctx.n_classes,
                         members=(member,), validation_score=record.score)
        write_model_dir(self.store, self.store.root / BEST_MODEL, spec, {f.name: f for f in files})
        crash_point("best_saved")
        self.store.audit.append("best_model_saved", trial=record.number, family=record.family, score=record.score)


class Search(SearchLoop[Config]):
    """The table run's search: ``search.records``, ``ranked_ok()``, ``study`` and the options are what the
    final stage reads."""

    def __init__(self, store: RunStore, ctx: EvalContext, designer: OptunaDesigner, clock: BudgetClock,
                 options: BuildOptions, reporter: Reporter, trials_to_run: int | None,
                 fairness: SearchFairness | None = None, parallelism: Parallelism | None = None,
                 runner: TrialRunner | None = None, refit_rows: int | None = None) -> None:
        self.store, self.ctx, self.options, self.study = store, ctx, options, designer.study
        self.parallelism = parallelism or plan_parallelism(options)
        self.memory_mb = self.parallelism.memory_mb_per_trial
        self.fairness = fairness  # None: trials are ranked by the metric alone
        evaluator = TableEvaluator(store, ctx, options, load_records(designer.study),
                                   self.parallelism.threads_per_trial, self.fairness)
        evaluator.refit_rows = refit_rows or len(ctx.y)
        # 'daedalus steer' commands around the designer; applied before each budget check too ('add-time' counts).
        # The designer told each result: the tabular one, inside the fairness mitigation policy when there is one.
        told = fairness.mitigating(designer, designer.families) if fairness is not None else designer
        self.steering = SteeredDesigner(told, store, clock, reporter, families=designer.families,
                                        space_of=family_spaces(designer.task, designer.n_rows),
                                        out_of_time=lambda: self._out_of_time())
        cap = options.trial_timeout or (DEFAULT_TRIAL_TIMEOUT if clock.seconds is None else math.inf)
        self.optuna_designer = designer  # (SearchLoop.designer is the steered wrapper)
        self.plan_cut = False
        hooks = [self.steering.apply_commands]
        if not options.zero_shot:  # (zero-shot's queue is its whole run)
            hooks.append(self.cut_warm_queue)
        runner = runner or make_runner(self.parallelism)
        evaluator.ship_files = not runner.shares_files
        super().__init__(evaluator, self.steering, clock, reporter, trials_to_run, Limits(self.memory_mb, cap),
                         runner, before_budget_check=hooks)

    def cut_warm_queue(self) -> None:
        """Once ``WARM_QUEUE_SHARE`` of the search's time is used, drop what is left of a warm start's plan
        (each dropped proposal closed as 'skipped' in the study, never a result; the audit log says how many)."""
        if self.clock.seconds is None or self.plan_cut:
            return
        search_seconds = self.clock.seconds - self.final_stage_reserve()
        if self.clock.elapsed < WARM_QUEUE_SHARE * search_seconds:
            return
        self.plan_cut = True  # once: nothing queues plan proposals after the study's creation
        reason = (f"not run: the warm start's queue had used {WARM_QUEUE_SHARE:.0%} of the search's time; the "
                  "family defaults still queued run, then TPE")
        dropped = self.optuna_designer.drop_warm_queue(reason)
        if dropped:
            self.store.audit.append("warm_start_cut", trials=dropped, elapsed=round(self.clock.elapsed, 2),
                                    reason=reason)
            self.reporter.message(f"warm start: {len(dropped)} queued configurations of the plan dropped")

    def final_stage_reserve(self) -> float:
        assert isinstance(self.evaluator, TableEvaluator)
        return self.evaluator.final_stage_reserve(self.records, self.clock)


def refit_seconds(fit_seconds: list[float], plan: ValidationPlan, refit_rows: int) -> float:
    """Seconds to refit models on ``refit_rows`` rows, from their trials' fit times under ``plan``: one fold's fit
    each, scaled by the rows (a holdout's 80% to all rows: x1.25), with a little margin."""
    fold_rows = max(len(plan.folds[0][0]), 1)
    return 1.05 * sum(fit_seconds) / len(plan.folds) * refit_rows / fold_rows


def _writing_reserve(clock: BudgetClock) -> float:
    """Seconds to select the ensemble among saved models, write it and the leaderboard, and exit."""
    return 1.0 + 0.02 * (clock.seconds or 0.0)


def digests_in(store: RunStore, directory: Path, hashes: dict[str, str]) -> dict[str, str]:
    """A worker's {file name in ``directory``: SHA-256} as recorded names (paths inside the run)."""
    return {relative_name(store.root, directory / name): digest for name, digest in hashes.items()}


def load_records(study: optuna.Study) -> list[TrialRecord]:
    """The finished trials of a study, as records (used when resuming)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        status = str(t.user_attrs.get("status", "ok" if t.state == TrialState.COMPLETE else "error"))
        if status == SKIPPED:  # a queued proposal dropped before it ran: not a trial of the run
            continue
        score = t.value if t.state == TrialState.COMPLETE else None
        out.append(TrialRecord(t.number, str(t.params.get("family", "?")), status, score,
                               float(t.user_attrs.get("fit_seconds", 0.0)),
                               str(t.user_attrs.get("reason", ""))[:200],
                               designer=str(t.user_attrs.get("designer", ""))))
    return out
