"""First-improvement hill climbing over one-step neighbours, with a random restart when stuck.

From the current architecture the neighbours (``space.neighbours``: every genotype one used position away) are
tried in a random order; the first one that scores strictly better becomes the current architecture and its
own neighbours are tried next. When every neighbour scores worse or equal, the climb is at a local optimum
and restarts from an unseen random sample. On NAS-Bench-201 this simple search is among the strongest
baselines (White et al., "Local search is state of the art for NAS benchmarks", 2020).

A neighbour whose score is already known (told earlier, by this climb or by anyone) is compared without being
proposed again: under a distinct-evaluation budget a repeat costs nothing but teaches nothing either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daedalus.designers.nas.base import Constraint, genotypes_in, score_out, scores_in, scores_out
from daedalus.designers.nas.random_search import RandomDesigner
from daedalus.spaces.nas.base import ArchSpace, Genotype

FAILED = float("-inf")  # a failed evaluation ranks below everything


class LocalSearchDesigner(RandomDesigner):
    """Built on random search: its ``seen`` set and ``ask`` give the starts and restarts."""

    name = "local"

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None) -> None:
        super().__init__(space, seed=seed, constraint=constraint)
        self.scores: dict[Genotype, float] = {}
        self.current: Genotype | None = None
        self.current_score = FAILED
        self.queue: list[Genotype] = []  # the current architecture's neighbours still to try (popped from the end)
        self.neighbourhood: set[Genotype] = set()

    def propose(self) -> Genotype:
        while self.current is not None and self.queue:
            candidate = self.queue.pop()
            if not self.allowed(candidate):
                continue
            if candidate in self.scores:  # known: compare for free
                if self.scores[candidate] > self.current_score:
                    self._move(candidate)
                continue
            if candidate in self.seen:  # asked and still being evaluated; its tell will decide
                continue
            self.seen.add(candidate)
            return candidate
        self.current = None  # no start yet, or stuck at a local optimum: restart at random
        return super().propose()

    def learn(self, genotype: Genotype, score: float | None) -> None:
        super().learn(genotype, score)
        value = FAILED if score is None else float(score)
        self.scores[genotype] = value
        if self.current is None:
            if score is not None:  # the first result after a (re)start is where the climb begins
                self._move(genotype)
        elif value > self.current_score and genotype in self.neighbourhood:
            self._move(genotype)  # first improvement

    def learned_state(self) -> dict[str, Any]:
        # The climb is a function of the order of asks and tells, not of the tells alone: kept as it stands.
        return {**super().learned_state(), "scores": scores_out(self.scores),
                "current": None if self.current is None else list(self.current),
                "current_score": score_out(self.current_score),
                "queue": [list(g) for g in self.queue]}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        super().restore_learned(state)
        self.scores = {g: FAILED if s is None else s for g, s in scores_in(state["scores"]).items()}
        self.current = None if state["current"] is None else tuple(state["current"])
        self.current_score = FAILED if state["current_score"] is None else float(state["current_score"])
        self.queue = genotypes_in(state["queue"])
        self.neighbourhood = set(self.space.neighbours(self.current)) if self.current is not None else set()

    def _move(self, genotype: Genotype) -> None:
        self.current, self.current_score = genotype, self.scores[genotype]
        neighbours = self.space.neighbours(genotype)
        self.queue = [neighbours[i] for i in self.rng.permutation(len(neighbours))]
        self.neighbourhood = set(neighbours)
