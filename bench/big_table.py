"""A synthetic table of any size for the rows benchmark: numeric, integer and categorical columns, missing values,
and a binary target that depends on all three kinds (with interactions and label noise), so that a model has
something to learn and a subsample learns less of it than all rows do.

    .venv/bin/python bench/big_table.py --rows 1000000 --out /tmp/big/1m      # writes train.csv, test.csv

50 feature columns by default: 30 floats (5% missing), 10 small integers, 10 categories (4 to 200 levels, 3%
missing). The test file has ``--test-rows`` rows drawn from the same process.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "target"


def make_table(rows: int, seed: int, n_float: int = 30, n_int: int = 10, n_cat: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    floats = rng.standard_normal((rows, n_float)).astype(np.float32)
    ints = rng.integers(0, 20, size=(rows, n_int))
    levels = [4 + (200 - 4) * i // max(n_cat - 1, 1) for i in range(n_cat)]
    cats = [rng.integers(0, k, size=rows) for k in levels]
    # The signal: a few linear terms, two interactions, a threshold, and per-level effects of two categories.
    cat_effect_a = np.random.default_rng(1000).normal(0, 1.0, levels[0])[cats[0]]
    cat_effect_b = np.random.default_rng(1001).normal(0, 0.6, levels[-1])[cats[-1]]
    logit = (0.8 * floats[:, 0] - 0.6 * floats[:, 1] + 0.5 * floats[:, 2] * floats[:, 3]
             + 0.9 * (floats[:, 4] > 0.5) + 0.08 * (ints[:, 0] - 10) - 0.4 * np.sin(floats[:, 5] * 2)
             + 0.3 * floats[:, 6] * (ints[:, 1] > 10) + cat_effect_a + cat_effect_b)
    y = (logit + rng.logistic(0, 1, rows) > 0).astype(np.int8)
    for j in range(n_float):
        col = floats[:, j].copy()
        col[rng.random(rows) < 0.05] = np.nan
        columns[f"num_{j}"] = col
    for j in range(n_int):
        columns[f"int_{j}"] = ints[:, j]
    for j, codes in enumerate(cats):
        names = np.array([f"c{j}_{k}" for k in range(levels[j])], dtype=object)
        col = names[codes]
        col[rng.random(rows) < 0.03] = None
        columns[f"cat_{j}"] = col
    frame = pd.DataFrame(columns)
    frame[TARGET] = np.where(y == 1, "yes", "no")
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--test-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    make_table(args.rows, args.seed).to_csv(args.out / "train.csv", index=False, float_format="%.5g")
    make_table(args.test_rows, args.seed + 1).to_csv(args.out / "test.csv", index=False, float_format="%.5g")
    print(f"wrote {args.out}/train.csv ({args.rows} rows) and test.csv ({args.test_rows} rows)")


if __name__ == "__main__":
    main()
