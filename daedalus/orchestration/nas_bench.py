"""Score a designer on a NAS-Bench-201 table under the benchmark's protocol (``../shared/nas/README.md``).

- The budget is the number of *distinct* architectures whose ``val12`` the designer has read; a repeat is free.
- The score at budget B is the ``test200`` of the architecture with the best ``val12`` among the first B read
  (a tie goes to the one read first). Regret = the table's optimum - score.
- The designer sees ``val12`` only.

``bench`` is what ``daedalus nas-bench`` runs: it checks the options, loads the table and averages over seeds.
With ``pretrain_tables`` (``--pretrain-table``, repeatable) each search's designer is first pretrained on those
other tables (:class:`~daedalus.designers.nas.pretrain.Pretrainable`), reading only their ``val12`` column, as a
search does: ``load_examples`` never reads ``test200``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.designers.base import OK, Result
from daedalus.designers.nas.pretrain import Example, Pretrainable
from daedalus.designers.nas.registry import BEST, DESIGNERS, designer_class, make_designer, resolve_designer
from daedalus.errors import ConfigError, DataError
from daedalus.evaluation.nas_table import BenchTable, load_table
from daedalus.spaces.nas.nb201 import NB201Space

CHECKPOINTS = (20, 50, 100, 200, 500)
# A designer that keeps proposing cells it has already read is stopped after this many asks per query.
MAX_ASKS_PER_QUERY = 50


def load_examples(path: str | Path) -> list[Example]:
    """A NAS-Bench-201 table's ``(genotype, val12)`` pairs for pretraining; only the ``cell`` and ``val12`` columns
    are read (never ``test200``). Bad files raise a one-line :class:`DataError`."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"pretrain table {str(path)!r} not found; pass --pretrain-table with a NAS-Bench-201 CSV "
                        "such as nb201_cifar100.csv.gz")
    try:
        frame = pd.read_csv(path, usecols=lambda column: column in ("cell", "val12"))
    except Exception as exc:  # pandas raises many kinds for a bad file
        raise DataError(f"cannot read pretrain table {str(path)!r} ({type(exc).__name__}); pass a CSV file") from exc
    missing = [c for c in ("cell", "val12") if c not in frame.columns]
    if missing or frame.empty:
        raise DataError(f"pretrain table {str(path)!r} lacks {'column(s) ' + ', '.join(missing) if missing else 'rows'}"
                        "; it needs cell and val12 columns as in NAS-Bench-201's tables")
    space = NB201Space()
    try:
        genotypes = [space.from_string(str(c)) for c in frame["cell"]]
        values = pd.to_numeric(frame["val12"], errors="raise").to_numpy(float)
    except ValueError as exc:
        raise DataError(f"pretrain table {str(path)!r}: {exc}; cells must be NAS-Bench-201 strings and val12 "
                        "numbers") from exc
    if not np.isfinite(values).all():
        raise DataError(f"pretrain table {str(path)!r} has missing val12 values; every row needs one")
    return list(zip(genotypes, values.tolist(), strict=True))


def run_once(table: BenchTable, designer: str, queries: int, seed: int,
             checkpoints: Sequence[int] = CHECKPOINTS, pretrain: Sequence[Sequence[Example]] = (),
             **options: Any) -> dict[int, float]:
    """One search: the score at each checkpoint <= ``queries`` (the last score carries on if the designer stalls).
    ``pretrain`` holds one list of examples per source the designer learns from first."""
    space = NB201Space()
    searcher = make_designer(designer, space, seed=seed, **options)
    for examples in pretrain:
        assert isinstance(searcher, Pretrainable), designer  # checked by check_options
        searcher.pretrain(examples)
    wanted = sorted(b for b in checkpoints if b <= queries)
    scores: dict[int, float] = {}
    read: set = set()
    best_val, best_test = -np.inf, float("nan")
    asks = 0
    while len(read) < queries and asks < MAX_ASKS_PER_QUERY * queries:
        asks += 1
        proposal = searcher.ask()
        if proposal is None:  # nothing to propose: a stall
            break
        genotype = proposal.candidate
        value = table.val12[genotype]
        if genotype not in read:
            read.add(genotype)
            if value > best_val:  # strict: a tie keeps the one read first
                best_val, best_test = value, table.test200[genotype]
            if len(read) in wanted:
                scores[len(read)] = best_test
        searcher.tell(proposal, Result(OK, value))
    for b in wanted:  # a stalled designer keeps its last score
        scores.setdefault(b, best_test)
    return scores


Job = tuple[BenchTable, str, int, int, tuple[int, ...], Sequence[Sequence[Example]]]


def _run_seed(args: Job) -> dict[int, float]:
    table, designer, queries, seed, checkpoints, pretrain = args
    return run_once(table, designer, queries, seed, checkpoints, pretrain)


def run_bench(table: BenchTable, designer: str, queries: int, seeds: int,
              checkpoints: Sequence[int] = CHECKPOINTS, processes: int = 1,
              pretrain: Sequence[Sequence[Example]] = ()) -> dict[str, dict[str, float]]:
    """Mean, sd and regret of the score over seeds 0..seeds-1, per checkpoint (as strings, for JSON)."""
    jobs: list[Job] = [(table, designer, queries, seed, tuple(checkpoints), pretrain) for seed in range(seeds)]
    if processes > 1:
        from multiprocessing import get_context

        # Forked workers inherit the jobs' data; only the seed's index crosses the pipe.
        global _JOBS
        _JOBS = jobs
        with get_context("fork").Pool(processes) as pool:
            runs = pool.map(_run_job, range(len(jobs)))
        _JOBS = []
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


_JOBS: list[Job] = []  # run_bench's jobs, read by forked workers


def _run_job(index: int) -> dict[int, float]:
    return _run_seed(_JOBS[index])


@dataclass(frozen=True)
class BenchReport:
    designer: str
    table: str
    seeds: int
    results: dict[str, dict[str, float]]
    optimum: float = float("nan")  # the table's best test200, which regret is measured against
    pretrain_tables: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        form = {"designer": self.designer, "table": self.table, "seeds": self.seeds, "results": self.results}
        if self.pretrain_tables:  # only then: a cold report keeps its documented shape
            form["pretrain_tables"] = list(self.pretrain_tables)
        return form


def pretrainable() -> list[str]:
    """The registered designers that can be pretrained."""
    return [name for name in DESIGNERS if issubclass(designer_class(name), Pretrainable)]


def check_options(designer: str, queries: int, seeds: int, processes: int = 1, pretrained: bool = False) -> None:
    """Raise a one-line :class:`ConfigError` for a bad option, before any file is read."""
    if designer != BEST and designer not in DESIGNERS:
        raise ConfigError(f"unknown designer {designer!r}; pass --designer with one of "
                          f"{', '.join([*DESIGNERS, BEST])}")
    if pretrained and resolve_designer(designer) not in pretrainable():
        raise ConfigError(f"designer {designer!r} cannot be pretrained; drop --pretrain-table or pass --designer "
                          f"with one of {', '.join(pretrainable())}")
    for option, value in (("--queries", queries), ("--seeds", seeds), ("--processes", processes)):
        if value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")


def bench(table_path: str, designer: str, queries: int, seeds: int, processes: int = 1,
          pretrain_tables: Sequence[str] = ()) -> BenchReport:
    """Score ``designer`` (a name of DESIGNERS, or ``best``) over seeds 0..seeds-1 on the table at ``table_path``,
    pretrained first on the tables at ``pretrain_tables`` (their val12 only)."""
    check_options(designer, queries, seeds, processes, pretrained=bool(pretrain_tables))
    table = load_table(table_path)
    pretrain = [load_examples(path) for path in pretrain_tables]
    for path, examples in zip(pretrain_tables, pretrain, strict=True):
        if dict(examples) == table.val12:  # every val12 of the table searched, read for free
            raise ConfigError(f"pretrain table {path!r} holds the val12 of the table searched ({table_path!r}); "
                              "pretrain on another task's table")
    cells = NB201Space().size
    if len(table.val12) != cells:  # the loop looks up whatever cell a designer proposes
        raise DataError(f"NAS table {table_path!r} has {len(table.val12)} cells, not all {cells} of NAS-Bench-201; "
                        "pass a complete table")
    name = resolve_designer(designer)
    # The standard budgets up to N, and N itself: the score after all the queries asked for is always reported.
    checkpoints = sorted({*(b for b in CHECKPOINTS if b <= queries), queries})
    results = run_bench(table, name, queries, seeds, checkpoints=checkpoints, processes=processes, pretrain=pretrain)
    return BenchReport(designer, table_path, seeds, results, optimum=table.optimum,
                       pretrain_tables=tuple(str(p) for p in pretrain_tables))
