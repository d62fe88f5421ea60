"""What the build loop tells a display while it runs. The CLI plugs in a rich live view; the Python API and
tests use the silent default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    trials_done: int
    trials_failed: int
    best_score: float | None
    best_family: str | None
    metric: str
    time_left: float | None  # seconds; None when bounded by trials only
    running: str  # what is happening now, e.g. "trial 7: xgboost"


class Reporter:
    def update(self, progress: Progress) -> None:
        """Called whenever the state changes. The default shows nothing."""

    def message(self, text: str, **fields: Any) -> None:
        """A one-off line worth showing (a data check, a failure, the stage)."""

    def close(self) -> None:
        """The build is over."""
