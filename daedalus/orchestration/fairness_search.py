"""Fairness in the search, as one object the search is handed: ``SearchFairness`` (built by
:func:`search_fairness` for a build with ``--sensitive``; None without it, and the search then ranks by its
metric alone). It owns everything the fairness constraint changes in a build:

- **Per trial** (:meth:`SearchFairness.evaluate`). A finished trial's out-of-fold predictions give its gap
  (``oversight.fairness``) on the scored rows. With ``--fairness``, the trial's info gets
  ``constraint = [bound - limit]`` (feasible when <= 0), which the tabular designer sets as the trial's Optuna
  constraint (constrained TPE), and ``feasible``. The object keeps each trial's info by number; a resumed run
  restores it from the study's user attributes (:meth:`SearchFairness.restore`). The gap is taken over the
  groups with enough scored rows to measure it against the limit (``oversight.fairness.min_measurable_rows``:
  400 for 0.05); with fewer than two such groups no trial is feasible (the constraint cannot be checked).
- **The ranking** (:meth:`SearchFairness.rank_key`): feasible trials first, the infeasible by how far they
  break the limit (Optuna's order), then the metric; so ``best/`` and the models kept for the ensemble are
  feasible ones.
- **The ensemble** (:meth:`SearchFairness.choose_ensemble`). Greedy selection runs on feasible trials only; a
  blend of fair models is not fair by construction, so the blend's own gap is checked, and an infeasible blend
  gives way to the best feasible single model. When no trial is feasible, the least infeasible one is kept and
  ``fairness.json`` says the constraint is not met (an approval gate on it then fails closed).
- **The mitigations** (:meth:`SearchFairness.mitigating`): a wrapper designer (``fair_designer``) that queues
  Fairlearn's ThresholdOptimizer around the best trial so far that breaks the constraint.
- **At the end** (:meth:`SearchFairness.finish`): ``fairness.json`` (the final model's out-of-fold predictions,
  per group), the leaderboard with its fairness columns (gap, feasibility, Pareto membership) and ranked as the
  search ranks, and with ``--objectives metric,fairness`` ``pareto.json``: the trials no other trial beats on
  both the metric and the gap.

The study stays single-objective: the Pareto front is read off all finished trials (single models and
mitigations with a spread of bounds), which keeps one best trial, hyperparameter importances and resume as
they are for every other run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from daedalus.data.schema import Task
from daedalus.data.sensitive import group_labels
from daedalus.designers.base import Designer
from daedalus.designers.optuna_designer import CONSTRAINT_ATTR
from daedalus.designers.pareto import pareto_front
from daedalus.ensembles.caruana import Selection, greedy_selection
from daedalus.errors import ConfigError
from daedalus.evaluation.trial import EvalContext
from daedalus.orchestration.fair_designer import FEASIBLE_ATTR, EnqueuingDesigner, MitigatingDesigner
from daedalus.orchestration.options import BuildOptions
from daedalus.oversight.fairness import (
    DEFAULT_GAP_METRIC,
    FAIRNESS_RECORD,
    PARETO_RECORD,
    FairnessConstraint,
    ReportInput,
    decisions,
    fairness_gap,
    fairness_report,
    min_measurable_rows,
    parse_constraint,
)
from daedalus.oversight.final_predictions import final_predictions
from daedalus.store.run import RunStore

FAIRNESS_OBJECTIVE = "fairness"
GAP_ATTR = "fairness_gap"  # a trial's info: its gap, its bound (gap + z * se) and the gap's metric
BOUND_ATTR = "fairness_bound"
GAP_METRIC_ATTR = "fairness_metric"


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


def violation(info: Mapping[str, Any]) -> float:
    """How far a trial breaks the constraint (0 when it meets it or there is none), from its info."""
    values = info.get(CONSTRAINT_ATTR)
    return max(0.0, max(float(v) for v in values)) if values else 0.0


@dataclass(frozen=True)
class GapMeasure:
    """A trial's fairness, measured on the scored rows: their targets and intersectional groups."""

    constraint: FairnessConstraint | None
    gap_metric: str
    y: np.ndarray  # targets of the scored rows
    groups: np.ndarray  # intersectional group of each scored row

    def evaluate(self, oof: np.ndarray) -> dict[str, Any]:
        """The info kept with a trial (in the study, the audit log and the leaderboard)."""
        limit = self.constraint.limit if self.constraint is not None else None
        gap = fairness_gap(self.gap_metric, self.y, decisions(oof), self.groups, min_measurable_rows(limit))
        info: dict[str, Any] = {GAP_METRIC_ATTR: self.gap_metric, GAP_ATTR: round(gap.value, 6),
                                BOUND_ATTR: round(gap.bound, 6)}
        if self.constraint is not None:
            # Unmeasurable (fewer than two groups large enough): as infeasible as a gap can be.
            over = gap.bound - self.constraint.limit if gap.measurable else 1.0
            info[CONSTRAINT_ATTR] = [round(over, 6)]
            info[FEASIBLE_ATTR] = gap.meets(self.constraint.limit)
        return info


class Numbered(Protocol):
    @property
    def number(self) -> int: ...


R = TypeVar("R", bound=Numbered)


class SearchFairness:
    """The fairness of a build with ``--sensitive``, handed to the search (see the module docstring).

    ``ctx`` must carry the sensitive columns. ``constraint``: the ``--fairness`` constraint, or None;
    ``in_search``: trials are measured (a constraint or a fairness objective), else fairness is only audited at
    the end; ``pareto``: write ``pareto.json`` (``--objectives metric,fairness``); ``used_as_features``:
    ``--use-sensitive``, recorded in ``fairness.json``.
    """

    def __init__(self, ctx: EvalContext, constraint: FairnessConstraint | None = None, *, in_search: bool = True,
                 pareto: bool = False, used_as_features: bool = False) -> None:
        if ctx.sensitive is None:
            raise ValueError("SearchFairness needs the sensitive columns (EvalContext.sensitive)")
        self.ctx = ctx
        self.constraint = constraint
        self.pareto = pareto
        self.used_as_features = used_as_features
        scored = ctx.plan.scored_index
        self.measure = GapMeasure(constraint, constraint.metric if constraint else DEFAULT_GAP_METRIC,
                                  ctx.y[scored], group_labels(ctx.sensitive.iloc[scored])) if in_search else None
        self._trials: dict[int, dict[str, Any]] = {}  # the info of each measured trial, by number

    # -- per trial ---------------------------------------------------------------------------------------------
    def evaluate(self, number: int, oof: np.ndarray) -> dict[str, Any]:
        """Trial ``number``'s fairness info (empty when fairness is only audited), kept by this object."""
        info = self.measure.evaluate(oof) if self.measure is not None else {}
        self._trials[number] = info
        return info

    def restore(self, history: Mapping[int, Mapping[str, Any]]) -> None:
        """Take back the info of trials measured before a resume: {number: that trial's stored attributes}."""
        for number, attrs in history.items():
            if GAP_ATTR in attrs:
                self._trials[number] = {k: attrs[k] for k in (GAP_METRIC_ATTR, GAP_ATTR, BOUND_ATTR,
                                                              CONSTRAINT_ATTR, FEASIBLE_ATTR) if k in attrs}

    def violation(self, number: int) -> float:
        """How far trial ``number`` breaks the constraint; 0 when it meets it, or without a constraint."""
        return violation(self._trials.get(number, {}))

    def feasible(self, number: int) -> bool:
        return self.violation(number) == 0.0

    def rank_key(self, number: int, score: float | None) -> tuple[float, float, int]:
        """The search's order of successful trials: feasible first, then the least infeasible (Optuna's order),
        then the best metric."""
        return (self.violation(number), -self.ctx.metric.utility(score or 0.0), number)

    # -- the ensemble ------------------------------------------------------------------------------------------
    def choose_ensemble(self, pairs: Sequence[tuple[R, np.ndarray]], y: np.ndarray
                        ) -> tuple[Selection, list[tuple[R, np.ndarray]], str]:
        """Greedy ensemble selection over ``pairs`` (trials and their out-of-fold predictions, ranked by
        ``rank_key``); under a constraint, over feasible trials only, and the blend must be feasible itself.
        Returns the selection, the candidates its indices refer to, and a note for the audit log ('' when the
        constraint did not change anything)."""
        metric = self.ctx.metric
        pairs = list(pairs)
        if self.constraint is None or self.measure is None:
            return greedy_selection([o for _, o in pairs], y, metric), pairs, ""
        feasible = [(r, o) for r, o in pairs if self.feasible(r.number)]
        if not feasible:
            best = pairs[:1]
            return (greedy_selection([best[0][1]], y, metric), best,
                    f"no trial meets {self.constraint.expression}; kept the one that breaks it least "
                    f"(trial {best[0][0].number})")
        selection = greedy_selection([o for _, o in feasible], y, metric)
        blend = np.asarray(sum(w * feasible[i][1] for i, w in selection.weights.items()))
        info = self.measure.evaluate(blend)
        if info[FEASIBLE_ATTR]:
            return selection, feasible, ""
        single = greedy_selection([feasible[0][1]], y, metric)
        return (single, feasible[:1], f"the ensemble of feasible trials breaks {self.constraint.expression} "
                f"(bound {info[BOUND_ATTR]:.4f}); kept the best feasible single model, trial "
                f"{feasible[0][0].number}")

    # -- the mitigations ---------------------------------------------------------------------------------------
    def mitigating(self, designer: EnqueuingDesigner, families: Sequence[str]) -> Designer[dict[str, Any]]:
        """``designer`` wrapped in the mitigation policy (under a constraint; else ``designer`` itself: a fairness
        objective alone is served by the families' spread of mitigations, not by wrapping unfair trials)."""
        if self.constraint is None:
            return cast(Designer[dict[str, Any]], designer)  # (OptunaDesigner: a Designer with a queue)
        return MitigatingDesigner(designer, families, self.constraint.mitigation, self.ctx.metric.utility)

    # -- at the end --------------------------------------------------------------------------------------------
    def finish(self, store: RunStore, board: Sequence[dict[str, Any]],
               classes: tuple[Any, ...] | None) -> list[dict[str, Any]]:
        """Write ``fairness.json`` (and ``pareto.json`` with a fairness objective), with their audit records;
        return the leaderboard with its fairness columns, ranked as the search ranks (``board`` is not
        changed)."""
        record = self._write_report(store, classes)
        rows = [dict(row) for row in board]
        for row in rows:
            info = self._trials.get(row["trial"]) if row.get("trial") is not None else None
            if info is not None and info.get(GAP_ATTR) is not None:
                row["fairness_gap"] = info[GAP_ATTR]
                if self.constraint is not None:
                    row["feasible"] = self.feasible(row["trial"])
            elif row.get("trial") is None and record is not None and record["constraint"] is not None:
                row["fairness_gap"], row["feasible"] = record["constraint"]["value"], record["constraint"]["met"]
        if self.constraint is not None:
            rows = self._ranked(rows)
        if self.pareto:
            self._write_pareto(store, rows)
        return rows

    def _write_report(self, store: RunStore, classes: tuple[Any, ...] | None) -> dict[str, Any] | None:
        fp = final_predictions(store.root)
        if fp is None or self.ctx.sensitive is None:
            return None
        what = "the final model" if fp.source == "model" else "the best model so far"
        source = f"out-of-fold predictions of {what} ({self.ctx.plan.describe()})"
        record = fairness_report(ReportInput(self.ctx.task, fp.y, fp.pred, self.ctx.sensitive.iloc[fp.rows],
                                             classes, source, used_as_features=self.used_as_features),
                                 self.constraint)
        store.write(FAIRNESS_RECORD, record)
        store.audit.append("fairness_report", sensitive=record["sensitive"], rows=record["rows"],
                           differences=record["differences"], max_gap=record["max_gap"],
                           constraint=record["constraint"])
        return record

    def _ranked(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The leaderboard ranked as the search ranks: the model the run hands back (chosen under the
        constraint), then feasible trials by score, then infeasible ones by how far they break the limit."""
        def key(r: dict[str, Any]) -> tuple[bool, bool, bool, float, int]:
            number = r.get("trial")
            return (r["status"] != "ok" or r["score"] is None, number is not None, r.get("feasible") is False,
                    self.violation(number) if number is not None else 0.0, r["rank"])
        ranked = sorted(rows, key=key)
        for rank, row in enumerate(ranked, start=1):
            row["rank"] = rank
        return ranked

    def _write_pareto(self, store: RunStore, board: list[dict[str, Any]]) -> None:
        """``pareto.json``: the trials no other beats on both the metric and the gap; ``board``'s rows get
        ``pareto`` (on the front or not)."""
        metric = self.ctx.metric
        gap_metric = self.constraint.metric if self.constraint else DEFAULT_GAP_METRIC
        rows = [r for r in board if r.get("trial") is not None and r.get("score") is not None
                and r.get("fairness_gap") is not None]
        on_front = {i for i, _, _ in pareto_front((i, metric.utility(r["score"]), r["fairness_gap"])
                                                  for i, r in enumerate(rows))}
        front = []
        for i, row in enumerate(rows):
            row["pareto"] = i in on_front
            if row["pareto"]:
                front.append({"trial": row["trial"], "family": row["family"], metric.name: row["score"],
                              gap_metric: row["fairness_gap"], "feasible": row.get("feasible")})
        front.sort(key=lambda r: r[gap_metric])
        store.write(PARETO_RECORD, {"objectives": [metric.name, gap_metric],
                                    "directions": [metric.optuna_direction, "minimize"],
                                    "source": "out-of-fold predictions of each trial", "front": front})
        store.audit.append("pareto_front", objectives=[metric.name, gap_metric],
                           trials=[r["trial"] for r in front])


def search_fairness(options: BuildOptions, ctx: EvalContext) -> SearchFairness | None:
    """The fairness object of a build: None without ``--sensitive``."""
    if ctx.sensitive is None:
        return None
    constraint = parse_constraint(options.fairness) if options.fairness else None
    return SearchFairness(ctx, constraint, in_search=wants_mitigations(options),
                          pareto=FAIRNESS_OBJECTIVE in options.objectives, used_as_features=options.use_sensitive)
