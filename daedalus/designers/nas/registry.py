"""Designer names -> classes. Modules are imported on use, so naming one designer does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

from daedalus.designers.nas.base import ArchDesigner, Constraint
from daedalus.spaces.nas.base import ArchSpace

# name -> "module:Class"
DESIGNERS: dict[str, str] = {
    "random": "daedalus.designers.nas.random_search:RandomDesigner",
    "evolution": "daedalus.designers.nas.evolution:EvolutionDesigner",
    "local": "daedalus.designers.nas.local_search:LocalSearchDesigner",
    "tpe": "daedalus.designers.nas.tpe:TPEDesigner",
    "generative": "daedalus.designers.nas.generative:GenerativeDesigner",
    "predictor": "daedalus.designers.nas.predictor:PredictorDesigner",
}
# What ``--designer best`` means; chosen by the NAS-Bench-201 benchmark (see bench/NAS_RESULTS.md).
BEST = "best"
DEFAULT_DESIGNER = "predictor"


def resolve_designer(name: str) -> str:
    """The registered designer ``name`` stands for: ``best`` is DEFAULT_DESIGNER (the one place it is resolved)."""
    return DEFAULT_DESIGNER if name == BEST else name


def designer_class(name: str) -> type[ArchDesigner]:
    name = resolve_designer(name)
    if name not in DESIGNERS:
        raise ValueError(f"unknown designer {name!r}; choose one of {', '.join([*DESIGNERS, BEST])}")
    module, _, cls = DESIGNERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_designer(name: str, space: ArchSpace, seed: int = 0, constraint: Constraint | None = None,
                  **options: Any) -> ArchDesigner:
    return designer_class(name)(space, seed=seed, constraint=constraint, **options)
