"""Metrics, as the AutoML Benchmark computes them, on predictions in one fixed shape.

Classification predictions are always class probabilities of shape (n, k), columns in the order of the
integer-coded classes 0..k-1; label metrics (accuracy, F1...) take the argmax. Regression predictions are
a 1-d array. Every metric reports its natural value (log loss is a loss, AUC a score); ``utility`` turns
that into "higher is better" for the search and for ensemble selection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn import metrics as skm

from daedalus.data.schema import Task
from daedalus.errors import ConfigError

_EPS = 1e-15


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if p.shape[1] == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    # Macro one-vs-rest over the classes present in y; renormalise since a subset of columns is used.
    present = np.unique(y)
    sub = p[:, present]
    sub = sub / np.clip(sub.sum(axis=1, keepdims=True), _EPS, None)
    if len(present) == 2:
        return float(skm.roc_auc_score(y == present[1], sub[:, 1]))
    return float(skm.roc_auc_score(y, sub, multi_class="ovr", labels=present))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.log_loss(y, np.clip(p, _EPS, 1.0), labels=np.arange(p.shape[1])))


def _labels(p: np.ndarray) -> np.ndarray:
    return np.asarray(p.argmax(axis=1))


def _f1(y: np.ndarray, p: np.ndarray) -> float:
    average = "binary" if p.shape[1] == 2 else "macro"
    return float(skm.f1_score(y, _labels(p), average=average, zero_division=0))


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(skm.mean_squared_error(y, p)))


# Named functions, not lambdas: a Metric travels to the trial workers by pickle, which refuses lambdas.
def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.accuracy_score(y, _labels(p)))


def _balanced_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.balanced_accuracy_score(y, _labels(p)))


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.mean_absolute_error(y, p))


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.r2_score(y, p))


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    tasks: frozenset[Task]
    fn: Callable[[np.ndarray, np.ndarray], float]

    def __call__(self, y_true: np.ndarray, pred: np.ndarray) -> float:
        return self.fn(np.asarray(y_true), np.asarray(pred))

    def utility(self, value: float) -> float:
        """Higher is better, whatever the metric."""
        return value if self.greater_is_better else -value

    @property
    def optuna_direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self.greater_is_better else "minimize"


_CLS = frozenset({Task.BINARY, Task.MULTICLASS})
_REG = frozenset({Task.REGRESSION})

METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("roc_auc", True, _CLS, _auc),
    Metric("log_loss", False, _CLS, _log_loss),
    Metric("accuracy", True, _CLS, _accuracy),
    Metric("balanced_accuracy", True, _CLS, _balanced_accuracy),
    Metric("f1", True, _CLS, _f1),
    Metric("rmse", False, _REG, _rmse),
    Metric("mae", False, _REG, _mae),
    Metric("r2", True, _REG, _r2),
]}

ALIASES = {"auc": "roc_auc", "logloss": "log_loss", "acc": "accuracy", "balanced_acc": "balanced_accuracy",
           "f1_score": "f1", "r_squared": "r2"}

DEFAULT_METRIC = {Task.BINARY: "roc_auc", Task.MULTICLASS: "log_loss", Task.REGRESSION: "rmse"}


def get_metric(name: str | None, task: Task) -> Metric:
    """The named metric (or the task's AutoML Benchmark default), checked against the task."""
    if name is None:
        return METRICS[DEFAULT_METRIC[task]]
    key = ALIASES.get(name.lower(), name.lower())
    if key not in METRICS:
        raise ConfigError(f"unknown metric '{name}'; choose one of {', '.join(METRICS)}")
    metric = METRICS[key]
    if task not in metric.tasks:
        fitting = [m.name for m in METRICS.values() if task in m.tasks]
        raise ConfigError(f"metric '{metric.name}' does not apply to a {task.value} task; "
                          f"use one of {', '.join(fitting)}")
    return metric
