"""The learning designers learn: over many seeds on the NAS-Bench-201 tables, the generative designer (REINFORCE)
and the predictor-guided designer score above random search.

The oracle is the table's 200-epoch test accuracy, which the designers never read. The margins asked for are
well inside what the designers achieve (``bench/NAS_RESULTS.md``) and well outside the seed-to-seed noise of the
mean over 30 seeds (sd ~0.4 / sqrt(30) ~ 0.07 points on CIFAR-10), so a designer that stopped learning fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daedalus.evaluation.nas_table import load_table
from daedalus.orchestration.nas_bench import run_bench

TABLES = Path(__file__).parent / "data" / "nas"
SEEDS = 30
QUERIES = 100

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["nb201_cifar10", "nb201_cifar100"])
def random_and_table(request: pytest.FixtureRequest) -> tuple[float, object]:
    table = load_table(TABLES / f"{request.param}.csv.gz")
    random = run_bench(table, "random", QUERIES, SEEDS, checkpoints=(50, QUERIES))
    return random[str(QUERIES)]["mean"], table


@pytest.mark.parametrize("designer", ["generative", "predictor"])
def test_learning_designer_beats_random_search(designer: str, random_and_table: tuple[float, object]) -> None:
    random_mean, table = random_and_table
    results = run_bench(table, designer, QUERIES, SEEDS, checkpoints=(50, QUERIES))  # type: ignore[arg-type]
    assert results[str(QUERIES)]["mean"] > random_mean + 0.15, (designer, results, random_mean)
