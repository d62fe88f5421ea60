"""Architecture designers: each proposes genotypes of an :class:`~daedalus.spaces.nas.ArchSpace` (ask/tell)."""

from daedalus.designers.nas.base import ArchDesigner, Constraint
from daedalus.designers.nas.registry import DEFAULT_DESIGNER, DESIGNERS, make_designer

__all__ = ["ArchDesigner", "Constraint", "DESIGNERS", "DEFAULT_DESIGNER", "make_designer"]
