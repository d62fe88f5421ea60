"""Reading a user's table (CSV or Parquet file, or an in-memory DataFrame) into a pandas DataFrame.

Every problem with the input raises :class:`~daedalus.errors.DataError` with a one-line message that names
the problem and the fix, because the CLI shows that line to the user as is.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from pandas.api.types import is_object_dtype

from daedalus.errors import DataError

# Cells read as missing. ``keep_default_na=False`` switches off pandas' own list on purpose: it contains
# "NA" and "None", which some datasets (Ames housing) use as real categories meaning "none".
NA_VALUES: tuple[str, ...] = ("", " ", "?", "NaN", "nan", "null", "NULL", "N/A", "#N/A")

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

DEMO_TARGET = "class-label"
# What pandas infers for object columns that cannot hold bytes: the common case, checked in C, not per cell.
_NO_BYTES = frozenset({"string", "empty", "integer", "floating", "mixed-integer-float", "decimal", "boolean",
                       "datetime", "datetime64", "date", "time", "timedelta", "timedelta64", "period", "complex"})
_DEMO_FILE = Path(__file__).resolve().parent / "demo" / "credit_g.csv.gz"


def demo_path() -> Path:
    """The bundled demo dataset (Statlog German credit, 1000 rows, target ``DEMO_TARGET``; see demo/SOURCE.md)."""
    return _DEMO_FILE


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read ``source`` into a new DataFrame with string column names (kept exactly as written).

    CSV (optionally gzip), TSV and Parquet files are recognised by their extension; a DataFrame is copied
    so that later steps never modify the caller's object.
    """
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        label = "the data frame"
    else:
        path = Path(source)
        label = f"data file '{path}'"
        df = _read_file(path)
    return _validated(df, label)


def _read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"data file '{path}' not found; check the path")
    if path.is_dir():
        raise DataError(f"'{path}' is a directory, not a data file; pass the path of a .csv or .parquet file")
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return _read_parquet(path)
    if name.endswith(CSV_SUFFIXES):
        return _read_csv(path)
    raise DataError(f"data file '{path}' has an unknown extension; save it as .csv, .csv.gz or .parquet")


def _read_csv(path: Path) -> pd.DataFrame:
    sep = "\t" if ".tsv" in path.name.lower() else ","
    try:
        df = _read_csv_with(path, sep)
        # A file written with another delimiter (';' from European spreadsheets, '|') reads as a single
        # column whose header still holds that delimiter: read it again with the right one.
        if df.shape[1] == 1:
            other = _sniff_delimiter(str(df.columns[0]))
            if other is not None and other != sep:
                df = _read_csv_with(path, other)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file '{path}' is empty; it needs a header row and at least one data row") from None
    except (pd.errors.ParserError, csv.Error) as e:
        detail = " ".join(str(e).split())  # pandas' messages span several lines; the CLI shows one
        raise DataError(f"data file '{path}' cannot be parsed as CSV ({detail}); check that it is a "
                        f"comma-separated text file with one header row") from None
    except (OSError, EOFError) as e:  # e.g. a corrupt .gz archive, or no read permission
        raise DataError(f"data file '{path}' cannot be read ({e}); check the file and its permissions") from None
    return df


def _read_csv_with(path: Path, sep: str) -> pd.DataFrame:
    kwargs = {"sep": sep, "keep_default_na": False, "na_values": list(NA_VALUES), "low_memory": False}
    try:
        # utf-8-sig also strips the byte-order mark that Excel writes at the start of a CSV.
        return pd.read_csv(path, encoding="utf-8-sig", **kwargs)  # type: ignore[call-overload, no-any-return]
    except UnicodeDecodeError:
        # Legacy spreadsheets export latin-1; every byte sequence decodes in it, so this cannot fail again.
        return pd.read_csv(path, encoding="latin-1", **kwargs)  # type: ignore[call-overload, no-any-return]


def _sniff_delimiter(header: str) -> str | None:
    for candidate in (";", "\t", "|"):
        if candidate in header:
            return candidate
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise DataError(f"reading '{path}' needs the pyarrow package; install it (pip install pyarrow) "
                        f"or save the data as .csv") from None
    except Exception as e:  # pyarrow raises its own error types (ArrowInvalid, ArrowIOError, ...)
        detail = " ".join(str(e).split())
        raise DataError(f"data file '{path}' cannot be read as Parquet ({detail}); check that it is a "
                        f"valid Parquet file or save the data as .csv") from None


def _validated(df: pd.DataFrame, label: str) -> pd.DataFrame:
    # Column names become dictionary keys and JSON strings in the schema, so they must be unique strings.
    if not all(isinstance(c, str) for c in df.columns):
        df.columns = pd.Index([str(c) for c in df.columns], dtype=object)
    if df.shape[1] == 0:
        raise DataError(f"{label} has no columns; it needs a header row naming the columns")
    if df.shape[0] == 0:
        raise DataError(f"{label} has no rows; it needs at least one data row below the header")
    duplicated = df.columns[df.columns.duplicated()].unique().tolist()
    if duplicated:
        names = ", ".join(repr(c) for c in duplicated[:5])
        raise DataError(f"{label} has duplicate column names ({names}); rename them so each is unique")
    for i in range(df.shape[1]):
        column = df.iloc[:, i]
        if is_object_dtype(column.dtype) and pd.api.types.infer_dtype(column, skipna=True) not in _NO_BYTES:
            df.isetitem(i, column.map(_decoded, na_action="ignore"))
    return df


def _decoded(value: object) -> object:
    """Bytes (a Parquet binary column, a frame built from raw records) as text, decoded as a CSV file is: UTF-8,
    else latin-1. Left as bytes, they broke inference on text (UnicodeDecodeError, found by the fuzz test)."""
    if not isinstance(value, (bytes, bytearray)):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(value).decode("latin-1")
