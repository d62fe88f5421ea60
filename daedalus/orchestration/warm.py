"""A table build's start from what earlier tasks taught (issue 12): the table's meta-features, then the warm start
plan (``designers.warm_start``) from the mined portfolio and the user's knowledge base.

Neither source may fail a build: a knowledge base that cannot be read, or a damaged shipped portfolio, is a warning
(the audit log keeps it) and the build goes on with what is left, down to today's cold start. A ``--portfolio``
file the user names is their input: a damaged one is refused in one line before the run directory exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daedalus.data.metafeatures import META_FEATURE_NAMES, MetaFeatures, meta_features
from daedalus.data.schema import Task
from daedalus.designers.meta.portfolio import Portfolio
from daedalus.designers.warm_start import Candidate, PastRun, PastTask, WarmStartPlan, plan_warm_start
from daedalus.errors import ConfigError, DaedalusError
from daedalus.evaluation.trial import EvalContext
from daedalus.orchestration.options import BuildOptions
from daedalus.spaces.registry import FAMILIES
from daedalus.store.home import learned_portfolio_path
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
    candidates, past_tasks = portfolio_knowledge(options, ctx.task, len(ctx.y), warnings)
    runs = past_runs(options, ctx.task.value, warnings)
    plan = plan_warm_start(meta.similarity_vector(), ctx.task, len(ctx.y), families, candidates, past_tasks, runs)
    return WarmStart(meta, plan, warnings)


def portfolio_knowledge(options: BuildOptions, task: Task, n_rows: int,
                        warnings: list[str]) -> tuple[list[Candidate], list[PastTask]]:
    """The portfolio's members (each projected onto this table's space) and the corpus tasks they were scored on.
    The portfolio is ``--portfolio FILE`` (damaged: the user's mistake, refused), else the one ``daedalus learn``
    wrote in the data directory, else the one shipped (damaged: a warning, and the build starts cold)."""
    path = options.portfolio or (str(learned_portfolio_path()) if learned_portfolio_path().is_file() else None)
    try:
        portfolio = Portfolio.load(path)
    except ValueError as exc:
        if options.portfolio:
            raise ConfigError(f"{exc}; or leave --portfolio out to use the one shipped") from None
        warnings.append(f"no portfolio: {exc}")
        return [], []
    members = portfolio.members
    candidates = [Candidate(m.family, m.config_for(task, n_rows) if _supports(m.family, task) else dict(m.config or {}),
                            f"portfolio slot {m.slot}") for m in members]
    past = []
    for t in portfolio.tasks:
        vector = _meta_vector(t.get("meta_features"))
        if vector is not None:
            past.append(PastTask(t["name"], t["task"], vector,
                                 [m.scores.get(t["name"], math.nan) for m in members]))
    return candidates, past


def _supports(family: str, task: Task) -> bool:
    return family in FAMILIES and task in FAMILIES[family].tasks


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


def _meta_vector(recorded: Any) -> np.ndarray | None:
    """Recorded meta-features (a run's ``{"values": ..., "seconds": ...}`` or a plain name -> value mapping) as the
    similarity vector; names it lacks count as unknown (a record of an older Daedalus), names it does not know are ignored.
    None when nothing usable is there (missing or damaged)."""
    values = recorded.get("values", recorded) if isinstance(recorded, Mapping) else None
    if not isinstance(values, Mapping) or not any(n in values for n in META_FEATURE_NAMES):
        return None
    try:
        return MetaFeatures.from_dict({"values": {n: values.get(n) for n in META_FEATURE_NAMES},
                                       "seconds": 0.0}).similarity_vector()
    except (ValueError, TypeError):
        return None
