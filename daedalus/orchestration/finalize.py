"""The final stage: greedy ensemble selection over the kept trials, then the members' final form.

Which final form validates better, the members' bag of fold models or a refit on all rows?
- Under k-fold validation, the comparison is measured on the first fold, on equal terms: its validation rows
  are predicted (a) by one model per member fit on all of that fold's training rows (the out-of-fold
  predictions we already have: a "refit" at that data size) and (b) by a bag of models fit on inner folds of
  the same training rows. If the refit scores better, the members are refit on all rows; otherwise the fold
  models are kept as the bag, whose out-of-fold score validates it directly. The comparison costs about one
  more trial per member, so it runs only when the clock leaves room for it; without room the bag is kept.
- Under a holdout, the "bag" is a single model trained on 80% of the rows. Refitting on all rows gives the same
  configuration 25% more data, so the members are refit when the clock allows; if the refit fails or would
  overrun the budget, the holdout models are kept instead.
The decision, the measured scores and the reason go to the audit log.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.designers.optuna_designer import split_params
from daedalus.ensembles.caruana import greedy_selection
from daedalus.ensembles.model import REFIT_KINDS, Member, ModelSpec, write_model_dir
from daedalus.evaluation.trial import EvalContext, bag_prediction_on_first_fold, refit_full
from daedalus.evaluation.worker import run_in_worker
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.rows import fit_memory_mb, prepared_row_mb
from daedalus.orchestration.search import Search, TrialRecord, digests_in, refit_seconds
from daedalus.store.faults import crash_point
from daedalus.store.integrity import record_digests
from daedalus.store.layout import FINAL_MODEL, member_file
from daedalus.store.run import RunStore

SAFETY_SECONDS = 0.5


@dataclass(frozen=True)
class FinalModel:
    kind: str
    score: float
    members: tuple[Member, ...]
    reason: str


def finalize(search: Search, store: RunStore, ctx: EvalContext, clock: BudgetClock,
             full: EvalContext | None = None) -> FinalModel | None:
    """``ctx``: the rows the search ran on; ``full``: all rows, when the search ran on a subsample of them
    (orchestration/rows.py): the members are then refit on all rows, as the clock and the memory allow."""
    candidates = [r for r in search.ranked_ok() if store.has_models(r.number)]
    oofs = [store.load_oof(r.number) for r in candidates]
    pairs = [(r, o) for r, o in zip(candidates, oofs, strict=True) if o is not None]
    if not pairs:
        store.audit.append("ensemble_skipped", reason="no successful trial with saved models")
        return None
    y_scored = ctx.y[ctx.plan.scored_index]
    if search.fairness is not None:  # under a constraint, only feasible trials, and a feasible blend
        selection, pairs, fairness_note = search.fairness.choose_ensemble(pairs, y_scored)
    else:
        selection, fairness_note = greedy_selection([o for _, o in pairs], y_scored, ctx.metric), ""
    if fairness_note:
        store.audit.append("ensemble_fairness", reason=fairness_note)
    chosen: list[tuple[TrialRecord, float]] = [(pairs[i][0], w) for i, w in selection.weights.items()]
    store.audit.append("ensemble_selected", metric=ctx.metric.name, score=selection.score,
                       members=[{"trial": r.number, "family": r.family, "weight": w} for r, w in chosen],
                       best_single=pairs[0][0].score, candidates=[r.number for r, _ in pairs])
    crash_point("ensemble_selected")

    members, sources = _bagged_members(store, chosen)
    kind = "bagged"
    refit_on = full if full is not None else ctx
    if full is not None:
        want_refit, reason = True, (f"searched on a subsample of {len(ctx.y)} rows: members refit on all "
                                    f"{len(full.y)} rows")
    elif ctx.plan.kind == "holdout":
        want_refit, reason = True, "holdout: members refit on all rows"
    else:
        want_refit, reason = _refit_validates_better(search, store, ctx, clock, chosen, pairs)
    if want_refit:
        too_big = _refit_memory_problem(refit_on, search.parallelism.final_memory_mb)
        # After a search on a subsample, the members whose refits fit in the time left are refit (the heaviest
        # first) and the others keep their models: a model too dear to refit on all rows must not cost the rest
        # theirs. Otherwise all members are refit, or none.
        picked = [] if too_big else _refit_picks(ctx, refit_on, chosen, clock.remaining - SAFETY_SECONDS,
                                                 partial=full is not None)
        refit = _try_refit(search, store, refit_on, clock, [chosen[i] for i in picked]) if picked else None
        if refit is not None:
            members, sources = _with_refits(members, sources, picked, refit)
            kind = "refit" if len(picked) == len(chosen) else "partly-refit"
            if kind == "partly-refit":
                kept = [chosen[i][0].number for i in range(len(chosen)) if i not in picked]
                reason += (f"; trial(s) {', '.join(map(str, kept))} keep their models: their refits did not fit "
                           "in the time left")
            crash_point("refit_done")
        else:
            reason += f"; but {too_big or 'the refit did not fit in the time left'}, so the fold models are kept"
    spec = ModelSpec(kind=kind, task=ctx.task, n_classes=ctx.n_classes, members=members,
                     validation_score=selection.score)
    write_model_dir(store, store.root / FINAL_MODEL, spec, sources)
    crash_point("model_written")
    shutil.rmtree(store.refit_dir, ignore_errors=True)
    store.audit.append("refit" if kind in REFIT_KINDS else "final_model", kind=kind, reason=reason,
                       members=[m.trial for m in members])
    return FinalModel(kind, selection.score, members, reason)


def _bagged_members(store: RunStore, chosen: list[tuple[TrialRecord, float]]
                    ) -> tuple[tuple[Member, ...], dict[str, Path]]:
    """Each chosen trial's saved fold models, renamed so that trials do not clash in one directory."""
    members: list[Member] = []
    sources: dict[str, Path] = {}
    for record, weight in chosen:
        files = store.fold_models(record.number)
        names = tuple(f"t{record.number}_{f.name}" for f in files)
        sources.update(zip(names, files, strict=True))
        members.append(Member(record.number, record.family, weight, names))
    return tuple(members), sources


def _refit_validates_better(search: Search, store: RunStore, ctx: EvalContext, clock: BudgetClock,
                            chosen: list[tuple[TrialRecord, float]],
                            pairs: list[tuple[TrialRecord, np.ndarray]]) -> tuple[bool, str]:
    """Measure bag against refit on the first fold (see the module docstring); True when refit wins."""
    cost = sum(r.fit_seconds for r, _ in chosen)  # k fits per member, as the comparison needs
    if clock.remaining - SAFETY_SECONDS < 1.2 * cost + _refit_estimate(ctx, ctx, chosen):
        return False, ("k-fold: kept the bag of fold models, which the out-of-fold score validates; no time "
                       "was left to measure a refit against it")
    configs = [(r.family, _config_of(search, r.number), search.options.seed, w) for r, w in chosen]
    result = run_in_worker(bag_prediction_on_first_fold, (ctx, configs, search.parallelism.final_threads),
                           timeout=clock.remaining - SAFETY_SECONDS - _refit_estimate(ctx, ctx, chosen),
                           memory_mb=search.parallelism.final_memory_mb)
    if result.status != "ok":
        return False, f"k-fold: kept the bag of fold models; measuring a refit failed ({result.status})"
    oof = {r.number: o for r, o in pairs}
    val_rows = ctx.plan.folds[0][1]
    at = np.searchsorted(ctx.plan.scored_index, val_rows)
    refit_pred = sum(w * oof[r.number][at] for r, w in chosen)
    y_val = ctx.y[val_rows]
    bag_score, refit_score = ctx.metric(y_val, result.value), ctx.metric(y_val, np.asarray(refit_pred))
    store.audit.append("bag_vs_refit", metric=ctx.metric.name, bag=bag_score, refit=refit_score,
                       rows=len(val_rows))
    verdict = f"on the first fold's {len(val_rows)} rows, {ctx.metric.name} bag {bag_score:.5f} vs refit " \
              f"{refit_score:.5f}"
    if ctx.metric.utility(refit_score) > ctx.metric.utility(bag_score):
        return True, f"k-fold: refit on all rows, which validated better ({verdict})"
    return False, f"k-fold: kept the bag of fold models, which validated better ({verdict})"


def _refit_estimate(ctx: EvalContext, refit_on: EvalContext, chosen: list[tuple[TrialRecord, float]]) -> float:
    """Seconds to refit the members on ``refit_on``'s rows, from their fit times on ``ctx``'s."""
    return refit_seconds([r.fit_seconds for r, _ in chosen], ctx.plan, len(refit_on.y))


def _refit_memory_problem(refit_on: EvalContext, memory_mb: float) -> str:
    """Why the refit would not fit in memory ('' when it would): one member at a time, on all of its rows."""
    need = fit_memory_mb(prepared_row_mb(refit_on.X), len(refit_on.y))
    if need <= memory_mb:
        return ""
    return (f"a refit on {len(refit_on.y)} rows would need about {need:.0f} MB, more than the final stage's "
            f"{memory_mb:.0f} MB")


def _refit_picks(ctx: EvalContext, refit_on: EvalContext, chosen: list[tuple[TrialRecord, float]], seconds: float,
                 partial: bool) -> list[int]:
    """Positions in ``chosen`` to refit within ``seconds``: all or none, or (``partial``) the heaviest members
    whose estimated refits fit together."""
    if not partial:
        return list(range(len(chosen))) if seconds > 0 and _refit_estimate(ctx, refit_on, chosen) <= seconds else []
    picked: list[int] = []
    total = 0.0
    for i in sorted(range(len(chosen)), key=lambda i: -chosen[i][1]):
        cost = _refit_estimate(ctx, refit_on, [chosen[i]])
        if total + cost <= seconds:
            picked.append(i)
            total += cost
    return sorted(picked)


def _try_refit(search: Search, store: RunStore, refit_on: EvalContext, clock: BudgetClock,
               chosen: list[tuple[TrialRecord, float]]) -> list[Path] | None:
    """Fit ``chosen`` on ``refit_on``'s rows in a worker; the files written (``member_file(i)`` for the i-th)."""
    timeout = clock.remaining - SAFETY_SECONDS
    if timeout <= 0:
        return None
    out_dir = store.refit_dir
    configs = [(r.family, _config_of(search, r.number), search.options.seed) for r, _ in chosen]
    result = run_in_worker(refit_full, (refit_on, configs, search.parallelism.final_threads, out_dir),
                           timeout=timeout, memory_mb=search.parallelism.final_memory_mb)
    if result.status != "ok":
        store.audit.append("refit_failed", status=result.status, reason=result.reason[:500])
        return None
    record_digests(store.audit, digests_in(store, out_dir, result.value), stage="refit")  # hashed by the worker
    return [out_dir / member_file(i) for i in range(len(chosen))]


def _with_refits(members: tuple[Member, ...], sources: dict[str, Path], picked: list[int], refit: list[Path]
                 ) -> tuple[tuple[Member, ...], dict[str, Path]]:
    """The final members: the ``picked`` ones with their refit model, the others with their saved models."""
    out: list[Member] = []
    kept_sources: dict[str, Path] = {}
    for i, member in enumerate(members):
        if i in picked:
            path = refit[picked.index(i)]
            out.append(Member(member.trial, member.family, member.weight, (path.name,)))
            kept_sources[path.name] = path
        else:
            out.append(member)
            kept_sources.update({name: sources[name] for name in member.files})
    return tuple(out), kept_sources


def _config_of(search: Search, number: int) -> dict[str, Any]:
    return split_params(search.study.trials[number].params)[1]
