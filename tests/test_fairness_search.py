"""The fairness constraint as one object handed to the search (``orchestration.fairness_search``), and the
mitigation policy as a designer wrapped around the tabular designer (``orchestration.fair_designer``).

Real components throughout: the build's own intake and context, a run store, an Optuna study, the search; the
trials' out-of-fold predictions are made by hand, so their accuracy and fairness are known exactly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from daedalus.data.schema import Task
from daedalus.designers.base import Proposal, Result
from daedalus.designers.optuna_designer import OptunaDesigner, make_sampler
from daedalus.designers.optuna_queue import ENQUEUED_BY_ATTR, STEERED_ATTR
from daedalus.evaluation.trial import EvalContext
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.build import eval_context, intake
from daedalus.orchestration.fair_designer import MitigatingDesigner
from daedalus.orchestration.fairness_search import SearchFairness, search_fairness
from daedalus.orchestration.leaderboard import make_leaderboard
from daedalus.orchestration.options import BuildOptions
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.search import Search, TrialRecord
from daedalus.store.run import RunStore

LIMIT = 0.2
N = 2000


def _options(**extra: object) -> BuildOptions:
    base: dict[str, object] = dict(target="label", sensitive=("sex",), metric="accuracy", n_trials=3,
                                   time_budget=None, fairness=f"demographic_parity_difference<={LIMIT}",
                                   objectives=("metric", "fairness"))
    return BuildOptions(**{**base, **extra}).checked()  # type: ignore[arg-type]


def _frame() -> pd.DataFrame:
    """Two groups of 1000 rows, each exactly half positive: the label says nothing about the group."""
    rng = np.random.default_rng(0)
    sex = np.array(["F", "M"] * (N // 2))
    label = np.empty(N, dtype=object)
    for group in ("F", "M"):
        rows = np.flatnonzero(sex == group)
        label[rows] = rng.permutation(np.array(["no", "yes"] * (len(rows) // 2)))
    return pd.DataFrame({"x": rng.normal(size=N), "sex": sex, "label": label})


def _oof(decisions: np.ndarray) -> np.ndarray:
    p1 = np.where(decisions == 1, 0.9, 0.1)
    return np.column_stack([1 - p1, p1])


def _trials(ctx: EvalContext) -> dict[int, np.ndarray]:
    """Out-of-fold predictions of three trials on the scored rows:
    0: accuracy 0.9, but 40% of the women's positives refused (selection rates 0.3 vs 0.5): infeasible;
    1: accuracy 0.7, 30% of decisions flipped in both groups alike: feasible;
    2: accuracy 0.85, 15% flipped alike: feasible."""
    scored = ctx.plan.scored_index
    y, sex = ctx.y[scored], ctx.sensitive["sex"].to_numpy()[scored]  # type: ignore[index]
    rng = np.random.default_rng(1)

    def flipped(share: float) -> np.ndarray:
        d = y.copy()
        for group in ("F", "M"):  # the same share of each group's positives and negatives
            for cls in (0, 1):
                rows = np.flatnonzero((sex == group) & (y == cls))
                d[rng.choice(rows, int(share * len(rows)), replace=False)] = 1 - cls
        return d

    unfair = y.copy()
    women = np.flatnonzero((sex == "F") & (y == 1))
    unfair[women[: int(0.4 * len(women))]] = 0
    return {0: _oof(unfair), 1: _oof(flipped(0.3)), 2: _oof(flipped(0.15))}


@pytest.fixture(scope="module")
def ctx() -> EvalContext:
    options = _options()
    got = intake(_frame(), options)
    return eval_context(got.frame, got.schema, options)


def _search(tmp_path: Path, ctx: EvalContext, fairness: SearchFairness | None) -> Search:
    options = _options()
    store = RunStore.create(tmp_path / "run", {"options": options.to_dict(), "status": "running"})
    study = optuna.create_study(direction=ctx.metric.optuna_direction, sampler=make_sampler(0))
    designer = OptunaDesigner(study, ["linear", "fair_threshold"], Task.BINARY, N, "demographic_parity")
    return Search(store, ctx, designer, BudgetClock(None), options, Reporter(), trials_to_run=3,
                  fairness=fairness)


def _record(search: Search, ctx: EvalContext, number: int, oof: np.ndarray) -> TrialRecord:
    """What the loop does with a successful trial's predictions: score them, hand them to the fairness object."""
    score = ctx.metric(ctx.y[ctx.plan.scored_index], oof)
    if search.fairness is not None:
        search.fairness.evaluate(number, oof)
    record = TrialRecord(number, "linear", "ok", score, 0.1, "")
    search.records.append(record)
    return record


def test_the_search_ranks_and_ensembles_by_the_constraint_object_it_is_handed(tmp_path, ctx):
    oofs = _trials(ctx)
    fairness = search_fairness(_options(), ctx)
    assert fairness is not None
    constrained = _search(tmp_path / "fair", ctx, fairness)
    free = _search(tmp_path / "free", ctx, None)
    for number, oof in oofs.items():
        _record(constrained, ctx, number, oof)
        _record(free, ctx, number, oof)
    assert [fairness.feasible(n) for n in oofs] == [False, True, True]
    assert fairness.violation(0) > 0 and fairness.violation(1) == fairness.violation(2) == 0.0

    # Without the object: the metric alone (0.9, 0.85, 0.7). With it: feasible first, by the metric.
    assert [r.number for r in free.ranked_ok()] == [0, 2, 1]
    assert [r.number for r in constrained.ranked_ok()] == [2, 1, 0]

    # The ensemble: only feasible trials are candidates, and the greedy selection draws only on them.
    y = ctx.y[ctx.plan.scored_index]
    pairs = [(r, oofs[r.number]) for r in constrained.ranked_ok()]
    selection, candidates, note = fairness.choose_ensemble(pairs, y)
    assert [r.number for r, _ in candidates] == [2, 1] and note == ""
    assert {candidates[i][0].number for i in selection.weights} <= {1, 2}

    # No feasible trial at all: the least infeasible one is kept, and the audit note says so.
    selection, candidates, note = fairness.choose_ensemble(pairs[2:], y)
    assert [r.number for r, _ in candidates] == [0] and "no trial meets" in note and "(trial 0)" in note

    # At the end: the leaderboard with fairness columns, ranked as the search ranks, as a new list.
    board = make_leaderboard(constrained.records, ctx.metric, None, {})
    before = [dict(row) for row in board]
    final = fairness.finish(constrained.store, board, ("no", "yes"))
    assert board == before  # not changed in place
    assert [(r["trial"], r["feasible"], r["rank"]) for r in final] == [(2, True, 1), (1, True, 2), (0, False, 3)]
    assert all(r["fairness_gap"] is not None for r in final)
    pareto = constrained.store.read("pareto")
    assert {r["trial"] for r in pareto["front"]} == {0, 2}  # 1 is beaten by 2 on both; 0 is the most accurate


def test_a_resumed_search_restores_each_trials_fairness_from_its_stored_attributes(ctx):
    oofs = _trials(ctx)
    first = search_fairness(_options(), ctx)
    assert first is not None
    infos = {n: first.evaluate(n, oof) for n, oof in oofs.items()}
    resumed = search_fairness(_options(), ctx)
    assert resumed is not None
    resumed.restore({n: {**info, "score": 0.5, "status": "ok"} for n, info in infos.items()})
    assert [resumed.rank_key(n, 0.5) for n in oofs] == [first.rank_key(n, 0.5) for n in oofs]


def test_audit_only_measures_no_trial_and_ranks_by_the_metric(ctx):
    fairness = search_fairness(_options(fairness=None, objectives=("metric",)), ctx)
    assert fairness is not None  # --sensitive alone: fairness.json at the end, nothing during the search
    assert fairness.evaluate(0, _trials(ctx)[0]) == {}
    assert fairness.feasible(0) and fairness.rank_key(0, 0.9) < fairness.rank_key(1, 0.7)


# -- the mitigation wrapper ----------------------------------------------------------------------------------
def _mitigating(families: tuple[str, ...] = ("linear", "fair_threshold")) -> tuple[MitigatingDesigner, optuna.Study]:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(0))
    inner = OptunaDesigner(study, families, Task.BINARY, 500, "demographic_parity")
    inner.enqueue_portfolio()
    return MitigatingDesigner(inner, families, "demographic_parity", utility=lambda s: s), study


def _waiting_mitigations(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if t.user_attrs.get(ENQUEUED_BY_ATTR) == "mitigation"]


def _around(trial: optuna.trial.FrozenTrial) -> int:
    """The trial a queued mitigation wraps, read from its reason."""
    return int(re.search(r"around trial (\d+)", trial.user_attrs[STEERED_ATTR]).group(1))


def _steer_linear(designer: MitigatingDesigner) -> Proposal[dict[str, Any]]:
    """The next proposal, made a linear model (a steered configuration is taken first)."""
    designer.enqueue("linear", {}, "a base model for the test")
    proposal = designer.ask()
    assert proposal is not None and proposal.family == "linear"
    return proposal


def test_a_trial_that_breaks_the_constraint_queues_one_threshold_optimizer_around_it():
    designer, study = _mitigating()
    # (Not the portfolio's linear default: ThresholdOptimizer around it is the portfolio's own next trial, so
    # its mitigation would be skipped as already queued.)
    first = _steer_linear(designer)
    designer.tell(first, Result("ok", 0.8, {"constraint": [0.1], "feasible": False}))
    queued = _waiting_mitigations(study)
    assert len(queued) == 1 and _around(queued[0]) == first.number
    assert designer.get_state()["best_unfair"] == 0.8

    # It runs next, ahead of the portfolio's own ThresholdOptimizer default: that trial's configuration,
    # wrapped in ThresholdOptimizer enforcing the run's constraint.
    mitigation = designer.ask()
    assert mitigation is not None and mitigation.family == "fair_threshold"
    assert mitigation.designer == "mitigation" and f"around trial {first.number}" in mitigation.reason
    config = mitigation.candidate
    assert config["base"] == "linear" and config["constraint"] == "demographic_parity"
    assert {k: v for k, v in config.items() if k.startswith("linear.")} == \
        {f"linear.{k}": v for k, v in first.candidate.items()}
    designer.tell(mitigation, Result("ok", 0.78, {"constraint": [-0.01], "feasible": True}))
    assert _waiting_mitigations(study) == []

    # A worse trial that breaks it too: its mitigation would be no better, so nothing more is queued.
    worse = _steer_linear(designer)
    designer.tell(worse, Result("ok", 0.7, {"constraint": [0.05], "feasible": False}))
    assert _waiting_mitigations(study) == []
    # A better one does get its own.
    better = _steer_linear(designer)
    designer.tell(better, Result("ok", 0.85, {"constraint": [0.05], "feasible": False}))
    assert [_around(t) for t in _waiting_mitigations(study)] == [better.number]

    # The state goes through get_state/set_state: a fresh wrapper continues from it.
    again, _ = _mitigating()
    again.set_state(designer.get_state())
    assert again.best_unfair == 0.85


def test_a_feasible_trial_or_a_run_without_threshold_optimizer_queues_none():
    designer, study = _mitigating()
    proposal = _steer_linear(designer)
    designer.tell(proposal, Result("ok", 0.9, {"constraint": [-0.02], "feasible": True}))
    assert _waiting_mitigations(study) == [] and designer.best_unfair is None

    designer, study = _mitigating(("linear",))  # --exclude fair_threshold
    proposal = _steer_linear(designer)
    designer.tell(proposal, Result("ok", 0.9, {"constraint": [0.3], "feasible": False}))
    assert _waiting_mitigations(study) == []
