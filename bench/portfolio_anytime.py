#!/usr/bin/env python
"""How soon does each start reach a good model? The portfolio's order against the cold start, simulated on the
matrix, leave-one-group-out.

    .venv/bin/python bench/portfolio_anytime.py [--matrix FILE] [--size 12]

For every corpus task (its group held out), a portfolio is mined on the other tasks (best-member greedy, as
``compare`` in meta_matrix.py does, with and without ``cost_aware``), and its members are "run" on the held-out
task in slot order with the fit seconds the matrix measured there (a failed cell costs the task's slowest cell and
scores -1). Reported: the mean normalised score of the best member finished within a budget of k times the
task's median cell time (k = 2, 5, 10, 20, 40), and of the first and the first 3 members whatever their time (what
``--zero-shot`` fits), against the cold start (each family's default, in the order a cold
build runs them: ``spaces.catalog.FAMILIES``). This is the order question alone: no ensembling, no TPE.

Last, the headroom in the metric itself (not normalised): per task, the relative gain of the portfolio's best
member (cost-aware, leave-one-group-out) over the best family default, and of the best of every configuration in
the matrix (an oracle, chosen in-sample: an upper bound). A warm start can only beat a cold one by what the first
gains, and a 30-s build's test score moves by more than that between two seeds on many tasks.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import WORST, Matrix
from daedalus.designers.meta.portfolio import Portfolio, greedy_order, select_portfolio
from daedalus.designers.meta.ranker import task_meta
from daedalus.designers.warm_start import PastTask, distances, nearest_estimates, same_kind
from daedalus.spaces.catalog import FAMILIES

BUDGETS = (2, 5, 10, 20, 40)


def reached(order: list[int], norm_row: np.ndarray, sec_row: np.ndarray, budget: float) -> float:
    """The best normalised score among the members of ``order`` that finish within ``budget`` seconds."""
    spent, best = 0.0, WORST
    for j in order:
        if not np.isfinite(sec_row[j]):
            continue  # never run on this task (a family that cannot do it)
        spent += float(sec_row[j])
        if spent > budget:
            break
        best = max(best, float(np.nan_to_num(norm_row[j], nan=WORST)))
    return best


def predicted_first(mined: Portfolio, task: dict, col: dict[str, int]) -> list[int]:
    """The members in the order a build queues them: the one predicted best from the 5 nearest corpus tasks
    first (``designers/warm_start``), the others in slot order."""
    order = [col[m.config_id] for m in mined.members]
    meta = task_meta(task.get("meta_features"))
    past = []
    for t in mined.tasks:
        near = task_meta(t.get("meta_features"))
        if near is not None:
            past.append(PastTask(t["name"], t["task"], near.similarity_vector(),
                                 [m.scores.get(t["name"], np.nan) for m in mined.members]))
    if meta is None or not past:
        return order
    estimates = nearest_estimates(meta.similarity_vector(), same_kind(past, Task(task["task"])), len(order))[0]
    first = int(np.argmax(estimates))
    return [order[first], *[j for k, j in enumerate(order) if k != first]]


def nearest_greedy(mined: Portfolio, task: dict, col: dict[str, int], k: int | None,
                   by_cost: bool = True) -> list[int]:
    """The members re-ordered by the cost-aware greedy rule on the ``k`` nearest corpus tasks of the same kind
    (None: all of them)."""
    order = [col[m.config_id] for m in mined.members]
    meta = task_meta(task.get("meta_features"))
    past = [t for t in mined.tasks if t["task"] == task["task"] and task_meta(t.get("meta_features")) is not None]
    if meta is None or not past:
        return order
    if k is not None:
        dist = distances(meta.similarity_vector(), [task_meta(t["meta_features"]).similarity_vector() for t in past])
        past = [past[int(j)] for j in np.argsort(dist, kind="stable")[:k]]
    scores = np.array([[m.scores.get(t["name"], np.nan) for m in mined.members] for t in past])
    cost = np.array([m.cost for m in mined.members]) if by_cost else None
    return [order[j] for j in greedy_order(scores, cost)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matrix", default=None, help="a matrix.json.gz (default: the one shipped)")
    ap.add_argument("--size", type=int, default=12)
    args = ap.parse_args(argv)
    matrix = Matrix.load(args.matrix)
    norm, sec = matrix.normalised(), matrix.seconds()
    col = {c: j for j, c in enumerate(matrix.config_ids)}
    cold = [col[f"{f}.default"] for f in FAMILIES if f"{f}.default" in col]
    arms: dict[str, list[list[float]]] = {name: [] for name in (
        "cold (family defaults)", "portfolio", "portfolio, cost-aware", "portfolio, predicted best first",
        "portfolio, cost-aware, predicted best first", "cost-aware, greedy on 10 nearest of kind",
        "cost-aware, greedy on 30 nearest of kind", "cost-aware, greedy on all of kind",
        "cost-aware selection, score-only greedy on 10 nearest of kind")}
    utility = matrix.utilities()
    headroom: dict[str, list[float]] = {"portfolio's best member": [], "best configuration (oracle)": []}
    for i, task in enumerate(matrix.tasks):
        rest = matrix.without(task["group"])
        orders = {"cold (family defaults)": cold}
        for arm, aware in (("portfolio", False), ("portfolio, cost-aware", True)):
            mined = select_portfolio(rest, args.size, cost_aware=aware)
            orders[arm] = [col[m.config_id] for m in mined.members]
            orders[f"{arm}, predicted best first"] = predicted_first(mined, task, col)
            if aware:
                best_default = np.nanmax(utility[i, cold])
                for name, cells in (("portfolio's best member", utility[i, orders[arm]]),
                                    ("best configuration (oracle)", utility[i])):
                    headroom[name].append(float((np.nanmax(cells) - best_default) / abs(best_default)))
                for k, name in ((10, "10 nearest"), (30, "30 nearest"), (None, "all")):
                    orders[f"cost-aware, greedy on {name} of kind"] = nearest_greedy(mined, task, col, k)
                orders["cost-aware selection, score-only greedy on 10 nearest of kind"] = nearest_greedy(
                    mined, task, col, 10, by_cost=False)
        unit = float(np.nanmedian(sec[i]))
        for arm, order in orders.items():
            arms[arm].append([reached(order, norm[i], sec[i], k * unit) for k in BUDGETS]
                             + [float(np.nan_to_num(norm[i, order[:n]], nan=WORST).max()) for n in (1, 3)])
    print(f"{len(matrix.tasks)} tasks, {len(matrix.configs)} configurations; mean normalised score of the best "
          "member finished within k x the task's median cell time (leave-one-group-out)\n")
    print("| start | " + " | ".join(f"k={k}" for k in BUDGETS) + " | first member | best of first 3 |\n|---|"
          + "---|" * (len(BUDGETS) + 2))
    summary = {}
    for arm, rows in arms.items():
        mean = np.mean(np.array(rows), axis=0)
        summary[arm] = [round(float(x), 3) for x in mean]
        print(f"| {arm} | " + " | ".join(f"{x:.3f}" for x in mean) + " |")
    cold_rows = np.array(arms["cold (family defaults)"])
    for arm in list(arms)[1:]:
        rows = np.array(arms[arm])
        wins = [(rows[:, b] > cold_rows[:, b] + 1e-9).mean() for b in range(rows.shape[1])]
        print(f"{arm}: better than cold on " + ", ".join(f"{w:.0%}" for w in wins[:len(BUDGETS)])
              + " of tasks (by budget)")
    print("\nrelative gain over the best family default, in the metric (share of tasks):")
    print("| | median | mean | > 0.5% | > 1% | within 0.1% | < -0.5% |\n|---|---|---|---|---|---|---|")
    for name, gains in headroom.items():
        g = np.array(gains)
        print(f"| {name} | {np.median(g):.2%} | {np.mean(g):.2%} | {(g > 0.005).mean():.0%} | "
              f"{(g > 0.01).mean():.0%} | {(np.abs(g) < 0.001).mean():.0%} | {(g < -0.005).mean():.0%} |")
    json.dump(summary, sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
