"""What a finished run writes into the knowledge base (``store/knowledge.py``): its meta-features and every
trial, so that later runs can learn from it (issue 12).

Both kinds of build call one function at their end: ``record_table_run`` (the Optuna study's trials: family,
configuration, score, fit time, status) and ``record_image_run`` (the searched networks: genotype,
architecture, epochs). ``--knowledge off`` records nothing.

Recording never fails a build: the run is finished and on disk before it starts, and a base that cannot be
opened or written (a damaged file, a server out of reach, a directory that cannot be written) costs only a
``knowledge_warning`` record in the run's audit log and a line from the reporter. A run recorded is audited
(``knowledge_recorded``: where, as which id, how many trials), so a user knows what ``knowledge forget`` removes.
"""

from __future__ import annotations

import math
import numbers
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from daedalus.data.fingerprint import fingerprint
from daedalus.data.schema import Schema
from daedalus.designers.optuna_designer import FAMILY_PARAM, SKIPPED, STATUS_ATTR, split_params
from daedalus.evaluation.trial import EvalContext
from daedalus.orchestration.image_warm import image_task
from daedalus.orchestration.loop import TrialRecord
from daedalus.orchestration.reporter import Reporter
from daedalus.store.knowledge import KnowledgeBase, RunEntry, TrialEntry, chosen_url, describe_url
from daedalus.store.layout import META_FEATURES
from daedalus.store.run import RunStore

__all__ = ["RUN_ID_FIELD", "image_trials", "record_image_run", "record_run",
           "record_table_run", "run_id", "table_trials"]

RUN_ID_FIELD = "run_id"  # in run.json: the run's id in the knowledge base, given at its first recording
IMAGE_CONFIG = ("genotype", "architecture", "epochs", "params")  # what an image trial's entry keeps
_STATES = {TrialState.COMPLETE: "ok", TrialState.FAIL: "error", TrialState.PRUNED: "pruned"}


def run_id(store: RunStore) -> str:
    """The run's id in the knowledge base: kept in its run.json, given (a random UUID) the first time it is
    recorded, so that a resumed run replaces its entries instead of adding a second run."""
    info = store.read("run")
    existing = info.get(RUN_ID_FIELD)
    if isinstance(existing, str) and existing:
        return existing
    new = uuid.uuid4().hex
    store.update_run(**{RUN_ID_FIELD: new})
    return new


def record_table_run(store: RunStore, study: optuna.Study, ctx: EvalContext, schema: Schema, knowledge: str | None,
                     reporter: Reporter) -> bool:
    """Record a finished table run (its study's trials); False when nothing was recorded (off, or a warning)."""
    return record_run(store, "table", lambda: table_trials(study), knowledge, reporter, n_rows=len(ctx.y),
                      n_features=len(schema.feature_columns), greater_is_better=ctx.metric.greater_is_better,
                      table=fingerprint(schema).to_dict())


def record_image_run(store: RunStore, records: Sequence[TrialRecord], shape: tuple[int, int, int], n_images: int,
                     n_classes: int, knowledge: str | None, reporter: Reporter) -> bool:
    """Record a finished image run (its searched networks). Its meta-features, until image runs compute their
    own, are the images' shape and the number of classes: what a later image build compares."""
    channels, height, width = shape
    described: dict[str, float | None] = {**image_task(n_classes, shape, n_images)}
    return record_run(store, "image", lambda: image_trials(records), knowledge, reporter, n_rows=n_images,
                      n_features=channels * height * width, greater_is_better=True, default_meta=described)


def record_run(store: RunStore, kind: str, trials: Callable[[], list[TrialEntry]], knowledge: str | None,
               reporter: Reporter, *, n_rows: int, n_features: int, greater_is_better: bool,
               default_meta: dict[str, float | None] | None = None, table: dict[str, Any] | None = None) -> bool:
    """Write the run and ``trials()`` (a callable: reading them may fail too, and must not fail the build) into
    the base ``knowledge`` (None: the default file; "off": nothing); ``table``: a table's fingerprint. Never
    raises for a base that cannot be used: the failure is audited as ``knowledge_warning`` and reported."""
    url = chosen_url(knowledge)
    if url is None:
        return False
    where = describe_url(url)
    try:
        entries: list[TrialEntry] = trials()
        run = replace(_run_entry(store, kind, entries, n_rows, n_features, greater_is_better, default_meta or {}),
                      fingerprint=table)
        with KnowledgeBase.open(url) as base:
            base.record_run(run, entries)
    # Why everything is caught: the run is finished and saved; nothing about the knowledge base (a damaged file,
    # a server down, a driver missing, a row it refuses) may turn it into a failed build.
    except Exception as exc:
        error = _one_line(exc)
        store.audit.append("knowledge_warning", knowledge=where, error=error)
        reporter.message(f"warning: this run was not recorded in the knowledge base {where} ({error}); the build "
                         "is unaffected; fix or move the base, or pass --knowledge off")
        return False
    store.audit.append("knowledge_recorded", knowledge=where, run_id=run.run_id, trials=len(entries))
    return True


def table_trials(study: optuna.Study) -> list[TrialEntry]:
    """A table run's finished trials (running and waiting ones are not results yet), by number."""
    out = []
    for t in study.get_trials(deepcopy=False, states=tuple(_STATES)):
        if FAMILY_PARAM not in t.params:
            continue
        family, config = split_params(t.params)
        score = t.value if t.state == TrialState.COMPLETE else None
        status = t.user_attrs.get(STATUS_ATTR, _STATES[t.state])
        if status == SKIPPED:  # queued, dropped before it ran: no result to learn from
            continue
        out.append(TrialEntry(number=t.number, space="table", family=str(family), config=config,
                              score=_number(score), fit_seconds=_number(t.user_attrs.get("fit_seconds")),
                              status=str(status)))
    return out


def image_trials(records: Sequence[TrialRecord]) -> list[TrialEntry]:
    """An image run's searched networks: the genotype (what a designer is told again), its readable form and
    the epochs it was trained for (a candidate stopped at a low rung scored lower than it would have)."""
    out = []
    for r in sorted(records, key=lambda r: r.number):
        config: dict[str, Any] = {key: r.extra[key] for key in IMAGE_CONFIG if key in r.extra}
        out.append(TrialEntry(number=r.number, space="image", family=r.family, config=config,
                              score=_number(r.score), fit_seconds=_number(r.fit_seconds), status=r.status))
    return out


def _run_entry(store: RunStore, kind: str, trials: list[TrialEntry], n_rows: int, n_features: int,
               greater_is_better: bool, default_meta: dict[str, float | None]) -> RunEntry:
    info = store.read("run")
    source = info.get("data_source")
    dataset = Path(source).name if isinstance(source, str) and source != "<DataFrame>" else "<DataFrame>"
    scores = [t.score for t in trials if t.status == "ok" and t.score is not None]
    best = (max(scores) if greater_is_better else min(scores)) if scores else None
    return RunEntry(run_id=run_id(store), kind=kind, task=str(info.get("task", kind)),
                    metric=str(info.get("metric", "")), greater_is_better=greater_is_better, n_rows=int(n_rows),
                    n_features=int(n_features), meta_features=_meta_features(store) or default_meta,
                    created=float(info.get("created") or 0.0), dataset=dataset, best_score=best)


def _meta_features(store: RunStore) -> dict[str, float | None]:
    """The run's meta-features (``MetaFeatures.to_dict()``: {"values": {...}, "seconds": s}), numbers only;
    {} when the run has none."""
    saved = store.read(META_FEATURES, default={})
    values = saved.get("values") if isinstance(saved, dict) else None
    if not isinstance(values, dict):
        return {}
    return {str(k): _number(v) for k, v in values.items()
            if v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))}


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
