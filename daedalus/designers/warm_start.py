"""Warm start: which configurations a new table's search tries first, and why, from the tasks seen before.

Two sources of past tasks, each described by its meta-features (``data.metafeatures``):
- the **portfolio** mined offline (``designers/meta``): a few configurations chosen together over the shipped
  corpus, with each member's normalised score on every corpus task;
- the user's **knowledge base** (``store.knowledge``): every trial of the user's own finished runs.

The plan orders the portfolio's members greedily on the nearest corpus tasks (FLAML's zero-shot and auto-sklearn
1.0 also look at the nearest tasks): each next member the one that adds the most to those before it there, per unit
of fit time, since a short build runs only its first few. It adds the best configurations of the most similar past
runs, and the prior trials that shape TPE's first proposals (``designers/tpe_prior``).
A past run on the same table (its columns' fingerprint, ``data/fingerprint.py``: next month's rows, another
target) or nearer than every corpus task goes first: the nearest evidence is the best. Every proposal carries
the reason it was chosen, which the audit log keeps.

This module only plans; the designer queues the plan (``OptunaDesigner.enqueue_warm_start``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daedalus.data.fingerprint import TableFingerprint
from daedalus.data.schema import Task
from daedalus.designers.meta.portfolio import greedy_order
from daedalus.designers.tpe_prior import PRIOR_TASKS, PriorTrial, corpus_prior, run_prior
from daedalus.spaces.registry import config_problem

NEAREST_TASKS = 5  # corpus tasks whose scores predict a member's score on the new table
ORDER_TASKS = 10  # nearest corpus tasks (of the table's kind) the portfolio's order is fitted on
RUNS_CONSULTED = 3  # nearest past runs of the user whose best configurations are queued
CONFIGS_PER_RUN = 2  # best configurations taken from each of them


@dataclass(frozen=True)
class PastTask:
    """A task seen before: ``scores[i]`` is candidate i's normalised score on it (1 = the best known, NaN = not
    measured); ``vector`` its meta-features as ``MetaFeatures.similarity_vector()`` gives them (rows, columns and
    relative landmarkers: on 155 tasks, the nearest by these picked the best family with 25% fewer points lost
    than the nearest by every meta-feature, which did no better than always picking one family)."""

    name: str
    task: str  # Task's value: binary, multiclass, regression
    vector: np.ndarray
    scores: Sequence[float]


@dataclass(frozen=True)
class Candidate:
    family: str
    config: dict[str, Any]
    label: str  # "portfolio slot 3"
    cost: float = 1.0  # its fit time against a typical configuration's (designers/meta: Member.cost)


@dataclass(frozen=True)
class PastRun:
    """One of the user's finished runs, from the knowledge base: its best trials first."""

    run_id: str
    dataset: str
    task: str
    metric: str
    vector: np.ndarray
    best: Sequence[tuple[int, str, dict[str, Any], float]]  # (trial number, family, config, score), best first
    higher_is_better: bool = True  # the direction of ``metric``
    table: TableFingerprint | None = None  # its table's columns (None: recorded without, or damaged)


@dataclass(frozen=True)
class WarmProposal:
    family: str
    config: dict[str, Any]
    reason: str
    source: str  # "portfolio" or "knowledge"
    detail: dict[str, Any] = field(default_factory=dict)  # for the audit log: slot, nearest task, distance...


@dataclass(frozen=True)
class WarmStartPlan:
    proposals: list[WarmProposal]
    skipped: list[str]  # why candidates were left out (family not searched, outside this table's space)
    prior: list[PriorTrial] = field(default_factory=list)  # what shapes TPE's first proposals (tpe_prior.py)

    def to_record(self) -> dict[str, Any]:
        return {"proposals": [{"family": p.family, "source": p.source, "reason": p.reason, **p.detail}
                              for p in self.proposals], "skipped": self.skipped,
                "prior_trials": len(self.prior), "prior_sources": sorted({p.source for p in self.prior})}


def distances(target: np.ndarray, vectors: Sequence[np.ndarray], scale_from: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Euclidean distances from ``target`` to each vector, every meta-feature standardised over the target and
    the vectors (so a count of rows does not drown a share), or over the target and ``scale_from`` when given (a
    set that holds ``vectors``); an unknown value (NaN) counts as the mean, i.e. adds nothing. Distances to two
    sets are comparable only on one scale: the plan passes every task it compares with (standardised over one past
    run and the table alone, each differing feature is +-1, whatever the difference)."""
    if not vectors:
        return np.zeros(0)
    pool = np.vstack([np.asarray(target, dtype=float), *[np.asarray(v, dtype=float) for v in vectors]])
    reference = (np.vstack([pool[0], *[np.asarray(v, dtype=float) for v in scale_from]]) if len(scale_from)
                 else pool)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a meta-feature unknown everywhere: NaN, dropped below
        mean = np.nanmean(reference, axis=0)
        std = np.nanstd(reference, axis=0)
    useful = np.isfinite(std) & (std > 0)
    z = (pool[:, useful] - mean[useful]) / std[useful]
    z = np.where(np.isfinite(z), z, 0.0)
    return np.asarray(np.sqrt(((z[1:] - z[0]) ** 2).sum(axis=1)))


def _key(family: str, config: dict[str, Any]) -> str:
    return family + json.dumps(config, sort_keys=True, default=str)


def plan_warm_start(target: np.ndarray, task: Task, n_rows: int, families: Sequence[str],
                    candidates: Sequence[Candidate], past_tasks: Sequence[PastTask],
                    past_runs: Sequence[PastRun] = (), nearest: int = NEAREST_TASKS,
                    predicted: Sequence[float] | None = None, order_tasks: int = ORDER_TASKS,
                    table: TableFingerprint | None = None) -> WarmStartPlan:
    """The warm start of a table: its meta-feature ``target``, its task and size, the families the build searches,
    its columns' fingerprint (``table``: recognises a past run on the same table).
    Candidates outside ``families`` or this table's space are skipped (said in ``skipped``). ``predicted``: one
    score per candidate from the learned ranker (``designers.meta.ranker``), which then orders the portfolio
    instead of the nearest tasks' scores."""
    skipped: list[str] = []
    usable = []
    for index, cand in enumerate(candidates):
        problem = None if cand.family in families else f"{cand.family} is not searched in this build"
        problem = problem or config_problem(cand.family, cand.config, task, n_rows)
        if problem:
            skipped.append(f"{cand.label}: {problem}")
        else:
            usable.append(index)
    # One scale for every distance: the corpus tasks of this kind and the past runs of this kind (with no past
    # run, the corpus distances are those the benchmarks measured)
    corpus = same_kind(past_tasks, task)
    scale = [t.vector for t in corpus] + [r.vector for r in past_runs if r.task == task.value]
    portfolio = _order_portfolio(target, candidates, usable, corpus, nearest, predicted, order_tasks, scale)
    runs = _from_past_runs(target, task, n_rows, families, past_runs, skipped, scale, table)
    nearest_task = min((p.detail["distance"] for p in portfolio), default=math.inf)
    first = [p for p in runs if p.detail.get("same_table") or p.detail["distance"] < nearest_task]
    later = [p for p in runs if p not in first]
    seen: set[str] = set()
    proposals = []
    for proposal in [*first, *portfolio, *later]:
        key = _key(proposal.family, proposal.config)
        if key not in seen:
            seen.add(key)
            proposals.append(proposal)
    prior = _corpus_prior(target, candidates, usable, corpus, scale)
    prior += _runs_prior(target, task, families, past_runs, scale, table)
    return WarmStartPlan(proposals, skipped, prior)


def _corpus_prior(target: np.ndarray, candidates: Sequence[Candidate], usable: list[int],
                  past_tasks: Sequence[PastTask], scale: Sequence[np.ndarray] = ()) -> list[PriorTrial]:
    """The usable members ranked on each of the nearest corpus tasks."""
    if not usable or not past_tasks:
        return []
    dist = distances(target, [t.vector for t in past_tasks], scale)
    near = [past_tasks[int(j)] for j in np.argsort(dist, kind="stable")[:PRIOR_TASKS]]
    return corpus_prior([(t.name, [_score(t, i) for i in usable]) for t in near],
                        [(candidates[i].family, candidates[i].config) for i in usable])


def _runs_prior(target: np.ndarray, task: Task, families: Sequence[str], past_runs: Sequence[PastRun],
                scale: Sequence[np.ndarray] = (), table: TableFingerprint | None = None) -> list[PriorTrial]:
    """Every successful trial of the nearest past runs of this kind, ranked within its run (a configuration
    outside this table's space is dropped later, when the designer fits the prior)."""
    out = []
    for run, _ in nearest_runs(target, task, past_runs, scale, table):
        sign = 1.0 if run.higher_is_better else -1.0
        out += run_prior(run.run_id, [(f, c, sign * s) for _, f, c, s in run.best if f in families])
    return out


def nearest_runs(target: np.ndarray, task: Task, past_runs: Sequence[PastRun], scale: Sequence[np.ndarray] = (),
                 table: TableFingerprint | None = None) -> list[tuple[PastRun, float]]:
    """The ``RUNS_CONSULTED`` nearest past runs of this kind with a result, with their distances: runs on the
    same table (``table``) first, those with the same target before the others, then by distance."""
    runs = [r for r in past_runs if r.task == task.value and r.best]
    dist = distances(target, [r.vector for r in runs], scale)
    order = sorted(range(len(runs)), key=lambda j: (kinship(table, runs[j].table), float(dist[j]), j))
    return [(runs[j], float(dist[j])) for j in order[:RUNS_CONSULTED]]


def kinship(table: TableFingerprint | None, past: TableFingerprint | None) -> int:
    """0: the same table with the same target (the question asked again), 1: the same table with another
    target, 2: another table, or unknown."""
    if table is None or past is None or not table.same_table(past):
        return 2
    return 0 if table.target == past.target else 1


def same_kind(past_tasks: Sequence[PastTask], task: Task) -> list[PastTask]:
    """The past tasks a table is compared with: those of its kind (binary, multiclass, regression), all if none."""
    return [t for t in past_tasks if t.task == task.value] or list(past_tasks)


def nearest_estimates(target: np.ndarray, past_tasks: Sequence[PastTask], count: int, nearest: int = NEAREST_TASKS,
                      scale: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each of ``count`` candidates' score predicted from the ``nearest`` past tasks (their scores weighted by
    1 / distance; -inf where none of them measured it), with the distances to every past task and the nearest
    tasks' indices. The learned ranker takes this estimate as one of its features."""
    if not past_tasks:
        return np.full(count, -math.inf), np.zeros(0), np.zeros(0, dtype=int)
    dist = distances(target, [t.vector for t in past_tasks], scale)
    order = np.argsort(dist, kind="stable")[:nearest]
    weights = 1.0 / (dist[order] + 1e-3)
    out = np.full(count, -math.inf)
    for i in range(count):
        scores = np.array([_score(past_tasks[j], i) for j in order])
        known = np.isfinite(scores)
        if known.any():
            out[i] = float(np.average(scores[known], weights=weights[known]))
    return out, dist, order


def _order_portfolio(target: np.ndarray, candidates: Sequence[Candidate], usable: list[int],
                     past_tasks: Sequence[PastTask], nearest: int,
                     predicted: Sequence[float] | None = None, order_tasks: int = ORDER_TASKS,
                     scale: Sequence[np.ndarray] = ()) -> list[WarmProposal]:
    if not usable:
        return []
    if not past_tasks and predicted is None:  # nothing to compare with: the portfolio's own order (its greedy order)
        return [WarmProposal(candidates[i].family, dict(candidates[i].config),
                             f"{candidates[i].label} ({candidates[i].family}): the portfolio's order, no corpus "
                             "task to compare this table with", "portfolio",
                             {"slot": candidates[i].label, "distance": math.inf}) for i in usable]
    estimates, dist, order = nearest_estimates(target, past_tasks, len(candidates), nearest, scale)
    near = past_tasks[int(order[0])] if len(order) else None
    if predicted is not None:  # the learned ranker: its predicted best first, the others in slot order
        best = max(usable, key=lambda i: (float(predicted[i]) if math.isfinite(predicted[i]) else -math.inf, -i))
        ranked = [best, *[i for i in usable if i != best]]
        how = "the learned ranker's predicted best first, then the portfolio's slot order"
    else:
        # The cost-aware greedy order (the most gain per unit of fit time) on the nearest corpus tasks of this
        # kind. Simulated on the matrix, leave-one-group-out (bench/portfolio_anytime.py), the best member
        # finished within 5 median cell times scored 0.875 in this order against 0.441 for the cold start's
        # family defaults and 0.720 for the member predicted best first, then the slot order, which the builds
        # used before: a slow predicted best delays every member after it.
        fit_on = [past_tasks[int(j)] for j in np.argsort(dist, kind="stable")[:order_tasks]]
        scores = np.array([[_score(t, i) for i in usable] for t in fit_on])
        ranked = [usable[j] for j in greedy_order(scores, np.array([candidates[i].cost for i in usable]))]
        how = (f"the greedy order on the {len(fit_on)} nearest corpus tasks of this kind (the largest gain per "
               "unit of fit time first)")
    source = "by the learned ranker" if predicted is not None else f"from the {len(order)} nearest corpus tasks"
    out = []
    for position, i in enumerate(ranked):
        cand = candidates[i]
        guess = float(predicted[i]) if predicted is not None else float(estimates[i])
        reason = (f"{cand.label} ({cand.family}): position {position + 1} in {how}; relative fit time "
                  f"{cand.cost:.2f}, predicted score {guess:.2f} (1 = best known) {source}")
        detail: dict[str, Any] = {"slot": cand.label, "predicted": round(guess, 4), "distance": math.inf,
                                  "cost": round(cand.cost, 4)}
        if predicted is not None:
            detail["ranker"] = True
        if near is not None:
            reason += (f"; on the nearest, {near.name} (distance {float(dist[order[0]]):.2f}), it scored "
                       f"{_score(near, i):.2f}")
            detail.update(nearest_task=near.name, distance=round(float(dist[order[0]]), 4))
        out.append(WarmProposal(cand.family, dict(cand.config), reason, "portfolio", detail))
    return out


def _score(task: PastTask, index: int) -> float:
    value = task.scores[index] if index < len(task.scores) else math.nan
    return float(value) if value is not None else math.nan


def _from_past_runs(target: np.ndarray, task: Task, n_rows: int, families: Sequence[str],
                    past_runs: Sequence[PastRun], skipped: list[str], scale: Sequence[np.ndarray] = (),
                    table: TableFingerprint | None = None) -> list[WarmProposal]:
    out = []
    for run, distance in nearest_runs(target, task, past_runs, scale, table):
        kin = kinship(table, run.table)
        same = ""
        if kin < 2 and table is not None and run.table is not None:  # (kin < 2 implies both; mypy cannot see it)
            same = (f"the same table: {table.overlap(run.table):.0%} of the columns shared, "
                    f"{'the same' if kin == 0 else 'another'} target; ")
        taken = 0
        for number, family, config, score in run.best:
            if taken == CONFIGS_PER_RUN:
                break
            problem = None if family in families else f"{family} is not searched in this build"
            problem = problem or config_problem(family, config, task, n_rows)
            if problem:
                skipped.append(f"past run {run.run_id[:12]} trial {number}: {problem}")
                continue
            taken += 1
            d = round(distance, 4)
            detail: dict[str, Any] = {"run": run.run_id, "trial": number, "dataset": run.dataset, "distance": d}
            if same:
                detail.update(same_table=True, same_target=kin == 0)
            out.append(WarmProposal(
                family, dict(config), f"trial {number} ({family}) of past run {run.run_id[:12]} "
                f"on {run.dataset} ({same}distance {d:.2f}), {run.metric} {score:.4g}", "knowledge", detail))
    return out
