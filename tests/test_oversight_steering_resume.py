"""Steering keeps its effect across 'daedalus resume': a pause stays, added time stays in the budget, an enqueued
configuration still runs, and a command issued while the run was stopped is applied when it resumes.

The fast tests replay the audit log with the real steering layer, run store, Optuna study and designer (no model
is trained). The slow ones kill a real 'daedalus build' subprocess with SIGKILL, steer the dead run and resume it
with the real 'daedalus resume' command.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from daedalus.data.schema import Task
from daedalus.designers.base import Result
from daedalus.designers.optuna_designer import OptunaDesigner, make_sampler
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.steered import SteeredDesigner
from daedalus.oversight.steering import family_spaces, issue_command, steering_state
from daedalus.store.audit import verify
from daedalus.store.run import RunStore
from tests.conftest import run_cli
from tests.test_oversight_steering import next_proposal

FAMILIES = ["linear", "random_forest", "knn"]


class Said(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str, **fields) -> None:
        self.lines.append(text)


def _store(tmp_path: Path) -> RunStore:
    store = RunStore.create(tmp_path / "run", {"status": "running", "families": FAMILIES, "task": "binary",
                                               "options": {"target": "label"}})
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=200), "label": rng.integers(0, 2, 200)}).to_parquet(store.data_path)
    store.audit.append("data_checks", findings=[])
    return store


def _designer() -> OptunaDesigner:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    designer = OptunaDesigner(optuna.create_study(direction="maximize", sampler=make_sampler(0)), FAMILIES,
                              Task.BINARY, 200)
    designer.enqueue_portfolio()
    return designer


def _wrap(store: RunStore, designer: OptunaDesigner, clock: BudgetClock, reporter: Reporter | None = None
          ) -> SteeredDesigner:
    return SteeredDesigner(designer, store, clock, reporter or Reporter(), families=FAMILIES,
                           space_of=family_spaces(Task.BINARY, 200))


def _trial(steering: SteeredDesigner, designer: OptunaDesigner):
    proposal = next_proposal(steering)
    steering.tell(proposal, Result("ok", 0.5))
    return proposal


def _events(records: list[dict], event: str, after: int = -1) -> list[dict]:
    return [r for r in records if r["event"] == event and r["seq"] > after]


# -- the log replayed (fast) ---------------------------------------------------------------------------------
def test_the_state_replayed_from_the_log(tmp_path):
    store = _store(tmp_path)
    designer = _designer()
    first = _wrap(store, designer, BudgetClock(60.0))
    pause = issue_command(store.root, "pause", None)
    issue_command(store.root, "add-time", "7")
    issue_command(store.root, "exclude", "knn")
    first.apply_commands()  # the first session applies them, then is killed
    late = issue_command(store.root, "add-time", "3")  # issued after its last look: never applied
    state = steering_state(store.audit.records())
    assert state.paused_by == pause["seq"] and state.excluded == {"knn"} and state.added_seconds == 7
    assert [r["seq"] for r in state.pending] == [late["seq"]]
    store.audit.append("pause_expired", reason="test")  # a pause that ran out of time is over
    assert steering_state(store.audit.records()).paused_by is None


def test_a_paused_session_resumes_paused_and_a_command_issued_while_stopped_applies(tmp_path):
    store = _store(tmp_path)
    designer = _designer()
    first = _wrap(store, designer, BudgetClock(60.0))
    _trial(first, designer)
    issue_command(store.root, "pause", None)
    first.apply_commands()  # paused, then killed
    issue_command(store.root, "add-time", "5")  # while the run is stopped
    store.audit.append("resumed")
    clock, said = BudgetClock(60.0), Said()
    again = _wrap(store, designer, clock, said)
    threading.Timer(1.5, issue_command, args=(store.root, "resume", None)).start()
    t0 = time.monotonic()
    proposal = next_proposal(again)
    assert time.monotonic() - t0 >= 1.4 and proposal is not None  # waited for 'steer resume'
    assert clock.seconds == 65.0  # the command issued while stopped was applied
    assert any("stays paused after the resume" in line for line in said.lines)
    records = store.audit.records()
    resumed = _events(records, "resumed")[0]["seq"]
    assert [r["command"] for r in _events(records, "steer_applied", resumed)] == ["add-time", "resume"]
    assert verify(store.audit.path).ok


# -- real builds, killed and resumed (slow) ------------------------------------------------------------------
def _records(run: Path) -> list[dict]:
    path = run / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


def _wait_for(run: Path, predicate, timeout: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = _records(run)
        if records and predicate(records):
            return records
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on {run / 'audit.jsonl'}")


def _daedalus(*args: str, quiet: bool = True) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("daedalus")
    return subprocess.Popen([str(exe), *args, *(["--quiet"] if quiet else [])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**__import__("os").environ, "COLUMNS": "200"})


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_a_killed_paused_run_stays_paused_and_keeps_its_added_time(small_binary_csv, tmp_path):
    run = tmp_path / "r"
    proc = _daedalus("build", str(small_binary_csv), "--target", "label", "--run", str(run), "--time", "20",
                     "--families", "linear")
    _wait_for(run, bool)  # the run exists; the commands apply before its first trial
    pause = issue_command(run, "pause", None)  # in-process: what 'daedalus steer RUN pause' does
    issue_command(run, "add-time", "10")
    _wait_for(run, lambda rs: len(_events(rs, "steer_applied")) == 2)  # the search now waits
    _kill(proc)
    issue_command(run, "add-time", "5")  # while the run is dead (its status still says running)

    proc = _daedalus("resume", str(run), quiet=False)
    records = _wait_for(run, lambda rs: any(r["command"] == "add-time" for r in _events(
        rs, "steer_applied", max([r["seq"] for r in _events(rs, "resumed")], default=10**9))))
    resumed = _events(records, "resumed")[0]
    time.sleep(2.0)
    assert not _events(_records(run), "trial_proposed", resumed["seq"])  # still paused
    lift = issue_command(run, "resume", None)
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err

    said = " ".join(err.split())  # the progress display (stderr) wraps long lines
    assert "stays paused after the resume" in said and "steering carried over" in said, err
    assert resumed["time_budget"] == 30.0 and resumed["steering"]["paused_by"] == pause["seq"]
    records = _records(run)
    after = _events(records, "steer_applied", resumed["seq"])
    assert [r["effect"] for r in after if r["command"] == "add-time"] == ["the budget is now 35.0 s"]
    lifted = next(r["seq"] for r in after if r["command_seq"] == lift["seq"])
    proposed = _events(records, "trial_proposed", resumed["seq"])
    assert proposed and proposed[0]["seq"] > lifted
    # The session searched past --time 20 + the 5 s added while it was dead: the 10 s added before counted too.
    assert RunStore.open(run).read("run")["elapsed_seconds"] > 26
    assert (run / "model" / "model.json").exists() and verify(run / "audit.jsonl").ok


@pytest.mark.slow
def test_enqueued_configs_and_commands_issued_while_dead_apply_after_resume(small_binary_csv, tmp_path):
    run = tmp_path / "r"
    proc = _daedalus("build", str(small_binary_csv), "--target", "label", "--run", str(run), "--trials", "4",
                     "--families", "linear,knn")
    _wait_for(run, lambda rs: bool(_events(rs, "trial_result")))
    issue_command(run, "pause", None)
    before = tmp_path / "before.json"
    before.write_text(json.dumps({"family": "linear", "C": 0.5}))
    issue_command(run, "enqueue", str(before))
    _wait_for(run, lambda rs: len(_events(rs, "steer_applied")) == 2)  # in the study's queue, not yet run
    _kill(proc)
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps({"family": "linear", "C": 2.0}))
    result = run_cli("steer", run, "enqueue", dead)  # the dead run is steered as a user would
    assert result.returncode == 0, result.stderr
    issue_command(run, "exclude", "knn")
    issue_command(run, "resume", None)

    result = run_cli("resume", run, "--quiet", timeout=150)  # its own 4 trials; no one steers it now
    assert result.returncode == 0, result.stderr
    records = _records(run)
    resumed = _events(records, "resumed")[0]["seq"]
    applied = _events(records, "steer_applied", resumed)
    assert [r["command"] for r in applied] == ["enqueue", "exclude", "resume"] and all(r["applied"] for r in applied)
    proposed = _events(records, "trial_proposed", resumed)
    assert [(p["designer"], p["config"]["C"]) for p in proposed[:2]] == [("steering", 0.5), ("steering", 2.0)]
    assert not [r for r in _events(records, "trial_result", resumed) if r["family"] == "knn"]
    assert len(_events(records, "trial_result", resumed)) == 4
    assert (run / "model" / "model.json").exists() and verify(run / "audit.jsonl").ok
