"""'daedalus.load(RUN)' goes through the approval gate, as 'daedalus predict' does; an estimator just fitted in the
process does not (that is training, not deployment).

The run is a real build killed with SIGKILL once its best-so-far model is saved (``best/``), as a user would
peek at a run in progress; one test resumes it with the real 'daedalus resume', which writes the final model.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import daedalus
from daedalus.ensembles.predictor import Predictor
from daedalus.errors import DaedalusError
from daedalus.oversight.approval import NotApproved, approve
from daedalus.store.run import RunStore
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines() if line.endswith("}")]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=240), rng.normal(size=240)
    y = np.where(rng.random(240) < 1 / (1 + np.exp(-(2 * x1 - x2))), "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "label": y})


@pytest.fixture(scope="module")
def killed_run(rows, tmp_path_factory) -> Path:
    """A real build, killed (SIGKILL) as soon as its best-so-far model is on disk."""
    base = tmp_path_factory.mktemp("gate")
    rows.to_csv(base / "rows.csv", index=False)
    run = base / "run"
    exe = Path(sys.executable).with_name("daedalus")
    proc = subprocess.Popen([str(exe), "build", str(base / "rows.csv"), "--target", "label", "--trials", "40",
                             "--families", "linear", "--run", str(run), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "audit.jsonl").exists() and any(r["event"] == "best_model_saved" for r in _records(run)):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert (run / "best" / "model.json").exists() and not (run / "model").exists()
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    """A test's own copy of the run, its Optuna storage pointed at the copy's study (for 'resume')."""
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    RunStore.open(copy).update_run(storage=f"sqlite:///{(copy / 'study.db').resolve()}")
    return copy


def test_an_unapproved_model_is_refused_naming_the_fix(killed_run, tmp_path):
    run = _copy(killed_run, tmp_path)
    with pytest.raises(NotApproved) as info:
        daedalus.load(run)
    message = str(info.value)
    assert isinstance(info.value, DaedalusError) and "\n" not in message
    assert "not approved" in message and "0 of 1 approval(s)" in message
    assert f"daedalus approve {run} --by NAME --reason TEXT" in message and "unapproved=True" in message
    assert not [r for r in _records(run) if r["event"] == "unapproved_use"]  # a refusal uses nothing


def test_unapproved_true_loads_and_is_recorded(killed_run, rows, tmp_path):
    run = _copy(killed_run, tmp_path)
    with pytest.warns(UserWarning, match="loading an unapproved model"):
        model = daedalus.load(run, unapproved=True)
    X = rows.drop(columns=["label"]).head(15)
    assert np.allclose(model.predict_proba(X), Predictor.load(run).predict_proba(X))
    used = [r for r in _records(run) if r["event"] == "unapproved_use"]
    assert len(used) == 1 and used[0]["use"] == "load" and used[0]["model_source"] == "best"
    assert run_cli("audit", run, "--verify").returncode == 0


def test_an_approved_model_loads_without_a_trace_of_unapproved_use(killed_run, rows, tmp_path, reviewers):
    run = _copy(killed_run, tmp_path)
    passed, _, state = approve(run, "alice", "reviewed the model card")
    assert passed and state.approved
    model = daedalus.load(run)
    assert set(model.predict(rows.drop(columns=["label"]).head(15))) <= {"yes", "no"}
    assert not [r for r in _records(run) if r["event"] == "unapproved_use"]


def test_a_model_changed_by_resume_needs_approving_again(killed_run, tmp_path, reviewers):
    run = _copy(killed_run, tmp_path)
    approve(run, "alice", "the best model so far will do")
    daedalus.load(run)
    result = run_cli("resume", run, "--trials", "2", "--quiet")  # writes the final model/, a different model
    assert result.returncode == 0, result.stderr
    assert (run / "model" / "model.json").exists()
    with pytest.raises(NotApproved, match="0 of 1 approval"):
        daedalus.load(run)
    approve(run, "alice", "the final model")
    assert isinstance(daedalus.load(run), daedalus.AutoClassifier)


def test_an_estimator_fitted_in_process_is_not_gated(rows, tmp_path):
    X, y = rows.drop(columns=["label"]), rows["label"]
    model = daedalus.AutoClassifier(n_trials=1, families=("linear",), explain=False, run_dir=str(tmp_path / "r"))
    assert set(model.fit(X, y).predict(X.head(5))) <= {"yes", "no"}  # no approval asked: training, not use
    assert not [r for r in _records(tmp_path / "r") if r["event"] == "unapproved_use"]
