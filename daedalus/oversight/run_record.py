"""What a report shows, read from a run directory without changing it.

The audit log is read as a plain file (opening it through ``AuditLog`` would trim a torn last line, and a
report must not change the run it describes) and its hash chain is verified. The oversight files written by
other commands (``explanations.json``, ``fairness.json``, ``pareto.json``) are optional: a missing one is
``None``, an unreadable one is named in ``problems`` so the report can say so instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daedalus.errors import RunError
from daedalus.evaluation.metrics import METRICS
from daedalus.oversight.fairness import FAIRNESS_RECORD, PARETO_RECORD
from daedalus.store.audit import VerifyResult, verify
from daedalus.store.layout import json_file

AUDIT_FILE = "audit.jsonl"


@dataclass(frozen=True)
class TrialEvent:
    """One finished trial as the audit log recorded it."""

    trial: int
    seconds: float  # since the run was created
    score: float | None  # None for a failure
    status: str
    family: str
    designer: str


@dataclass
class RunRecord:
    root: Path
    info: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    audit_check: VerifyResult | None  # None when the run has no audit log
    checks: dict[str, Any] | None
    explanations: dict[str, Any] | None
    fairness: dict[str, Any] | None
    pareto: dict[str, Any] | None
    problems: dict[str, str] = field(default_factory=dict)  # file name -> why it could not be read

    @property
    def is_image(self) -> bool:
        return self.info.get("kind") == "image"

    @property
    def metric(self) -> str:
        return str(self.info.get("metric") or next((r["metric"] for r in self.leaderboard if r.get("metric")), "score"))

    @property
    def greater_is_better(self) -> bool:
        metric = METRICS.get(self.metric)
        return metric.greater_is_better if metric is not None else True

    @property
    def started(self) -> float:
        """Wall-clock time the run was created (the origin of the time axis)."""
        created = self.info.get("created")
        if isinstance(created, (int, float)):
            return float(created)
        return float(self.audit[0]["time"]) if self.audit else 0.0

    def trial_events(self) -> list[TrialEvent]:
        """Finished trials in the order they were recorded: results and failures, with their designer."""
        designers = {r["trial"]: str(r.get("designer", "")) for r in self.audit
                     if r.get("event") == "trial_proposed" and "trial" in r}
        out = []
        for r in self.audit:
            if r.get("event") not in ("trial_result", "trial_failed") or not isinstance(r.get("time"), (int, float)):
                continue
            ok = r.get("status", "ok") == "ok" and isinstance(r.get("score"), (int, float))
            out.append(TrialEvent(trial=int(r.get("trial", -1)), seconds=float(r["time"]) - self.started,
                                  score=float(r["score"]) if ok else None, status=str(r.get("status", "ok")),
                                  family=str(r.get("family", "?")),
                                  designer=str(r.get("designer") or designers.get(r.get("trial"), ""))))
        return out

    def final_event(self) -> tuple[float, float, str] | None:
        """(seconds, score, label) of the model the run hands back: the ensemble or the final network."""
        for r in reversed(self.audit):
            if r.get("event") == "ensemble_selected" and isinstance(r.get("score"), (int, float)):
                return float(r["time"]) - self.started, float(r["score"]), "ensemble"
            if r.get("event") == "final_model_saved" and isinstance(r.get("score"), (int, float)):
                return float(r["time"]) - self.started, float(r["score"]), "final network"
        return None


def _read_json(path: Path, problems: dict[str, str]) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems[path.name] = f"could not be read ({type(exc).__name__}: {exc})"
        return None


def _read_audit(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the verification names the bad line; the plots use the readable records
        if isinstance(record, dict):
            records.append(record)
    return records


def _optional_object(path: Path, problems: dict[str, str]) -> dict[str, Any] | None:
    obj = _read_json(path, problems)
    if obj is not None and not isinstance(obj, dict):
        problems[path.name] = f"holds a {type(obj).__name__} where a JSON object was expected"
        return None
    return obj


def load_run(run_dir: Path) -> RunRecord:
    """Everything a report needs from ``run_dir``; raises RunError when it is not a run."""
    root = Path(run_dir)
    if not (root / "run.json").exists():
        raise RunError(f"'{root}' is not a Daedalus run directory (no run.json); "
                       "pass the directory that 'daedalus build' created")
    problems: dict[str, str] = {}
    info = _read_json(root / "run.json", problems)
    if not isinstance(info, dict):
        raise RunError(f"'{root / 'run.json'}' {problems.get('run.json', 'is not a JSON object')}; "
                       "the run directory is damaged")
    board = _read_json(root / "leaderboard.json", problems)
    audit_path = root / AUDIT_FILE
    has_audit = audit_path.exists()
    return RunRecord(
        root=root, info=info,
        leaderboard=[r for r in board if isinstance(r, dict)] if isinstance(board, list) else [],
        audit=_read_audit(audit_path) if has_audit else [],
        audit_check=verify(audit_path) if has_audit else None,
        checks=_optional_object(root / "checks.json", problems),
        explanations=_optional_object(root / "explanations.json", problems),
        fairness=_optional_object(root / json_file(FAIRNESS_RECORD), problems),
        pareto=_optional_object(root / json_file(PARETO_RECORD), problems),
        problems=problems)
