"""What architecture designers do beyond the designer contract (``tests/designer_contract.py`` checks that on
every designer): canonical genotypes of any space, mostly distinct proposals, the benchmark loop's budget, the
enqueue queue, and the multi-objective tools.

Scores are synthetic (the sum of the genotype's values, which every designer should learn to push up), so each
test runs in well under a second per designer and needs no benchmark table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest

from daedalus.designers.base import OK, Proposal, Result
from daedalus.designers.nas import DESIGNERS, ArchDesigner, make_designer
from daedalus.designers.nas.multi_objective import ParetoDesigner, pareto_front
from daedalus.evaluation.nas_table import BenchTable
from daedalus.orchestration.nas_bench import run_once
from daedalus.spaces.nas.base import ArchSpace, Choice, Genotype
from daedalus.spaces.nas.nb201 import NB201Space

NB201 = NB201Space()


class DepthSpace(ArchSpace):
    """A toy space with unused positions: a depth, then one width per layer, used only up to that depth."""

    name = "toy-depth"

    @property
    def choices(self) -> tuple[Choice, ...]:
        return (Choice("depth", (1, 2, 3)), *(Choice(f"width_{i}", (8, 16, 32, 64)) for i in (1, 2, 3)))

    def active(self, genotype: Genotype) -> tuple[bool, ...]:
        return (True, *(i <= genotype[0] for i in range(3)))

    def canonical(self, genotype: Genotype) -> Genotype:
        return tuple(int(v) if used else 0 for v, used in zip(genotype, self.active(genotype), strict=True))

    def instantiate(self, genotype, **shape):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def to_source(self, genotype, **shape):  # type: ignore[no-untyped-def]
        raise NotImplementedError


SPACES = [NB201, DepthSpace()]


def synthetic(genotype: Genotype) -> float:
    return float(sum(genotype))


def make(name: str, space: ArchSpace = NB201, seed: int = 0, **kwargs) -> ArchDesigner:  # type: ignore[no-untyped-def]
    """The named designer, built through the registry as the CLI builds it."""
    return make_designer(name, space, seed=seed, **kwargs)


def drive(designer: ArchDesigner, asks: int, score=synthetic) -> list[Genotype]:  # type: ignore[no-untyped-def]
    """Ask and tell ``asks`` times, one at a time, as the benchmark loop does."""
    proposed = []
    for _ in range(asks):
        proposal = designer.ask()
        proposed.append(proposal.candidate)
        designer.tell(proposal, Result(OK, score(proposal.candidate)))
    return proposed


def foreign(designer: ArchDesigner, genotype: Genotype) -> Proposal[Genotype]:
    return designer.proposal_for(genotype, "a result it did not propose", "test")


@pytest.fixture(params=sorted(DESIGNERS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.name)
def test_ask_returns_a_canonical_genotype_of_the_space(name: str, space: ArchSpace) -> None:
    for genotype in drive(make(name, space), 25):
        assert isinstance(genotype, tuple) and all(isinstance(v, int) for v in genotype)
        assert space.validate(genotype) == genotype  # in range, and canonical


def test_different_seeds_give_different_proposals(name: str) -> None:
    assert drive(make(name, seed=1), 30) != drive(make(name, seed=2), 30)


def test_proposes_mostly_distinct_genotypes(name: str) -> None:
    proposed = drive(make(name), 50)
    assert len(set(proposed)) >= 45, f"{name} proposed only {len(set(proposed))} distinct genotypes in 50 asks"


class CountingDict(dict):
    """A table column that records which genotypes were read."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.read: set = set()

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        self.read.add(key)
        return super().__getitem__(key)


def synthetic_table() -> BenchTable:
    """Every NB201 cell, val12 = a noisy synthetic score, test200 = the noiseless one."""
    rng = np.random.default_rng(0)
    cells = list(itertools.product(range(5), repeat=6))
    test = {g: synthetic(g) for g in cells}
    val = CountingDict({g: synthetic(g) + float(rng.normal(0, 1)) for g in cells})
    return BenchTable("synthetic", val, test, {g: 1.0 for g in cells})


def test_benchmark_loop_reads_at_most_the_budget(name: str) -> None:
    table = synthetic_table()
    scores = run_once(table, name, queries=30, seed=0, checkpoints=(10, 20, 30))
    assert len(table.val12.read) <= 30  # type: ignore[attr-defined]
    assert sorted(scores) == [10, 20, 30]
    assert scores[30] >= scores[10]  # the best val12 read can only improve


# ----- multi-objective -----------------------------------------------------------------------------------
def brute_front(points):  # type: ignore[no-untyped-def]
    def dominates(a, b):  # type: ignore[no-untyped-def]
        return a[1] >= b[1] and a[2] <= b[2] and (a[1] > b[1] or a[2] < b[2])

    valid = [p for p in points if p[1] is not None and math.isfinite(p[1])]
    return [p for p in valid if not any(dominates(q, p) for q in valid)]


def test_pareto_front_keeps_exactly_the_non_dominated_points() -> None:
    points = [("a", 90.0, 3.0), ("b", 80.0, 1.0), ("c", 85.0, 3.0), ("d", 90.0, 2.0), ("e", 70.0, 1.0),
              ("f", None, 0.1), ("g", 90.0, 2.0), ("h", float("nan"), 0.5)]
    assert pareto_front(points) == [("b", 80.0, 1.0), ("d", 90.0, 2.0), ("g", 90.0, 2.0)]  # by cost; ties stay
    assert pareto_front([]) == []
    rng = np.random.default_rng(0)
    for _ in range(20):
        grid = [(i, float(s), float(c)) for i, (s, c) in enumerate(rng.integers(0, 6, size=(30, 2)))]
        assert sorted(pareto_front(grid)) == sorted(brute_front(grid))


def test_pareto_designer_tells_each_inner_designer_its_own_scalarisation() -> None:
    designer = ParetoDesigner(NB201, seed=0, inner="local", weights=(0.0, 1.0))
    cheap, dear, mid = (0,) * 6, (3,) * 6, (1,) * 6
    for genotype, score, cost in ((cheap, 80.0, 1.0), (dear, 90.0, 100.0), (mid, 85.0, 10.0)):  # mid: halfway
        designer.tell(foreign(designer, genotype), Result(OK, score, {"cost": cost}))
    accuracy_only, balanced = (d.scores for d in designer.designers)  # type: ignore[attr-defined]
    assert accuracy_only[dear] > accuracy_only[mid] > accuracy_only[cheap]
    assert balanced[mid] == pytest.approx(0.5 - 0.5)
    assert balanced[dear] == pytest.approx(1.0 - 1.0)
    assert designer.front() == [(cheap, 80.0, 1.0), (mid, 85.0, 10.0), (dear, 90.0, 100.0)]
    with pytest.raises(ValueError, match="needs a cost"):
        designer.tell(foreign(designer, cheap), Result(OK, 1.0))
    with pytest.raises(ValueError, match="positive"):
        designer.tell(foreign(designer, cheap), Result(OK, 1.0, {"cost": 0.0}))


def test_pareto_designer_round_robins_between_its_inner_designers() -> None:
    designer = ParetoDesigner(NB201, seed=0, inner="random", weights=(0.0, 0.5, 1.0), cost=lambda g: 1.0)
    turns: list[int] = []

    def counted(i: int, ask: Callable[[], Proposal[Genotype]]) -> Callable[[], Proposal[Genotype]]:
        def wrapped() -> Proposal[Genotype]:
            turns.append(i)
            return ask()
        return wrapped

    for i, inner in enumerate(designer.designers):
        inner.ask = counted(i, inner.ask)  # type: ignore[method-assign]
    drive(designer, 7)
    assert turns == [0, 1, 2, 0, 1, 2, 0]


def test_pareto_designer_follows_the_contract() -> None:
    def cost(g: Genotype) -> float:  # the synthetic score rises with cost: a real trade-off
        return 1.0 + sum(g)

    def run(seed: int) -> tuple[ParetoDesigner, list[Genotype]]:
        designer = ParetoDesigner(NB201, seed=seed, inner="evolution", cost=cost, constraint=lambda g: g[0] != 0)
        return designer, drive(designer, 40)

    designer, proposed = run(0)
    assert proposed == run(0)[1] and proposed != run(1)[1]
    assert all(g[0] != 0 for g in proposed) and len(set(proposed)) >= 36
    front = designer.front()
    assert len(front) >= 3
    assert front[-1][1] == max(synthetic(g) for g in proposed)  # the most accurate end
    assert front[0][2] == min(cost(g) for g in proposed)  # the cheapest end


def test_enqueued_genotypes_come_first_in_order_numbered_and_told_like_its_own(name: str) -> None:
    designer = make(name)
    starts = [(1,) * 6, (2,) * 6]
    for genotype in starts:
        designer.enqueue("nb201", genotype, "a hand-designed starting point")
    first, second, third = (designer.ask() for _ in range(3))
    assert [first.candidate, second.candidate] == starts and [p.number for p in (first, second, third)] == [0, 1, 2]
    assert first.designer == "portfolio" and first.reason == "a hand-designed starting point"
    assert third.designer == name and third.family == "nb201"
    for proposal in (third, first, second):  # out of order
        designer.tell(proposal, Result(OK, synthetic(proposal.candidate)))
    assert not designer.in_flight
    with pytest.raises(ValueError, match="not 'cnn'"):
        designer.enqueue("cnn", (0,) * 6, "wrong space")
    constrained = make(name, constraint=lambda g: g[0] != 0)
    with pytest.raises(ValueError, match="rejected by the constraint"):
        constrained.enqueue("nb201", (0,) * 6, "not allowed")
