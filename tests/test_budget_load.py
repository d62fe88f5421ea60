"""The budget bounds the whole command, from its start, on a busy machine too: the forkserver's library imports
(tens of seconds when the cores are taken) count against it, and the run still ends with a usable model."""

import subprocess
import sys
import time

import pandas as pd
import pytest

from daedalus.orchestration.budget import (
    ENSEMBLE_PART,
    FINAL_STAGE_MIN_SECONDS,
    FINAL_STAGE_SHARE,
    BudgetClock,
    final_stage_clocks,
)
from tests.conftest import DEMO, DEMO_TARGET, run_cli

BUDGET = 30
WALL_LIMIT = 33.5  # the budget, plus the interpreter's start and exit


@pytest.mark.slow
def test_time_budget_holds_beside_two_busy_processes(tmp_path):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        run = tmp_path / "r"
        t0 = time.monotonic()
        result = run_cli("build", DEMO, "--target", DEMO_TARGET, "--time", BUDGET, "--run", run, "--quiet",
                         timeout=300)
        wall = time.monotonic() - t0
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert result.returncode == 0, result.stderr
    assert wall <= WALL_LIMIT, f"--time {BUDGET} took {wall:.1f} s beside two busy processes"
    rows = tmp_path / "rows.csv"
    pd.read_csv(DEMO).drop(columns=[DEMO_TARGET]).head(20).to_csv(rows, index=False)
    predicted = run_cli("predict", run, rows, "--unapproved")
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.strip().splitlines()) == 21  # a header and a prediction per row


def test_final_stage_is_bounded_without_a_time_budget():
    # --trials alone: the final stage gets max(30 s, half the search's time); the ensemble's form a share of it.
    unbudgeted = BudgetClock(None)
    ensemble, stage = final_stage_clocks(unbudgeted, search_seconds=400.0)
    assert stage.remaining == pytest.approx(FINAL_STAGE_SHARE * 400.0, abs=1.0)
    assert ensemble.remaining == pytest.approx(ENSEMBLE_PART * FINAL_STAGE_SHARE * 400.0, abs=1.0)
    _, stage = final_stage_clocks(unbudgeted, search_seconds=2.0)
    assert stage.remaining == pytest.approx(FINAL_STAGE_MIN_SECONDS, abs=1.0)
    budgeted = BudgetClock(60.0)
    assert final_stage_clocks(budgeted, search_seconds=50.0) == (budgeted, budgeted)  # the search left its reserve
