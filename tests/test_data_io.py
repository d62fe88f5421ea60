"""Reading tables: formats, missing markers, and one-line DataError messages for every bad input."""

import gzip

import numpy as np
import pandas as pd
import pytest

from daedalus.data import DEMO_TARGET, demo_path, read_table
from daedalus.errors import DataError


def _error(source) -> str:
    with pytest.raises(DataError) as info:
        read_table(source)
    message = str(info.value)
    assert "\n" not in message, "messages are shown as one line"
    return message


def test_csv_missing_markers_and_exact_names(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(" a ,b,c\n1,NA,?\n2,x, \n3,NaN,null\n")
    df = read_table(path)
    assert list(df.columns) == [" a ", "b", "c"]  # names kept exactly, spaces included
    assert df["b"].tolist()[:2] == ["NA", "x"]  # 'NA' is a real category (e.g. Ames: "no alley")
    assert df["b"].isna().tolist() == [False, False, True]
    assert df["c"].isna().all()  # '?', ' ' and 'null' are missing
    assert df[" a "].tolist() == [1, 2, 3]


def test_gzip_parquet_and_pq(tmp_path):
    frame = pd.DataFrame({"x": [1.5, 2.5, np.nan], "y": ["a", "b", "a"]})
    frame.to_csv(tmp_path / "t.csv.gz", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    frame.to_parquet(tmp_path / "t.pq", index=False)
    for name in ("t.csv.gz", "t.parquet", "t.pq"):
        got = read_table(str(tmp_path / name))
        assert got.shape == (3, 2)
        assert got["y"].tolist() == ["a", "b", "a"]
        assert np.isnan(got["x"].iloc[2]) and got["x"].iloc[0] == 1.5


def test_semicolon_and_latin1_files(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b\n1;2\n3;4\n")
    assert read_table(path).columns.tolist() == ["a", "b"]
    path = tmp_path / "latin.csv"
    path.write_bytes("name,v\ncaf\xe9,1\n".encode("latin-1"))
    assert read_table(path)["name"].iloc[0] == "café"


def test_dataframe_is_copied_and_names_become_text():
    original = pd.DataFrame({0: [1, 2], "b": [3, 4]})
    got = read_table(original)
    got.loc[0, "b"] = 99
    assert original.loc[0, "b"] == 3
    assert list(got.columns) == ["0", "b"]


def test_missing_file():
    message = _error("no/such/file.csv")
    assert "not found" in message and "check the path" in message and "file.csv" in message


def test_directory(tmp_path):
    message = _error(tmp_path)
    assert "directory" in message and ".csv" in message


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("a,b\n1,2\n")
    message = _error(path)
    assert "extension" in message and ".csv" in message and ".parquet" in message


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty" in _error(empty)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    assert "no rows" in _error(header)


def test_empty_frames():
    assert "no columns" in _error(pd.DataFrame())
    assert "no rows" in _error(pd.DataFrame({"a": []}))


def test_unreadable_files(tmp_path):
    broken_gz = tmp_path / "broken.csv.gz"
    broken_gz.write_bytes(b"not a gzip archive at all")
    assert "cannot be read" in _error(broken_gz)
    broken_pq = tmp_path / "broken.parquet"
    broken_pq.write_bytes(b"PAR1 garbage")
    message = _error(broken_pq)
    assert "Parquet" in message and ".csv" in message
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('a,b\n1,2\n3,"unclosed\n')
    assert "cannot be parsed" in _error(ragged)


def test_duplicate_column_names():
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    message = _error(frame)
    assert "duplicate column names" in message and "'a'" in message


def test_demo_dataset_is_bundled():
    path = demo_path()
    assert path.exists() and (path.parent / "SOURCE.md").exists()
    df = read_table(path)
    assert df.shape == (1000, 22)
    assert DEMO_TARGET in df.columns
    assert sorted(df[DEMO_TARGET].unique().tolist()) == [0, 1]
    with gzip.open(path, "rt") as f:  # the file itself is a plain gzip CSV
        assert DEMO_TARGET in f.readline()
