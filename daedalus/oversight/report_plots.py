"""The report's figures (plotly). Each builder returns a figure, or None when the run has nothing to plot."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import plotly.graph_objects as go
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from daedalus.oversight.final_predictions import FinalPredictions
from daedalus.oversight.run_record import RunRecord

HEIGHT = 400
TOP_FEATURES = 25  # more bars than this are unreadable; the table below the plot lists them all
MAX_ROC_CLASSES = 10  # one-vs-rest curves drawn; more classes would be a tangle
RESIDUAL_POINTS = 5000  # scatter points drawn at most (a random subset beyond), so the page stays small


def _layout(fig: go.Figure, title: str, x: str, y: str, **extra: Any) -> go.Figure:
    layout: dict[str, Any] = {"title": title, "xaxis_title": x, "yaxis_title": y, "template": "plotly_white",
                              "height": HEIGHT, "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
                              "legend": {"orientation": "h", "y": -0.2}, "yaxis_automargin": True}
    fig.update_layout(**{**layout, **extra})
    return fig


def best_over_time(record: RunRecord) -> go.Figure | None:
    events = record.trial_events()
    if not events:
        return None
    sign = 1.0 if record.greater_is_better else -1.0
    ok = [e for e in events if e.score is not None]
    fig = go.Figure()
    if ok:
        fig.add_scatter(x=[e.seconds for e in ok], y=[e.score for e in ok], mode="markers", name="trial",
                        text=[f"trial {e.trial}: {e.family} ({e.designer})" for e in ok],
                        marker={"size": 8, "opacity": 0.6})
        best_y: list[float] = []
        for e in ok:
            assert e.score is not None
            best_y.append(e.score if not best_y else sign * max(sign * best_y[-1], sign * e.score))
        fig.add_scatter(x=[e.seconds for e in ok], y=best_y, mode="lines", line_shape="hv", name="best so far")
    failed = [e for e in events if e.score is None]
    if failed:
        low = min((e.score for e in ok if e.score is not None), default=0.0)
        fig.add_scatter(x=[e.seconds for e in failed], y=[low] * len(failed), mode="markers", name="failed",
                        text=[f"trial {e.trial}: {e.family} {e.status}" for e in failed],
                        marker={"symbol": "x", "color": "crimson", "size": 9})
    final = record.final_event()
    if final is not None:
        fig.add_scatter(x=[final[0]], y=[final[1]], mode="markers", name=final[2],
                        marker={"symbol": "star", "size": 16, "color": "gold", "line": {"width": 1}})
    direction = "higher" if record.greater_is_better else "lower"
    return _layout(fig, f"Best {record.metric} over time ({direction} is better)", "seconds since the run began",
                   record.metric)


def trial_share(record: RunRecord) -> go.Figure | None:
    """Trials per designer (image runs) or per model family (tabular runs), split by outcome."""
    key = "designer" if record.is_image else "family"
    rows = [r for r in record.leaderboard if r.get("trial") is not None and r.get("designer") != "final"]
    if not rows:
        return None
    counts: Counter[tuple[str, bool]] = Counter((str(r.get(key) or "?"), r.get("status") == "ok") for r in rows)
    names = sorted({name for name, _ in counts}, key=lambda n: -(counts[(n, True)] + counts[(n, False)]))
    fig = go.Figure()
    fig.add_bar(x=names, y=[counts[(n, True)] for n in names], name="succeeded")
    if any(not ok for _, ok in counts):
        fig.add_bar(x=names, y=[counts[(n, False)] for n in names], name="failed", marker_color="crimson")
    return _layout(fig, f"Share of {len(rows)} trials per {key}", key, "trials", barmode="stack")


def hyperparameter_importance(importance: dict[str, float]) -> go.Figure | None:
    items = sorted(((str(k), float(v)) for k, v in importance.items() if _number(v)), key=lambda kv: kv[1])
    if not items:
        return None
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h"))
    return _layout(fig, "Hyperparameter importance (Optuna)", "share of the score's variance", "",
                   height=_bars_height(len(items)))


def feature_importance(rows: list[dict[str, Any]]) -> go.Figure | None:
    rows = [r for r in rows if _number(r.get("mean"))]
    if not rows:
        return None
    top = sorted(rows, key=lambda r: -float(r["mean"]))[:TOP_FEATURES][::-1]
    errors = [float(r["std"]) if _number(r.get("std")) else 0.0 for r in top]
    fig = go.Figure(go.Bar(x=[float(r["mean"]) for r in top], y=[str(r.get("feature", "?")) for r in top],
                           orientation="h", error_x={"type": "data", "array": errors}))
    title = "Permutation feature importance" + (f" (top {TOP_FEATURES} of {len(rows)})" if len(rows) > len(top) else "")
    return _layout(fig, title, "drop in the metric when the feature is shuffled", "", height=_bars_height(len(top)))


def roc(fp: FinalPredictions) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"})
    for code, label in _curve_classes(fp):
        truth = (fp.y == code).astype(int)
        if truth.min() == truth.max():
            continue  # a class absent from the scored rows has no ROC curve
        fpr, tpr, _ = roc_curve(truth, fp.pred[:, code])
        auc = roc_auc_score(truth, fp.pred[:, code])
        fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"class {label} (AUC {auc:.3f})")
    return _layout(fig, "ROC curve" + (" (one class against the rest)" if fp.pred.shape[1] > 2 else ""),
                   "false positive rate", "true positive rate")


def calibration(fp: FinalPredictions) -> go.Figure:
    """Reliability diagram: the positive class for binary tasks, the top-label confidence for multiclass."""
    if fp.pred.shape[1] == 2:
        truth, prob, label = (fp.y == 1).astype(int), fp.pred[:, 1], f"P({_label(fp, 1)})"
    else:
        truth = (fp.pred.argmax(axis=1) == fp.y).astype(int)
        prob, label = fp.pred.max(axis=1), "confidence of the predicted class"
    frac, mean = calibration_curve(truth, np.clip(prob, 0.0, 1.0), n_bins=10, strategy="quantile")
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                    line={"dash": "dot", "color": "grey"})
    fig.add_scatter(x=mean, y=frac, mode="lines+markers", name="model (10 quantile bins)")
    return _layout(fig, "Calibration", f"mean predicted {label}", "observed frequency")


def residuals(fp: FinalPredictions, seed: int = 0) -> go.Figure:
    shown = np.arange(len(fp.y))
    if len(shown) > RESIDUAL_POINTS:
        shown = np.sort(np.random.default_rng(seed).choice(shown, RESIDUAL_POINTS, replace=False))
    pred, resid = fp.pred[shown], fp.y[shown] - fp.pred[shown]
    fig = go.Figure()
    fig.add_scatter(x=pred, y=resid, mode="markers", name="row", marker={"size": 5, "opacity": 0.5})
    fig.add_hline(y=0.0, line_dash="dot", line_color="grey")
    note = f" ({RESIDUAL_POINTS} of {len(fp.y)} rows)" if len(fp.y) > RESIDUAL_POINTS else ""
    return _layout(fig, f"Residuals (actual minus predicted){note}", "predicted", "residual")


def residual_histogram(fp: FinalPredictions) -> go.Figure:
    fig = go.Figure(go.Histogram(x=fp.y - fp.pred, nbinsx=40, name="residuals"))
    return _layout(fig, "Distribution of residuals", "residual", "rows")


def why_chosen(why: dict[str, Any]) -> go.Figure | None:
    """The chosen model and its runners-up: validation score with its bootstrap confidence interval."""
    rows = [r for r in [why.get("chosen"), *(why.get("runners_up") or [])] if isinstance(r, dict)]
    rows = [r for r in rows if _number(r.get("score"))]
    if not rows:
        return None
    scores = [float(r["score"]) for r in rows]
    ci = [(float(r["ci"][0]), float(r["ci"][1])) if isinstance(r.get("ci"), list) and len(r["ci"]) == 2
          and all(_number(v) for v in r["ci"]) else (s, s) for r, s in zip(rows, scores, strict=True)]
    fig = go.Figure(go.Scatter(
        x=[str(r.get("label", r.get("trial"))) for r in rows], y=scores, mode="markers",
        marker={"size": 11, "color": ["gold"] + ["steelblue"] * (len(rows) - 1), "line": {"width": 1}},
        error_y={"type": "data", "symmetric": False, "array": [hi - s for (_, hi), s in zip(ci, scores, strict=True)],
                 "arrayminus": [s - lo for (lo, _), s in zip(ci, scores, strict=True)]}))
    confidence = why.get("confidence")
    level = f"{confidence:.0%} " if _number(confidence) else ""
    return _layout(fig, f"Chosen model (first) against the runners-up, with {level}bootstrap intervals", "",
                   str(why.get("metric", "score")))


def fairness_by_group(rows: list[dict[str, Any]], title: str, metrics: list[str] | None = None) -> go.Figure | None:
    """One bar per group for each per-group metric (counts left out: they are on another scale)."""
    rows = [r for r in rows if isinstance(r, dict)]
    names = metrics if metrics is not None else _numeric_keys(rows)
    names = [k for k in names if k.lower() not in ("count", "n", "rows", "size", "support")]
    if not rows or not names:
        return None
    fig = go.Figure()
    for r in rows:
        fig.add_bar(x=names, y=[r.get(m) if _number(r.get(m)) else None for m in names], name=group_label(r))
    return _layout(fig, title, "metric", "value", barmode="group")


def pareto(front: list[dict[str, Any]], objectives: list[str], others: list[dict[str, Any]]) -> go.Figure | None:
    """The front on its two objectives; every other candidate that has both values drawn faintly behind."""
    if len(objectives) < 2:
        return None
    first, second = objectives[0], objectives[1]
    points: list[tuple[float, float, dict[str, Any]]] = []
    for r in front:
        a, b = objective_value(r, first, 0), objective_value(r, second, 1)
        if a is not None and b is not None:
            points.append((a, b, r))
    points.sort(key=lambda p: p[1])
    if not points:
        return None
    fig = go.Figure()
    behind = [(objective_value(r, first, 0), objective_value(r, second, 1)) for r in others]
    behind = [(a, b) for a, b in behind if a is not None and b is not None]
    if behind:
        fig.add_scatter(x=[b for _, b in behind], y=[a for a, _ in behind], mode="markers", name="all candidates",
                        marker={"color": "lightgrey", "size": 7})
    fig.add_scatter(x=[p[1] for p in points], y=[p[0] for p in points], mode="lines+markers", line_shape="hv",
                    name="Pareto front", text=[f"trial {p[2].get('trial', '?')}" for p in points],
                    marker={"size": 10})
    return _layout(fig, f"Pareto front: {first} against {second}", second, first)


def objective_value(row: dict[str, Any], name: str, position: int) -> float | None:
    """A row's value of an objective: under its own name; for a leaderboard row, ``score`` for the first (the
    metric) and ``fairness_gap`` for the second (the gap of a metric-fairness front)."""
    for key in (name, *(("score",) if position == 0 else ("fairness_gap",))):
        if _number(row.get(key)):
            return float(row[key])
    values = row.get("values")  # a row may carry its objective values as a list, in the objectives' order
    if isinstance(values, list) and position < len(values) and _number(values[position]):
        return float(values[position])
    return None


def group_label(row: dict[str, Any]) -> str:
    """A fairness row's group: ``sex=Female`` for a row of one column, else its text fields; a group too small
    to constrain says so."""
    small = f" (small: {row['count']} rows)" if row.get("small") is True and _number(row.get("count")) else ""
    if isinstance(row.get("column"), str) and isinstance(row.get("group"), str):
        return f"{row['column']}={row['group']}{small}"
    return _text_label(row) + small


def _text_label(row: dict[str, Any]) -> str:
    parts = [str(v) if k in ("group", "name") else f"{k}={v}" for k, v in row.items() if isinstance(v, str)]
    if isinstance(row.get("group"), dict):  # an intersectional group: {column: value}
        parts.extend(f"{k}={v}" for k, v in row["group"].items())
    elif isinstance(row.get("group"), list):
        parts.append(" & ".join(map(str, row["group"])))
    return ", ".join(parts) or "?"


def _bars_height(n_bars: int) -> int:
    """A horizontal bar chart's height: bars of a readable thickness, however many there are."""
    return max(220, 120 + 24 * n_bars)


def _numeric_keys(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k, v in r.items() if _number(v) and k not in keys)
    return keys


def _curve_classes(fp: FinalPredictions) -> list[tuple[int, str]]:
    if fp.pred.shape[1] == 2:
        return [(1, _label(fp, 1))]
    counts = np.bincount(fp.y, minlength=fp.pred.shape[1])
    biggest = sorted(np.argsort(-counts)[:MAX_ROC_CLASSES].tolist())
    return [(code, _label(fp, code)) for code in biggest]


def _label(fp: FinalPredictions, code: int) -> str:
    return str(fp.classes[code]) if fp.classes is not None and code < len(fp.classes) else str(code)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
