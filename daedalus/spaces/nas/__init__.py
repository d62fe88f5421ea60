"""Architecture search spaces: each samples, lists neighbours, mutates, crosses over, encodes and instantiates."""

from daedalus.spaces.nas.base import ArchSpace, Choice, Genotype

__all__ = ["ArchSpace", "Choice", "Genotype"]
