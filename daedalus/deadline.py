"""A deadline: the share of the run's one clock that a piece of work below orchestration is given.

``orchestration/budget.py`` holds the run's one clock (``BudgetClock``), and nothing else reads the wall clock
to decide anything: work in the lower layers (the explanations, hyperparameter importance, successive halving)
does not start timers of its own, it is handed a :class:`Deadline` (``BudgetClock.deadline()``) and asks it how
much time is left. A deadline is a fixed moment on the monotonic clock (or none: no limit); it can be split
(:meth:`Deadline.share`) and sent to a worker process (``CLOCK_MONOTONIC`` is the same in every process of
the machine).

This module imports nothing of Daedalus, so that every layer may use it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    end: float | None  # a time.monotonic() value; None: no limit

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (None: no limit)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    @classmethod
    def unlimited(cls) -> Deadline:
        return cls(None)

    @property
    def bounded(self) -> bool:
        return self.end is not None

    @property
    def remaining(self) -> float:
        """Seconds left (negative once passed; infinite without a limit)."""
        return math.inf if self.end is None else self.end - time.monotonic()

    @property
    def seconds(self) -> float | None:
        """Seconds left, at least 0, or None without a limit (for APIs that take an optional timeout)."""
        return None if self.end is None else max(0.0, self.remaining)

    @property
    def passed(self) -> bool:
        return self.remaining <= 0

    def share(self, fraction: float) -> Deadline:
        """The deadline ``fraction`` of the time left from now (a part of the work gets a part of the time);
        without a limit, none."""
        if self.end is None:
            return self
        return Deadline.after(max(0.0, fraction * self.remaining))

    def within(self, seconds: float) -> Deadline:
        """This deadline, or ``seconds`` from now if that comes first (a cap on one step)."""
        return Deadline.after(seconds if self.end is None else min(seconds, max(0.0, self.remaining)))
