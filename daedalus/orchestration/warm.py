"""A table build's start from what earlier tasks taught (issue 12): the table's meta-features, then the warm start
plan (``designers.warm_start``) from the mined portfolio and the user's knowledge base.

Neither source may fail a build: a knowledge base that cannot be read, or a damaged shipped portfolio, is a warning
(the audit log keeps it) and the build goes on with what is left, down to today's cold start. A ``--portfolio``
file the user names is their input: a damaged one is refused in one line before the run directory exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daedalus.data.metafeatures import MetaFeatures, meta_features
from daedalus.designers.warm_start import Candidate, PastRun, PastTask, WarmStartPlan, plan_warm_start
from daedalus.errors import DaedalusError
from daedalus.evaluation.trial import EvalContext
from daedalus.orchestration.options import BuildOptions
from daedalus.store.knowledge import KnowledgeBase, chosen_url

META_SHARE, META_CAP_SECONDS = 0.02, 3.0  # of the budget, for the meta-features (landmarkers stop at the limit)


@dataclass
class WarmStart:
    """What a build learnt before its search: the table's meta-features and the plan (None: ``--warm-start
    off``), with the warnings met on the way."""

    meta: MetaFeatures
    plan: WarmStartPlan | None
    warnings: list[str] = field(default_factory=list)

    def audit_fields(self) -> dict[str, Any]:
        return {"meta_features": self.meta.to_dict(), "warm_start": self.plan.to_record() if self.plan else "off",
                "warnings": self.warnings}


def describe(ctx: EvalContext, options: BuildOptions) -> MetaFeatures:
    """The table's meta-features, within 2% of the budget and at most 3 s."""
    budget = options.time_budget
    limit = META_CAP_SECONDS if budget is None else min(META_CAP_SECONDS, META_SHARE * budget)
    return meta_features(ctx.X, ctx.y, ctx.task, seed=options.seed, time_limit=limit)


def prepare_warm_start(ctx: EvalContext, options: BuildOptions, families: list[str]) -> WarmStart:
    meta = describe(ctx, options)
    if options.warm_start == "off":
        return WarmStart(meta, None)
    warnings: list[str] = []
    candidates, past_tasks = portfolio_knowledge(options, warnings)
    runs = past_runs(options, ctx.task.value, warnings)
    plan = plan_warm_start(meta.vector(), ctx.task, len(ctx.y), families, candidates, past_tasks, runs)
    return WarmStart(meta, plan, warnings)


def portfolio_knowledge(options: BuildOptions, warnings: list[str]) -> tuple[list[Candidate], list[PastTask]]:
    """The portfolio's members and the corpus tasks they were scored on."""
    return [], []


def past_runs(options: BuildOptions, task: str, warnings: list[str]) -> list[PastRun]:
    """The user's finished table runs of this kind of task, from the knowledge base, each with its best successful
    trials first. A base that cannot be read is a warning; a damaged row is skipped (the base says which)."""
    url = chosen_url(options.knowledge)
    if url is None:
        return []
    try:
        with KnowledgeBase.open(url) as base:
            runs = base.runs(kind="table", task=task)
            out = []
            for run in runs:
                meta = _meta_vector(run.meta_features)
                if meta is None:
                    continue  # a run recorded without meta-features cannot be compared with this table
                sign = -1.0 if run.greater_is_better else 1.0
                best = sorted((sign * t.score, t.number, t.family, t.config) for t in base.trials(run.run_id)
                              if t.status == "ok" and t.score is not None)
                out.append(PastRun(run.run_id, run.dataset, run.task, run.metric, meta,
                                   [(n, f, c, sign * s) for s, n, f, c in best[:5]]))
            warnings.extend(base.warnings)
            return out
    except DaedalusError as exc:
        warnings.append(f"the knowledge base was not read: {exc}")
        return []


def _meta_vector(recorded: Mapping[str, Any]) -> np.ndarray | None:
    """A past run's meta-features as a vector, or None when they are missing or damaged."""
    values = recorded.get("values", recorded) if isinstance(recorded, Mapping) else None
    if not values:
        return None
    try:
        return MetaFeatures.from_dict({"values": dict(values), "seconds": 0.0}).vector()
    except (ValueError, TypeError):
        return None
