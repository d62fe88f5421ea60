"""Explanations written at the end of every tabular build: ``explanations.json`` in the run directory.

    {
      "version": 1,
      "feature_importance": [                  permutation importance of the final model on held-out rows,
        {"feature": "duration",                  raw input columns (what the user passed), most important
         "mean": 0.031, "std": 0.004},           first; mean/std over repeats of the drop in the validation
        ...                                      metric when the column is shuffled (in "higher is better"
      ],                                         units: a positive value means the column helps)
      "feature_importance_detail": {"metric", "rows", "repeats", "model", "seconds"} or {"skipped": why},
      "hyperparameter_importance": {           share of the search's score variance per parameter:
        "family": 0.62, "lightgbm.num_leaves": 0.11, ...}   "family" between families, "F.param" within F
      "hyperparameter_importance_detail": {"evaluator", "trials", "per_family": {F: {...}}, "method"},
      "why": {                                  the chosen model against the leaderboard's runners-up
        "metric", "greater_is_better", "rows", "resamples", "confidence", "method",
        "chosen": {"label", "trial", "family", "score", "ci": [lo, hi]},
        "runners_up": [{"label", "trial", "family", "score", "ci", "advantage", "advantage_ci",
                        "significant", "share_chosen_better"}, ...],
        "statement": "plain English, saying when a difference is not significant"
      } or {"skipped": why},
      "seconds": total seconds spent
    }

Every part is bounded by the time the build has left (rows are subsampled, repeats and resamples reduced); a
part that does not fit is skipped, with the reason in the file and in the audit log (event ``explanations``).
Permutation importance never scores a model on rows it was fit on (see ``heldout.py``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from daedalus.data.schema import Schema
from daedalus.deadline import Deadline
from daedalus.ensembles.model import ModelSpec
from daedalus.evaluation.trial import EvalContext
from daedalus.evaluation.worker import run_in_worker
from daedalus.oversight.final_predictions import final_predictions
from daedalus.oversight.heldout import HeldOutEnsemble, load_heldout_ensemble, raw_column_groups
from daedalus.oversight.hyperparams import hyperparameter_importance
from daedalus.oversight.why import Candidate, compare, resamples_affordable
from daedalus.store.layout import FINAL_MODEL, MODEL_FILE, read_model_file
from daedalus.store.run import RunStore

EXPLANATIONS = "explanations"  # explanations.json
MAX_ROWS = 1000  # rows scored by permutation importance (a random subsample of the held-out rows)
MIN_ROWS = 100  # fewer affordable rows than this: permutation importance is skipped
REPEATS = 3  # shuffles per column
RUNNERS_UP = 4  # leaderboard entries compared with the chosen model
WHY_MAX_SECONDS = 5.0  # the bootstrap's cap even without a budget (a generic metric costs ms per call)
MIN_SECONDS = 0.5  # below this much time left, explanations are skipped altogether
MIN_IMPORTANCE_SECONDS = 2.0  # permutation importance loads every fold model: not started with less than this
NO_BUDGET_TIMEOUT = 600.0  # its limit when the build has no time budget (--trials only)


# -- permutation importance -----------------------------------------------------------------------------------
def permutation_importance(heldout: HeldOutEnsemble, ctx: EvalContext, groups: dict[str, list[str]],
                           n_rows: int, n_repeats: int, seed: int) -> list[dict[str, Any]]:
    """Shuffle each raw column (all its prepared columns together) within each fold's sampled held-out rows,
    predict with that fold's ensemble, and score all folds' rows pooled, as the out-of-fold score is.

    The shuffled copies of a fold are stacked into one frame, so each model predicts once: a few large
    predictions cost far less than thousands of small ones."""
    rng = np.random.default_rng(seed)
    total = sum(len(f.rows) for f in heldout.folds)
    names = list(groups)
    n_blocks = 1 + len(names) * n_repeats
    preds: list[np.ndarray] = []  # per fold: (n_blocks, rows_j, ...) predictions
    ys: list[np.ndarray] = []
    for fold in heldout.folds:
        take = max(1, round(n_rows * len(fold.rows) / total))
        rows = np.sort(rng.choice(fold.rows, size=min(take, len(fold.rows)), replace=False))
        base = ctx.X.iloc[rows].reset_index(drop=True)
        blocks = [base]
        for name in names:
            for _ in range(n_repeats):
                shuffled = base.copy()
                order = rng.permutation(len(base))
                for col in groups[name]:
                    shuffled[col] = base[col].to_numpy()[order]
                blocks.append(shuffled)
        pred = fold.predict(pd.concat(blocks, ignore_index=True), ctx.task, ctx.n_classes)
        preds.append(pred.reshape(n_blocks, len(rows), *pred.shape[1:]))
        ys.append(ctx.y[rows])
    y = np.concatenate(ys)

    def utility(block: int) -> float:
        return ctx.metric.utility(ctx.metric(y, np.concatenate([p[block] for p in preds])))

    baseline = utility(0)
    out = []
    for i, name in enumerate(names):
        drops = [baseline - utility(1 + i * n_repeats + r) for r in range(n_repeats)]
        out.append({"feature": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    return sorted(out, key=lambda row: -row["mean"])


def _predict_seconds_per_row(study: optuna.Study, spec: ModelSpec, n_scored: int) -> float:
    """The ensemble's measured prediction cost per row, from its members' trials (all folds' validation rows
    were predicted once per trial)."""
    seconds = 0.0
    for member in spec.members:
        attrs = study.trials[member.trial].user_attrs
        seconds += float(attrs.get("predict_seconds", 0.0)) or 1e-4 * n_scored
    return seconds / max(n_scored, 1)


def feature_importance_job(root: Path, spec: ModelSpec, ctx: EvalContext, groups: dict[str, list[str]],
                           per_row: float, deadline: Deadline, seed: int) -> tuple[list[dict[str, Any]],
                                                                                  dict[str, Any]]:
    """Permutation importance sized to the time left before ``deadline``; run in a worker (``run_in_worker``),
    whose timeout is the hard limit: loading large models takes seconds that no estimate foresees, and a worker
    that runs over is killed, not waited for."""
    heldout = load_heldout_ensemble(RunStore(root), spec, ctx.plan)
    if heldout is None:
        return [], {"skipped": "a member's fold models are no longer on disk, so there is no held-out model"}
    n_scored = len(ctx.plan.scored_index)
    n_rows, repeats = min(MAX_ROWS, n_scored), REPEATS
    if deadline.bounded:
        left = 0.8 * deadline.remaining  # 0.8: room for the shuffled frames and the answer
        affordable = max(left, 0.0) / per_row
        while repeats > 1 and affordable / (1 + len(groups) * repeats) < min(n_rows, MIN_ROWS * 3):
            repeats -= 1
        n_rows = int(min(n_rows, affordable / (1 + len(groups) * repeats)))
        if n_rows < min(MIN_ROWS, n_scored):
            return [], {"skipped": f"not enough time left ({max(left, 0):.1f} s after loading the models would "
                                   f"score about {max(n_rows, 0)} rows; at least {min(MIN_ROWS, n_scored)} "
                                   "are needed)"}
    rows = permutation_importance(heldout, ctx, groups, n_rows, repeats, seed)
    return rows, {"metric": ctx.metric.name, "rows": n_rows, "repeats": repeats, "model": heldout.description,
                  "unit": f"drop in {ctx.metric.name} when the column is shuffled"
                          + ("" if ctx.metric.greater_is_better else " (as a gain: loss rises)")}


def _feature_importance(store: RunStore, ctx: EvalContext, study: optuna.Study, spec: ModelSpec,
                        schema: Schema, deadline: Deadline, seed: int, memory_mb: float
                        ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if deadline.remaining < MIN_IMPORTANCE_SECONDS:
        return [], {"skipped": f"not enough time left ({max(deadline.remaining, 0):.1f} s)"}
    per_row = 1.5 * _predict_seconds_per_row(study, spec, len(ctx.plan.scored_index))  # 1.5: frames built
    args = (store.root, spec, ctx, raw_column_groups(schema), per_row, deadline, seed)
    timeout = NO_BUDGET_TIMEOUT if deadline.seconds is None else deadline.seconds
    result = run_in_worker(feature_importance_job, args, timeout=timeout, memory_mb=memory_mb)
    if result.status != "ok":
        why = ("the time left ran out while it ran" if result.status == "timeout" else
               f"it failed ({result.status}: {result.reason.strip().splitlines()[-1] if result.reason else ''})")
        return [], {"skipped": why}
    rows, detail = result.value
    return rows, {**detail, "seconds": round(result.seconds, 3)} if rows else detail


# -- why this model -------------------------------------------------------------------------------------------
def _why(store: RunStore, ctx: EvalContext, board: list[dict[str, Any]],
         deadline: Deadline, seed: int) -> dict[str, Any]:
    ranked = [row for row in board if row.get("status") == "ok" and row.get("score") is not None]
    candidates: list[Candidate] = []
    for row in ranked[:RUNNERS_UP + 1]:
        if row["trial"] is None:
            ensemble = final_predictions(store.root)
            if ensemble is not None:
                candidates.append(Candidate("ensemble", None, "ensemble", ensemble.pred))
        else:
            single = store.load_oof(row["trial"])
            if single is not None:
                candidates.append(Candidate(f"trial {row['trial']} ({row['family']})", row["trial"],
                                            row["family"], single))
    if not candidates:
        return {"skipped": "no candidate has stored out-of-fold predictions"}
    y = ctx.y[ctx.plan.scored_index]
    budget = min(deadline.remaining, WHY_MAX_SECONDS)  # capped even without a limit
    while True:  # short of time, compare with fewer runners-up (the closest ones stay) rather than none
        n = resamples_affordable(candidates, y, ctx.metric, budget)
        if n > 0 or len(candidates) <= 2:
            break
        candidates = candidates[:-1]
    if n == 0:
        return {"skipped": "not enough time left for the bootstrap"}
    return compare(candidates[0], candidates[1:], y, ctx.metric, ctx.task.is_classification, n, seed)


# -- the end-of-build step ------------------------------------------------------------------------------------
def explain_build(store: RunStore, ctx: EvalContext, study: optuna.Study, deadline: Deadline,
                  seed: int = 0, memory_mb: float = math.inf) -> dict[str, Any] | None:
    """Write ``explanations.json`` for a finished tabular build before ``deadline`` (its share of the run's
    clock; permutation importance runs in a worker under ``memory_mb``). Returns the record, or None when the
    run has no final model or no time is left (noted in the audit log)."""
    t0 = time.monotonic()  # measured for the record, not a timer: the deadline decides
    directory = store.model_dir(FINAL_MODEL)
    if not (directory / MODEL_FILE).exists():
        return None
    if deadline.remaining < MIN_SECONDS:
        store.audit.append("explanations_skipped",
                           reason=f"no time left in the budget ({max(deadline.remaining, 0):.1f} s)")
        return None
    spec = ModelSpec.from_dict(read_model_file(directory))
    schema = Schema.from_dict(store.read("schema"))
    board = store.read("leaderboard", default=[])
    record: dict[str, Any] = {"version": 1}
    record["why"] = _why(store, ctx, board, deadline.share(0.15), seed)
    hp: dict[str, float] = {}
    hp_detail: dict[str, Any] = {"skipped": "no time left"}
    try:
        if deadline.remaining > MIN_SECONDS:
            hp, hp_detail = hyperparameter_importance(study, seed, deadline.share(0.3))
    except (ValueError, RuntimeError) as exc:  # an evaluator that cannot fit these trials: say so, go on
        hp, hp_detail = {}, {"skipped": f"the importance evaluator failed: {exc}"}
    record["hyperparameter_importance"], record["hyperparameter_importance_detail"] = hp, hp_detail
    fi, fi_detail = _feature_importance(store, ctx, study, spec, schema, deadline.share(0.9), seed, memory_mb)
    record["feature_importance"], record["feature_importance_detail"] = fi, fi_detail
    record["seconds"] = round(time.monotonic() - t0, 3)
    store.write(EXPLANATIONS, record)
    skipped = {k: v["skipped"] for k, v in (("feature_importance", fi_detail), ("why", record["why"]),
                                            ("hyperparameter_importance", hp_detail)) if "skipped" in v}
    store.audit.append("explanations", seconds=record["seconds"],
                       top_features=[r["feature"] for r in fi[:5]], top_hyperparameters=list(hp)[:5],
                       why=record["why"].get("statement", ""), skipped=skipped)
    return record


def explain_and_card(store: RunStore, ctx: EvalContext, study: optuna.Study, deadline: Deadline,
                     seed: int = 0, memory_mb: float = math.inf, explain: bool = True) -> None:
    """The end of a tabular build: ``explanations.json`` before ``deadline`` (unless ``explain`` is off), then
    the model card (which costs milliseconds, so it is written whatever the time left)."""
    from daedalus.oversight.model_card import write_model_card

    if explain:
        explain_build(store, ctx, study, deadline, seed, memory_mb)
    else:
        store.audit.append("explanations_skipped", reason="turned off (--no-explain)")
    md, js = write_model_card(store.root)
    store.audit.append("model_card", files=[md.name, js.name])
