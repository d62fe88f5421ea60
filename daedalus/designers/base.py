"""The designer contract: a designer only proposes. It never trains or scores anything.

Lifecycle (as Optuna's samplers): ``ask`` returns a :class:`Proposal`; the caller evaluates it and reports back
with ``tell``. A designer is deterministic for a given seed and history, and says *why* it proposed each
candidate; the reason goes to the audit log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Proposal:
    number: int  # the trial number in the run store
    family: str
    config: dict[str, Any]
    reason: str
    designer: str


class Designer(ABC):
    @abstractmethod
    def ask(self) -> Proposal:
        """The next candidate to evaluate."""

    @abstractmethod
    def tell(self, proposal: Proposal, value: float | None, *, status: str, info: dict[str, Any]) -> None:
        """Report a result: ``value`` is the metric (None unless status is 'ok')."""
