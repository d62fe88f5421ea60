#!/usr/bin/env python
"""Self-improvement (issue 12): does a build reach an earlier build's best score sooner with the knowledge base?

    .venv/bin/python bench/self_improve_bench.py --time 40 --limit 10
    .venv/bin/python bench/self_improve_bench.py --second rest --first-time 60 --time 30 --limit 10
    .venv/bin/python bench/self_improve_bench.py --second rest --first-time 60 --time 30 --limit 10 --largest

For each task (of ../shared/meta, ids and leaks dropped): build FIRST on half of the rows (seed 0, --first-time
seconds), recording it in a fresh knowledge base; then build on all the rows (``--second full``, the issue's
protocol), or on the other half (``--second rest``: next month's rows, as many as the first build had, so that
more rows alone do not reach the goal at once), three ways, same seed and budget:
  - ``knowledge``: warm start with that knowledge base (the first build's best configurations queued);
  - ``portfolio``: warm start from the mined portfolio alone (``--knowledge off``);
  - ``cold``: ``--warm-start off`` (each family's default, then TPE).
Measured: the seconds from the build's launch until a trial's validation score reaches the first build's best
(the audit log's ``trial_result`` times), and the ratio of each arm's time to ``cold``'s (an arm that never reaches
it counts as its whole budget: the ratio is then a bound). Every build of a task uses a portfolio mined from the
committed matrix without the task's group (leave-one-task-out, as bench/meta_bench.py), unless --portfolio names
one: with the task itself in the corpus, the corpus is as near as the first build, and the knowledge base's
configurations would queue behind the portfolio's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import automl_bench as ab  # noqa: E402  (bench/ is not a package)
from meta_bench import pick_tasks  # noqa: E402

ARMS = ("knowledge", "portfolio", "cold")


def table(name: str, entry: dict[str, Any], shared: Path, work: Path, max_rows: int | None,
          second: str = "full") -> tuple[Path, Path]:
    """(the second builds' table, the first build's half)."""
    df = pd.read_csv(shared / "meta" / f"{name}.csv.gz")
    drop = [c for c in [*entry.get("id_cols", []), *entry.get("leak_cols", [])] if c in df.columns]
    df = df.drop(columns=drop).dropna(subset=[entry["target"]])
    if max_rows is not None and len(df) > max_rows:
        df = df.sample(max_rows, random_state=0)
    work.mkdir(parents=True, exist_ok=True)
    full, half, rest = work / "full.csv", work / "half.csv", work / "rest.csv"
    df.to_csv(full, index=False)
    first = df.sample(frac=0.5, random_state=1)
    first.to_csv(half, index=False)
    df.drop(index=first.index).to_csv(rest, index=False)
    return (rest if second == "rest" else full), half


def build(daedalus: str, data: Path, target: str, budget: float, run_dir: Path, extra: list[str]) -> float:
    """Run a build; returns the wall-clock time it was launched at."""
    launched = time.time()
    proc = subprocess.run([daedalus, "build", str(data), "--target", target, "--time", f"{budget:g}", "--seed",
                           "0", "--run", str(run_dir), "--quiet", "--no-explain", *extra],
                          capture_output=True, text=True, timeout=ab.hard_limit_s(budget))
    if proc.returncode != 0:
        raise RuntimeError(f"build of {data} exited {proc.returncode}: {proc.stderr[-500:]}")
    return launched


def results(run_dir: Path) -> tuple[list[tuple[float, float]], bool]:
    """(time, score) of each successful trial, and whether the metric is to be maximised."""
    records = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    trials = [(r["time"], r["score"]) for r in records if r.get("event") == "trial_result" and r.get("status") == "ok"]
    metric = next(r["metric"] for r in records if r.get("event") == "validation_plan")
    return trials, metric not in ("rmse", "mae", "log_loss")


def time_to_reach(trials: list[tuple[float, float]], launched: float, goal: float, higher: bool,
                  budget: float) -> tuple[float, bool]:
    for moment, score in sorted(trials):
        if (score >= goal) if higher else (score <= goal):
            return moment - launched, True
    return budget, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", type=float, default=40.0, help="budget of the second builds")
    parser.add_argument("--first-time", type=float, default=None, help="budget of the first build (default --time)")
    parser.add_argument("--second", choices=["full", "rest"], default="full",
                        help="the second builds' rows: all of them, or the half the first build did not see")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--largest", action="store_true",
                        help="the --limit tasks with the most rows (where a trial costs seconds, not a fraction "
                             "of one: on small tables every arm's first trial already reaches the goal)")
    parser.add_argument("--max-rows", type=int, default=20000)
    parser.add_argument("--portfolio", default=None)
    parser.add_argument("--shared", type=Path, default=ab.DEFAULT_SHARED)
    parser.add_argument("--daedalus", default=ab.default_daedalus())
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="self_improve_"))
    manifest = json.loads((args.shared / "meta" / "manifest.json").read_text())
    if args.largest and not args.tasks:
        tabular = [n for n, m in manifest.items() if m["task"] in ab.TABULAR_TASKS]
        names = sorted(tabular, key=lambda n: (-manifest[n]["rows"], n))[:args.limit]
    else:
        names = pick_tasks(manifest, args.limit, args.tasks.split(",") if args.tasks else None)
    rows = []
    for name in names:
        entry, work = manifest[name], out / name
        full, half = table(name, entry, args.shared, work, args.max_rows, args.second)
        portfolio = ["--portfolio", args.portfolio or str(ab.portfolio_without(name, work / "portfolio.json"))]
        knowledge = f"sqlite:///{work / 'knowledge.db'}"
        try:
            build(args.daedalus, half, entry["target"], args.first_time or args.time, work / "first",
                  ["--knowledge", knowledge, *portfolio])
            first, higher = results(work / "first")
            goal = max(s for _, s in first) if higher else min(s for _, s in first)
            row: dict[str, Any] = {"task": name, "goal": goal}
            extras = {"knowledge": ["--knowledge", knowledge, *portfolio],
                      "portfolio": ["--knowledge", "off", *portfolio],
                      "cold": ["--knowledge", "off", "--warm-start", "off"]}
            timelines = {}
            for arm in ARMS:
                launched = build(args.daedalus, full, entry["target"], args.time, work / arm, extras[arm])
                trials, _ = results(work / arm)
                timelines[arm] = (trials, launched)
                row[arm], row[f"{arm}_reached"] = time_to_reach(trials, launched, goal, higher, args.time)
            # The second goal: what the cold build reached in its whole budget on this table.
            cold_scores = [s for _, s in timelines["cold"][0]]
            row["cold_best"] = max(cold_scores) if higher else min(cold_scores)
            for arm in ARMS:
                row[f"{arm}_to_cold_best"], row[f"{arm}_to_cold_best_reached"] = time_to_reach(
                    *timelines[arm], row["cold_best"], higher, args.time)
        except (RuntimeError, subprocess.TimeoutExpired, StopIteration, ValueError) as e:
            print(f"{name}: {e}", flush=True)
            continue
        rows.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{len(rows)} tasks; seconds to reach the half-data build's best validation score (--time {args.time:g})")
    print("| task | " + " | ".join(ARMS) + " |\n|---|" + "---|" * len(ARMS))
    for row in rows:
        cells = [f"{row[a]:.1f}{'' if row[f'{a}_reached'] else ' (never)'}" for a in ARMS]
        print(f"| {row['task']} | " + " | ".join(cells) + " |")
    if rows:
        for arm in ARMS[:2]:
            ratios = [row[arm] / row["cold"] for row in rows if row["cold"] > 0]
            print(f"{arm}/cold: geometric mean ratio {float(np.exp(np.mean(np.log(ratios)))):.2f} over {len(ratios)} "
                  f"tasks; median {float(np.median(ratios)):.2f}")
        print("\nseconds to reach the cold build's own final best on the second table")
        print("| task | " + " | ".join(ARMS) + " |\n|---|" + "---|" * len(ARMS))
        for row in rows:
            cells = [f"{row[f'{a}_to_cold_best']:.1f}{'' if row[f'{a}_to_cold_best_reached'] else ' (never)'}"
                     for a in ARMS]
            print(f"| {row['task']} | " + " | ".join(cells) + " |")
        for arm in ARMS[:2]:
            ratios = [row[f"{arm}_to_cold_best"] / row["cold_to_cold_best"] for row in rows
                      if row["cold_to_cold_best"] > 0]
            print(f"{arm}/cold, to the cold build's best: geometric mean ratio "
                  f"{float(np.exp(np.mean(np.log(ratios)))):.2f}; median {float(np.median(ratios)):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
