"""``daedalus learn``: the portfolio mined again, from the shipped matrix plus the user's own runs (issue 12).

Each finished table run in the knowledge base becomes a task of the matrix: its meta-features, and its trials'
validation scores as cells. A trial whose configuration is one of the matrix's (a warm-started build runs the
portfolio's members, so most are) fills that configuration's cell; the best few others enter as new candidate
configurations, known on their own task only (a configuration never run on a task counts as a failure there, so
one lucky configuration cannot take a slot from those proven over the corpus). The greedy selection is then the
offline one (``designers/meta/portfolio.select_portfolio``), best-member: the knowledge base holds scores, not the
out-of-fold predictions that ensemble-aware selection needs.

The result goes to the data directory (``store.home.learned_portfolio_path``), which builds prefer to the shipped
portfolio; its member scores on the user's tasks are what lets a later build find them as its nearest tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import Matrix
from daedalus.designers.meta.portfolio import Portfolio, select_portfolio
from daedalus.errors import ConfigError
from daedalus.spaces.registry import FAMILIES, config_problem
from daedalus.store.home import learned_portfolio_path
from daedalus.store.knowledge import KnowledgeBase, RunEntry, TrialEntry, chosen_url

NEW_CONFIGS_PER_RUN = 3  # a run's best configurations not in the matrix, added as candidates
LEARNED_SIZE = 16


@dataclass(frozen=True)
class Learned:
    portfolio: Portfolio
    path: Path
    runs_used: int
    new_configs: int
    warnings: list[str]


def _key(family: str, config: dict[str, Any] | None) -> str:
    return family + json.dumps(config, sort_keys=True, default=str)


def learn(knowledge: str | None, size: int = LEARNED_SIZE, out: Path | None = None) -> Learned:
    """Mine the portfolio again and save it (``out``, default the data directory's); returns what was used."""
    url = chosen_url(knowledge)
    if url is None:
        raise ConfigError("'daedalus learn' learns from the knowledge base, which is off; pass --knowledge URL")
    matrix = Matrix.load()
    with KnowledgeBase.open(url) as base:
        runs = [(run, base.trials(run.run_id)) for run in base.runs(kind="table")]
        warnings = list(base.warnings)
    proven = matrix.dense_configs()  # before the runs are added: a few sparse rows must not thin them out
    new = _add_runs(matrix, runs)
    candidates = [*proven, *new]
    portfolio = select_portfolio(matrix, size, candidates=candidates, cost_aware=True)
    path = out or learned_portfolio_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    portfolio.save(path)
    used = sum(1 for run, _ in runs if run.run_id in matrix.scores)
    return Learned(portfolio, path, used, len(new), warnings)


def _add_runs(matrix: Matrix, runs: list[tuple[RunEntry, list[TrialEntry]]]) -> list[str]:
    """Add each usable run to ``matrix`` as a task (in place); returns the ids of the new configurations."""
    known = {_key(c["family"], c["config"]): c["id"] for c in matrix.configs}
    new_ids: list[str] = []
    for run, trials in runs:
        ok = [t for t in trials if t.status == "ok" and t.score is not None and t.space == "table"]
        recorded: Any = run.meta_features  # {"values": {...}, "seconds": s} as a build saves it, or the values
        values = recorded.get("values", recorded) if isinstance(recorded, dict) else {}
        if len(ok) < 2 or not isinstance(values, dict) or not values or run.task not in {t.value for t in Task}:
            continue  # a run with one result ranks nothing; one without meta-features cannot be a neighbour
        task = Task(run.task)
        row: dict[str, float | None] = {}
        sign = 1.0 if run.greater_is_better else -1.0
        added = 0
        for trial in sorted(ok, key=lambda t: -sign * float(t.score or 0.0)):
            if trial.family not in FAMILIES or config_problem(trial.family, trial.config, task, run.n_rows):
                continue
            default = FAMILIES[trial.family].default_config(task, run.n_rows)
            cid = known.get(_key(trial.family, trial.config)) or (
                known.get(_key(trial.family, None)) if trial.config == default else None)
            if cid is None and added < NEW_CONFIGS_PER_RUN:
                cid = f"kb-{run.run_id[:8]}-{trial.number}"
                matrix.configs.append({"id": cid, "family": trial.family, "config": dict(trial.config)})
                known[_key(trial.family, trial.config)] = cid
                new_ids.append(cid)
                added += 1
            if cid is not None and cid not in row:
                row[cid] = trial.score
        matrix.tasks.append({"name": run.run_id, "source": "knowledge", "group": run.run_id, "task": run.task,
                             "metric": run.metric, "higher_is_better": run.greater_is_better, "n_rows": run.n_rows,
                             "n_features": run.n_features, "meta_features": dict(values)})
        matrix.scores[run.run_id] = row
    return new_ids
