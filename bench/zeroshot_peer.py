#!/usr/bin/env python
"""The two zero-shot baselines of bench/zeroshot_bench.py, run with the python of the FLAML peer venv
(``<peers-dir>/venv-flaml``, installed by ../shared/peers/install.sh): LightGBM with its library defaults, and
FLAML's zero-shot LightGBM (``flaml.default``: its configuration chosen from the nearest of FLAML's own training
tasks by meta-features).

    venv-flaml/bin/python bench/zeroshot_peer.py --train train.csv --test test.csv --target y --task binary \
        --which lightgbm --out pred.csv

Both get the same input: the table as pandas reads it, text columns as pandas categories (LightGBM's native
categorical handling), the target as is. Writes the test predictions (``proba_<class>`` columns for
classification, ``prediction`` for regression) and prints the fit seconds.
"""
from __future__ import annotations

import argparse
import time

import pandas as pd


def load(path: str, target: str, categories: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, pd.Series]:
    df = pd.read_csv(path)
    y = df.pop(target)
    for col in df.columns:
        # Text columns (object, or pandas 3's str dtype) as categories; numbers and booleans as they are.
        text = not (pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]))
        if text or categories and col in categories:
            df[col] = pd.Categorical(df[col], categories=categories[col] if categories else None)
    return df, y


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--train", "--test", "--target", "--task", "--out"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--which", choices=("lightgbm", "flaml"), required=True)
    args = parser.parse_args()
    X, y = load(args.train, args.target)
    cats = {c: list(X[c].cat.categories) for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}
    X_test, _ = load(args.test, args.target, cats)
    classification = args.task != "regression"
    if args.which == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMClassifier(verbose=-1) if classification else lightgbm.LGBMRegressor(verbose=-1)
    else:
        from flaml import default

        model = default.LGBMClassifier() if classification else default.LGBMRegressor()
    t0 = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - t0
    if classification:
        proba = model.predict_proba(X_test)
        out = pd.DataFrame(proba, columns=[f"proba_{c}" for c in model.classes_])
        out.insert(0, "prediction", model.classes_[proba.argmax(axis=1)])
    else:
        out = pd.DataFrame({"prediction": model.predict(X_test)})
    out.to_csv(args.out, index=False)
    print(f"fit_seconds {fit_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
