import numpy as np

from daedalus.data.schema import Task
from daedalus.ensembles.caruana import greedy_selection
from daedalus.evaluation.metrics import get_metric


def test_selection_beats_or_matches_the_best_single_model():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    # Three models with independent errors: their average is better than any one of them.
    preds = [y + rng.normal(scale=1.0, size=500) for _ in range(3)] + [y + 5.0]
    rmse = get_metric("rmse", Task.REGRESSION)
    sel = greedy_selection(preds, y, rmse)
    best_single = min(rmse(y, p) for p in preds)
    assert sel.score < best_single * 0.8
    assert abs(sum(sel.weights.values()) - 1) < 1e-9
    assert 3 not in sel.weights  # the badly biased model is never chosen


def test_selection_of_one_candidate_is_that_candidate():
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]])
    sel = greedy_selection([p], y, get_metric(None, Task.BINARY))
    assert sel.weights == {0: 1.0} and sel.score == 1.0
