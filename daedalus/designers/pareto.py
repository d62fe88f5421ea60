"""The Pareto front of two objectives: one to maximise (a score, a utility) and one to minimise (a cost, a
fairness gap). The one implementation for every front Daedalus draws: an architecture search's accuracy
against parameters or latency (``designers.nas.multi_objective``, ``pareto.json`` of an image run) and a
table run's metric against its fairness gap (``pareto.json`` of a build with ``--objectives metric,fairness``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def pareto_front(points: Iterable[tuple[T, float | None, float]]) -> list[tuple[T, float, float]]:
    """The non-dominated ``(item, score, cost)`` points, by increasing cost, for a score to maximise and a cost to
    minimise. A point is dominated when another is at least as good on both and better on one, so exact ties all
    stay. Points without a finite score (failed evaluations) are left out."""
    valid = [(item, float(score), float(cost)) for item, score, cost in points
             if score is not None and math.isfinite(score)]
    front: list[tuple[T, float, float]] = []
    best = -math.inf
    for point in sorted(valid, key=lambda p: (p[2], -p[1])):  # cheapest first, best first among equal costs
        if point[1] > best:
            front.append(point)
            best = point[1]
        elif point[1:] == front[-1][1:]:  # the same score and cost as the last kept point: neither dominates
            front.append(point)
    return front
