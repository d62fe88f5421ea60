#!/usr/bin/env python
"""Warm start against cold start, leave-one-task-out over ../shared/meta (issue 12).

    .venv/bin/python bench/meta_bench.py --times 30,60 --limit 20

For each task of the meta corpus: the task is split 75/25 (seed 0, stratified, ids and leaks dropped, as
bench/automl_bench.py prepares the shared datasets); a portfolio is mined from the committed matrix WITHOUT the
task (and without any task of its group: the same data under another name), and Daedalus builds on the training
rows with that portfolio (``--portfolio``) and with ``--warm-start off``, at each budget, same seed; the test rows
score both. The knowledge base is off in every arm (``--knowledge off``): an earlier arm's run on the same table
would otherwise leak into a later one. Explanations are off in every arm (the same for all; more time to search).

Per task the arms' scores are normalised to [0, 1] (worst arm 0, best arm 1; all equal: 1). Printed: how often
warm beats cold at each budget, and the mean normalised score of each arm. Results are appended to
OUT/results.jsonl as each arm finishes; a rerun with the same --out skips what is done.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import automl_bench as ab  # noqa: E402  (bench/ is not a package)

SHARED = ab.DEFAULT_SHARED


def pick_tasks(manifest: dict[str, Any], limit: int | None, names: list[str] | None) -> list[str]:
    if names:
        unknown = [n for n in names if n not in manifest]
        if unknown:
            raise SystemExit(f"unknown meta tasks: {', '.join(unknown)}")
        return names
    every = sorted(manifest)
    if limit is None or limit >= len(every):
        return every
    # Evenly spread over the sorted names (R packages mixed), the same subset every time.
    return [every[int(i)] for i in np.linspace(0, len(every) - 1, limit).round()]


def arms(times: list[float]) -> list[tuple[str, float, bool]]:
    return [(f"{'warm' if warm else 'cold'}{t:g}", t, warm) for t in times for warm in (True, False)]


def run_task(name: str, entry: dict[str, Any], args: argparse.Namespace, done: set[tuple[str, str]],
             results: Path, run_peer: Any) -> None:
    work = args.out / name
    data = ab.prepare_dataset(name, entry, args.shared, work, args.max_rows, run_peer, corpus="meta")
    portfolio = ab.portfolio_without(name, work / "portfolio.json")
    for arm, budget, warm in arms(args.times):
        if (name, arm) in done or (args.arms and arm not in args.arms):
            continue
        extra = ["--knowledge", "off", "--no-explain"]
        extra += ["--portfolio", str(portfolio)] if warm else ["--warm-start", "off"]
        result = ab.RunResult(dataset=name, framework=arm, task=data.task, budget_s=budget, seed=args.seed)
        (work / arm).mkdir(parents=True, exist_ok=True)
        try:
            ab.run_daedalus(data, budget, args.seed, args.daedalus, work / arm, run_peer, result, tuple(extra))
        except Exception as e:  # an arm's failure is recorded, and the benchmark goes on
            result.error = f"{type(e).__name__}: {e}"
        row = {"task": name, "arm": arm, "kind": data.task, "score": result.primary, "error": result.error,
               "fit_wall_s": result.fit_wall_s}
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name:40s} {arm:8s} {row['score']}  {result.error or ''}".rstrip(), flush=True)


def summarise(rows: list[dict[str, Any]], times: list[float], only: list[str] | None = None) -> str:
    by_task: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    for row in rows:
        if row["score"] is not None:
            by_task.setdefault(row["task"], {})[row["arm"]] = row["score"]
            kinds[row["task"]] = row["kind"]
    names = [a for a, _, _ in arms(times) if not only or a in only]
    complete = {t: s for t, s in by_task.items() if all(a in s for a in names)}
    norm: dict[str, list[float]] = {a: [] for a in names}
    wins = {t: 0.0 for t in times}
    for task, scores in complete.items():
        higher = ab.PRIMARY[kinds[task]][1]
        values = np.array([scores[a] if higher else -scores[a] for a in names])
        span = values.max() - values.min()
        for a, v in zip(names, values, strict=True):
            norm[a].append(1.0 if span == 0 else float((v - values.min()) / span))
        for t in times:
            if f"warm{t:g}" in names and f"cold{t:g}" in names:
                warm, cold = values[names.index(f"warm{t:g}")], values[names.index(f"cold{t:g}")]
                wins[t] += 1.0 if warm > cold else 0.5 if warm == cold else 0.0
    n = len(complete)
    lines = [f"tasks with every arm: {n}", "", "| arm | mean normalised score |", "|---|---|"]
    lines += [f"| {a} | {np.mean(norm[a]):.3f} |" for a in names if norm[a]]
    lines.append("")
    for t in times:
        if f"warm{t:g}" not in names or f"cold{t:g}" not in names:
            continue
        lines.append(f"warm beats cold at {t:g} s on {wins[t]:.1f} of {n} tasks ({100 * wins[t] / max(n, 1):.0f}%; "
                     "a tie counts half)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", default="30,60", help="comma-separated budgets in seconds")
    parser.add_argument("--limit", type=int, default=None, help="this many tasks, spread over the corpus")
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: --limit of them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--daedalus", default=ab.default_daedalus())
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--arms", default=None, help="comma-separated arms to run, e.g. warm30,cold30,cold60 "
                        "(default: warm and cold at every budget)")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    args.times = [float(t) for t in args.times.split(",")]
    args.arms = args.arms.split(",") if args.arms else None
    args.out = args.out or Path(tempfile.mkdtemp(prefix="meta_bench_"))
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if not args.summary_only:
        manifest = json.loads((args.shared / "meta" / "manifest.json").read_text())
        run_peer = ab.load_run_peer(args.shared)
        done = {(r["task"], r["arm"]) for r in rows}
        names = pick_tasks(manifest, args.limit, args.tasks.split(",") if args.tasks else None)
        shown = [a for a, _, _ in arms(args.times) if not args.arms or a in args.arms]
        print(f"{len(names)} tasks, arms {', '.join(shown)}; results in {results}")
        for name in names:
            run_task(name, manifest[name], args, done, results, run_peer)
        rows = [json.loads(line) for line in results.read_text().splitlines()]
    summary = summarise(rows, args.times, args.arms)
    (args.out / "summary.md").write_text(summary + "\n")
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
