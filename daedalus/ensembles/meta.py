"""What the portfolio's ensemble-aware selection (``designers/meta/portfolio.py``) needs from the layers above
it: each task's metric and Caruana's greedy selection, exactly as a build's final ensemble uses them."""

from __future__ import annotations

import numpy as np

from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import Matrix
from daedalus.ensembles.caruana import greedy_selection
from daedalus.evaluation.metrics import Metric, get_metric

ROUNDS = 20  # Caruana rounds per task: a portfolio has at most a few dozen members


class CaruanaEnsembler:
    """The :class:`~daedalus.designers.meta.portfolio.Ensembler` of a matrix: its tasks' metrics, Caruana."""

    def __init__(self, matrix: Matrix) -> None:
        self.metrics: dict[str, Metric] = {t["name"]: get_metric(t["metric"], Task(t["task"])) for t in matrix.tasks}

    def utility(self, task: str, y: np.ndarray, pred: np.ndarray) -> float:
        metric = self.metrics[task]
        return metric.utility(metric(y, pred))

    def ensemble(self, task: str, y: np.ndarray, preds: list[np.ndarray]) -> tuple[np.ndarray, float]:
        metric = self.metrics[task]
        selection = greedy_selection(preds, y, metric, n_rounds=ROUNDS)
        blend = np.asarray(sum(w * preds[j] for j, w in selection.weights.items()), dtype=float)
        return blend, metric.utility(selection.score)
