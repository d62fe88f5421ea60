#!/usr/bin/env python
"""Zero-shot Daedalus (``build --zero-shot``) against LightGBM's defaults and FLAML's zero-shot, leave-one-task-out
over ../shared/meta (issue 12).

    .venv/bin/python bench/zeroshot_bench.py --limit 30 --peers-dir /work/peers

Each task is split 75/25 as in bench/meta_bench.py. Daedalus builds with ``--zero-shot`` and a portfolio mined
without the task's group (``--portfolio``), knowledge base and explanations off; the baselines run in the FLAML
peer venv (bench/zeroshot_peer.py). All three are scored on the test rows by bench/automl_bench.py's ``score``.
Printed: how often Daedalus beats LightGBM's defaults, and the mean rank of each (1 = best).
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

ARMS = ("daedalus", "lightgbm", "flaml")


def run_baseline(which: str, data: ab.Prepared, python: Path, work: Path) -> tuple[float, float]:
    pred = work / f"{which}_pred.csv"
    t0 = time.perf_counter()
    subprocess.run([str(python), str(Path(__file__).parent / "zeroshot_peer.py"), "--train", str(data.train_csv),
                    "--test", str(data.test_csv), "--target", data.target, "--task", data.task, "--which", which,
                    "--out", str(pred)], check=True, capture_output=True, timeout=900)
    wall = time.perf_counter() - t0
    preds = pd.read_csv(pred, dtype={"prediction": str} if data.task != "regression" else None)
    proba = ab.aligned_proba(preds, "proba_", data.classes) if data.task != "regression" else None
    metrics = ab.score(data.task, data.y_test.values, preds["prediction"].to_numpy(), proba, data.classes)
    return metrics[ab.PRIMARY[data.task][0]], wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--time", type=float, default=60.0, help="Daedalus's budget cap (zero-shot stops sooner)")
    parser.add_argument("--peers-dir", type=Path, default=Path.home() / ".cache" / "peers")
    parser.add_argument("--shared", type=Path, default=ab.DEFAULT_SHARED)
    parser.add_argument("--daedalus", default=ab.default_daedalus())
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="zeroshot_"))
    out.mkdir(parents=True, exist_ok=True)
    python = args.peers_dir / "venv-flaml" / "bin" / "python"
    manifest = json.loads((args.shared / "meta" / "manifest.json").read_text())
    run_peer = ab.load_run_peer(args.shared)
    results_file = out / "results.jsonl"
    rows: list[dict[str, Any]] = [json.loads(x) for x in results_file.read_text().splitlines()] \
        if results_file.exists() else []
    done = {r["task"] for r in rows}
    for name in pick_tasks(manifest, args.limit, args.tasks.split(",") if args.tasks else None):
        if name in done:
            continue
        work = out / name
        data = ab.prepare_dataset(name, manifest[name], args.shared, work, None, run_peer, corpus="meta")
        portfolio = ab.portfolio_without(name, work / "portfolio.json")
        row: dict[str, Any] = {"task": name, "kind": data.task}
        result = ab.RunResult(dataset=name, framework="daedalus", task=data.task, budget_s=args.time, seed=0)
        try:
            ab.run_daedalus(data, args.time, 0, args.daedalus, work, run_peer, result,
                            ("--zero-shot", "--portfolio", str(portfolio), "--knowledge", "off", "--no-explain"))
            row["daedalus"], row["daedalus_s"] = result.primary, result.fit_wall_s
            for which in ARMS[1:]:
                row[which], row[f"{which}_s"] = run_baseline(which, data, python, work)
        except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as e:
            print(f"{name}: {type(e).__name__}: {e}", flush=True)
            continue
        rows.append(row)
        with results_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    ranks = {a: [] for a in ARMS}
    beats = 0.0
    for row in rows:
        sign = 1 if ab.PRIMARY[row["kind"]][1] else -1
        values = np.array([sign * row[a] for a in ARMS])
        order = pd.Series(-values).rank(method="average").to_numpy()
        for a, r in zip(ARMS, order, strict=True):
            ranks[a].append(float(r))
        beats += 1.0 if values[0] > values[1] else 0.5 if values[0] == values[1] else 0.0
    n = len(rows)
    print(f"\n{n} tasks (leave-one-task-out portfolios)")
    print("| arm | mean rank | mean fit wall s |\n|---|---|---|")
    for a in ARMS:
        print(f"| {a} | {np.mean(ranks[a]):.2f} | {np.mean([r[f'{a}_s'] or 0 for r in rows]):.1f} |")
    share = 100 * beats / max(n, 1)
    print(f"daedalus --zero-shot beats LightGBM's defaults on {beats:.1f} of {n} tasks ({share:.0f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
