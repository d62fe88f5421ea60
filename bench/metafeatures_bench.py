#!/usr/bin/env python
"""Time ``daedalus.data.metafeatures.meta_features`` on the shared datasets and on 100,000-row tables.

    nice -n 10 .venv/bin/python bench/metafeatures_bench.py [--repeat 3] [--datasets adult,fars]

Every tabular dataset of ../shared/datasets (image ones are skipped) is prepared as a build prepares it
(manifest's id and leak columns dropped, rows without a target dropped, ``prepare_features`` and
``prepare_target``), then described ``--repeat`` times; the table gives the median and the slowest of those
calls, the landmarkers left NaN, and whether the repeats gave identical values (the determinism promise). Two
100,000-row tables close the table: fars (100,968 rows, real) and adult resampled to 100,000 rows (seed 0:
categorical columns with missing cells). A first call on a tiny table loads scikit-learn beforehand, as a build
has it loaded; that cold call is printed apart.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from daedalus.data import drop_missing_target, infer_schema, prepare_features, prepare_target, read_table
from daedalus.data.metafeatures import META_FEATURE_NAMES, meta_features
from daedalus.data.schema import Task

# ../shared beside the clone; a worktree one level deeper (wt/NAME) finds it one more level up.
DEFAULT_SHARED = next((d / "shared" for d in Path(__file__).resolve().parents[1:4]
                       if (d / "shared" / "datasets" / "manifest.json").exists()), Path("../shared"))
TABULAR_TASKS = ("binary", "multiclass", "regression")
LANDMARKS = [n for n in META_FEATURE_NAMES if n.startswith("landmark_")]
BIG_ROWS = 100_000


def prepared(df: pd.DataFrame, meta: dict) -> tuple[pd.DataFrame, np.ndarray, Task]:
    target = meta["target"]
    dropped = [c for c in (*meta.get("id_cols", []), *meta.get("leak_cols", [])) if c in df.columns and c != target]
    schema = infer_schema(df, target, task=meta["task"], drop=dropped)
    df, _ = drop_missing_target(df, target)
    return prepare_features(df, schema), prepare_target(df[target], schema), schema.task


def measure(name: str, X: pd.DataFrame, y: np.ndarray, task: Task, repeat: int, limit: float) -> dict:
    runs = [meta_features(X, y, task, seed=0, time_limit=limit) for _ in range(repeat)]
    seconds = [r.seconds for r in runs]
    first = runs[0].to_dict()["values"]
    return {"dataset": name, "rows": len(X), "cols": X.shape[1], "task": str(task),
            "median_s": statistics.median(seconds), "max_s": max(seconds),
            "landmarks_nan": sum(first[k] is None for k in LANDMARKS),
            "same": all(r.to_dict()["values"] == first for r in runs), "values": first}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    p.add_argument("--datasets", default="", help="comma-separated names (default: every tabular dataset)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=3.0)
    p.add_argument("--json", type=Path, help="write every row (with the values) here")
    args = p.parse_args(argv)

    manifest = json.loads((args.shared / "datasets" / "manifest.json").read_text())
    chosen = [n for n in manifest if manifest[n]["task"] in TABULAR_TASKS]
    if args.datasets:
        chosen = [n for n in args.datasets.split(",") if n in chosen]

    start = time.perf_counter()
    meta_features(pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}), np.array([0, 1] * 3), Task.BINARY)
    print(f"cold first call (scikit-learn imports included): {time.perf_counter() - start:.3f} s")

    rows = []
    frames: dict[str, tuple[pd.DataFrame, dict]] = {}
    for name in chosen:
        df = read_table(args.shared / "datasets" / f"{name}.csv.gz")
        frames[name] = (df, manifest[name])
        rows.append(measure(name, *prepared(df, manifest[name]), args.repeat, args.time_limit))
        print(f"  {name}: {rows[-1]['median_s']:.3f} s", file=sys.stderr)
    for name in ("fars", "adult"):
        if name not in manifest:
            continue
        df, meta = frames.get(name) or (read_table(args.shared / "datasets" / f"{name}.csv.gz"), manifest[name])
        big = df if len(df) >= BIG_ROWS else df.sample(BIG_ROWS, replace=True, random_state=0).reset_index(drop=True)
        rows.append(measure(f"{name} ({len(big):,} rows)", *prepared(big, meta), args.repeat, args.time_limit))

    print(f"\n| dataset | rows | cols | task | median s | max s | landmarkers NaN | same values x{args.repeat} |")
    print("|---|---:|---:|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['rows']} | {r['cols']} | {r['task']} | {r['median_s']:.3f} | {r['max_s']:.3f} "
              f"| {r['landmarks_nan']} | {'yes' if r['same'] else 'NO'} |")
    worst = max(rows, key=lambda r: r["max_s"])
    print(f"\nmax over all calls: {worst['max_s']:.3f} s ({worst['dataset']}); "
          f"median of medians: {statistics.median(r['median_s'] for r in rows):.3f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
