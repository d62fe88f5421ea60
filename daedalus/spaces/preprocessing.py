"""Column preprocessing shared by the model families: three ColumnTransformer builders, one per kind of model.

* :func:`dense_preprocessor` (linear models, k-NN): every output column is a finite, scaled float.
  Numeric: median imputation + missing indicators + standardisation. Categorical: one-hot, with rare and
  unseen categories folded into one "infrequent" column (or all zeros when there was none at fit time).
* :func:`embedding_preprocessor` (the neural family): numeric as for dense, categorical columns last as
  ordinal codes (-1 for missing/unseen), which the network embeds.
* :func:`tree_preprocessor` (random forest, extra trees): numeric columns pass through with NaN (scikit-learn's
  forests split on missing values natively); categorical columns become ordinal codes, -1 for missing/unseen.
* :func:`native_preprocessor` (gradient-boosting libraries): numeric columns pass through with NaN (a column
  all-NaN at fit time becomes 0), and the categorical columns come *first*, as codes (NaN for unseen) or as
  strings (CatBoost), so that a library's native categorical handling can be pointed at columns
  ``0 .. n_categorical - 1`` (:func:`native_categorical_indices`).

Every text column becomes :data:`TEXT_COMPONENTS` dense columns (TF-IDF then truncated SVD), so output widths
other than the one-hot block are known before fitting.

All transformers here are plain named classes (no lambdas), so the fitted pipelines can be saved with skops.
A layout group that is empty simply contributes no transformer.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from daedalus.data.schema import FeatureLayout

TEXT_MAX_FEATURES = 200
TEXT_COMPONENTS = 16
ONEHOT_MIN_FREQUENCY = 10  # a category seen fewer times joins the "infrequent" column
ONEHOT_MAX_CATEGORIES = 32  # output columns per categorical feature, the infrequent one included
NATIVE_MAX_CATEGORIES = 255  # HistGradientBoosting needs codes < max_bins (255)
MISSING_CATEGORY = "__missing__"


def _to_object_matrix(X: Any) -> np.ndarray:
    """A 2-D object array from a DataFrame, Series or array (pandas extension dtypes included)."""
    if isinstance(X, pd.DataFrame):
        arr = X.to_numpy(dtype=object, na_value=np.nan)
    elif isinstance(X, pd.Series):
        arr = X.to_numpy(dtype=object, na_value=np.nan).reshape(-1, 1)
    else:
        arr = np.asarray(X, dtype=object)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D input, got shape {arr.shape}")
    return arr


class CategoryStrings(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Categorical columns as Python strings; missing values (NaN, None, pd.NA) become ``missing``.

    ``missing=None`` keeps them as NaN (what scikit-learn's encoders treat as missing); a string such as
    ``"__missing__"`` makes missing a category of its own (what CatBoost and the one-hot encoder want).
    Values that are not strings (say 3 or 2.5) are turned into their ``str``, so a column is never mixed-type.
    """

    def __init__(self, missing: str | None = None) -> None:
        self.missing = missing

    def fit(self, X: Any, y: Any = None) -> CategoryStrings:
        arr = _to_object_matrix(X)
        self.n_features_in_ = arr.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        arr = _to_object_matrix(X)
        if arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {arr.shape[1]} columns; {type(self).__name__} was fitted with "
                             f"{self.n_features_in_}")
        mask = pd.isna(arr)
        out = np.empty(arr.shape, dtype=object)
        flat_out, flat_in, flat_mask = out.reshape(-1), arr.reshape(-1), mask.reshape(-1)
        for i, (value, is_missing) in enumerate(zip(flat_in, flat_mask, strict=True)):
            if is_missing:
                flat_out[i] = np.nan if self.missing is None else self.missing
            else:
                flat_out[i] = value if isinstance(value, str) else str(value)
        return out


class EmptyColumnFiller(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Numeric columns passed through with their NaN, except those that were entirely missing at fit time,
    which become 0 (HistGradientBoosting's binning fails on a column without any value)."""

    def fit(self, X: Any, y: Any = None) -> EmptyColumnFiller:
        arr = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = arr.shape[1]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.empty_ = np.isnan(arr).all(axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "empty_")
        arr = np.array(X, dtype=np.float64)  # a copy
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise ValueError(f"X has shape {arr.shape}; {type(self).__name__} was fitted with "
                             f"{self.n_features_in_} columns")
        arr[:, self.empty_] = 0.0
        return arr


class TextEmbedder(TransformerMixin, BaseEstimator):
    """One text column -> ``n_components`` dense columns: TF-IDF (``max_features`` terms) then truncated SVD.

    The width is always ``n_components``: when the vocabulary is small the TF-IDF columns are used as they
    are and padded with zeros; an empty vocabulary (all documents blank) gives zeros.
    """

    def __init__(self, max_features: int = TEXT_MAX_FEATURES, n_components: int = TEXT_COMPONENTS,
                 random_state: int | None = None) -> None:
        self.max_features = max_features
        self.n_components = n_components
        self.random_state = random_state

    @staticmethod
    def _documents(X: Any) -> np.ndarray:
        arr = _to_object_matrix(X)
        if arr.shape[1] != 1:
            raise ValueError(f"TextEmbedder takes one text column, got {arr.shape[1]}")
        col = arr[:, 0]
        mask = pd.isna(col)
        return np.array(["" if m else (v if isinstance(v, str) else str(v)) for v, m in zip(col, mask, strict=True)],
                        dtype=object)

    def fit(self, X: Any, y: Any = None) -> TextEmbedder:
        docs = self._documents(X)
        self.n_features_in_ = 1
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        vectorizer = TfidfVectorizer(max_features=self.max_features, sublinear_tf=True)
        try:
            tfidf = vectorizer.fit_transform(docs)
        except ValueError:  # empty vocabulary: no document has a token
            self.vectorizer_, self.svd_ = None, None
            return self
        self.vectorizer_ = vectorizer
        n_terms = tfidf.shape[1]
        n_svd = min(self.n_components, tfidf.shape[0] - 1)
        if n_terms > self.n_components and n_svd >= 1:
            self.svd_ = TruncatedSVD(n_components=n_svd, random_state=self.random_state).fit(tfidf)
        else:
            self.svd_ = None
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        docs = self._documents(X)
        out = np.zeros((len(docs), self.n_components), dtype=np.float64)
        if self.vectorizer_ is None:
            return out
        tfidf = self.vectorizer_.transform(docs)
        emb = self.svd_.transform(tfidf) if self.svd_ is not None else tfidf[:, : self.n_components].toarray()
        out[:, : emb.shape[1]] = emb
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        if input_features is not None and len(input_features) == 1:
            name = str(input_features[0])
        elif hasattr(self, "feature_names_in_"):
            name = str(self.feature_names_in_[0])
        else:
            name = "text"
        return np.asarray([f"{name}_svd{i}" for i in range(self.n_components)], dtype=object)


def _text_transformers(layout: FeatureLayout, seed: int) -> list[tuple[str, Any, list[str]]]:
    return [(f"text{i}", TextEmbedder(random_state=seed), [col]) for i, col in enumerate(layout.text)]


def _column_transformer(parts: list[tuple[str, Any, list[str]]]) -> ColumnTransformer:
    return ColumnTransformer([p for p in parts if p[2]], remainder="drop", sparse_threshold=0.0)


def dense_preprocessor(layout: FeatureLayout, seed: int) -> ColumnTransformer:
    """Finite, standardised floats: for linear models and k-NN."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True,
                                                      keep_empty_features=True)),
                        ("scale", StandardScaler())])
    categorical = Pipeline([
        ("strings", CategoryStrings(missing=MISSING_CATEGORY)),
        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=ONEHOT_MIN_FREQUENCY,
                                 max_categories=ONEHOT_MAX_CATEGORIES, sparse_output=False, dtype=np.float64)),
    ])
    return _column_transformer([("num", numeric, list(layout.numeric)),
                                ("cat", categorical, list(layout.categorical)),
                                *_text_transformers(layout, seed)])


def embedding_preprocessor(layout: FeatureLayout, seed: int) -> ColumnTransformer:
    """Standardised numeric and text columns first, then the categorical columns *last* as ordinal codes
    (-1 for missing/unseen): for the neural family, whose network embeds each categorical column."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True,
                                                      keep_empty_features=True)),
                        ("scale", StandardScaler())])
    return _column_transformer([("num", numeric, list(layout.numeric)), *_text_transformers(layout, seed),
                                ("cat", _ordinal_codes(), list(layout.categorical))])


def _ordinal_codes() -> Pipeline:
    return Pipeline([
        ("strings", CategoryStrings()),
        ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                   encoded_missing_value=-1, dtype=np.float64)),
    ])


def tree_preprocessor(layout: FeatureLayout, seed: int) -> ColumnTransformer:
    """Numeric with NaN (forests split on missing values), categorical as ordinal codes (-1: missing/unseen)."""
    return _column_transformer([("num", "passthrough", list(layout.numeric)),
                                ("cat", _ordinal_codes(), list(layout.categorical)),
                                *_text_transformers(layout, seed)])


def native_preprocessor(layout: FeatureLayout, seed: int,
                        categories: Literal["codes", "strings"] = "codes") -> ColumnTransformer:
    """Categorical columns first, then numeric (NaN kept), then text: for the gradient-boosting libraries.

    ``categories="codes"``: float codes 0..254 (the 254 most frequent categories, missing being one of them,
    then one "infrequent" code), NaN for unseen; for HistGradientBoosting, LightGBM and XGBoost.
    ``categories="strings"``: strings with ``"__missing__"`` for missing; for CatBoost. The output is then a
    DataFrame so that numeric columns keep their float dtype next to the string ones.
    """
    cat: Any
    if categories == "codes":
        # Missing is a category of its own, so every column has at least one category (HistGradientBoosting
        # fails on a categorical column without any, e.g. one that is all missing in a fold).
        cat = Pipeline([
            ("strings", CategoryStrings(missing=MISSING_CATEGORY)),
            ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                       encoded_missing_value=np.nan, max_categories=NATIVE_MAX_CATEGORIES,
                                       dtype=np.float64)),
        ])
    elif categories == "strings":
        cat = CategoryStrings(missing=MISSING_CATEGORY)
    else:
        raise ValueError(f"categories must be 'codes' or 'strings', got {categories!r}")
    ct = _column_transformer([("cat", cat, list(layout.categorical)),
                              ("num", EmptyColumnFiller(), list(layout.numeric)),
                              *_text_transformers(layout, seed)])
    if categories == "strings":
        ct.set_output(transform="pandas")
    return ct


def native_categorical_indices(layout: FeatureLayout) -> list[int]:
    """Positions of the categorical columns in :func:`native_preprocessor`'s output."""
    return list(range(len(layout.categorical)))


def native_feature_types(layout: FeatureLayout) -> list[str]:
    """XGBoost ``feature_types`` for :func:`native_preprocessor`'s output: "c" categorical, "q" numeric."""
    n_numeric = len(layout.numeric) + TEXT_COMPONENTS * len(layout.text)
    return ["c"] * len(layout.categorical) + ["q"] * n_numeric
