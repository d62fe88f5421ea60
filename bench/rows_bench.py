#!/usr/bin/env python
"""Rows benchmark (issue 13): time and peak memory of Daedalus, FLAML and AutoGluon on one synthetic table at
10,000, 100,000 and 1,000,000 rows, with 60-s and 300-s budgets, the same files for all.

    .venv/bin/python bench/rows_bench.py --out /tmp/rows                       # the whole grid, ~75 min
    .venv/bin/python bench/rows_bench.py --rows 1000000 --budgets 300 --frameworks daedalus,autogluon

The table is ``bench/big_table.py``'s (50 columns: floats and integers with missing values, ten categories
of 4 to 200 levels; a binary target with interactions), written once per size to ``--data`` with a 100,000-row
test file from the same process. Each framework runs through ``automl_bench.py``'s own code (Daedalus's CLI, the
peers through ../shared/peers/run_peer.py), one after another, with its process tree's memory sampled every
0.5 s. Writes ``rows.json``, ``rows.md`` and ``rows.png`` (fit time / budget and peak memory against rows) to
--out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import automl_bench as ab  # noqa: E402
from big_table import TARGET, make_table  # noqa: E402

DEFAULT_ROWS = (10_000, 100_000, 1_000_000)
DEFAULT_BUDGETS = (60, 300)
TEST_ROWS = 100_000


def prepared_table(rows: int, data_dir: Path, run_peer: object) -> ab.Prepared:
    folder = data_dir / str(rows)
    train_csv, test_csv = folder / "train.csv", folder / "test.csv"
    if not (train_csv.exists() and test_csv.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        make_table(rows, seed=0).to_csv(train_csv, index=False, float_format="%.5g")
        make_table(TEST_ROWS, seed=1).to_csv(test_csv, index=False, float_format="%.5g")
    _, _, _, y_test, _, classes = run_peer.load_data(  # type: ignore[attr-defined]
        SimpleNamespace(train=str(train_csv), test=str(test_csv), target=TARGET, task="binary"))
    return ab.Prepared(name=f"synthetic_{rows}", target=TARGET, task="binary", train_csv=train_csv,
                       test_csv=test_csv, n_train=rows, n_test=TEST_ROWS, n_features=50,
                       rows_before_subsampling=None, y_test=y_test, classes=classes)


def plot(results: list[dict[str, object]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({float(r["budget_s"]) for r in results})  # type: ignore[arg-type]
    frameworks = list(dict.fromkeys(str(r["framework"]) for r in results))
    fig, axes = plt.subplots(2, len(budgets), figsize=(5 * len(budgets), 7), squeeze=False)
    for col, budget in enumerate(budgets):
        for fw in frameworks:
            rows = sorted((r for r in results if r["framework"] == fw and float(r["budget_s"]) == budget),  # type: ignore[arg-type]
                          key=lambda r: int(r["rows"]))  # type: ignore[call-overload]
            xs = [int(r["rows"]) for r in rows]  # type: ignore[call-overload]
            axes[0][col].plot(xs, [r["fit_to_budget"] for r in rows], marker="o", label=fw)
            axes[1][col].plot(xs, [r["peak_rss_mb"] for r in rows], marker="o", label=fw)
        axes[0][col].axhline(1.05, color="grey", linestyle="--", linewidth=0.8)
        axes[0][col].set_title(f"{budget:g}-s budget")
        axes[0][col].set_ylabel("fit wall time / budget")
        axes[1][col].set_ylabel("peak RSS of the process tree (MB)")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log")
            ax.set_xlabel("training rows")
            ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def markdown(results: list[dict[str, object]]) -> str:
    lines = ["| rows | budget s | framework | roc_auc | fit s | fit / budget | peak RSS MB | peak PSS MB | error |",
             "|---|---|---|---|---|---|---|---|---|"]
    def num(r: dict[str, object], key: str, spec: str) -> str:
        value = r.get(key)
        return "-" if value is None else format(value, spec)

    for r in results:
        lines.append(f"| {r['rows']} | {r['budget_s']:g} | {r['framework']} | {num(r, 'roc_auc', '.4f')} | "
                     f"{num(r, 'fit_wall_s', '.0f')} | {num(r, 'fit_to_budget', '.2f')} | "
                     f"{num(r, 'peak_rss_mb', '.0f')} | {num(r, 'peak_pss_mb', '.0f')} | "
                     f"{str(r.get('error') or '')[:80]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(map(str, DEFAULT_ROWS)))
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)))
    parser.add_argument("--frameworks", default="daedalus,flaml,autogluon")
    parser.add_argument("--data", type=Path, default=Path("/tmp/daedalus-rows-data"))
    parser.add_argument("--out", type=Path, default=ab.REPO / "bench" / "results" / time.strftime("rows-%Y%m%d-%H%M%S"))
    parser.add_argument("--peers-dir", type=Path, default=Path.home() / ".cache" / "peers")
    parser.add_argument("--shared", type=Path, default=ab.DEFAULT_SHARED)
    parser.add_argument("--daedalus", default=ab.default_daedalus())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_peer = ab.load_run_peer(args.shared)
    run_peer.cap_threads(ab.CORES)
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, object]] = []
    for rows in (int(r) for r in args.rows.split(",")):
        data = prepared_table(rows, args.data, run_peer)
        for budget in (float(b) for b in args.budgets.split(",")):
            for fw in args.frameworks.split(","):
                work = args.out / "work" / f"{rows}_{budget:g}"
                work.mkdir(parents=True, exist_ok=True)
                settings = SimpleNamespace(time=budget, seed=args.seed, daedalus=args.daedalus, cold=False,
                                           leave_one_out=False, peers_dir=args.peers_dir, shared=args.shared,
                                           autogluon_preset=None)
                r = ab.run_one(fw, data, settings, work, run_peer)  # type: ignore[arg-type]
                row = {"rows": rows, "budget_s": budget, "framework": fw, "roc_auc": r.metrics.get("roc_auc"),
                       "fit_wall_s": r.fit_wall_s, "fit_to_budget": r.fit_ratio, "peak_rss_mb": r.peak_rss_mb,
                       "peak_pss_mb": r.peak_pss_mb, "error": r.error_line or None}
                results.append(row)
                (work / f"{fw}.result.json").write_text(json.dumps(asdict(r), indent=2, default=str))
                print(json.dumps(row), flush=True)
                (args.out / "rows.json").write_text(json.dumps(results, indent=2))
    (args.out / "rows.md").write_text(markdown(results))
    plot(results, args.out / "rows.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
