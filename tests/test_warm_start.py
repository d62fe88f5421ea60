"""The warm start plan (designers/warm_start.py): the portfolio ordered by the nearest corpus tasks, the user's
past runs added, candidates outside the table's space left out, and a reason on every proposal."""

import math

import numpy as np
import pytest

from daedalus.data.schema import Task
from daedalus.designers.warm_start import (
    Candidate,
    PastRun,
    PastTask,
    WarmProposal,
    WarmStartPlan,
    distances,
    plan_warm_start,
)
from daedalus.spaces.registry import config_problem

LINEAR = ("linear", {"C": 1.0})
FAMILIES = ["linear", "random_forest", "lightgbm", "knn"]


def _candidates() -> list[Candidate]:
    from daedalus.spaces.registry import get_family

    lgb = get_family("lightgbm").default_config(Task.BINARY, 1000)
    rf = get_family("random_forest").default_config(Task.BINARY, 1000)
    knn = get_family("knn").default_config(Task.BINARY, 1000)
    return [Candidate("lightgbm", lgb, "portfolio slot 1"), Candidate("random_forest", rf, "portfolio slot 2"),
            Candidate("knn", knn, "portfolio slot 3")]


def _tasks() -> list[PastTask]:
    # Two clusters of corpus tasks: near the origin k-NN wins, far away LightGBM wins.
    near = [PastTask(f"near{i}", "binary", np.array([0.0, 0.1 * i]), [0.2, 0.5, 1.0]) for i in range(3)]
    far = [PastTask(f"far{i}", "binary", np.array([10.0, 10.0 + 0.1 * i]), [1.0, 0.5, 0.1]) for i in range(3)]
    return near + far


def test_distances_standardise_each_meta_feature():
    # The second feature's scale is a thousand times the first's; standardised, both count alike.
    d = distances(np.array([0.0, 0.0]), [np.array([1.0, 0.0]), np.array([0.0, 1000.0])])
    assert d[0] == pytest.approx(d[1])
    # An unknown value adds nothing rather than poisoning the distance.
    d = distances(np.array([0.0, math.nan]), [np.array([1.0, 5.0]), np.array([2.0, math.nan])])
    assert np.all(np.isfinite(d)) and d[0] < d[1]


@pytest.mark.parametrize(("target", "first"), [(np.array([0.0, 0.05]), "knn"), (np.array([10.0, 10.1]), "lightgbm")])
def test_portfolio_is_ordered_by_the_nearest_tasks(target, first):
    plan = plan_warm_start(target, Task.BINARY, 1000, FAMILIES, _candidates(), _tasks(), nearest=3, order_tasks=3)
    assert [p.family for p in plan.proposals][0] == first
    assert len(plan.proposals) == 3 and all(p.source == "portfolio" for p in plan.proposals)
    top = plan.proposals[0]
    assert "greedy order on the 3 nearest corpus tasks" in top.reason and top.detail["nearest_task"].startswith(
        "near" if first == "knn" else "far")


def test_a_slow_member_waits_behind_a_fast_one_that_does_nearly_as_well():
    fast, slow = _candidates()[0], _candidates()[1]
    cands = [Candidate(slow.family, slow.config, "portfolio slot 1", cost=5.0),
             Candidate(fast.family, fast.config, "portfolio slot 2", cost=1.0)]
    tasks = [PastTask(f"t{i}", "binary", np.array([0.0, 0.1 * i]), [1.0, 0.9]) for i in range(3)]
    plan = plan_warm_start(np.array([0.0, 0.0]), Task.BINARY, 1000, FAMILIES, cands, tasks)
    assert [p.detail["slot"] for p in plan.proposals] == ["portfolio slot 2", "portfolio slot 1"]
    # ... but not behind one that is far worse: 0.2 gained per unit of time against 2.0 / 5 = 0.4
    tasks = [PastTask(f"t{i}", "binary", np.array([0.0, 0.1 * i]), [1.0, -0.8]) for i in range(3)]
    plan = plan_warm_start(np.array([0.0, 0.0]), Task.BINARY, 1000, FAMILIES, cands, tasks)
    assert [p.detail["slot"] for p in plan.proposals] == ["portfolio slot 1", "portfolio slot 2"]


def test_tasks_of_another_kind_are_not_neighbours():
    tasks = [PastTask("reg", "regression", np.array([0.0, 0.0]), [0.0, 0.0, 1.0]),
             PastTask("bin", "binary", np.array([50.0, 50.0]), [1.0, 0.0, 0.0])]
    plan = plan_warm_start(np.array([0.0, 0.0]), Task.BINARY, 1000, FAMILIES, _candidates(), tasks, nearest=1)
    assert plan.proposals[0].family == "lightgbm"  # the binary task decides, however far it is


def test_candidates_outside_the_build_or_the_space_are_skipped():
    cands = [*_candidates(), Candidate("lightgbm", {"num_leaves": 10**9}, "portfolio slot 4"),
             Candidate("lightgbm", {"no_such_parameter": 1}, "portfolio slot 5"),
             Candidate("catboost", {}, "portfolio slot 6")]
    tasks = [PastTask(t.name, t.task, t.vector, [*t.scores, 1.0, 1.0, 1.0]) for t in _tasks()]
    plan = plan_warm_start(np.array([10.0, 10.0]), Task.BINARY, 1000, FAMILIES, cands, tasks)
    assert len(plan.proposals) == 3
    assert any("slot 4" in s and "outside" in s for s in plan.skipped)
    assert any("slot 5" in s and "no hyperparameter" in s for s in plan.skipped)
    assert any("slot 6" in s and "not searched" in s for s in plan.skipped)


def test_past_runs_nearer_than_every_corpus_task_go_first():
    same_table = PastRun("run-a", "sales.csv", "binary", "roc_auc", np.array([5.0, 5.0]),
                         [(7, "random_forest", {"n_estimators": 300}, 0.91), (3, "linear", {"C": 0.5}, 0.88),
                          (1, "knn", {"n_neighbors": 5}, 0.80)])
    other = PastRun("run-b", "other.csv", "binary", "roc_auc", np.array([40.0, 40.0]),
                    [(2, "lightgbm", {"num_leaves": 31}, 0.7)])
    plan = plan_warm_start(np.array([5.0, 5.0]), Task.BINARY, 1000, FAMILIES, _candidates(), _tasks(),
                           [same_table, other])
    sources = [(p.source, p.family) for p in plan.proposals]
    assert sources[:2] == [("knowledge", "random_forest"), ("knowledge", "linear")]  # two per run, best first
    assert ("knowledge", "lightgbm") in sources[-1:]  # the far run comes after the portfolio
    assert "past run run-a" in plan.proposals[0].reason and "sales.csv" in plan.proposals[0].reason
    record = plan.to_record()
    assert record["proposals"][0]["run"] == "run-a" and record["proposals"][0]["trial"] == 7


def test_no_knowledge_at_all_gives_an_empty_plan():
    plan = plan_warm_start(np.array([1.0]), Task.REGRESSION, 100, FAMILIES, [], [], [])
    assert plan.proposals == [] and plan.skipped == []


def test_config_problem_refuses_hostile_values():
    assert config_problem("linear", {"C": 1.0}, Task.BINARY, 100) is None
    assert "outside" in str(config_problem("linear", {"C": "1; import os"}, Task.BINARY, 100))
    assert "unknown" in str(config_problem("__import__", {}, Task.BINARY, 100))
    assert config_problem("lightgbm", {"num_leaves": True}, Task.BINARY, 100) is not None  # a bool is not an int


def test_one_past_run_of_the_same_table_is_measured_on_the_corpus_scale():
    """Next month's rows of a table: every meta-feature a little different. Standardised over that one run and the
    table alone, each differing feature became +-1 and the run lay farther than corpus tasks of other tables (the
    self-improvement bench's knowledge arm never queued its past run first); on the corpus's scale it is nearest."""
    rng = np.random.default_rng(0)
    corpus = [PastTask(f"c{i}", "binary", rng.normal(0.0, 1.0, 12), [0.5, 0.5, 0.5]) for i in range(40)]
    table = rng.normal(0.0, 1.0, 12)
    next_month = PastRun("run-a", "sales.csv", "binary", "roc_auc", table + rng.normal(0.0, 0.05, 12),
                         [(4, "random_forest", {"n_estimators": 300}, 0.91)])
    plan = plan_warm_start(table, Task.BINARY, 1000, FAMILIES, _candidates(), corpus, [next_month])
    assert plan.proposals[0].source == "knowledge" and plan.proposals[0].detail["distance"] < 0.5


def test_the_cold_start_queue_leads_a_warm_start():
    """Every family's default first, in the cold start's order (a member equal to a default is not queued
    twice), then the plan, then TPE; without ``defaults_first`` (--zero-shot) the plan alone."""
    import optuna

    from daedalus.designers.base import OK, Result
    from daedalus.designers.optuna_designer import OptunaDesigner, make_sampler
    from daedalus.spaces.registry import get_family

    lgb_default = get_family("lightgbm").default_config(Task.BINARY, 1000)
    plan = WarmStartPlan([WarmProposal("lightgbm", lgb_default, "slot 1", "portfolio"),
                          WarmProposal("random_forest", {"n_estimators": 50}, "slot 2", "portfolio")], [])
    proposed = {}
    for defaults_first in (True, False):
        designer = OptunaDesigner(optuna.create_study(direction="maximize", sampler=make_sampler(0)), FAMILIES,
                                  Task.BINARY, 1000)
        designer.enqueue_warm_start(plan, defaults_first=defaults_first)
        proposed[defaults_first] = []
        for _ in range(6):
            proposal = designer.ask()
            designer.tell(proposal, Result(OK, 0.5))
            proposed[defaults_first].append((proposal.designer, proposal.family))
    assert proposed[True] == [("default", "linear"), ("default", "random_forest"), ("default", "lightgbm"),
                              ("default", "knn"), ("portfolio", "random_forest"), ("tpe", proposed[True][5][1])]
    assert [by for by, _ in proposed[False]] == ["portfolio", "portfolio", "tpe", "tpe", "tpe", "tpe"]


def test_dropping_the_warm_queue_leaves_steering_and_hands_over_to_tpe():
    """What ``Search.cut_warm_queue`` does once the queue has used its share of the time: the plan's queued
    proposals are closed as 'skipped' (never a result: neither the run's records nor the knowledge base hold
    them); a steered one and the family defaults stay queued, and TPE proposes after them."""
    import optuna

    from daedalus.designers.base import OK, Result
    from daedalus.designers.optuna_designer import SKIPPED, OptunaDesigner, make_sampler
    from daedalus.orchestration.knowledge_record import table_trials
    from daedalus.orchestration.search import load_records

    plan = WarmStartPlan([WarmProposal("random_forest", {"n_estimators": 50}, "slot 1", "portfolio"),
                          WarmProposal("knn", {"n_neighbors": 7}, "slot 2", "portfolio")], [])
    study = optuna.create_study(direction="maximize", sampler=make_sampler(0))
    designer = OptunaDesigner(study, FAMILIES, Task.BINARY, 1000)
    designer.enqueue_warm_start(plan)
    first = designer.ask()
    designer.tell(first, Result(OK, 0.5))
    designer.enqueue("lightgbm", {"num_leaves": 7}, "a reviewer asked for it")
    dropped = designer.drop_warm_queue("not run: out of its share")
    assert len(dropped) == 2  # the plan's 2 members; the defaults still queued stay (never cut)
    skipped = [t for t in study.trials if t.number in dropped]
    assert {t.user_attrs["status"] for t in skipped} == {SKIPPED}
    assert all(t.user_attrs["reason"] == "not run: out of its share" for t in skipped)
    assert {t.system_attrs["fixed_params"]["family"] for t in skipped} == {"random_forest", "knn"}
    after = [designer.ask() for _ in range(5)]
    assert [(p.designer, p.family) for p in after[:4]] == [("steering", "lightgbm"), ("default", "random_forest"),
                                                          ("default", "lightgbm"), ("default", "knn")]
    assert after[4].designer == "tpe"
    for p in after:
        designer.tell(p, Result(OK, 0.6))
    ran = sorted([first.number, *(p.number for p in after)])
    assert [r.number for r in load_records(study)] == ran
    assert [t.number for t in table_trials(study)] == ran
    assert designer.drop_warm_queue("again") == []  # nothing left to drop
