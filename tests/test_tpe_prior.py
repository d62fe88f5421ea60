"""TPE shaped by similar past trials (designers/tpe_prior.py, issue 12.4): quantiles against hand-computed values, the
warm start plan's prior, and the designer's first TPE proposals drawn towards what won on similar tasks."""

import math
from collections import Counter

import numpy as np
import optuna
import pytest

from daedalus.data.schema import Task
from daedalus.designers.base import OK, Result
from daedalus.designers.optuna_designer import PRIOR_ATTR, OptunaDesigner, make_sampler
from daedalus.designers.tpe_prior import SHAPED_PROPOSALS, PriorTrial, quantiles, run_prior
from daedalus.designers.warm_start import Candidate, PastRun, PastTask, WarmStartPlan, plan_warm_start
from daedalus.spaces.registry import get_family

FAMILIES = ["linear", "lightgbm", "knn", "random_forest"]


def test_quantiles_rank_within_a_task():
    assert quantiles([3.0, 1.0, 2.0, math.nan]) == [0.0, 1.0, 0.5, 1.0]  # NaN: a failure, with the worst
    assert quantiles([1.0, 1.0, 0.0]) == [0.25, 0.25, 1.0]  # ties share their places
    assert quantiles([5.0]) == [0.0] and quantiles([]) == []


def test_a_long_run_keeps_its_best_and_worst_ends():
    trials = [("lightgbm", {"num_leaves": i}, float(i)) for i in range(100)]
    prior = run_prior("run-1234567890abcdef", trials, limit=8)
    assert [p.config["num_leaves"] for p in prior] == [99, 98, 97, 96, 95, 94, 1, 0]
    assert prior[0].quantile == 0.0 and prior[-1].quantile == 1.0 and prior[0].source == "past run run-12345678"


@pytest.mark.parametrize("record", [None, "lightgbm", [1, {}, 0.5, "x"], ["lightgbm", [], 0.5, "x"],
                                    ["lightgbm", {}, "best", "x"], ["lightgbm", {}, math.nan, "x"],
                                    ["lightgbm", {}, 1.5, "x"], ["lightgbm", {}, 0.5], ["lightgbm", {}, 0.5, 7]])
def test_a_damaged_prior_record_is_refused(record):
    assert PriorTrial.from_record(record) is None


def test_the_plan_ranks_members_on_the_nearest_corpus_tasks_and_past_runs():
    lgb = get_family("lightgbm").default_config(Task.BINARY, 1000)
    knn = get_family("knn").default_config(Task.BINARY, 1000)
    candidates = [Candidate("lightgbm", lgb, "portfolio slot 1"), Candidate("knn", knn, "portfolio slot 2")]
    tasks = [PastTask(f"near{i}", "binary", np.array([0.0, 0.1 * i]), [0.2, 1.0]) for i in range(4)]
    tasks.append(PastTask("far", "binary", np.array([9.0, 9.0]), [1.0, 0.0]))
    run = PastRun("run-a", "sales.csv", "binary", "log_loss", np.array([0.0, 0.0]),
                  [(3, "lightgbm", {"num_leaves": 7}, 0.30), (1, "knn", {"n_neighbors": 5}, 0.60)],
                  higher_is_better=False)
    plan = plan_warm_start(np.array([0.0, 0.0]), Task.BINARY, 1000, FAMILIES, candidates, tasks, [run])
    corpus = [p for p in plan.prior if p.source.startswith("corpus")]
    assert {p.source for p in corpus} == {"corpus task near0", "corpus task near1", "corpus task near2"}
    assert all((p.family, p.quantile) in {("knn", 0.0), ("lightgbm", 1.0)} for p in corpus)
    # the past run's log loss: lower is better, so its LightGBM trial ranks first
    past = {p.family: p.quantile for p in plan.prior if p.source.startswith("past run")}
    assert past == {"lightgbm": 0.0, "knn": 1.0}
    assert plan.to_record()["prior_trials"] == 8


def _prior_favouring_small_lightgbm() -> list[PriorTrial]:
    """On the similar tasks LightGBM with few leaves won everything and every other family lost."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(12):
        out.append(PriorTrial("lightgbm", {"num_leaves": int(rng.integers(4, 9)), "learning_rate": 0.05}, 0.0,
                              f"corpus task t{i % 3}"))
        for family in ("linear", "knn", "random_forest"):
            out.append(PriorTrial(family, {}, 1.0, f"corpus task t{i % 3}"))
    return out


def _designer(prior: list[PriorTrial] | None, seed: int = 0, study: optuna.Study | None = None) -> OptunaDesigner:
    study = study or optuna.create_study(direction="maximize", sampler=make_sampler(seed))
    designer = OptunaDesigner(study, FAMILIES, Task.BINARY, 1000)
    if prior is not None:
        designer.enqueue_warm_start(WarmStartPlan([], [], prior), defaults_first=False)
    return designer


def _run(designer: OptunaDesigner, n: int) -> list:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        proposal = designer.ask()
        designer.tell(proposal, Result(OK, float(rng.uniform(0.6, 0.7))))  # scores that favour no family
        out.append(proposal)
    return out


def test_the_first_tpe_proposals_follow_the_similar_tasks():
    shaped = _run(_designer(_prior_favouring_small_lightgbm()), SHAPED_PROPOSALS + 2)
    cold = _run(_designer(None), SHAPED_PROPOSALS)
    first = shaped[:SHAPED_PROPOSALS]
    assert all("trials of similar tasks (corpus task t0, corpus task t1, corpus task t2)" in p.reason
               and p.designer == "tpe" for p in first)
    lightgbm = [p for p in first if p.family == "lightgbm"]
    # Cold TPE starts at random over four families; the shaped one goes where the similar tasks won.
    assert len(lightgbm) >= 6 > Counter(p.family for p in cold)["lightgbm"]
    assert np.median([p.candidate["num_leaves"] for p in lightgbm]) <= 16  # the space reaches 256 and beyond
    # then the run's own trials alone drive TPE
    assert all("trials of similar tasks" not in p.reason for p in shaped[SHAPED_PROPOSALS:])


def test_shaped_proposals_are_reproducible_and_a_resume_goes_on_counting():
    first = [(p.family, p.candidate) for p in _run(_designer(_prior_favouring_small_lightgbm(), seed=3), 4)]
    again = [(p.family, p.candidate) for p in _run(_designer(_prior_favouring_small_lightgbm(), seed=3), 4)]
    assert first == again
    study = optuna.create_study(direction="maximize", sampler=make_sampler(0))
    _run(_designer(_prior_favouring_small_lightgbm(), study=study), 3)
    resumed = _run(_designer(None, study=study), SHAPED_PROPOSALS)  # the prior is read back from the study
    assert sum("trials of similar tasks" in p.reason for p in resumed) == SHAPED_PROPOSALS - 3


def test_a_hostile_or_foreign_prior_is_ignored():
    study = optuna.create_study(direction="maximize", sampler=make_sampler(0))
    designer = _designer(None, study=study)
    study.set_user_attr(PRIOR_ATTR, ["junk", ["lightgbm", {"num_leaves": 10**9}, 0.0, "corpus task huge"],
                                     ["lightgbm", {"no_such_option": 1}, 0.0, "corpus task odd"],
                                     ["tabpfn", {}, 0.0, "corpus task unknown family"],
                                     ["lightgbm", {"num_leaves": "__import__('os')"}, 0.0, "corpus task code"]])
    proposals = _run(designer, 6)  # nothing usable: the search goes on as a cold one
    assert all("similar tasks" not in p.reason for p in proposals)
