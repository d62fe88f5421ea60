#!/usr/bin/env python
"""Trials side by side (issue 13): the speed-up of 2 workers over 1, on this machine and on a Ray cluster.

    .venv/bin/python bench/scale_bench.py                      # list, build, trivial; phoneme (5,404 rows)
    .venv/bin/python bench/scale_bench.py --parts list,trivial --dataset churn

Four parts, each run side by side in this one script (the machine's noise hits every arm alike):

1. ``list``: a fixed list of 24 configurations (6 families: the default and 3 seeded random draws of each)
   scored with 5-fold CV through the trial runner itself, with 1 and 2 jobs in flight, 1 thread each: on this
   machine's workers (``LocalRunner``) and as Ray tasks on a loopback cluster of two 1-CPU nodes
   (``RayRunner``). Trials per minute, after one warm-up job per slot (a worker's first job waits for its
   forkserver's imports: reported apart, as start-up); ``--rounds`` rounds, the arms' order reversed every
   other round, the median reported.
2. ``build``: the wall time of ``daedalus build --trials 24`` (cold start, 1 thread per trial) with
   ``--workers 1``, ``--workers 2`` and ``--ray`` (two workers on the loopback cluster): the whole build
   (start-up, search, ensemble) and the search alone (first proposal to last result, from the audit log).
3. ``budget`` (not in the default parts): ``build --time 60`` with 1 and 2 workers, on Ray started by the build
   (``--ray local``, its start-up counted) and on the loopback cluster: wall time against budget + 5% + 2 s.
4. ``trivial``: Ray's own overhead per trial: 40 jobs that only sleep 1 s, 2 in flight, through each runner;
   overhead = wall / (ideal wall) - 1, the ideal being 40 x 1 s / 2.

Bars (issue 13): 2 workers at least 1.7x as fast as 1, locally and on Ray; Ray's overhead at most 15%.
Results: printed as markdown tables and written to --out (JSON).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daedalus.evaluation.ray_runner import RayRunner, connect  # noqa: E402
from daedalus.evaluation.runner import Job, LocalRunner, TrialRunner  # noqa: E402
from daedalus.evaluation.trial import EvalContext, TrialSpec, run_trial  # noqa: E402
from daedalus.orchestration.build import eval_context, intake  # noqa: E402
from daedalus.orchestration.options import BuildOptions  # noqa: E402
from daedalus.spaces.registry import get_family  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
FAMILIES = ("linear", "lightgbm", "xgboost", "random_forest", "extra_trees", "hist_gb")
DRAWS_PER_FAMILY = 3
MEMORY_MB = 4000.0
DAEDALUS = Path(sys.executable).with_name("daedalus")


def dataset(name: str, workdir: Path) -> tuple[Path, str]:
    manifest = json.loads((SHARED / "manifest.json").read_text())
    entry = manifest[name]
    path = workdir / f"{name}.csv"
    import pandas as pd

    frame = pd.read_csv(SHARED / f"{name}.csv.gz")
    frame = frame.drop(columns=[c for c in entry.get("id_cols", []) + entry.get("leak_cols", []) if c in frame])
    frame.to_csv(path, index=False)
    return path, entry["target"]


def fixed_configurations(ctx: EvalContext) -> list[tuple[str, dict[str, Any]]]:
    """Each family's default, then ``DRAWS_PER_FAMILY`` seeded random draws from its space: the same list in
    every arm."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_rows = len(ctx.y)
    out = []
    for name in FAMILIES:
        family = get_family(name)
        out.append((name, family.default_config(ctx.task, n_rows)))
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=len(out)))
        for _ in range(DRAWS_PER_FAMILY):
            out.append((name, study.ask(family.space(ctx.task, n_rows)).params))
    return out


def run_jobs(runner: TrialRunner, jobs: list[Job]) -> tuple[float, list[str]]:
    """Submit ``jobs`` in order as slots free up; the wall seconds until the last result, and the statuses."""
    t0 = time.monotonic()
    pending, statuses = list(jobs), []
    while pending or runner.in_flight:
        while pending and runner.free() > 0:
            runner.submit(pending.pop(0))
        statuses += [f.result.status for f in runner.wait(0.05)]
    return time.monotonic() - t0, statuses


def trial_jobs(ctx: EvalContext, configs: list[tuple[str, dict[str, Any]]], out: Path, ship: bool) -> list[Job]:
    from daedalus.evaluation.trial import run_trial_shipped

    fn = run_trial_shipped if ship else run_trial
    return [Job(i, fn, (ctx, TrialSpec(i, family, config, seed=0, n_threads=1, out_dir=out / f"t{i}",
                                       keep_models_above=math.inf)), timeout=600, memory_mb=MEMORY_MB, shared=1)
            for i, (family, config) in enumerate(configs)]


def runners(address: str | None) -> dict[str, Any]:
    made: dict[str, Any] = {"local-1": lambda: LocalRunner(1), "local-2": lambda: LocalRunner(2)}
    if address:
        made["ray-1"] = lambda: RayRunner(address, capacity=1)
        made["ray-2"] = lambda: RayRunner(address, capacity=2)
    return made


def part_list(ctx: EvalContext, address: str | None, workdir: Path, rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of every arm, the arms' order reversed every other round (a drift of the machine's speed
    hits every arm alike); per arm the median, and the median of its per-round speed-up over local-1."""
    configs = fixed_configurations(ctx)
    arms = runners(address)
    walls: dict[str, list[float]] = {name: [] for name in arms}
    startups: dict[str, list[float]] = {name: [] for name in arms}
    for round_ in range(rounds):
        for name in (list(arms) if round_ % 2 == 0 else list(reversed(arms))):
            with arms[name]() as runner:
                warm = [Job(1000 + k, time.sleep, (0.2,), timeout=120, memory_mb=MEMORY_MB)
                        for k in range(runner.capacity)]
                startup, _ = run_jobs(runner, warm)
                out = workdir / f"{name}-{round_}"
                wall, statuses = run_jobs(runner, trial_jobs(ctx, configs, out, not runner.shares_files))
            if statuses.count("ok") != len(configs):
                raise SystemExit(f"{name}: not every trial succeeded: {statuses}")
            walls[name].append(wall)
            startups[name].append(startup)
            print(f"  list round {round_} {name}: {wall:.1f} s", flush=True)
    results: dict[str, Any] = {}
    for name in arms:
        ratios = [b / w for b, w in zip(walls["local-1"], walls[name], strict=True)]
        results[name] = {"wall_s": round(statistics.median(walls[name]), 2),
                         "trials_per_min": round(60 * len(configs) / statistics.median(walls[name]), 2),
                         "startup_s": round(statistics.median(startups[name]), 2), "walls": walls[name],
                         "speedup_median": round(statistics.median(ratios), 3), "n": len(configs)}
    return results


def audit_span(run: Path) -> float:
    events = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    times = [e["time"] for e in events if e["event"] in ("trial_proposed", "trial_result", "trial_failed")]
    return max(times) - min(times)


def part_build(data: Path, target: str, address: str | None, workdir: Path) -> dict[str, Any]:
    arms = {"workers-1": ["--workers", "1"], "workers-2": ["--workers", "2"]}
    if address:
        arms["ray-2"] = ["--ray", address, "--workers", "2"]
    results: dict[str, Any] = {}
    for name, extra in arms.items():
        run = workdir / f"build-{name}"
        cmd = [str(DAEDALUS), "build", str(data), "--target", target, "--trials", "24", "--threads", "1",
               "--warm-start", "off", "--knowledge", "off", "--no-explain", "--quiet", "--run", str(run), *extra]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{name}: {proc.stderr[-2000:]}")
        results[name] = {"wall_s": round(wall, 2), "search_s": round(audit_span(run), 2)}
        print(f"  build {name}: {results[name]}", flush=True)
    return results


def part_budget(data: Path, target: str, address: str | None, workdir: Path, budget: float) -> dict[str, Any]:
    """``build --time budget`` with 1 and 2 workers here, 2 on Ray started by the build itself (``--ray local``:
    its start-up inside the budget) and on the loopback cluster: the build's wall time, process start to exit,
    against the bar (budget + 5% + 2 s), and the time to the run's first audit record (intake, plus joining or
    starting Ray)."""
    arms = {"workers-1": ["--workers", "1"], "workers-2": ["--workers", "2"],
            "ray-local-2": ["--ray", "local", "--workers", "2"]}
    if address:
        arms["ray-cluster-2"] = ["--ray", address, "--workers", "2"]
    results: dict[str, Any] = {}
    for name, extra in arms.items():
        run = workdir / f"budget-{name}"
        cmd = [str(DAEDALUS), "build", str(data), "--target", target, "--time", f"{budget:g}",
               "--knowledge", "off", "--quiet", "--run", str(run), *extra]
        started = time.time()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{name}: {proc.stderr[-2000:]}")
        events = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
        bar = budget * 1.05 + 2
        results[name] = {"wall_s": round(wall, 2), "bar_s": bar, "within": wall <= bar,
                         "to_first_record_s": round(events[0]["time"] - started, 2),
                         "trials": sum(e["event"] in ("trial_result", "trial_failed") for e in events)}
        print(f"  budget {name}: {results[name]}", flush=True)
    return results


def part_trivial(address: str | None, n: int = 40, seconds: float = 1.0) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, make in runners(address).items():
        if not name.endswith("-2"):
            continue
        with make() as runner:
            run_jobs(runner, [Job(1000 + k, time.sleep, (0.2,), timeout=120, memory_mb=MEMORY_MB)
                              for k in range(runner.capacity)])  # warm
            wall, _ = run_jobs(runner, [Job(k, time.sleep, (seconds,), timeout=120, memory_mb=MEMORY_MB)
                                        for k in range(n)])
        ideal = n * seconds / runner.capacity
        results[name] = {"wall_s": round(wall, 2), "ideal_s": ideal, "overhead": round(wall / ideal - 1, 4)}
        print(f"  trivial {name}: {results[name]}", flush=True)
    return results


def start_cluster() -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    connect(cluster.address)
    return cluster


def report(results: dict[str, Any]) -> str:
    lines = []
    if "list" in results:
        r = results["list"]
        lines += ["| runner | trials/min (median) | wall (s), each round | start-up (s) | speed-up over local-1 "
                  "(median of the rounds) |", "|---|---|---|---|---|"]
        for name, row in r.items():
            each = ", ".join(f"{w:.1f}" for w in row["walls"])
            lines.append(f"| {name} | {row['trials_per_min']} | {each} | {row['startup_s']} | "
                         f"{row['speedup_median']:.2f}x |")
        if "ray-1" in r:
            lines.append(f"\nray-2 over ray-1 (medians): {r['ray-1']['wall_s'] / r['ray-2']['wall_s']:.2f}x")
        lines.append("")
    if "build" in results:
        r = results["build"]
        lines += ["| build --trials 24 | wall (s) | search (s) | speed-up (wall) | speed-up (search) |",
                  "|---|---|---|---|---|"]
        base = r["workers-1"]
        for name, row in r.items():
            lines.append(f"| {name} | {row['wall_s']} | {row['search_s']} | {base['wall_s'] / row['wall_s']:.2f}x | "
                         f"{base['search_s'] / row['search_s']:.2f}x |")
        lines.append("")
    if "budget" in results:
        lines += ["| build --time | wall (s) | budget + 5% + 2 s | within | to the first audit record (s) | trials |",
                  "|---|---|---|---|---|---|"]
        for name, row in results["budget"].items():
            lines.append(f"| {name} | {row['wall_s']} | {row['bar_s']:g} | {'yes' if row['within'] else 'NO'} | "
                         f"{row['to_first_record_s']} | {row['trials']} |")
        lines.append("")
    if "trivial" in results:
        lines += ["| 40 trials of 1 s, 2 at once | wall (s) | ideal (s) | overhead |", "|---|---|---|---|"]
        for name, row in results["trivial"].items():
            lines.append(f"| {name} | {row['wall_s']} | {row['ideal_s']} | {100 * row['overhead']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="phoneme")
    parser.add_argument("--parts", default="list,build,trivial")
    parser.add_argument("--no-ray", action="store_true", help="this machine's workers only")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the list part (default 3)")
    parser.add_argument("--budget", type=float, default=60.0, help="--time of the budget part (default 60)")
    parser.add_argument("--out", type=Path,
                        default=REPO / "bench" / "results" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args()
    parts = args.parts.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    cluster = None if args.no_ray else start_cluster()
    address = None if cluster is None else cluster.address
    results: dict[str, Any] = {"dataset": args.dataset, "cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        workdir = Path(tmp)
        data, target = dataset(args.dataset, workdir)
        if "list" in parts:
            got = intake(str(data), BuildOptions(target=target, n_trials=1))
            ctx = eval_context(got.frame, got.schema, BuildOptions(target=target, n_trials=1))
            results["list"] = part_list(ctx, address, workdir, args.rounds)
        if "build" in parts:
            results["build"] = part_build(data, target, address, workdir)
        if "budget" in parts:
            results["budget"] = part_budget(data, target, address, workdir, args.budget)
        if "trivial" in parts:
            results["trivial"] = part_trivial(address)
    (args.out / "scale.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    if cluster is not None:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
