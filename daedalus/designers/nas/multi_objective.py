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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from daedalus.designers.nas.base import ArchDesigner, Constraint
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


class ParetoDesigner(ArchDesigner):
    """Several inner designers (``make_designer(inner, ...)``), one per weight; ``tell`` takes a cost as well.

    The cost of a result comes from ``tell(..., cost=...)`` or, when that is left out, from ``cost(genotype)``
    given here (parameters can be counted without training, so a benchmark loop that knows only scores works).
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

    def ask(self) -> Genotype:
        designer = self.designers[self._turn % len(self.designers)]
        self._turn += 1
        return designer.ask()

    def tell(self, genotype: Genotype, score: float | None, cost: float | None = None) -> None:
        if cost is None:
            if self.cost is None:
                raise ValueError("ParetoDesigner.tell needs a cost: pass cost=... or give cost= a function when "
                                 "creating the designer")
            cost = self.cost(genotype)
        if not cost > 0:
            raise ValueError(f"cost must be a positive number (it is compared on a log scale), got {cost!r}")
        self.results[genotype] = (score, float(cost))
        log_cost = self._cost_range.scale(math.log(cost))
        if score is None:
            for designer in self.designers:
                designer.tell(genotype, None)
            return
        accuracy = self._score_range.scale(float(score))
        for weight, designer in zip(self.weights, self.designers, strict=True):
            designer.tell(genotype, accuracy - weight * log_cost)

    def front(self) -> list[tuple[Genotype, float, float]]:
        """The non-dominated ``(genotype, score, cost)`` results told so far."""
        return pareto_front((g, score, cost) for g, (score, cost) in self.results.items())
