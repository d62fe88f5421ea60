"""A tabular NAS benchmark (NAS-Bench-201 format) as an evaluator: reading an architecture's score is a lookup.

The table has one row per cell with the columns ``cell`` (the benchmark's string), ``val12`` (the only
signal a search may read) and ``test200`` (used only to score a finished search). See ``../shared/nas``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daedalus.errors import DataError
from daedalus.spaces.nas.base import Genotype
from daedalus.spaces.nas.nb201 import NB201Space

REQUIRED_COLUMNS = ("cell", "val12", "test200")


@dataclass(frozen=True)
class BenchTable:
    """The ground truth of one table, keyed by genotype."""

    path: str
    val12: dict[Genotype, float]
    test200: dict[Genotype, float]
    params: dict[Genotype, float]

    @property
    def optimum(self) -> float:
        """The best ``test200`` of any cell (regret is measured against it)."""
        return max(self.test200.values())

    @property
    def ceiling(self) -> float:
        """The score of a search that read every cell: ``test200`` of the best ``val12``, first row on ties."""
        best = max(self.val12, key=lambda g: self.val12[g])  # max keeps the first of equal keys
        return self.test200[best]


def load_table(path: str | Path) -> BenchTable:
    """Read a NAS-Bench-201 table (CSV, gzip allowed); bad files raise a one-line :class:`DataError`."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"NAS table {str(path)!r} not found; pass --table with a NAS-Bench-201 CSV such as "
                        "nb201_cifar10.csv.gz")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises many kinds for a bad file
        raise DataError(f"cannot read NAS table {str(path)!r} ({type(exc).__name__}); pass a CSV file") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"NAS table {str(path)!r} lacks column(s) {', '.join(missing)}; it needs "
                        f"{', '.join(REQUIRED_COLUMNS)} as in NAS-Bench-201's tables")
    space = NB201Space()
    try:
        genotypes = [space.from_string(c) for c in frame["cell"]]
    except ValueError as exc:
        raise DataError(f"NAS table {str(path)!r}: {exc}; cells must be NAS-Bench-201 strings") from exc
    if len(set(genotypes)) != len(genotypes):
        raise DataError(f"NAS table {str(path)!r} lists a cell twice; each cell must appear once")
    val = frame["val12"].to_numpy(float)
    test = frame["test200"].to_numpy(float)
    params = frame["params"].to_numpy(float) if "params" in frame.columns else np.full(len(frame), np.nan)
    if not (np.isfinite(val).all() and np.isfinite(test).all()):
        raise DataError(f"NAS table {str(path)!r} has missing val12/test200 values; every cell needs both")
    return BenchTable(str(path), dict(zip(genotypes, val.tolist(), strict=True)),
                      dict(zip(genotypes, test.tolist(), strict=True)),
                      dict(zip(genotypes, params.tolist(), strict=True)))
