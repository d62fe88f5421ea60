"""A table build's start from what earlier tasks taught (issue 12): the table's meta-features, then the warm start
plan (``designers.warm_start``) from the mined portfolio and the user's knowledge base.

Neither source may fail a build: a knowledge base that cannot be read, or a damaged shipped portfolio, is a warning
(the audit log keeps it) and the build goes on with what is left, down to today's cold start. A ``--portfolio``
file the user names is their input: a damaged one is refused in one line before the run directory exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.data.fingerprint import TableFingerprint
from daedalus.data.metafeatures import MetaFeatures, meta_features
from daedalus.data.schema import Task
from daedalus.designers.meta.portfolio import Portfolio
from daedalus.designers.meta.ranker import task_meta
from daedalus.designers.warm_start import (
    Candidate,
    PastRun,
    PastTask,
    WarmStartPlan,
    nearest_estimates,
    plan_warm_start,
    same_kind,
)
from daedalus.errors import ConfigError, DaedalusError
from daedalus.evaluation.trial import EvalContext
from daedalus.evaluation.worker import run_in_worker
from daedalus.orchestration import ranker_model
from daedalus.orchestration.options import BuildOptions
from daedalus.spaces.registry import FAMILIES
from daedalus.store.home import learned_portfolio_path
from daedalus.store.knowledge import KnowledgeBase, chosen_url

META_SHARE, META_CAP_SECONDS = 0.02, 3.0  # of the budget, for the meta-features (landmarkers stop at the limit)
RANKER_SHARE, RANKER_CAP_SECONDS = 0.05, 5.0  # of the budget, for the learned ranker (beyond it: nearest tasks)
RANKER_MEMORY_MB = 2000


@dataclass
class WarmStart:
    """What a build learnt before its search: the table's meta-features and the plan (None: ``--warm-start
    off``), with the warnings met on the way."""

    meta: MetaFeatures
    plan: WarmStartPlan | None
    warnings: list[str] = field(default_factory=list)
    portfolio: str = ""  # which portfolio the plan came from (shipped, learned, --portfolio) and its file's hash

    def audit_fields(self) -> dict[str, Any]:
        return {"meta_features": self.meta.to_dict(), "warm_start": self.plan.to_record() if self.plan else "off",
                "portfolio": self.portfolio, "warnings": self.warnings}


def describe(ctx: EvalContext, options: BuildOptions) -> MetaFeatures:
    """The table's meta-features, within 2% of the budget and at most 3 s."""
    budget = options.time_budget
    limit = META_CAP_SECONDS if budget is None else min(META_CAP_SECONDS, META_SHARE * budget)
    return meta_features(ctx.X, ctx.y, ctx.task, seed=options.seed, time_limit=limit)


def prepare_warm_start(ctx: EvalContext, options: BuildOptions, families: list[str],
                       table: TableFingerprint | None = None) -> WarmStart:
    """``table``: the fingerprint of the table's columns, which recognises a past run on the same table."""
    meta = describe(ctx, options)
    if options.warm_start == "off":
        return WarmStart(meta, None)
    warnings: list[str] = []
    candidates, past_tasks, provenance = portfolio_knowledge(options, ctx.task, len(ctx.y), warnings)
    runs = past_runs(options, ctx.task.value, warnings)
    estimates = nearest_estimates(meta.similarity_vector(), same_kind(past_tasks, ctx.task), len(candidates))[0]
    predicted = ranked_scores(meta, ctx.task, candidates, warnings, options.time_budget, [*map(float, estimates)])
    plan = plan_warm_start(meta.similarity_vector(), ctx.task, len(ctx.y), families, candidates, past_tasks, runs,
                           predicted=predicted, table=table)
    return WarmStart(meta, plan, warnings, provenance)


def ranked_scores(meta: MetaFeatures, task: Task, candidates: list[Candidate], warnings: list[str],
                  budget: float | None = None, nearest: list[float] | None = None,
                  directory: Path | None = None) -> list[float] | None:
    """The learned ranker's score for each candidate (``nearest``: their estimates from the nearest corpus tasks,
    one of its inputs), when the shipped ranker (``directory``: another) is present
    and its manifest says it beat the nearest-task order when it was measured (``bench/train_ranker.py``); else
    None, and the nearest tasks order the portfolio. A damaged, refused or slow ranker is a warning, never a
    failed build.

    The ranker is loaded and asked in a worker (forked from this process while the forkserver is still importing,
    as a cold trial is: skops is then imported without torch), for two reasons: the run process never imports
    skops (seconds on a busy machine), and a model file that crashes or hangs its loader ends a worker, not the
    build."""
    directory = directory if directory is not None else ranker_model.packaged_ranker_dir()
    if not candidates or not (directory / ranker_model.MANIFEST).exists():
        return None  # none shipped (a checkout before one was trained)
    fallback = "; the portfolio is ordered by the nearest corpus tasks"
    try:
        if not ranker_model.read_manifest(directory).get("use_in_builds"):
            return None  # shipped for the record, but it did not beat the nearest tasks when measured
    except ranker_model.RankerUnavailable as exc:
        warnings.append(f"the learned ranker was not used ({exc}){fallback}")
        return None
    limit = RANKER_CAP_SECONDS if budget is None else max(1.0, min(RANKER_CAP_SECONDS, RANKER_SHARE * budget))
    result = run_in_worker(ranker_model.predict_scores, (directory, meta, candidates, task, nearest), timeout=limit,
                           memory_mb=RANKER_MEMORY_MB, cold=True)
    scores = result.value if result.status == "ok" else None
    if scores is None or len(scores) != len(candidates):
        reason = result.reason.strip().splitlines()[0] if result.reason else f"{result.status}, no scores"
        warnings.append(f"the learned ranker was not used ({reason[:300]}){fallback}")
        return None
    return [float(x) for x in scores]


def portfolio_knowledge(options: BuildOptions, task: Task, n_rows: int,
                        warnings: list[str]) -> tuple[list[Candidate], list[PastTask], str]:
    """The portfolio's members (each projected onto this table's space), the corpus tasks they were scored on, and
    which portfolio it was (for the audit log: its origin and the SHA-256 of the file read).
    The portfolio is ``--portfolio FILE`` (damaged: the user's mistake, refused), else the one ``daedalus learn``
    wrote in the data directory, else the one shipped (damaged: a warning, and the build starts cold)."""
    learned = learned_portfolio_path()
    path = options.portfolio or (str(learned) if learned.is_file() else None)
    origin = "--portfolio" if options.portfolio else "learned (daedalus learn)" if path else "shipped"
    try:
        portfolio, digest = Portfolio.read(path)
    except ValueError as exc:
        if options.portfolio:
            raise ConfigError(f"{exc}; or leave --portfolio out to use the one shipped") from None
        warnings.append(f"no portfolio: {exc}")
        return [], [], f"none ({origin} unreadable)"
    provenance = f"{origin}: {path or 'daedalus/designers/meta/portfolio.json'}, sha256 {digest}"
    members = portfolio.members
    candidates = [Candidate(m.family, m.config_for(task, n_rows) if _supports(m.family, task) else dict(m.config or {}),
                            f"portfolio slot {m.slot}", m.cost) for m in members]
    past = []
    for t in portfolio.tasks:
        vector = _meta_vector(t.get("meta_features"))
        if vector is not None:
            past.append(PastTask(t["name"], t["task"], vector,
                                 [m.scores.get(t["name"], math.nan) for m in members]))
    return candidates, past, provenance


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
                                   [(n, f, c, sign * s) for s, n, f, c in best], bool(run.greater_is_better),
                                   _fingerprint(run.run_id, run.fingerprint, warnings)))
            warnings.extend(base.warnings)
            return out
    except DaedalusError as exc:
        warnings.append(f"the knowledge base was not read: {exc}")
        return []


def _fingerprint(run_id: str, recorded: dict[str, Any] | None, warnings: list[str]) -> TableFingerprint | None:
    """A past run's table fingerprint; None when it has none (an older record) or a damaged one (a warning: the
    run is still compared by its meta-features)."""
    if recorded is None:
        return None
    try:
        return TableFingerprint.from_dict(recorded)
    except ValueError as exc:
        warnings.append(f"past run {run_id[:12]}: its table fingerprint is damaged ({exc}); it is compared by its "
                        "meta-features only")
        return None


def _meta_vector(recorded: Any) -> np.ndarray | None:
    """Recorded meta-features (a run's ``{"values": ..., "seconds": ...}`` or a plain name -> value mapping) as the
    similarity vector; names it lacks count as unknown (a record of an older Daedalus), names it does not know are
    ignored. None when nothing usable is there (missing or damaged)."""
    meta = task_meta(recorded)
    return meta.similarity_vector() if meta is not None else None
