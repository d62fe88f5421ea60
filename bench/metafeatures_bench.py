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
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from daedalus.data import drop_missing_target, infer_schema, prepare_features, prepare_target, read_table
from daedalus.data.metafeatures import META_FEATURE_NAMES, RELATIVE_LANDMARKS, MetaFeatures, meta_features
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


# ------------------------------------------------------------------------------------------- the study
# Which meta-features tell which model family wins? Every task of ../shared/meta and ../shared/datasets gets its
# meta-features (whole table) and the 3-fold CV score of four families' defaults (on at most STUDY_ROWS rows);
# then, leave one task out, the k nearest other tasks (z-scored meta-feature vectors, medians imputed) vote for
# the family with the best mean normalised score, and the pick is scored by its regret on the left-out task.

STUDY_FAMILIES = ("linear", "extra_trees", "lightgbm", "knn")
STUDY_ROWS = 1000
STUDY_K = 5


def study_tasks(shared: Path) -> list[tuple[str, Path, dict]]:
    out = []
    for corpus in ("meta", "datasets"):
        manifest = json.loads((shared / corpus / "manifest.json").read_text())
        out += [(f"{corpus}/{n}", shared / corpus / f"{n}.csv.gz", m) for n, m in manifest.items()
                if m["task"] in TABULAR_TASKS]
    return out


def family_scores(X: pd.DataFrame, y: np.ndarray, task: Task, seed: int = 0) -> dict[str, float | None]:
    """3-fold CV of each study family's default: ROC AUC (one-vs-rest, macro) or R^2."""
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold

    from daedalus.data.schema import FeatureLayout
    from daedalus.spaces.registry import get_family

    if len(X) > STUDY_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(X), STUDY_ROWS, replace=False))
        X, y = X.iloc[rows].reset_index(drop=True), y[rows]
    if task.is_classification:  # codes 0..k-1 of the classes left in the sample, as a build encodes them
        y = np.unique(y, return_inverse=True)[1]
    layout = FeatureLayout(numeric=tuple(c for c in X.columns if X[c].dtype.kind in "fiub"),
                           categorical=tuple(c for c in X.columns if X[c].dtype.kind not in "fiub"), text=())
    splitter = StratifiedKFold(3, shuffle=True, random_state=seed) if task.is_classification else \
        KFold(3, shuffle=True, random_state=seed)
    out: dict[str, float | None] = {}
    for name in STUDY_FAMILIES:
        family = get_family(name)
        oof = np.zeros((len(y), int(y.max()) + 1)) if task.is_classification else np.zeros(len(y))
        try:
            for train, test in splitter.split(X, y):
                model = family.build(family.default_config(task, len(train)), layout, task, seed, 1)
                model.fit(X.iloc[train], y[train])
                if task.is_classification:
                    oof[np.ix_(test, np.unique(y[train]))] = model.predict_proba(X.iloc[test])
                else:
                    oof[test] = model.predict(X.iloc[test])
            if not task.is_classification:
                out[name] = float(r2_score(y, oof))
            elif oof.shape[1] == 2:
                out[name] = float(roc_auc_score(y, oof[:, 1]))
            else:
                out[name] = float(roc_auc_score(y, oof / oof.sum(axis=1, keepdims=True).clip(1e-12), multi_class="ovr"))
        except Exception as e:  # noqa: BLE001 - a family failing on one task is a row of the study, not its end
            print(f"    {name} failed: {type(e).__name__}: {str(e)[:100]}", file=sys.stderr)
            out[name] = None
    return out


def run_study(shared: Path, cache_path: Path) -> None:
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for key, path, meta in study_tasks(shared):
        if key in cache:
            continue  # resumable: each task is written as soon as it is done
        started = time.perf_counter()
        X, y, task = prepared(read_table(path), meta)
        mf = meta_features(X, y, task)
        cache[key] = {"task": str(task), "meta": mf.to_dict(), "scores": family_scores(X, y, task)}
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_path)
        print(f"  {key}: {time.perf_counter() - started:.1f} s {cache[key]['scores']}", file=sys.stderr)
    analyse(cache)


def _picks(V: np.ndarray, N: np.ndarray, kinds: np.ndarray, cols: list[int], same_kind: bool) -> np.ndarray:
    """Leave-one-task-out: each task's family picked by its STUDY_K nearest tasks on the columns ``cols``."""
    picks = np.empty(len(V), dtype=int)
    for i in range(len(V)):
        train = np.flatnonzero((np.arange(len(V)) != i) & ((kinds == kinds[i]) if same_kind else True))
        A = V[np.ix_(train, cols)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column NaN for every neighbour: imputed by 0
            med = np.nanmedian(A, axis=0)
        med = np.where(np.isnan(med), 0.0, med)
        A = np.where(np.isnan(A), med, A)
        q = np.where(np.isnan(V[i, cols]), med, V[i, cols])
        mu, sd = A.mean(axis=0), A.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        d = np.sqrt((((A - mu) / sd - (q - mu) / sd) ** 2).sum(axis=1))
        near = train[np.argsort(d, kind="stable")[:STUDY_K]]
        picks[i] = int(np.argmax(N[near].mean(axis=0)))
    return picks


def _learned_picks(V: np.ndarray, N: np.ndarray) -> np.ndarray:
    """Leave-one-task-out: one forest per family predicts its normalised score from the meta-features."""
    from sklearn.ensemble import ExtraTreesRegressor

    A = np.where(np.isnan(V), np.nanmedian(V, axis=0), V)
    A = np.nan_to_num(A)
    picks = np.empty(len(V), dtype=int)
    for i in range(len(V)):
        train = np.arange(len(V)) != i
        predicted = [ExtraTreesRegressor(100, min_samples_leaf=3, random_state=0, n_jobs=1)
                     .fit(A[train], N[train, j]).predict(A[i:i + 1])[0] for j in range(N.shape[1])]
        picks[i] = int(np.argmax(predicted))
    return picks


def analyse(cache: dict) -> None:
    keys = [k for k, r in cache.items() if sum(v is not None for v in r["scores"].values()) >= 2]
    V = np.array([MetaFeatures.from_dict(cache[k]["meta"]).vector() for k in keys])
    at = {n: i for i, n in enumerate(META_FEATURE_NAMES)}
    V = np.column_stack([V, *[V[:, at[a]] - V[:, at[b]] for a, b in RELATIVE_LANDMARKS]])
    names = [*META_FEATURE_NAMES, *[f"{a[9:]} - {b[9:]}" for a, b in RELATIVE_LANDMARKS]]
    S = np.array([[np.nan if cache[k]["scores"][f] is None else cache[k]["scores"][f] for f in STUDY_FAMILIES]
                  for k in keys])
    lo, hi = np.nanmin(S, axis=1, keepdims=True), np.nanmax(S, axis=1, keepdims=True)
    N = np.nan_to_num((S - lo) / np.where(hi > lo, hi - lo, 1.0), nan=0.0)  # 1 = the task's best family, 0 = worst
    kinds = np.array([cache[k]["task"] for k in keys])
    winners = np.argmax(N, axis=1)
    rows = np.arange(len(N))
    print(f"\n{len(keys)} tasks; wins: " + ", ".join(f"{f} {int((winners == j).sum())}"
                                                   for j, f in enumerate(STUDY_FAMILIES)))

    def regret(picks: np.ndarray) -> float:
        return float((1 - N[rows, picks]).mean())

    def row(label: str, picks: np.ndarray) -> str:
        points = np.nan_to_num(hi[:, 0] - S[rows, picks], nan=float(np.nanmax(hi - lo)))
        return f"| {label} | {np.mean(picks == winners):.2f} | {regret(picks):.3f} | {points.mean():.4f} |"

    print(f"\nleave-one-task-out; k-NN: the {STUDY_K} nearest tasks vote (mean normalised score). Regret: 1 - the "
          f"pick's normalised score (0: the task's best family, 1: its worst); points: best score - pick's score "
          f"(AUC or R^2)\n")
    print("| picked by | winner found | mean regret | mean points lost |\n|---|---:|---:|---:|")
    best_mean = np.array([int(np.argmax(np.delete(N, i, axis=0).mean(axis=0))) for i in range(len(N))])
    print(row("one family for all (best mean of the others)", best_mean))
    everything = list(range(len(names)))
    stats = [i for i, n in enumerate(META_FEATURE_NAMES) if not n.startswith("landmark_")]
    marks = [i for i, n in enumerate(META_FEATURE_NAMES) if n.startswith("landmark_")]
    relative = list(range(len(META_FEATURE_NAMES), len(names)))
    sets = (("k-NN, all meta-features", list(range(len(META_FEATURE_NAMES)))), ("k-NN, statistics only", stats),
            ("k-NN, landmarkers only", marks), ("k-NN, relative landmarkers", relative),
            ("k-NN, n_rows + n_features + relative landmarkers", [at["n_rows"], at["n_features"], *relative]),
            ("k-NN, all + relative landmarkers", everything))
    for label, cols in sets:
        for same_kind in (False, True):
            print(row(label + (", same task kind" if same_kind else ""), _picks(V, N, kinds, cols, same_kind)))
    print(row("forest per family on all + relative landmarkers", _learned_picks(V, N)))
    base = regret(_picks(V, N, kinds, everything, True))
    print(f"\n| meta-feature (k-NN, same task kind) | regret alone | regret without it (all: {base:.3f}) |\n"
          f"|---|---:|---:|")
    for j, name in enumerate(names):
        alone = regret(_picks(V, N, kinds, [j], True))
        without = regret(_picks(V, N, kinds, [i for i in everything if i != j], True))
        print(f"| {name} | {alone:.3f} | {without:.3f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    p.add_argument("--datasets", default="", help="comma-separated names (default: every tabular dataset)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--time-limit", type=float, default=3.0)
    p.add_argument("--json", type=Path, help="write every row (with the values) here")
    p.add_argument("--study", type=Path, metavar="CACHE.json",
                   help="instead: the study of which meta-features predict the winning family (resumable cache)")
    args = p.parse_args(argv)
    if args.study:
        run_study(args.shared, args.study)
        return 0

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
