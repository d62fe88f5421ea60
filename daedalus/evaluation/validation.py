"""Validation plans: which rows train and which rows score each fold.

The plan is chosen from the data size, as AutoGluon and FLAML do: k-fold cross-validation while the data is
small (every row gets an out-of-fold prediction, and the fold models form a bag), a single holdout once it is
large enough for one split to be trustworthy and k fits to be too dear. Both are stratified for
classification. A plan is fixed by its seed, so a resumed run scores trials on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
    train_test_split,
)

from daedalus.data.schema import Task
from daedalus.errors import DataError

KFOLD_MAX_ROWS = 5_000  # up to here: 5-fold CV
THREEFOLD_MAX_ROWS = 12_000  # up to here: 3-fold CV; above: one 20% holdout
HOLDOUT_SHARE = 0.2
MIN_ROWS = 10


@dataclass(frozen=True)
class ValidationPlan:
    kind: str  # "kfold" or "holdout"
    folds: tuple[tuple[np.ndarray, np.ndarray], ...]  # (train rows, validation rows) per fold
    n_rows: int

    @property
    def scored_index(self) -> np.ndarray:
        """Rows that get an out-of-fold prediction, sorted. All rows for k-fold, the holdout otherwise."""
        return np.sort(np.concatenate([val for _, val in self.folds]))

    def describe(self) -> str:
        if self.kind == "kfold":
            return f"{len(self.folds)}-fold cross-validation on {self.n_rows} rows"
        return f"holdout of {len(self.folds[0][1])} of {self.n_rows} rows"


def make_plan(y: np.ndarray, task: Task, seed: int, kind: str | None = None) -> ValidationPlan:
    """Pick and build the plan for targets ``y`` (integer codes for classification)."""
    n = len(y)
    if n < MIN_ROWS:
        raise DataError(f"only {n} rows have a target value; the validation needs at least {MIN_ROWS}; "
                        "provide more rows")
    if kind is None:
        kind = "kfold" if n <= THREEFOLD_MAX_ROWS else "holdout"
    n_splits = 5 if n <= KFOLD_MAX_ROWS else 3
    stratify = task.is_classification
    if stratify:
        counts = np.bincount(y)
        smallest = int(counts[counts > 0].min())
        if smallest >= 2:
            n_splits = min(n_splits, smallest)
        else:
            # A class seen once cannot be in every fold; plain shuffled folds still validate honestly
            # (the data checks report the rare class).
            stratify = False
    idx = np.arange(n)
    if kind == "kfold":
        splitter = (StratifiedKFold(n_splits, shuffle=True, random_state=seed) if stratify
                    else KFold(n_splits, shuffle=True, random_state=seed))
        folds = tuple(splitter.split(idx, y))
    elif kind == "holdout":
        hold = (StratifiedShuffleSplit(1, test_size=HOLDOUT_SHARE, random_state=seed) if stratify
                else ShuffleSplit(1, test_size=HOLDOUT_SHARE, random_state=seed))
        folds = tuple(hold.split(idx, y))
    else:
        raise ValueError(kind)
    return ValidationPlan(kind=kind, folds=tuple((np.asarray(a), np.asarray(b)) for a, b in folds), n_rows=n)


def stratified_subset(y: np.ndarray, classification: bool, rows: int, seed: int) -> np.ndarray:
    """The sorted positions of ``rows`` of ``y``'s rows, drawn with ``seed``: stratified on the class, or on the
    deciles of a numeric target; plain random when a class is too rare to stratify on. All rows when ``rows``
    covers them."""
    if rows >= len(y):
        return np.arange(len(y))
    deciles = None if classification else pd.qcut(pd.Series(y), 10, labels=False, duplicates="drop").to_numpy()
    strata = np.asarray(y) if deciles is None else deciles
    counts = np.bincount(strata.astype(np.int64))
    stratify = strata if counts[counts > 0].min() >= 2 else None
    picked, _ = train_test_split(np.arange(len(y)), train_size=rows, random_state=seed, stratify=stratify)
    return np.sort(picked)
