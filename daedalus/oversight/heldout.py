"""The final ensemble, fold by fold, so that every row is predicted by models that never saw it.

Explanations that score a model (permutation importance) must score it on rows it was not fit on. Every
ensemble member is a search trial, and the search kept each of the best trials' fold models
(``RunStore.fold_model(N, j)``, fit on fold ``j``'s training rows). Fold ``j``'s ensemble is the members' fold
``j`` models with the ensemble's weights, and it is scored on fold ``j``'s validation rows:
- k-fold with the bag kept: these are exactly the final model's estimators;
- k-fold refit on all rows, or a holdout refit: the final estimators saw every row, so the same
  configurations as fit before the refit stand in for them (same hyperparameters, less data);
- holdout without refit: the one fold model per member is the final model, scored on the holdout.

Raw columns and prepared columns: a user's raw column becomes one prepared column, except a date, which
becomes several (``d__year``, ``d__month``, ...). :func:`raw_column_groups` says which prepared columns carry
each raw column, so that explanations are given in the columns a user passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data.prepare import DATETIME_PARTS
from daedalus.data.schema import ColumnKind, Schema, Task
from daedalus.ensembles.model import REFIT_KINDS, ModelSpec
from daedalus.evaluation.predict import predict_matrix
from daedalus.evaluation.validation import ValidationPlan
from daedalus.store.artifacts import load_model
from daedalus.store.run import RunStore


def raw_column_groups(schema: Schema) -> dict[str, list[str]]:
    """Each raw feature column (in file order) -> the prepared columns made from it."""
    groups: dict[str, list[str]] = {}
    for column in schema.columns:
        if column.name not in schema.feature_columns:
            continue
        if column.kind is ColumnKind.DATETIME:
            groups[column.name] = [f"{column.name}__{part}" for part in DATETIME_PARTS]
        else:
            groups[column.name] = [column.name]
    return groups


@dataclass(frozen=True)
class FoldEnsemble:
    """Fold ``j``'s ensemble: (weight, estimator) per member, and the rows it may be scored on."""

    members: tuple[tuple[float, Any], ...]
    rows: np.ndarray

    def predict(self, X: pd.DataFrame, task: Task, n_classes: int) -> np.ndarray:
        total: np.ndarray | None = None
        for weight, estimator in self.members:
            pred = weight * predict_matrix(estimator, X, task, n_classes)
            total = pred if total is None else total + pred
        assert total is not None
        return total


@dataclass(frozen=True)
class HeldOutEnsemble:
    folds: tuple[FoldEnsemble, ...]
    description: str  # which estimators stand for the final model, in words


def load_heldout_ensemble(store: RunStore, spec: ModelSpec, plan: ValidationPlan) -> HeldOutEnsemble | None:
    """Fold ensembles of ``spec``'s members, or None when a member's fold models are no longer on disk."""
    paths = [[store.fold_model(m.trial, j) for m in spec.members] for j in range(len(plan.folds))]
    if not all(p.exists() for fold in paths for p in fold):
        return None
    recorded = store.check([p for fold in paths for p in fold], "load")
    folds = []
    for (_, val_rows), fold_paths in zip(plan.folds, paths, strict=True):
        members = []
        for member, path in zip(spec.members, fold_paths, strict=True):
            members.append((member.weight, load_model(path, recorded[path])))
        folds.append(FoldEnsemble(tuple(members), np.asarray(val_rows)))
    if spec.kind in REFIT_KINDS:
        how = ("the members' fold models (the same configurations before their refit on all rows), each scored "
               "on the rows it was not fit on")
    elif plan.kind == "holdout":
        how = "the final model's members, scored on the validation holdout"
    else:
        how = "the final model's fold models, each scored on its held-out fold"
    return HeldOutEnsemble(tuple(folds), how)
