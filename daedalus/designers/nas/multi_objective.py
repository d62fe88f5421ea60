"""Accuracy against cost (parameters, milliseconds per batch...): the Pareto front, and a ParEGO-style designer.

``pareto_front`` keeps the points no other point beats on both objectives. ``ParetoDesigner`` turns any
single-objective designer into a multi-objective one, after ParEGO (Knowles, 2006): each of several inner
designers maximises its own scalarisation ``accuracy - weight * log(cost)``, both terms normalised to [0, 1]
over the results seen so far, for one weight of a fixed spread. Asks go round-robin between the inner
designers, and every result is told to all of them, each under its own weight, so that each one learns from
every evaluation. Weight 0 is the plain accuracy search; larger weights pull towards cheaper networks, and the
spread covers the front from the most accurate end towards the cheap end.

Two simplifications are worth knowing. A weighted sum finds only the points on the convex hull of the front
(the front's corners are what one wants in practice). And a result is normalised with the ranges known when it
is told: an inner designer cannot be told again, so early results keep slightly different units; the ranges
settle within the first few random samples, which span the space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from daedalus.designers.base import OK, Proposal, Result
from daedalus.designers.nas.base import ArchDesigner, Constraint, score_out
from daedalus.designers.nas.registry import make_designer
from daedalus.designers.pareto import pareto_front
from daedalus.spaces.nas.base import ArchSpace, Genotype

# Weights on the normalised log cost, spread on a log scale; pure cost is left out: the cheapest network
# needs no search and is rarely wanted.
DEFAULT_WEIGHTS = (0.0, 0.1, 0.3, 1.0)


class _Range:
    """The running minimum and maximum of a quantity, to map it to [0, 1]."""

    def __init__(self) -> None:
        self.low, self.high = math.inf, -math.inf

    def scale(self, value: float) -> float:
        self.low, self.high = min(self.low, value), max(self.high, value)
        return (value - self.low) / (self.high - self.low) if self.high > self.low else 0.0

    def state(self) -> list[float | None]:
        return [score_out(self.low), score_out(self.high)]  # None: nothing seen yet (infinite)

    def restore(self, state: list[float | None]) -> None:
        low, high = state
        self.low = math.inf if low is None else float(low)
        self.high = -math.inf if high is None else float(high)


class ParetoDesigner(ArchDesigner):
    """Several inner designers (``make_designer(inner, ...)``), one per weight.

    The cost of a result is its ``Result.info["cost"]`` or, when that is left out, ``cost(genotype)`` given here
    (parameters can be counted without training, so a benchmark loop that knows only scores works).
    """

    name = "pareto"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None,
                 inner: str = "evolution", weights: Sequence[float] = DEFAULT_WEIGHTS,
                 cost: Callable[[Genotype], float] | None = None, **inner_options: Any) -> None:
        super().__init__(space, seed=seed, constraint=constraint)
        if not weights or any(not w >= 0 for w in weights):
            raise ValueError(f"weights must be a non-empty sequence of numbers >= 0, got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.cost = cost
        # Each inner designer gets its own stream, derived from (seed, position), so they do not propose alike.
        seeds = [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(len(self.weights))]
        self.designers = [make_designer(inner, space, seed=s, constraint=constraint, **inner_options) for s in seeds]
        self.results: dict[Genotype, tuple[float | None, float]] = {}  # the latest score and cost of each
        self._turn = 0
        self._score_range, self._cost_range = _Range(), _Range()
        self._asked: list[tuple[int, Proposal[Genotype]]] = []  # inner proposals not yet told: (designer, proposal)

    def propose(self) -> Genotype:
        index = self._turn % len(self.designers)
        self._turn += 1
        proposal = self.designers[index].ask()
        self._asked.append((index, proposal))
        return proposal.candidate

    def tell(self, proposal: Proposal[Genotype], result: Result) -> None:
        cost = result.info.get("cost")
        if cost is None:
            super().tell(proposal, result)  # learn() with the cost function's value
            return
        if self.in_flight.get(proposal.number) == proposal:
            del self.in_flight[proposal.number]
        self._learn(proposal.candidate, result.score if result.ok else None, cost)

    def learn(self, genotype: Genotype, score: float | None) -> None:
        if self.cost is None:
            raise ValueError("ParetoDesigner.tell needs a cost: pass Result(info={'cost': ...}) or give cost= a "
                             "function when creating the designer")
        self._learn(genotype, score, self.cost(genotype))

    def _learn(self, genotype: Genotype, score: float | None, cost: float) -> None:
        if not cost > 0:
            raise ValueError(f"cost must be a positive number (it is compared on a log scale), got {cost!r}")
        self.results[genotype] = (score, float(cost))
        log_cost = self._cost_range.scale(math.log(cost))
        accuracy = None if score is None else self._score_range.scale(float(score))
        for index, (weight, designer) in enumerate(zip(self.weights, self.designers, strict=True)):
            scalar = None if accuracy is None else accuracy - weight * log_cost
            designer.tell(self._inner_proposal(index, genotype),
                          Result(OK, scalar) if scalar is not None else Result("failed"))

    def _inner_proposal(self, index: int, genotype: Genotype) -> Proposal[Genotype]:
        """The inner designer's own proposal of ``genotype`` if it made one not yet told, else a foreign one."""
        for i, (owner, proposal) in enumerate(self._asked):
            if owner == index and proposal.candidate == genotype:
                del self._asked[i]
                return proposal
        return self.designers[index].proposal_for(genotype, "a result of another weight's designer", self.name)

    def front(self) -> list[tuple[Genotype, float, float]]:
        """The non-dominated ``(genotype, score, cost)`` results told so far."""
        return pareto_front((g, score, cost) for g, (score, cost) in self.results.items())

    def learned_state(self) -> dict[str, Any]:
        return {"designers": [d.get_state() for d in self.designers], "turn": self._turn,
                "results": [[list(g), score_out(s), c] for g, (s, c) in self.results.items()],
                "score_range": self._score_range.state(), "cost_range": self._cost_range.state(),
                "asked": [[i, p.number, list(p.candidate), p.reason, p.designer] for i, p in self._asked]}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        for designer, inner_state in zip(self.designers, state["designers"], strict=True):
            designer.set_state(inner_state)
        self._turn = int(state["turn"])
        self.results = {tuple(g): (s, float(c)) for g, s, c in state["results"]}
        self._score_range.restore(state["score_range"])
        self._cost_range.restore(state["cost_range"])
        self._asked = [(int(i), Proposal(int(n), self.space.name, tuple(g), reason, by))
                       for i, n, g, reason, by in state["asked"]]
