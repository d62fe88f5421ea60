"""The final model's out-of-fold predictions on the training rows, rebuilt from what a tabular run stores;
for an image run, the final network's predictions on the held-out validation images.

The ensemble was chosen on its members' out-of-fold predictions (``RunStore.oof_path(N)``), so its own
out-of-fold prediction is their weighted sum with the weights in ``model/model.json`` (or ``best/`` while a
run has no final model yet). Each row's prediction comes from models that never saw that row, which is what
ROC, calibration and residual plots need to be honest. The rows scored are those of the run's validation plan:
every row under k-fold, the holdout otherwise; the plan is rebuilt from the stored rows and the run's seed, as
``resume`` does.

An image run holds out a stratified part of its images (``image_build.VALIDATION_FRACTION``) that no network
trains on; at the end of the build the final network's class probabilities on it are saved
(:func:`save_image_holdout`, ``holdout_predictions.npz``). Those images also chose the architecture, so scores
on them are slightly optimistic, as out-of-fold scores of a chosen ensemble are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daedalus.data import prepare_target
from daedalus.data.schema import Schema, Task
from daedalus.ensembles.model import ModelSpec
from daedalus.evaluation.validation import make_plan
from daedalus.store.atomic import save_arrays_atomic
from daedalus.store.layout import IMAGE_HOLDOUT_FILE, read_model_file
from daedalus.store.run import RunStore

__all__ = ["IMAGE_HOLDOUT_FILE", "FinalPredictions", "final_predictions", "save_image_holdout"]


@dataclass(frozen=True)
class FinalPredictions:
    task: Task
    y: np.ndarray  # class codes 0..k-1, or values for regression, of the scored rows
    pred: np.ndarray  # (n, k) class probabilities, or (n,) values
    classes: tuple[Any, ...] | None  # class labels in code order, None for regression
    rows: np.ndarray  # indices of the scored rows in train.parquet
    source: str  # "model" (the final ensemble) or "best" (the best single model so far)
    members: tuple[tuple[int, float], ...]  # (trial, weight)


def _spec(store: RunStore) -> tuple[ModelSpec, str] | None:
    found = store.usable_model()
    if found is None:
        return None
    name, directory = found
    return ModelSpec.from_dict(read_model_file(directory)), name


def save_image_holdout(run_dir: Path, proba: np.ndarray, labels: np.ndarray, rows: np.ndarray, trial: int,
                       source: str) -> None:
    """Keep an image run's final network's probabilities on its held-out images (written atomically)."""
    store = RunStore(Path(run_dir))
    path = store.image_holdout_path
    save_arrays_atomic(path, proba=np.asarray(proba, dtype=np.float64), labels=np.asarray(labels, dtype=np.int64),
                       rows=np.asarray(rows, dtype=np.int64), trial=np.int64(trial), source=np.str_(source))
    store.record([path])  # evidence an approval gate may judge: trusted by its recorded hash


def _image_predictions(store: RunStore, info: dict[str, Any]) -> FinalPredictions | None:
    path = store.image_holdout_path
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as saved:
        proba, labels, rows = saved["proba"], saved["labels"], saved["rows"]
        trial, source = int(saved["trial"]), str(saved["source"])
    classes = tuple(info.get("classes") or range(proba.shape[1]))
    return FinalPredictions(task=Task.BINARY if len(classes) == 2 else Task.MULTICLASS, y=labels, pred=proba,
                            classes=classes, rows=rows, source=source, members=((trial, 1.0),))


def final_predictions(run_dir: Path) -> FinalPredictions | None:
    """The run's out-of-fold predictions (an image run's held-out predictions), or None when the run has none
    stored (a run without a finished trial, or predictions that were removed)."""
    store = RunStore(Path(run_dir))
    info = store.read("run") if store.path("run").exists() else {}
    if info.get("kind") == "image":
        return _image_predictions(store, info)
    found = _spec(store)
    if found is None or not store.path("schema").exists() or not store.data_path.exists():
        return None
    spec, source = found
    total: np.ndarray | None = None
    for member in spec.members:
        oof = store.load_oof(member.trial)
        if oof is None:
            return None
        total = member.weight * oof if total is None else total + member.weight * oof
    if total is None:
        return None
    schema = Schema.from_dict(store.read("schema"))
    target = pd.read_parquet(store.data_path, columns=[schema.target])[schema.target]
    y = np.asarray(prepare_target(target, schema))
    options = info.get("options", {})
    plan = make_plan(y, schema.task, int(options.get("seed", 0)), kind=options.get("validation"))
    rows = plan.scored_index
    if len(rows) != len(total):  # the stored predictions do not belong to this plan: show nothing wrong
        return None
    return FinalPredictions(task=schema.task, y=y[rows], pred=total, classes=schema.classes, rows=rows,
                            source=source, members=tuple((m.trial, m.weight) for m in spec.members))
