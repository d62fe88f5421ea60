"""The one search loop (``orchestration/loop.py``) with two trials in flight: results that arrive out of order
are each recorded under their own trial, the designer is told each once, with its own result; an ordered loop
(``--trials N``: reproducible) tells them in the order of the proposals whatever the order they finish in; and a
designer with nothing to propose (a pause) is asked again until the budget ends the search.

Real worker processes (``LocalRunner(2)``); the evaluator's jobs sleep, so that the order they finish in is known."""

from __future__ import annotations

import time

from daedalus.data.schema import Task
from daedalus.designers.base import Designer, Proposal, Result
from daedalus.evaluation.metrics import get_metric
from daedalus.evaluation.runner import Job, LocalRunner
from daedalus.evaluation.worker import WorkerResult
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.loop import Done, Evaluator, Limits, SearchLoop, TrialRecord, trial_status
from daedalus.orchestration.reporter import Reporter
from tests.test_runner_contract import sleep_then


class Counting(Designer[float]):
    """Proposes 0.1, 0.2, ... (the candidate is the score it will get); ``pause_for`` asks answer None first."""

    name = "counting"

    def __init__(self, pause_for: int = 0) -> None:
        self.asked = 0
        self.pause_for = pause_for
        self.told: list[tuple[int, Result]] = []
        self.told_at_ask: list[list[int]] = []  # for each proposal, the trials told before it was asked

    def ask(self) -> Proposal[float] | None:
        if self.pause_for > 0:
            self.pause_for -= 1
            return None
        self.told_at_ask.append([n for n, _ in self.told])
        number = self.asked
        self.asked += 1
        return Proposal(number, "toy", round(0.1 * (number + 1), 3), "counting", self.name)

    def tell(self, proposal: Proposal[float], result: Result) -> None:
        self.told.append((proposal.number, result))


class Sleeping(Evaluator[float]):
    """Even trials take a second, odd ones a tenth: with two in flight, odd trials finish first."""

    def __init__(self) -> None:
        self.metric = get_metric("accuracy", Task.MULTICLASS)
        self.records: list[TrialRecord] = []
        self.proposals: dict[int, Proposal[float]] = {}
        self.finished_order: list[int] = []
        self.best: list[int] = []

    def start(self, proposal: Proposal[float], timeout: float, limits: Limits) -> Job:
        self.proposals[proposal.number] = proposal
        delay = 1.0 if proposal.number % 2 == 0 else 0.1
        return Job(proposal.number, sleep_then, (delay, proposal.candidate), timeout, limits.memory_mb)

    def finished(self, key: int, result: WorkerResult) -> list[Done[float]]:
        proposal = self.proposals.pop(key)
        self.finished_order.append(key)
        score: float | None = result.value if result.status == "ok" else None
        record = TrialRecord(key, proposal.family, trial_status(score), score, result.seconds, "",
                             designer=proposal.designer)
        return [Done(proposal, record, Result(result.status, score))]

    def recorded(self, done: Done[float], ranked: list[TrialRecord]) -> None:
        if ranked and ranked[0].number == done.record.number:
            self.best.append(done.record.number)


def test_results_out_of_order_are_each_recorded_under_their_trial() -> None:
    evaluator, designer = Sleeping(), Counting()
    loop = SearchLoop(evaluator, designer, BudgetClock(None), Reporter(), trials_to_run=6,
                      limits=Limits(memory_mb=4000, cap=60), runner=LocalRunner(2), ordered=False)
    records = loop.run()
    assert evaluator.finished_order != sorted(evaluator.finished_order)  # they did arrive out of order
    assert [r.number for r in records] == evaluator.finished_order  # recorded as they arrived
    assert {r.number: r.score for r in records} == {n: round(0.1 * (n + 1), 3) for n in range(6)}
    assert sorted(n for n, _ in designer.told) == list(range(6))  # each told once
    assert all(result.score == round(0.1 * (n + 1), 3) for n, result in designer.told)
    assert [r.number for r in loop.ranked_ok()] == [5, 4, 3, 2, 1, 0]
    # best/ follows the best so far as results arrive: 1 finishes first, then 0 (worse), 3 (better) ...
    assert evaluator.best[0] == evaluator.finished_order[0] and evaluator.best[-1] == 5


def test_an_ordered_loop_tells_results_in_the_order_of_the_proposals() -> None:
    """What makes ``--trials N --seed S --workers 2`` reproducible: proposal k is asked after exactly the trials
    0..k-4 were told (a window of 2 x 2: k-3..k-1 pending), though odd trials finish before the even one started
    with them."""
    evaluator, designer = Sleeping(), Counting()
    loop = SearchLoop(evaluator, designer, BudgetClock(None), Reporter(), trials_to_run=7,
                      limits=Limits(memory_mb=4000, cap=60), runner=LocalRunner(2))
    assert loop.in_order is not None and loop.in_order.window == 4  # the default of a run bounded by its trials
    records = loop.run()
    assert evaluator.finished_order != sorted(evaluator.finished_order)  # they arrived out of order ...
    assert [r.number for r in records] == list(range(7))  # ... and were recorded in order
    assert [n for n, _ in designer.told] == list(range(7))
    assert designer.told_at_ask == [[], [], [], [], [0], [0, 1], [0, 1, 2]]
    assert evaluator.best == [0, 1, 2, 3, 4, 5, 6]


def test_a_designer_with_nothing_to_propose_is_asked_again_until_the_time_is_up() -> None:
    evaluator, designer = Sleeping(), Counting(pause_for=10**9)  # paused for good
    t0 = time.monotonic()
    records = SearchLoop(evaluator, designer, BudgetClock(2.0), Reporter(), trials_to_run=None,
                         limits=Limits(memory_mb=4000, cap=60)).run()
    assert records == [] and designer.told == []
    assert 0.9 < time.monotonic() - t0 < 3.0  # waited, checking the budget, and ended with it


def test_a_pause_that_ends_lets_the_search_go_on() -> None:
    evaluator, designer = Sleeping(), Counting(pause_for=3)
    records = SearchLoop(evaluator, designer, BudgetClock(None), Reporter(), trials_to_run=2,
                         limits=Limits(memory_mb=4000, cap=60)).run()
    assert [r.number for r in records] == [0, 1] and all(r.status == "ok" for r in records)
