""""Why this model": the chosen model against the runners-up, with paired bootstrap confidence intervals.

All candidates are scored on the same rows (the run's out-of-fold predictions, ``RunStore.oof_path(N)``, on the
validation plan's scored rows), so each bootstrap resample draws one set of rows and scores every candidate
on it. The interval of a *difference* then reflects only how the models differ on the same rows, which is
much narrower than comparing two separate intervals. For classification the resampling is stratified by
class, so that every resample holds every class (AUC is undefined on one class).

A difference is called significant when its 95% percentile interval excludes zero. The ensemble's weights
were chosen on these same predictions, so its score (and its advantage) is slightly optimistic; the
statement says so.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from daedalus.evaluation.metrics import Metric

CONFIDENCE = 0.95
MIN_RESAMPLES = 100
MAX_RESAMPLES = 1000


@dataclass(frozen=True)
class Candidate:
    label: str  # e.g. "ensemble" or "trial 3 (lightgbm)"
    trial: int | None
    family: str
    oof: np.ndarray  # predictions on the scored rows, in the order of ``y``


def _resample_indices(y: np.ndarray, classification: bool, rng: np.random.Generator) -> np.ndarray:
    if not classification:
        return rng.integers(0, len(y), len(y))
    parts = [rng.choice(np.flatnonzero(y == c), size=int((y == c).sum()), replace=True) for c in np.unique(y)]
    return np.concatenate(parts)


def _interval(values: np.ndarray) -> list[float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def resamples_affordable(candidates: list[Candidate], y: np.ndarray, metric: Metric, seconds: float) -> int:
    """How many resamples fit in ``seconds`` (one timed scoring of every candidate sets the rate); 0 when
    not even :data:`MIN_RESAMPLES` fit."""
    t0 = time.perf_counter()
    for c in candidates:
        metric(y, c.oof)
    per_resample = max(time.perf_counter() - t0, 1e-6) * 1.2  # indexing the resample costs a little more
    n = int(seconds / per_resample)
    return 0 if n < MIN_RESAMPLES else min(n, MAX_RESAMPLES)


def compare(chosen: Candidate, runners_up: list[Candidate], y: np.ndarray, metric: Metric,
            classification: bool, n_resamples: int = MAX_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The "why" record of ``explanations.json`` (see ``explain.py`` for its fields)."""
    rng = np.random.default_rng(seed)
    everyone = [chosen, *runners_up]
    scores = np.full((n_resamples, len(everyone)), np.nan)
    for b in range(n_resamples):
        idx = _resample_indices(y, classification, rng)
        for k, c in enumerate(everyone):
            with contextlib.suppress(ValueError):  # undefined on this resample (e.g. one class): left out
                scores[b, k] = metric(y[idx], c.oof[idx])
    scores = scores[~np.isnan(scores).any(axis=1)]
    sign = 1.0 if metric.greater_is_better else -1.0

    def entry(k: int, c: Candidate) -> dict[str, Any]:
        return {"label": c.label, "trial": c.trial, "family": c.family, "score": float(metric(y, c.oof)),
                "ci": _interval(scores[:, k])}

    rows = []
    for k, c in enumerate(runners_up, start=1):
        advantage = sign * (scores[:, 0] - scores[:, k])  # > 0: the chosen model did better on the resample
        interval = _interval(advantage)
        rows.append({**entry(k, c), "advantage": sign * (metric(y, chosen.oof) - metric(y, c.oof)),
                     "advantage_ci": interval, "significant": bool(interval[0] > 0 or interval[1] < 0),
                     "share_chosen_better": float(np.mean(advantage > 0))})
    result = {"metric": metric.name, "greater_is_better": metric.greater_is_better, "rows": int(len(y)),
              "resamples": int(len(scores)), "confidence": CONFIDENCE,
              "method": "paired bootstrap over the out-of-fold predictions of every candidate on the same "
                        "resampled rows" + (", stratified by class" if classification else ""),
              "chosen": entry(0, chosen), "runners_up": rows}
    result["statement"] = statement(result)
    return result


def _fmt(x: float) -> str:
    text = f"{x:.4f}"
    return "0.0000" if text == "-0.0000" else text  # a rounding residue of two equal scores


def statement(why: dict[str, Any]) -> str:
    """Plain English: why the chosen model, and which differences the data cannot tell apart."""
    chosen, metric = why["chosen"], why["metric"]
    pct = int(why["confidence"] * 100)
    lead = (f"The {chosen['label']} was chosen because it had the best validation {metric}, "
            f"{_fmt(chosen['score'])} ({pct}% CI {_fmt(chosen['ci'][0])} to {_fmt(chosen['ci'][1])}, "
            f"{why['resamples']} paired bootstrap resamples of {why['rows']} rows).")
    if not why["runners_up"]:
        return lead + " There was no runner-up to compare it with."
    parts = [lead]
    for r in why["runners_up"]:
        lo, hi = r["advantage_ci"]
        if r["significant"] and lo > 0:
            parts.append(f"It is significantly better than {r['label']} ({_fmt(r['score'])}): the advantage of "
                         f"{_fmt(r['advantage'])} has a {pct}% interval of {_fmt(lo)} to {_fmt(hi)}.")
        elif r["significant"]:
            parts.append(f"It is significantly worse on these rows than {r['label']} ({_fmt(r['score'])}): "
                         f"the advantage of {_fmt(r['advantage'])} has a {pct}% interval of {_fmt(lo)} to "
                         f"{_fmt(hi)}.")
        else:
            parts.append(f"The difference from {r['label']} ({_fmt(r['score'])}) is not statistically "
                         f"significant: the advantage of {_fmt(r['advantage'])} has a {pct}% interval of "
                         f"{_fmt(lo)} to {_fmt(hi)}, which includes zero, so on this data the two cannot be "
                         "told apart.")
    if chosen["trial"] is None:
        parts.append("The ensemble's weights were chosen on these same predictions, so its score and its "
                     "advantages are slightly optimistic.")
    return " ".join(parts)
