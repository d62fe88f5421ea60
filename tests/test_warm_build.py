"""Warm-started builds, end to end (issue 12): the audit log names the source of every queued proposal, a past
run of the same table is queued first, --warm-start off is today's cold start, a damaged --portfolio is refused
before anything is written, and --zero-shot runs the first configurations of the plan only."""

import json
from pathlib import Path

import pandas as pd
import pytest

from daedalus.data.metafeatures import META_FEATURE_NAMES
from daedalus.data.schema import Task
from daedalus.designers.meta.portfolio import Member, Portfolio
from daedalus.spaces.registry import get_family
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
BUILD = ("--trials", "4", "--threads", "1", "--no-explain", "--quiet")


def _features(scale: float) -> dict[str, float]:
    return {name: scale * (i + 1) for i, name in enumerate(META_FEATURE_NAMES)}


@pytest.fixture
def portfolio_file(tmp_path: Path) -> Path:
    """Two corpus tasks far apart; on the one like small_binary_csv's table (rows, columns) random_forest wins."""
    rf = {**get_family("random_forest").default_config(Task.BINARY, 300), "n_estimators": 60}
    members = [Member(1, "lgb", "lightgbm", {"num_leaves": 15}, "slot 1", {"near": 0.1, "far": 1.0}),
               Member(2, "rf", "random_forest", rf, "slot 2", {"near": 1.0, "far": 0.2}),
               Member(3, "knn-default", "knn", None, "slot 3", {"near": 0.5, "far": 0.5})]
    near = {"n_rows": 300.0, "n_features": 3.0, "n_numeric": 2.0, "n_categorical": 1.0}
    tasks = [{"name": "near", "task": "binary", "group": "near", "meta_features": near},
             {"name": "far", "task": "binary", "group": "far", "meta_features": _features(1000.0)}]
    path = tmp_path / "portfolio.json"
    Portfolio(members=members, tasks=tasks, mode="best-member").save(path)
    return path


def _proposed(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == "trial_proposed"]


def test_the_audit_log_names_the_source_of_each_queued_proposal(small_binary_csv, tmp_path, portfolio_file):
    run = tmp_path / "run"
    built = run_cli("build", small_binary_csv, "--target", "label", *BUILD[2:], "--trials", "7", "--run", run,
                    "--portfolio", portfolio_file, "--families", "linear,lightgbm,random_forest,knn")
    assert built.returncode == 0, built.stderr
    proposed = _proposed(run)
    # every family's default in the cold start's order, then the plan (knn's default, slot 3, not twice), then TPE
    assert [(p["designer"], p["family"]) for p in proposed[:4]] == [
        ("default", "linear"), ("default", "lightgbm"), ("default", "random_forest"), ("default", "knn")]
    assert "a warm start adds to what a cold start tries" in proposed[1]["reason"]
    assert [p["designer"] for p in proposed] == ["default"] * 4 + ["portfolio", "portfolio", "tpe"]
    # after the queue, TPE's first proposals are shaped by the members' ranks on the nearest corpus tasks
    assert "trials of similar tasks (corpus task far, corpus task near)" in proposed[6]["reason"]
    assert proposed[4]["family"] == "random_forest" and "portfolio slot 2" in proposed[4]["reason"]
    assert "nearest corpus tasks" in proposed[4]["reason"] and "near" in proposed[4]["reason"]
    records = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    warm = next(r for r in records if r["event"] == "warm_start")
    assert [p["source"] for p in warm["warm_start"]["proposals"]] == ["portfolio"] * 3
    assert warm["warm_start"]["prior_trials"] == 6  # 3 members on each of the 2 corpus tasks
    assert set(warm["meta_features"]["values"]) == set(META_FEATURE_NAMES)
    assert (run / "meta_features.json").is_file()


def test_a_past_run_of_the_same_table_is_queued_first(small_binary_csv, tmp_path, portfolio_file):
    """Next month's rows of the table (the other half): recognised by the table's columns, recorded with the
    first run in the knowledge base, and its best configurations queued first."""
    knowledge = f"sqlite:///{tmp_path / 'k.db'}"
    rows = pd.read_csv(small_binary_csv)
    rows.iloc[::2].to_csv(tmp_path / "january.csv", index=False)
    rows.iloc[1::2].to_csv(tmp_path / "february.csv", index=False)
    first = run_cli("build", tmp_path / "january.csv", "--target", "label", *BUILD, "--run", tmp_path / "a",
                    "--knowledge", knowledge, "--warm-start", "off", "--families", "linear,lightgbm")
    assert first.returncode == 0, first.stderr
    again = run_cli("build", tmp_path / "february.csv", "--target", "label", *BUILD, "--run", tmp_path / "b",
                    "--knowledge", knowledge, "--portfolio", portfolio_file, "--families", "linear,lightgbm")
    assert again.returncode == 0, again.stderr
    proposed = _proposed(tmp_path / "b")
    assert proposed[1]["designer"] == "knowledge"
    assert "past run" in proposed[1]["reason"] and "january.csv" in proposed[1]["reason"]
    assert "(the same table: 100% of the columns shared, the same target; distance" in proposed[1]["reason"]


def test_warm_start_off_is_the_cold_start(small_binary_csv, tmp_path):
    families = "linear,lightgbm,knn"
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        built = run_cli("build", small_binary_csv, "--target", "label", *BUILD, "--run", run, "--warm-start", "off",
                        "--families", families, "--knowledge", f"sqlite:///{tmp_path / 'k.db'}")
        assert built.returncode == 0, built.stderr
        runs.append(run)
    cold = _proposed(runs[0])
    # Each family's default in the fixed order, then TPE: nothing learnt from the first run reaches the second.
    assert [(p["family"], p["designer"]) for p in cold[:3]] == [("linear", "portfolio"), ("lightgbm", "portfolio"),
                                                                ("knn", "portfolio")]
    assert [(p["family"], p["config"]) for p in cold] == [(p["family"], p["config"]) for p in _proposed(runs[1])]
    boards = [json.loads((r / "leaderboard.json").read_text()) for r in runs]
    assert [(r["trial"], r["score"]) for r in boards[0]] == [(r["trial"], r["score"]) for r in boards[1]]


def test_a_damaged_portfolio_file_is_refused_before_the_run_exists(small_binary_csv, tmp_path):
    bad = tmp_path / "portfolio.json"
    bad.write_text('{"format": 1, "mode": "best-member", "members": [{"family": "__import__", "config": {}}]}')
    run = tmp_path / "run"
    built = run_cli("build", small_binary_csv, "--target", "label", *BUILD, "--run", run, "--portfolio", bad)
    assert built.returncode == 2 and "Traceback" not in built.stderr
    assert "portfolio" in built.stderr and len(built.stderr.strip().splitlines()) == 1
    assert not run.exists()


def test_zero_shot_runs_the_first_three_of_the_plan_only(small_binary_csv, tmp_path, portfolio_file):
    run = tmp_path / "run"
    built = run_cli("build", small_binary_csv, "--target", "label", "--zero-shot", "--threads", "1",
                    "--no-explain", "--quiet", "--time", "60", "--run", run, "--portfolio", portfolio_file)
    assert built.returncode == 0, built.stderr
    proposed = _proposed(run)
    assert len(proposed) == 3 and proposed[0]["family"] == "random_forest"  # no linear default in front
    assert all(p["designer"] == "portfolio" for p in proposed)
