"""The fitted model a run hands back: a weighted average of members, each member a bag of one or more
fitted estimators (one when refit on all rows, k when the fold models of k-fold validation are kept).

On disk it is a directory holding ``model.json`` and one skops file per estimator. It is written into a
temporary directory and swapped in with a rename, so a reader never sees a half-written model and a run
killed while saving keeps the previous one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.data.schema import Task
from daedalus.evaluation.predict import predict_matrix
from daedalus.store.artifacts import load_model
from daedalus.store.atomic import write_json_atomic
from daedalus.store.integrity import directory_files
from daedalus.store.layout import MODEL_FILE, read_model_file
from daedalus.store.run import RunStore, replace_directory

__all__ = ["MODEL_FILE", "EnsembleModel", "Member", "ModelSpec", "write_model_dir"]


REFIT_KINDS = ("refit", "partly-refit")  # final models with members fit on all rows


@dataclass(frozen=True)
class Member:
    trial: int
    family: str
    weight: float
    files: tuple[str, ...]  # skops files, relative to the model directory; their predictions are averaged


@dataclass(frozen=True)
class ModelSpec:
    # "refit" (members fit on all rows), "partly-refit" (some members: after a search on a subsample, the others'
    # refits did not fit in the time left), "bagged" (fold models) or "best-so-far"
    kind: str
    task: Task
    n_classes: int
    members: tuple[Member, ...]
    validation_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "task": self.task.value, "n_classes": self.n_classes,
                "validation_score": self.validation_score, "members": [asdict(m) for m in self.members]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        members = tuple(Member(m["trial"], m["family"], m["weight"], tuple(m["files"])) for m in d["members"])
        return cls(d["kind"], Task(d["task"]), d["n_classes"], members, d.get("validation_score"))


class EnsembleModel:
    def __init__(self, spec: ModelSpec, estimators: list[list[Any]]) -> None:
        self.spec = spec
        self.estimators = estimators  # per member, its bag

    def predict_matrix(self, X: Any) -> np.ndarray:
        total: np.ndarray | None = None
        for member, bag in zip(self.spec.members, self.estimators, strict=True):
            pred = np.mean([predict_matrix(m, X, self.spec.task, self.spec.n_classes) for m in bag], axis=0)
            total = member.weight * pred if total is None else total + member.weight * pred
        assert total is not None
        return total

    @classmethod
    def load(cls, directory: Path, store: RunStore) -> EnsembleModel:
        """Load a model directory of ``store``'s run, each of its files first checked against the hash recorded
        in the run's audit log when it was written."""
        recorded = store.check(directory_files(directory), "load")
        spec = ModelSpec.from_dict(read_model_file(directory))
        # Each file's recorded hash goes with it: the bytes loaded are the bytes checked.
        estimators = [[load_model(directory / f, recorded.get(directory / f, "")) for f in m.files]
                      for m in spec.members]
        return cls(spec, estimators)


def _link_or_copy(src: Path, dst: Path) -> None:
    # A hard link costs nothing, where copying the fold models of a large forest can take seconds of the
    # budget; the trial's own files are never modified, so sharing them is safe.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_model_dir(store: RunStore, directory: Path, spec: ModelSpec, sources: dict[str, Path]) -> None:
    """Atomically (re)place ``directory`` with the spec and the estimator files ``sources`` (name -> file).

    A source is promoted only if it matches the hash recorded when it was written (a fold model swapped in the
    trial's directory must not become the run's model); the new directory's files are recorded in turn."""
    store.check(list(sources.values()), "promote")
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, src in sources.items():
        _link_or_copy(src, tmp / name)
    write_json_atomic(tmp / MODEL_FILE, spec.to_dict())
    replace_directory(tmp, directory)
    store.record(directory_files(directory), model=directory.name)
