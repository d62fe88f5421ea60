"""Fairness: per-group and intersectional metrics (Fairlearn's ``MetricFrame``) and the fairness constraint of a
search (the front of metric against fairness gap is drawn with ``designers.pareto.pareto_front``).

Decisions are what fairness is about: a classifier's decision for a row is the argmax of its predicted
probabilities (what ``daedalus predict`` returns); the positive class is class code 1 (``schema.classes[1]``).
Every number here is computed on predictions for rows the model did not train on: the out-of-fold predictions
of the final model (k-fold), its holdout predictions (holdout), or labelled rows a user passes in.

**The constraint.** ``--fairness "demographic_parity_difference<=0.05"`` (or ``equalized_odds_difference``)
is parsed by :func:`parse_constraint`. A trial meets it when the *upper bound* of its gap, ``gap + Z * se``
with ``Z = FEASIBILITY_Z``, is within the limit: the gap measured on validation rows is an estimate, and a
model that meets the limit only by the luck of those rows would break it on new data. ``se`` is the standard
error of the gap's two rates (binomial); ``Z = 1.645`` makes the bound a one-sided 95% upper confidence bound,
the usual standard for a claim that a limit is met. (With ``Z = 1`` the COMPAS bench handed back a blend whose
validation gap was 0.019, bound 0.042, and whose test gap was 0.058: one of its members was feasible with
bound 0.049, on a gap of 0.032 that was 0.10 on the test rows.)

**Groups too small to measure.** A gap is checked only over the groups large enough to measure it: a group's
selection rate measured on ``n`` rows has a 95% margin of error of about ``1/sqrt(n)`` (``2 * sqrt(p(1-p)/n)``
at its worst, ``p = 0.5``), so a group is *measurable* against a limit ``L`` when that margin is within the
limit, ``n >= 1/L**2`` (:func:`min_measurable_rows`: 400 rows for 0.05, 100 for 0.1), and never under
``MIN_GROUP_ROWS`` (30). On fewer rows one decision more or less moves the group's rate by more than a
meaningful share of the limit (COMPAS's 8 Asian test rows: 0.125 a decision), so no model could be shown to
meet, or to break, the limit on them. The rule depends only on the groups' row counts, never on a model's
decisions, so it is fixed before any model is seen. Groups under it are not dropped: they are listed with
their counts (``constraint.too_small_to_measure``, rows with ``"small": true``), their rates are reported like
every other group's, and the mitigations still fit them (pooled when under 30 rows, ``spaces.mitigation``);
the verdict (``constraint.verdict``) says over which groups it holds. With fewer than two measurable groups the
constraint cannot be checked and is not met (fail closed). Without a constraint the threshold is 30 rows.

``fairness.json`` (written to the run directory at the end of a build with ``--sensitive``)::

    {
      "version": 1,
      "task": "binary" | "multiclass" | "regression",
      "sensitive": ["sex", "race"],            # the declared columns
      "used_as_features": false,               # --use-sensitive
      "source": "out-of-fold predictions of the final model (5-fold cross-validation on 1000 rows)",
      "rows": 1000,
      "positive_class": ">50K",                # binary only (null otherwise)
      "metrics": ["selection_rate", "tpr", "fpr", "accuracy", "auc", "count"],   # the per-group columns
      "overall": {"selection_rate": 0.24, "tpr": ..., "fpr": ..., "accuracy": ..., "auc": ..., "count": 1000},
      "by_group": [                            # one row per value of each sensitive column
        {"column": "sex", "group": "Female", "small": false, "selection_rate": ..., ..., "count": 331}, ...],
      "intersectional": [                      # one row per combination of values of all sensitive columns
        {"group": "Female & White", "values": {"sex": "Female", "race": "White"}, "small": false, ...}, ...],
      "differences": {                         # over the intersectional groups, as Fairlearn computes them
        "demographic_parity_difference": 0.19, "equalized_odds_difference": 0.10},
      "ratios": {"demographic_parity_ratio": 0.35, "equalized_odds_ratio": 0.30},
      "differences_by_column": {"sex": {...differences and ratios...}, "race": {...}},
      "max_gap": 0.19,                         # the figure an approval gate compares with max_fairness_gap
      "constraint": null | {"expression": "demographic_parity_difference<=0.05",
                            "metric": "demographic_parity_difference", "limit": 0.05,
                            "value": 0.031, "se": 0.012, "bound": 0.043, "z": 1.0, "met": true,
                            "met_without_margin": true,       # value <= limit (no margin for the error)
                            "min_group_rows": 400,            # min_measurable_rows(limit)
                            "measured_groups": [{"group": "African-American", "count": 924}, ...],
                            "too_small_to_measure": [{"group": "Asian", "count": 8}, ...],
                            "small_groups": ["Asian", ...],   # the names of the latter
                            "verdict": "met over the 2 groups with at least 400 rows (...); too small ..."}
    }

For regression the metrics are ``mae``, ``rmse``, ``mean_prediction`` and ``count``, and the differences
``mae_difference`` and ``rmse_difference`` (largest minus smallest group error); for multiclass, ``accuracy``
and ``count``, and ``accuracy_difference``. Values that a group cannot have (a true positive rate without
positives, an AUC with one class) are null. ``max_gap`` is the constrained gap when there is a constraint,
else the largest of ``differences``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data.schema import Task
from daedalus.data.sensitive import GROUP_JOIN, MIN_FIT_ROWS
from daedalus.errors import ConfigError

FEASIBILITY_Z = 1.645  # one-sided 95% upper confidence bound
MIN_GROUP_ROWS = MIN_FIT_ROWS  # 30: the fewest rows a group is ever measured on
# The run's records, as RunStore names them (``RunStore.write(name)`` writes ``name.json``): fairness.json,
# and pareto.json of a build with --objectives metric,fairness. Every reader and writer names them through these.
FAIRNESS_RECORD = "fairness"
PARETO_RECORD = "pareto"

# The gaps a search can be constrained on, with the Fairlearn constraint that mitigations enforce for each.
CONSTRAINT_METRICS: dict[str, str] = {
    "demographic_parity_difference": "demographic_parity",
    "equalized_odds_difference": "equalized_odds",
}
DEFAULT_GAP_METRIC = "demographic_parity_difference"
_EXPRESSION = re.compile(r"^\s*([A-Za-z_]+)\s*(<=|<)\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


@dataclass(frozen=True)
class FairnessConstraint:
    metric: str  # a key of CONSTRAINT_METRICS
    limit: float
    expression: str

    @property
    def mitigation(self) -> str:
        """Fairlearn's name of the constraint (what ThresholdOptimizer/ExponentiatedGradient enforce)."""
        return CONSTRAINT_METRICS[self.metric]


def parse_constraint(text: str) -> FairnessConstraint:
    """``"demographic_parity_difference<=0.05"`` -> a constraint; anything else is a ConfigError."""
    match = _EXPRESSION.match(text or "")
    example = 'e.g. --fairness "demographic_parity_difference<=0.05"'
    if match is None:
        raise ConfigError(f"cannot read the fairness constraint '{text}'; write METRIC<=LIMIT, {example}")
    metric, _, limit_text = match.groups()
    if metric not in CONSTRAINT_METRICS:
        raise ConfigError(f"unknown fairness metric '{metric}' in --fairness; choose one of "
                          f"{', '.join(CONSTRAINT_METRICS)}, {example}")
    limit = float(limit_text)
    if not 0.0 < limit < 1.0:
        raise ConfigError(f"the fairness limit must be between 0 and 1 (a difference of rates), got {limit_text}; "
                          f"{example}")
    return FairnessConstraint(metric, limit, f"{metric}<={limit_text}")


# -- gaps, for the search -------------------------------------------------------------------------------------
def min_measurable_rows(limit: float | None) -> int:
    """The fewest rows a group needs to be measured against ``limit``: ``1/limit**2`` (its rate's 95% margin of
    error, ``1/sqrt(n)`` at worst, within the limit), at least ``MIN_GROUP_ROWS``; that floor without a limit."""
    if limit is None:
        return MIN_GROUP_ROWS
    return max(MIN_GROUP_ROWS, math.ceil(round(1.0 / limit**2, 6)))


@dataclass(frozen=True)
class Gap:
    metric: str
    value: float  # largest minus smallest group rate, over the measurable groups
    se: float  # standard error of that difference
    small_groups: tuple[str, ...]  # groups too small to measure
    min_rows: int = MIN_GROUP_ROWS  # the rows a group needed to be measured
    measured: tuple[tuple[str, int], ...] = ()  # (group, rows) of the measurable groups
    small: tuple[tuple[str, int], ...] = ()  # (group, rows) of the others

    @property
    def measurable(self) -> bool:
        """At least two groups could be measured (else there is no gap to check)."""
        return len(self.measured) >= 2

    @property
    def bound(self) -> float:
        return self.value + FEASIBILITY_Z * self.se

    def meets(self, limit: float) -> bool:
        return self.measurable and self.bound <= limit


def decisions(pred: np.ndarray) -> np.ndarray:
    """Class decisions (codes) from (n, k) probabilities: the argmax, as ``predict`` returns."""
    return np.asarray(pred).argmax(axis=1)


def _rate_gap(hits: np.ndarray, groups: np.ndarray, eligible: Sequence[str]) -> tuple[float, float]:
    """(largest minus smallest rate of ``hits`` across ``eligible`` groups, its binomial standard error)."""
    rates = {g: (float(hits[groups == g].mean()), int((groups == g).sum())) for g in eligible
             if (groups == g).any()}
    if len(rates) < 2:
        return 0.0, 0.0
    high = max(rates, key=lambda g: rates[g][0])
    low = min(rates, key=lambda g: rates[g][0])
    (p1, n1), (p2, n2) = rates[high], rates[low]
    return p1 - p2, math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


def fairness_gap(metric: str, y: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                 min_rows: int = MIN_GROUP_ROWS) -> Gap:
    """The gap ``metric`` of binary decisions ``labels`` across the groups of ``groups`` (one label per row)
    that have at least ``min_rows`` rows to measure each rate on.

    Demographic parity: the difference in selection rate (over each group's rows). Equalized odds: the larger
    of the differences in true and false positive rates (as Fairlearn defines it), each over the rows of one
    true class, so a group is measured on a rate where it has ``min_rows`` rows of that class.
    """
    y, labels, groups = np.asarray(y), np.asarray(labels), np.asarray(groups, dtype=object).astype(str)
    names, counts = np.unique(groups, return_counts=True)
    rows = {str(g): int(c) for g, c in zip(names, counts, strict=True)}

    def eligible_among(members: np.ndarray) -> list[str]:
        return [g for g in rows if int((members == g).sum()) >= min_rows]

    if metric == "demographic_parity_difference":
        eligible = eligible_among(groups)
        value, se = _rate_gap(labels == 1, groups, eligible)
    elif metric == "equalized_odds_difference":
        by_class = {cls: eligible_among(groups[y == cls]) for cls in (1, 0)}
        eligible = [g for g in rows if any(g in e for e in by_class.values())]
        parts = [_rate_gap(labels[y == cls] == 1, groups[y == cls], by_class[cls]) for cls in (1, 0)]
        value, se = max(parts)
    else:
        raise ValueError(metric)
    small = tuple(g for g in rows if g not in eligible)
    return Gap(metric, value, se, small, min_rows, tuple((g, rows[g]) for g in eligible),
               tuple((g, rows[g]) for g in small))


def _listed(groups: Sequence[tuple[str, int]], most: int = 8) -> str:
    shown = [f"{g} ({n} rows)" for g, n in sorted(groups, key=lambda gn: -gn[1])[:most]]
    return ", ".join(shown) + (f" and {len(groups) - most} more" if len(groups) > most else "")


def verdict(gap: Gap, limit: float) -> str:
    """One sentence: met or not, over which groups, with the groups too small to measure and their rows."""
    small = f"; too small to measure against {limit:g}: {_listed(gap.small)}" if gap.small else ""
    if not gap.measurable:
        return (f"cannot be checked: fewer than two groups have the {gap.min_rows} rows needed to measure a gap "
                f"against {limit:g}{small}")
    word = "met" if gap.meets(limit) else "NOT met"
    over = f"over the {len(gap.measured)} groups with at least {gap.min_rows} rows ({_listed(gap.measured)})"
    return (f"{word} {over}: gap {gap.value:.4f} + {FEASIBILITY_Z:g} x se {gap.se:.4f} = {gap.bound:.4f} "
            f"{'<=' if gap.bound <= limit else '>'} {limit:g}{small}")


# -- the report -----------------------------------------------------------------------------------------------
def _safe(fn: Callable[..., float]) -> Callable[..., float]:
    """A metric that gives NaN where a group cannot have it (AUC with one class, a rate without positives)."""
    def wrapped(y_true: Any, y_pred: Any) -> float:
        y_true = np.asarray(y_true)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(fn(y_true, y_pred))
        except ValueError:
            return math.nan
    wrapped.__name__ = getattr(fn, "__name__", "metric")
    return wrapped


def _classification_metrics() -> dict[str, Callable[..., float]]:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    def tpr(y: np.ndarray, p: np.ndarray) -> float:
        return true_positive_rate(y, p) if (np.asarray(y) == 1).any() else math.nan

    def fpr(y: np.ndarray, p: np.ndarray) -> float:
        return false_positive_rate(y, p) if (np.asarray(y) == 0).any() else math.nan

    return {"selection_rate": _safe(selection_rate), "tpr": _safe(tpr), "fpr": _safe(fpr),
            "accuracy": _safe(accuracy_score), "count": count}


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else math.nan


def _regression_metrics() -> dict[str, Callable[..., float]]:
    from fairlearn.metrics import count
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    def rmse(y: np.ndarray, p: np.ndarray) -> float:
        return math.sqrt(mean_squared_error(y, p))

    def mean_prediction(y: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean(p))

    return {"mae": _safe(mean_absolute_error), "rmse": _safe(rmse), "mean_prediction": mean_prediction,
            "count": count}


def _json_number(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else round(float(v), 6)
    return v


def _frames(task: Task, y: np.ndarray, pred: np.ndarray, sensitive: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """Fairlearn's MetricFrame by group (plus overall as the row ``None``) for the task's metrics."""
    from fairlearn.metrics import MetricFrame

    if task is Task.REGRESSION:
        frame = MetricFrame(metrics=_regression_metrics(), y_true=y, y_pred=pred, sensitive_features=sensitive)
        return _with_overall(frame)
    labels = decisions(pred)
    metrics = _classification_metrics()
    if task is Task.MULTICLASS:
        metrics = {"accuracy": metrics["accuracy"], "count": metrics["count"]}
        return _with_overall(MetricFrame(metrics=metrics, y_true=y, y_pred=labels, sensitive_features=sensitive))
    frame = _with_overall(MetricFrame(metrics=metrics, y_true=y, y_pred=labels, sensitive_features=sensitive))
    auc = _with_overall(MetricFrame(metrics={"auc": _safe(_auc)}, y_true=y, y_pred=pred[:, 1],
                                    sensitive_features=sensitive))
    frame.insert(list(frame.columns).index("count"), "auc", auc["auc"])
    return frame


def _with_overall(frame: Any) -> pd.DataFrame:
    by_group = frame.by_group.copy()
    overall = pd.DataFrame([frame.overall.to_dict()], index=["__overall__"])
    return pd.concat([by_group.reset_index(), overall.reset_index(drop=True).assign(__overall__=True)],
                     ignore_index=True)


def _rows(table: pd.DataFrame, columns: Sequence[str], metrics: Sequence[str],
          min_rows: int = MIN_GROUP_ROWS) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, overall = [], {}
    for record in table.to_dict(orient="records"):
        values = {m: int(record[m]) if m == "count" else _json_number(record[m]) for m in metrics}
        if record.get("__overall__") is True:
            overall = values
            continue
        keys = {c: str(record[c]) for c in columns}
        rows.append({"group": GROUP_JOIN.join(keys.values()), "values": keys,
                     "small": int(record["count"]) < min_rows, **values})
    return rows, overall


def _differences(task: Task, y: np.ndarray, pred: np.ndarray, sensitive: pd.DataFrame) -> dict[str, Any]:
    if task is Task.BINARY:
        from fairlearn.metrics import (
            demographic_parity_difference,
            demographic_parity_ratio,
            equalized_odds_difference,
            equalized_odds_ratio,
        )

        labels = decisions(pred)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {name: _json_number(fn(y, labels, sensitive_features=sensitive)) for name, fn in (
                ("demographic_parity_difference", demographic_parity_difference),
                ("demographic_parity_ratio", demographic_parity_ratio),
                ("equalized_odds_difference", equalized_odds_difference),
                ("equalized_odds_ratio", equalized_odds_ratio))}
    table = _frames(task, y, pred, sensitive)
    groups = table[table.get("__overall__") != True]  # noqa: E712 (a column of True/NaN)
    names = ("mae", "rmse") if task is Task.REGRESSION else ("accuracy",)
    return {f"{m}_difference": _json_number(groups[m].max() - groups[m].min()) for m in names}


@dataclass(frozen=True)
class ReportInput:
    task: Task
    y: np.ndarray  # class codes or values
    pred: np.ndarray  # (n, k) probabilities or (n,) values
    sensitive: pd.DataFrame  # the audit frame of the same rows (data.sensitive.sensitive_frame)
    classes: tuple[Any, ...] | None
    source: str
    used_as_features: bool = False


def fairness_report(data: ReportInput, constraint: FairnessConstraint | None = None) -> dict[str, Any]:
    """The fairness record (the module docstring gives its schema)."""
    sensitive = data.sensitive.reset_index(drop=True).astype(str)
    columns = list(sensitive.columns)
    y, pred = np.asarray(data.y), np.asarray(data.pred)
    constrained = constraint is not None and data.task is Task.BINARY
    min_rows = min_measurable_rows(constraint.limit if constraint is not None and constrained else None)
    intersect = _frames(data.task, y, pred, sensitive)
    metrics = [c for c in intersect.columns if c not in (*columns, "__overall__")]
    intersectional, overall = _rows(intersect, columns, metrics, min_rows)
    by_group: list[dict[str, Any]] = []
    by_column: dict[str, Any] = {}
    for column in columns:
        rows, _ = _rows(_frames(data.task, y, pred, sensitive[column]), [column], metrics, min_rows)
        by_group.extend({"column": column, "group": r["group"], "small": r["small"],
                         **{m: r[m] for m in metrics}} for r in rows)
        by_column[column] = _differences(data.task, y, pred, sensitive[[column]])
    measured = _differences(data.task, y, pred, sensitive)
    # Differences (gaps, lower is fairer) and ratios (higher is fairer) apart: a gate compares gaps to a limit.
    differences = {k: v for k, v in measured.items() if not k.endswith("_ratio")}
    ratios = {k: v for k, v in measured.items() if k.endswith("_ratio")}
    record: dict[str, Any] = {
        "version": 1, "task": data.task.value, "sensitive": columns, "used_as_features": data.used_as_features,
        "source": data.source, "rows": len(y),
        "positive_class": data.classes[1] if data.task is Task.BINARY and data.classes else None,
        "metrics": metrics, "overall": overall, "by_group": by_group, "intersectional": intersectional,
        "differences": differences, "ratios": ratios, "differences_by_column": by_column, "constraint": None,
    }
    gaps = [v for v in differences.values() if v is not None]
    record["max_gap"] = max(gaps) if gaps else None
    if constraint is not None and constrained:
        from daedalus.data.sensitive import group_labels

        gap = fairness_gap(constraint.metric, y, decisions(pred), group_labels(sensitive), min_rows)
        record["constraint"] = {"expression": constraint.expression, "metric": constraint.metric,
                                "limit": constraint.limit, "value": _json_number(gap.value),
                                "se": _json_number(gap.se), "bound": _json_number(gap.bound), "z": FEASIBILITY_Z,
                                "met": gap.meets(constraint.limit),
                                "met_without_margin": gap.measurable and gap.value <= constraint.limit,
                                "min_group_rows": min_rows,
                                "measured_groups": [{"group": g, "count": n} for g, n in gap.measured],
                                "too_small_to_measure": [{"group": g, "count": n} for g, n in gap.small],
                                "small_groups": list(gap.small_groups),
                                "verdict": verdict(gap, constraint.limit)}
        # The gate compares the constrained gap; when it cannot be measured, the gap over all groups (fail closed).
        if gap.measurable:
            record["max_gap"] = _json_number(gap.value)
    return record


def gap_for_gate(record: dict[str, Any]) -> float | None:
    """The fairness gap an approval gate (``max_fairness_gap``) compares: ``max_gap`` of a fairness record."""
    value = record.get("max_gap")
    return float(value) if value is not None else None



def fairness_on_rows(run_dir: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """The fairness record of a run's model (final, or best so far) on labelled rows it did not train on,
    e.g. a test split: the same schema as ``fairness.json``, with the run's constraint checked on them."""
    import json
    from pathlib import Path

    from daedalus.data import prepare_target
    from daedalus.data.sensitive import sensitive_frame
    from daedalus.ensembles.predictor import Predictor
    from daedalus.errors import DataError, RunError

    run_dir = Path(run_dir)
    predictor = Predictor.load(run_dir)
    if not isinstance(predictor, Predictor):
        raise RunError(f"run '{run_dir}' is an image run; fairness applies to table runs built with --sensitive")
    schema = predictor.schema
    if not schema.sensitive:
        raise RunError(f"run '{run_dir}' declares no sensitive column; build it with --sensitive COLS")
    if schema.target not in frame.columns:
        raise DataError(f"the rows lack the target column '{schema.target}'; fairness needs the true labels")
    frame = frame[frame[schema.target].notna()].reset_index(drop=True)
    options = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("options", {})
    constraint = parse_constraint(options["fairness"]) if options.get("fairness") else None
    data = ReportInput(schema.task, np.asarray(prepare_target(frame[schema.target], schema)),
                       predictor.predict_matrix(frame), sensitive_frame(frame, schema.sensitive), schema.classes,
                       f"predictions of the {'final' if predictor.source == 'model' else 'best'} model on "
                       f"{len(frame)} labelled rows given by the user",
                       used_as_features=bool(options.get("use_sensitive")))
    return fairness_report(data, constraint)
