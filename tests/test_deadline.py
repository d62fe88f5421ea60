"""Deadlines: the share of the run's one clock that work below orchestration is handed (daedalus/deadline.py)."""

from __future__ import annotations

import math
import pickle

from daedalus.deadline import Deadline
from daedalus.orchestration.budget import BudgetClock


def test_a_deadline_counts_down_and_splits() -> None:
    deadline = Deadline.after(10.0)
    assert deadline.bounded and 9.0 < deadline.remaining <= 10.0 and not deadline.passed
    half = deadline.share(0.5)
    assert 4.0 < half.remaining <= 5.0 and half.end is not None and deadline.end is not None
    assert half.end < deadline.end
    assert deadline.within(1.0).remaining <= 1.0
    assert abs((deadline.within(100.0).end or 0.0) - deadline.end) < 0.01  # the earlier of the two
    assert Deadline.after(-1.0).passed and Deadline.after(-1.0).seconds == 0.0
    assert Deadline.after(-1.0).share(0.5).passed
    assert pickle.loads(pickle.dumps(deadline)) == deadline  # sent to worker processes as it is


def test_no_limit_stays_no_limit() -> None:
    free = Deadline.unlimited()
    assert not free.bounded and free.remaining == math.inf and free.seconds is None and not free.passed
    assert free.share(0.1) == free and free.within(2.0).bounded


def test_the_budget_clock_hands_out_deadlines() -> None:
    assert BudgetClock(None).deadline() == Deadline.unlimited()
    clock = BudgetClock(20.0)
    assert 19.0 < clock.deadline().remaining <= 20.0
    assert 4.0 < clock.deadline(0.25).remaining <= 5.0
    assert BudgetClock(1.0, started=0.0).deadline().passed  # a clock long run out gives a passed deadline
