#!/usr/bin/env python
"""Train, measure and package the learned ranker (issue 12.7) with Daedalus's own AutoML (``AutoRegressor``).

    nice -n 10 .venv/bin/python bench/train_ranker.py --evaluate   # grouped 5-fold: ranker vs nearest tasks vs slots
    nice -n 10 .venv/bin/python bench/train_ranker.py --package    # fit on the whole matrix, save it in the package

The training table is ``designers.meta.ranker.training_table`` of the matrix (one row per run cell). Each fit is
a real Daedalus run under bench/cache/ranker/ (its leaderboard.json and audit.jsonl kept); ``--package`` copies
the final run into ``daedalus/designers/meta/ranker/`` (``orchestration.ranker_model.package_run``).

``--evaluate``: tasks grouped by ``group``, 5 folds. In each fold, what a build would have without the held-out
tasks: the matrix without them, a portfolio mined from it (``select_portfolio``, best-member mode: the ensemble-aware
selection needs out-of-fold predictions the matrix file does not hold) and a ranker fitted on it. Each held-out
task's portfolio members are then ordered three ways: (a) the ranker, (b) today's nearest-task order
(``plan_warm_start`` with the task's meta-features), (c) the portfolio's slot order. Reported: the mean normalised
score of the first member, and of the best of the first three (what a zero-shot build gets), over held-out tasks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daedalus.data.schema import Task  # noqa: E402
from daedalus.designers.meta.matrix import Matrix, packaged_path  # noqa: E402
from daedalus.designers.meta.portfolio import Portfolio, select_portfolio  # noqa: E402
from daedalus.designers.meta.ranker import Ranker, TrainingTable, task_meta, training_table  # noqa: E402
from daedalus.designers.warm_start import (  # noqa: E402
    Candidate,
    PastTask,
    nearest_estimates,
    plan_warm_start,
    same_kind,
)
from daedalus.interfaces.estimators import AutoRegressor  # noqa: E402
from daedalus.orchestration.ranker_model import load_ranker, package_run, packaged_ranker_dir  # noqa: E402
from daedalus.spaces.registry import FAMILIES  # noqa: E402

CACHE = ROOT / "bench" / "cache" / "ranker"
FIRST_K = 3


def fit_ranker(table: TrainingTable, run_dir: Path, args: argparse.Namespace) -> tuple[AutoRegressor, Ranker]:
    shutil.rmtree(run_dir, ignore_errors=True)  # a rerun of the bench replaces its runs
    est = AutoRegressor(time_budget=args.time, families=tuple(args.families.split(",")), seed=args.seed,
                        run_dir=run_dir, n_threads=1, explain=False, knowledge="off", keep_leaks=True)
    est.fit(table.X, table.y)
    return est, Ranker(lambda frame: est.predict(frame), list(table.X.columns), f"fitted in {run_dir}")


def folds(matrix: Matrix, n: int, seed: int) -> list[list[str]]:
    """Groups dealt into ``n`` folds by a hash of their name (stable whatever the matrix's order)."""
    groups = sorted({t["group"] for t in matrix.tasks},
                    key=lambda g: hashlib.sha1(f"{seed}:{g}".encode()).hexdigest())
    return [groups[i::n] for i in range(n)]


def orders(train: Matrix, portfolio: Portfolio, ranker: Ranker, task: dict[str, Any]) -> dict[str, list[str]]:
    """The held-out task's usable members (config ids), in the three orders."""
    meta = task_meta(task.get("meta_features"))
    assert meta is not None
    kind, n_rows = Task(task["task"]), int(task["n_rows"])
    members = portfolio.members
    candidates = [Candidate(m.family, m.config_for(kind, n_rows) if kind in FAMILIES[m.family].tasks
                            else dict(m.config or {}), f"portfolio slot {m.slot}") for m in members]
    past = []
    for t in portfolio.tasks:
        t_meta = task_meta(t.get("meta_features"))
        if t_meta is not None:
            past.append(PastTask(t["name"], t["task"], t_meta.similarity_vector(),
                                 [m.scores.get(t["name"], math.nan) for m in members]))
    plan = plan_warm_start(meta.similarity_vector(), kind, n_rows, list(FAMILIES), candidates, past)
    by_label = {f"portfolio slot {m.slot}": m for m in members}
    nearest = [by_label[p.detail["slot"]] for p in plan.proposals if p.source == "portfolio"]
    usable = sorted(nearest, key=lambda m: m.slot)
    estimates = nearest_estimates(meta.similarity_vector(), same_kind(past, kind), len(members))[0]
    ranked = [usable[i] for i in ranker.order(meta, usable, kind, [estimates[m.slot - 1] for m in usable])]
    then_slots = ranked[:1] + [m for m in usable if m is not ranked[0]] if ranked else []
    return {"ranker": [m.config_id for m in ranked], "nearest": [m.config_id for m in nearest],
            "slots": [m.config_id for m in usable], "ranker_first_then_slots": [m.config_id for m in then_slots]}


def evaluate(matrix: Matrix, args: argparse.Namespace) -> dict[str, Any]:
    norm = np.nan_to_num(matrix.normalised(), nan=-1.0)  # never run: as bad as failed (as the portfolio counts it)
    col = {c: j for j, c in enumerate(matrix.config_ids)}
    per_task: list[dict[str, Any]] = []
    for k, held in enumerate(folds(matrix, args.folds, args.seed)):
        train = matrix
        for group in held:
            train = train.without(group)
        t0 = time.time()
        portfolio = select_portfolio(train, args.size)
        _, ranker = fit_ranker(training_table(train), CACHE / f"fold_{k}", args)
        print(f"fold {k + 1}/{args.folds}: {len(held)} groups held out, ranker fitted in {time.time() - t0:.0f} s",
              flush=True)
        for i, task in enumerate(matrix.tasks):
            if task["group"] not in held or task_meta(task.get("meta_features")) is None:
                continue
            row = {"task": task["name"], "fold": k}
            for how, ids in orders(train, portfolio, ranker, task).items():
                scores = [float(norm[i, col[c]]) for c in ids]
                row[how] = {"first": scores[0] if scores else -1.0,
                            f"best_of_{FIRST_K}": max(scores[:FIRST_K]) if scores else -1.0}
            per_task.append(row)
    summary: dict[str, Any] = {"tasks": len(per_task), "folds": args.folds, "time_per_fit": args.time,
                               "families": args.families, "portfolio_size": args.size}
    for how in ("ranker", "nearest", "slots", "ranker_first_then_slots"):
        summary[how] = {key: round(float(np.mean([r[how][key] for r in per_task])), 4)
                        for key in ("first", f"best_of_{FIRST_K}")}
    for key in ("first", f"best_of_{FIRST_K}"):
        a = np.array([r["ranker"][key] for r in per_task])
        b = np.array([r["nearest"][key] for r in per_task])
        summary[f"ranker_vs_nearest_{key}"] = {"better": int((a > b + 1e-9).sum()), "worse": int((a < b - 1e-9).sum())}
    return {"summary": summary, "per_task": per_task}


def beats_nearest(summary: dict[str, Any] | None) -> bool:
    """Whether builds should use the ranker: measured, and better than the nearest-task order on both the first
    member and the best of the first three (else it ships for the record, unused)."""
    if not summary:
        return False
    return all(summary["ranker"][key] > summary["nearest"][key] for key in ("first", f"best_of_{FIRST_K}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--package", action="store_true")
    ap.add_argument("--matrix", default=None, help="matrix file (default: the one shipped)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--time", type=float, default=60.0, help="seconds per AutoRegressor fit")
    ap.add_argument("--families", default="lightgbm,linear", help="the ranker's families (small on disk)")
    ap.add_argument("--size", type=int, default=12, help="portfolio size in --evaluate (as shipped)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "ranker_results.json"))
    ap.add_argument("--dest", default=None, help="where --package writes (default: the package's ranker/)")
    args = ap.parse_args(argv)
    if not (args.evaluate or args.package):
        ap.error("say --evaluate, --package or both")
    matrix = Matrix.load(args.matrix)
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if args.evaluate:
        results["evaluation"] = evaluate(matrix, args)
        results["evaluation"]["command"] = " ".join(["bench/train_ranker.py", *(argv or sys.argv[1:])])
        out.write_text(json.dumps(results, indent=1))
        print(json.dumps(results["evaluation"]["summary"], indent=1))
    if args.package:
        table = training_table(matrix)
        run_dir = CACHE / "package"
        est, _ = fit_ranker(table, run_dir, args)
        dest = Path(args.dest) if args.dest else packaged_ranker_dir()
        matrix_path = Path(args.matrix) if args.matrix else packaged_path("matrix.json.gz")
        info = {"description": f"AutoRegressor ({args.families}, {args.time:g} s) on {len(table.y)} cells of "
                               f"{len(set(table.tasks))} tasks of the matrix",
                "matrix_sha256": hashlib.sha256(matrix_path.read_bytes()).hexdigest(),
                "cells": len(table.y), "tasks": len(set(table.tasks)),
                "evaluation": results.get("evaluation", {}).get("summary")}
        info["use_in_builds"] = beats_nearest(info["evaluation"])
        package_run(est.run_dir_, dest, list(table.X.columns), info)
        t0 = time.perf_counter()
        ranker = load_ranker(dest)
        took = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        print(f"packaged in {dest}: {size / 1e6:.2f} MB, loaded again in {took:.2f} s, "
              f"{len(ranker.columns)} columns, used in builds: {info['use_in_builds']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
