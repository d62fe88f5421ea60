"""Column preprocessing: widths, missing values, unseen categories, empty layout groups, text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from daedalus.data.schema import FeatureLayout, Task
from daedalus.spaces.preprocessing import (
    MISSING_CATEGORY,
    NATIVE_MAX_CATEGORIES,
    TEXT_COMPONENTS,
    CategoryStrings,
    TextEmbedder,
    dense_preprocessor,
    native_categorical_indices,
    native_feature_types,
    native_preprocessor,
    tree_preprocessor,
)
from daedalus.spaces.testing import toy_problem, with_unseen

BUILDERS = {
    "dense": dense_preprocessor,
    "tree": tree_preprocessor,
    "native-codes": lambda layout, seed: native_preprocessor(layout, seed, "codes"),
    "native-strings": lambda layout, seed: native_preprocessor(layout, seed, "strings"),
}


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("groups", [(3, 2, True), (2, 0, False), (0, 2, False), (0, 0, True)],
                         ids=["all", "numeric-only", "categorical-only", "text-only"])
def test_shapes_are_stable_with_unseen_values(kind: str, groups: tuple[int, int, bool]) -> None:
    X, _, layout = toy_problem(Task.BINARY, 60, n_numeric=groups[0], n_categorical=groups[1], text=groups[2])
    ct = BUILDERS[kind](layout, 0)
    fitted = ct.fit_transform(X)
    unseen = ct.transform(with_unseen(X, layout))
    assert fitted.shape == unseen.shape and fitted.shape[0] == 60
    if kind == "dense":
        assert np.all(np.isfinite(unseen))
    if kind.startswith("native"):
        n_cat = len(layout.categorical)
        assert unseen.shape[1] == len(native_feature_types(layout))
        assert native_categorical_indices(layout) == list(range(n_cat))
        head = np.asarray(unseen)[:5, :n_cat]
        if kind == "native-codes":
            assert np.all(np.isnan(head.astype(float)))  # unseen -> NaN (missing for every library)
        else:
            assert np.all(head == "never-seen-before")


def test_dense_one_hot_is_bounded_and_unseen_is_all_zero() -> None:
    rng = np.random.default_rng(0)
    cats = pd.Series([f"v{i}" for i in rng.integers(0, 500, 3000)], dtype=object)
    cats[::7] = np.nan
    X = pd.DataFrame({"x": rng.normal(size=3000), "c": cats})
    layout = FeatureLayout(("x",), ("c",), ())
    Z = dense_preprocessor(layout, 0).fit(X)
    names = list(Z.get_feature_names_out())
    assert len(names) <= 2 + 32  # x, no missing indicator for x, <= 32 one-hot columns
    assert f"cat__c_{MISSING_CATEGORY}" in names and "cat__c_infrequent_sklearn" in names


def test_native_codes_fit_histgradientboosting_limits() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"c": pd.Series([f"v{i}" for i in rng.integers(0, 1000, 5000)], dtype=object)})
    codes = native_preprocessor(FeatureLayout((), ("c",), ()), 0).fit_transform(X)
    assert np.nanmax(codes) == NATIVE_MAX_CATEGORIES - 1 and np.nanmin(codes) == 0


def test_tree_preprocessor_keeps_nan_and_codes_missing_as_minus_one() -> None:
    X = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": pd.Series(["a", np.nan, "b"], dtype=object)})
    ct = tree_preprocessor(FeatureLayout(("x",), ("c",), ()), 0).fit(X)
    out = ct.transform(pd.DataFrame({"x": [np.nan], "c": pd.Series(["zzz"], dtype=object)}))
    assert np.isnan(out[0, 0]) and out[0, 1] == -1
    assert ct.transform(X)[1, 1] == -1


@pytest.mark.parametrize("dtype", ["object", "str", "string"])
def test_category_strings_normalises_missing_and_types(dtype: str) -> None:
    col = pd.Series(["a", None, "b", np.nan], dtype=dtype)
    X = pd.DataFrame({"c": col, "n": pd.Series([1, 2.5, None, 3], dtype=object)})
    out = CategoryStrings(missing=MISSING_CATEGORY).fit_transform(X)
    assert out.dtype == object
    assert out[:, 0].tolist() == ["a", MISSING_CATEGORY, "b", MISSING_CATEGORY]
    assert out[:, 1].tolist() == ["1", "2.5", MISSING_CATEGORY, "3"]
    nan_out = CategoryStrings().fit_transform(X)
    assert pd.isna(nan_out[1, 0]) and nan_out[0, 0] == "a"


def test_text_embedder_width_is_fixed() -> None:
    docs = pd.DataFrame({"t": pd.Series(["a b c", "", np.nan, "b c d e"] * 10, dtype=object)})
    small = TextEmbedder(n_components=TEXT_COMPONENTS).fit(docs)  # vocabulary of 5 terms < 16: padded
    assert small.svd_ is None and small.transform(docs).shape == (40, TEXT_COMPONENTS)
    blank = TextEmbedder().fit(pd.DataFrame({"t": ["", "", " "]}))  # no tokens at all: zeros
    assert blank.vectorizer_ is None
    assert np.all(blank.transform(pd.DataFrame({"t": ["hello"]})) == 0)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    many = pd.DataFrame({"t": [" ".join(rng.choice(words, 8)) for _ in range(200)]})
    big = TextEmbedder(random_state=0).fit(many)
    assert big.svd_ is not None and big.transform(many).shape == (200, TEXT_COMPONENTS)
    assert len(big.get_feature_names_out()) == TEXT_COMPONENTS
