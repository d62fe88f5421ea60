"""Meta-features: hand-computed values on small tables, the landmarkers' scale, the time limit, determinism, the
record's round trip (and damaged records refused), and odd tables that must give NaN rather than raise."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from daedalus.data import infer_schema, prepare_features, prepare_target
from daedalus.data.metafeatures import (
    META_FEATURE_DOCS,
    META_FEATURE_NAMES,
    SIMILARITY_NAMES,
    MetaFeatures,
    meta_features,
)
from daedalus.data.schema import Task
from daedalus.data.sensitive import SENSITIVE_PREFIX

LANDMARKS = ("landmark_stump", "landmark_naive_bayes", "landmark_1nn", "landmark_linear")


def small_frame() -> pd.DataFrame:
    """One categorical column (3 categories, one missing cell) and one numeric column (one missing cell)."""
    return pd.DataFrame({"num": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
                         "cat": pd.Series(["a", "b", "a", np.nan, "c", "a"], dtype=object)})


def same(a: MetaFeatures, b: MetaFeatures) -> bool:
    return a.to_dict()["values"] == b.to_dict()["values"]


def test_names_are_fixed_and_documented() -> None:
    assert len(META_FEATURE_NAMES) == len(set(META_FEATURE_NAMES)) == len(META_FEATURE_DOCS)
    assert META_FEATURE_NAMES[:2] == ("n_rows", "n_features")
    assert META_FEATURE_NAMES[-4:] == LANDMARKS


def test_hand_computed_classification_values() -> None:
    mf = meta_features(small_frame(), np.array([0, 0, 0, 0, 1, 1]), Task.BINARY)
    v = mf.values
    assert (v["n_rows"], v["n_features"], v["n_numeric"], v["n_categorical"]) == (6, 2, 1, 1)
    assert v["numeric_share"] == v["categorical_share"] == 0.5
    assert v["mean_categories"] == 3.0  # a, b, c; the missing cell is not a category
    assert v["missing_share"] == pytest.approx(2 / 12)
    assert v["missing_columns_share"] == 1.0
    assert v["n_classes"] == 2
    # p = (4/6, 2/6): entropy -(2/3 ln 2/3 + 1/3 ln 1/3) / ln 2 = 0.918296
    assert v["class_entropy"] == pytest.approx(0.918296, abs=1e-6)
    assert v["class_imbalance"] == 0.5
    # num without its missing cell: 1, 2, 4, 5, 6; mean 3.6; m2 = 17.2 / 5 = 3.44, m3 = -5.04 / 5 = -1.008
    assert v["mean_abs_skewness"] == pytest.approx(1.008 / 3.44 ** 1.5)
    assert math.isnan(v["target_skewness"]) and math.isnan(v["target_kurtosis"])
    assert mf.seconds >= 0


def test_hand_computed_regression_target_moments() -> None:
    mf = meta_features(small_frame(), np.array([0.0, 0.0, 0.0, 0.0, 0.0, 6.0]), Task.REGRESSION)
    v = mf.values
    # y mean 1; deviations -1 (x5), 5: m2 = 30/6 = 5, m3 = 120/6 = 20, m4 = 630/6 = 105
    assert v["target_skewness"] == pytest.approx(20 / 5 ** 1.5)
    assert v["target_kurtosis"] == pytest.approx(105 / 25 - 3)
    for name in ("n_classes", "class_entropy", "class_imbalance"):
        assert math.isnan(v[name])


def test_landmarkers_score_one_on_a_separable_table() -> None:
    x = np.concatenate([np.arange(30.0), np.arange(100.0, 130.0)])
    X = pd.DataFrame({"x": x, "noise": np.random.default_rng(0).normal(size=60) * 0.01})
    v = meta_features(X, (x >= 100).astype(int), Task.BINARY).values
    for name in LANDMARKS:
        assert v[name] == 1.0, name


def test_regression_landmarkers_on_a_linear_target() -> None:
    x = np.random.default_rng(1).normal(size=1000)
    v = meta_features(pd.DataFrame({"x": x}), 3 * x + 1, Task.REGRESSION).values
    assert v["landmark_linear"] > 0.99
    assert v["landmark_1nn"] > 0.95
    assert 0.0 < v["landmark_stump"] < 0.9  # one split explains part of a line, not all of it
    assert 0.5 < v["landmark_naive_bayes"] <= 1.0


def test_stump_is_near_chance_on_random_labels() -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(4000, 5)), columns=list("abcde"))
    v = meta_features(X, rng.integers(0, 2, 4000), Task.BINARY).values
    assert abs(v["landmark_stump"] - 0.5) < 0.1
    assert abs(v["landmark_linear"] - 0.5) < 0.1


def test_landmarkers_use_a_stratified_subsample_that_keeps_a_rare_class() -> None:
    rng = np.random.default_rng(3)
    y = np.zeros(20_000, dtype=int)
    y[:8] = 1  # 8 rows in 20,000: a proportional 400-row sample would hold none
    X = pd.DataFrame({"signal": y + rng.normal(size=y.size) * 0.01})
    v = meta_features(X, y, Task.BINARY).values
    assert v["class_imbalance"] == pytest.approx(8 / 19_992)
    assert v["landmark_stump"] == 1.0  # the rare class was sampled, and found: balanced accuracy weighs it


def test_time_limit_zero_skips_every_landmarker() -> None:
    X = pd.DataFrame(np.random.default_rng(4).normal(size=(5000, 8)))
    start = time.perf_counter()
    mf = meta_features(X, np.arange(5000) % 2, Task.BINARY, time_limit=0)
    assert time.perf_counter() - start < 1.0 and mf.seconds < 1.0
    assert all(math.isnan(mf.values[name]) for name in LANDMARKS)
    assert mf.values["n_rows"] == 5000 and mf.values["class_entropy"] == 1.0  # the statistics still run


def test_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.choice(["x", "y", None], 3000)})
    y = (X["a"] + rng.normal(size=3000) > 0).astype(int).to_numpy()
    first, second = meta_features(X, y, Task.BINARY, seed=7), meta_features(X, y, Task.BINARY, seed=7)
    assert same(first, second)
    assert not any(math.isnan(first.values[name]) for name in LANDMARKS)


def test_round_trip_through_json() -> None:
    mf = meta_features(small_frame(), np.array([0, 1, 2, 0, 1, 2]), Task.MULTICLASS)
    text = json.dumps(mf.to_dict(), allow_nan=False)  # NaN would not be JSON: it is written as null
    back = MetaFeatures.from_dict(json.loads(text))
    assert same(back, mf) and back.seconds == mf.seconds
    assert math.isnan(back.values["target_skewness"])
    assert np.array_equal(back.vector(), mf.vector(), equal_nan=True)


def test_vector_puts_counts_on_a_log_scale_and_keeps_nan() -> None:
    mf = meta_features(small_frame(), np.array([0, 0, 0, 0, 1, 1]), Task.BINARY)
    vec = mf.vector()
    assert vec.shape == (len(META_FEATURE_NAMES),) and vec.dtype == np.float64
    at = {name: vec[i] for i, name in enumerate(META_FEATURE_NAMES)}
    assert at["n_rows"] == pytest.approx(math.log1p(6))
    assert at["missing_share"] == pytest.approx(2 / 12)  # a share stays as it is
    assert math.isnan(at["target_kurtosis"])


def test_similarity_vector_holds_size_and_relative_landmarkers() -> None:
    values = dict.fromkeys(META_FEATURE_NAMES, math.nan)
    values.update(n_rows=999.0, n_features=9.0, landmark_stump=0.5, landmark_naive_bayes=0.6, landmark_1nn=0.7,
                  landmark_linear=0.9)
    vec = MetaFeatures(values, 0.0).similarity_vector()
    assert len(vec) == len(SIMILARITY_NAMES) == 6
    assert vec == pytest.approx([math.log1p(999), math.log1p(9), 0.4, 0.2, 0.2, -0.3])
    values["landmark_1nn"] = math.nan  # time ran out before 1-NN: the differences that need it are unknown
    assert np.isnan(MetaFeatures(values, 0.0).similarity_vector()).tolist() == [False, False, False, True, True, False]


@pytest.mark.parametrize("damage", [
    lambda d: d["values"].pop("n_rows"),
    lambda d: d["values"].__setitem__("n_rows", "6"),
    lambda d: d["values"].__setitem__("n_rows", True),
    lambda d: d["values"].__setitem__("n_rows", [6]),
    lambda d: d["values"].__setitem__("rows_squared", 36.0),
    lambda d: d.__setitem__("extra", 1),
    lambda d: d.pop("seconds"),
    lambda d: d.__setitem__("seconds", -1.0),
    lambda d: d.__setitem__("values", [1.0, 2.0]),
], ids=["missing name", "string value", "bool value", "list value", "unknown name", "extra key", "no seconds",
        "negative seconds", "values not a mapping"])
def test_damaged_records_are_refused(damage: object) -> None:
    d = meta_features(small_frame(), np.array([0, 0, 0, 0, 1, 1]), Task.BINARY).to_dict()
    damage(d)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"meta-feature"):
        MetaFeatures.from_dict(d)


def test_refused_records_name_the_problem() -> None:
    d = MetaFeatures(dict.fromkeys(META_FEATURE_NAMES, 1.0), 0.1).to_dict()
    d["values"]["landmark_1nn"] = "high"
    with pytest.raises(ValueError, match="landmark_1nn"):
        MetaFeatures.from_dict(d)
    with pytest.raises(ValueError, match="mapping"):
        MetaFeatures.from_dict("not a record")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_rows"):
        MetaFeatures({n: 1.0 for n in META_FEATURE_NAMES if n != "n_rows"}, 0.1)


def _odd_tables() -> dict[str, tuple[pd.DataFrame, np.ndarray, Task]]:
    rng = np.random.default_rng(6)
    n = 50
    return {
        "one column": (pd.DataFrame({"a": rng.normal(size=n)}), rng.integers(0, 2, n), Task.BINARY),
        "all-missing numeric": (pd.DataFrame({"a": np.full(n, np.nan), "b": rng.normal(size=n)}),
                                rng.integers(0, 2, n), Task.BINARY),
        "only all-missing columns": (pd.DataFrame({"a": np.full(n, np.nan), "c": pd.Series([None] * n, dtype=object)}),
                                     rng.integers(0, 3, n), Task.MULTICLASS),
        "one class": (pd.DataFrame({"a": rng.normal(size=n)}), np.zeros(n, dtype=int), Task.BINARY),
        "a class of one row": (pd.DataFrame({"a": rng.normal(size=n)}), np.r_[np.zeros(n - 1, int), 1], Task.BINARY),
        "constant target": (pd.DataFrame({"a": rng.normal(size=n)}), np.full(n, 3.0), Task.REGRESSION),
        "constant features": (pd.DataFrame({"a": np.ones(n), "b": ["x"] * n}), rng.normal(size=n), Task.REGRESSION),
        "one row": (pd.DataFrame({"a": [1.0]}), np.array([0]), Task.BINARY),
        "two rows": (pd.DataFrame({"a": [1.0, 2.0]}), np.array([1.0, 2.0]), Task.REGRESSION),
        "no rows": (pd.DataFrame({"a": np.array([], dtype=float)}), np.array([], dtype=int), Task.BINARY),
        "no columns": (pd.DataFrame(index=range(n)), rng.integers(0, 2, n), Task.BINARY),
        "infinite and huge": (pd.DataFrame({"a": np.r_[np.inf, -np.inf, 1e308, -1e308, rng.normal(size=n - 4)]}),
                              rng.normal(size=n), Task.REGRESSION),
        "huge target": (pd.DataFrame({"a": rng.normal(size=n)}), np.r_[1e308, -1e308, rng.normal(size=n - 2)],
                        Task.REGRESSION),
        "labels not from zero": (pd.DataFrame({"a": rng.normal(size=n)}), rng.integers(5, 9, n), Task.MULTICLASS),
        "string labels": (pd.DataFrame({"a": rng.normal(size=n)}), rng.choice(["p", "q"], n), Task.BINARY),
        "labels with a missing one": (pd.DataFrame({"a": rng.normal(size=n)}),
                                      np.array(["p", None, 3] * 16 + ["p", "q"], dtype=object), Task.MULTICLASS),
        "target with text and missing": (pd.DataFrame({"a": rng.normal(size=n)}),
                                         np.array([1.5, "x", None, 2] * 12 + [1, 2], dtype=object), Task.REGRESSION),
        "numbers and strings in one column": (pd.DataFrame({"a": pd.Series([1, "x", 2.5, None] * 10, dtype=object)}),
                                              np.arange(40) % 2, Task.BINARY),
        "a repeated column name": (pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "a"]), rng.integers(0, 2, n),
                                   Task.BINARY),
        "pandas extension dtypes": (pd.DataFrame({"a": pd.Categorical(["u", "v"] * 25),
                                                  "b": pd.array([1, None] * 25, dtype="Int64"),
                                                  "c": pd.array([True, None] * 25, dtype="boolean")}),
                                    rng.integers(0, 2, n), Task.BINARY),
    }


@pytest.mark.parametrize("name", list(_odd_tables()))
def test_odd_tables_give_nan_not_errors(name: str) -> None:
    X, y, task = _odd_tables()[name]
    mf = meta_features(X, y, task)
    assert set(mf.values) == set(META_FEATURE_NAMES)
    assert all(isinstance(v, float) for v in mf.values.values())
    json.dumps(mf.to_dict(), allow_nan=False)
    assert all(-1.0 <= mf.values[k] <= 1.0 for k in LANDMARKS if not math.isnan(mf.values[k]))


def test_odd_tables_are_undefined_where_they_should_be() -> None:
    tables = _odd_tables()
    one_class = meta_features(*tables["one class"]).values
    assert one_class["n_classes"] == 1
    assert all(math.isnan(one_class[k]) for k in ("class_entropy", "class_imbalance", *LANDMARKS))
    constant = meta_features(*tables["constant target"]).values
    assert all(math.isnan(constant[k]) for k in ("target_skewness", "target_kurtosis", *LANDMARKS))
    empty = meta_features(*tables["no columns"]).values
    assert empty["n_features"] == 0 and math.isnan(empty["numeric_share"]) and math.isnan(empty["landmark_stump"])
    rare = meta_features(*tables["a class of one row"]).values
    assert not math.isnan(rare["landmark_stump"])  # a class of one row does not break the folds


def test_a_prepared_frame_from_the_pipeline() -> None:
    """The frame a build hands over: booleans and date parts are numeric, text and categories are strings; the
    target is encoded; carried sensitive columns are not features."""
    n = 60
    rng = np.random.default_rng(8)
    raw = pd.DataFrame({
        "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "flag": rng.choice(["yes", "no"], n),
        "colour": rng.choice(["red", "green", "blue"], n),
        "note": [f"free text number {i} about the row {i % 7}" for i in range(n)],
        "size": rng.normal(size=n),
        "label": rng.choice(["good", "bad"], n),
    })
    schema = infer_schema(raw, "label")
    X, y = prepare_features(raw, schema), prepare_target(raw["label"], schema)
    X[SENSITIVE_PREFIX + "sex"] = rng.choice(["f", "m"], n)
    v = meta_features(X, y, schema.task).values
    assert v["n_features"] == 10  # 6 date parts + flag + size numeric; colour, note as strings
    assert (v["n_numeric"], v["n_categorical"]) == (8, 2)
    assert not math.isnan(v["landmark_linear"])


def test_a_wide_table_is_sampled_not_read_whole() -> None:
    rng = np.random.default_rng(10)
    X = pd.DataFrame(rng.normal(size=(800, 8000)))  # 6.4 million cells: the statistics read a sample of rows
    X[0] = np.nan  # an all-missing column is missing in every sample
    mf = meta_features(X, rng.integers(0, 3, 800), Task.MULTICLASS)
    assert mf.values["n_rows"] == 800 and mf.values["n_features"] == 8000
    assert mf.values["missing_columns_share"] == pytest.approx(1 / 8000)
    assert mf.values["missing_share"] == pytest.approx(1 / 8000)
    assert not any(math.isnan(mf.values[k]) for k in LANDMARKS)  # on LANDMARK_COLUMNS of the columns
    assert mf.seconds < 3.0


@pytest.mark.slow
def test_100k_rows_within_three_seconds() -> None:
    rng = np.random.default_rng(9)
    n = 100_000
    X = pd.DataFrame(rng.normal(size=(n, 20)), columns=[f"x{i}" for i in range(20)])
    for i in range(10):
        X[f"c{i}"] = pd.Series(rng.choice(["a", "b", "c", "d", None], n), dtype=object)
    y = rng.integers(0, 5, n)
    meta_features(X.iloc[:100], y[:100], Task.MULTICLASS)  # imports (scikit-learn) are not the function's cost
    mf = meta_features(X, y, Task.MULTICLASS)
    assert mf.seconds < 3.0
    assert not any(math.isnan(mf.values[k]) for k in LANDMARKS)
