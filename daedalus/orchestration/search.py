"""The search loop: ask the designer, evaluate in a worker, record, tell. Repeat until the budget is spent.

Every step is written before the next begins: the Optuna study holds the trial, ``RunStore.oof_path(N)`` its
out-of-fold predictions, the audit log the proposal and the result, and ``best/`` the best model so far. So a
run killed at any moment loses at most the trial in flight, which ``resume`` runs again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import psutil
from optuna.trial import TrialState

from daedalus.designers.base import Proposal, Result
from daedalus.designers.optuna_designer import OptunaDesigner
from daedalus.ensembles.model import Member, ModelSpec, write_model_dir
from daedalus.evaluation.metrics import Metric
from daedalus.evaluation.trial import EvalContext, TrialOutcome, TrialSpec, run_trial
from daedalus.evaluation.worker import run_in_worker
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.fairness_search import SearchFairness
from daedalus.orchestration.options import BuildOptions
from daedalus.orchestration.reporter import Progress, Reporter
from daedalus.orchestration.steered import POLL_SECONDS, SteeredDesigner
from daedalus.oversight.steering import family_spaces
from daedalus.store.faults import crash_point
from daedalus.store.integrity import ARTIFACTS_FIELD, relative_name
from daedalus.store.layout import BEST_MODEL
from daedalus.store.run import RunStore

KEEP_MODELS_TOP = 10  # fold models are kept for this many of the best trials (ensemble candidates)
MIN_TRIAL_SECONDS = 1.0  # below this much search time left, no new trial is started
DEFAULT_TRIAL_TIMEOUT = 600.0  # per-trial cap when only --trials bounds the run
EXPLANATION_SHARE, EXPLANATION_CAP_SECONDS = 0.08, 30.0  # of the budget, kept for the end-of-build explanations
# Families cheap enough to run in a worker forked from the run itself while the forkserver is still importing
# the model libraries (tens of seconds on a busy machine): the portfolio's first trial, so a run always has a
# model early. Others wait for the forkserver, within their trial's time limit (which the budget bounds).
COLD_START_FAMILIES = frozenset({"linear"})


@dataclass(frozen=True)
class TrialRecord:
    number: int
    family: str
    status: str  # ok, error, timeout, memory, crash, cancelled, interrupted
    score: float | None
    fit_seconds: float
    reason: str


def default_memory_mb() -> float:
    return 0.6 * psutil.virtual_memory().total / 2**20


class Search:
    """``fairness``: the fairness constraint of a build with --sensitive (per-trial evaluation, the ranking,
    the mitigations wrapped around ``designer``); None: trials are ranked by the metric alone."""

    def __init__(self, store: RunStore, ctx: EvalContext, designer: OptunaDesigner, clock: BudgetClock,
                 options: BuildOptions, reporter: Reporter, trials_to_run: int | None,
                 fairness: SearchFairness | None = None) -> None:
        self.store = store
        self.ctx = ctx
        self.metric: Metric = ctx.metric
        self.designer = designer
        self.clock = clock
        self.options = options
        self.reporter = reporter
        self.trials_to_run = trials_to_run
        self.records: list[TrialRecord] = load_records(designer.study)
        self.memory_mb = options.memory_mb or default_memory_mb()
        self.fairness = fairness
        # The designers the loop asks and tells, outermost first: steering, the fairness mitigation policy (when
        # there is a constraint), the tabular designer.
        inner = fairness.mitigating(designer, designer.families) if fairness is not None else designer
        self.steering = SteeredDesigner(inner, store, clock, reporter, families=designer.families,
                                        space_of=family_spaces(designer.task, designer.n_rows),
                                        out_of_time=self._out_of_time)

    # -- budget --------------------------------------------------------------------------------------------
    def final_stage_reserve(self) -> float:
        """Seconds to leave for ensembling and refit: a refit costs about one fold fit per member, scaled
        up to all rows; the bagged models of k-fold validation need no refit at all."""
        if self.clock.seconds is None:
            return 0.0
        # The explanations (permutation importance of the final model, by default) get their share too.
        explanations = min(EXPLANATION_SHARE * self.clock.seconds, EXPLANATION_CAP_SECONDS)
        base = self._writing_reserve() + explanations
        if self.ctx.plan.kind == "kfold":
            return base
        best = sorted((r for r in self.records if r.status == "ok"),
                      key=lambda r: -self.metric.utility(r.score or 0.0))[:3]
        refit = sum(r.fit_seconds for r in best) * 1.3
        return min(base + refit, 0.3 * self.clock.seconds)

    def search_time_left(self) -> float:
        """Until a trial has succeeded, the search may use the explanations' and refit's share of the reserve
        too (not the last second or two that writing the model takes): on a machine so busy that the start-up
        ate most of the budget, a run with a model and no explanations beats a run with neither."""
        reserve = self.final_stage_reserve()
        if self.clock.seconds is not None and not any(r.status == "ok" for r in self.records):
            reserve = min(reserve, self._writing_reserve())
        return self.clock.remaining - reserve

    def _writing_reserve(self) -> float:
        """Seconds to select the ensemble among saved models, write it and the leaderboard, and exit."""
        return 1.0 + 0.02 * (self.clock.seconds or 0.0)

    def _done(self, ran: int) -> bool:
        if self.trials_to_run is not None and ran >= self.trials_to_run:
            return True
        return self._out_of_time()

    def _out_of_time(self) -> bool:
        return self.search_time_left() < MIN_TRIAL_SECONDS

    def _trial_timeout(self) -> float:
        cap = self.options.trial_timeout or (DEFAULT_TRIAL_TIMEOUT if self.clock.seconds is None else math.inf)
        return max(0.5, min(cap, self.search_time_left()))

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        ran = 0
        while True:
            self.steering.apply_commands()  # 'daedalus steer' commands, before the budget check: add-time counts
            if self._done(ran):
                break
            proposal = self.steering.ask()  # audits the proposal; None while paused
            if proposal is None:  # wait, then check the budget again (a pause ends with the search's time)
                time.sleep(POLL_SECONDS)
                continue
            self._report(f"trial {proposal.number}: {proposal.family}")
            self.records.append(self._evaluate(proposal))
            ran += 1
            self._report("")
        return self.records

    def _evaluate(self, proposal: Proposal) -> TrialRecord:
        threshold = self._keep_threshold()
        spec = TrialSpec(number=proposal.number, family=proposal.family, config=proposal.candidate,
                         seed=self.options.seed, n_threads=self.options.n_threads,
                         out_dir=self.store.trial_dir(proposal.number), keep_models_above=threshold)
        crash_point("trial_started")
        result = run_in_worker(run_trial, (self.ctx, spec), timeout=self._trial_timeout(),
                               memory_mb=self.memory_mb, cold=proposal.family in COLD_START_FAMILIES)
        if result.status == "ok":
            outcome: TrialOutcome = result.value
            # The hashes of what this trial wrote (its worker hashed its fold models) go into its audit record.
            artifacts = self.store.save_oof(proposal.number, outcome.oof)
            artifacts.update(digests_in(self.store, self.store.trial_dir(proposal.number), outcome.artifacts))
            info = {"score": outcome.score, "fit_seconds": round(outcome.fit_seconds, 3),
                    "predict_seconds": round(outcome.predict_seconds, 3),
                    "fold_scores": list(outcome.fold_scores), "models_saved": outcome.models_saved,
                    "designer": proposal.designer}
            fair = self.fairness.evaluate(proposal.number, outcome.oof) if self.fairness is not None else {}
            info.update(fair)
            self.steering.tell(proposal, Result("ok", outcome.score, info))
            crash_point("trial_recorded")
            self.store.audit.append("trial_result", trial=proposal.number, family=proposal.family,
                                    status="ok", score=outcome.score, metric=self.metric.name,
                                    fit_seconds=info["fit_seconds"], **fair, **{ARTIFACTS_FIELD: artifacts})
            record = TrialRecord(proposal.number, proposal.family, "ok", outcome.score, outcome.fit_seconds, "")
            self._after_success(record, outcome)
            return record
        reason = result.reason.strip().splitlines()[0] if result.reason else result.status
        self.steering.tell(proposal, Result(result.status, None, {
            "reason": result.reason[-2000:], "fit_seconds": round(result.seconds, 3), "designer": proposal.designer}))
        self.store.audit.append("trial_failed", trial=proposal.number, family=proposal.family,
                                status=result.status, reason=reason)
        self.store.drop_models(proposal.number)
        self.reporter.message(f"trial {proposal.number} ({proposal.family}) failed: {reason}")
        return TrialRecord(proposal.number, proposal.family, result.status, None, result.seconds, reason)

    # -- keeping the best ----------------------------------------------------------------------------------
    def _rank_key(self, record: TrialRecord) -> tuple[float, ...]:
        if self.fairness is not None:  # feasible trials first, then the least infeasible, then the metric
            return self.fairness.rank_key(record.number, record.score)
        return (-self.metric.utility(record.score or 0.0), record.number)

    def _feasible(self, record: TrialRecord) -> bool:
        return self.fairness is None or self.fairness.feasible(record.number)

    def ranked_ok(self) -> list[TrialRecord]:
        return sorted((r for r in self.records if r.status == "ok" and r.score is not None), key=self._rank_key)

    def _keep_threshold(self) -> float | None:
        ranked = self.ranked_ok()
        if len(ranked) < KEEP_MODELS_TOP or not self._feasible(ranked[KEEP_MODELS_TOP - 1]):
            return None  # (a feasible newcomer outranks an infeasible trial whatever its score)
        return self.metric.utility(ranked[KEEP_MODELS_TOP - 1].score or 0.0)

    def _after_success(self, record: TrialRecord, outcome: TrialOutcome) -> None:
        ranked = sorted([*self.ranked_ok(), record], key=self._rank_key)
        for stale in ranked[KEEP_MODELS_TOP:]:
            if self.store.has_models(stale.number):
                self.store.drop_models(stale.number)
        if ranked[0].number == record.number and outcome.models_saved:
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

    def _report(self, running: str) -> None:
        ranked = self.ranked_ok()
        best = ranked[0] if ranked else None
        self.reporter.update(Progress(
            trials_done=len(self.records), trials_failed=sum(r.status != "ok" for r in self.records),
            best_score=best.score if best else None, best_family=best.family if best else None,
            metric=self.metric.name,
            time_left=None if self.clock.seconds is None else max(0.0, self.clock.remaining),
            running=running))


def digests_in(store: RunStore, directory: Path, hashes: dict[str, str]) -> dict[str, str]:
    """A worker's {file name in ``directory``: SHA-256} as recorded names (paths inside the run)."""
    return {relative_name(store.root, directory / name): digest for name, digest in hashes.items()}


def load_records(study: optuna.Study) -> list[TrialRecord]:
    """The finished trials of a study, as records (used when resuming)."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        status = str(t.user_attrs.get("status", "ok" if t.state == TrialState.COMPLETE else "error"))
        score = t.value if t.state == TrialState.COMPLETE else None
        out.append(TrialRecord(t.number, str(t.params.get("family", "?")), status, score,
                               float(t.user_attrs.get("fit_seconds", 0.0)),
                               str(t.user_attrs.get("reason", ""))[:200]))
    return out
