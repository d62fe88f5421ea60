"""The leaderboard: successful single models best first, the ensemble among them, failures at the end.

A finished run has ``leaderboard.json``; a run still building, or stopped by Ctrl-C or a kill, has its trials so
far in its Optuna study, which ``partial_leaderboard`` reads without writing and ranks the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daedalus.data.schema import Task
from daedalus.errors import RunError
from daedalus.evaluation.metrics import Metric, get_metric
from daedalus.orchestration.loop import TrialRecord
from daedalus.orchestration.search import load_records
from daedalus.store.run import RunStore


def make_leaderboard(records: list[TrialRecord], metric: Metric, ensemble: dict[str, Any] | None,
                     designers: dict[int, str] | None = None, *,
                     final: TrialRecord | None = None) -> list[dict[str, Any]]:
    """The rows of every kind of run: a row per trial (its kind's columns from ``TrialRecord.extra``), plus the
    table run's ensemble (``ensemble``: score, fit_seconds, reason, members, kind) or the image run's ``final``
    network, which comes first (it is what the run hands back). Failures last; ties: the earlier trial."""
    rows = [_row(r, metric, designers or {}) for r in records]
    if ensemble is not None:
        rows.append({"trial": None, "family": "ensemble", "score": ensemble["score"], "metric": metric.name,
                     "fit_seconds": ensemble["fit_seconds"], "status": "ok", "designer": "caruana",
                     "reason": ensemble["reason"], "members": ensemble["members"], "kind": ensemble["kind"]})
    pinned = None
    if final is not None:
        rows.append({**_row(final, metric, {}), "family": f"{final.family} (final)"})
        pinned = final.number

    def key(row: dict[str, Any]) -> tuple[int, int, float, int]:
        if row["status"] != "ok" or row["score"] is None:
            return (1, 1, 0.0, row["trial"] or 0)
        # On ties the ensemble goes first: it is what the run hands back.
        return (0, int(pinned is None or row["trial"] != pinned), -metric.utility(row["score"]),
                -1 if row["trial"] is None else row["trial"])

    rows.sort(key=key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _row(r: TrialRecord, metric: Metric, designers: dict[int, str]) -> dict[str, Any]:
    return {"trial": r.number, "family": r.family, "score": r.score, "metric": metric.name,
            "fit_seconds": round(r.fit_seconds, 3), "status": r.status,
            "designer": designers.get(r.number, r.designer), "reason": r.reason, **r.extra}


@dataclass(frozen=True)
class PartialBoard:
    rows: list[dict[str, Any]]
    live: bool  # the run is building now (else it was stopped)
    note: str  # "partial: the run is running; 4 trials so far"


def partial_leaderboard(run_dir: Path) -> PartialBoard:
    """The leaderboard of a run without ``leaderboard.json`` (running, or stopped before its end), from its
    study, opened read-only: no ensemble yet, single models ranked as ``make_leaderboard`` ranks them."""
    import optuna

    store = RunStore.open(run_dir)
    info = store.read("run")
    live = store.writer() is not None  # the build or resume holding the run's lock
    if info.get("kind") == "image" or not info.get("storage"):
        raise RunError(f"run '{run_dir}' has no leaderboard and no trial recorded yet: it is starting, or was "
                       f"stopped in its first seconds; look again in a moment, or continue it with "
                       f"'daedalus resume {run_dir}'")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = store.storage_url(info)
    try:
        study = optuna.load_study(study_name=store.study_name(info), storage=_read_only(url))
    except Exception as exc:  # the database moved, is unreachable, or the study was never made
        raise RunError(f"cannot read the study of run '{run_dir}' ({str(exc).splitlines()[0][:120]}); check its "
                       f"storage '{url}'") from None
    records = load_records(study)
    metric = get_metric(str(info.get("metric")), Task(str(info.get("task"))))
    designers = {t.number: str(t.user_attrs.get("designer", "")) for t in study.get_trials(deepcopy=False)}
    rows = make_leaderboard(records, metric, None, designers)
    what = "is running" if live else f"was stopped (continue it with 'daedalus resume {run_dir}')"
    return PartialBoard(rows, live, f"partial: the run {what}; {len(records)} trial(s) so far")


def _read_only(url: str) -> Any:
    """An SQLite study file opened read-only (a reader must never write into a run); other URLs as given."""
    import optuna

    if url.startswith("sqlite:///") and "?" not in url:
        url = f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    for attempt in range(5):  # the writer may hold the file's lock for a moment
        try:
            return optuna.storages.RDBStorage(url)
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.2)
