"""Task and schema inference, the target encoding, and feature preparation for train and predict."""

import json

import numpy as np
import pandas as pd
import pytest

from daedalus.data import (
    ColumnKind,
    Schema,
    Task,
    drop_missing_target,
    feature_layout,
    infer_kind,
    infer_schema,
    infer_task,
    prepare_features,
    prepare_target,
)
from daedalus.errors import ConfigError, DataError

N = 200


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def frame():
    """One column of every kind, 200 rows, target 'y' (binary strings)."""
    rng = np.random.default_rng(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "again"]
    totals = rng.normal(50, 10, N).round(2).astype(str)
    totals[[3, 17]] = " "  # telco's TotalCharges: numbers stored as text, a blank for missing
    return pd.DataFrame({
        "measure": rng.normal(size=N),  # unique floats: a measurement, never an id
        "count": rng.integers(0, 10, N),
        "flag01": rng.integers(0, 2, N),  # numeric 0/1 stays numeric
        "yes_no": rng.choice(["Yes", "No"], N),
        "truth": rng.choice([True, False], N),
        "total_text": totals,
        "when": pd.Series(pd.date_range("2020-01-01", periods=N, freq="37h")).dt.strftime("%Y-%m-%d %H:%M"),
        "customer_code": [f"C{i:05d}X" for i in rng.permutation(N)],  # unique strings: an id
        "user_id": rng.permutation(np.arange(10_000, 10_000 + 3 * N, 3)),  # unique ints named like an id
        "row": np.arange(N),  # a row counter
        "always": "same",
        "sometimes": np.where(rng.random(N) < 0.5, "x", None),  # one value or empty: missingness kept
        "review": [" ".join(rng.choice(words, 6)) + f" {i}" for i in range(N)],
        "color": rng.choice(["red", "green", "blue"], N),
        "cat_dtype": pd.Categorical(rng.choice(["lo", "hi"], N)),
        "zip": rng.choice(["02134", "10001", "94105"], N),  # leading zeros: codes, not numbers
        "age_band": rng.choice(["10-20", "20-30", "30-40"], N),  # not dates
        "y": rng.choice(["good", "bad"], N),
    })


# ------------------------------------------------------------------------------------------------ task


@pytest.mark.parametrize(("values", "task"), [
    (["a", "b", "a"], Task.BINARY),
    ([True, False, True], Task.BINARY),
    ([0.0, 1.0, np.nan, 1.0], Task.BINARY),
    (["a", "b", "c"], Task.MULTICLASS),
    ([0, 1, 2, 3, 1], Task.MULTICLASS),  # label codes 0..k-1
    ([1, 2, 3, 4, 4], Task.MULTICLASS),  # label codes 1..k
    ([3, 4, 5, 6, 7, 8, 9], Task.REGRESSION),  # wine quality: a rating, not codes
    ([1, 2, 3, 5, 8], Task.REGRESSION),  # integers with gaps
    ([0.5, 1.25, 3.0], Task.REGRESSION),
    (list(range(200)), Task.REGRESSION),  # too many values to be classes
])
def test_infer_task(values, task):
    assert infer_task(pd.Series(values, name="y")) is task


def test_target_without_values_or_with_one_class():
    with pytest.raises(DataError) as info:
        infer_task(pd.Series([np.nan, None], name="y"))
    assert "target column 'y' has no values" in _one_line(info)
    with pytest.raises(DataError) as info:
        infer_task(pd.Series(["only", "only", None], name="label"))
    message = _one_line(info)
    assert "'label'" in message and "'only'" in message and "different target" in message


def test_text_target_with_a_value_per_row_is_refused():
    with pytest.raises(DataError) as info:
        infer_task(pd.Series([f"name {i}" for i in range(100)], name="who"))
    assert "looks like an id" in _one_line(info)


# ---------------------------------------------------------------------------------------------- schema


def test_every_kind_is_inferred(frame):
    schema = infer_schema(frame, "y")
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "measure": ColumnKind.NUMERIC, "count": ColumnKind.NUMERIC, "flag01": ColumnKind.NUMERIC,
        "yes_no": ColumnKind.BOOLEAN, "truth": ColumnKind.BOOLEAN, "total_text": ColumnKind.NUMERIC,
        "when": ColumnKind.DATETIME, "customer_code": ColumnKind.ID, "user_id": ColumnKind.ID,
        "row": ColumnKind.ID, "always": ColumnKind.CONSTANT, "sometimes": ColumnKind.CATEGORICAL,
        "review": ColumnKind.TEXT, "color": ColumnKind.CATEGORICAL, "cat_dtype": ColumnKind.CATEGORICAL,
        "zip": ColumnKind.CATEGORICAL, "age_band": ColumnKind.CATEGORICAL,
    }
    assert schema.task is Task.BINARY and schema.classes == ("bad", "good")
    assert schema.dropped == {"customer_code": "id-like: unique per row", "user_id": "id-like: unique per row",
                              "row": "id-like: unique per row", "always": "constant"}
    assert "y" not in schema.feature_columns
    info = {c.name: c for c in schema.columns}
    assert info["total_text"].missing_share == pytest.approx(2 / N)
    assert info["color"].n_unique == 3


def test_small_frames_have_no_ids():
    s = pd.Series([f"u{i}" for i in range(20)])
    assert infer_kind(s, "who") is ColumnKind.CATEGORICAL  # too few rows to call unique values an id
    assert infer_kind(pd.Series(np.arange(20)), "id") is ColumnKind.NUMERIC


def test_unique_shuffled_integers_without_an_id_name_are_numeric():
    values = np.random.default_rng(1).permutation(np.arange(0, 5 * N, 5) ** 2)
    assert infer_kind(pd.Series(values), "area") is ColumnKind.NUMERIC
    assert infer_kind(pd.Series(values), "order_no") is ColumnKind.ID


def test_target_not_found_suggests_names(frame):
    with pytest.raises(DataError) as info:
        infer_schema(frame, "colour")
    message = _one_line(info)
    assert "'colour' not found" in message and "did you mean 'color'" in message and "--target" in message
    assert "measure" in message  # lists some columns
    with pytest.raises(DataError) as info:
        infer_schema(frame, "zzzzzz")
    assert "did you mean" not in _one_line(info)


def test_user_overrides(frame):
    schema = infer_schema(frame, "y", task="binary", column_kinds={"count": "categorical", "row": ColumnKind.NUMERIC},
                          drop=["color"], keep=["customer_code"])
    assert schema.kind_of("count") is ColumnKind.CATEGORICAL
    assert schema.kind_of("row") is ColumnKind.NUMERIC and "row" not in schema.dropped
    assert schema.dropped["color"] == "dropped by user"
    assert schema.kind_of("customer_code") is ColumnKind.CATEGORICAL and "customer_code" in schema.feature_columns
    assert schema.kept == ("customer_code",)


@pytest.mark.parametrize(("kwargs", "error", "text"), [
    ({"drop": ["nope"]}, DataError, "--drop"),
    ({"keep": ["y"]}, DataError, "target column 'y' cannot be given to --keep"),
    ({"drop": ["color"], "keep": ["color"]}, DataError, "both --drop and --keep"),
    ({"column_kinds": {"color": "fancy"}}, ConfigError, "unknown column kind 'fancy'"),
    ({"column_kinds": {"nope": "numeric"}}, DataError, "'nope' not found"),
    ({"task": "clustering"}, ConfigError, "unknown task 'clustering'"),
    ({"task": "regression"}, DataError, "needs a numeric target"),
    ({"task": "multiclass"}, DataError, "pass --task binary"),
])
def test_bad_overrides(frame, kwargs, error, text):
    with pytest.raises(error) as info:
        infer_schema(frame, "y", **kwargs)
    assert text in _one_line(info)


def test_no_feature_left():
    df = pd.DataFrame({"id": [f"r{i}" for i in range(60)], "c": 1, "y": [0, 1] * 30})
    with pytest.raises(DataError) as info:
        infer_schema(df, "y")
    assert "no feature columns" in _one_line(info) and "--keep" in str(info.value)


def test_classes_in_natural_order_and_json_round_trip(frame):
    frame["y"] = np.random.default_rng(2).choice([10, 9, 1], N)
    schema = infer_schema(frame, "y", task="multiclass")  # integers with gaps would be inferred as regression
    assert schema.task is Task.MULTICLASS and schema.classes == (1, 9, 10)
    assert all(type(c) is int for c in schema.classes)  # python scalars, not numpy
    again = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema
    assert feature_layout(again) == feature_layout(schema)


# ---------------------------------------------------------------------------------------------- target


def test_prepare_target_codes_and_errors():
    df = pd.DataFrame({"x": range(6), "y": [10, 9, 1, 10, np.nan, 9]})
    schema = infer_schema(df, "y", task="multiclass")
    kept, n = drop_missing_target(df, "y")
    assert n == 1 and len(kept) == 5 and kept.index.tolist() == list(range(5))
    assert prepare_target(kept["y"], schema).tolist() == [2, 1, 0, 2, 1]  # 1.0 and 1 are the same class
    with pytest.raises(DataError) as info:
        prepare_target(df["y"], schema)
    assert "missing" in _one_line(info) and "drop_missing_target" in str(info.value)
    with pytest.raises(DataError) as info:
        prepare_target(pd.Series([1, 7]), schema)
    assert "'7'" in _one_line(info)
    with pytest.raises(DataError):
        drop_missing_target(df.assign(y=np.nan), "y")


def test_prepare_target_regression():
    df = pd.DataFrame({"x": range(4), "y": [1.5, 2.0, 3.25, 4.0]})
    schema = infer_schema(df, "y")
    y = prepare_target(df["y"], schema)
    assert y.dtype == np.float64 and y.tolist() == [1.5, 2.0, 3.25, 4.0]
    with pytest.raises(DataError) as info:
        prepare_target(pd.Series(["1.0", "lots"]), schema)
    assert "'lots'" in _one_line(info)


# -------------------------------------------------------------------------------------------- features


def test_prepare_features_train_and_predict(frame):
    schema = infer_schema(frame, "y")
    layout = feature_layout(schema)
    train = prepare_features(frame, schema)
    assert tuple(train.columns) == layout.columns
    assert set(layout.text) == {"review"}
    assert {"color", "zip", "sometimes", "age_band", "cat_dtype"} == set(layout.categorical)
    assert "when__year" in layout.numeric and "when__days" in layout.numeric and "when" not in layout.columns
    for col in layout.numeric:
        assert train[col].dtype == np.float64
    for col in layout.categorical + layout.text:
        assert train[col].dtype == object
    assert set(train["yes_no"].unique()) == {0.0, 1.0}
    assert train["total_text"].isna().sum() == 2
    assert train["when__year"].iloc[0] == 2020 and train["when__hour"].iloc[1] == 13

    # Predict: no target, an extra column, an unseen category and missing values.
    new = frame.drop(columns=["y", "row", "always"]).head(3).copy()
    new["extra"] = 1
    new.loc[0, "color"] = "purple"
    new.loc[1, "measure"] = np.nan
    new.loc[1, "color"] = None
    new.loc[2, "review"] = None
    got = prepare_features(new, schema)
    assert tuple(got.columns) == layout.columns
    assert got.loc[0, "color"] == "purple"
    assert np.isnan(got.loc[1, "measure"]) and got.loc[1, "color"] is np.nan
    assert got.loc[2, "review"] == ""


def test_prepare_features_lacking_columns(frame):
    schema = infer_schema(frame, "y")
    with pytest.raises(DataError) as info:
        prepare_features(frame.drop(columns=["color", "measure"]), schema)
    message = _one_line(info)
    assert "'measure'" in message and "'color'" in message and "add them" in message


def test_categories_are_spelled_the_same_in_train_and_predict():
    train = pd.DataFrame({"code": [1, 2, 3, 1] * 10, "y": [0, 1] * 20})
    schema = infer_schema(train, "y", column_kinds={"code": "categorical"})
    predict = pd.DataFrame({"code": [1.0, np.nan, "2", 3]})  # floats after a missing value, text from a form
    assert prepare_features(train, schema)["code"].head(3).tolist() == ["1", "2", "3"]
    got = prepare_features(predict, schema)["code"].tolist()
    assert got[0] == "1" and got[1] is np.nan and got[2:] == ["2", "3"]


def test_boolean_and_numbers_from_other_types():
    train = pd.DataFrame({"b": ["yes", "no"] * 30, "n": ["1.5", "2"] * 30, "y": [0, 1] * 30})
    schema = infer_schema(train, "y")
    assert schema.kind_of("b") is ColumnKind.BOOLEAN and schema.kind_of("n") is ColumnKind.NUMERIC
    got = prepare_features(pd.DataFrame({"b": [True, "NO", "maybe"], "n": [3, "x", None]}), schema)
    assert got["b"].tolist()[:2] == [1.0, 0.0] and np.isnan(got["b"].iloc[2])
    assert got["n"].iloc[0] == 3.0 and got["n"].iloc[1:].isna().all()


def test_non_text_column_names_are_matched():
    train = pd.DataFrame({"0": np.arange(40) % 7, "y": [0, 1] * 20})
    schema = infer_schema(train, "y")
    got = prepare_features(pd.DataFrame({0: [1, 2]}), schema)
    assert got["0"].tolist() == [1.0, 2.0]
