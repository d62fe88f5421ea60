"""The human approval gate: gates checked, decisions recorded, and the approval state read back from the log.

A decision lives only in the hash-chained audit log (``approval`` and ``rejection`` records), never in a file
of its own, so it is as tamper-evident as the rest of the run. The state is derived each time it is needed:

- approvals count only for the model they were given to: each record holds the SHA-256 of the model directory
  (:func:`model_fingerprint`), so a model rebuilt by ``resume`` needs approving again;
- a rejection of that model cancels every approval before it;
- the model is approved when reviewers with distinct names have approved it since, at least as many as the
  strictest policy involved asks for (the run's attached policy, or any policy an approval was checked
  against), and the log verifies, and the attached ``policy.toml`` is the file that was attached.

An ``approve`` that finds a gate unmet is refused (fail closed) and recorded as ``decision: "refused"``; the run
stays unapproved. The run's attached policy always applies; ``approve --policy FILE`` checks the gates of
FILE as well (for example the deployment's own rules), so no file can loosen the run's policy.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from daedalus.errors import ConfigError, RunError
from daedalus.evaluation.metrics import METRICS
from daedalus.oversight.policy import DEFAULT_POLICY, POLICY_FILE, Policy, attached_policy, load_policy
from daedalus.store.audit import verify
from daedalus.store.run import RunStore

FAIRNESS_FILE = "fairness.json"  # written by fairness auditing: {"differences": {name: value}, ...}
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
    for name in ("model", "best"):
        directory = store.model_dir(name)
        if (directory / "model.json").exists():
            return name, directory
    raise RunError(f"run '{store.root}' has no model yet; let the build finish or "
                   f"'daedalus resume {store.root}'")


def model_fingerprint(directory: Path) -> str:
    """SHA-256 over the model directory's file names and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
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
    (store.root / POLICY_FILE).write_text(Path(path).read_text(encoding="utf-8"), encoding="utf-8")
    store.audit.append("policy_attached", source=policy.source, sha256=policy.sha256, gates=policy.gates(),
                       reviewers=policy.reviewers, intended_use=policy.intended_use)
    return policy


# -- gates ---------------------------------------------------------------------------------------------------
def check_gates(store: RunStore, policy: Policy) -> list[GateResult]:
    """Every gate the policy sets, measured on the run's usable model. Reviewers are counted elsewhere."""
    _, directory = usable_model_dir(store)
    spec = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    results = []
    if policy.min_metric is not None or policy.max_metric is not None or policy.metric is not None:
        results.extend(_metric_gates(store, policy, spec.get("validation_score")))
    if policy.max_fairness_gap is not None:
        results.append(_fairness_gate(store, policy))
    if policy.max_latency_ms is not None:
        latency = measure_latency_ms(store)
        results.append(_bound("max_latency_ms", latency, policy.max_latency_ms, policy,
                              f"one row takes {latency:.3f} ms (median of {LATENCY_ROWS} on this machine)"))
    if policy.max_model_mb is not None:
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6
        results.append(_bound("max_model_mb", size, policy.max_model_mb, policy,
                              f"the model directory holds {size:.3f} MB"))
    return results


def _bound(gate: str, measured: float, limit: float, policy: Policy, what: str) -> GateResult:
    passed = measured <= limit
    return GateResult(gate, passed, round(measured, 6), limit,
                      f"{what}; at most {limit} allowed" if passed else f"{what}, above the limit of {limit}",
                      policy.source)


def _metric_gates(store: RunStore, policy: Policy, score: float | None) -> list[GateResult]:
    name = str(store.read("run").get("metric"))
    metric = METRICS.get(name)
    out = []
    if policy.metric is not None and policy.metric != name:
        out.append(GateResult("metric", False, name, policy.metric,
                              f"the run was scored on {name}, the policy's thresholds are on {policy.metric}",
                              policy.source))
        return out
    for gate, limit, higher in (("min_metric", policy.min_metric, True), ("max_metric", policy.max_metric, False)):
        if limit is None:
            continue
        if score is None:
            out.append(GateResult(gate, False, None, limit, "the model has no validation score", policy.source))
        elif metric is not None and metric.greater_is_better != higher:
            direction = "higher" if metric.greater_is_better else "lower"
            fix = "max_metric" if gate == "min_metric" else "min_metric"
            out.append(GateResult(gate, False, score, limit,
                                  f"{name} is {direction}-is-better, so {gate} cannot bound it; set {fix}",
                                  policy.source))
        else:
            passed = score >= limit if higher else score <= limit
            word = ("at least" if higher else "at most") if passed else ("below" if higher else "above")
            out.append(GateResult(gate, passed, score, limit,
                                  f"validation {name} {score:.5f} is {word} the required {limit}", policy.source))
    return out


def _fairness_gate(store: RunStore, policy: Policy) -> GateResult:
    limit = policy.max_fairness_gap
    path = store.root / FAIRNESS_FILE
    if not path.exists():
        return GateResult("max_fairness_gap", False, None, limit,
                          f"the run has no {FAIRNESS_FILE}: nothing was measured; build with --sensitive COLS",
                          policy.source)
    differences = json.loads(path.read_text(encoding="utf-8")).get("differences") or {}
    measured = {k: v for k, v in differences.items() if isinstance(v, (int, float))}
    if not measured or len(measured) < len(differences):  # a difference that could not be measured fails
        unmeasured = sorted(set(differences) - set(measured)) or ["any"]
        return GateResult("max_fairness_gap", False, differences, limit,
                          f"{FAIRNESS_FILE} has no measured value for {', '.join(unmeasured)}", policy.source)
    worst = max(measured, key=lambda k: abs(measured[k]))
    assert limit is not None
    return _bound("max_fairness_gap", abs(measured[worst]), limit, policy, f"the largest gap, {worst}, is "
                  f"{abs(measured[worst]):.4f}")


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


# -- decisions -----------------------------------------------------------------------------------------------
def _verified_store(run_dir: Path) -> RunStore:
    store = RunStore.open(run_dir)
    result = verify(store.audit.path)
    if not result.ok:
        raise RunError(f"the audit log of '{run_dir}' is broken at record {result.first_bad} ({result.reason}); "
                       f"no decision can be recorded on it; see 'daedalus audit {run_dir} --verify'")
    return store


def _who(by: str, reason: str) -> None:
    if not by.strip() or not reason.strip():
        raise ConfigError("a decision needs a reviewer and a reason; pass --by NAME --reason TEXT (not empty)")


def approve(run_dir: Path, by: str, reason: str, extra: Policy | None = None
            ) -> tuple[bool, list[GateResult], ApprovalState]:
    """Check every gate; record an approval if all are met, else a refusal. Returns (approved decision, gate
    results, the approval state after the decision)."""
    _who(by, reason)
    store = _verified_store(run_dir)
    policies = [run_policy(store), *([extra] if extra is not None else [])]
    source, directory = usable_model_dir(store)
    results = [r for p in policies for r in check_gates(store, p)]
    passed = all(r.passed for r in results)
    store.audit.append("approval", decision="approved" if passed else "refused", by=by, reason=reason,
                       model=model_fingerprint(directory), model_source=source,
                       required_reviewers=max(p.reviewers for p in policies),
                       policies=[{"source": p.source, "sha256": p.sha256, "gates": p.gates()} for p in policies],
                       gates=[asdict(r) for r in results], os_user=_os_user())
    return passed, results, approval_state(store)


def reject(run_dir: Path, by: str, reason: str) -> ApprovalState:
    """Record a rejection: it cancels the model's approvals so far (allowed even on a broken log: it only
    makes things stricter)."""
    _who(by, reason)
    store = RunStore.open(run_dir)
    source, directory = usable_model_dir(store)
    store.audit.append("rejection", by=by, reason=reason, model=model_fingerprint(directory), model_source=source,
                       os_user=_os_user())
    return approval_state(store)


def approval_state(store: RunStore) -> ApprovalState:
    result = verify(store.audit.path)
    if not result.ok:
        return ApprovalState(False, (), 1, f"the audit log is broken at record {result.first_bad}, so no "
                                           "approval in it can be trusted")
    required = run_policy(store).reviewers
    _, directory = usable_model_dir(store)
    model = model_fingerprint(directory)
    approvers: dict[str, None] = {}  # insertion-ordered set
    rejected_by = None
    for record in store.audit.records():
        if record.get("model") != model:
            continue
        if record.get("event") == "rejection":
            approvers.clear()
            rejected_by = record.get("by")
        elif record.get("event") == "approval" and record.get("decision") == "approved":
            approvers[str(record.get("by"))] = None
            required = max(required, int(record.get("required_reviewers", 1)))
    names = tuple(approvers)
    if len(names) >= required:
        return ApprovalState(True, names, required, f"approved by {', '.join(names)}")
    why = f"{len(names)} of {required} approval(s) for this model"
    if names:
        why += f" (by {', '.join(names)})"
    if rejected_by is not None:
        why += f"; rejected by {rejected_by}" + (" before that" if names else "")
    return ApprovalState(False, names, required, why)


class NotApproved(RunError):
    """The run's model is not approved for use, and no unapproved use was asked for."""


USES = {"predict": "pass --unapproved", "load": "pass unapproved=True"}  # each use and how to override the gate


def authorize_use(run_dir: Path, unapproved: bool, data: str, use: str = "predict") -> str | None:
    """Before a model is used (``predict``, or ``daedalus.load`` in Python): pass an approved model; refuse an
    unapproved one with :class:`NotApproved` unless ``unapproved``, in which case the use is recorded in the audit
    log (``unapproved_use``) and a warning returned."""
    store = RunStore.open(run_dir)
    state = approval_state(store)
    if state.approved:
        return None
    if not unapproved:
        raise NotApproved(f"the model of '{run_dir}' is not approved for use ({state.summary}); approve it with "
                          f"'daedalus approve {run_dir} --by NAME --reason TEXT', or {USES[use]} (recorded in the "
                          "audit log)")
    source, directory = usable_model_dir(store)
    store.audit.append("unapproved_use", use=use, data=str(data), model=model_fingerprint(directory),
                       model_source=source, state=state.summary, os_user=_os_user())
    verb = "predicting with" if use == "predict" else "loading"
    return f"warning: {verb} an unapproved model ({state.summary}); this use is recorded in the audit log"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"
