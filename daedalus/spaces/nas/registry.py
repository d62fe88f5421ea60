"""Architecture spaces by name, so that a saved model can say which space built its network."""

from __future__ import annotations

from daedalus.spaces.nas.base import ArchSpace
from daedalus.spaces.nas.cnn import CNNSpace
from daedalus.spaces.nas.mlp import MLPSpace
from daedalus.spaces.nas.nb201 import NB201Space

SPACES: dict[str, type[ArchSpace]] = {"cnn": CNNSpace, "mlp": MLPSpace, "nb201": NB201Space}


def get_space(name: str) -> ArchSpace:
    if name not in SPACES:
        raise ValueError(f"unknown architecture space {name!r}; known: {', '.join(SPACES)}")
    return SPACES[name]()
