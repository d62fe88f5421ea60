"""Turning a raw frame into the prepared feature frame that every model family consumes.

The same function runs at build time and at predict time, driven only by the saved schema, so a model sees
identical columns, dtypes and value spellings in both. Unseen categories and missing values pass through:
the model pipelines handle them.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from daedalus.data.schema import ColumnKind, FeatureLayout, Schema
from daedalus.data.values import (
    boolean_values,
    canonical_strings,
    check_not_nested,
    epoch_days,
    non_numbers,
    numeric_values,
    parse_datetimes,
)
from daedalus.errors import DataError

# Numeric parts a datetime column expands into: "<col>__<part>".
DATETIME_PARTS: tuple[str, ...] = ("year", "month", "day", "dayofweek", "hour", "days")


def feature_layout(schema: Schema) -> FeatureLayout:
    """The prepared frame's columns, grouped for the models: numeric, then categorical, then text."""
    numeric: list[str] = []
    categorical: list[str] = []
    text: list[str] = []
    kinds = {c.name: c.kind for c in schema.columns}  # Schema.kind_of scans the columns: slow on wide data
    for name in schema.feature_columns:
        kind = kinds[name]
        if kind in (ColumnKind.NUMERIC, ColumnKind.BOOLEAN):
            numeric.append(name)
        elif kind is ColumnKind.DATETIME:
            numeric.extend(f"{name}__{part}" for part in DATETIME_PARTS)
        elif kind is ColumnKind.CATEGORICAL:
            categorical.append(name)
        elif kind is ColumnKind.TEXT:
            text.append(name)
    clashes = sorted(c for c, n in Counter(numeric + categorical + text).items() if n > 1)
    if clashes:  # e.g. a column "d__year" next to a date column "d" that expands into "d__year"
        raise DataError(f"column name(s) {', '.join(repr(c) for c in clashes)} clash with the parts a date column "
                        f"expands into; rename those columns")
    return FeatureLayout(numeric=tuple(numeric), categorical=tuple(categorical), text=tuple(text))


def prepare_features(df: pd.DataFrame, schema: Schema, *, strict_numbers: bool = False) -> pd.DataFrame:
    """The prepared feature frame (columns ``feature_layout(schema).columns``, index of ``df``).

    Columns of ``df`` that the schema does not use (extra columns, dropped columns, the target) are ignored;
    a needed column that is absent, or holds nested values (lists, dicts), raises DataError.
    ``strict_numbers`` (new rows at predict time): a numeric column's cell that is not a number, and not one of
    the spellings of missing seen in training (``ColumnInfo.missing_words``), raises DataError naming the
    column and values, instead of being read as missing: "12,5" or "n.a." would otherwise change predictions
    unseen.
    """
    needed = schema.feature_columns
    # Frames built from arrays may carry non-string column names (0, 1, ...); the schema stores strings.
    by_text = {str(c): c for c in df.columns} if not all(isinstance(c, str) for c in df.columns) else {}
    source = {name: name if name in df.columns else by_text.get(name) for name in needed}
    absent = [name for name, column in source.items() if column is None]
    if absent:
        shown = ", ".join(f"'{c}'" for c in absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        raise DataError(f"the data lacks column(s) {shown} that the model needs; add them (values may be empty)")

    parts: dict[str, pd.Series] = {}
    infos = {c.name: c for c in schema.columns}
    for name in needed:
        s = df[source[name]]
        if isinstance(s, pd.DataFrame):  # a repeated column name selects several columns
            raise DataError(f"the data has more than one column named '{name}'; keep one of them")
        check_not_nested(s, name, "the model needs it as a plain column: flatten it")
        kind = infos[name].kind
        if kind is ColumnKind.NUMERIC:
            parts[name] = numeric_values(s)
            if strict_numbers:
                _check_numbers(name, s, parts[name], infos[name].missing_words)
        elif kind is ColumnKind.BOOLEAN:
            parts[name] = boolean_values(s)
        elif kind is ColumnKind.DATETIME:
            parts.update(_datetime_parts(name, s))
        elif kind is ColumnKind.CATEGORICAL:
            parts[name] = canonical_strings(s)
        elif kind is ColumnKind.TEXT:
            parts[name] = canonical_strings(s).fillna("").astype(object)

    layout = feature_layout(schema)
    out = pd.DataFrame(parts, index=df.index)
    return out[list(layout.columns)]


def _check_numbers(name: str, s: pd.Series, values: pd.Series, allowed: tuple[str, ...]) -> None:
    bad = non_numbers(s, values, frozenset(allowed))
    if bad:
        n = int(canonical_strings(s).str.strip().isin(bad).sum())
        shown = ", ".join(repr(b[:40]) for b in bad[:5])
        raise DataError(f"numeric column '{name}' holds {n} value(s) that are not numbers ({shown}); fix them or "
                        "leave those cells empty, or pass --non-numeric-as-missing to predict them as missing")


def _datetime_parts(name: str, s: pd.Series) -> dict[str, pd.Series]:
    ts = parse_datetimes(s)
    parts = {
        "year": ts.dt.year,
        "month": ts.dt.month,
        "day": ts.dt.day,
        "dayofweek": ts.dt.day_of_week,
        "hour": ts.dt.hour,
        "days": epoch_days(ts),
    }
    return {f"{name}__{part}": values.astype("float64") for part, values in parts.items()}
