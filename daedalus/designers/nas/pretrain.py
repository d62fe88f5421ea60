"""Pretraining architecture designers on results from other tasks: the ``Pretrainable`` capability.

A designer that has seen other tasks starts where their good architectures are, instead of from nothing. The
examples are ``(genotype, score)`` pairs from *one* source each call: another benchmark table (its ``val12``, as
a search reads it), or the past trials of a similar image run (the knowledge base). Whatever the source, the
designer sees it the same way:

- **Scores are normalised per source.** A source's scores become their rank quantiles (0 = its worst, 1 = its
  best; ties share their mean rank), so a table at 94% accuracy and one at 73% mix, and neither the metric's
  scale nor a few broken networks at chance level weigh more than their rank. Calling ``pretrain`` once per
  source keeps sources apart.
- **Sources are weighted by similarity to the task searched.** Each source may carry a description of its task
  (numbers such as ``{"classes": 10, "channels": 3}``), and the designer may be told its own task's. A source
  whose task is further away counts less (:func:`task_similarity`); with no descriptions every source counts
  the same.
- **Pretraining is part of the designer's state.** ``get_state`` carries what was learned, so a resumed run
  continues the pretrained designer, not a cold one.

The settings here (the focus on a source's top, the similarity's scale) are the same for every source and every
task searched: nothing is tuned to the table searched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.stats import rankdata

from daedalus.spaces.nas.base import ArchSpace, Genotype

Example = tuple[Genotype, float]
TaskInfo = Mapping[str, Any]


@runtime_checkable
class Pretrainable(Protocol):
    """A designer that can start from other tasks' results. Callers test for it with ``isinstance``."""

    def pretrain(self, examples: Sequence[Example], task: TaskInfo | None = None) -> None:
        """Learn from ``examples``, the ``(genotype, score to maximise)`` results of ONE source task described by
        ``task``; call once per source, before the first ask or tell (after them it raises ``ValueError``, as does a
        genotype outside the space)."""


def pretrain_from_records(designer: Pretrainable, records: Iterable[tuple[str, TaskInfo | None, Sequence[int], float]]
                          ) -> int:
    """Pretrain ``designer`` on past results whatever their source (a benchmark table, the knowledge base's image
    trials): ``records`` are ``(source, task description, genotype, score to maximise)``, grouped here by source
    so each source's scores are normalised on their own, in the order sources first appear. Returns the number
    of sources. A record without a finite score (a failed trial) is kept: it ranks last in its source."""
    sources: dict[str, tuple[TaskInfo | None, list[Example]]] = {}
    for source, task, genotype, score in records:
        entry = sources.setdefault(source, (task, []))
        entry[1].append((tuple(int(v) for v in genotype), float(score)))
    for task, examples in sources.values():
        designer.pretrain(examples, task)
    return len(sources)


def rank_quantiles(scores: Sequence[float]) -> np.ndarray:
    """Each score's rank quantile within its source, 0 (worst) to 1 (best); ties share their mean rank; a
    non-finite score (a failure) ranks last."""
    values = np.array([s if math.isfinite(s) else -math.inf for s in scores], dtype=float)
    if len(values) == 0:
        return values
    if len(values) == 1:
        return np.ones(1)
    return np.asarray((rankdata(values) - 1.0) / (len(values) - 1.0))


def normalised(space: ArchSpace, examples: Sequence[Example]) -> list[tuple[Genotype, float]]:
    """One source's examples as canonical genotypes with rank quantiles; a genotype listed twice keeps its first
    score (as a search keeps the first result it reads)."""
    first: dict[Genotype, float] = {}
    for genotype, score in examples:
        first.setdefault(space.canonical(space.validate(tuple(int(v) for v in genotype))), float(score))
    return list(zip(first, rank_quantiles(list(first.values())).tolist(), strict=True))


# A task description's numbers are compared on a log scale (10 vs 100 classes is as far as 100 vs 1000), and a
# source one log-unit away on average counts e^-1 as much as an identical one.
SIMILARITY_SCALE = 1.0


def task_similarity(source: TaskInfo | None, target: TaskInfo | None) -> float:
    """How much a source task counts for the target task, in (0, 1]: exp(-mean |log1p a - log1p b| / scale) over
    the numeric entries both describe; 1 when either is undescribed or they share no numeric entry."""
    if not source or not target:
        return 1.0
    gaps = [abs(math.log1p(abs(float(source[k]))) - math.log1p(abs(float(target[k]))))
            for k in source.keys() & target.keys() if _number(source[k]) and _number(target[k])]
    return math.exp(-sum(gaps) / len(gaps) / SIMILARITY_SCALE) if gaps else 1.0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def task_out(task: TaskInfo | None) -> dict[str, Any] | None:
    """A task description as JSON keeps it (numbers and strings only)."""
    return None if task is None else {str(k): v for k, v in task.items() if isinstance(v, int | float | str)}


def weighted_out(rows: Iterable[tuple[Genotype, float]]) -> list[list[Any]]:
    return [[list(g), float(w)] for g, w in rows]


def weighted_in(rows: Iterable[Sequence[Any]]) -> list[tuple[Genotype, float]]:
    return [(tuple(int(v) for v in g), float(w)) for g, w in rows]
