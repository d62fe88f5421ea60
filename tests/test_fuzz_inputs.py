"""Fuzzing the two doors user data comes through (issue 10): intake (read, infer, check, prepare, before a run
directory exists) and ``predict`` of a real fitted run. Random frames: ints, floats with NaN and infinities,
unicode and empty strings, bools, datetimes, mixed objects; odd column names (duplicates, empty, numbers,
unicode); CSV files in UTF-8, latin-1 and UTF-8 with a byte-order mark. Each input gives a clean result or a
one-line DaedalusError, never another exception.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daedalus.errors import DaedalusError
from tests.conftest import planted_frame

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

_INTS = st.one_of(st.integers(-1000, 1000), st.integers())  # mostly small; sometimes beyond int64
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_TEXT = st.one_of(st.sampled_from(["", " ", "?", "NA", "n/a", "1", "0.5", "yes", "no", "2020-01-05", "1e400"]),
                  st.text(max_size=12))
_DATES = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))
_MIXED = st.one_of(st.none(), _INTS, _FLOATS, _TEXT, st.booleans(), _DATES, st.binary(max_size=3),
                   st.lists(st.integers(0, 3), max_size=2), st.complex_numbers(max_magnitude=10))
KINDS: dict[str, st.SearchStrategy[Any]] = {
    "int": _INTS, "float": _FLOATS, "text": _TEXT, "bool": st.booleans(), "date": _DATES, "mixed": _MIXED,
}
NAMES = st.one_of(st.sampled_from(["y", "x", "", " ", "0", "1", "é", "名前", "y y", "a__year"]), st.text(max_size=5))


@st.composite
def columns(draw: st.DrawFn, n: int) -> list[Any]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    values = draw(st.lists(KINDS[kind], min_size=n, max_size=n))
    if draw(st.booleans()):  # some missing cells
        holes = draw(st.lists(st.integers(0, n - 1), max_size=n // 2 + 1))
        values = [None if i in holes else v for i, v in enumerate(values)]
    return values


@st.composite
def frames(draw: st.DrawFn, names: st.SearchStrategy[Any] = NAMES, min_rows: int = 1) -> pd.DataFrame:
    n = draw(st.integers(min_rows, 40))
    names_drawn = draw(st.lists(names, min_size=1, max_size=6))
    if draw(st.integers(0, 3)) > 0:  # mostly distinct names; duplicates the rest of the time
        names_drawn = list(dict.fromkeys(names_drawn))
    data = [draw(columns(n)) for _ in names_drawn]
    frame = pd.DataFrame(dict(enumerate(data)))
    if draw(st.booleans()):  # typed columns where pandas can (int64, float64, datetime64, bool)
        frame = frame.infer_objects()
    frame.columns = pd.Index(names_drawn, dtype=object)
    return frame


def _clean_or_user_error(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # a numpy warning is a value computed on garbage
            return fn(*args, **kwargs)
    except DaedalusError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        return None


def _intake_and_context(data: Any, target: str) -> Any:
    from daedalus.orchestration.build import eval_context, intake
    from daedalus.orchestration.options import BuildOptions

    options = BuildOptions(target=target, n_trials=1)
    got = intake(data, options)
    eval_context(got.frame, got.schema, options)  # target, features, validation plan: all before the run directory
    return got


@FUZZ
@given(frame=frames(), pick=st.integers(0, 5))
def test_intake_of_random_frames(frame: pd.DataFrame, pick: int) -> None:
    target = str(frame.columns[pick % frame.shape[1]])
    _clean_or_user_error(_intake_and_context, frame, target)


@FUZZ
@given(frame=frames(min_rows=1), pick=st.integers(0, 5), encoding=st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]),
       sep=st.sampled_from([",", ";"]))
def test_intake_of_random_csv_files(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame, pick: int,
                                    encoding: str, sep: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    frame.to_csv(path, index=False, encoding=encoding, errors="replace", sep=sep)
    target = str(frame.columns[pick % frame.shape[1]])
    _clean_or_user_error(_intake_and_context, str(path), target)


# -- predict of a real fitted run --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One small real build: numeric, categorical, boolean and date columns, binary target."""
    from daedalus.ensembles.predictor import Predictor
    from daedalus.interfaces.cli import main

    root = tmp_path_factory.mktemp("fuzzrun")
    frame = planted_frame(200)
    frame["flag"] = np.where(frame["noise"] > 0, "yes", "no")
    frame.to_csv(root / "d.csv", index=False)
    code = main(["build", str(root / "d.csv"), "--target", "y", "--trials", "2", "--families", "linear",
                 "--threads", "1", "--no-explain", "--quiet", "--run", str(root / "run")])
    assert code == 0
    return root / "run", Predictor.load(root / "run")


FEATURES = ("signal", "noise", "color", "day", "flag")


@st.composite
def predict_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Real rows of the model's columns, some replaced by random columns, dropped, renamed, repeated or retyped,
    plus random extra columns."""
    n = draw(st.integers(1, 30))
    frame = planted_frame(n, seed=draw(st.integers(0, 9))).drop(columns="y")
    frame["flag"] = np.where(frame["noise"] > 0, "yes", "no")
    names = list(frame.columns)
    for name in draw(st.lists(st.sampled_from(FEATURES), max_size=3, unique=True)):
        frame[name] = draw(columns(n))  # random values of a random kind in a needed column
    if draw(st.integers(0, 4)) == 0:
        frame = frame.astype(object)  # every cell a Python object, as from JSON
    extra = draw(frames(names=NAMES, min_rows=n)).iloc[:n].reset_index(drop=True)
    if len(extra) == n and draw(st.booleans()):
        frame = pd.concat([frame, extra], axis=1)  # extra columns, perhaps named like needed ones
    if draw(st.integers(0, 5)) == 0:
        frame = frame.drop(columns=draw(st.sampled_from(names)))
    return frame


@FUZZ
@given(frame=predict_frames())
def test_predict_of_random_frames(fitted: tuple[Path, Any], frame: pd.DataFrame) -> None:
    _, predictor = fitted
    prediction = _clean_or_user_error(predictor.predict, frame)
    if prediction is not None:
        assert len(prediction) == len(frame)
        assert set(prediction) <= {"yes", "no"}


@FUZZ
@given(frame=predict_frames(), encoding=st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]))
def test_predict_of_random_csv_files(tmp_path_factory: pytest.TempPathFactory, fitted: tuple[Path, Any],
                                     frame: pd.DataFrame, encoding: str) -> None:
    from daedalus.interfaces.paths import read_rows

    run, predictor = fitted
    path = tmp_path_factory.mktemp("fuzz") / "rows.csv"
    frame.to_csv(path, index=False, encoding=encoding, errors="replace")
    rows = _clean_or_user_error(read_rows, run, str(path))
    if rows is not None:  # the rows fit the schema; a number too large for the model is still a one-line error
        prediction = _clean_or_user_error(predictor.predict, rows)
        assert prediction is None or len(prediction) == len(rows)
