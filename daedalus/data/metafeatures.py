"""Meta-features: a fast, fixed-length description of a table, to compare it with past tasks.

Used to find similar past tasks in the knowledge base, to order the mined portfolio for a new table, and
stored with every run. ``meta_features(X, y, task)`` takes the *prepared* feature frame (numeric columns are
float64, categorical and text columns object strings, see ``FeatureLayout``) and the encoded target
(``prepare_target``: class codes 0..k-1, or floats).

Two kinds of values (names and order: ``META_FEATURE_NAMES``):

* simple statistics, computed on the whole table (the moments of numeric columns on a sample of rows);
* landmarkers: four cheap models (a decision stump, Gaussian naive Bayes, 1-nearest-neighbour, a linear model),
  each cross-validated (3 folds) on a stratified subsample of at most ``LANDMARK_ROWS`` rows, on a simple
  numeric encoding (ordinal codes for categoricals, median imputation, standardisation). Their scores share
  one scale whatever the task: balanced accuracy for classification, R^2 clipped to [-1, 1] for regression.
  They run in order while the time limit allows; the rest are NaN.

Nothing here raises on an odd table (one column, an all-missing column, one class, a constant target): a value
that is undefined is NaN. The values are deterministic for a seed, provided the time limit lets every
landmarker finish (a slower machine may leave a landmarker NaN that a faster one computes).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from daedalus.data.schema import Task
from daedalus.data.sensitive import SENSITIVE_PREFIX

# Each name, in the fixed order of ``MetaFeatures.vector``, with what it measures.
_DESCRIBED: tuple[tuple[str, str], ...] = (
    ("n_rows", "rows of the table (count)"),
    ("n_features", "feature columns of the prepared frame (count)"),
    ("n_numeric", "numeric feature columns: numbers, booleans, date parts (count)"),
    ("n_categorical", "categorical and text feature columns (count)"),
    ("numeric_share", "n_numeric / n_features"),
    ("categorical_share", "n_categorical / n_features"),
    ("mean_categories", "mean number of distinct values of the categorical columns (count; NaN if none)"),
    ("missing_share", "share of the feature cells that are missing"),
    ("missing_columns_share", "share of the feature columns with at least one missing cell"),
    ("n_classes", "classes present in the target (count; NaN for regression)"),
    ("class_entropy", "entropy of the class distribution / log(n_classes), in [0, 1] (NaN: regression, 1 class)"),
    ("class_imbalance", "rows of the rarest class / rows of the commonest, in (0, 1] (NaN: regression, 1 class)"),
    ("target_skewness", "skewness of the regression target (NaN: classification, constant target)"),
    ("target_kurtosis", "excess kurtosis of the regression target (NaN: classification, constant target)"),
    ("mean_abs_skewness", "mean |skewness| of the non-constant numeric columns (NaN if none)"),
    ("landmark_stump", "depth-1 decision tree, cross-validated score"),
    ("landmark_naive_bayes", "Gaussian naive Bayes (regression: on the target's quintiles), cross-validated score"),
    ("landmark_1nn", "1-nearest-neighbour, cross-validated score"),
    ("landmark_linear", "logistic regression / ridge, cross-validated score"),
)
META_FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in _DESCRIBED)
META_FEATURE_DOCS: dict[str, str] = dict(_DESCRIBED)

# Counts span orders of magnitude (20 rows .. 10 million): distances see them on a log scale.
_COUNTS = frozenset({"n_rows", "n_features", "n_numeric", "n_categorical", "mean_categories", "n_classes"})
# Moments are unbounded (a heavy-tailed target has kurtosis in the thousands): a signed log keeps their sign and
# order without letting one table's tail dominate every distance.
_MOMENTS = frozenset({"target_skewness", "target_kurtosis", "mean_abs_skewness"})

# Differences between landmarkers ("relative landmarkers", Fuernkranz & Petrak 2001): how much a linear model gains
# over a stump or over 1-NN tells which model family wins better than either score alone.
RELATIVE_LANDMARKS: tuple[tuple[str, str], ...] = (
    ("landmark_linear", "landmark_stump"), ("landmark_linear", "landmark_1nn"),
    ("landmark_1nn", "landmark_stump"), ("landmark_naive_bayes", "landmark_linear"))
SIMILARITY_NAMES: tuple[str, ...] = ("n_rows", "n_features", *(f"{a} - {b}" for a, b in RELATIVE_LANDMARKS))

LANDMARK_ROWS = 400  # rows of the landmarkers' subsample
LANDMARK_FOLDS = 3
# The numeric columns' skewness is read from a sample: at most this many columns (chosen by the seed) and rows,
# and about MOMENT_CELLS cells. A mean over 1,000 columns of skewness on 1,000+ rows is stable to a few percent.
MOMENT_ROWS = 20_000
MOMENT_COLUMNS = 1_000
MOMENT_CELLS = 1_000_000
# A bigger table's missing shares and category counts are read from a sample of rows holding about this many cells
# (100,000 rows x 50 columns are read whole): the statistics then cost well under a second whatever the table.
STAT_CELLS = 5_000_000
_NB_BINS = 5  # naive Bayes on a regression target: quantile bins, predicting each bin's mean


@dataclass(frozen=True)
class MetaFeatures:
    """The description of one table: ``values`` holds every name of ``META_FEATURE_NAMES`` (NaN where the value
    is undefined or was not computed in time); ``seconds`` is the wall time ``meta_features`` spent."""

    values: dict[str, float]
    seconds: float

    def __post_init__(self) -> None:
        missing = [n for n in META_FEATURE_NAMES if n not in self.values]
        extra = [n for n in self.values if n not in META_FEATURE_DOCS]
        if missing or extra:
            raise ValueError(f"meta-features must hold exactly META_FEATURE_NAMES: missing {missing}, unknown {extra}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN (and any non-finite value) is written as None."""
        return {"values": {n: _json_number(self.values[n]) for n in META_FEATURE_NAMES},
                "seconds": _json_number(self.seconds)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetaFeatures:
        """The inverse of ``to_dict``. A damaged record (not a mapping, a missing or unknown name, a value that is
        not a number or None) raises ValueError naming what is wrong."""
        if not isinstance(d, Mapping):
            raise ValueError(f"meta-features must be a mapping with 'values' and 'seconds', not {type(d).__name__}")
        if set(d) != {"values", "seconds"}:
            got = ", ".join(sorted(map(repr, d)))
            raise ValueError(f"meta-features must have exactly the keys 'values' and 'seconds' (got {got})")
        values = d["values"]
        if not isinstance(values, Mapping):
            raise ValueError(f"meta-features 'values' must be a mapping of name to number, not {type(values).__name__}")
        missing = [n for n in META_FEATURE_NAMES if n not in values]
        if missing:
            raise ValueError(f"meta-features lack value(s) {', '.join(missing)}")
        unknown = sorted(str(n) for n in values if n not in META_FEATURE_DOCS)
        if unknown:
            raise ValueError(f"meta-features hold unknown name(s) {', '.join(unknown)}")
        seconds = _number(d["seconds"], "seconds")
        if not seconds >= 0:
            raise ValueError(f"meta-features 'seconds' must be a number >= 0, not {d['seconds']!r}")
        return cls(values={n: _number(values[n], n) for n in META_FEATURE_NAMES}, seconds=seconds)

    def vector(self) -> np.ndarray:
        """The values as a float vector in ``META_FEATURE_NAMES`` order, for distances: counts as log1p, moments
        as sign(x) * log1p(|x|), shares and scores as they are. NaN is kept: the caller imputes."""
        out = np.empty(len(META_FEATURE_NAMES))
        for i, name in enumerate(META_FEATURE_NAMES):
            x = float(self.values[name])
            if name in _COUNTS:
                x = math.log1p(max(x, 0.0)) if not math.isnan(x) else x
            elif name in _MOMENTS:
                x = math.copysign(math.log1p(abs(x)), x) if not math.isnan(x) else x
            out[i] = x
        return out


    def similarity_vector(self) -> np.ndarray:
        """Fewer coordinates for finding similar tasks (``SIMILARITY_NAMES``): rows and columns as ``vector`` scales
        them, then the relative landmarkers. On 155 tasks (``bench/metafeatures_bench.py --study``), the 5 nearest
        tasks by these picked the best model family with 25% fewer points lost than by the whole ``vector``
        (which did no better than always picking the linear model). NaN kept: the caller imputes."""
        whole = dict(zip(META_FEATURE_NAMES, self.vector(), strict=True))
        return np.array([whole["n_rows"], whole["n_features"], *(whole[a] - whole[b] for a, b in RELATIVE_LANDMARKS)])


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _number(value: object, name: str) -> float:
    if value is None:
        return math.nan
    # bool is an int to Python, but True as a meta-feature is a damaged record, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"meta-feature '{name}' must be a number or None, not {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------- computing them


def meta_features(X: pd.DataFrame, y: np.ndarray, task: Task, *, seed: int = 0,
                  time_limit: float = 3.0) -> MetaFeatures:
    """Describe the prepared frame ``X`` with target ``y`` (see the module docstring). Landmarkers run only while
    less than ``time_limit`` seconds have passed since the call began; the statistics always run (on a sample of
    a big table's rows and columns, so they take well under a second: about 0.1 s on 100,000 rows x 30 columns)."""
    start = time.perf_counter()
    deadline = start + max(float(time_limit), 0.0)
    # Columns are taken by position throughout: a frame with a repeated column name is still described.
    keep = [not (isinstance(c, str) and c.startswith(SENSITIVE_PREFIX)) for c in X.columns]
    features = X if all(keep) else X.loc[:, keep]
    target = _target_values(np.asarray(y).ravel(), task)
    rng = np.random.default_rng(seed)
    values = dict.fromkeys(META_FEATURE_NAMES, math.nan)
    with np.errstate(all="ignore"):  # values near float's limits overflow: they end as NaN, never as a warning
        values.update(_column_stats(features, rng))
        values.update(_target_stats(target, task))
        values.update(_landmarks(features, target, task, seed, deadline))
    return MetaFeatures(values=values, seconds=time.perf_counter() - start)


def _target_values(y: np.ndarray, task: Task) -> np.ndarray:
    """The target as ``prepare_target`` gives it: class codes (labels of any kind, missing as a class of its own,
    are coded here too) or floats (a value that is not a number becomes NaN and is left out)."""
    if task.is_classification:
        return y if y.dtype.kind in "iu" else pd.factorize(pd.Series(y, dtype=object), use_na_sentinel=False)[0]
    return pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _is_numeric(dtype: Any) -> bool:
    return bool(pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def _column_stats(X: pd.DataFrame, rng: np.random.Generator) -> dict[str, float]:
    n_rows, n_features = X.shape
    is_numeric = [_is_numeric(dtype) for dtype in X.dtypes]
    numeric = [i for i, yes in enumerate(is_numeric) if yes]
    categorical = [i for i, yes in enumerate(is_numeric) if not yes]
    out: dict[str, float] = {"n_rows": float(n_rows), "n_features": float(n_features),
                             "n_numeric": float(len(numeric)), "n_categorical": float(len(categorical))}
    if n_features:
        out["numeric_share"] = len(numeric) / n_features
        out["categorical_share"] = len(categorical) / n_features
    if n_rows * n_features > STAT_CELLS:
        X = X.iloc[np.sort(rng.choice(n_rows, min(n_rows, max(STAT_CELLS // n_features, 1000)), replace=False))]
    if categorical:
        out["mean_categories"] = float(np.mean([X.iloc[:, i].nunique(dropna=True) for i in categorical]))
    if n_features and n_rows:
        missing = X.isna().to_numpy()
        out["missing_share"] = float(missing.mean())
        out["missing_columns_share"] = float(missing.any(axis=0).mean())
    if numeric and n_rows:
        columns = numeric if len(numeric) <= MOMENT_COLUMNS else \
            sorted(rng.choice(numeric, MOMENT_COLUMNS, replace=False).tolist())
        n = min(MOMENT_ROWS, max(1000, MOMENT_CELLS // len(columns)))
        rows = np.sort(rng.choice(len(X), n, replace=False)) if len(X) > n else slice(None)
        block = X.iloc[rows, columns].to_numpy(dtype="float64", na_value=np.nan)
        skews = _moments(block)[0]
        if not np.isnan(skews).all():
            out["mean_abs_skewness"] = float(np.nanmean(np.abs(skews)))
    return out


def _moments(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``block`` (rows x columns), over its finite cells: skewness g1 = m3 / m2^1.5 and excess
    kurtosis g2 = m4 / m2^2 - 3 (population moments); NaN for a column with no finite cell or a constant one.
    Vectorised: a table of 8,000 columns costs milliseconds, not a Python loop per column."""
    with np.errstate(all="ignore"):
        finite = np.isfinite(block)
        count = finite.sum(axis=0)
        x = np.where(finite, block, 0.0)
        mean = x.sum(axis=0) / count
        d = np.where(finite, x - mean, 0.0)
        d2 = d * d
        m2 = d2.sum(axis=0) / count
        scale = np.maximum(1.0, (x * x).sum(axis=0) / count)
        varies = (count > 0) & np.isfinite(m2) & (m2 > 1e-12 * scale)  # not constant up to rounding
        m2 = np.where(varies, m2, np.nan)
        skew = (d2 * d).sum(axis=0) / count / m2 ** 1.5
        kurt = (d2 * d2).sum(axis=0) / count / (m2 * m2) - 3.0
    return np.where(varies, skew, np.nan), np.where(varies, kurt, np.nan)


def _target_stats(y: np.ndarray, task: Task) -> dict[str, float]:
    if y.size == 0:
        return {}
    if not task.is_classification:
        skew, kurt = _moments(y.astype("float64", copy=False).reshape(-1, 1))
        return {"target_skewness": float(skew[0]), "target_kurtosis": float(kurt[0])}
    _, counts = np.unique(y, return_counts=True)
    out = {"n_classes": float(counts.size)}
    if counts.size > 1:
        p = counts / counts.sum()
        out["class_entropy"] = float(-(p * np.log(p)).sum() / math.log(counts.size))
        out["class_imbalance"] = float(counts.min() / counts.max())
    return out


# ------------------------------------------------------------------------------------------- landmarkers

LANDMARK_COLUMNS = 256  # a wider table's landmarkers see this many of its columns (chosen by the seed)


class _QuantileNaiveBayes:
    """Naive Bayes for a regression target: Gaussian naive Bayes on the target's quantile bins, predicting the
    mean target of the predicted bin. It keeps naive Bayes's view of the table (one feature at a time, class
    conditional Gaussians) and gives a score on the same R^2 scale as the other regression landmarkers."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _QuantileNaiveBayes:
        from sklearn.naive_bayes import GaussianNB

        edges = np.unique(np.quantile(y, np.linspace(0, 1, _NB_BINS + 1)[1:-1]))
        bins = np.searchsorted(edges, y, side="right")
        present = np.unique(bins)
        self.means_ = np.array([y[bins == b].mean() for b in present])
        self.model_ = GaussianNB().fit(X, np.searchsorted(present, bins)) if present.size > 1 else None
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            return np.full(len(X), self.means_[0])
        return np.asarray(self.means_[self.model_.predict(X)])


def _landmarker_makers(task: Task, seed: int) -> list[tuple[str, Callable[[], Any]]]:
    """The landmarkers in the order they run (cheapest and most telling first), as fresh-model factories."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if task.is_classification:
        return [("landmark_stump", lambda: DecisionTreeClassifier(max_depth=1, random_state=seed)),
                ("landmark_naive_bayes", GaussianNB),
                ("landmark_1nn", lambda: KNeighborsClassifier(n_neighbors=1, algorithm="brute")),
                ("landmark_linear", lambda: LogisticRegression(max_iter=200))]
    return [("landmark_stump", lambda: DecisionTreeRegressor(max_depth=1, random_state=seed)),
            ("landmark_naive_bayes", _QuantileNaiveBayes),
            ("landmark_1nn", lambda: KNeighborsRegressor(n_neighbors=1, algorithm="brute")),
            ("landmark_linear", lambda: Ridge(alpha=1.0))]


def _landmarks(X: pd.DataFrame, y: np.ndarray, task: Task, seed: int, deadline: float) -> dict[str, float]:
    if time.perf_counter() >= deadline or X.shape[1] == 0 or len(y) != len(X):
        return {}
    rng = np.random.default_rng([seed, 1])  # its own stream: the statistics' sampling does not shift it
    usable = np.flatnonzero(np.isfinite(y)) if not task.is_classification else np.arange(len(y))
    rows = _subsample(y[usable], task, rng)
    ys = y[usable][rows]
    if task.is_classification and np.unique(ys).size < 2:
        return {}  # balanced accuracy of one class says nothing
    if not task.is_classification and not np.ptp(ys) > 0:
        return {}  # R^2 of a constant target is undefined
    columns = np.arange(X.shape[1])
    if columns.size > LANDMARK_COLUMNS:
        columns = np.sort(rng.choice(columns, LANDMARK_COLUMNS, replace=False))
    M = _encode(X.iloc[usable[rows], columns])
    folds = _fold_of(ys, task, rng)
    out: dict[str, float] = {}
    # One BLAS thread: on 400 rows, threads cost more than they give, and a build's workers share the cores.
    with threadpool_limits(limits=1):
        for name, make in _landmarker_makers(task, seed):
            if time.perf_counter() >= deadline:
                break
            out[name] = _cross_validated(make, M, ys, folds, task, deadline)
    return out


def _subsample(y: np.ndarray, task: Task, rng: np.random.Generator) -> np.ndarray:
    """Row positions of at most ``LANDMARK_ROWS`` rows (a few more when many classes each need their 3), sorted.
    Classification: stratified, every class keeps its share and at least min(its rows, LANDMARK_FOLDS)."""
    n = len(y)
    if n <= LANDMARK_ROWS:
        return np.arange(n)
    if not task.is_classification:
        return np.sort(rng.choice(n, LANDMARK_ROWS, replace=False))
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    take = np.maximum(np.round(counts * (LANDMARK_ROWS / n)).astype(int), np.minimum(counts, LANDMARK_FOLDS))
    order = np.lexsort((rng.random(n), inverse))  # rows grouped by class, shuffled within it
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.sort(np.concatenate([order[s:s + k] for s, k in zip(starts, take, strict=True)]))


def _fold_of(y: np.ndarray, task: Task, rng: np.random.Generator) -> np.ndarray:
    """Each row's fold (0..LANDMARK_FOLDS-1). Classification deals each class's rows round the folds in turn,
    continuing from class to class, so even a class of one or two rows never makes the split fail."""
    n = len(y)
    order = np.lexsort((rng.random(n), y)) if task.is_classification else rng.permutation(n)
    fold = np.empty(n, dtype=int)
    fold[order] = np.arange(n) % LANDMARK_FOLDS
    return fold


def _encode(X: pd.DataFrame) -> np.ndarray:
    """Numbers for every column (ordinal codes for categoricals), missing cells at the column median (0 when a
    column is all missing), then standardised (constant columns become 0)."""
    parts = []
    for c in range(X.shape[1]):
        s = X.iloc[:, c]
        if _is_numeric(s.dtype):
            parts.append(s.to_numpy(dtype="float64", na_value=np.nan))
        else:
            try:
                codes = pd.factorize(s, sort=True)[0].astype("float64")
            except TypeError:  # values that do not sort together (numbers and strings): order of appearance
                codes = pd.factorize(s)[0].astype("float64")
            parts.append(np.where(codes < 0, np.nan, codes))
    M = np.column_stack(parts) if parts else np.empty((len(X), 0))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: nanmedian warns, we fill below
        M[~np.isfinite(M)] = np.nan
        medians = np.nan_to_num(np.nanmedian(M, axis=0)) if len(M) else np.zeros(M.shape[1])
        M = np.where(np.isnan(M), medians, M)
        std = M.std(axis=0)
        M = (M - M.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.nan_to_num(M, nan=0.0, posinf=0.0, neginf=0.0)  # values near float's limits overflow the scaling


def _cross_validated(make: Callable[[], Any], M: np.ndarray, y: np.ndarray, fold: np.ndarray, task: Task,
                     deadline: float) -> float:
    """The score of out-of-fold predictions pooled over the folds; NaN when the time ran out or a fit failed."""
    predicted = np.empty(len(y), dtype=y.dtype if task.is_classification else "float64")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence and few-rows warnings: a landmarker is a rough probe
            for k in range(LANDMARK_FOLDS):
                if time.perf_counter() >= deadline:
                    return math.nan
                train, test = fold != k, fold == k
                if not test.any():
                    continue
                if not train.any():
                    return math.nan
                if task.is_classification and np.unique(y[train]).size < 2:
                    predicted[test] = y[train][0]  # a one-class training fold: every model predicts that class
                    continue
                predicted[test] = make().fit(M[train], y[train]).predict(M[test])
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return math.nan
    return _balanced_accuracy(y, predicted) if task.is_classification else _clipped_r2(y, predicted)


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    """The mean over the classes present of the share of their rows predicted right."""
    return float(np.mean([np.mean(predicted[y == c] == c) for c in np.unique(y)]))


def _clipped_r2(y: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    if not total > 0:
        return math.nan
    r2 = 1.0 - float(np.sum((y - predicted) ** 2)) / total
    return float(np.clip(r2, -1.0, 1.0)) if math.isfinite(r2) else math.nan
