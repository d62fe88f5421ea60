"""The final stage: greedy ensemble selection over the kept trials, then the members' final form.

Which final form validates better?
- Under k-fold validation every member already has k fold models, and the out-of-fold score *is* the
  validation of their bag. A model refit on all rows has no held-out rows left to validate it, so the bag is
  kept: it is the form whose score was measured (AutoGluon's default does the same).
- Under a holdout, the "bag" is a single model trained on 80% of the rows. Refitting on all rows gives the same
  configuration 25% more data, so the members are refit when the clock allows; if the refit fails or would
  overrun the budget, the holdout models are kept instead.
The decision and its reason go to the audit log.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from daedalus.ensembles.caruana import greedy_selection
from daedalus.ensembles.model import Member, ModelSpec, write_model_dir
from daedalus.evaluation.trial import EvalContext, refit_full
from daedalus.evaluation.worker import run_in_worker
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.search import Search, TrialRecord
from daedalus.store.run import RunStore

SAFETY_SECONDS = 0.5


@dataclass(frozen=True)
class FinalModel:
    kind: str
    score: float
    members: tuple[Member, ...]
    reason: str


def finalize(search: Search, store: RunStore, ctx: EvalContext, clock: BudgetClock) -> FinalModel | None:
    candidates = [r for r in search.ranked_ok() if store.has_models(r.number)]
    oofs = [store.load_oof(r.number) for r in candidates]
    pairs = [(r, o) for r, o in zip(candidates, oofs, strict=True) if o is not None]
    if not pairs:
        store.audit.append("ensemble_skipped", reason="no successful trial with saved models")
        return None
    y_scored = ctx.y[ctx.plan.scored_index]
    selection = greedy_selection([o for _, o in pairs], y_scored, ctx.metric)
    chosen: list[tuple[TrialRecord, float]] = [(pairs[i][0], w) for i, w in selection.weights.items()]
    store.audit.append("ensemble_selected", metric=ctx.metric.name, score=selection.score,
                       members=[{"trial": r.number, "family": r.family, "weight": w} for r, w in chosen],
                       best_single=pairs[0][0].score, candidates=[r.number for r, _ in pairs])

    members, sources = _bagged_members(store, chosen)
    kind, reason = "bagged", ("k-fold validation: the out-of-fold score validates the bag of fold models; "
                              "a refit would have no rows left to validate it")
    if ctx.plan.kind == "holdout":
        refit = _try_refit(search, store, ctx, clock, chosen)
        if refit is not None:
            kind, members, sources, reason = "refit", refit[0], refit[1], "holdout: members refit on all rows"
        else:
            reason = "holdout: refit did not fit in the time left, kept the holdout-trained models"
    spec = ModelSpec(kind=kind, task=ctx.task, n_classes=ctx.n_classes, members=members,
                     validation_score=selection.score)
    write_model_dir(store.root / "model", spec, sources)
    shutil.rmtree(store.root / "refit.tmp", ignore_errors=True)
    store.audit.append("refit" if kind == "refit" else "final_model", kind=kind, reason=reason,
                       members=[m.trial for m in members])
    return FinalModel(kind, selection.score, members, reason)


def _bagged_members(store: RunStore, chosen: list[tuple[TrialRecord, float]]
                    ) -> tuple[tuple[Member, ...], dict[str, Path]]:
    """Each chosen trial's saved fold models, renamed so that trials do not clash in one directory."""
    members: list[Member] = []
    sources: dict[str, Path] = {}
    for record, weight in chosen:
        files = sorted(store.trial_dir(record.number).glob("fold_*.skops"))
        names = tuple(f"t{record.number}_{f.name}" for f in files)
        sources.update(zip(names, files, strict=True))
        members.append(Member(record.number, record.family, weight, names))
    return tuple(members), sources


def _try_refit(search: Search, store: RunStore, ctx: EvalContext, clock: BudgetClock,
               chosen: list[tuple[TrialRecord, float]]
               ) -> tuple[tuple[Member, ...], dict[str, Path]] | None:
    timeout = clock.remaining - SAFETY_SECONDS
    estimate = 1.25 * sum(r.fit_seconds for r, _ in chosen)
    if timeout <= 0 or estimate > timeout:
        return None
    out_dir = store.root / "refit.tmp"
    configs = [(r.family, _config_of(search, r.number), search.options.seed) for r, _ in chosen]
    result = run_in_worker(refit_full, (ctx, configs, search.options.n_threads, out_dir),
                           timeout=timeout, memory_mb=search.memory_mb)
    if result.status != "ok":
        store.audit.append("refit_failed", status=result.status, reason=result.reason[:500])
        return None
    members = tuple(Member(r.number, r.family, w, (f"member_{i}.skops",)) for i, (r, w) in enumerate(chosen))
    return members, {f"member_{i}.skops": out_dir / f"member_{i}.skops" for i in range(len(chosen))}


def _config_of(search: Search, number: int) -> dict[str, object]:
    trial = search.designer.study.trials[number]
    family = trial.params["family"]
    return {k[len(family) + 1:]: v for k, v in trial.params.items() if k.startswith(family + ".")}
