"""Random search: uniform samples, without replacement while unseen genotypes remain easy to find."""

from __future__ import annotations

from daedalus.designers.nas.base import ArchDesigner
from daedalus.spaces.nas.base import Genotype

# Draws tried for an unseen genotype before a repeat is accepted (a nearly exhausted or tightly constrained space).
MAX_DRAWS = 1000


class RandomDesigner(ArchDesigner):
    name = "random"

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.seen: set[Genotype] = set()

    def ask(self) -> Genotype:
        genotype = self.sample_unseen(lambda g: g not in self.seen, MAX_DRAWS)
        self.seen.add(genotype)
        return genotype

    def tell(self, genotype: Genotype, score: float | None) -> None:
        self.seen.add(genotype)
