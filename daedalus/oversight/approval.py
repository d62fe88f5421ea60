"""The human approval gate: gates checked, decisions recorded, and the approval state read back from the log.

A decision lives only in the hash-chained audit log (``approval`` and ``rejection`` records), never in a file
of its own, so it is as tamper-evident as the rest of the run. The state is derived each time it is needed:

- approvals count only for the model they were given to: each record holds the SHA-256 of everything a
  prediction depends on (:func:`prediction_fingerprint`: the model directory, whose fitted pipelines hold the
  preprocessing, or an image run's network and weights; and ``schema.json``, whose classes, columns and kinds
  turn rows into features and codes into labels), so a model rebuilt by ``resume``, or a schema edited after
  the approval, needs approving again; the run's ``policy.toml`` is covered by its audited hash;
- a decision is signed with the reviewer's Ed25519 key (``store/signing.py``) over the record's body; an
  approval counts only when its signature verifies with a key trusted for its reviewer's name: the keys listed
  in the run policy's ``[reviewers]`` table when it has one, else the keys trusted on this machine
  (``daedalus keys list``). An unsigned, badly signed or untrusted approval is reported and ignored;
- a rejection of that model cancels every approval before it, signed or not: a rejection only makes things
  stricter, so an unsigned or untrusted one is reported by ``audit --verify`` but still counts;
- the model is approved when reviewers with distinct names have approved it since, at least as many as the
  strictest policy involved asks for (the run's attached policy, or any policy an approval was checked
  against), and the log verifies, and the attached ``policy.toml`` is the file that was attached.

An ``approve`` that finds a gate unmet is refused (fail closed) and recorded as ``decision: "refused"``; the run
stays unapproved. The run's attached policy always applies; ``approve --policy FILE`` checks the gates of
FILE as well (for example the deployment's own rules), so no file can loosen the run's policy; when FILE lists
``[reviewers]``, the approving key must be among them.

Gates recompute their figures from primary evidence, never from a number the run wrote about itself: the
metric from the final model's out-of-fold predictions (its members' ``oof.npy``, weighted as in
``model.json``) and the labels (``train.parquet`` and ``schema.json``), or an image run's held-out predictions
(``holdout_predictions.npz``); the fairness gap from the same predictions and the sensitive columns of
``train.parquet``; latency and size are measured.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from daedalus.errors import ConfigError, RunError
from daedalus.evaluation.metrics import METRICS
from daedalus.oversight.final_predictions import FinalPredictions, final_predictions
from daedalus.oversight.policy import DEFAULT_POLICY, POLICY_FILE, Policy, attached_policy, load_policy
from daedalus.store import signing
from daedalus.store.atomic import write_text_atomic
from daedalus.store.audit import os_user, signed_body, verify
from daedalus.store.integrity import directory_files
from daedalus.store.layout import FINAL_MODEL, json_file
from daedalus.store.run import RunStore

PREDICTION_FILES = (json_file("schema"),)  # run files a prediction reads besides the model directory
DECISIONS = ("approval", "rejection")
LATENCY_ROWS = 20  # rows predicted one at a time for the latency gate (the median is kept)


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    measured: Any
    required: Any
    message: str
    policy: str  # the policy's source


@dataclass(frozen=True)
class ApprovalState:
    approved: bool
    approvers: tuple[str, ...]
    required: int
    summary: str  # one line: why the model is or is not approved


# -- the model a decision is about ---------------------------------------------------------------------------
def usable_model_dir(store: RunStore) -> tuple[str, Path]:
    """The model ``predict`` would use: the final ``model/``, else the best so far (as ``Predictor.load``)."""
    found = store.usable_model()
    if found is not None:
        return found
    raise RunError(f"run '{store.root}' has no model yet; let the build finish or "
                   f"'daedalus resume {store.root}'")


def prediction_fingerprint(store: RunStore, directory: Path) -> str:
    """SHA-256 over the names and contents of everything a prediction reads: the model directory and the run
    files in :data:`PREDICTION_FILES` (an absent one is hashed as absent, so adding one changes it too)."""
    digest = hashlib.sha256()
    # Named as under model/ whichever directory it is (best/, model.old/): the fingerprint is of the contents.
    files = [(f"{FINAL_MODEL}/{p.relative_to(directory).as_posix()}", p) for p in directory_files(directory)]
    files += [(name, store.root / name) for name in PREDICTION_FILES]
    for name, path in files:
        digest.update(name.encode() + b"\0")
        if not path.is_file():
            digest.update(b"\0absent\0")
            continue
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


# -- policies in force ---------------------------------------------------------------------------------------
def run_policy(store: RunStore) -> Policy:
    """The run's attached policy, checked against the hash audited when it was attached; else the default."""
    attached = [r for r in store.audit.records() if r.get("event") == "policy_attached"]
    policy = attached_policy(store.root)
    if not attached and policy is None:
        return DEFAULT_POLICY
    if policy is None or not attached or attached[-1].get("sha256") != policy.sha256:
        raise RunError(f"{POLICY_FILE} of run '{store.root}' is not the file audited when the policy was attached "
                       "(changed, added or removed since); restore it, or build again with --policy")
    return policy


def attach_policy(store: RunStore, path: str | Path) -> Policy:
    """Copy a policy file into the run (``build --policy``) and audit it, its hash included."""
    policy = load_policy(path)
    write_text_atomic(store.root / POLICY_FILE, Path(path).read_text(encoding="utf-8"))
    store.audit.append("policy_attached", source=policy.source, sha256=policy.sha256, gates=policy.gates(),
                       reviewers=policy.reviewers, reviewer_keys=policy.trusted_keys(),
                       intended_use=policy.intended_use)
    return policy


# -- gates ---------------------------------------------------------------------------------------------------
def check_gates(store: RunStore, policy: Policy) -> list[GateResult]:
    """Every gate the policy sets, measured on the run's usable model. Reviewers are counted elsewhere."""
    _, directory = usable_model_dir(store)
    results = []
    if policy.min_metric is not None or policy.max_metric is not None or policy.metric is not None:
        results.extend(_metric_gates(store, policy))
    if policy.max_fairness_gap is not None:
        results.append(_fairness_gate(store, policy))
    if policy.max_latency_ms is not None:
        latency = measure_latency_ms(store)
        results.append(_bound("max_latency_ms", latency, policy.max_latency_ms, policy,
                              f"one row takes {latency:.3f} ms (median of {LATENCY_ROWS} on this machine)"))
    if policy.max_model_mb is not None:
        size = sum(p.stat().st_size for p in directory_files(directory)) / 1e6
        results.append(_bound("max_model_mb", size, policy.max_model_mb, policy,
                              f"the model directory holds {size:.3f} MB"))
    return results


def _bound(gate: str, measured: float, limit: float, policy: Policy, what: str) -> GateResult:
    passed = measured <= limit
    return GateResult(gate, passed, round(measured, 6), limit,
                      f"{what}; at most {limit} allowed" if passed else f"{what}, above the limit of {limit}",
                      policy.source)


def _evidence(store: RunStore) -> FinalPredictions | None:
    """The final model's out-of-fold (image: held-out) predictions and their labels, rebuilt from the files the
    build wrote for them, never from a score it wrote about itself; each of those files must match the hash
    recorded when it was written (``store/integrity.py``), or the gate is refused in one line naming it."""
    evidence = final_predictions(store.root)  # plain arrays (no pickle): reading them runs nothing
    if evidence is None:
        return None
    if store.read("run").get("kind") == "image":
        files = [store.image_holdout_path, store.path("run")]
    else:
        files = [store.data_path, store.path("schema"), store.path("run"),
                 *(store.oof_path(trial) for trial, _ in evidence.members),
                 *directory_files(store.model_dir(evidence.source))]  # model.json: the members and weights
    store.check(files, "judge the model for approval with")
    return evidence


def recomputed_score(store: RunStore) -> tuple[float | None, str]:
    """The usable model's validation score under the run's metric, recomputed from its predictions and the
    labels, and where it comes from; (None, why) when it cannot be."""
    name = str(store.read("run").get("metric"))
    evidence = _evidence(store)
    if evidence is None or name not in METRICS:
        return None, "the run holds no out-of-fold predictions of its model to recompute the score from"
    what = "held-out images" if store.read("run").get("kind") == "image" else "out-of-fold predictions"
    return float(METRICS[name](evidence.y, evidence.pred)), f"recomputed from {len(evidence.y)} rows' {what}"


def _metric_gates(store: RunStore, policy: Policy) -> list[GateResult]:
    name = str(store.read("run").get("metric"))
    metric = METRICS.get(name)
    out = []
    if policy.metric is not None and policy.metric != name:
        out.append(GateResult("metric", False, name, policy.metric,
                              f"the run was scored on {name}, the policy's thresholds are on {policy.metric}",
                              policy.source))
        return out
    score, source = recomputed_score(store) if policy.min_metric is not None or policy.max_metric is not None \
        else (None, "")
    for gate, limit, higher in (("min_metric", policy.min_metric, True), ("max_metric", policy.max_metric, False)):
        if limit is None:
            continue
        if score is None:
            out.append(GateResult(gate, False, None, limit, source, policy.source))
        elif metric is not None and metric.greater_is_better != higher:
            direction = "higher" if metric.greater_is_better else "lower"
            fix = "max_metric" if gate == "min_metric" else "min_metric"
            out.append(GateResult(gate, False, score, limit,
                                  f"{name} is {direction}-is-better, so {gate} cannot bound it; set {fix}",
                                  policy.source))
        else:
            passed = score >= limit if higher else score <= limit
            word = ("at least" if higher else "at most") if passed else ("below" if higher else "above")
            out.append(GateResult(gate, passed, score, limit, f"validation {name} {score:.5f} ({source}) is "
                                                              f"{word} the required {limit}", policy.source))
    return out


def _fairness_gate(store: RunStore, policy: Policy) -> GateResult:
    """The largest group difference, recomputed from the final model's out-of-fold predictions and the
    sensitive columns of the training rows (``fairness.json`` is the run's own account, not evidence)."""
    from daedalus.data.schema import Schema
    from daedalus.data.sensitive import sensitive_frame
    from daedalus.oversight.fairness import ReportInput, fairness_report, parse_constraint

    limit = policy.max_fairness_gap
    assert limit is not None
    fail = GateResult("max_fairness_gap", False, None, limit, "", policy.source)
    schema = Schema.from_dict(store.read("schema")) if store.path("schema").exists() else None
    if schema is None or not schema.sensitive:
        return replace(fail, message="the run declares no sensitive column, so no gap can be measured; build "
                                     "with --sensitive COLS")
    evidence = _evidence(store)
    if evidence is None:
        return replace(fail, message="the run holds no out-of-fold predictions of its model to measure the gap on")
    groups = sensitive_frame(pd.read_parquet(store.data_path, columns=list(schema.sensitive)), schema.sensitive)
    fairness = store.read("run").get("options", {}).get("fairness")
    record = fairness_report(ReportInput(schema.task, evidence.y, evidence.pred, groups.iloc[evidence.rows],
                                         schema.classes, "recomputed for the approval gate"),
                             parse_constraint(fairness) if fairness else None)
    differences = record["differences"]
    measured = {k: v for k, v in differences.items() if isinstance(v, (int, float))}
    if not measured or len(measured) < len(differences):  # a difference that could not be measured fails
        unmeasured = sorted(set(differences) - set(measured)) or ["any"]
        return replace(fail, measured=differences, message=f"no value could be measured for {', '.join(unmeasured)}")
    worst = max(measured, key=lambda k: abs(measured[k]))
    return _bound("max_fairness_gap", abs(measured[worst]), limit, policy, f"the largest gap, {worst}, is "
                  f"{abs(measured[worst]):.4f} (recomputed from {len(evidence.y)} rows' out-of-fold predictions)")


def measure_latency_ms(store: RunStore) -> float:
    """Milliseconds to predict one row with the usable model: the median over rows drawn from the training
    data, each predicted alone (as a single request would be), after one warm-up call."""
    from daedalus.ensembles.predictor import Predictor

    predictor = Predictor.load(store.root)
    frame = pd.read_parquet(store.data_path)
    target = store.read("run")["options"]["target"]
    rows = frame.drop(columns=[target], errors="ignore").sample(min(LATENCY_ROWS, len(frame)), random_state=0)
    predictor.predict(rows.iloc[[0]])
    times = []
    for i in range(len(rows)):
        t0 = time.perf_counter()
        predictor.predict(rows.iloc[[i]])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# -- signatures ----------------------------------------------------------------------------------------------
def trusted_reviewer_keys(store: RunStore) -> dict[str, str]:
    """The keys whose signed decisions count for this run, by reviewer name: the run policy's ``[reviewers]``
    when it lists any, else the keys trusted on this machine."""
    return run_policy(store).trusted_keys() or signing.trusted_keys()


def signature_problem(record: dict[str, Any], trusted: dict[str, str]) -> str | None:
    """Why a decision record's signature does not make it the act of its reviewer; None when it does."""
    by, public, signature = record.get("by"), record.get("public_key"), record.get("signature")
    if not isinstance(public, str) or not isinstance(signature, str):
        return "unsigned"
    if not signing.signature_valid(public, signature, signed_body(record)):
        return "its signature does not verify (forged or edited)"
    if trusted.get(str(by)) != public:
        return f"signed with a key not trusted for reviewer '{by}'"
    return None


def decision_problems(store: RunStore) -> list[str]:
    """One line per approval or rejection that is unsigned, badly signed or signed by an untrusted key."""
    trusted = trusted_reviewer_keys(store)
    out = []
    for record in store.audit.records():
        if record.get("event") in DECISIONS:
            problem = signature_problem(record, trusted)
            if problem is not None:
                effect = ("it does not count" if record["event"] == "approval"
                          else "it still counts: a rejection only makes things stricter")
                out.append(f"record {record.get('seq')}: {record['event']} by {record.get('by')!r} is {problem}; "
                           f"{effect}")
    return out


def _signer(store: RunStore, by: str, key: str | Path | None, trusted_only: bool = True) -> tuple[str, Any]:
    """The reviewer's key (``--key``, else theirs in the data directory), checked as trusted for ``by`` on this
    run before anything is recorded (unless not ``trusted_only``: a rejection counts whoever signed it).
    Returns (public key, a signing function)."""
    if key is None:
        path = signing.key_path(signing.check_name(by))
        if not path.exists():
            raise ConfigError(f"no signing key for reviewer '{by}' ({path}); make one with 'daedalus keys new "
                              f"{by}', or pass --key FILE")
    else:
        path = Path(key)
    private = signing.load_private_key(path)
    public = signing.public_key_b64(private)
    if trusted_only and trusted_reviewer_keys(store).get(by) != public:
        where = "the run policy's [reviewers]" if run_policy(store).trusted_keys() else "this machine's trusted keys"
        raise ConfigError(f"the key {path} is not trusted for reviewer '{by}' in {where}; use {by}'s own key, or "
                          f"have its public key ({public}) listed there")
    return public, lambda body: signing.sign(private, body)


# -- decisions -----------------------------------------------------------------------------------------------
def _verified_store(run_dir: Path) -> RunStore:
    store = RunStore.open(run_dir)
    result = verify(store.audit.path)
    if not result.ok:
        raise RunError(f"the audit log of '{run_dir}' fails verification at record {result.first_bad} "
                       f"({result.reason}); no decision can be recorded on it; see 'daedalus audit {run_dir} "
                       "--verify'")
    return store


def _who(by: str, reason: str) -> None:
    if not by.strip() or not reason.strip():
        raise ConfigError("a decision needs a reviewer and a reason; pass --by NAME --reason TEXT (not empty)")


def approve(run_dir: Path, by: str, reason: str, extra: Policy | None = None, key: str | Path | None = None
            ) -> tuple[bool, list[GateResult], ApprovalState]:
    """Check every gate; record an approval signed with ``key`` (default: ``by``'s key in the data directory)
    if all are met, else a refusal. Returns (approved decision, gate results, the approval state after it)."""
    _who(by, reason)
    store = _verified_store(run_dir)
    public, signer = _signer(store, by, key)
    policies = [run_policy(store), *([extra] if extra is not None else [])]
    source, directory = usable_model_dir(store)
    results = [r for p in policies for r in check_gates(store, p)]
    for p in policies:  # a policy that names its reviewers' keys accepts no other key
        if p.trusted_keys() and p.trusted_keys().get(by) != public:
            results.append(GateResult("reviewers", False, by, sorted(p.trusted_keys()), f"the key of {by} is not "
                                      "among the policy's [reviewers]", p.source))
    passed = all(r.passed for r in results)
    store.audit.append_signed("approval", signer, decision="approved" if passed else "refused", by=by, reason=reason,
                       model=prediction_fingerprint(store, directory), model_source=source,
                       required_reviewers=max(p.reviewers for p in policies),
                       policies=[{"source": p.source, "sha256": p.sha256, "gates": p.gates()} for p in policies],
                       gates=[asdict(r) for r in results], os_user=os_user(), public_key=public)
    return passed, results, approval_state(store)


def reject(run_dir: Path, by: str, reason: str, key: str | Path | None = None) -> ApprovalState:
    """Record a signed rejection: it cancels the model's approvals so far (allowed even on a broken log, an
    edited policy or an untrusted key: it only makes things stricter; ``audit --verify`` reports the latter)."""
    _who(by, reason)
    store = RunStore.open(run_dir)
    public, signer = _signer(store, by, key, trusted_only=False)
    source, directory = usable_model_dir(store)
    store.audit.append_signed("rejection", signer, by=by, reason=reason, model=prediction_fingerprint(store, directory),
                       model_source=source, os_user=os_user(), public_key=public)
    return approval_state(store)


def approval_state(store: RunStore) -> ApprovalState:
    result = verify(store.audit.path)
    if not result.ok:
        return ApprovalState(False, (), 1, f"the audit log fails verification at record {result.first_bad} "
                                           f"({result.reason}), so no approval in it can be trusted")
    required = run_policy(store).reviewers
    trusted = trusted_reviewer_keys(store)
    _, directory = usable_model_dir(store)
    model = prediction_fingerprint(store, directory)
    approvers: dict[str, None] = {}  # insertion-ordered set
    ignored: list[str] = []
    rejected_by = None
    for record in store.audit.records():
        if record.get("model") != model:
            continue
        if record.get("event") == "rejection":  # counts signed or not: it only makes things stricter
            approvers.clear()
            rejected_by = record.get("by")
        elif record.get("event") == "approval" and record.get("decision") == "approved":
            required = max(required, int(record.get("required_reviewers", 1)))
            if signature_problem(record, trusted) is None:
                approvers[str(record.get("by"))] = None
            else:
                ignored.append(str(record.get("by")))
    names = tuple(approvers)
    if len(names) >= required:
        return ApprovalState(True, names, required, f"approved by {', '.join(names)}")
    why = f"{len(names)} of {required} approval(s) for this model"
    if names:
        why += f" (by {', '.join(names)})"
    if ignored:
        why += f"; approval(s) by {', '.join(ignored)} not signed by a trusted key, so not counted"
    if rejected_by is not None:
        why += f"; rejected by {rejected_by}" + (" before that" if names else "")
    return ApprovalState(False, names, required, why)


class NotApproved(RunError):
    """The run's model is not approved for use, and no unapproved use was asked for."""


# each use, how to override the gate, and the warning's verb
USES = {"predict": ("pass --unapproved", "predicting with"), "explain": ("pass --unapproved", "explaining"),
        "load": ("pass unapproved=True", "loading")}


def authorize_use(run_dir: Path, unapproved: bool, data: str, use: str = "predict") -> str | None:
    """Before a model is used (``predict``, ``explain``, or ``daedalus.load`` in Python): pass an approved model;
    refuse an unapproved one with :class:`NotApproved` unless ``unapproved``, in which case the use is recorded
    in the audit log (``unapproved_use``) and a warning returned."""
    store = RunStore.open(run_dir)
    state = approval_state(store)
    if state.approved:
        return None
    override, verb = USES[use]
    if not unapproved:
        raise NotApproved(f"the model of '{run_dir}' is not approved for use ({state.summary}); approve it with "
                          f"'daedalus approve {run_dir} --by NAME --reason TEXT', or {override} (recorded in the "
                          "audit log)")
    source, directory = usable_model_dir(store)
    store.audit.append("unapproved_use", use=use, data=str(data), model=prediction_fingerprint(store, directory),
                       model_source=source, state=state.summary, os_user=os_user())
    return f"warning: {verb} an unapproved model ({state.summary}); this use is recorded in the audit log"
