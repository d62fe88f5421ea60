"""Score a designer on a NAS-Bench-201 table under the benchmark's protocol (``../shared/nas/README.md``).

- The budget is the number of *distinct* architectures whose ``val12`` the designer has read; a repeat is free.
- The score at budget B is the ``test200`` of the architecture with the best ``val12`` among the first B read
  (a tie goes to the one read first). Regret = the table's optimum - score.
- The designer sees ``val12`` only.

``bench`` is what ``daedalus nas-bench`` runs: it checks the options, loads the table and averages over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from daedalus.designers.nas.registry import BEST, DESIGNERS, make_designer, resolve_designer
from daedalus.errors import ConfigError, DataError
from daedalus.evaluation.nas_table import BenchTable, load_table
from daedalus.spaces.nas.nb201 import NB201Space

CHECKPOINTS = (20, 50, 100, 200, 500)
# A designer that keeps proposing cells it has already read is stopped after this many asks per query.
MAX_ASKS_PER_QUERY = 50


def run_once(table: BenchTable, designer: str, queries: int, seed: int,
             checkpoints: Sequence[int] = CHECKPOINTS, **options: Any) -> dict[int, float]:
    """One search: the score at each checkpoint <= ``queries`` (the last score carries on if the designer stalls)."""
    space = NB201Space()
    searcher = make_designer(designer, space, seed=seed, **options)
    wanted = sorted(b for b in checkpoints if b <= queries)
    scores: dict[int, float] = {}
    read: set = set()
    best_val, best_test = -np.inf, float("nan")
    asks = 0
    while len(read) < queries and asks < MAX_ASKS_PER_QUERY * queries:
        asks += 1
        genotype = searcher.ask()
        value = table.val12[genotype]
        if genotype not in read:
            read.add(genotype)
            if value > best_val:  # strict: a tie keeps the one read first
                best_val, best_test = value, table.test200[genotype]
            if len(read) in wanted:
                scores[len(read)] = best_test
        searcher.tell(genotype, value)
    for b in wanted:  # a stalled designer keeps its last score
        scores.setdefault(b, best_test)
    return scores


def _run_seed(args: tuple[BenchTable, str, int, int, tuple[int, ...]]) -> dict[int, float]:
    table, designer, queries, seed, checkpoints = args
    return run_once(table, designer, queries, seed, checkpoints)


def run_bench(table: BenchTable, designer: str, queries: int, seeds: int,
              checkpoints: Sequence[int] = CHECKPOINTS, processes: int = 1) -> dict[str, dict[str, float]]:
    """Mean, sd and regret of the score over seeds 0..seeds-1, per checkpoint (as strings, for JSON)."""
    jobs = [(table, designer, queries, seed, tuple(checkpoints)) for seed in range(seeds)]
    if processes > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(processes) as pool:
            runs = pool.map(_run_seed, jobs)
    else:
        runs = [_run_seed(job) for job in jobs]
    optimum = table.optimum
    results = {}
    for b in sorted(runs[0]):
        values = np.array([r[b] for r in runs])
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        results[str(b)] = {"mean": round(mean, 4), "sd": round(sd, 4), "regret": round(optimum - mean, 4)}
    return results


@dataclass(frozen=True)
class BenchReport:
    designer: str
    table: str
    seeds: int
    results: dict[str, dict[str, float]]
    optimum: float = float("nan")  # the table's best test200, which regret is measured against

    def as_json(self) -> dict[str, Any]:
        return {"designer": self.designer, "table": self.table, "seeds": self.seeds, "results": self.results}


def check_options(designer: str, queries: int, seeds: int, processes: int = 1) -> None:
    """Raise a one-line :class:`ConfigError` for a bad option, before any file is read."""
    if designer != BEST and designer not in DESIGNERS:
        raise ConfigError(f"unknown designer {designer!r}; pass --designer with one of "
                          f"{', '.join([*DESIGNERS, BEST])}")
    for option, value in (("--queries", queries), ("--seeds", seeds), ("--processes", processes)):
        if value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")


def bench(table_path: str, designer: str, queries: int, seeds: int, processes: int = 1) -> BenchReport:
    """Score ``designer`` (a name of DESIGNERS, or ``best``) over seeds 0..seeds-1 on the table at ``table_path``."""
    check_options(designer, queries, seeds, processes)
    table = load_table(table_path)
    cells = NB201Space().size
    if len(table.val12) != cells:  # the loop looks up whatever cell a designer proposes
        raise DataError(f"NAS table {table_path!r} has {len(table.val12)} cells, not all {cells} of NAS-Bench-201; "
                        "pass a complete table")
    name = resolve_designer(designer)
    # The standard budgets up to N, and N itself: the score after all the queries asked for is always reported.
    checkpoints = sorted({*(b for b in CHECKPOINTS if b <= queries), queries})
    results = run_bench(table, name, queries, seeds, checkpoints=checkpoints, processes=processes)
    return BenchReport(designer, table_path, seeds, results, optimum=table.optimum)
