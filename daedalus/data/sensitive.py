"""Sensitive columns: declared by the user (``--sensitive sex,race``), audited for fairness, and left out of
the features unless ``--use-sensitive``.

Their values travel beside the features in two forms:
- the *audit frame* (:func:`sensitive_frame`): one canonical-string column per sensitive column, row-aligned
  with the training rows, from which per-group and intersectional metrics are computed;
- *carried columns* (:func:`with_sensitive_columns`): the same values appended to a prepared feature frame
  under reserved names (``__sensitive__sex``). Fairness mitigations (``spaces.mitigation``) need the groups
  when they are fit (and ThresholdOptimizer when it predicts); every model family's preprocessing selects its
  own columns by name, so the carried columns reach only the estimators that look for them.

A row's *group* is the combination of its values in all sensitive columns (``Female & Black``), so a
difference between groups is an intersectional one; a missing value is a group of its own.

**Small groups.** A group with fewer than ``MIN_FIT_ROWS`` rows is too small for a mitigation to fit a rule of
its own on (a per-group threshold learnt from 10 rows, or an ExponentiatedGradient constraint on them, fits
their noise): :func:`pool_small_groups` merges such groups into one pooled group for fitting. Whether a group is
large enough to *measure* a fairness gap on is a separate question, answered in ``oversight.fairness``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from daedalus.data.schema import Schema
from daedalus.data.values import canonical_strings
from daedalus.errors import ConfigError, DataError

SENSITIVE_PREFIX = "__sensitive__"
SENSITIVE_REASON = "sensitive"  # the reason recorded in ``Schema.dropped``
MISSING_GROUP = "(missing)"
GROUP_JOIN = " & "
MIN_FIT_ROWS = 30  # groups with fewer rows are pooled when a mitigation is fit (and too small to audit alone)
POOLED_GROUP = "(small groups pooled)"


def mark_sensitive(schema: Schema, columns: Sequence[str], use_as_features: bool) -> Schema:
    """``schema`` with ``columns`` recorded as sensitive and, unless ``use_as_features``, dropped from the
    features with the reason "sensitive". An unknown column, or the target, is a ConfigError."""
    columns = tuple(dict.fromkeys(c.strip() for c in columns if c.strip()))
    if not columns:
        return schema
    known = {c.name for c in schema.columns}
    unknown = [c for c in columns if c not in known and c != schema.target]
    if unknown:
        raise ConfigError(f"sensitive column(s) {', '.join(repr(c) for c in unknown)} not found in the data; "
                          f"fix the names given to --sensitive (columns: {', '.join(sorted(known)[:20])})")
    if schema.target in columns:
        raise ConfigError(f"the target column '{schema.target}' cannot be sensitive; remove it from --sensitive")
    dropped = dict(schema.dropped)
    if not use_as_features:
        for name in columns:
            dropped.setdefault(name, SENSITIVE_REASON)
    return replace(schema, sensitive=columns, dropped=dropped)


def sensitive_frame(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The audit frame: each sensitive column as canonical strings, missing values as their own group."""
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise DataError(f"the data lacks sensitive column(s) {', '.join(repr(c) for c in absent)}; add them")
    return pd.DataFrame({c: canonical_strings(df[c]).fillna(MISSING_GROUP).astype(object) for c in columns},
                        index=df.index)


def group_labels(frame: pd.DataFrame) -> np.ndarray:
    """One label per row: its values in all columns of ``frame`` joined (the intersectional group)."""
    if frame.shape[1] == 0:
        raise ValueError("no sensitive column to form groups from")
    values = frame.astype(str).fillna(MISSING_GROUP)
    joined = values.iloc[:, 0]
    for name in values.columns[1:]:
        joined = joined + GROUP_JOIN + values[name]
    return joined.to_numpy(dtype=object)


def pool_small_groups(groups: np.ndarray, min_rows: int = MIN_FIT_ROWS,
                      y: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """``groups`` with every group of fewer than ``min_rows`` rows (or, given labels ``y``, whose rows all have
    one label) relabelled ``POOLED_GROUP``, and the names of the groups pooled (sorted). Nothing is pooled when
    no group is small."""
    groups = np.asarray(groups, dtype=object)
    text = groups.astype(str)
    names, counts = np.unique(text, return_counts=True)
    small = sorted(str(g) for g, c in zip(names, counts, strict=True)
                   if c < min_rows or (y is not None and len(np.unique(np.asarray(y)[text == g])) < 2))
    if not small:
        return groups, []
    pooled = groups.copy()
    pooled[np.isin(text, small)] = POOLED_GROUP
    return pooled, small


def carried_names(columns: Sequence[str]) -> list[str]:
    return [SENSITIVE_PREFIX + c for c in columns]


def with_sensitive_columns(features: pd.DataFrame, audit: pd.DataFrame) -> pd.DataFrame:
    """``features`` with the audit frame's columns appended under their reserved names."""
    carried = audit.set_axis(carried_names(list(audit.columns)), axis=1)
    carried.index = features.index
    return pd.concat([features, carried], axis=1)


def carried_groups(X: pd.DataFrame) -> np.ndarray | None:
    """The group labels carried in a feature frame, or None when it carries no sensitive column."""
    names = [c for c in X.columns if isinstance(c, str) and c.startswith(SENSITIVE_PREFIX)]
    if not names:
        return None
    return group_labels(X[names])


def carry_for_prediction(features: pd.DataFrame, raw: pd.DataFrame, columns: Sequence[str],
                         required: bool) -> pd.DataFrame:
    """``features`` with the sensitive columns carried when ``raw`` has them all. A model that needs them to
    predict (``required``: fairness post-processing with per-group thresholds) fails clearly without them."""
    missing = [c for c in columns if c not in raw.columns]
    if not missing:
        return with_sensitive_columns(features, sensitive_frame(raw, columns))
    if required:
        raise DataError(f"this model applies per-group thresholds (Fairlearn's ThresholdOptimizer), so it needs "
                        f"the sensitive column(s) {', '.join(repr(c) for c in missing)} to predict; add them")
    return features
