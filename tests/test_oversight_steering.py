"""Steering a running search: 'daedalus steer' commands change what the next trial does.

The fast tests drive the real steering wrapper (``SteeredDesigner``) around the real Optuna designer, with a real
run store and study (no model is trained: each proposal is told a score, as the search loop would), and around an
architecture designer as an image run has it. The slow ones run real builds in a subprocess and steer them from
the test, as a user would from another terminal.
"""

import json
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
from daedalus.errors import ConfigError, RunError
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.reporter import Reporter
from daedalus.orchestration.steered import POLL_SECONDS, SteeredDesigner
from daedalus.oversight.steering import family_spaces, issue_command
from daedalus.store.audit import verify
from daedalus.store.run import RunStore
from tests.conftest import run_cli

FAMILIES = ["linear", "random_forest", "knn"]


def _store(tmp_path: Path, status: str = "running") -> RunStore:
    store = RunStore.create(tmp_path / "run", {"status": status, "families": FAMILIES, "task": "binary",
                                               "options": {"target": "label"}})
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=200), "label": rng.integers(0, 2, 200)}).to_parquet(store.data_path)
    store.audit.append("data_checks", findings=[])
    return store


def _wrap(store: RunStore, designer: OptunaDesigner, clock: BudgetClock, out_of_time=lambda: False,
          reporter: Reporter | None = None) -> SteeredDesigner:
    """The wrapper as the search loop builds it for a table run."""
    return SteeredDesigner(designer, store, clock, reporter or Reporter(), families=FAMILIES,
                           space_of=family_spaces(Task.BINARY, 200), out_of_time=out_of_time)


def _steering(store: RunStore, clock_seconds: float | None = 60.0, out_of_time=lambda: False
              ) -> tuple[SteeredDesigner, OptunaDesigner, BudgetClock]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(0))
    designer = OptunaDesigner(study, FAMILIES, Task.BINARY, 200)
    designer.enqueue_portfolio()
    clock = BudgetClock(clock_seconds)
    return _wrap(store, designer, clock, out_of_time), designer, clock


def next_proposal(steered: SteeredDesigner):
    """What the search loop does for each trial: apply commands, check the budget, ask; while the answer is None
    (paused), wait and go round again. None when the search's time ran out."""
    while True:
        steered.apply_commands()
        if steered.out_of_time():
            return None
        proposal = steered.ask()
        if proposal is not None:
            return proposal
        time.sleep(POLL_SECONDS)


def _run_trials(steering: SteeredDesigner, designer: OptunaDesigner, n: int) -> list:
    """What the search loop does around steering, with a made-up score in place of training."""
    proposals = []
    for i in range(n):
        proposal = next_proposal(steering)
        steering.tell(proposal, Result("ok", 0.5 + 0.01 * i))
        proposals.append(proposal)
    return proposals


def _events(store: RunStore, event: str) -> list[dict]:
    return [r for r in store.audit.records() if r["event"] == event]


def test_excluded_family_is_never_tried_again_and_its_proposals_are_pruned(tmp_path):
    store = _store(tmp_path)
    steering, designer, _ = _steering(store)
    first = _run_trials(steering, designer, 1)
    assert first[0].family == "linear"  # the portfolio, cheapest first
    issue_command(store.root, "exclude", "knn")
    later = _run_trials(steering, designer, 15)
    assert "knn" not in {p.family for p in later}
    pruned = _events(store, "trial_pruned")
    assert pruned and {r["family"] for r in pruned} == {"knn"}  # at least the knn portfolio default
    states = {t.number: t.state for t in designer.study.trials}
    assert all(states[r["trial"]] == optuna.trial.TrialState.PRUNED for r in pruned)
    applied = _events(store, "steer_applied")
    assert applied[0]["command"] == "exclude" and applied[0]["applied"] and applied[0]["family"] == "knn"
    assert verify(store.audit.path).ok


def test_enqueued_config_is_the_next_trial_even_during_the_portfolio(tmp_path):
    store = _store(tmp_path)
    steering, designer, _ = _steering(store)
    _run_trials(steering, designer, 1)  # linear's default; the other defaults are still queued
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"family": "knn", "n_neighbors": 7, "p": 1}))
    issue_command(store.root, "enqueue", str(config))
    nxt, after = _run_trials(steering, designer, 2)
    assert nxt.family == "knn" and nxt.designer == "steering"
    config = nxt.candidate
    assert config["n_neighbors"] == 7 and config["p"] == 1 and config["weights"] in ("uniform", "distance")
    assert after.designer == "portfolio"  # the queue goes on where it was
    proposed = _events(store, "trial_proposed")
    assert proposed[1]["designer"] == "steering" and "enqueued by 'daedalus steer'" in proposed[1]["reason"]


def test_enqueue_with_parameters_under_config_as_in_the_audit_log(tmp_path):
    store = _store(tmp_path)
    steering, designer, _ = _steering(store)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"family": "linear", "config": {"C": 0.5}}))
    issue_command(store.root, "enqueue", str(config))
    (first,) = _run_trials(steering, designer, 1)
    assert first.designer == "steering" and first.candidate["C"] == 0.5


def test_add_time_extends_the_budget_clock(tmp_path):
    store = _store(tmp_path)
    steering, designer, clock = _steering(store, clock_seconds=30.0)
    issue_command(store.root, "add-time", "12.5")
    _run_trials(steering, designer, 1)
    assert clock.seconds == pytest.approx(42.5)
    assert _events(store, "steer_applied")[0]["effect"] == "the budget is now 42.5 s"


def test_add_time_without_a_time_budget_is_recorded_as_not_applied(tmp_path):
    store = _store(tmp_path)
    steering, designer, clock = _steering(store, clock_seconds=None)
    issue_command(store.root, "add-time", "10")
    _run_trials(steering, designer, 1)
    assert clock.seconds is None and _events(store, "steer_applied")[0]["applied"] is False


def test_pause_waits_until_resume(tmp_path):
    store = _store(tmp_path)
    steering, designer, _ = _steering(store)
    issue_command(store.root, "pause", None)
    threading.Timer(1.5, issue_command, args=(store.root, "resume", None)).start()
    t0 = time.monotonic()
    proposal = next_proposal(steering)
    assert time.monotonic() - t0 >= 1.4 and proposal is not None
    events = [r["event"] for r in store.audit.records()]
    # No trial was proposed between the pause taking effect and the resume.
    assert events[-5:] == ["steer", "steer_applied", "steer", "steer_applied", "trial_proposed"]


def test_a_paused_search_still_stops_at_its_budget(tmp_path):
    store = _store(tmp_path)
    deadline = time.monotonic() + 1.0
    steering, _, _ = _steering(store, out_of_time=lambda: time.monotonic() > deadline)
    issue_command(store.root, "pause", None)
    assert next_proposal(steering) is None
    assert len(_events(store, "pause_expired")) == 1


def test_exclusions_and_a_pause_outlive_a_resume(tmp_path):
    store = _store(tmp_path)
    steering, designer, _ = _steering(store)
    issue_command(store.root, "exclude", "linear")
    _run_trials(steering, designer, 1)
    issue_command(store.root, "pause", None)  # issued to the first session, which then stopped (e.g. killed)
    store.audit.append("resumed")
    again = _wrap(store, designer, BudgetClock(60.0))
    assert again.excluded == {"linear"}
    again.apply_commands()
    assert again.paused  # the resumed run stays paused until told to resume
    issue_command(store.root, "resume", None)
    proposals = _run_trials(again, designer, 6)  # returns at once: the pause was lifted
    assert "linear" not in {p.family for p in proposals}


@pytest.mark.parametrize("action,value,fragment", [
    ("exclude", "xgboost", "not searched in this run"),
    ("exclude", None, "needs a value"),
    ("add-time", "0", "positive number of seconds"),
    ("add-time", "-5", "positive number of seconds"),
    ("add-time", "soon", "number of seconds"),
    ("pause", "now", "takes no value"),
    ("jump", None, "unknown steering command"),
])
def test_bad_commands_are_refused(tmp_path, action, value, fragment):
    store = _store(tmp_path)
    with pytest.raises(ConfigError, match=fragment):
        issue_command(store.root, action, value)
    assert not _events(store, "steer")  # nothing recorded


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "not valid JSON"),
    ('{"n_neighbors": 7}', 'with a "family"'),
    ('{"family": "knn", "n_neighbors": 0}', r"knn.n_neighbors must be in \[1, "),
    ('{"family": "knn", "n_neighbors": 2.5}', "whole number"),
    ('{"family": "knn", "weights": "far"}', "must be one of"),
    ('{"family": "knn", "leaf": 3}', "not a hyperparameter of knn"),
])
def test_bad_configurations_are_refused(tmp_path, content, fragment):
    store = _store(tmp_path)
    config = tmp_path / "cfg.json"
    config.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        issue_command(store.root, "enqueue", str(config))


def test_excluding_every_family_is_refused(tmp_path):
    store = _store(tmp_path)
    issue_command(store.root, "exclude", "linear")
    issue_command(store.root, "exclude", "knn")
    with pytest.raises(ConfigError, match="no family"):
        issue_command(store.root, "exclude", "random_forest")


def test_a_finished_run_or_no_run_is_refused(tmp_path):
    finished = _store(tmp_path, status="finished")
    with pytest.raises(RunError, match="not running"):
        issue_command(finished.root, "pause", None)
    finishing = _store(tmp_path / "b")
    finishing.audit.append("ensemble_selected", members=[])
    with pytest.raises(RunError, match="search of run .* is over"):
        issue_command(finishing.root, "pause", None)
    finishing.audit.append("resumed")  # a resumed run searches again
    assert issue_command(finishing.root, "pause", None)["command"] == "pause"
    with pytest.raises(RunError, match="not a Daedalus run"):
        issue_command(tmp_path / "nothing", "pause", None)


def test_cli_bad_command_is_one_line_exit_2(tmp_path):
    store = _store(tmp_path)
    result = run_cli("steer", store.root, "add-time", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "positive" in result.stderr
    result = run_cli("steer", store.root, "exclude", "knn")
    assert result.returncode == 0 and "recorded as audit record" in result.stdout


# -- real builds, steered from outside -----------------------------------------------------------------------
def _wait_for(path: Path, predicate, timeout: float = 90.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
            if predicate(records):
                return records
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting on {path}")


def _start_build(csv: Path, run: Path, *args: str):
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("daedalus")
    return subprocess.Popen([str(exe), "build", str(csv), "--target", "label", "--run", str(run), "--quiet",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_steering_a_real_build(small_binary_csv, tmp_path, workers):
    """With two trials at once too: a trial in flight when a command lands finishes, but nothing new starts
    while paused, and the excluded family is never proposed again."""
    run = tmp_path / "r"
    # (two at once, the loop proposes 2 x 2 trials ahead of the results it tells: more trials, so that some are
    # left to propose when the pause lands)
    trials = "4" if workers == 1 else "10"
    proc = _start_build(small_binary_csv, run, "--trials", trials, "--families", "linear,hist_gb,knn",
                        "--no-explain", "--threads", "1", "--workers", str(workers))
    audit = run / "audit.jsonl"
    _wait_for(audit, lambda rs: any(r["event"] == "trial_result" for r in rs))
    issue_command(run, "pause", None)  # what 'daedalus steer RUN pause' does, without its start-up time
    _wait_for(audit, lambda rs: any(r["event"] == "steer_applied" for r in rs))  # the search now waits
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"family": "knn", "n_neighbors": 9, "weights": "uniform", "p": 2}))
    result = run_cli("steer", run, "exclude", "hist_gb")  # through the command, as from another terminal
    assert result.returncode == 0, result.stderr
    issue_command(run, "enqueue", str(config))  # the same, in-process (a busy machine starts commands slowly)
    issue_command(run, "resume", None)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert verify(audit).ok
    resumed_at = next(r["seq"] for r in records if r["event"] == "steer_applied" and r["command"] == "resume")
    after = [r for r in records if r["seq"] > resumed_at]
    first = next(r for r in after if r["event"] == "trial_proposed")
    assert first["designer"] == "steering" and first["config"] == {"n_neighbors": 9, "weights": "uniform", "p": 2}
    pruned = {r["trial"] for r in after if r["event"] == "trial_pruned"}  # proposed, then pruned: never run
    assert not [r for r in after if r["event"] == "trial_proposed" and r["family"] == "hist_gb"
                and r["trial"] not in pruned]
    if workers == 1:  # (with two at once, a hist_gb trial started before the pause may end after it)
        assert not [r for r in after if r["event"] == "trial_result" and r["family"] == "hist_gb"]
    assert [r["workers"] for r in records if r["event"] == "parallelism"] == [workers]
    paused_at = next(r["seq"] for r in records if r["event"] == "steer_applied" and r["command"] == "pause")
    assert not [r for r in records if paused_at < r["seq"] < resumed_at and r["event"] == "trial_proposed"]
    # The audit log holds every event the issue lists for a build (approvals: tests/test_oversight_gate.py).
    events = {r["event"] for r in records}
    assert {"data_checks", "trial_proposed", "trial_result", "ensemble_selected", "steer", "steer_applied"} <= events
    assert events & {"refit", "final_model"}
    assert all(r["designer"] and r["reason"] for r in records if r["event"] == "trial_proposed")


@pytest.mark.slow
def test_add_time_lets_a_build_search_past_its_original_budget(small_binary_csv, tmp_path):
    run = tmp_path / "r"
    budget = 12  # seconds; the search is held past it, so every trial must run on the 15 s added
    started = time.time()  # before the build's clock starts
    proc = _start_build(small_binary_csv, run, "--time", str(budget), "--families", "linear", "--no-explain")
    audit = run / "audit.jsonl"
    _wait_for(audit, lambda rs: bool(rs))  # the run exists; the commands apply before its first trial
    issue_command(run, "pause", None)  # in-process: a busy machine takes seconds to start the command
    issue_command(run, "add-time", "15")
    time.sleep(max(0.0, started + budget + 1 - time.time()))  # hold the search past its original budget
    issue_command(run, "resume", None)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["effect"] for r in records if r["event"] == "steer_applied"][1] == f"the budget is now {budget + 15}.0 s"
    # A trial may start before the pause lands (the first runs as soon as the run exists, in a worker forked
    # while the pool warms); every trial after the pause was lifted ran on the added time.
    resumed = [r["time"] for r in records if r["event"] == "steer_applied" and r.get("command") == "resume"]
    results = [r for r in records if r["event"] == "trial_result" and r["status"] == "ok"
               and r["time"] > (resumed[0] if resumed else started)]
    assert results and all(r["time"] - started > budget for r in results)
    assert (run / "model" / "model.json").exists()


def test_a_steered_trial_interrupted_by_a_kill_runs_again_as_steered(tmp_path):
    from daedalus.designers.optuna_queue import requeue_interrupted

    store = _store(tmp_path)
    steering, designer, _ = _steering(store)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"family": "knn", "n_neighbors": 5}))
    issue_command(store.root, "enqueue", str(config))
    killed = next_proposal(steering)  # the build is killed while this trial runs
    assert killed.designer == "steering"
    requeue_interrupted(designer.study)
    again = next_proposal(_wrap(store, designer, BudgetClock(60.0)))
    assert again.designer == "steering" and again.candidate["n_neighbors"] == 5 and again.number != killed.number


# -- image runs: pause, resume and add-time steer an architecture search; family commands are refused ----------
def _image_store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path / "img", {"status": "running", "kind": "image", "space": "cnn", "task": "image",
                                                  "options": {}})


@pytest.mark.parametrize("action,value", [("exclude", "cnn"), ("enqueue", "cfg.json")])
def test_an_image_run_refuses_family_commands(tmp_path, action, value):
    store = _image_store(tmp_path)
    with pytest.raises(ConfigError, match="chooses among model families, and this image run"):
        issue_command(store.root, action, value)
    assert not _events(store, "steer")


def test_cli_exclude_on_an_image_run_is_one_line_exit_2(tmp_path):
    store = _image_store(tmp_path)
    result = run_cli("steer", store.root, "exclude", "cnn")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "image run" in result.stderr


def test_pause_resume_and_add_time_steer_an_architecture_search(tmp_path):
    from daedalus.designers.nas import make_designer
    from daedalus.spaces.nas.nb201 import NB201Space

    store = _image_store(tmp_path)
    clock = BudgetClock(30.0)
    steered = SteeredDesigner(make_designer("random", NB201Space(), seed=0), store, clock, Reporter())
    issue_command(store.root, "add-time", "10")
    issue_command(store.root, "pause", None)
    assert steered.ask() is None and clock.seconds == pytest.approx(40.0)
    threading.Timer(1.0, issue_command, args=(store.root, "resume", None)).start()
    t0 = time.monotonic()
    proposal = next_proposal(steered)
    assert time.monotonic() - t0 >= 0.9 and proposal.family == "nb201"
    steered.tell(proposal, Result("ok", 70.0))
    store.audit.append("steer", command="exclude", family="cnn")  # as if it slipped past 'steer': not applied
    assert steered.ask() is not None
    last = _events(store, "steer_applied")[-1]
    assert last["command"] == "exclude" and last["applied"] is False and "no model families" in last["effect"]


def test_the_audit_logs_incremental_reader(tmp_path):
    import shutil

    from daedalus.store.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    assert log.records_after(-1) == []
    for event in ("one", "two"):
        log.append(event)
    assert [r["event"] for r in log.records_after(-1)] == ["one", "two"]
    log.append("three")
    assert [r["event"] for r in log.records_after(1)] == ["three"]  # read on from where the last call ended
    with open(log.path, "ab") as f:
        f.write(b'{"seq": 3, "event": "fo')  # a line still being written: left for the next call
    assert log.records_after(2) == []
    assert [r["seq"] for r in log.records_after(0)] == [1, 2]  # any seq: from the start
    other = AuditLog(tmp_path / "other.jsonl")
    for event in ("a-much-longer-event-name", "x", "y", "z"):
        other.append(event)
    shutil.copy(other.path, log.path)  # the log replaced under the reader
    assert [r["event"] for r in log.records_after(2)] == ["z"]  # read again from the start, not mid-line
    assert log.records_after(3) == []
