"""Single-column predictive scores, used to spot target leaks.

A column that predicts the target almost perfectly *on its own* is, far more often than not, computed from
the target or recorded after it (a leak). Each feature column is scored alone, out of fold:

1. a screen for every column: a lookup table from the column's value to the target (mean target per value,
   or majority class), learned on the other folds. Numbers with many values are cut into quantile bins
   first; missing is a value of its own (missingness can leak too). For regression the screen also takes
   |Spearman correlation|, which catches monotone transforms of the target even with heavy tails.
2. a small decision tree on the raw number, for the numeric columns that screened highest: it finds the
   exact thresholds that binning blurs. Only the top few get a tree so that wide data stays fast.

Scores: ROC AUC (binary), accuracy (multiclass), R² or |Spearman| (regression), all out of fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from daedalus.data.infer import prepare_target
from daedalus.data.schema import ColumnKind, Schema, Task
from daedalus.data.values import boolean_values, canonical_strings, epoch_days, numeric_values

MAX_ROWS = 5000  # a leak shows in a few thousand rows as clearly as in millions
MAX_CELLS = 1_000_000  # wide data gets fewer rows (down to MIN_WIDE_ROWS) to keep the check fast
MIN_WIDE_ROWS = 1000
MIN_ROWS = 30
FOLDS = 3
EXACT_MAX_VALUES = 64  # numbers with at most this many distinct values are looked up exactly
BINS = 128
TREE_COLUMNS = 16  # how many of the best-screening numeric columns also get a tree
TREE_DEPTH = 8
TREE_LEAVES = 64  # multiclass trees: at least this many leaves, and two per class


class LeakScorer:
    def __init__(self, task: Task, y: np.ndarray, folds: np.ndarray, seed: int) -> None:
        if not task.is_classification:
            # Every score here (R², Spearman) ignores the target's scale: dividing by its largest magnitude keeps
            # the sums and squares of huge targets (1e300) from overflowing (found by tests/test_fuzz_inputs.py).
            y = y / (float(np.max(np.abs(y))) or 1.0)
        self.task, self.y, self.seed = task, y, seed
        self.splits = [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(FOLDS)]
        self.y_int = y.astype(np.int64) if task.is_classification else y
        self.n_classes = int(y.max()) + 1 if task.is_classification else 0
        self.leaves = max(TREE_LEAVES, 2 * self.n_classes)
        # Multiclass accuracy must beat always guessing the majority class by a wide margin to be a leak.
        self.baseline = float(np.bincount(y.astype(int)).max() / len(y)) if task is Task.MULTICLASS else 0.0

    def is_leak(self, score: float, threshold: float) -> bool:
        if self.task is Task.MULTICLASS:
            return score >= threshold and score >= self.baseline + 0.9 * (1 - self.baseline)
        return score >= threshold

    def lookup_score(self, codes: np.ndarray) -> float:
        """Out-of-fold score of predicting the target from a value code alone (codes 0..m-1)."""
        n_codes = int(codes.max()) + 1
        pred = np.zeros(len(codes))
        for train, test in self.splits:
            if self.task is Task.MULTICLASS:
                k = self.n_classes
                counts = np.bincount(codes[train] * k + self.y_int[train], minlength=n_codes * k).reshape(n_codes, k)
                # Values unseen in training fall back to the majority class: a tiny prior breaks the tie.
                table = counts + 1e-6 * np.bincount(self.y_int[train], minlength=k)
                pred[test] = table[codes[test]].argmax(axis=1)
            else:
                sums = np.bincount(codes[train], weights=self.y[train].astype(float), minlength=n_codes)
                counts = np.bincount(codes[train], minlength=n_codes)
                prior = float(self.y[train].mean())
                pred[test] = (sums[codes[test]] + prior) / (counts[codes[test]] + 1.0)  # smoothed mean
        return self.metric(pred)

    def tree_score(self, x: np.ndarray) -> float:
        """Out-of-fold score of a small tree on one numeric column (NaN allowed: trees route it)."""
        pred = np.zeros(len(x))
        X = x.reshape(-1, 1)
        for train, test in self.splits:
            tree: DecisionTreeClassifier | DecisionTreeRegressor
            # Multiclass trees are bounded by leaf count, not depth: greedy splits peel off one class at a
            # time, so a depth limit would miss a perfect leak of a 26-class target. Depth is the faster
            # bound (depth-first builder) and suffices for the other tasks.
            if self.task is Task.MULTICLASS:
                tree = DecisionTreeClassifier(max_leaf_nodes=self.leaves, min_samples_leaf=3, random_state=self.seed)
            elif self.task is Task.BINARY:
                tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, min_samples_leaf=3, random_state=self.seed)
            else:
                tree = DecisionTreeRegressor(max_depth=TREE_DEPTH, min_samples_leaf=3, random_state=self.seed)
            tree.fit(X[train], self.y[train])
            if self.task is Task.BINARY:
                proba = tree.predict_proba(X[test])
                pred[test] = proba[:, -1] if proba.shape[1] == 2 else float(tree.classes_[0])
            else:
                pred[test] = tree.predict(X[test])
        return self.metric(pred)

    def rank_correlation(self, x: np.ndarray) -> float:
        """|Spearman| between a column and the target, scaled by the share of rows where it is present."""
        present = ~np.isnan(x)
        if present.sum() < MIN_ROWS or np.unique(x[present]).size < 2:
            return 0.0
        rho = np.corrcoef(rankdata(x[present]), rankdata(self.y[present]))[0, 1]
        return 0.0 if np.isnan(rho) else float(abs(rho) * present.mean())

    def metric(self, pred: np.ndarray) -> float:
        if self.task is Task.BINARY:
            return _roc_auc(self.y, pred)
        if self.task is Task.MULTICLASS:
            return float(np.mean(pred == self.y))
        total = float(np.sum((self.y - self.y.mean()) ** 2))
        return 1.0 - float(np.sum((self.y - pred) ** 2)) / total if total > 0 else 0.0


def single_column_scores(df: pd.DataFrame, schema: Schema, seed: int = 0) -> tuple[dict[str, float], LeakScorer] | None:
    """Each feature column's out-of-fold score alone, or None when there are too few rows to judge."""
    data = df.loc[df[schema.target].notna()]
    if len(data) < MIN_ROWS:
        return None
    rng = np.random.default_rng(seed)
    max_rows = min(MAX_ROWS, max(MIN_WIDE_ROWS, MAX_CELLS // max(1, len(schema.feature_columns))))
    if len(data) > max_rows:
        data = data.iloc[np.sort(rng.choice(len(data), max_rows, replace=False))]
    y = prepare_target(data[schema.target], schema)
    scorer = LeakScorer(schema.task, y, rng.permutation(len(data)) % FOLDS, seed)

    scores: dict[str, float] = {}
    numbers: dict[str, np.ndarray] = {}
    kinds = {c.name: c.kind for c in schema.columns}
    for name in schema.feature_columns:
        kind = kinds[name]
        if kind in (ColumnKind.CATEGORICAL, ColumnKind.TEXT):
            codes = pd.factorize(canonical_strings(data[name]), use_na_sentinel=False)[0]
            scores[name] = scorer.lookup_score(codes)
            continue
        convert = {ColumnKind.BOOLEAN: boolean_values, ColumnKind.DATETIME: epoch_days}.get(kind, numeric_values)
        x = convert(data[name]).to_numpy(dtype="float64")
        codes, binned = _value_codes(x)
        scores[name] = scorer.lookup_score(codes)
        if schema.task is Task.REGRESSION:
            scores[name] = max(scores[name], scorer.rank_correlation(x))
        if binned:
            numbers[name] = x  # a tree may find sharper thresholds than the bins
    best = sorted(numbers, key=lambda n: scores[n], reverse=True)[:TREE_COLUMNS]
    for name in best:
        scores[name] = max(scores[name], scorer.tree_score(numbers[name]))
    return scores, scorer


def _value_codes(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Codes 0..m-1 for a numeric column: exact values when few, else quantile bins (then the flag is True).
    NaN gets a code of its own."""
    missing = np.isnan(x)
    ordered = np.sort(x[~missing])
    distinct = ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered
    binned = distinct.size > EXACT_MAX_VALUES
    # Few values: one code each. Many: bin edges at (lower) quantiles, read off the already sorted values.
    edges = np.unique(ordered[(np.arange(1, BINS) * ordered.size) // BINS]) if binned else distinct[1:]
    codes = np.searchsorted(edges, x, side="right")
    codes[missing] = edges.size + 1
    return codes, binned


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC via the rank-sum (Mann-Whitney) formula; ties count one half. 0.5 if a class is absent."""
    positive = y == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
