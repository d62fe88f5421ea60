"""Greedy ensemble selection with replacement (Caruana et al. 2004), on out-of-fold predictions.

Start from the best single model, then repeatedly add (with replacement) the model whose addition most improves
the validation metric of the averaged prediction. Selecting with replacement gives integer weights and is
what AutoGluon and auto-sklearn use; it rarely overfits the validation rows because each step only averages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daedalus.evaluation.metrics import Metric


@dataclass(frozen=True)
class Selection:
    weights: dict[int, float]  # index into the candidate list -> weight (weights sum to 1)
    score: float  # validation metric of the weighted average (natural value)
    trajectory: tuple[float, ...]  # score after each round


def greedy_selection(predictions: list[np.ndarray], y: np.ndarray, metric: Metric,
                     n_rounds: int = 40) -> Selection:
    if not predictions:
        raise ValueError("no candidate predictions to select from")
    singles = [metric.utility(metric(y, p)) for p in predictions]
    best = int(np.argmax(singles))
    counts = {best: 1}
    total = predictions[best].copy()
    trajectory = [metric(y, total)]
    current = singles[best]
    for step in range(2, n_rounds + 1):
        gains = [metric.utility(metric(y, (total + p) / step)) for p in predictions]
        pick = int(np.argmax(gains))
        if gains[pick] <= current:
            break  # no addition helps any more: stop rather than drift on ties
        total += predictions[pick]
        counts[pick] = counts.get(pick, 0) + 1
        current = gains[pick]
        trajectory.append(metric(y, total / step))
    n = sum(counts.values())
    weights = {i: c / n for i, c in sorted(counts.items())}
    blended = sum(w * predictions[i] for i, w in weights.items())
    return Selection(weights=weights, score=metric(y, np.asarray(blended)), trajectory=tuple(trajectory))
