"""Predictions in the one shape that metrics and ensembles expect."""

from __future__ import annotations

from typing import Any

import numpy as np

from daedalus.data.schema import Task


def predict_matrix(model: Any, X: Any, task: Task, n_classes: int) -> np.ndarray:
    """(n, k) class probabilities for classification, aligned to classes 0..k-1; (n,) values for regression.

    A fold may lack a rare class, so a fitted model can know fewer classes than the task has: its columns are
    placed by ``model.classes_`` and the missing classes get probability 0.
    """
    if not task.is_classification:
        return np.asarray(model.predict(X), dtype=np.float64).ravel()
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    known = np.asarray(model.classes_).astype(int)
    if proba.shape[1] == n_classes and np.array_equal(known, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes))
    out[:, known] = proba
    return out
