"""The contract of an architecture search space (as Archai's): it describes, it never trains.

An architecture is a *genotype*: a fixed-length tuple of small integers, one per :class:`Choice`, each an
index into that choice's options. Every designer works on genotypes only, so one designer serves every space:
random search samples them, evolution mutates and crosses them over, TPE suggests one categorical per
position, the generative designer emits them token by token, and a surrogate reads their fixed-length encoding.

A space may have positions that some genotypes do not use (the widths of layers beyond the chosen depth).
``canonical`` zeroes them, so two genotypes that build the same network compare equal; every method that
returns a genotype returns it canonical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported only where a network is built
    import torch

Genotype = tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    """One position of the genotype: a name and the options it picks from."""

    name: str
    options: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.options)


class ArchSpace(ABC):
    """Subclasses set ``name``, implement ``choices`` and ``instantiate``, and may refine ``canonical``."""

    name: str

    @property
    @abstractmethod
    def choices(self) -> tuple[Choice, ...]:
        """The genotype's positions, in the order a generative designer emits them."""

    @abstractmethod
    def instantiate(self, genotype: Genotype, **shape: Any) -> torch.nn.Module:
        """An untrained ``torch.nn.Module`` for this genotype; ``shape`` gives the input and output sizes."""

    @abstractmethod
    def to_source(self, genotype: Genotype, **shape: Any) -> str:
        """A standalone, readable Python file defining ``class Net(torch.nn.Module)`` whose ``Net()`` has the same
        layers (and state_dict keys) as ``instantiate(genotype, **shape)``: the export of a found architecture."""

    # ----- refinable -----
    def canonical(self, genotype: Genotype) -> Genotype:
        """The genotype with unused positions set to 0 (identity when every position is always used)."""
        return tuple(int(v) for v in genotype)

    def active(self, genotype: Genotype) -> tuple[bool, ...]:
        """Which positions this genotype uses; unused ones are not mutated (that would give the same network)."""
        return (True,) * len(self.choices)

    # ----- generic operations on genotypes -----
    def validate(self, genotype: Genotype) -> Genotype:
        if len(genotype) != len(self.choices):
            raise ValueError(f"{self.name}: genotype has {len(genotype)} positions, the space has {len(self.choices)}")
        for value, choice in zip(genotype, self.choices, strict=True):
            if not 0 <= int(value) < choice.size:
                raise ValueError(f"{self.name}: {choice.name}={value} is outside 0..{choice.size - 1}")
        return self.canonical(genotype)

    def sample(self, rng: np.random.Generator) -> Genotype:
        return self.canonical(tuple(int(rng.integers(c.size)) for c in self.choices))

    def neighbours(self, genotype: Genotype) -> list[Genotype]:
        """Every distinct genotype one used position away, in a fixed order."""
        genotype = self.canonical(genotype)
        seen = {genotype}
        out = []
        for i, (choice, used) in enumerate(zip(self.choices, self.active(genotype), strict=True)):
            if not used:
                continue
            for value in range(choice.size):
                candidate = self.canonical(genotype[:i] + (value,) + genotype[i + 1:])
                if candidate not in seen:
                    seen.add(candidate)
                    out.append(candidate)
        return out

    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> Genotype:
        """A uniformly chosen one-step neighbour."""
        options = self.neighbours(genotype)
        return options[int(rng.integers(len(options)))] if options else self.canonical(genotype)

    def crossover(self, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
        """Uniform crossover: each position from either parent."""
        take_a = rng.random(len(self.choices)) < 0.5
        return self.canonical(tuple(int(x if t else y) for x, y, t in zip(a, b, take_a, strict=True)))

    def encode(self, genotype: Genotype) -> np.ndarray:
        """One-hot per used position, concatenated: a fixed-length float vector for surrogates."""
        genotype = self.canonical(genotype)
        parts = []
        for value, choice, used in zip(genotype, self.choices, self.active(genotype), strict=True):
            one_hot = np.zeros(choice.size)
            if used:
                one_hot[value] = 1.0
            parts.append(one_hot)
        return np.concatenate(parts)

    @property
    def size(self) -> int:
        """The number of genotypes before canonicalisation (an upper bound on distinct architectures)."""
        return int(np.prod([c.size for c in self.choices], dtype=float))

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        """The readable form: choice name -> option, for used positions."""
        genotype = self.canonical(genotype)
        return {c.name: c.options[v] for v, c, used in zip(genotype, self.choices, self.active(genotype), strict=True)
                if used}

    def from_config(self, config: dict[str, Any]) -> Genotype:
        """The genotype of a readable configuration ``{choice name: option}``; a choice left out takes its first
        option (so unused positions may be left out)."""
        values = []
        for choice in self.choices:
            value = config.get(choice.name, choice.options[0])
            if value not in choice.options:
                raise ValueError(f"{choice.name}={value!r} is not one of {choice.options}")
            values.append(choice.options.index(value))
        return self.canonical(tuple(values))

    def portfolio(self) -> list[Genotype]:
        """Hand-designed starting points a search may evaluate before its designer's own proposals (none by
        default). AutoML portfolios start the same way: a few designs known to work bound how badly a short
        search can do, and give a learning designer good results to build on."""
        return []

    def to_string(self, genotype: Genotype) -> str:
        return ",".join(f"{k}={v}" for k, v in self.describe(genotype).items())
