"""Value conversions shared by inference (``infer``) and preparation (``prepare``).

Both steps must read a column the same way, at build time and at predict time, so the parsing rules live
here once: canonical strings for labels and categories, boolean words, numbers stored as text, and dates.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_complex_dtype,
    is_datetime64_any_dtype,
    is_numeric_dtype,
    is_object_dtype,
    is_timedelta64_dtype,
)

from daedalus.data.schema import ColumnKind
from daedalus.errors import DataError

_NESTED = (list, tuple, dict, set, frozenset, np.ndarray)
_FLAT = frozenset({"string", "empty", "integer", "floating", "mixed-integer-float", "decimal", "boolean", "bytes",
                   "datetime", "datetime64", "date", "time", "timedelta", "timedelta64", "period", "complex",
                   "categorical", "interval"})

# Words read as booleans (compared lower-cased, stripped). Two-valued columns made only of these words are
# BOOLEAN; "0"/"1" here covers numbers stored as text.
TRUE_WORDS = frozenset({"true", "yes", "y", "t", "1"})
FALSE_WORDS = frozenset({"false", "no", "n", "f", "0"})

# Share of non-missing values that must parse for a text column to count as numbers / dates.
PARSE_SHARE = 0.95

# A date needs a plausible 4-digit year: without it, pandas' "mixed" parser turns "May" or "1-5" into
# dates in the year 1.
_YEAR = re.compile(r"(?<!\d)(?:1[0-9]{3}|2[0-9]{3})(?!\d)")
# "007" or "02134" are codes, not numbers: converting them would merge "007" with "7".
_LEADING_ZERO = re.compile(r"^\s*[-+]?0\d")


def nested(s: pd.Series) -> bool:
    """The column holds nested values (lists, dicts, arrays, sets: Parquet list/struct/map columns)."""
    if not is_object_dtype(s.dtype) or pd.api.types.infer_dtype(s, skipna=True) in _FLAT:
        return False  # inferring the dtype runs in C: the per-cell look below is for mixed columns only
    return bool(s.map(lambda v: isinstance(v, _NESTED)).any())


def check_not_nested(s: pd.Series, name: str, fix: str) -> None:
    """Refuse a nested column in one line: nothing downstream (hashing, parsing, models) can use it."""
    if nested(s):
        sample = next(v for v in s if isinstance(v, _NESTED))
        raise DataError(f"column '{name}' holds nested values (lists or structs, such as {str(sample)[:40]!r}) "
                        f"where a number, category or text belongs; {fix}")


def canonical_str(value: Any) -> str:
    """One string per value, so that 1, 1.0, np.int64(1) and "1" from different files all agree."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if f.is_integer() and abs(f) < 2**63:
            return str(int(f))
        return repr(f)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def canonical_strings(s: pd.Series) -> pd.Series:
    """``s`` as object-dtype canonical strings, NaN where missing (index kept)."""
    # Factorize first: the Python-level formatting then runs once per distinct value, not once per row.
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    table = np.array([canonical_str(u) for u in uniques] + [np.nan], dtype=object)
    return pd.Series(table[codes], index=s.index, dtype=object, name=s.name)


def python_scalar(value: Any) -> Any:
    """A JSON-friendly Python scalar: numpy types unwrapped, integer-valued floats made int."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def is_text_dtype(s: pd.Series) -> bool:
    """True for string/object columns (pandas 3 reads text as the ``str`` dtype, older code gives object)."""
    return (is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)) and not isinstance(
        s.dtype, pd.CategoricalDtype)


def object_as_numbers(s: pd.Series) -> pd.Series | None:
    """An object column that holds Python numbers (not strings) as a numeric series, else None."""
    if not is_object_dtype(s.dtype):
        return None
    kind = pd.api.types.infer_dtype(s, skipna=True)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        numbers = pd.to_numeric(s, errors="coerce")
        return None if is_complex_dtype(numbers.dtype) else numbers  # complex numbers are no amounts
    return None


def boolean_values(s: pd.Series) -> pd.Series:
    """``s`` as float 1.0/0.0, NaN where missing or not a boolean word."""
    if is_bool_dtype(s.dtype):
        return s.astype("float64")
    words = canonical_strings(s).str.strip().str.lower()
    out = pd.Series(np.nan, index=s.index, dtype="float64", name=s.name)
    out[words.isin(TRUE_WORDS)] = 1.0
    out[words.isin(FALSE_WORDS)] = 0.0
    return out


def looks_boolean(nonmissing: pd.Series) -> bool:
    """Exactly two distinct values, one a true-word and one a false-word (e.g. Yes/No, t/f, "1"/"0")."""
    words = set(canonical_strings(pd.Series(nonmissing.unique())).str.strip().str.lower())
    return len(words) == 2 and len(words & TRUE_WORDS) == 1 and len(words & FALSE_WORDS) == 1


def numeric_values(s: pd.Series) -> pd.Series:
    """``s`` as float64; text that is not a number becomes NaN (e.g. telco's ' ' in TotalCharges), and so do
    infinities (a division by zero upstream): no model family accepts them, all of them impute NaN."""
    if is_bool_dtype(s.dtype):
        return s.astype("float64")
    if is_timedelta64_dtype(s.dtype):
        return s.dt.total_seconds().astype("float64")
    if is_datetime64_any_dtype(s.dtype):
        return epoch_days(s)
    parsed = s if is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
    if is_complex_dtype(parsed.dtype):  # complex numbers are not amounts a model can take: not numbers
        parsed = pd.Series(np.nan, index=s.index)
    values = parsed.astype("float64")
    return values.where(np.isfinite(values))


def non_numbers(s: pd.Series, values: pd.Series, allowed: frozenset[str] = frozenset()) -> list[str]:
    """The distinct cells of ``s`` that are present but not numbers (``values`` is ``numeric_values(s)``),
    other than infinities and the ``allowed`` spellings (stripped), as canonical strings."""
    present = s.notna() & values.isna()
    if not present.any():
        return []
    words = canonical_strings(s[present]).str.strip()
    infinite = pd.to_numeric(words, errors="coerce").abs() == np.inf
    bad = words[~infinite & ~words.isin(allowed)]
    return [str(w) for w in bad.unique()]


def missing_share(s: pd.Series, kind: ColumnKind) -> float:
    """Share of values the models will see as missing: for numbers and booleans, values that do not parse
    (telco's ' ' in TotalCharges) count as missing too."""
    if len(s) == 0:
        return 0.0
    if kind is ColumnKind.NUMERIC:
        return float(numeric_values(s).isna().mean())
    if kind is ColumnKind.BOOLEAN:
        return float(boolean_values(s).isna().mean())
    return float(s.isna().mean())


def text_as_numbers(nonmissing: pd.Series) -> pd.Series | None:
    """Numbers stored as text: the parsed values when ≥ 95% of them parse, else None."""
    if len(nonmissing) == 0:
        return None
    # Decide on the distinct values (weighted by their counts): far cheaper than parsing every row of a
    # long categorical column, which is the common case.
    counts = nonmissing.astype(str).value_counts(sort=False)
    distinct = pd.Series(counts.index, dtype=object)
    if distinct.str.match(_LEADING_ZERO).any():
        return None
    parsed = pd.to_numeric(distinct, errors="coerce")
    if counts.to_numpy()[parsed.notna().to_numpy()].sum() < PARSE_SHARE * len(nonmissing):
        return None
    return pd.to_numeric(nonmissing.astype(str), errors="coerce").dropna()


def looks_datetime(nonmissing: pd.Series, sample_size: int = 500, seed: int = 0) -> bool:
    """Text dates: ≥ 95% of a sample of distinct values hold a 4-digit year and parse as dates."""
    distinct = pd.Series(nonmissing.unique()).astype(str)
    if len(distinct) == 0:
        return False
    if len(distinct) > sample_size:
        distinct = distinct.sample(sample_size, random_state=seed)
    if distinct.str.contains(_YEAR).mean() < PARSE_SHARE:
        return False
    return bool(parse_datetimes(distinct).notna().mean() >= PARSE_SHARE)


def parse_datetimes(s: pd.Series) -> pd.Series:
    """``s`` as timezone-naive UTC timestamps, NaT where missing or unparseable."""
    if is_datetime64_any_dtype(s.dtype):
        if getattr(s.dt, "tz", None) is not None:
            return s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s
    if is_numeric_dtype(s.dtype) and not is_bool_dtype(s.dtype):
        # Only reached when the user marks a numeric column as a date: read it as Unix seconds.
        return pd.to_datetime(s, unit="s", errors="coerce")
    strings = s.astype(object).where(s.notna(), None)
    if pd.api.types.infer_dtype(strings, skipna=True) not in ("string", "empty", "datetime"):
        # Numbers mixed into a date column are read as text ("2020" a year), as pandas 4 will stop doing.
        strings = strings.map(lambda v: v if v is None or isinstance(v, (str, dt.datetime)) else str(v))
    # ISO 8601 is vectorised and fast; the "mixed" parser (per element, via dateutil) is the fallback for
    # other layouts, applied only to the values ISO parsing missed. Each value is parsed on its own, so the
    # result does not depend on which other rows are in the frame (a training file or a one-row request).
    # Both in microseconds (years far outside 1677-2262 fit): pandas picks each result's unit from its values, and a
    # nanosecond result put into a second-unit one raised TypeError (found by tests/test_fuzz_inputs.py).
    parsed = pd.to_datetime(strings, format="ISO8601", errors="coerce", utc=True).dt.as_unit("us")
    retry = parsed.isna() & strings.notna()
    if retry.any():
        parsed[retry] = pd.to_datetime(strings[retry], format="mixed", errors="coerce", utc=True).dt.as_unit("us")
    return parsed.dt.tz_localize(None)


def epoch_days(timestamps: pd.Series) -> pd.Series:
    """Days since 1970-01-01 as float64 (NaN for NaT)."""
    ts = parse_datetimes(timestamps)
    return ((ts - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).astype("float64")
