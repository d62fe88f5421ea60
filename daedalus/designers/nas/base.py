"""The contract of an architecture designer: it only proposes (as Archai's and Optuna's samplers).

Lifecycle: ``ask()`` returns a canonical genotype of the designer's space; the caller evaluates it, maybe
under a budget, and calls ``tell(genotype, score)`` with a score to *maximise* (None when the candidate
failed). A designer may be asked again before it is told (the caller may evaluate several in flight), and
may be told about genotypes it did not propose (a warm start, a resumed run).

Rules every designer follows (``tests/test_nas_designers.py`` checks them on every implementation):
- deterministic for a given seed and history of tells;
- never proposes a genotype the constraint rejects;
- ``ask`` should propose genotypes not yet told where the space allows; the caller counts the *distinct*
  genotypes it evaluates against its budget, so a repeat costs nothing but a step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from daedalus.spaces.nas.base import ArchSpace, Genotype

# A hard constraint: True when the genotype is allowed (max parameters, max milliseconds per batch...).
Constraint = Callable[[Genotype], bool]


class ArchDesigner(ABC):
    """Subclasses set ``name`` and implement ``ask`` and ``tell``."""

    name: str

    def __init__(self, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None) -> None:
        self.space = space
        self.seed = seed
        self.constraint = constraint
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self) -> Genotype:
        """The next genotype to evaluate (canonical, and allowed by the constraint)."""

    @abstractmethod
    def tell(self, genotype: Genotype, score: float | None) -> None:
        """The result of evaluating ``genotype``: a score to maximise, or None if it failed."""

    # ----- helpers for subclasses -----
    def allowed(self, genotype: Genotype) -> bool:
        return self.constraint is None or bool(self.constraint(genotype))

    def sample_allowed(self, max_tries: int = 10_000) -> Genotype:
        """A random genotype the constraint allows; raises if none is found (the constraint is too tight)."""
        for _ in range(max_tries):
            genotype = self.space.sample(self.rng)
            if self.allowed(genotype):
                return genotype
        raise ValueError(f"no architecture of space {self.space.name!r} satisfies the constraint "
                         f"after {max_tries} samples; loosen it")

    def sample_unseen(self, unseen: Callable[[Genotype], bool], max_draws: int = 1000) -> Genotype:
        """A random allowed genotype for which ``unseen`` holds, or a repeat after ``max_draws`` tries (a nearly
        exhausted or tightly constrained space)."""
        genotype = self.sample_allowed()
        for _ in range(max_draws):
            if unseen(genotype):
                break
            genotype = self.sample_allowed()
        return genotype
