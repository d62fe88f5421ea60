"""The leaderboard: successful single models best first, the ensemble among them, failures at the end."""

from __future__ import annotations

from typing import Any

from daedalus.evaluation.metrics import Metric
from daedalus.orchestration.search import TrialRecord


def make_leaderboard(records: list[TrialRecord], metric: Metric, ensemble: dict[str, Any] | None,
                     designers: dict[int, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in records:
        rows.append({"trial": r.number, "family": r.family, "score": r.score, "metric": metric.name,
                     "fit_seconds": round(r.fit_seconds, 3), "status": r.status,
                     "designer": designers.get(r.number, ""), "reason": r.reason})
    if ensemble is not None:
        rows.append({"trial": None, "family": "ensemble", "score": ensemble["score"], "metric": metric.name,
                     "fit_seconds": ensemble["fit_seconds"], "status": "ok", "designer": "caruana",
                     "reason": ensemble["reason"], "members": ensemble["members"], "kind": ensemble["kind"]})

    def key(row: dict[str, Any]) -> tuple[int, float, int]:
        if row["status"] != "ok" or row["score"] is None:
            return (1, 0.0, row["trial"] or 0)
        # On ties the ensemble goes first: it is what the run hands back.
        return (0, -metric.utility(row["score"]), -1 if row["trial"] is None else row["trial"])

    rows.sort(key=key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows
