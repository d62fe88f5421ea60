"""The search on a subsample of a big table (orchestration/rows.py): how many rows, which ones, and the ensemble
refit on all of them at the end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from daedalus.data import infer_schema
from daedalus.ensembles.model import Member
from daedalus.errors import ConfigError
from daedalus.evaluation.validation import stratified_subset
from daedalus.interfaces.cli import main
from daedalus.orchestration.build import eval_context
from daedalus.orchestration.finalize import _refit_picks, _with_refits
from daedalus.orchestration.loop import TrialRecord
from daedalus.orchestration.options import BuildOptions
from daedalus.orchestration.parallel import plan_parallelism
from daedalus.orchestration.rows import MIN_SEARCH_ROWS, SECONDS_PER_CELL, plan_search_rows, prepared_row_mb
from daedalus.orchestration.search import refit_seconds
from daedalus.store.artifacts import load_model
from daedalus.store.run import RunStore


def _context(n: int, columns: int = 4, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, columns)), columns=[f"x{i}" for i in range(columns)])
    frame["y"] = np.where(frame["x0"] + rng.normal(size=n) > 1.0, "yes", "no")  # ~ 24% "yes"
    options = BuildOptions(target="y", time_budget=60.0)
    return eval_context(frame, infer_schema(frame, "y"), options)


def test_a_table_up_to_the_minimum_is_searched_whole_whatever_the_budget() -> None:
    ctx = _context(2_000)
    plan = plan_search_rows(ctx, BuildOptions(target="y", time_budget=1.0), memory_mb_per_trial=8000)
    assert (plan.rows, plan.of, plan.subsampled) == (2_000, 2_000, False)
    assert plan.reason.startswith("all rows")


def test_a_big_table_is_subsampled_to_what_the_budget_and_the_memory_allow() -> None:
    n = MIN_SEARCH_ROWS * 3
    ctx = _context(n)
    columns = ctx.X.shape[1]
    # time: 0.7 x budget / 12 trials at SECONDS_PER_CELL x columns per row, never under the minimum
    budget = 12 * (MIN_SEARCH_ROWS * 2) * SECONDS_PER_CELL * columns / 0.7
    by_time = plan_search_rows(ctx, BuildOptions(target="y", time_budget=budget), memory_mb_per_trial=1e6)
    assert by_time.subsampled and abs(by_time.rows - 2 * MIN_SEARCH_ROWS) <= 1
    assert "stratified subsample" in by_time.reason and "budget" in by_time.reason
    tiny_budget = plan_search_rows(ctx, BuildOptions(target="y", time_budget=1.0), memory_mb_per_trial=1e6)
    assert tiny_budget.rows == MIN_SEARCH_ROWS
    # memory: a trial's share that holds fewer rows than the clock would allow wins
    row_mb = prepared_row_mb(ctx.X)
    share = 520.0 + 4.0 * row_mb * 150_000
    by_memory = plan_search_rows(ctx, BuildOptions(target="y", n_trials=5), memory_mb_per_trial=share)
    assert abs(by_memory.rows - 150_000) <= 1 and "memory limit" in by_memory.reason
    # --search-rows as given; more than the table has means all of it
    assert plan_search_rows(ctx, BuildOptions(target="y", n_trials=5, search_rows=5_000), 1e6).rows == 5_000
    assert not plan_search_rows(ctx, BuildOptions(target="y", n_trials=5, search_rows=10 * n), 1e6).subsampled


def test_the_subsample_is_stratified_and_the_same_for_the_same_seed() -> None:
    y = np.array([0] * 9_000 + [1] * 900 + [2] * 100)
    rows = stratified_subset(y, True, 2_000, seed=3)
    assert len(rows) == 2_000 and np.all(np.diff(rows) > 0)
    assert np.bincount(y[rows]).tolist() == [1_800, 180, 20]  # the classes' shares exactly
    assert np.array_equal(rows, stratified_subset(y, True, 2_000, seed=3))
    assert not np.array_equal(rows, stratified_subset(y, True, 2_000, seed=4))
    target = np.random.default_rng(0).exponential(size=10_000)  # regression: stratified on the deciles
    picked = target[stratified_subset(target, False, 1_000, seed=0)]
    deciles = np.quantile(target, np.linspace(0, 1, 11))
    assert np.histogram(picked, deciles)[0].tolist() == [100] * 10


def test_the_memory_limit_counts_the_runs_own_process() -> None:
    options = BuildOptions(target="y", n_trials=4, workers=2, memory_mb=2000.0).checked()
    split = plan_parallelism(options, cores=2, held_mb=600.0)
    assert split.memory_mb_per_trial == pytest.approx(700.0)
    with pytest.raises(ConfigError) as refused:
        plan_parallelism(options, cores=2, held_mb=1500.0)
    message = str(refused.value)
    assert "after the 1500 MB this run's own process holds" in message
    assert "raise --memory-limit to at least 2300" in message


def _csv_with_rows_outside_the_subsample(tmp_path: Path, n: int, search: int) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 3))
    y = np.where(x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=n) > 0, "yes", "no")
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": y})
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_a_build_searches_a_subsample_and_refits_the_ensemble_on_all_rows(tmp_path: Path) -> None:
    n, search = 3_000, 1_000
    data, frame = _csv_with_rows_outside_the_subsample(tmp_path, n, search)
    run = tmp_path / "run"
    assert main(["build", str(data), "--target", "label", "--trials", "2", "--families", "linear",
                 "--search-rows", str(search), "--run", str(run), "--quiet", "--knowledge", "off",
                 "--no-explain"]) == 0
    events = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    planned = next(e for e in events if e["event"] == "search_rows")
    assert (planned["rows"], planned["of"], planned["subsampled"]) == (search, n, True)
    assert "--search-rows 1000" in planned["reason"]
    assert json.loads((run / "run.json").read_text())["validation"].endswith(f"on {search} rows")
    refit = next(e for e in events if e["event"] == "refit")
    assert f"refit on all {n} rows" in refit["reason"]
    # the oracle: the scaler inside each trial's model saw the subsample's training rows; the final one all rows
    store = RunStore.open(run)
    trial_model = load_model(store.fold_models(0)[0])
    final = json.loads((run / "model" / "model.json").read_text())
    final_model = load_model(run / "model" / final["members"][0]["files"][0])
    assert _rows_seen(trial_model) < search and _rows_seen(final_model) == n
    # resume draws the same subsample: the run's own two trials, then one more, on the same 1000 rows
    assert main(["resume", str(run), "--trials", "1", "--quiet"]) == 0
    events = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("search_rows") == 1
    assert next(e for e in reversed(events) if e["event"] == "refit")["reason"].endswith(f"all {n} rows")
    assert _rows_seen(load_model(store.fold_models(2)[0])) < search


def _rows_seen(model: object) -> int:
    scalers = [step for step in _walk(model) if isinstance(step, StandardScaler)]
    assert scalers, f"no StandardScaler in {model!r}"
    return int(scalers[0].n_samples_seen_)


def _walk(obj: object, depth: int = 0) -> list[object]:
    found = [obj]
    if depth > 6:
        return found
    children: list[object] = []
    for attr in ("steps", "transformers_", "named_steps"):
        value = getattr(obj, attr, None)
        if isinstance(value, list):
            children += [item[1] for item in value if isinstance(item, tuple) and len(item) > 1]
    for attr in ("estimator", "estimator_", "regressor_", "classifier_", "calibrated_classifiers_"):
        value = getattr(obj, attr, None)
        if value is not None:
            children += value if isinstance(value, list) else [value]
    for child in children:
        found += _walk(child, depth + 1)
    return found


def test_after_a_subsample_the_members_whose_refits_fit_are_refit_the_heaviest_first() -> None:
    ctx = _context(1_000)  # k-fold on 1,000 rows: the estimate scales one fold's fit up to the refit's rows
    full = _context(10_000)
    chosen = [(TrialRecord(0, "catboost", "ok", 0.9, 500.0, ""), 0.5),
              (TrialRecord(1, "lightgbm", "ok", 0.8, 5.0, ""), 0.3),
              (TrialRecord(2, "linear", "ok", 0.7, 1.0, ""), 0.2)]
    one_fold = len(ctx.plan.folds)
    cost = [refit_seconds([r.fit_seconds], ctx.plan, 10_000) for r, _ in chosen]
    assert cost[1] == pytest.approx(1.05 * 5.0 / one_fold * 10_000 / len(ctx.plan.folds[0][0]))
    assert _refit_picks(ctx, full, chosen, cost[1] + cost[2] + 1, partial=True) == [1, 2]
    assert _refit_picks(ctx, full, chosen, cost[1] + 1, partial=True) == [1]
    assert _refit_picks(ctx, full, chosen, sum(cost) + 1, partial=True) == [0, 1, 2]
    # without a subsample: all members or none
    assert _refit_picks(ctx, full, chosen, cost[1] + cost[2] + 1, partial=False) == []
    assert _refit_picks(ctx, full, chosen, sum(cost) + 1, partial=False) == [0, 1, 2]
    members = tuple(Member(r.number, r.family, w, (f"t{r.number}_fold_0.skops",)) for r, w in chosen)
    sources = {m.files[0]: Path("/bag") / m.files[0] for m in members}
    refit = [Path("/refit/member_0.skops"), Path("/refit/member_1.skops")]
    final, files = _with_refits(members, sources, [1, 2], refit)
    assert [m.files for m in final] == [("t0_fold_0.skops",), ("member_0.skops",), ("member_1.skops",)]
    assert [m.weight for m in final] == [0.5, 0.3, 0.2]
    assert files == {"t0_fold_0.skops": Path("/bag/t0_fold_0.skops"), "member_0.skops": refit[0],
                     "member_1.skops": refit[1]}


@pytest.mark.parametrize("saved", [None, "175000", {"rows": True}, {"rows": -5}, {"rows": 10**9},
                                   {"rows": "1000"}, {"rows": 1.5}])
def test_a_damaged_row_plan_in_run_json_is_never_used_to_index_the_table(saved: object) -> None:
    from daedalus.orchestration.build import _saved_row_plan

    full = _context(2_000)
    plan = _saved_row_plan({"search_rows": saved}, full)
    assert (plan.rows, plan.of, plan.subsampled) == (2_000, 2_000, False)
    kept = _saved_row_plan({"search_rows": {"rows": 500, "reason": "as saved"}}, full)
    assert (kept.rows, kept.reason) == (500, "as saved")
