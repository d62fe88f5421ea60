"""Inferring the task and the schema (what each column is) from a raw DataFrame.

Rules, in the order they are tried for a column (the first that matches wins; a user's ``column_kinds``
override wins over all of them):

1. CONSTANT: at most one distinct value, *counting missing as a value*, so a column that is either "x" or
   empty is kept (its missingness can carry signal).
2. BOOLEAN: bool dtype, or text whose two values are a true-word and a false-word (yes/no, true/false,
   t/f, y/n, "1"/"0"). Numeric 0/1 columns stay NUMERIC: models see the same 0/1 floats either way.
3. CATEGORICAL for pandas ``category`` columns; DATETIME for datetime64 columns.
4. NUMERIC for numeric columns and for text where ≥ 95% of values parse as numbers (numbers stored as text),
   unless the values are an ID (below). Text with leading zeros ("02134") stays text: it is a code.
5. DATETIME for text where ≥ 95% of sampled values carry a 4-digit year and parse as dates.
6. TEXT for text with ≥ 20 distinct values, ≥ 30% of values distinct, and ≥ 4 words on average.
7. ID (dropped) for ≥ 50 non-missing values of which ≥ 99% are distinct, and either text, or integers that
   are named like an id (id, key, number, order, ...) or form a row counter (consecutive or sorted).
   Integer-valued floats count as integers; other floats (measurements) are never IDs.
8. CATEGORICAL otherwise.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_complex_dtype,
    is_datetime64_any_dtype,
    is_numeric_dtype,
    is_timedelta64_dtype,
)

from daedalus.data.schema import ColumnInfo, ColumnKind, Schema, Task
from daedalus.data.values import (
    canonical_str,
    canonical_strings,
    check_not_nested,
    is_text_dtype,
    looks_boolean,
    looks_datetime,
    missing_share,
    nested,
    non_numbers,
    numeric_values,
    object_as_numbers,
    python_scalar,
    text_as_numbers,
)
from daedalus.errors import ConfigError, DataError

# Integer targets are class labels when they look like label codes: consecutive values starting at 0 or 1
# (0..k-1 or 1..k), at most this many. Other integers (counts, prices, ratings such as wine quality 3..9)
# are regression targets. The user can always pass the task explicitly.
MAX_CODED_CLASSES = 50

MAX_MISSING_WORDS = 100  # non-number spellings of missing kept per numeric column (see ColumnInfo)
ID_MIN_ROWS = 50
ID_UNIQUE_SHARE = 0.99
ID_NAME_TOKENS = frozenset({"id", "ids", "pid", "uid", "uuid", "guid", "key", "index", "idx", "no", "nr",
                            "num", "number", "order"})
TEXT_MIN_DISTINCT = 20
TEXT_DISTINCT_SHARE = 0.3
TEXT_MIN_WORDS = 4.0

DROP_REASONS = {
    "id": "id-like: unique per row",
    "constant": "constant",
    "user": "dropped by user",
}


# --------------------------------------------------------------------------------------------- the task


def infer_task(y: pd.Series) -> Task:
    """The task a target column implies (see MAX_CODED_CLASSES for the integer rule)."""
    values = y.dropna()
    n_labels = _count_labels(y)
    if n_labels == 2:
        return Task.BINARY
    numbers = _target_numbers(values)
    if numbers is None:
        if n_labels > 50 and n_labels > 0.5 * len(values):
            raise DataError(f"target column '{y.name}' has {n_labels} distinct text values in {len(values)} rows, "
                            f"which looks like an id or free text rather than a label; choose a different target "
                            f"column, or pass --task regression if it holds numbers")
        return Task.MULTICLASS
    if not np.all(np.mod(numbers, 1) == 0):
        return Task.REGRESSION
    distinct = np.unique(numbers)
    lowest = distinct[0]
    is_label_code = (len(distinct) <= MAX_CODED_CLASSES and lowest in (0, 1)
                     and distinct[-1] - lowest == len(distinct) - 1)
    return Task.MULTICLASS if is_label_code else Task.REGRESSION


def check_finite_target(y: pd.Series, target: str) -> None:
    """Refuse a numeric target with infinite values (inf, -inf, "inf" text): every model and metric fails on
    them (before this check: 45 warnings, a run directory, and every trial failing)."""
    numbers = pd.to_numeric(y, errors="coerce") if not is_bool_dtype(y.dtype) else None
    if numbers is None or is_complex_dtype(numbers.dtype):
        return
    infinite = np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        rows = ", ".join(str(r) for r in np.flatnonzero(infinite)[:5] + 1)
        raise DataError(f"target column '{target}' holds {int(infinite.sum())} infinite value(s) (data row(s) "
                        f"{rows}{', ...' if infinite.sum() > 5 else ''}); a target must be finite: fix those rows "
                        "or remove them")


def _count_labels(y: pd.Series) -> int:
    """The number of distinct target values; rejects targets with fewer than two."""
    labels = canonical_strings(y.dropna()).unique()
    if len(labels) == 0:
        raise DataError(f"target column '{y.name}' has no values; choose a column that holds the values to predict")
    if len(labels) == 1:
        raise DataError(f"target column '{y.name}' holds the single value {labels[0]!r} in every row, so there is "
                        f"nothing to predict; choose a different target column")
    return len(labels)


def _target_numbers(values: pd.Series) -> np.ndarray | None:
    """The non-missing target values as floats when they are numbers (not bools or text), else None."""
    if is_bool_dtype(values.dtype) or isinstance(values.dtype, pd.CategoricalDtype):
        return None
    if is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype="float64")
    numbers = object_as_numbers(values)
    return None if numbers is None else numbers.to_numpy(dtype="float64")


def target_classes(y: pd.Series) -> tuple[object, ...]:
    """Distinct non-missing labels as Python scalars, in natural order (numbers numerically)."""
    by_key: dict[str, object] = {}
    for value in y.dropna().unique():
        by_key.setdefault(canonical_str(value), python_scalar(value))  # 1 and 1.0 are one class
    labels = list(by_key.values())
    if all(isinstance(v, (int, float)) for v in labels):  # bools are ints, so they sort too
        return tuple(sorted(labels))  # type: ignore[type-var]
    return tuple(sorted(labels, key=str))


def _checked_task(y: pd.Series, task: Task | str) -> Task:
    """A task the user chose, checked against the target's values."""
    try:
        task = Task(task)
    except ValueError:
        raise ConfigError(f"unknown task '{task}'; use one of binary, multiclass, regression") from None
    n_classes = _count_labels(y)
    if task is Task.BINARY and n_classes != 2:
        raise DataError(f"task 'binary' needs a target with 2 classes but '{y.name}' has {n_classes}; "
                        f"pass --task multiclass or regression instead")
    if task is Task.MULTICLASS and n_classes == 2:
        raise DataError(f"target column '{y.name}' has 2 classes; pass --task binary instead of multiclass")
    if task is Task.REGRESSION:
        values = y.dropna()
        parsed = values.astype("float64") * np.nan if is_bool_dtype(y.dtype) else pd.to_numeric(values, errors="coerce")
        if parsed.isna().any():  # booleans are labels, never amounts: all of them count as non-numeric
            bad = values[parsed.isna()].iloc[0]
            raise DataError(f"task 'regression' needs a numeric target but '{y.name}' holds values such as "
                            f"{bad!r}; choose a numeric target column or a classification task")
    return task


# ------------------------------------------------------------------------------------------- the schema


def infer_schema(
    df: pd.DataFrame,
    target: str,
    *,
    task: Task | str | None = None,
    column_kinds: Mapping[str, ColumnKind | str] | None = None,
    drop: Sequence[str] = (),
    keep: Sequence[str] = (),
) -> Schema:
    """Infer the schema of ``df`` for predicting ``target``. Rows are not touched (see drop_missing_target).

    ``task`` and ``column_kinds`` override inference; ``drop`` removes columns; ``keep`` keeps columns that
    inference or the checks would drop (an id-like column kept becomes numeric or categorical).
    """
    require_columns(df, [target], what="target column", hint="pass --target with one of the file's columns")
    kinds = _checked_kinds(df, target, column_kinds or {})
    drop, keep = tuple(drop), tuple(keep)
    for names, flag in ((drop, "--drop"), (keep, "--keep")):
        require_columns(df, names, what=f"column(s) given to {flag}", hint=f"fix the names given to {flag}")
        if target in names:
            raise DataError(f"the target column '{target}' cannot be given to {flag}; remove it from {flag}")
    both = sorted(set(drop) & set(keep))
    if both:
        raise DataError(f"column(s) {_names(both)} are given to both --drop and --keep; pick one")

    y = df[target]
    check_not_nested(y, target, "choose a target column of plain values (numbers or labels)")
    check_finite_target(y, target)
    chosen_task = infer_task(y) if task is None else _checked_task(y, task)
    columns: list[ColumnInfo] = []
    dropped: dict[str, str] = {}
    for name in df.columns:
        if name == target:
            continue  # the target is described by task/classes, never a feature
        s = df[name]
        if name in drop and nested(s):  # a Parquet list/struct column the user leaves out: nothing to infer
            columns.append(ColumnInfo(name, ColumnKind.CATEGORICAL, 0, float(s.isna().mean())))
            dropped[name] = DROP_REASONS["user"]
            continue
        # Lists and structs are refused rather than silently dropped: the user sees which column is left out
        # of the model and why, and decides (flatten it, or --drop it), as with every other dropped column.
        check_not_nested(s, str(name), f"flatten it into plain columns, or leave it out with --drop {name}")
        kind = kinds[name] if name in kinds else infer_kind(s, str(name), allow_drop=name not in keep)
        columns.append(ColumnInfo(name=name, kind=kind, n_unique=int(s.nunique(dropna=True)),
                                  missing_share=missing_share(s, kind), missing_words=_missing_words(s, kind)))
        if name in drop:
            dropped[name] = DROP_REASONS["user"]
        elif kind is ColumnKind.ID:
            dropped[name] = DROP_REASONS["id"] if name not in kinds else "marked as id by user"
        elif kind is ColumnKind.CONSTANT:
            dropped[name] = DROP_REASONS["constant"] if name not in kinds else "marked as constant by user"

    schema = Schema(target=target, task=chosen_task, columns=tuple(columns),
                    classes=target_classes(y) if chosen_task.is_classification else None,
                    dropped=dropped, kept=keep)
    if not schema.feature_columns:
        reasons = "; ".join(f"{c}: {r}" for c, r in list(dropped.items())[:5])
        raise DataError(f"no feature columns are left to learn from ({reasons}); add columns to the data or "
                        f"pass --keep COL for columns that should be used")
    return schema


def infer_kind(s: pd.Series, name: str = "", *, allow_drop: bool = True) -> ColumnKind:
    """The kind of one column (rules in the module docstring). ``allow_drop=False`` never gives ID/CONSTANT."""
    if allow_drop and s.nunique(dropna=False) <= 1:
        return ColumnKind.CONSTANT
    if is_bool_dtype(s.dtype):
        return ColumnKind.BOOLEAN
    if isinstance(s.dtype, pd.CategoricalDtype):
        return ColumnKind.CATEGORICAL
    if is_datetime64_any_dtype(s.dtype):
        return ColumnKind.DATETIME
    if is_timedelta64_dtype(s.dtype):
        return ColumnKind.NUMERIC
    nonmissing = s.dropna()
    numbers = nonmissing if is_numeric_dtype(s.dtype) else object_as_numbers(nonmissing)
    if numbers is None and is_text_dtype(s):
        if len(nonmissing) and pd.api.types.infer_dtype(nonmissing, skipna=True) == "boolean":
            return ColumnKind.BOOLEAN  # an object column of Python bools
        if looks_boolean(nonmissing):
            return ColumnKind.BOOLEAN
        numbers = text_as_numbers(nonmissing)
    if numbers is not None:
        if allow_drop and _is_numeric_id(numbers, name):
            return ColumnKind.ID
        return ColumnKind.NUMERIC
    if looks_datetime(nonmissing):
        return ColumnKind.DATETIME
    if _looks_text(nonmissing):
        return ColumnKind.TEXT
    if allow_drop and _is_text_id(nonmissing):
        return ColumnKind.ID
    return ColumnKind.CATEGORICAL


def _missing_words(s: pd.Series, kind: ColumnKind) -> tuple[str, ...]:
    """A numeric column's text that is not a number (read as missing in training), for the predict-time check."""
    if kind is not ColumnKind.NUMERIC or not is_text_dtype(s):
        return ()
    return tuple(non_numbers(s, numeric_values(s))[:MAX_MISSING_WORDS])


def _is_numeric_id(values: pd.Series, name: str) -> bool:
    if len(values) < ID_MIN_ROWS:
        return False
    numbers = values.to_numpy(dtype="float64")
    if not np.all(np.mod(numbers, 1) == 0):
        return False  # a float measurement, never an id
    n_distinct = len(np.unique(numbers))
    if n_distinct < ID_UNIQUE_SHARE * len(numbers):
        return False
    counter = (numbers.max() - numbers.min() + 1) <= len(numbers) / ID_UNIQUE_SHARE
    ordered = bool(np.all(np.diff(numbers) >= 0) or np.all(np.diff(numbers) <= 0))
    return _id_like_name(name) or counter or ordered


def _is_text_id(nonmissing: pd.Series) -> bool:
    return len(nonmissing) >= ID_MIN_ROWS and nonmissing.nunique() >= ID_UNIQUE_SHARE * len(nonmissing)


def _id_like_name(name: str) -> bool:
    # Split snake_case, kebab-case, spaces and camelCase ("customerID" -> customer, id).
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    tokens = {t.lower() for t in re.split(r"[^A-Za-z0-9]+", spaced) if t}
    return bool(tokens & ID_NAME_TOKENS)


def _looks_text(nonmissing: pd.Series, sample_size: int = 1000) -> bool:
    n_distinct = nonmissing.nunique()
    if n_distinct < TEXT_MIN_DISTINCT or n_distinct < TEXT_DISTINCT_SHARE * len(nonmissing):
        return False
    sample = nonmissing if len(nonmissing) <= sample_size else nonmissing.sample(sample_size, random_state=0)
    words = sample.astype(str).str.split().str.len()
    return bool(words.mean() >= TEXT_MIN_WORDS)


def _checked_kinds(df: pd.DataFrame, target: str, kinds: Mapping[str, ColumnKind | str]) -> dict[str, ColumnKind]:
    require_columns(df, list(kinds), what="column(s) given a kind", hint="fix the names in the column kinds")
    out: dict[str, ColumnKind] = {}
    for name, kind in kinds.items():
        if name == target:
            raise DataError(f"the target column '{target}' cannot be given a column kind; remove it from the kinds")
        try:
            out[name] = ColumnKind(kind)
        except ValueError:
            allowed = ", ".join(k.value for k in ColumnKind)
            raise ConfigError(f"unknown column kind '{kind}' for column '{name}'; use one of {allowed}") from None
    return out


# ---------------------------------------------------------------------------------------------- helpers


def require_columns(df: pd.DataFrame, names: Sequence[str], *, what: str, hint: str) -> None:
    """Raise DataError when any of ``names`` is not a column of ``df``, suggesting close matches."""
    missing = [n for n in names if n not in df.columns]
    if not missing:
        return
    available = [str(c) for c in df.columns]
    suggestions = [m for n in missing for m in difflib.get_close_matches(str(n), available, n=1, cutoff=0.6)]
    shown = ", ".join(available[:8]) + (f", ... ({len(available)} in all)" if len(available) > 8 else "")
    if suggestions:
        problem = f"{what} {_names(missing)} not found; did you mean {_names(suggestions)}? {hint[0].upper()}{hint[1:]}"
    else:
        problem = f"{what} {_names(missing)} not found; {hint}"
    raise DataError(f"{problem} (columns: {shown})")


def _names(names: Sequence[object]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def drop_missing_target(df: pd.DataFrame, target: str) -> tuple[pd.DataFrame, int]:
    """``df`` without the rows whose target is missing (index reset), and how many rows were removed."""
    require_columns(df, [target], what="target column", hint="pass --target with one of the file's columns")
    present = df[target].notna()
    if not present.any():
        raise DataError(f"target column '{target}' has no values; choose a column that holds the values to predict")
    n_dropped = int((~present).sum())
    if n_dropped == 0:
        return df, 0
    return df.loc[present].reset_index(drop=True), n_dropped


def prepare_target(y: pd.Series, schema: Schema) -> np.ndarray:
    """Classification: int64 codes 0..k-1 in ``schema.classes`` order. Regression: float64."""
    if y.isna().any():
        raise DataError(f"target column '{schema.target}' has {int(y.isna().sum())} missing values; remove those "
                        f"rows first (drop_missing_target)")
    if not schema.task.is_classification:
        values = pd.to_numeric(y, errors="coerce") if not is_bool_dtype(y.dtype) else y.astype("float64")
        if values.isna().any():
            bad = y[values.isna()].iloc[0]
            raise DataError(f"target column '{schema.target}' holds non-numeric values such as {bad!r}; a regression "
                            f"target must be numbers: fix those values or choose a classification task")
        check_finite_target(values, schema.target)
        return values.to_numpy(dtype="float64")
    assert schema.classes is not None
    codes_of = {canonical_str(c): i for i, c in enumerate(schema.classes)}
    keys = canonical_strings(y)
    codes = keys.map(codes_of)
    if codes.isna().any():
        unseen = keys[codes.isna()].unique()[:5].tolist()
        raise DataError(f"target column '{schema.target}' holds label(s) {_names(unseen)} that were not among the "
                        f"classes when the model was built ({_names(list(schema.classes)[:10])}); remove those rows "
                        f"or rebuild the model with them")
    return codes.to_numpy(dtype="int64")
