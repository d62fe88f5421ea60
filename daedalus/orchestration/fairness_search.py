"""Fairness in the search: the constraint every trial is checked against, the choice of the final model among
feasible trials only, and what a build with ``--sensitive`` leaves in its run directory.

- **Per trial.** Each finished trial's out-of-fold predictions give its gap (``oversight.fairness``) on the
  scored rows. With ``--fairness``, the trial stores ``constraint = [bound - limit]`` as a user attribute
  (feasible when <= 0); the TPE sampler reads it through ``constraints_func``, and the search ranks feasible
  trials first, the infeasible by how far they break the limit (Optuna's order), so that ``best/`` and the
  models kept for the ensemble are feasible ones. The gap is taken over the groups with enough scored rows to
  measure it against the limit (``oversight.fairness.min_measurable_rows``: 400 for 0.05); with fewer than two
  such groups no trial is feasible (the constraint cannot be checked).
- **The ensemble.** Greedy selection runs on feasible trials only; a blend of fair models is not fair by
  construction, so the blend's own gap is checked, and an infeasible blend gives way to the best feasible
  single model. When no trial is feasible, the least infeasible one is kept and ``fairness.json`` says the
  constraint is not met (an approval gate on it then fails closed).
- **At the end.** ``fairness.json`` (the final model's out-of-fold predictions, per group), leaderboard rows
  annotated with their gap, feasibility and Pareto membership, and with ``--objectives metric,fairness``
  ``pareto.json``: the trials no other trial beats on both the metric and the gap.

The study stays single-objective: the Pareto front is read off all finished trials (single models and
mitigations with a spread of bounds), which keeps one best trial, hyperparameter importances and resume as
they are for every other run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from daedalus.data.schema import Task
from daedalus.data.sensitive import group_labels
from daedalus.designers.optuna_designer import CONSTRAINT_ATTR
from daedalus.ensembles.caruana import Selection, greedy_selection
from daedalus.errors import ConfigError
from daedalus.evaluation.metrics import Metric
from daedalus.evaluation.trial import EvalContext
from daedalus.orchestration.options import BuildOptions
from daedalus.oversight.fairness import (
    DEFAULT_GAP_METRIC,
    FAIRNESS_FILE,
    PARETO_FILE,
    FairnessConstraint,
    ReportInput,
    decisions,
    fairness_gap,
    fairness_report,
    min_measurable_rows,
    pareto_front,
    parse_constraint,
)
from daedalus.oversight.final_predictions import final_predictions
from daedalus.store.run import RunStore

if TYPE_CHECKING:
    from daedalus.orchestration.search import TrialRecord

FAIRNESS_OBJECTIVE = "fairness"


def wants_mitigations(options: BuildOptions) -> bool:
    """Fairness is part of the search (not only audited): a constraint or a fairness objective."""
    return options.fairness is not None or FAIRNESS_OBJECTIVE in options.objectives


def check_fairness_task(options: BuildOptions, task: Task) -> None:
    """A constraint or a fairness objective needs decisions with a positive class: binary classification."""
    if wants_mitigations(options) and task is not Task.BINARY:
        what = "--fairness" if options.fairness else "--objectives metric,fairness"
        raise ConfigError(f"{what} needs a binary classification target (this task is {task.value}); drop it "
                          "and keep --sensitive to audit the groups")


def mitigation_constraint(options: BuildOptions) -> str | None:
    """Fairlearn's name of the constraint mitigations enforce (the --fairness metric; demographic parity for a
    fairness objective alone), or None when fairness is not part of the search."""
    if not wants_mitigations(options):
        return None
    return parse_constraint(options.fairness).mitigation if options.fairness else "demographic_parity"


@dataclass(frozen=True)
class FairnessSetup:
    constraint: FairnessConstraint | None
    gap_metric: str
    y: np.ndarray  # targets of the scored rows
    groups: np.ndarray  # intersectional group of each scored row

    def evaluate(self, oof: np.ndarray) -> dict[str, Any]:
        """A trial's fairness, as user attributes (stored in the study, the audit log and the leaderboard)."""
        limit = self.constraint.limit if self.constraint is not None else None
        gap = fairness_gap(self.gap_metric, self.y, decisions(oof), self.groups, min_measurable_rows(limit))
        info: dict[str, Any] = {"fairness_metric": self.gap_metric, "fairness_gap": round(gap.value, 6),
                                "fairness_bound": round(gap.bound, 6)}
        if self.constraint is not None:
            # Unmeasurable (fewer than two groups large enough): as infeasible as a gap can be.
            over = gap.bound - self.constraint.limit if gap.measurable else 1.0
            info[CONSTRAINT_ATTR] = [round(over, 6)]
            info["feasible"] = gap.meets(self.constraint.limit)
        return info


def fairness_setup(options: BuildOptions, ctx: EvalContext) -> FairnessSetup | None:
    if not wants_mitigations(options) or ctx.sensitive is None:
        return None
    constraint = parse_constraint(options.fairness) if options.fairness else None
    scored = ctx.plan.scored_index
    return FairnessSetup(constraint, constraint.metric if constraint else DEFAULT_GAP_METRIC, ctx.y[scored],
                         group_labels(ctx.sensitive.iloc[scored]))


def violation(attrs: dict[str, Any]) -> float:
    """How far a trial breaks the constraint (0 when it meets it or there is none), from its attributes."""
    values = attrs.get(CONSTRAINT_ATTR)
    return max(0.0, max(float(v) for v in values)) if values else 0.0


def choose_ensemble(setup: FairnessSetup | None, pairs: list[tuple[TrialRecord, np.ndarray]], y: np.ndarray,
                    metric: Metric) -> tuple[Selection, list[tuple[TrialRecord, np.ndarray]], str]:
    """Greedy ensemble selection over ``pairs`` (ranked, feasible first); under a constraint, over feasible
    trials only, and the blend must be feasible itself. Returns the selection, the candidates its indices
    refer to, and a note for the audit log ('' when the constraint did not change anything)."""
    if setup is None or setup.constraint is None:
        return greedy_selection([o for _, o in pairs], y, metric), pairs, ""
    feasible = [(r, o) for r, o in pairs if r.violation == 0.0]
    if not feasible:
        best = pairs[:1]
        return (greedy_selection([best[0][1]], y, metric), best,
                f"no trial meets {setup.constraint.expression}; kept the one that breaks it least "
                f"(trial {best[0][0].number})")
    selection = greedy_selection([o for _, o in feasible], y, metric)
    blend = np.asarray(sum(w * feasible[i][1] for i, w in selection.weights.items()))
    info = setup.evaluate(blend)
    if info["feasible"]:
        return selection, feasible, ""
    single = greedy_selection([feasible[0][1]], y, metric)
    return (single, feasible[:1], f"the ensemble of feasible trials breaks {setup.constraint.expression} "
            f"(bound {info['fairness_bound']:.4f}); kept the best feasible single model, trial {feasible[0][0].number}")


def _source(ctx: EvalContext, final_source: str) -> str:
    what = "the final model" if final_source == "model" else "the best model so far"
    return f"out-of-fold predictions of {what} ({ctx.plan.describe()})"


def write_fairness(store: RunStore, ctx: EvalContext, options: BuildOptions, classes: tuple[Any, ...] | None,
                   board: list[dict[str, Any]], records: list[TrialRecord]) -> None:
    """fairness.json, the leaderboard's fairness columns and pareto.json, for a build with --sensitive.
    ``board`` (the leaderboard rows) is annotated in place."""
    if ctx.sensitive is None:
        return
    constraint = parse_constraint(options.fairness) if options.fairness else None
    fp = final_predictions(store.root)
    record: dict[str, Any] | None = None
    if fp is not None:
        record = fairness_report(ReportInput(ctx.task, fp.y, fp.pred, ctx.sensitive.iloc[fp.rows], classes,
                                             _source(ctx, fp.source), used_as_features=options.use_sensitive),
                                 constraint)
        store.write(FAIRNESS_FILE, record)
        store.audit.append("fairness_report", sensitive=record["sensitive"], rows=record["rows"],
                           differences=record["differences"], max_gap=record["max_gap"],
                           constraint=record["constraint"])
    by_number = {r.number: r for r in records}
    for row in board:
        rec = by_number.get(row["trial"]) if row.get("trial") is not None else None
        if rec is not None and rec.gap is not None:
            row["fairness_gap"] = rec.gap
            if constraint is not None:
                row["feasible"] = rec.violation == 0.0
        elif row.get("trial") is None and record is not None and record["constraint"] is not None:
            row["fairness_gap"], row["feasible"] = record["constraint"]["value"], record["constraint"]["met"]
    if constraint is not None:
        # The leaderboard ranks as the search does: the model the run hands back (chosen under the constraint),
        # then feasible trials by score, then infeasible ones by how far they break the limit.
        def key(r: dict[str, Any]) -> tuple[bool, bool, bool, float, int]:
            rec = by_number.get(r["trial"]) if r.get("trial") is not None else None
            return (r["status"] != "ok" or r["score"] is None, r.get("trial") is not None,
                    r.get("feasible") is False, rec.violation if rec is not None else 0.0, r["rank"])
        board.sort(key=key)
        for rank, row in enumerate(board, start=1):
            row["rank"] = rank
    if FAIRNESS_OBJECTIVE in options.objectives:
        _write_pareto(store, ctx, options, board, constraint)


def _write_pareto(store: RunStore, ctx: EvalContext, options: BuildOptions, board: list[dict[str, Any]],
                  constraint: FairnessConstraint | None) -> None:
    gap_metric = constraint.metric if constraint else DEFAULT_GAP_METRIC
    rows = [r for r in board if r.get("trial") is not None and r.get("score") is not None
            and r.get("fairness_gap") is not None]
    flags = pareto_front([(ctx.metric.utility(r["score"]), r["fairness_gap"]) for r in rows])
    front = []
    for row, on_front in zip(rows, flags, strict=True):
        row["pareto"] = on_front
        if on_front:
            front.append({"trial": row["trial"], "family": row["family"], ctx.metric.name: row["score"],
                          gap_metric: row["fairness_gap"], "feasible": row.get("feasible")})
    front.sort(key=lambda r: r[gap_metric])
    store.write(PARETO_FILE, {"objectives": [ctx.metric.name, gap_metric],
                              "directions": [ctx.metric.optuna_direction, "minimize"],
                              "source": "out-of-fold predictions of each trial", "front": front})
    store.audit.append("pareto_front", objectives=[ctx.metric.name, gap_metric],
                       trials=[r["trial"] for r in front])
