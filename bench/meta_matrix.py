#!/usr/bin/env python
"""Build the matrix of candidate configurations x tasks that the shipped portfolio is mined from (issue 12.3).

    nice -n 10 .venv/bin/python bench/meta_matrix.py --stage 1            # per task: defaults, then TPE
    nice -n 10 .venv/bin/python bench/meta_matrix.py --stage 2            # the pooled candidates on every task
    nice -n 10 .venv/bin/python bench/meta_matrix.py --stage meta         # meta-features of each full table
    nice -n 10 .venv/bin/python bench/meta_matrix.py --stage export       # matrix.json.gz + portfolio.json

Tasks: the 128 of ../shared/meta and the tabular ones of ../shared/datasets, each read the way a build reads a
table (ids and leaks dropped, checks run), subsampled to --max-rows (stratified, seed 0), scored by 3-fold CV
with the build's default metric. Every configuration is fitted by the product's trial function in a worker
capped at --trial-cap seconds; a capped or failed fit is a cell with a status and no score, never a crash.

Resumable: each finished cell is one JSON line appended (flush + fsync) to bench/cache/cells.jsonl, and its
out-of-fold predictions go to bench/cache/oof/<task>/<config id>.npy at once; a restart skips done cells. A
stage-1 task is replayed from the cache (same seed, same proposals), so an interrupted search goes on where it
stopped. ``--part I/N`` runs only every N-th task from the I-th (1-based). Run one process at a time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from daedalus.data import (
    drop_missing_target,
    feature_layout,
    infer_schema,
    prepare_features,
    prepare_target,
    read_table,
    run_checks,
)
from daedalus.data.schema import Task
from daedalus.designers.base import OK, Result
from daedalus.designers.meta.space_fit import fit_to_space
from daedalus.designers.optuna_designer import OptunaDesigner, make_sampler
from daedalus.evaluation.metrics import get_metric
from daedalus.evaluation.trial import EvalContext, TrialSpec, run_trial
from daedalus.evaluation.validation import ValidationPlan
from daedalus.evaluation.worker import run_in_worker, start_early, stop_pool
from daedalus.spaces.registry import FAMILIES, resolve_families

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").exists() else Path("/work/shared")
CACHE_ROOT = ROOT / "bench" / "cache"
CACHE = CACHE_ROOT  # bench/cache/r<max rows>/ once the arguments are read: another subsample, other cells
PACKAGE_DIR = ROOT / "daedalus" / "designers" / "meta"
SEED = 0
# Duplicates across the two corpora: leave-one-task-out must remove both copies.
GROUPS = {"ggplot2_diamonds": "diamonds", "diamonds": "diamonds", "modeldata_ames": "ames",
          "ames_housing": "ames"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source: str  # "meta" or "datasets"
    path: Path
    target: str
    task: str
    drop: tuple[str, ...]

    @property
    def group(self) -> str:
        return GROUPS.get(self.name, self.name)


def list_tasks() -> list[TaskSpec]:
    out = []
    for source in ("meta", "datasets"):
        manifest = json.loads((SHARED / source / "manifest.json").read_text())
        for name, m in sorted(manifest.items()):
            if m["task"] not in ("binary", "multiclass", "regression"):
                continue  # image tasks
            out.append(TaskSpec(name, source, SHARED / source / f"{name}.csv.gz", m["target"], m["task"],
                                tuple(m.get("id_cols", [])) + tuple(m.get("leak_cols", []))))
    return out


def config_id(family: str, config: dict[str, Any] | None) -> str:
    if config is None:
        return f"{family}.default"
    blob = json.dumps(config, sort_keys=True, default=str)
    return f"{family}.{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def read_task(spec: TaskSpec, max_rows: int | None) -> tuple[Any, Any, int]:
    """(training frame, schema, rows before subsampling), read as a build reads a table."""
    df = read_table(str(spec.path))
    schema = infer_schema(df, spec.target, task=Task(spec.task), drop=list(spec.drop))
    df, _ = drop_missing_target(df, spec.target)
    df = df.reset_index(drop=True)
    n_full = len(df)
    if max_rows is not None and n_full > max_rows:
        y = df[spec.target].astype(str) if spec.task != "regression" else None
        try:
            keep, _ = train_test_split(np.arange(n_full), train_size=max_rows, random_state=SEED, stratify=y)
        except ValueError:  # a class too rare to stratify: plain sampling
            keep, _ = train_test_split(np.arange(n_full), train_size=max_rows, random_state=SEED)
        df = df.iloc[np.sort(keep)].reset_index(drop=True)
    schema, _ = run_checks(df, schema, seed=SEED)
    return df, schema, n_full


def three_folds(y: np.ndarray, task: Task) -> ValidationPlan:
    idx = np.arange(len(y))
    smallest = int(np.bincount(y)[np.bincount(y) > 0].min()) if task.is_classification else 0
    splitter: Any = (StratifiedKFold(3, shuffle=True, random_state=SEED) if smallest >= 3
                     else KFold(3, shuffle=True, random_state=SEED))
    folds = tuple((np.asarray(a), np.asarray(b)) for a, b in splitter.split(idx, y))
    return ValidationPlan(kind="kfold", folds=folds, n_rows=len(y))


def make_context(spec: TaskSpec, max_rows: int | None) -> tuple[EvalContext, dict[str, Any]]:
    df, schema, n_full = read_task(spec, max_rows)
    task = schema.task
    y = np.asarray(prepare_target(df[schema.target], schema))
    X = prepare_features(df, schema)
    metric = get_metric(None, task)
    n_classes = len(schema.classes) if schema.classes is not None else 0
    ctx = EvalContext(X=X, y=y, task=task, n_classes=n_classes, layout=feature_layout(schema),
                      plan=three_folds(y, task), metric=metric)
    y_path = CACHE / "oof" / spec.name / "_y.npy"  # the targets the out-of-fold predictions are scored on
    y_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(y_path, y)
    info = {"name": spec.name, "source": spec.source, "group": spec.group, "task": task.value,
            "metric": metric.name, "n_rows": n_full, "n_rows_used": len(df), "n_features": X.shape[1]}
    return ctx, info


class Cache:
    """The cells done so far (task, config id) -> record; appends are one line each, flushed and synced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cells: dict[tuple[str, str], dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        if path.exists():
            text = path.read_text()
            if text and not text.endswith("\n"):
                with open(path, "a") as f:  # end a line cut by a kill, so the next cell starts a line of its own
                    f.write("\n")
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: that cell runs again
                if rec.get("kind") == "task":
                    self.tasks[rec["name"]] = rec
                else:
                    self.cells[(rec["task"], rec["config_id"])] = rec

    def append(self, rec: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if rec.get("kind") == "task":
            self.tasks[rec["name"]] = rec
        else:
            self.cells[(rec["task"], rec["config_id"])] = rec


def oof_path(task: str, cid: str) -> Path:
    return CACHE / "oof" / task / f"{cid}.npy"


def evaluate(cache: Cache, ctx: EvalContext, task: str, cid: str, family: str, config: dict[str, Any],
             stage: str, cap: float, retry: bool = False) -> dict[str, Any]:
    """One cell: from the cache if done, else fitted in a capped worker and recorded at once. ``retry``: a cell
    that timed out under a smaller cap runs again (a busy machine makes slow families time out; the later
    line wins)."""
    done = cache.cells.get((task, cid))
    if done is not None and not (retry and done["status"] == "timeout" and done.get("cap", 6.0) < cap):
        return done
    stage = done["stage"] if done is not None else stage
    spec = TrialSpec(number=0, family=family, config=config, seed=SEED, n_threads=1, out_dir=CACHE / "unused",
                     keep_models_above=math.inf)  # never save fold models
    t0 = time.perf_counter()
    res = run_in_worker(run_trial, (ctx, spec), timeout=cap, memory_mb=3000)
    rec: dict[str, Any] = {"kind": "cell", "task": task, "config_id": cid, "family": family, "config": config,
                           "stage": stage, "status": res.status, "score": None, "fit_seconds": None,
                           "seconds": round(time.perf_counter() - t0, 3), "cap": cap}
    if res.status == "ok":
        out = res.value
        rec.update(score=float(out.score), fit_seconds=round(out.fit_seconds, 3))
        path = oof_path(task, cid)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(out.oof, dtype=np.float32))
    else:
        rec["reason"] = res.reason[-300:]
    cache.append(rec)
    return rec


def stage1(cache: Cache, specs: list[TaskSpec], args: argparse.Namespace) -> None:
    """Per task: each family's default (the designer's portfolio), then TPE, args.trials in all."""
    for i, spec in enumerate(specs):
        if cache.tasks.get(spec.name, {}).get("stage1_done"):
            continue
        t0 = time.time()
        try:
            ctx, info = make_context(spec, args.max_rows)
        except Exception as exc:  # noqa: BLE001 - a table that cannot be read is reported, the run goes on
            cache.append({"kind": "task", "name": spec.name, "stage1_done": True, "error": repr(exc)[:300]})
            print(f"[{i + 1}/{len(specs)}] {spec.name}: SKIPPED {exc!r}", flush=True)
            continue
        families = resolve_families(None, args.exclude, ctx.task)
        study = optuna.create_study(direction=ctx.metric.optuna_direction, sampler=make_sampler(SEED))
        designer = OptunaDesigner(study, families, ctx.task, len(ctx.y))
        designer.enqueue_portfolio()
        for _ in range(args.trials):
            p = designer.ask()
            default = p.designer == "portfolio"
            cid = config_id(p.family, None if default else p.candidate)
            rec = evaluate(cache, ctx, spec.name, cid, p.family, dict(p.candidate), "1", args.trial_cap)
            ok = rec["status"] == "ok"
            designer.tell(p, Result(OK if ok else rec["status"], rec["score"] if ok else None))
        cache.append({"kind": "task", **info, "stage1_done": True, "stage1_seconds": round(time.time() - t0, 1)})
        best = max((c for (t, _), c in cache.cells.items() if t == spec.name and c["score"] is not None),
                   key=lambda c: ctx.metric.utility(c["score"]), default=None)
        print(f"[{i + 1}/{len(specs)}] {spec.name}: {time.time() - t0:.1f} s, best "
              f"{best['config_id'] if best else '-'} {best['score'] if best else ''}", flush=True)


def candidate_pool(cache: Cache, size: int) -> list[dict[str, Any]]:
    """Each task's best non-default configuration, ranked by how far it beat the task's best default
    (normalised by the task's spread), then taken round-robin over families: spread over families and tasks
    (one per task, at most one per duplicate group)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (task, _), rec in cache.cells.items():
        if rec["stage"] == "1" and rec["score"] is not None:
            by_task[task].append(rec)
    entries = []
    for task, recs in by_task.items():
        info = cache.tasks.get(task)
        if not info or "metric" not in info:
            continue
        sign = 1.0 if get_metric(info["metric"], Task(info["task"])).greater_is_better else -1.0
        util = {r["config_id"]: sign * r["score"] for r in recs}
        tuned = [r for r in recs if not r["config_id"].endswith(".default")]
        defaults = [u for c, u in util.items() if c.endswith(".default")]
        if not tuned or not defaults:
            continue
        best = max(tuned, key=lambda r: util[r["config_id"]])
        spread = max(util.values()) - float(np.median(list(util.values()))) or 1.0
        entries.append({**best, "gain": (util[best["config_id"]] - max(defaults)) / spread,
                        "group": info["group"], "task_kind": info["task"]})
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[str] = set()  # the same TPE proposal can win on two tasks (same seed, same families)
    for e in sorted(entries, key=lambda e: -e["gain"]):
        if e["gain"] > 0 and e["config_id"] not in seen:  # only configurations that beat every default there
            by_family[e["family"]].append(e)
            seen.add(e["config_id"])
    order = sorted(by_family, key=lambda f: -len(by_family[f]))  # families that win more tasks first
    chosen: list[dict[str, Any]] = []
    groups: set[str] = set()
    while len(chosen) < size and any(by_family.values()):
        for fam in order:
            while by_family[fam] and by_family[fam][0]["group"] in groups:
                by_family[fam].pop(0)
            if by_family[fam] and len(chosen) < size:
                e = by_family[fam].pop(0)
                chosen.append(e)
                groups.add(e["group"])
    return chosen


def stage2(cache: Cache, specs: list[TaskSpec], args: argparse.Namespace) -> None:
    """The pooled candidates (projected onto each task's space) and every family's default, on every task."""
    pool_path = CACHE / "pool.json"
    if not pool_path.exists():  # fixed once, so that parts and restarts evaluate the same candidates
        pool = candidate_pool(cache, args.pool)
        pool_path.write_text(json.dumps(pool, indent=1, default=str))
    pool = json.loads(pool_path.read_text())
    # Tasks searched in stage 1 first (their defaults are done), then a spread order (by a hash of the name),
    # so that a stage 2 cut short still covers both corpora and every kind of task evenly; a rerun resumes it.
    specs = sorted(specs, key=lambda s: (not cache.tasks.get(s.name, {}).get("stage1_done"),
                                         hashlib.sha1(s.name.encode()).hexdigest()))
    for i, spec in enumerate(specs):
        info = cache.tasks.get(spec.name, {})
        if "error" in info or (info.get("stage2_done") and not args.retry_timeouts):
            continue
        t0 = time.time()
        try:
            ctx, new_info = make_context(spec, args.max_rows)
        except Exception as exc:  # noqa: BLE001 - as in stage 1
            cache.append({"kind": "task", "name": spec.name, "error": repr(exc)[:300]})
            continue
        info = {"kind": "task", **new_info, **info}
        n = len(ctx.y)
        jobs = [(config_id(f, None), f, fit_to_space(f, None, ctx.task, n))
                for f in resolve_families(None, args.exclude, ctx.task)]
        jobs += [(c["config_id"], c["family"], fit_to_space(c["family"], c["config"], ctx.task, n))
                 for c in pool if ctx.task in FAMILIES[c["family"]].tasks and c["family"] not in args.exclude]
        for cid, family, config in jobs:
            evaluate(cache, ctx, spec.name, cid, family, config, "2", args.trial_cap, args.retry_timeouts)
        cache.append({**info, "stage2_done": True, "stage2_seconds": round(time.time() - t0, 1)})
        print(f"[{i + 1}/{len(specs)}] {spec.name}: stage 2 {time.time() - t0:.1f} s", flush=True)


def meta_stage(cache: Cache, specs: list[TaskSpec]) -> None:
    """Meta-features of each full prepared table (not the subsample), cached in bench/cache/meta.jsonl."""
    from daedalus.data.metafeatures import meta_features  # lands with issue 12.1

    path = CACHE / "meta.jsonl"
    done = {json.loads(line)["name"] for line in path.read_text().splitlines()} if path.exists() else set()
    for spec in specs:
        if spec.name in done or not cache.tasks.get(spec.name, {}).get("stage2_done"):
            continue  # only tasks the export will ship; a resumed stage 2 is followed by this step again
        df, schema, _ = read_task(spec, None)
        y = np.asarray(prepare_target(df[schema.target], schema))
        mf = meta_features(prepare_features(df, schema), y, schema.task, seed=SEED, time_limit=3.0)
        with open(path, "a") as f:
            f.write(json.dumps({"name": spec.name, "meta_features": mf.to_dict()["values"],
                                "seconds": round(mf.seconds, 3)}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        print(f"meta-features: {spec.name}", flush=True)


def export(cache: Cache, args: argparse.Namespace) -> None:
    """The compact matrix (package data), one npz of out-of-fold predictions per task, and the portfolio."""
    from daedalus.designers.meta.matrix import Matrix
    from daedalus.designers.meta.portfolio import select_portfolio
    from daedalus.ensembles.meta import CaruanaEnsembler

    meta_path = CACHE / "meta.jsonl"
    metas = {}
    if meta_path.exists():
        for line in meta_path.read_text().splitlines():
            rec = json.loads(line)
            metas[rec["name"]] = rec["meta_features"]
    # Only tasks with every candidate run (stage 2 done): a task cut short by a partial run waits for a resume.
    tasks = [t for t in cache.tasks.values() if t.get("stage2_done") and "error" not in t]
    kept = {t["name"] for t in tasks}
    configs: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, float | None]] = defaultdict(dict)
    fit: dict[str, dict[str, float | None]] = defaultdict(dict)
    for (task, cid), rec in sorted(cache.cells.items()):
        if task not in kept:
            continue
        default = cid.endswith(".default")
        configs.setdefault(cid, {"id": cid, "family": rec["family"], "config": None if default else rec["config"]})
        if rec["stage"] == "1" and not default:
            configs[cid]["config"] = rec["config"]  # as found on its own task, before any projection
        scores[task][cid] = rec["score"]
        fit[task][cid] = rec["fit_seconds"]
    matrix = Matrix(configs=list(configs.values()),
                    tasks=[{"name": t["name"], "source": t["source"], "group": t["group"], "task": t["task"],
                            "metric": t["metric"], "n_rows": t["n_rows"],
                            "n_features": t["n_features"],
                            "higher_is_better": get_metric(t["metric"], Task(t["task"])).greater_is_better,
                            "meta_features": metas.get(t["name"], {})} for t in tasks],
                    scores=dict(scores), fit_seconds=dict(fit))
    matrix.save(PACKAGE_DIR / "matrix.json.gz")
    oof = {}
    for t in tasks:
        folder = CACHE / "oof" / t["name"]
        arrays = {p.stem: np.load(p) for p in folder.glob("*.npy")}
        np.savez_compressed(CACHE / f"oof_{t['name']}.npz", **arrays)
        y = arrays.pop("_y")
        # Stored as float32: rows of class probabilities summed back to exactly one before scoring.
        full = {c: a.astype(np.float64) for c, a in arrays.items()}
        full = {c: a / a.sum(axis=1, keepdims=True) if a.ndim == 2 else a for c, a in full.items()}
        oof[t["name"]] = (y, full)
    t0 = time.time()
    # cost-aware: a build with a short budget runs the first members only (bench/portfolio_anytime.py)
    portfolio = select_portfolio(matrix, args.size, oof=oof, ensembler=CaruanaEnsembler(matrix), cost_aware=True)
    portfolio.save(PACKAGE_DIR / "portfolio.json")
    print(f"portfolio of {len(portfolio.members)} selected in {time.time() - t0:.1f} s", flush=True)
    for m in portfolio.members:
        print(f"  {m.slot:2d} {m.config_id:28s} {m.why}")
    summary = compare(matrix, [m.config_id for m in portfolio.members], oof, args.size)
    (CACHE / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


def compare(matrix: Any, members: list[str], oof: dict[str, Any], size: int) -> dict[str, Any]:
    """The portfolio against the family defaults, on the normalised scale: each set's best member per task
    (in-sample, and leave-one-group-out: the portfolio mined without the task's group) and each set's Caruana
    ensemble per task (what a build ships)."""
    from daedalus.designers.meta.portfolio import select_portfolio
    from daedalus.ensembles.meta import CaruanaEnsembler

    norm = np.nan_to_num(matrix.normalised(), nan=-1.0)
    col = {c: j for j, c in enumerate(matrix.config_ids)}
    defaults = [c for c in matrix.config_ids if c.endswith(".default")]
    ens = CaruanaEnsembler(matrix)
    median, best = matrix.reference()

    def best_member(ids: list[str]) -> float:
        return float(norm[:, [col[c] for c in ids]].max(axis=1).mean())

    def ensembled(ids: list[str]) -> float:
        out = []
        for i, name in enumerate(matrix.task_names):
            y, preds = oof[name]
            have = [np.asarray(preds[c], dtype=float) for c in ids if c in preds]
            if not have:
                out.append(-1.0)
                continue
            _, u = ens.ensemble(name, y, have)
            spread = best[i] - median[i] if best[i] - median[i] > 1e-12 else 1.0
            out.append(max((u - median[i]) / spread, -1.0))
        return float(np.mean(out))

    loto_p, loto_d = [], []
    for i, t in enumerate(matrix.tasks):
        mined = select_portfolio(matrix.without(t["group"]), size, cost_aware=True)  # best-member: cheap enough
        loto_p.append(float(max(norm[i, col[m.config_id]] for m in mined.members)))
        loto_d.append(float(max(norm[i, col[c]] for c in defaults)))
    wins = sum(p > d + 1e-9 for p, d in zip(loto_p, loto_d, strict=True))
    losses = sum(p < d - 1e-9 for p, d in zip(loto_p, loto_d, strict=True))
    return {"tasks": len(matrix.tasks), "configs": len(matrix.configs), "portfolio": members,
            "defaults": defaults,
            "best_member_in_sample": {"portfolio": best_member(members), "defaults": best_member(defaults)},
            "best_member_leave_one_group_out": {"portfolio": float(np.mean(loto_p)),
                                                "defaults": float(np.mean(loto_d)),
                                                "portfolio_better": wins, "defaults_better": losses},
            "caruana_ensemble_in_sample": {"portfolio": ensembled(members), "defaults": ensembled(defaults)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["1", "2", "meta", "export"], required=True)
    ap.add_argument("--part", default="1/1", help="I/N: every N-th task from the I-th (1-based)")
    ap.add_argument("--max-rows", type=int, default=1000)
    ap.add_argument("--trial-cap", type=float, default=8.0, help="seconds per cell (3 folds)")
    ap.add_argument("--trials", type=int, default=13, help="stage-1 trials per task (defaults first)")
    ap.add_argument("--pool", type=int, default=14, help="stage-2 candidates pooled from stage 1")
    ap.add_argument("--size", type=int, default=12, help="portfolio size (export)")
    ap.add_argument("--retry-timeouts", action="store_true",
                    help="stage 2: run again, under this --trial-cap, the cells that timed out under a smaller one")
    ap.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    ap.add_argument("--exclude", default="neural", help="comma-separated families left out of stages 1 and 2 (e.g. "
                    "neural: it spends the whole cap at every size)")
    args = ap.parse_args(argv)
    args.exclude = [f for f in args.exclude.split(",") if f]
    index, n_parts = (int(x) for x in args.part.split("/"))
    specs = list_tasks()
    if args.tasks:
        specs = [s for s in specs if s.name in set(args.tasks.split(","))]
    specs = specs[index - 1::n_parts]
    global CACHE
    CACHE = CACHE_ROOT / f"r{args.max_rows}"
    cache = Cache(CACHE / "cells.jsonl")
    t0 = time.time()
    if args.stage in ("1", "2"):
        start_early()
        # Wait once for the workers' imports (a busy machine: a minute), so no cell's cap is spent on them.
        run_in_worker(time.sleep, (0.0,), timeout=600, memory_mb=3000)
        try:
            (stage1 if args.stage == "1" else stage2)(cache, specs, args)
        finally:
            stop_pool()
    elif args.stage == "meta":
        meta_stage(cache, specs)
    else:
        export(cache, args)
    print(f"stage {args.stage}: {time.time() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
