"""An image run's final stage: the winning architecture trained again from scratch, in a worker, on a schedule
sized to the time left (its epoch time was measured in the search): a network trained on its full schedule beats
one stopped at a low rung of the search. Then the leaderboard (the same code as a table run's), the Pareto front,
the handed-back network's held-out predictions and the model card."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from daedalus.designers.pareto import pareto_front
from daedalus.ensembles.network import NetworkModel
from daedalus.evaluation.nas_trial import MAX_FINAL_EPOCHS, NetworkJob, NetworkOutcome, train_network
from daedalus.evaluation.runner import Job, LocalRunner, TrialRunner
from daedalus.evaluation.worker import WorkerResult
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.image_search import START_SECONDS, ImageEvaluator, trial_extra
from daedalus.orchestration.knowledge_record import record_image_run
from daedalus.orchestration.leaderboard import make_leaderboard
from daedalus.orchestration.loop import TrialRecord, trial_status
from daedalus.orchestration.reporter import Reporter
from daedalus.oversight.final_predictions import save_image_holdout
from daedalus.oversight.model_card import write_model_card
from daedalus.store.layout import BEST_MODEL, FINAL_MODEL

MIN_FINAL_SECONDS = 5.0
FINAL_DESIGNER = "final"


def run_job(runner: TrialRunner, job: Job) -> WorkerResult:
    """Run one job through ``runner`` and wait for its result."""
    runner.submit(job)
    while True:
        for finished in runner.wait(1.0):
            if finished.key == job.key:
                return finished.result


def train_final(evaluator: ImageEvaluator, winner: TrialRecord, deadline: BudgetClock, final_epochs: int | None,
                memory_mb: float, runner: TrialRunner | None = None, n_threads: int | None = None
                ) -> tuple[TrialRecord, NetworkModel | None]:
    """Train ``winner``'s architecture from scratch for the epochs that ``deadline`` (a share of the run's clock)
    allows (``final_epochs``: exactly that many); its trial record and, when it has a score, its network.
    ``n_threads``: the training's (default: a search candidate's)."""
    number = max((r.number for r in evaluator.records), default=-1) + 1
    genotype = tuple(winner.extra["genotype"])
    task = evaluator.task
    job = NetworkJob(evaluator.space, genotype, task.in_shape, task.n_classes,
                     horizon_epochs=final_epochs or MAX_FINAL_EPOCHS, epochs=final_epochs,
                     deadline=deadline, final=True)
    per_epoch = winner.fit_seconds / max(int(winner.extra["epochs"]), 1)
    # The schedule ends with the deadline, after the epoch that crosses it: the worker is killed only past that.
    timeout = math.inf if final_epochs else deadline.remaining + 3 * per_epoch + START_SECONDS
    with runner or LocalRunner() as running:
        data = evaluator.data if n_threads is None else replace(evaluator.data, n_threads=n_threads)
        result = run_job(running, Job(number, train_network, (data, job), timeout=timeout, memory_mb=memory_mb))
    outcome: NetworkOutcome | None = result.value if result.status == "ok" else None
    score = outcome.score if outcome is not None and math.isfinite(outcome.score) else None
    status = trial_status(score) if result.status == "ok" else result.status
    epochs = outcome.epochs if outcome is not None else 0
    reason = f"final training of trial {winner.number}'s architecture: {epochs} epochs from scratch"
    if result.status != "ok":
        reason += f"; {result.reason.strip().splitlines()[0] if result.reason else result.status}"
    record = TrialRecord(number, winner.family, status, score, round(result.seconds, 3), reason,
                         designer=FINAL_DESIGNER,
                         extra=trial_extra(evaluator.space, genotype, epochs, outcome.params if outcome else 0,
                                           evaluator.costs, evaluator.latency))
    model = evaluator.network_model(record, outcome.weights) if outcome is not None and score is not None else None
    return record, model


def pareto_rows(records: list[TrialRecord], cost: str) -> list[dict[str, Any]]:
    """The searched networks no other beats on both accuracy and ``cost`` ("params" or "latency")."""
    column = "latency_ms" if cost == "latency" else "params"
    front = pareto_front((r, r.score, float(r.extra[column] or 0.0)) for r in records
                         if r.designer != FINAL_DESIGNER)
    return [{"trial": r.number, "score": score, cost: value, "architecture": r.extra["architecture"]}
            for r, score, value in front]


def image_leaderboard(evaluator: ImageEvaluator, final: TrialRecord | None, cost: str) -> list[dict[str, Any]]:
    on_front = {row["trial"] for row in pareto_rows(evaluator.records, cost)}
    rows = make_leaderboard(evaluator.records, evaluator.metric, None, final=final)
    for row in rows:
        row["pareto"] = row["trial"] in on_front and row["designer"] != FINAL_DESIGNER
    return rows


def keep_holdout_predictions(evaluator: ImageEvaluator, model: NetworkModel, source: str, n_threads: int) -> None:
    """The handed-back network's probabilities on the held-out images, for the report's ROC and calibration
    plots and the model card's per-class results (the same images scored every candidate)."""
    task, store = evaluator.task, evaluator.store
    proba = model.predict_images(task.X_val, n_threads=n_threads)
    trial = model.spec.trial if model.spec.trial is not None else -1
    save_image_holdout(store.root, proba, task.y_val, task.val_index, trial, source)
    accuracy = float((proba.argmax(axis=1) == task.y_val).mean()) if len(proba) else None
    store.audit.append("holdout_predictions", images=len(task.y_val), accuracy=accuracy, source=source)


def finish_image_run(evaluator: ImageEvaluator, clock: BudgetClock, options: Any, memory_mb: float,
                     reporter: Reporter | None = None) -> tuple[list[dict[str, Any]], NetworkModel | None]:
    """Everything after the search: the final network (or the best trial's), the leaderboard, the Pareto front,
    the held-out predictions, the model card, the knowledge base's entry; returns the leaderboard and the
    handed-back network."""
    store = evaluator.store
    cost = options.cost_objective or "params"
    store.write("leaderboard", image_leaderboard(evaluator, None, cost))
    final_trial, final_model = None, None
    ranked = evaluator.ranked_ok()
    winner = ranked[0] if ranked else None
    if winner is not None and (clock.remaining > MIN_FINAL_SECONDS or options.final_epochs):
        # alone now: the threads the candidates trained side by side had between them
        final_trial, final_model = train_final(evaluator, winner, clock.child(clock.remaining - 2.0),
                                               options.final_epochs, memory_mb,
                                               n_threads=options.threads * (options.workers or 1))
        if final_model is not None:
            final_model.save(store.root / FINAL_MODEL, store)
            store.audit.append("final_model_saved", trial=final_trial.number, score=final_trial.score,
                               epochs=final_trial.extra["epochs"], architecture=final_trial.extra["architecture"])
    if final_model is None and winner is not None:  # no time for a final training: the best trial is the model
        final_model = NetworkModel.load(store.root / BEST_MODEL, store)
    if final_model is not None:
        source = "model" if final_trial is not None and final_trial.score is not None else "best"
        keep_holdout_predictions(evaluator, final_model, source, options.threads)
    board = image_leaderboard(evaluator, final_trial, cost)
    store.write("leaderboard", board)
    store.write("pareto", {"objectives": ["accuracy", cost], "front": pareto_rows(evaluator.records, cost)})
    store.update_run(status="finished" if final_model else "no-model", elapsed_seconds=round(clock.elapsed, 3))
    md, js = write_model_card(store.root)  # milliseconds: written whatever the time left
    store.audit.append("model_card", files=[md.name, js.name])
    record_image_run(store, evaluator.records, evaluator.task.in_shape, len(evaluator.task.table.labels),
                     evaluator.task.n_classes, options.knowledge, reporter or Reporter())  # never fails the build
    store.audit.append("build_finished", trials=len(evaluator.records), seconds=round(clock.elapsed, 3))
    return board, final_model
