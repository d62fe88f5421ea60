"""How many rows the search fits on: all of them, or a stratified subsample sized to the budget and the memory.

A big table makes every trial dear: on 1,000,000 rows x 50 columns a default LightGBM trial took 38 s and a
default XGBoost one over 200 s on this 2-core machine, so a 300-s build tried three configurations. Like
AutoGluon's and FLAML's sampling of large data, the search then runs on a subsample, and the chosen ensemble is
refit on all rows at the end (``finalize``), which is where the extra rows pay:

- **time**: the subsample is sized so that the search's share of the budget fits about ``TRIALS_WANTED``
  trials at ``SECONDS_PER_CELL`` (a default trial's cost per row and column, measured here on tables of 100,000
  and 1,000,000 rows); never under ``MIN_SEARCH_ROWS``, so tables up to that size are searched whole;
- **memory**: a trial holds about ``TRIAL_COPIES`` times its rows' prepared bytes on top of a worker's own
  start-up size, and each of the trials running at once has its share of ``--memory-limit`` (what is left of it
  after the run's own process, which holds the table); the subsample is cut to fit that share.

``--search-rows N`` sets the size by hand. The rows are drawn once, stratified on the target (on its deciles
for regression), with the run's seed, so ``resume`` draws the same ones. The plan and why go to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from daedalus.evaluation.trial import EvalContext
from daedalus.evaluation.validation import make_plan, stratified_subset
from daedalus.orchestration.options import BuildOptions

MIN_SEARCH_ROWS = 100_000
TRIALS_WANTED = 12
# Seconds of a default trial per row and feature column on 2 threads: 100,000 x 50 took 4.4 s (linear), 4.7 s
# (LightGBM), 14.6 s (XGBoost); CatBoost and the forests cost more. A mid value of the portfolio's defaults.
SECONDS_PER_CELL = 2e-6
SEARCH_SHARE = 0.7  # of the budget: the rest is the final stage's (the refit on all rows, explanations)
TRIAL_COPIES = 4.0  # a trial's peak over its worker's start-up: ~3x the prepared rows' bytes measured (XGBoost)
WORKER_START_MB = 520.0  # a worker with the model libraries loaded (measured RSS of the forkserver)


@dataclass(frozen=True)
class RowPlan:
    rows: int  # rows the search fits on
    of: int  # rows of the table
    reason: str
    row_mb: float  # prepared bytes per row, in MB (the audit log shows it as bytes_per_row)

    @property
    def subsampled(self) -> bool:
        return self.rows < self.of

    def to_record(self) -> dict[str, Any]:
        return {"rows": self.rows, "of": self.of, "subsampled": self.subsampled, "reason": self.reason,
                "bytes_per_row": round(self.row_mb * 2**20, 1)}


def fit_memory_mb(row_mb: float, rows: int) -> float:
    """Estimated peak of a worker fitting one model on ``rows`` rows of ``row_mb`` MB each."""
    return WORKER_START_MB + TRIAL_COPIES * row_mb * rows


def prepared_row_mb(X: pd.DataFrame) -> float:
    """MB per row of the prepared features (strings counted once: ``canonical_strings`` shares them)."""
    return float(X.memory_usage(deep=False, index=False).sum()) / 2**20 / max(len(X), 1)


def plan_search_rows(ctx: EvalContext, options: BuildOptions, memory_mb_per_trial: float) -> RowPlan:
    n = len(ctx.y)
    row_mb = prepared_row_mb(ctx.X)
    if options.search_rows is not None:
        rows = min(options.search_rows, n)
        return RowPlan(rows, n, f"--search-rows {options.search_rows} as given", row_mb)
    limits: list[tuple[int, str]] = []
    if options.time_budget is not None:
        per_trial = SEARCH_SHARE * options.time_budget / TRIALS_WANTED
        by_time = int(per_trial / (SECONDS_PER_CELL * max(ctx.X.shape[1], 1)))
        limits.append((max(by_time, MIN_SEARCH_ROWS),
                       f"about {TRIALS_WANTED} trials in {SEARCH_SHARE:.0%} of the {options.time_budget:g}-s budget "
                       f"at ~{SECONDS_PER_CELL * ctx.X.shape[1] * 1e5:.3g} s a trial per 100,000 rows"))
    by_memory = int((memory_mb_per_trial - WORKER_START_MB) / (TRIAL_COPIES * row_mb))
    limits.append((max(by_memory, 1000), f"a trial's {memory_mb_per_trial:.0f} MB share of the memory limit at "
                                         f"~{TRIAL_COPIES * row_mb * 1e5:.0f} MB per 100,000 rows"))
    rows, why = min(limits)
    if rows >= n:
        return RowPlan(n, n, "all rows: " + "; ".join(w for _, w in limits) + " allow them", row_mb)
    return RowPlan(rows, n, f"a stratified subsample: {why}; the ensemble is refit on all rows", row_mb)


def search_context(full: EvalContext, plan: RowPlan, seed: int, validation: str | None) -> EvalContext:
    """The context the search runs on: ``full`` itself, or its subsample with its own validation plan."""
    if not plan.subsampled:
        return full
    rows = stratified_subset(full.y, full.task.is_classification, plan.rows, seed)
    X = full.X.iloc[rows].reset_index(drop=True)
    y = full.y[rows]
    sensitive = None if full.sensitive is None else full.sensitive.iloc[rows].reset_index(drop=True)
    return replace(full, X=X, y=y, sensitive=sensitive,
                   plan=make_plan(y, full.task, seed, kind=validation))
