"""NAS learns too (issue 12, item 8): each NAS-Bench-201 table searched by designers pretrained on the OTHER table
(its val12 only) against the same designers cold, next to the README's four baselines.

    nice -n 10 .venv/bin/python bench/nas_pretrain_bench.py --seeds 100 --out bench/nas_pretrain_results.json

Resumable: each (table searched, designer, pretrained or cold) row is saved to ``--out`` as it finishes and skipped
when the script runs again. The settings are the designers' defaults, the same for both tables. Prints a Markdown
table of mean ± sd of the scored test200 at 20, 50 and 100 queries.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from daedalus.evaluation.nas_table import load_table
from daedalus.orchestration.nas_bench import load_examples, run_bench

# ../shared/nas beside the repository (a worktree under wt/ looks one level further up).
SHARED = next((p / "shared" / "nas" for p in Path(__file__).resolve().parents[2:4] if (p / "shared" / "nas").is_dir()),
              Path("../shared/nas"))
TABLES = {"cifar10": "nb201_cifar10.csv.gz", "cifar100": "nb201_cifar100.csv.gz"}
OTHER = {"cifar10": "cifar100", "cifar100": "cifar10"}
BUDGETS = (20, 50, 100)
# ../shared/nas/README.md, 300 seeds: the four baselines, and the bar (beat them all at 50 and 100 queries).
BASELINES = {
    "cifar10": {"random": ("93.01±0.82", "93.41±0.59", "93.68±0.38"), "rea": ("92.98±0.86", "93.69±0.55", "94.01±0.34"),
                "local": ("93.23±0.82", "93.93±0.49", "94.15±0.32"),
                "reinforce": ("93.13±0.75", "93.67±0.50", "93.99±0.36")},
    "cifar100": {"random": ("69.45±1.60", "70.56±1.30", "71.11±1.12"),
                 "rea": ("69.88±1.70", "71.28±1.40", "72.10±1.00"),
                 "local": ("70.11±1.81", "71.64±1.33", "72.09±0.87"),
                 "reinforce": ("69.78±1.70", "71.32±1.35", "72.29±0.86")},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--designers", nargs="+", default=["generative", "predictor"])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of the NAS-Bench-201 tables")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/nas_pretrain_results.json"))
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.tables:
        table = load_table(args.data / TABLES[name])
        other = load_examples(args.data / TABLES[OTHER[name]])  # val12 only
        for designer in args.designers:
            for mode in ("cold", "pretrained"):
                key = f"{name}/{designer}/{mode}"
                if key in done and done[key]["seeds"] >= args.seeds:
                    continue
                start = time.perf_counter()
                results = run_bench(table, designer, max(BUDGETS), args.seeds, checkpoints=BUDGETS,
                                    processes=args.processes, pretrain=[other] if mode == "pretrained" else [])
                done[key] = {"seeds": args.seeds, "results": results, "seconds": round(time.perf_counter() - start)}
                args.out.write_text(json.dumps(done, indent=1))
                print(key, results, f"{done[key]['seconds']} s", flush=True)
    print_table(done)


def print_table(done: dict) -> None:
    print("| table searched | designer | B=20 | B=50 | B=100 |")
    print("| --- | --- | --- | --- | --- |")
    for name in TABLES:
        for algorithm, cells in BASELINES[name].items():
            print(f"| {name} | {algorithm} (README, 300 seeds) | " + " | ".join(cells) + " |")
        for key, row in done.items():
            if key.startswith(name + "/"):
                _, designer, mode = key.split("/")
                label = f"{designer}, pretrained on {OTHER[name]}" if mode == "pretrained" else f"{designer}, cold"
                cells = [f"{row['results'][str(b)]['mean']:.2f}±{row['results'][str(b)]['sd']:.2f}" for b in BUDGETS]
                print(f"| {name} | {label} ({row['seeds']} seeds) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
