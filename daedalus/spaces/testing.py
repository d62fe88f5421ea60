"""Small synthetic *prepared* frames (the shape ``prepare_features`` returns) for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from daedalus.data.schema import FeatureLayout, Task

_WORDS = np.array(["red", "green", "blue", "apple", "pear", "fast", "slow", "big", "small", "cat", "dog", "sky"])


def toy_problem(task: Task, n_rows: int = 80, seed: int = 0, *, n_numeric: int = 3, n_categorical: int = 2,
                text: bool = True) -> tuple[pd.DataFrame, np.ndarray, FeatureLayout]:
    """A prepared frame with NaN in numeric and categorical columns, and its encoded target.

    Numeric columns are float64 (the first with ~15% NaN), categorical columns object strings with NaN (the
    first with 4 levels, the others with 12), the text column (if any) object strings with "" for missing.
    The target depends on the first numeric and the first categorical column, so models can learn something;
    classification targets are 0..k-1 (k = 2 or 3) with every class present.
    """
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"num{i}": rng.normal(size=n_rows) for i in range(n_numeric)})
    if n_numeric:
        X.loc[rng.random(n_rows) < 0.15, "num0"] = np.nan
    for j in range(n_categorical):
        levels = 4 if j == 0 else 12
        col = pd.Series(rng.choice([f"level{v}" for v in range(levels)], size=n_rows), dtype=object)
        col[rng.random(n_rows) < 0.1] = np.nan
        X[f"cat{j}"] = col
    if text:
        docs = [" ".join(rng.choice(_WORDS, size=rng.integers(0, 5))) for _ in range(n_rows)]
        X["text0"] = pd.Series(docs, dtype=object)
    layout = FeatureLayout(tuple(c for c in X.columns if c.startswith("num")),
                           tuple(c for c in X.columns if c.startswith("cat")),
                           tuple(c for c in X.columns if c.startswith("text")))
    signal = np.zeros(n_rows)
    if n_numeric:
        signal += np.nan_to_num(X["num0"].to_numpy(dtype=float), nan=0.5)
    if n_categorical:
        signal += np.where(X["cat0"].isin(["level0", "level1"]).to_numpy(), 1.0, -1.0)
    signal += 0.3 * rng.normal(size=n_rows)
    y: np.ndarray
    if task is Task.REGRESSION:
        y = 3.0 * signal + 10.0
    else:
        k = 2 if task is Task.BINARY else 3
        ranks = np.argsort(np.argsort(signal, kind="stable"), kind="stable")
        y = (ranks * k // n_rows).astype(np.int64)
    return X, y, layout


def with_unseen(X: pd.DataFrame, layout: FeatureLayout, n: int = 5) -> pd.DataFrame:
    """A copy whose first ``n`` rows hold categories never seen in fit, NaN in every numeric column and an
    unseen word in the text columns."""
    out = X.copy()
    rows = out.index[:n]
    for c in layout.categorical:
        out.loc[rows, c] = "never-seen-before"
    for c in layout.numeric:
        out.loc[rows, c] = np.nan
    for c in layout.text:
        out.loc[rows, c] = "zebra unicorn"
    return out
