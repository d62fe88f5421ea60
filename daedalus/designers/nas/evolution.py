"""Regularised (aging) evolution (Real et al., AAAI 2019): tournament selection, one-step mutation, oldest out.

The population holds the last ``population`` architectures told with a score. Each ask takes a tournament of
``sample_size`` members drawn without replacement and mutates one used position of the winner. Removing the
*oldest* member rather than the worst is what "regularised" means: a good architecture survives only by
having good children, which keeps the search from clinging to one lucky evaluation.

Until the population is full, asks are random samples (random search's ask). A child is drawn uniformly among
the winner's neighbours not yet seen and allowed by the constraint, which is ``space.mutate`` with rejection:
under a distinct-evaluation budget a repeat teaches nothing. When the winner has no such neighbour left, the
ask falls back to an unseen random sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from daedalus.designers.nas.base import Constraint, genotypes_in, genotypes_out
from daedalus.designers.nas.random_search import RandomDesigner
from daedalus.spaces.nas.base import ArchSpace, Genotype


class EvolutionDesigner(RandomDesigner):
    """Built on random search: its ``seen`` set and ``ask`` give the initial population and the fallback."""

    name = "evolution"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None,
                 population: int = 10, sample_size: int = 3) -> None:
        if population < 1 or not 1 <= sample_size <= population:
            raise ValueError(f"evolution needs population >= 1 and 1 <= sample_size <= population, "
                             f"got population={population}, sample_size={sample_size}")
        super().__init__(space, seed=seed, constraint=constraint)
        self.population_size = population
        self.sample_size = sample_size
        self.population: deque[tuple[Genotype, float]] = deque(maxlen=population)  # append drops the oldest
        self.pending: set[Genotype] = set()  # asked, not yet told

    def propose(self) -> Genotype:
        # Asks in flight count towards the initial population, so a caller that asks ahead does not get
        # more random samples than it would one at a time.
        if len(self.population) + len(self.pending) >= self.population_size and self.population:
            child = self._child()
        else:
            child = None
        if child is None:
            child = super().propose()
        self.seen.add(child)
        self.pending.add(child)
        return child

    def _child(self) -> Genotype | None:
        members = list(self.population)
        picks = self.rng.choice(len(members), size=min(self.sample_size, len(members)), replace=False)
        winner = max((members[i] for i in sorted(picks)), key=lambda m: m[1])[0]  # max keeps the first of ties
        fresh = [g for g in self.space.neighbours(winner) if g not in self.seen and self.allowed(g)]
        return fresh[int(self.rng.integers(len(fresh)))] if fresh else None

    def learn(self, genotype: Genotype, score: float | None) -> None:
        super().learn(genotype, score)
        self.pending.discard(genotype)
        if score is not None:  # a failed candidate takes no place in the population
            self.population.append((genotype, float(score)))

    def learned_state(self) -> dict[str, Any]:
        return {**super().learned_state(), "population": [[list(g), s] for g, s in self.population],
                "pending": genotypes_out(self.pending)}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        super().restore_learned(state)
        self.population.clear()
        self.population.extend((tuple(g), float(s)) for g, s in state["population"])
        self.pending = set(genotypes_in(state["pending"]))
