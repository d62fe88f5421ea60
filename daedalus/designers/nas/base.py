"""Architecture designers: the designer contract (:class:`~daedalus.designers.base.Designer`) over genotypes.

An :class:`ArchDesigner` proposes canonical genotypes of its :class:`~daedalus.spaces.nas.ArchSpace` and learns
from scores to *maximise*. The contract's call order is ``designers/base.py``'s; here it is implemented once:

- ``ask()`` returns a :class:`Proposal` numbered by the designer (0, 1, 2...), its ``family`` the space's name.
  A genotype handed over by :meth:`ArchDesigner.enqueue` (a space's hand-designed starting point) comes first,
  as Optuna's ``enqueue_trial``; otherwise the subclass's :meth:`ArchDesigner.propose` gives it.
- ``tell(proposal, result)`` passes the genotype and its score (None when the evaluation failed or was pruned) to
  the subclass's :meth:`ArchDesigner.learn`. Several proposals may be in flight; results may come in any order,
  and proposals the designer did not make (a warm start, another designer's, :meth:`ArchDesigner.proposal_for`)
  are learned from all the same.
- ``get_state()`` holds the next number, the random generator's position, the enqueued genotypes and those in
  flight, plus what the subclass learned (:meth:`ArchDesigner.learned_state`), all JSON-serialisable; after
  ``set_state(get_state())`` on a fresh designer built with the same arguments, the next asks are the same.

Rules every designer follows (``tests/designer_contract.py`` checks them on every implementation):
- deterministic for a given seed and history of tells;
- never proposes a genotype the constraint rejects;
- ``ask`` should propose genotypes not yet told where the space allows; the caller counts the *distinct*
  genotypes it evaluates against its budget, so a repeat costs nothing but a step.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from daedalus.designers.base import Designer, Proposal, Result
from daedalus.spaces.nas.base import ArchSpace, Genotype

# A hard constraint: True when the genotype is allowed (max parameters, max milliseconds per batch...).
Constraint = Callable[[Genotype], bool]


class ArchDesigner(Designer[Genotype]):
    """Subclasses set ``name`` and implement ``propose`` and ``learn``; one with learned state overrides
    ``learned_state`` and ``restore_learned``."""

    name: str

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None) -> None:
        self.space = space
        self.seed = seed
        self.constraint = constraint
        self.rng = np.random.default_rng(seed)
        self.next_number = 0
        self.enqueued: deque[tuple[Genotype, str, str]] = deque()  # genotype, reason, by whom
        self.in_flight: dict[int, Proposal[Genotype]] = {}  # asked, not yet told

    # ----- what subclasses implement -----
    @abstractmethod
    def propose(self) -> Genotype:
        """The designer's next genotype to evaluate (canonical, and allowed by the constraint)."""

    @abstractmethod
    def learn(self, genotype: Genotype, score: float | None) -> None:
        """The result of evaluating ``genotype``: a score to maximise, or None if it failed."""

    def learned_state(self) -> dict[str, Any]:
        """What the subclass learned from its asks and tells (JSON-serialisable); the base keeps the rest."""
        return {}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        """Take back ``learned_state``'s mapping (on a fresh designer built with the same arguments)."""

    # ----- the contract -----
    def ask(self) -> Proposal[Genotype]:
        if self.enqueued:
            genotype, reason, by = self.enqueued.popleft()
        else:
            genotype, reason, by = self.propose(), f"proposed by the {self.name} designer", self.name
        proposal = self.proposal_for(genotype, reason, by)
        self.in_flight[proposal.number] = proposal
        return proposal

    def tell(self, proposal: Proposal[Genotype], result: Result) -> None:
        if self.in_flight.get(proposal.number) == proposal:  # else a proposal it did not make: learned from too
            del self.in_flight[proposal.number]
        self.learn(proposal.candidate, result.score if result.ok else None)

    def enqueue(self, family: str, candidate: Genotype, reason: str, by: str = "portfolio") -> None:
        """Propose ``candidate`` at a coming ask, after those enqueued before it and ahead of the designer's own
        (the :class:`~daedalus.designers.base.Enqueues` capability)."""
        if family != self.space.name:
            raise ValueError(f"{self.name} designs architectures of space {self.space.name!r}, not {family!r}")
        genotype = self.space.validate(tuple(candidate))
        if not self.allowed(genotype):
            raise ValueError(f"architecture {genotype} is rejected by the constraint; enqueue an allowed one")
        self.enqueued.append((genotype, reason, by))

    def proposal_for(self, genotype: Genotype, reason: str, by: str) -> Proposal[Genotype]:
        """A proposal of ``genotype`` with the designer's next number, made by ``by`` (e.g. a warm start's result
        to tell it); only ``ask`` counts it as in flight."""
        proposal = Proposal(self.next_number, self.space.name, tuple(genotype), reason, by)
        self.next_number += 1
        return proposal

    def get_state(self) -> dict[str, Any]:
        return {"designer": self.name, "space": self.space.name, "next_number": self.next_number,
                "rng": self.rng.bit_generator.state,
                "enqueued": [[list(g), reason, by] for g, reason, by in self.enqueued],
                "in_flight": [[p.number, list(p.candidate), p.reason, p.designer] for p in self.in_flight.values()],
                "learned": self.learned_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if (state["designer"], state["space"]) != (self.name, self.space.name):
            raise ValueError(f"a state of designer {state['designer']!r} on space {state['space']!r} cannot "
                             f"continue designer {self.name!r} on space {self.space.name!r}")
        self.next_number = int(state["next_number"])
        self.enqueued = deque((tuple(g), reason, by) for g, reason, by in state["enqueued"])
        self.in_flight = {int(n): Proposal(int(n), self.space.name, tuple(g), reason, by)
                          for n, g, reason, by in state["in_flight"]}
        self.restore_learned(state["learned"])
        self.rng.bit_generator.state = state["rng"]  # last: restoring may have drawn from it

    # ----- helpers for subclasses -----
    def allowed(self, genotype: Genotype) -> bool:
        return self.constraint is None or bool(self.constraint(genotype))

    def sample_allowed(self, max_tries: int = 10_000) -> Genotype:
        """A random genotype the constraint allows; raises if none is found (the constraint is too tight)."""
        for _ in range(max_tries):
            genotype = self.space.sample(self.rng)
            if self.allowed(genotype):
                return genotype
        raise ValueError(f"no architecture of space {self.space.name!r} satisfies the constraint "
                         f"after {max_tries} samples; loosen it")

    def sample_unseen(self, unseen: Callable[[Genotype], bool], max_draws: int = 1000) -> Genotype:
        """A random allowed genotype for which ``unseen`` holds, or a repeat after ``max_draws`` tries (a nearly
        exhausted or tightly constrained space)."""
        genotype = self.sample_allowed()
        for _ in range(max_draws):
            if unseen(genotype):
                break
            genotype = self.sample_allowed()
        return genotype


# ----- JSON forms of learned state (genotypes as lists; a failure's -inf as None) -----------------------------
def genotypes_out(genotypes: Iterable[Genotype]) -> list[list[int]]:
    """A set of genotypes, sorted so the state reads the same every time."""
    return [list(g) for g in sorted(genotypes)]


def genotypes_in(rows: Iterable[Iterable[int]]) -> list[Genotype]:
    return [tuple(int(v) for v in row) for row in rows]


def score_out(score: float | None) -> float | None:
    """A score as JSON has it: a non-finite one (a failure's -inf) as None."""
    return score if score is not None and math.isfinite(score) else None


def scores_out(scores: Mapping[Genotype, float | None]) -> list[list[Any]]:
    """Scores by genotype, in their order (see ``score_out``)."""
    return [[list(g), score_out(s)] for g, s in scores.items()]


def scores_in(rows: Iterable[list[Any]], failed: float | None = -math.inf) -> dict[Genotype, float | None]:
    """``scores_out``'s rows back, a None read as ``failed``."""
    return {tuple(int(v) for v in g): failed if s is None else float(s) for g, s in rows}
