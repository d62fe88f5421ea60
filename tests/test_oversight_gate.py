"""The human approval gate: policies, gates measured on a real build's model, decisions in the audit log, and
'daedalus predict' refusing an unapproved model."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daedalus.errors import ConfigError, RunError
from daedalus.oversight.approval import approval_state, approve, authorize_use, reject
from daedalus.oversight.policy import parse_policy
from daedalus.store.run import RunStore
from tests.conftest import run_cli

RUN_POLICY = """intended_use = "Tests of the approval gate"
[gates]
min_metric = 0.5
reviewers = 2
"""


# -- policy files (no build needed) --------------------------------------------------------------------------
def test_a_policy_parses():
    policy = parse_policy('intended_use = "x"\n[gates]\nmin_metric = 0.8\nmax_fairness_gap = 0.1\n'
                          'max_latency_ms = 5\nmax_model_mb = 20\nreviewers = 3\nmetric = "roc_auc"\n', "p")
    assert policy.gates() == {"min_metric": 0.8, "max_fairness_gap": 0.1, "max_latency_ms": 5.0,
                              "max_model_mb": 20.0, "reviewers": 3, "metric": "roc_auc"}
    assert policy.intended_use == "x" and len(policy.sha256 or "") == 64
    assert parse_policy("", "empty").reviewers == 1  # a human approval is always needed


@pytest.mark.parametrize("text,fragment", [
    ("[gates]\nmin_metrc = 0.8\n", "unknown key 'min_metrc' in [gates]"),
    ("[gate]\nmin_metric = 0.8\n", "unknown key 'gate' in top level"),
    ('[gates]\nmin_metric = "high"\n', "min_metric must be a non-negative number"),
    ("[gates]\nmax_latency_ms = -1\n", "max_latency_ms must be a non-negative number"),
    ("[gates]\nmax_model_mb = true\n", "max_model_mb must be a non-negative number"),
    ("[gates]\nreviewers = 0\n", "reviewers must be a whole number of at least 1"),
    ("[gates]\nreviewers = 1.5\n", "reviewers must be a whole number"),
    ('[gates]\nmetric = "auc_roc"\n', "metric must be one of"),
    ("intended_use = 3\n", "intended_use must be a string"),
    ("gates = 3\n", "'gates' must be a table"),
    ("[gates\n", "not valid TOML"),
])
def test_bad_policies_are_refused_in_one_line(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_policy(text, "'p.toml'")
    assert fragment in str(info.value) and "\n" not in str(info.value)


# -- real builds -----------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _reviewer_keys(reviewers):
    """Decisions are signed: the reviewers these tests name have keys in the session's data directory."""
@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    n = 240
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-(2 * x1 - x2))), "yes", "no")
    path = tmp_path_factory.mktemp("data") / "gate.csv"
    pd.DataFrame({"x1": x1, "x2": x2, "label": y}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(RUN_POLICY)
    return path


@pytest.fixture(scope="module")
def policy_run(data_csv, policy_file, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "with-policy"
    # --no-explain: no gate reads the explanations (the model card is written all the same)
    result = run_cli("build", data_csv, "--target", "label", "--trials", "2", "--families", "linear",
                     "--run", run, "--quiet", "--policy", policy_file, "--no-explain")
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def plain_run(planted_run: Path) -> Path:
    """A finished build without a policy: the session's shared planted_run (conftest.py), copied by each test."""
    return planted_run


def _copy(run: Path, tmp_path: Path) -> Path:
    """Each test decides on its own copy of the run, so that decisions do not leak between tests."""
    return Path(shutil.copytree(run, tmp_path / "run"))


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]


def _state(run: Path):
    return approval_state(RunStore.open(run))



@pytest.mark.slow
def test_build_attaches_the_policy_and_audits_its_hash(policy_run, policy_file):
    assert (policy_run / "policy.toml").read_text() == policy_file.read_text()
    attached = [r for r in _records(policy_run) if r["event"] == "policy_attached"]
    assert len(attached) == 1
    assert attached[0]["sha256"] == hashlib.sha256(policy_file.read_bytes()).hexdigest()
    assert attached[0]["gates"] == {"min_metric": 0.5, "reviewers": 2}
    assert attached[0]["intended_use"] == "Tests of the approval gate"


@pytest.mark.slow
def test_a_bad_policy_is_refused_before_the_run_exists(data_csv, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gates]\nreviewer = 2\n")
    result = run_cli("build", data_csv, "--target", "label", "--trials", "1", "--run", tmp_path / "r",
                     "--policy", bad)
    assert result.returncode == 2 and "unknown key 'reviewer'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


FAIRNESS = {"differences": {"demographic_parity_difference": 0.21, "equalized_odds_difference": 0.12}}


@pytest.mark.slow
@pytest.mark.parametrize("gates,fairness,gate,fragment", [
    ("min_metric = 0.9999", None, "min_metric", "below the required 0.9999"),
    ("max_latency_ms = 0.000001", None, "max_latency_ms", "above the limit of 1e-06"),
    ("max_model_mb = 0.000001", None, "max_model_mb", "above the limit of 1e-06"),
    ("max_fairness_gap = 0.05", FAIRNESS, "max_fairness_gap", "build with --sensitive"),  # the file is no evidence
    ("max_fairness_gap = 0.05", None, "max_fairness_gap", "build with --sensitive"),
    ('metric = "accuracy"\nmin_metric = 0.5', None, "metric", "scored on roc_auc"),
    ("max_metric = 0.99", None, "max_metric", "roc_auc is higher-is-better"),
], ids=["min_metric", "latency", "model_mb", "fairness_gap", "fairness_unmeasured", "metric_name", "max_metric"])
def test_each_unmet_gate_refuses_the_approval(policy_run, tmp_path, gates, fairness, gate, fragment):
    run = _copy(policy_run, tmp_path)
    if fairness is not None:
        (run / "fairness.json").write_text(json.dumps(fairness))
    passed, results, state = approve(run, "alice", "release 1", parse_policy(f"[gates]\n{gates}\n", "'strict'"))
    assert not passed and not state.approved
    failed = [r for r in results if not r.passed]
    assert [r.gate for r in failed] == [gate] and fragment in failed[0].message, failed
    assert failed[0].required is not None and failed[0].policy == "'strict'"
    last = _records(run)[-1]
    assert last["event"] == "approval" and last["decision"] == "refused" and last["by"] == "alice"
    assert any(g["gate"] == gate and not g["passed"] for g in last["gates"])


@pytest.mark.slow
def test_met_gates_approve_and_distinct_reviewers_are_counted(policy_run, tmp_path):
    run = _copy(policy_run, tmp_path)
    lenient = parse_policy("[gates]\nmin_metric = 0.6\nmax_latency_ms = 60000\nmax_model_mb = 100\n", "'lenient'")
    passed, results, state = approve(run, "alice", "meets the bar", lenient)
    assert passed and all(r.passed for r in results)
    assert {r.gate for r in results} == {"min_metric", "max_latency_ms", "max_model_mb"}
    assert not state.approved and state.required == 2  # the run's policy asks for two reviewers
    _, _, state = approve(run, "alice", "still fine")  # the same reviewer twice counts once
    assert not state.approved and state.approvers == ("alice",)
    with pytest.raises(RunError, match="not approved"):
        authorize_use(run, unapproved=False, data="rows.csv")
    _, _, state = approve(run, "bob", "agree")
    assert state.approved and state.approvers == ("alice", "bob")
    assert authorize_use(run, unapproved=False, data="rows.csv") is None


@pytest.mark.slow
def test_a_policy_asking_for_more_reviewers_at_approval_raises_the_count(plain_run, tmp_path):
    run = _copy(plain_run, tmp_path)
    _, _, state = approve(run, "alice", "ok", parse_policy("[gates]\nreviewers = 3\n", "'deploy'"))
    assert not state.approved and state.required == 3


@pytest.mark.slow
def test_a_rejection_cancels_the_approvals_before_it(policy_run, tmp_path):
    run = _copy(policy_run, tmp_path)
    approve(run, "alice", "ok")
    approve(run, "bob", "ok")
    assert _state(run).approved
    state = reject(run, "carol", "bias found in review")
    assert not state.approved and "rejected by carol" in state.summary
    approve(run, "alice", "fixed upstream")  # approvals after the rejection count again
    _, _, state = approve(run, "dave", "ok")
    assert state.approved and state.approvers == ("alice", "dave")


@pytest.mark.slow
def test_a_changed_model_needs_approving_again(policy_run, tmp_path):
    run = _copy(policy_run, tmp_path)
    approve(run, "alice", "ok")
    approve(run, "bob", "ok")
    (run / "model" / "extra.bin").write_bytes(b"\0")  # e.g. a resumed build wrote another model
    assert not _state(run).approved


@pytest.mark.slow
def test_a_forged_decision_breaks_the_chain_and_counts_for_nothing(policy_run, tmp_path):
    run = _copy(policy_run, tmp_path)
    approve(run, "alice", "ok")
    approve(run, "bob", "no", parse_policy("[gates]\nmin_metric = 0.9999\n", "'strict'"))  # refused
    lines = (run / "audit.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    record["decision"] = "approved"  # a forged approval
    lines[-1] = json.dumps(record, sort_keys=True)
    (run / "audit.jsonl").write_text("\n".join(lines) + "\n")
    state = _state(run)
    assert not state.approved and "fails verification" in state.summary
    with pytest.raises(RunError, match="fails verification"):
        approve(run, "erin", "ok")


@pytest.mark.slow
def test_an_edited_policy_file_is_refused(policy_run, tmp_path):
    run = _copy(policy_run, tmp_path)
    (run / "policy.toml").write_text("[gates]\nreviewers = 1\n")  # someone lowers the bar after the build
    with pytest.raises(RunError, match="not the file audited"):
        approve(run, "alice", "ok")
    with pytest.raises(RunError, match="not the file audited"):
        authorize_use(run, unapproved=False, data="rows.csv")


@pytest.mark.slow
def test_a_run_without_a_policy_needs_one_approval(plain_run, tmp_path):
    run = _copy(plain_run, tmp_path)
    state = _state(run)
    assert not state.approved and state.required == 1
    passed, results, state = approve(run, "alice", "reviewed the model card")
    assert passed and results == [] and state.approved


@pytest.mark.slow
def test_decisions_need_a_name_and_a_reason(plain_run, tmp_path):
    run = _copy(plain_run, tmp_path)
    with pytest.raises(ConfigError, match="--by NAME --reason TEXT"):
        approve(run, " ", "ok")
    with pytest.raises(ConfigError, match="--by NAME --reason TEXT"):
        reject(run, "alice", "")


# -- through the command line ----------------------------------------------------------------------------------
def _rows(data_csv: Path, tmp_path: Path) -> Path:
    rows = tmp_path / "rows.csv"
    pd.read_csv(data_csv).drop(columns=["label"]).head(5).to_csv(rows, index=False)
    return rows


@pytest.mark.slow
def test_cli_approve_refuses_naming_the_gate_and_predict_refuses_unapproved(policy_run, data_csv, tmp_path):
    run = _copy(policy_run, tmp_path)
    strict = tmp_path / "strict.toml"
    strict.write_text("[gates]\nmax_model_mb = 0.000001\n")
    result = run_cli("approve", run, "--by", "alice", "--reason", "release", "--policy", strict)
    assert result.returncode == 1, result.stderr
    assert "NOT MET  max_model_mb: the model directory holds" in result.stdout
    assert "approval refused: gate(s) not met: max_model_mb" in result.stdout
    rows = _rows(data_csv, tmp_path)
    result = run_cli("predict", run, rows)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not approved for use" in result.stderr and "--unapproved" in result.stderr
    assert result.stderr.strip().count("\n") == 0
    result = run_cli("predict", run, rows, "--unapproved")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 6  # header + 5 rows
    used = [r for r in _records(run) if r["event"] == "unapproved_use"]
    assert len(used) == 1 and used[0]["data"] == str(rows)
    assert run_cli("audit", run, "--verify").returncode == 0


@pytest.mark.slow
def test_cli_approvals_then_predict_then_reject(policy_run, data_csv, tmp_path):
    run = _copy(policy_run, tmp_path)
    rows = _rows(data_csv, tmp_path)
    first = run_cli("approve", run, "--by", "alice", "--reason", "ok")
    assert first.returncode == 0 and "not yet approved for use: 1 of 2" in first.stdout
    assert "met      min_metric" in first.stdout
    second = run_cli("approve", run, "--by", "bob", "--reason", "ok")
    assert second.returncode == 0 and "approved: approved by alice, bob" in second.stdout
    assert run_cli("predict", run, rows).returncode == 0
    assert run_cli("reject", run, "--by", "carol", "--reason", "found a leak").returncode == 0
    assert run_cli("predict", run, rows).returncode == 2
    events = [r["event"] for r in _records(run)]
    assert events[-3:] == ["approval", "approval", "rejection"] and "unapproved_use" not in events
