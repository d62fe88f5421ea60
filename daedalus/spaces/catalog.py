"""The model families Daedalus searches, by name, in a stable order (cheap and robust first).

This is the bottom of the family modules: the fairness mitigations (``mitigation.py``) wrap these families,
and the registry (``registry.py``) offers both, so both import this table and neither imports the other.
"""

from __future__ import annotations

from daedalus.spaces.families.boosting import CatBoostFamily, HistGBFamily, LightGBMFamily, XGBoostFamily
from daedalus.spaces.families.forests import ExtraTreesFamily, RandomForestFamily
from daedalus.spaces.families.knn import KNNFamily
from daedalus.spaces.families.linear import LinearFamily
from daedalus.spaces.families.neural import NeuralFamily
from daedalus.spaces.family import ModelFamily

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    LinearFamily(), RandomForestFamily(), ExtraTreesFamily(), HistGBFamily(), LightGBMFamily(), XGBoostFamily(),
    CatBoostFamily(), KNNFamily(), NeuralFamily(),
)}
