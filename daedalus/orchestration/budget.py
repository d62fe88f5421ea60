"""The run's one clock. Nothing else reads the wall clock to decide anything.

``--time S`` bounds the whole build: search, ensembling and refit. The search stops early enough to leave a
*reserve* for the final stage; what the final stage cannot finish in time is dropped in favour of a model that
is already saved.
"""

from __future__ import annotations

import time


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
