"""The learned ranker (issue 12.7): a configuration's normalised score on a table, predicted from the table's
meta-features and the configuration, by a model that Daedalus's own AutoML fitted on the matrix.

The training table has one row per (task, configuration) cell of the matrix that was run: the task's meta-features
(``MetaFeatures.vector()`` as ``meta.<name>`` and ``similarity_vector()`` as ``similar.<name>``, NaN where
unknown), the task's kind, the configuration's score estimated from the nearest other tasks (the estimate
today's warm start orders by, ``warm_start.nearest_estimates``: the model learns when to trust it), and the
configuration's encoding, then the cell's normalised score (a failed cell -1).

The configuration is encoded by what it is, not by its id: ``family`` (categorical), then each hyperparameter as
``<family>.<name>`` (a number, on a log10 scale where the family's space samples it on a log scale; a categorical
choice as text), NaN for the hyperparameters of other families. An id would only rank the fixed configurations
of the shipped matrix, where ``daedalus learn`` and the knowledge base bring configurations it has never seen;
the hyperparameters let the model carry what it learnt about a configuration to its neighbours. Each
configuration is encoded as it runs on the table (``fit_to_space``: a family default is the default for this
task and size), so a default and a mined configuration with the same values are the same row.

The fitted model lives above this layer (a run's ensemble, loaded by ``orchestration.ranker_model``); a
:class:`Ranker` is handed the function that predicts a frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from daedalus.data.metafeatures import META_FEATURE_NAMES, SIMILARITY_NAMES, MetaFeatures
from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import Matrix
from daedalus.designers.meta.space_fit import Config, fit_to_space
from daedalus.designers.warm_start import PastTask, nearest_estimates, same_kind
from daedalus.spaces.registry import FAMILIES, get_family

TARGET = "normalised_score"
FAMILY, TASK_KIND = "family", "task"
NEAREST = "nearest_estimate"  # the configuration's score predicted from the nearest tasks (warm_start's estimate)
META_COLUMNS = tuple(f"meta.{n}" for n in META_FEATURE_NAMES)
SIMILAR_COLUMNS = tuple(f"similar.{n}" for n in SIMILARITY_NAMES)


class Configured(Protocol):
    """A portfolio member or a warm start candidate: a family and its configuration (None: its default)."""

    @property
    def family(self) -> str: ...

    @property
    def config(self) -> Config | None: ...


def meta_columns(meta: MetaFeatures) -> dict[str, float]:
    """The table's columns of the training table: both of ``MetaFeatures``' scaled vectors, NaN kept."""
    return {**dict(zip(META_COLUMNS, map(float, meta.vector()), strict=True)),
            **dict(zip(SIMILAR_COLUMNS, map(float, meta.similarity_vector()), strict=True))}


def config_columns(family: str, config: Config | None, task: Task, n_rows: int) -> dict[str, float | str]:
    """A configuration's columns, as it runs on a table of this task and size (see the module)."""
    space = get_family(family).space(task, n_rows)
    out: dict[str, float | str] = {FAMILY: family}
    for key, value in fit_to_space(family, config, task, n_rows).items():
        dist = space.get(key)
        name = f"{family}.{key}"
        if isinstance(dist, CategoricalDistribution) or isinstance(value, str) or value is None:
            out[name] = str(value)  # a choice is a category, even one that looks like a number (max_features)
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(dist, (IntDistribution, FloatDistribution)) and dist.log and value > 0:
            out[name] = math.log10(float(value))
        else:
            out[name] = float(value)
    return out


def task_meta(recorded: Any) -> MetaFeatures | None:
    """A matrix task's recorded meta-features (a name -> value mapping, or a run's ``{"values", "seconds"}``) as
    ``MetaFeatures``; None when missing or damaged (the task then has no rows in the training table)."""
    values = recorded.get("values", recorded) if isinstance(recorded, Mapping) else None
    if not isinstance(values, Mapping) or not any(n in values for n in META_FEATURE_NAMES):
        return None
    try:
        return MetaFeatures.from_dict({"values": {n: values.get(n) for n in META_FEATURE_NAMES}, "seconds": 0.0})
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class TrainingTable:
    X: pd.DataFrame  # one row per cell: meta-features, task kind, configuration
    y: np.ndarray  # the cell's normalised score
    tasks: np.ndarray  # the cell's task name
    groups: np.ndarray  # the cell's task group (for grouped cross-validation)
    config_ids: np.ndarray

    def frame(self) -> pd.DataFrame:
        """X with the target as the column ``TARGET`` (what ``AutoRegressor`` or ``daedalus build`` takes)."""
        return self.X.assign(**{TARGET: self.y})


def training_table(matrix: Matrix, configs: Sequence[str] | None = None) -> TrainingTable:
    """The cells of ``matrix`` (of ``configs``, default all) that were run, on tasks with meta-features."""
    norm = matrix.normalised()
    col = {cid: j for j, cid in enumerate(matrix.config_ids)}
    wanted = list(configs) if configs is not None else matrix.config_ids
    metas = {i: m for i, t in enumerate(matrix.tasks) if (m := task_meta(t.get("meta_features"))) is not None}
    past = {i: PastTask(t["name"], t["task"], metas[i].similarity_vector(), [norm[i, col[c]] for c in wanted])
            for i, t in enumerate(matrix.tasks) if i in metas}
    rows: list[dict[str, Any]] = []
    y, tasks, groups, ids = [], [], [], []
    for i, meta in metas.items():
        t = matrix.tasks[i]
        task, n_rows = Task(t["task"]), int(t.get("n_rows") or meta.values["n_rows"] or 1)
        described = {**meta_columns(meta), TASK_KIND: task.value}
        # As a build would see it: the other tasks (never a copy of this one), of the same kind where there are any.
        others = [p for k, p in past.items() if matrix.tasks[k]["group"] != t["group"]]
        estimates = nearest_estimates(meta.similarity_vector(), same_kind(others, task), len(wanted))[0]
        for j, cid in enumerate(wanted):
            score = norm[i, col[cid]]
            c = matrix.config(cid)
            if not math.isfinite(score) or task not in FAMILIES[c["family"]].tasks:
                continue  # never run here (NaN), or a family that cannot fit this kind of task
            rows.append({**described, NEAREST: _finite(estimates[j]),
                         **config_columns(c["family"], c["config"], task, n_rows)})
            y.append(float(score))
            tasks.append(t["name"])
            groups.append(t["group"])
            ids.append(cid)
    return TrainingTable(_ordered(pd.DataFrame(rows)), np.array(y, dtype=float), np.array(tasks, dtype=object),
                         np.array(groups, dtype=object), np.array(ids, dtype=object))


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else math.nan


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in a fixed order (the task's, then the family, then hyperparameters by name): the same matrix
    gives the same table, whatever the order its cells were read in."""
    fixed = [c for c in (*META_COLUMNS, *SIMILAR_COLUMNS, TASK_KIND, NEAREST, FAMILY) if c in frame.columns]
    return frame[fixed + sorted(c for c in frame.columns if c not in fixed)]


class Ranker:
    """Predicted normalised scores of configurations on a table. ``predict_frame`` takes rows of the training
    table's ``columns`` (a column it lacks is NaN) and returns one score per row."""

    def __init__(self, predict_frame: Callable[[pd.DataFrame], np.ndarray], columns: Sequence[str],
                 description: str = "") -> None:
        self.predict_frame = predict_frame
        self.columns = list(columns)
        self.description = description  # for the audit log: where the model comes from, how it was measured

    def frame(self, meta: MetaFeatures, members: Sequence[Configured], task: Task,
              nearest: Sequence[float] | None = None) -> pd.DataFrame:
        n_rows = int(meta.values["n_rows"]) if math.isfinite(meta.values["n_rows"]) else 1
        described = {**meta_columns(meta), TASK_KIND: task.value}
        guesses = [math.nan] * len(members) if nearest is None else [_finite(float(x)) for x in nearest]
        rows = [{**described, NEAREST: guess, **config_columns(m.family, m.config, task, n_rows)}
                for m, guess in zip(members, guesses, strict=True)]
        frame = pd.DataFrame(rows)
        # A hyperparameter the model never saw is dropped; one it knows but this row lacks is missing (NaN).
        return frame.reindex(columns=self.columns)

    def predict(self, meta: MetaFeatures, members: Sequence[Configured], task: Task,
                nearest: Sequence[float] | None = None) -> np.ndarray:
        """One predicted normalised score per member (1 = the best known configuration on such a table).
        ``nearest``: each member's estimate from the nearest tasks (``warm_start.nearest_estimates``), if known."""
        if not members:
            return np.zeros(0)
        return np.asarray(self.predict_frame(self.frame(meta, members, task, nearest)), dtype=float).ravel()

    def order(self, meta: MetaFeatures, members: Sequence[Configured], task: Task,
              nearest: Sequence[float] | None = None) -> list[int]:
        """Indices of ``members``, best predicted first; ties keep the given order."""
        scores = self.predict(meta, members, task, nearest)
        return sorted(range(len(members)), key=lambda i: (-scores[i], i))
