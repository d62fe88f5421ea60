"""Findings 2 and 3 of issue 10, as an attacker who can write the run directory (but holds no reviewer's key and
cannot write the data directory) tries them, through the command line on a real small build: each tampering is
refused; a valid signed approval is accepted."""

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daedalus.oversight.approval import recomputed_score
from daedalus.store import signing
from daedalus.store.audit import GENESIS, AuditLog, record_hash
from daedalus.store.run import RunStore
from tests.conftest import reviewer_key, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trust_data(tmp_path_factory) -> Path:
    """A noisy binary task (a real ROC AUC well under 0.95) with a sensitive column 'group'."""
    rng = np.random.default_rng(3)
    n = 300
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    group = rng.choice(["a", "b"], size=n)
    y = np.where(x1 + 0.5 * (group == "a") + 1.2 * rng.normal(size=n) > 0, "yes", "no")
    path = tmp_path_factory.mktemp("trust") / "trust.csv"
    pd.DataFrame({"x1": x1, "x2": x2, "group": group, "label": y}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def built(trust_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "trust"
    result = run_cli("build", trust_data, "--target", "label", "--trials", "3", "--families", "linear",
                     "--threads", "1", "--no-explain", "--quiet", "--sensitive", "group", "--run", run)
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture
def run(built, tmp_path, reviewers) -> Path:
    return Path(shutil.copytree(built, tmp_path / "run"))


@pytest.fixture
def rows(trust_data, tmp_path) -> Path:
    path = tmp_path / "rows.csv"
    pd.read_csv(trust_data).drop(columns=["label"]).head(4).to_csv(path, index=False)
    return path


def _one_line_refusal(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]


# -- finding 3: the approval covers everything a prediction depends on ----------------------------------------
def test_reversing_the_classes_of_an_approved_run_makes_predict_refuse(run, rows):
    assert run_cli("approve", run, "--by", "alice", "--reason", "reviewed").returncode == 0
    before = run_cli("predict", run, rows)
    assert before.returncode == 0, before.stderr
    schema = json.loads((run / "schema.json").read_text())
    schema["classes"] = schema["classes"][::-1]  # every label flipped
    (run / "schema.json").write_text(json.dumps(schema))
    _one_line_refusal(run_cli("predict", run, rows), "not approved", "0 of 1 approval(s)")


def test_an_inflated_validation_score_does_not_pass_min_metric(run, tmp_path):
    real, _ = recomputed_score(RunStore.open(run))
    assert real is not None and real < 0.95
    spec = json.loads((run / "model" / "model.json").read_text())
    spec["validation_score"] = 0.99  # the run's account of itself
    (run / "model" / "model.json").write_text(json.dumps(spec))
    policy = tmp_path / "deploy.toml"
    policy.write_text("[gates]\nmin_metric = 0.95\n")
    result = run_cli("approve", run, "--by", "alice", "--reason", "looks great", "--policy", policy)
    _one_line_refusal(result, "model.json' does not match the SHA-256 recorded")  # store/integrity.py
    # The worst case: the edited file's hash recorded as if the run had written it. The gate still recomputes.
    RunStore.open(run).record([run / "model" / "model.json"])
    result = run_cli("approve", run, "--by", "alice", "--reason", "looks great", "--policy", policy)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"NOT MET  min_metric: validation roc_auc {real:.5f}" in result.stdout
    assert "recomputed from" in result.stdout and "below the required 0.95" in result.stdout


def test_an_edited_fairness_file_does_not_pass_max_fairness_gap(run, tmp_path):
    fairness = json.loads((run / "fairness.json").read_text())
    fairness["differences"] = {k: 0.0 for k in fairness["differences"]}
    fairness["max_gap"] = 0.0
    (run / "fairness.json").write_text(json.dumps(fairness))  # the old gate read this, and passed
    policy = tmp_path / "fair.toml"
    policy.write_text("[gates]\nmax_fairness_gap = 0.001\n")
    result = run_cli("approve", run, "--by", "alice", "--reason", "fair enough", "--policy", policy)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "NOT MET  max_fairness_gap: the largest gap" in result.stdout and "recomputed from" in result.stdout


def test_explain_goes_through_the_gate(run, rows):
    _one_line_refusal(run_cli("explain", run, rows), "not approved", "--unapproved")
    assert not [r for r in _records(run) if r["event"] == "unapproved_use"]
    result = run_cli("explain", run, rows, "--unapproved", "--json")
    assert result.returncode == 0, result.stderr
    assert "warning: explaining an unapproved model" in result.stderr
    used = [r for r in _records(run) if r["event"] == "unapproved_use"]
    assert len(used) == 1 and used[0]["use"] == "explain"


# -- finding 2 (issue's 3): decisions are signed; the log is anchored --------------------------------------------
def test_a_valid_signed_approval_is_accepted(run, rows):
    made = run_cli("keys", "new", "reviewer-1")
    assert made.returncode == 0, made.stderr
    public = signing.trusted_keys()["reviewer-1"]
    assert public in made.stdout and public in run_cli("keys", "list").stdout
    assert stat.S_IMODE(os.stat(signing.key_path("reviewer-1")).st_mode) == 0o600
    _one_line_refusal(run_cli("keys", "new", "reviewer-1"), "already has a key", "never overwritten")
    assert run_cli("approve", run, "--by", "reviewer-1", "--reason", "checked").returncode == 0
    approval = _records(run)[-1]
    assert approval["public_key"] == public and approval["signature"] and approval["by"] == "reviewer-1"
    assert run_cli("predict", run, rows).returncode == 0
    verified = run_cli("audit", run, "--verify")
    assert verified.returncode == 0 and "every approval and rejection is signed" in verified.stdout


def test_approve_without_a_key_names_the_command_that_makes_one(run):
    _one_line_refusal(run_cli("approve", run, "--by", "zed", "--reason", "ok"), "daedalus keys new zed")


def test_an_approval_with_a_self_made_key_is_refused(run, rows, tmp_path):
    mallory = Ed25519PrivateKey.generate()
    key = tmp_path / "mallory.key"
    from cryptography.hazmat.primitives import serialization

    key.write_bytes(mallory.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    # through the command line: refused before anything is recorded
    _one_line_refusal(run_cli("approve", run, "--by", "alice", "--reason", "ok", "--key", key), "not trusted for "
                      "reviewer 'alice'")
    # written with daedalus' own code, anchored and chained (the worst case): signed, but not by alice's key
    AuditLog(run / "audit.jsonl").append_signed(
        "approval", lambda body: signing.sign(mallory, body), decision="approved", by="alice", reason="forged",
        model=_fingerprint(run), model_source="model", required_reviewers=1,
        public_key=signing.public_key_b64(mallory))
    _one_line_refusal(run_cli("predict", run, rows), "not approved", "not signed by a trusted key")
    verified = run_cli("audit", run, "--verify")
    assert verified.returncode == 1 and "not trusted for reviewer 'alice'" in verified.stdout


def test_an_unsigned_approval_does_not_count_and_an_unsigned_rejection_does(run, rows):
    store = RunStore.open(run)
    model = _fingerprint(run)
    store.audit.append("approval", decision="approved", by="alice", reason="no key", model=model,
                       model_source="model", required_reviewers=1)
    _one_line_refusal(run_cli("predict", run, rows), "not approved")
    assert run_cli("approve", run, "--by", "bob", "--reason", "signed").returncode == 0
    assert run_cli("predict", run, rows).returncode == 0
    store.audit.append("rejection", by="carol", reason="unsigned, still counts", model=model, model_source="model")
    _one_line_refusal(run_cli("predict", run, rows), "not approved", "rejected by carol")
    verified = run_cli("audit", run, "--verify")
    assert verified.returncode == 1
    assert "approval by 'alice' is unsigned; it does not count" in verified.stdout
    assert "rejection by 'carol' is unsigned; it still counts" in verified.stdout


def test_a_forged_approval_edited_into_the_log_is_refused(run, rows):
    assert run_cli("approve", run, "--by", "bob", "--reason", "no", "--policy",
                   _strict(run)).returncode == 1  # a refused decision, signed by bob
    records = _records(run)
    records[-1]["decision"] = "approved"  # flipped, and the chain recomputed: only the anchor knows
    prev = GENESIS
    for record in records:
        record["prev"] = prev
        record["hash"] = prev = record_hash(record)
    (run / "audit.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    _one_line_refusal(run_cli("predict", run, rows), "not approved", "fails verification")
    verified = run_cli("audit", run, "--verify")
    assert verified.returncode == 1 and "rewritten" in verified.stdout


def test_a_policy_that_lists_its_reviewers_accepts_no_other_key(run, tmp_path):
    policy = tmp_path / "pinned.toml"
    policy.write_text(f'[reviewers]\nalice = "{signing.trusted_keys()["alice"]}"\n')
    result = run_cli("approve", run, "--by", "bob", "--reason", "ok", "--policy", policy)
    assert result.returncode == 1 and "NOT MET  reviewers: the key of bob is not among" in result.stdout
    assert run_cli("approve", run, "--by", "alice", "--reason", "ok", "--policy", policy).returncode == 0


def _strict(run: Path) -> Path:
    path = run.parent / "strict.toml"
    path.write_text("[gates]\nmin_metric = 0.9999\n")
    return path


def _fingerprint(run: Path) -> str:
    from daedalus.oversight.approval import prediction_fingerprint, usable_model_dir

    store = RunStore.open(run)
    return prediction_fingerprint(store, usable_model_dir(store)[1])


def test_reviewer_key_helper_is_idempotent():
    assert reviewer_key("alice") == reviewer_key("alice")


@pytest.fixture(scope="module")
def pinned_run(trust_data, tmp_path_factory) -> Path:
    """A run whose policy lists its one trusted reviewer's key: alice."""
    root = tmp_path_factory.mktemp("pinned")
    policy = root / "pinned.toml"
    policy.write_text(f'[reviewers]\nalice = "{signing.public_key_b64(_private(reviewer_key("alice")))}"\n')
    result = run_cli("build", trust_data, "--target", "label", "--trials", "2", "--families", "linear",
                     "--threads", "1", "--no-explain", "--quiet", "--policy", policy, "--run", root / "run")
    assert result.returncode == 0, result.stderr
    return root / "run"


def _private(path: Path) -> Ed25519PrivateKey:
    return signing.load_private_key(path)


def test_a_run_policy_that_lists_its_reviewers_trusts_no_other_key(pinned_run, tmp_path, rows, reviewers):
    run = Path(shutil.copytree(pinned_run, tmp_path / "pinned"))
    # bob's key is trusted on this machine, but not by the run's policy
    _one_line_refusal(run_cli("approve", run, "--by", "bob", "--reason", "ok"),
                      "not trusted for reviewer 'bob' in the run policy's [reviewers]")
    bob = _private(reviewers["bob"])
    AuditLog(run / "audit.jsonl").append_signed(
        "approval", lambda body: signing.sign(bob, body), decision="approved", by="bob", reason="around the CLI",
        model=_fingerprint(run), model_source="model", required_reviewers=1, public_key=signing.public_key_b64(bob))
    _one_line_refusal(run_cli("predict", run, rows), "not approved")
    assert run_cli("approve", run, "--by", "alice", "--reason", "ok").returncode == 0
    assert run_cli("predict", run, rows).returncode == 0


def test_a_rejection_signed_by_an_untrusted_key_is_recorded_and_counts(run, rows, tmp_path):
    assert run_cli("approve", run, "--by", "alice", "--reason", "ok").returncode == 0
    outsider = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    key = tmp_path / "outsider.key"
    key.write_bytes(outsider.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    assert run_cli("reject", run, "--by", "outsider", "--reason", "saw a leak", "--key", key).returncode == 0
    _one_line_refusal(run_cli("predict", run, rows), "not approved", "rejected by outsider")
    verified = run_cli("audit", run, "--verify")
    assert verified.returncode == 1 and "not trusted for reviewer 'outsider'; it still counts" in verified.stdout


def test_keys_new_refuses_a_name_that_cannot_name_a_file():
    _one_line_refusal(run_cli("keys", "new", "../alice"), "cannot name a key")
