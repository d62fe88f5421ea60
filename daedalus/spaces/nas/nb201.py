"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): 6 edges of a 4-node cell, each one of 5 operations.

The genotype is the 6 edge operations in the benchmark's edge order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; its
string form is the benchmark's ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, the key of the ground-truth tables.
``instantiate`` builds the cell as a module (the benchmark's full network stacks such cells; here the cell is
what is searched, and a small stem and head make it a trainable image classifier).
"""

from __future__ import annotations

from typing import Any

from daedalus.spaces.nas.base import ArchSpace, Choice, Genotype
from daedalus.spaces.nas.export import render
from daedalus.spaces.nas.nb201_plan import EDGES, OPERATIONS, nb201_layers

__all__ = ["EDGES", "OPERATIONS", "NB201Space"]


class NB201Space(ArchSpace):
    name = "nb201"

    @property
    def choices(self) -> tuple[Choice, ...]:
        return tuple(Choice(f"edge_{dst}<-{src}", OPERATIONS) for dst, src in EDGES)

    def to_string(self, genotype: Genotype) -> str:
        ops = [OPERATIONS[v] for v in self.validate(genotype)]
        nodes = []
        for dst in (1, 2, 3):
            nodes.append("|" + "|".join(f"{ops[i]}~{src}" for i, (d, src) in enumerate(EDGES) if d == dst) + "|")
        return "+".join(nodes)

    def from_string(self, cell: str) -> Genotype:
        """Parse ``|op~0|+|op~0|op~1|+|...|``; raises ValueError naming the problem."""
        tokens = [t for node in cell.strip().split("+") for t in node.strip("|").split("|") if t]
        if len(tokens) != len(EDGES):
            raise ValueError(f"cell string {cell!r} has {len(tokens)} edges, expected {len(EDGES)}")
        genotype = []
        for token, (_, src) in zip(tokens, EDGES, strict=True):
            op, _, source = token.partition("~")
            if op not in OPERATIONS or source != str(src):
                raise ValueError(f"cell string {cell!r}: bad edge {token!r}")
            genotype.append(OPERATIONS.index(op))
        return tuple(genotype)

    def instantiate(self, genotype: Genotype, **shape: Any) -> Any:
        from daedalus.spaces.nas.nb201_torch import NB201Network

        return NB201Network([OPERATIONS[v] for v in self.validate(genotype)], EDGES, **shape)

    def to_source(self, genotype: Genotype, **shape: Any) -> str:
        from daedalus.spaces.nas.nb201_torch import BLOCKS

        genotype = self.validate(genotype)
        layers = nb201_layers([OPERATIONS[v] for v in genotype], EDGES, **shape)
        notes = [f"Cell {self.to_string(genotype)}",
                 f"(search space {self.name}, genotype {genotype}).",
                 "The cell is searched; the stem, stages, reductions and head are fixed (NAS-Bench-201's macro",
                 "skeleton, scaled down)."]
        return render(layers, BLOCKS, "NAS-Bench-201 cell network.", notes,
                      input_shape=tuple(shape["in_shape"]))
