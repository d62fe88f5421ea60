"""``build`` and ``resume``: from a table to a tuned, ensembled model in a run directory.

    intake (read, infer, check)  ->  run store  ->  search (portfolio, then TPE)  ->  ensemble + refit
    ->  leaderboard

Bad input is rejected before the run directory is created, so a mistake leaves nothing behind. From then on
every step is on disk before the next starts (see ``search.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data import (
    drop_missing_target,
    feature_layout,
    infer_schema,
    prepare_features,
    prepare_target,
    read_table,
    run_checks,
)
from daedalus.data.fingerprint import fingerprint
from daedalus.data.schema import Schema, Task
from daedalus.data.sensitive import mark_sensitive, sensitive_frame, with_sensitive_columns
from daedalus.designers.optuna_designer import OptunaDesigner, make_sampler
from daedalus.designers.optuna_queue import requeue_interrupted
from daedalus.errors import DataError
from daedalus.evaluation.metrics import get_metric
from daedalus.evaluation.trial import EvalContext
from daedalus.evaluation.validation import make_plan
from daedalus.evaluation.worker import start_early
from daedalus.orchestration.budget import BudgetClock, final_stage_clocks
from daedalus.orchestration.fairness_search import (
    check_fairness_task,
    mitigation_constraint,
    search_fairness,
    wants_mitigations,
)
from daedalus.orchestration.finalize import FinalModel, finalize
from daedalus.orchestration.knowledge_record import record_table_run
from daedalus.orchestration.leaderboard import make_leaderboard
from daedalus.orchestration.options import ZERO_SHOT_TRIALS, BuildOptions
from daedalus.orchestration.parallel import Parallelism, cluster_joined, plan_parallelism, process_memory_mb
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.rows import RowPlan, plan_search_rows, prepared_row_mb, search_context
from daedalus.orchestration.search import Search
from daedalus.orchestration.warm import WarmStart, prepare_warm_start
from daedalus.oversight.approval import attach_policy
from daedalus.oversight.explain import explain_and_card
from daedalus.oversight.policy import load_policy
from daedalus.oversight.steering import steering_state
from daedalus.spaces.mitigation import MITIGATIONS, PRELOAD_MODULES
from daedalus.spaces.registry import resolve_families
from daedalus.store.faults import crash_point
from daedalus.store.layout import META_FEATURES, SEARCH_ROWS
from daedalus.store.run import RunStore
from daedalus.store.study import open_study, study_location

# The order in which the portfolio tries each family's default: the fastest first (a linear model fits in well
# under a second, so even a tiny budget ends with a model), then the strongest for their cost.
# With fairness in the search, a fair model comes early too: ThresholdOptimizer on the linear model is as cheap.
PORTFOLIO_ORDER = ("linear", "fair_threshold", "lightgbm", "fair_expgrad", "xgboost", "catboost", "extra_trees",
                   "random_forest", "hist_gb", "neural", "knn")


@dataclass(frozen=True)
class BuildResult:
    run_dir: Path
    leaderboard: list[dict[str, Any]]
    final: FinalModel | None
    schema: Schema


@dataclass(frozen=True)
class Intake:
    frame: pd.DataFrame  # the rows kept for training, raw columns (target included)
    schema: Schema
    checks: dict[str, Any]
    n_missing_target: int


def intake(data: Any, options: BuildOptions) -> Intake:
    df = read_table(data)
    task = Task(options.task) if options.task else None
    schema = infer_schema(df, options.target, task=task, drop=options.drop, keep=options.keep)
    schema = mark_sensitive(schema, options.sensitive, options.use_sensitive)
    check_fairness_task(options, schema.task)
    df, n_missing = drop_missing_target(df, options.target)
    df = df.reset_index(drop=True)
    schema, report = run_checks(df, schema, keep_leaks=options.keep_leaks, seed=options.seed)
    if not schema.feature_columns:
        raise DataError(f"no usable feature column is left (dropped: {', '.join(schema.dropped) or 'none'}); "
                        "provide feature columns, or keep some with --keep COL")
    checks = report.to_dict()
    checks["rows_without_target_dropped"] = n_missing
    return Intake(df, schema, checks, n_missing)


def eval_context(frame: pd.DataFrame, schema: Schema, options: BuildOptions) -> EvalContext:
    """What every trial of the build needs about the data (features, target, validation plan, metric)."""
    metric = get_metric(options.metric, schema.task)
    y = prepare_target(frame[schema.target], schema)
    X = prepare_features(frame, schema)
    plan = make_plan(np.asarray(y), schema.task, options.seed, kind=options.validation)
    n_classes = len(schema.classes) if schema.classes is not None else 0
    sensitive = sensitive_frame(frame, schema.sensitive) if schema.sensitive else None
    if sensitive is not None and wants_mitigations(options):
        X = with_sensitive_columns(X, sensitive)  # for the mitigations' fits; other models ignore them
    return EvalContext(X=X, y=np.asarray(y), task=schema.task, n_classes=n_classes,
                       layout=feature_layout(schema), plan=plan, metric=metric, sensitive=sensitive)


def _families(options: BuildOptions, task: Task) -> list[str]:
    chosen = resolve_families(list(options.families) if options.families else None, list(options.exclude), task)
    if wants_mitigations(options) and task is Task.BINARY:
        chosen += [m for m in MITIGATIONS if m not in options.exclude]
    return sorted(chosen, key=lambda f: PORTFOLIO_ORDER.index(f) if f in PORTFOLIO_ORDER else len(PORTFOLIO_ORDER))


def _create_run(data: Any, got: Intake, ctx: EvalContext, families: list[str], options: BuildOptions,
                run_dir: Path, warm: WarmStart, rows: RowPlan) -> RunStore:
    """Write everything ``resume`` needs (run.json with its storage, the rows, schema, checks, the study with the
    portfolio queued, the first audit records, the policy) under a hidden name, then rename it to ``run_dir``:
    a kill at any instant leaves a complete run or none (plus a hidden leftover the next build removes)."""
    info = {"options": options.to_dict(), "status": "running",
            "data_source": data if isinstance(data, (str, Path)) else "<DataFrame>",
            "created": time.time(), "validation": ctx.plan.describe(), "metric": ctx.metric.name,
            "task": got.schema.task.value, "families": families, SEARCH_ROWS: rows.to_record(),
            **study_location(options.storage)}  # the run's own SQLite file, or a study named for it
    with RunStore.creating(Path(run_dir), info) as store:
        got.frame.to_parquet(store.data_path, index=False)
        store.record([store.data_path])
        store.write("schema", got.schema.to_dict())
        store.write("checks", got.checks)
        store.audit.append("data_checks", findings=got.checks.get("findings", []),
                           dropped=got.schema.dropped, rows=len(got.frame),
                           rows_without_target_dropped=got.n_missing_target)
        store.audit.append(SEARCH_ROWS, **rows.to_record())
        store.audit.append("validation_plan", plan=ctx.plan.describe(), metric=ctx.metric.name)
        if options.policy:
            attach_policy(store, options.policy)
        study, storage = open_study(store, ctx.metric.optuna_direction, make_sampler(options.seed), create=True,
                                    info=info)
        store.write(META_FEATURES, warm.meta.to_dict())
        store.audit.append("warm_start", **warm.audit_fields())
        designer = OptunaDesigner(study, families, got.schema.task, len(ctx.y), mitigation_constraint(options))
        if warm.plan is None:
            designer.enqueue_portfolio()
        else:
            # zero-shot: the plan's first configurations only, the best predicted first
            designer.enqueue_warm_start(warm.plan, defaults_first=not options.zero_shot)
        storage.engine.dispose()  # no connection may outlive the rename: it would reopen the old path
    return store


def build(data: Any, options: BuildOptions, run_dir: Path, reporter: Reporter | None = None,
          started: float | None = None) -> BuildResult:
    """Run a whole build. ``started`` is the monotonic time the budget counts from (default: now)."""
    options = options.checked()
    if options.policy:
        load_policy(options.policy)  # a bad policy file is refused before the run directory exists
    clock = BudgetClock(options.time_budget, started)
    with cluster_joined(options):  # first: a cluster that does not answer is refused before the run exists
        return _build(data, options, run_dir, reporter, clock)


def _build(data: Any, options: BuildOptions, run_dir: Path, reporter: Reporter | None,
           clock: BudgetClock) -> BuildResult:
    reporter = reporter or Reporter()
    start_early(PRELOAD_MODULES if wants_mitigations(options) else ())
    got = intake(data, options)
    full = eval_context(got.frame, got.schema, options)  # raises on too few rows / bad metric, before any write
    # (a memory limit the table leaves too little of is refused here too, before the run exists)
    parallelism = plan_parallelism(options, held_mb=process_memory_mb())
    rows = plan_search_rows(full, options, parallelism.memory_mb_per_trial)
    ctx = search_context(full, rows, options.seed, options.validation)
    families = _families(options, got.schema.task)
    warm = prepare_warm_start(ctx, options, families, fingerprint(got.schema))
    crash_point("intake_done")

    store = _create_run(data, got, ctx, families, options, run_dir, warm, rows)
    # The raw rows are in the run's data file now; from here the run needs only the prepared features (a
    # million-row table's raw frame is ~0.5 GB of the driver's memory, held for the whole build otherwise).
    got = replace(got, frame=got.frame.iloc[:0])
    try:
        crash_point("run_created")
        reporter.message(f"run directory: {store.root}")
        for warning in warm.warnings:
            reporter.message(f"warm start: {warning}")
        for finding in got.checks.get("findings", []):
            if finding.get("severity") in ("warning", "action"):
                reporter.message(f"data check: {finding['message']}")
        info = store.read("run")
        study, _ = open_study(store, ctx.metric.optuna_direction, make_sampler(options.seed), info=info)
        designer = OptunaDesigner(study, families, got.schema.task, len(ctx.y), mitigation_constraint(options))
        n_trials = options.n_trials
        if options.zero_shot:
            n_trials = min(n_trials or ZERO_SHOT_TRIALS, ZERO_SHOT_TRIALS)
        if rows.subsampled:
            reporter.message(f"searching on {rows.rows} of {rows.of} rows, then refitting on all of them")
        return _search_and_finish(store, ctx, designer, clock, options, reporter, n_trials, parallelism,
                                  full if rows.subsampled else None)
    finally:
        store.unlock()


def resume(run_dir: Path, time_budget: float | None = None, n_trials: int | None = None,
           reporter: Reporter | None = None, started: float | None = None, ray: str | None = None) -> BuildResult:
    """Continue a run stopped by Ctrl-C or a kill. No finished trial is lost; the ones in flight run again.
    ``ray``: continue on this Ray cluster ("off": on this machine; None: where the run ran)."""
    store = RunStore.open(run_dir)
    store.lock()  # one writer per run: a second build/resume of it is refused while this one runs
    try:
        return _resume(store, time_budget, n_trials, reporter, started, ray)
    finally:
        store.unlock()


def _resume(store: RunStore, time_budget: float | None, n_trials: int | None, reporter: Reporter | None,
            started: float | None, ray: str | None) -> BuildResult:
    info = store.read("run")
    options = BuildOptions.from_dict(info["options"])
    steering = steering_state(store.audit.records())  # pause, exclusions, added time, commands not yet applied
    budget_note = None
    if time_budget is None and n_trials is None:  # the run's own budget, with the time 'steer add-time' added
        time_budget, n_trials = options.time_budget, options.n_trials
        if time_budget is not None and steering.added_seconds:
            budget_note = (f"budget {time_budget + steering.added_seconds:g} s (--time {time_budget:g} + "
                           f"{steering.added_seconds:g} s added by 'steer add-time')")
            time_budget += steering.added_seconds
    where = {} if ray is None else {"ray": ray}
    options = BuildOptions.from_dict({**options.to_dict(), "time_budget": time_budget, "n_trials": n_trials,
                                      **where})
    options = options.checked()
    clock = BudgetClock(time_budget, started)
    with cluster_joined(options):  # (a cluster that does not answer: refused before anything is written)
        reporter = reporter or Reporter()
        start_early(PRELOAD_MODULES if wants_mitigations(options) else ())
        store.check([store.data_path, store.path("schema")], "resume from")  # the rows and schema as written
        schema = Schema.from_dict(store.read("schema"))
        frame = pd.read_parquet(store.data_path)
        full = eval_context(frame, schema, options)
        del frame  # (the prepared features are all the run needs from here: see _build)
        parallelism = plan_parallelism(options, held_mb=process_memory_mb())
        rows = _saved_row_plan(info, full)
        ctx = search_context(full, rows, options.seed, options.validation)  # the rows the trials were scored on
        study, storage = open_study(store, ctx.metric.optuna_direction, make_sampler(options.seed), info=info)
        requeued = requeue_interrupted(study)
        store.update_run(status="running")
        store.audit.append("resumed", time_budget=time_budget, n_trials=n_trials, requeued=requeued,
                           steering=steering.to_record())
        note = steering.describe(budget_note)
        if note:
            reporter.message(note)
        designer = OptunaDesigner(study, info["families"], schema.task, len(ctx.y), mitigation_constraint(options))
        return _search_and_finish(store, ctx, designer, clock, options, reporter, n_trials, parallelism,
                                  full if rows.subsampled else None)


def _saved_row_plan(info: dict[str, Any], full: EvalContext) -> RowPlan:
    """The rows the run's search was planned on (runs from before the plan existed searched all rows)."""
    saved = info.get(SEARCH_ROWS)
    saved = saved if isinstance(saved, dict) else {}
    n, rows = len(full.y), saved.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 < rows <= n:
        rows, saved = n, {"reason": "all rows"}
    return RowPlan(rows, n, str(saved.get("reason", "")), prepared_row_mb(full.X))


def _search_and_finish(store: RunStore, ctx: EvalContext, designer: OptunaDesigner, clock: BudgetClock,
                       options: BuildOptions, reporter: Reporter, n_trials: int | None, parallelism: Parallelism,
                       full: EvalContext | None) -> BuildResult:
    """``ctx``: the rows the search runs on; ``full``: all rows, when those are a subsample."""
    fairness = search_fairness(options, ctx)  # None without --sensitive
    if fairness is not None:  # a resumed run: the trials measured before it stopped
        fairness.restore({t.number: t.user_attrs for t in designer.study.get_trials(deepcopy=False)})
    store.audit.append("parallelism", **parallelism.to_record())
    if parallelism.workers > 1:
        reporter.message(f"{parallelism.workers} trials at once, {parallelism.threads_per_trial} thread(s) each")
    search = Search(store, ctx, designer, clock, options, reporter, trials_to_run=n_trials, fairness=fairness,
                    parallelism=parallelism, refit_rows=len(full.y) if full is not None else None)
    t0 = time.monotonic()
    search.run()
    crash_point("search_done")
    ensemble_clock, stage_clock = final_stage_clocks(clock, time.monotonic() - t0)  # bounded with --trials too
    reporter.message("ensembling" + (" and refit" if ctx.plan.kind == "holdout" else ""))
    t0 = time.monotonic()
    final = finalize(search, store, ctx, ensemble_clock, full)
    ensemble_row = None
    if final is not None:
        ensemble_row = {"score": final.score, "fit_seconds": round(time.monotonic() - t0, 3),
                        "reason": final.reason, "kind": final.kind,
                        "members": [{"trial": m.trial, "family": m.family, "weight": m.weight}
                                    for m in final.members]}
    designers = {t.number: str(t.user_attrs.get("designer", "")) for t in designer.study.get_trials(deepcopy=False)}
    board = make_leaderboard(search.records, ctx.metric, ensemble_row, designers)
    schema = Schema.from_dict(store.read("schema"))
    if fairness is not None:  # fairness.json, pareto.json; the board with its fairness columns, re-ranked
        board = fairness.finish(store, board, schema.classes)
    store.write("leaderboard", board)
    crash_point("leaderboard_written")
    store.update_run(status="finished" if final is not None else "no-model",
                     elapsed_seconds=round(clock.elapsed, 3))
    crash_point("explanations_started")
    if final is not None:  # explanations.json within the time left, then model_card.md/.json
        explain_and_card(store, ctx, designer.study, stage_clock.deadline(),
                         options.seed, search.parallelism.final_memory_mb, explain=options.explain)
    crash_point("explanations_done")
    record_table_run(store, designer.study, ctx, schema, options.knowledge, reporter)  # never fails the build
    store.audit.append("build_finished", trials=len(search.records), seconds=round(clock.elapsed, 3),
                       final=final.kind if final else None)
    reporter.close()
    return BuildResult(store.root, board, final, schema)
