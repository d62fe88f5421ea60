"""An image build's start from the user's past image runs (issue 12): the networks they found, from the knowledge
base, pretrain the designer (when it can learn from other tasks: ``designers/nas/pretrain.Pretrainable``) and the
best of the most similar runs are queued first, each with the reason it was chosen.

Image runs are described by what a later run can compare: classes, channels, height, width and images
(``knowledge_record.record_image_run``); similarity is the designers' own (``pretrain.task_similarity``). A
knowledge base that cannot be read is a warning, never a failed build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daedalus.designers.nas.base import ArchDesigner
from daedalus.designers.nas.pretrain import Pretrainable, task_similarity
from daedalus.errors import DaedalusError
from daedalus.spaces.nas.base import ArchSpace, Genotype
from daedalus.store.knowledge import KnowledgeBase, TrialEntry, chosen_url

SOURCES = 5  # past image runs the designer is pretrained on, the most similar first
QUEUED_RUNS, QUEUED_PER_RUN = 2, 2  # the best networks of the most similar runs, queued first


@dataclass(frozen=True)
class PastImageRun:
    run_id: str
    dataset: str
    task: dict[str, float]
    examples: list[tuple[Genotype, float]]  # each network's best accuracy in that run, best first


def image_task(n_classes: int, shape: tuple[int, int, int], n_images: int) -> dict[str, float]:
    """What an image run is compared by (the names the knowledge base records)."""
    channels, height, width = shape
    return {"n_classes": float(n_classes), "channels": float(channels), "height": float(height),
            "width": float(width), "n_images": float(n_images)}


def past_image_runs(knowledge: str | None, space: ArchSpace, warnings: list[str]) -> list[PastImageRun]:
    """The user's finished image runs in ``space``, from the knowledge base (``knowledge``: a URL, None: the
    default, "off": none)."""
    url = chosen_url(knowledge)
    if url is None:
        return []
    try:
        with KnowledgeBase.open(url) as base:
            out = []
            for run in base.runs(kind="image"):
                examples = _examples(base.trials(run.run_id), space)
                task = {k: float(v) for k, v in run.meta_features.items() if isinstance(v, (int, float))}
                if examples:
                    out.append(PastImageRun(run.run_id, run.dataset, task, examples))
            warnings.extend(base.warnings)
            return out
    except DaedalusError as exc:
        warnings.append(f"the knowledge base was not read: {exc}")
        return []


def _examples(trials: Sequence[TrialEntry], space: ArchSpace) -> list[tuple[Genotype, float]]:
    best: dict[Genotype, float] = {}
    for trial in trials:
        genotype = trial.config.get("genotype")
        if trial.family != space.name or trial.status != "ok" or trial.score is None or not isinstance(genotype, list):
            continue
        try:
            canonical = space.canonical(space.validate(tuple(int(v) for v in genotype)))
        except (ValueError, TypeError):
            continue  # someone else's data: a network outside this space is skipped
        best[canonical] = max(best.get(canonical, float("-inf")), float(trial.score))
    return sorted(best.items(), key=lambda pair: -pair[1])


def warm_image_designer(designer: ArchDesigner, space: ArchSpace, runs: Sequence[PastImageRun],
                        task: Mapping[str, float]) -> list[dict[str, Any]]:
    """Pretrain ``designer`` on ``runs`` (if it can learn from other tasks) and queue the best networks of the
    most similar; returns what was done, for the audit log."""
    ranked = sorted(runs, key=lambda r: -task_similarity(r.task, task))[:SOURCES]
    done: list[dict[str, Any]] = []
    if isinstance(designer, Pretrainable):
        for run in ranked:
            designer.pretrain(run.examples, task=run.task)
            done.append({"pretrained_on": run.run_id, "dataset": run.dataset, "networks": len(run.examples),
                         "similarity": round(task_similarity(run.task, task), 4)})
    for run in ranked[:QUEUED_RUNS]:
        for genotype, score in run.examples[:QUEUED_PER_RUN]:
            if designer.allowed(genotype):
                reason = (f"the best network {'(1st)' if genotype == run.examples[0][0] else '(2nd)'} of past "
                          f"image run {run.run_id[:12]} on {run.dataset} (accuracy {score:.4f}, similarity "
                          f"{task_similarity(run.task, task):.2f})")
                designer.enqueue(space.name, genotype, reason, "knowledge")
                done.append({"queued": list(genotype), "run": run.run_id, "score": score})
    return done
