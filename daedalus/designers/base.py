"""The designer contract: a designer only proposes. It never trains or scores anything.

One contract for every search, generic over what is proposed (``C``): the tabular designer proposes
configurations (a family's hyperparameters, ``dict[str, Any]``), the architecture designers propose genotypes
(``spaces.nas.base.Genotype``). Wrappers (steering, fairness mitigations, a portfolio) are designers too: they
take another designer and pass its proposals on, changed or held back.

Call order (as Optuna's ``BaseSampler`` documents its own):

1. ``set_state(state)``: optional, once, on a fresh designer built with the same arguments, before the first
   ``ask``. A resumed run continues the designer from what ``get_state`` returned; it does not rebuild the
   designer by re-reading trial files.
2. ``ask()`` any number of times. It returns a :class:`Proposal`, or None when there is nothing to propose *now*
   (a steering pause): the caller waits a moment, checks its budget, and asks again.
3. ``tell(proposal, result)`` exactly once for every proposal ``ask`` returned, in any order: several proposals
   may be in flight, and their results arrive as they finish. A designer may also be told about proposals it did
   not make (a portfolio's, a warm start's); it learns from them all the same.
4. ``get_state()`` at any point between calls: a JSON-serialisable mapping, which the caller stores with the run.

A designer is deterministic for a given seed, state and history of tells, and says *why* it proposed each
candidate; the reason goes to the audit log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

C = TypeVar("C")  # what is proposed: a configuration or a genotype
C_contra = TypeVar("C_contra", contravariant=True)

OK = "ok"
PRUNED = "pruned"  # never evaluated (e.g. a family excluded by steering); learned from as the worst result


@dataclass(frozen=True)
class Proposal(Generic[C]):
    number: int  # the trial number in the run store (unique within a run)
    family: str  # the model family of a configuration; the space's name for a genotype ("cnn", "nb201")
    candidate: C  # the configuration or genotype to evaluate
    reason: str  # why it was proposed, in words, for the audit log
    designer: str  # who proposed it: a designer's name, or "portfolio", "steering", "mitigation"


@dataclass(frozen=True)
class Result:
    """What evaluating a proposal gave."""

    status: str  # OK, or why not: error, timeout, memory, crash, cancelled, interrupted, PRUNED
    score: float | None = None  # set when status is OK: the objective, in the direction the designer was built for
    info: Mapping[str, Any] = field(default_factory=dict)  # kept with the trial (fit seconds, fairness gap, ...)

    @property
    def ok(self) -> bool:
        return self.status == OK and self.score is not None


class Designer(ABC, Generic[C]):
    """Subclasses set ``name`` and implement ``ask`` and ``tell``; a designer with state beyond its tells (an
    random generator's position, a queue) overrides ``get_state`` and ``set_state`` too."""

    name: str

    @abstractmethod
    def ask(self) -> Proposal[C] | None:
        """The next candidate to evaluate, or None when there is nothing to propose now."""

    @abstractmethod
    def tell(self, proposal: Proposal[C], result: Result) -> None:
        """The result of evaluating ``proposal`` (once per proposal, in any order)."""

    def get_state(self) -> dict[str, Any]:
        """What ``set_state`` needs to continue this designer in a new process (JSON-serialisable)."""
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue from ``get_state``'s mapping (called once, on a fresh designer, before the first ask)."""


@runtime_checkable
class Enqueues(Protocol[C_contra]):
    """A designer that can be handed a candidate to propose next (as Optuna's ``enqueue_trial``): a steering
    command's configuration, a space's hand-designed starting points. Wrappers test for it with ``isinstance``,
    never for a concrete designer class."""

    def enqueue(self, family: str, candidate: C_contra, reason: str, by: str = "steering") -> None:
        """Propose ``candidate`` (of ``family``) at the next ask, ahead of the designer's own proposals. Its proposal
        carries ``reason`` (which the designer may prefix) and ``by`` as its ``designer``; a candidate outside the
        designer's space or constraint raises ``ValueError``."""
