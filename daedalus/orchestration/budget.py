"""The run's one clock. Nothing else reads the wall clock to decide anything: work below orchestration is handed
a share of it as a ``Deadline`` (``BudgetClock.deadline``), never a timer of its own.

``--time S`` bounds the whole build: search, ensembling and refit. The search stops early enough to leave a
*reserve* for the final stage; what the final stage cannot finish in time is dropped in favour of a model that
is already saved.
"""

from __future__ import annotations

import time

from daedalus.deadline import Deadline


class BudgetClock:
    def __init__(self, seconds: float | None, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = time.monotonic() if started is None else started

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - self.elapsed

    def add(self, seconds: float) -> None:
        if self.seconds is not None:
            self.seconds += seconds

    def deadline(self, fraction: float = 1.0) -> Deadline:
        """The deadline of work given ``fraction`` of the time left now (no limit when the clock has none). It
        is a fixed moment: time added to the clock later (``steer add-time``) does not move it."""
        return Deadline.unlimited() if self.seconds is None else Deadline.after(fraction * max(0.0, self.remaining))


# Without a time budget (--trials alone) the final stage still has one, relative to what the search cost: at least
# FINAL_STAGE_MIN_SECONDS, else FINAL_STAGE_SHARE of the search's wall time. The ensemble's final form (the
# bag-against-refit measurement and the refit) may use ENSEMBLE_PART of it; the explanations get what is left.
# (Unbounded, the measurement took 156 s and the explanations 180 s, and a 5,000-column table was still being
# explained after 400 s, after a search of a few trials.)
FINAL_STAGE_SHARE = 0.5
FINAL_STAGE_MIN_SECONDS = 30.0
ENSEMBLE_PART = 0.6


def final_stage_clocks(clock: BudgetClock, search_seconds: float) -> tuple[BudgetClock, BudgetClock]:
    """The clocks of the final stage: (the ensemble's final form, the whole stage). With a time budget both are
    the run's own clock: the search left the stage its reserve."""
    if clock.seconds is not None:
        return clock, clock
    seconds = max(FINAL_STAGE_MIN_SECONDS, FINAL_STAGE_SHARE * search_seconds)
    stage = BudgetClock(seconds)
    return BudgetClock(ENSEMBLE_PART * seconds, stage.started), stage
