"""Random search: uniform samples, without replacement while unseen genotypes remain easy to find."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daedalus.designers.nas.base import ArchDesigner, genotypes_in, genotypes_out
from daedalus.spaces.nas.base import Genotype

# Draws tried for an unseen genotype before a repeat is accepted (a nearly exhausted or tightly constrained space).
MAX_DRAWS = 1000


class RandomDesigner(ArchDesigner):
    name = "random"

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.seen: set[Genotype] = set()  # proposed or told

    def propose(self) -> Genotype:
        genotype = self.sample_unseen(lambda g: g not in self.seen, MAX_DRAWS)
        self.seen.add(genotype)
        return genotype

    def learn(self, genotype: Genotype, score: float | None) -> None:
        self.seen.add(genotype)

    def learned_state(self) -> dict[str, Any]:
        return {"seen": genotypes_out(self.seen)}

    def restore_learned(self, state: Mapping[str, Any]) -> None:
        self.seen = set(genotypes_in(state["seen"]))
