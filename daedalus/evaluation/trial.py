"""The trial function: fit one configuration under the validation plan and score its out-of-fold predictions.

It runs inside a worker process (see ``worker.py``). It is a pure function of its inputs, so a trial with the
same configuration and seed gives the same score, whichever process runs it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from daedalus.data.schema import FeatureLayout, Task
from daedalus.evaluation.metrics import Metric
from daedalus.evaluation.predict import predict_matrix
from daedalus.evaluation.validation import ValidationPlan, make_plan, stratified_subset
from daedalus.spaces.registry import get_family
from daedalus.store.artifacts import save_model
from daedalus.store.integrity import file_hashes
from daedalus.store.layout import member_file
from daedalus.store.run import save_fold_models


@dataclass(frozen=True)
class EvalContext:
    """Everything a trial needs about the data; built once per run and sent to each worker."""

    X: pd.DataFrame
    y: np.ndarray
    task: Task
    n_classes: int
    layout: FeatureLayout
    plan: ValidationPlan
    metric: Metric
    # The sensitive columns' values of every row (data.sensitive.sensitive_frame), None without --sensitive.
    # When fairness is part of the search, X also carries them (as __sensitive__<col>) for the mitigations.
    sensitive: pd.DataFrame | None = None


@dataclass(frozen=True)
class TrialSpec:
    number: int
    family: str
    config: dict[str, Any]
    seed: int
    n_threads: int
    out_dir: Path  # where fold models go when the trial is worth keeping
    keep_models_above: float | None = None  # utility a trial must beat to save its fold models; None: always
    # Multi-fidelity: the share of each fold's training rows the models are fit on (a stratified subset, the same
    # for every configuration); the validation rows stay whole, so scores at one fidelity compare. Models fit on
    # less than all of them are never saved: only full-fidelity trials may join the ensemble.
    fidelity: float = 1.0


@dataclass(frozen=True)
class TrialOutcome:
    score: float
    fold_scores: tuple[float, ...]
    oof: np.ndarray  # predictions on plan.scored_index, in that order
    fit_seconds: float
    predict_seconds: float
    models_saved: bool
    extra: dict[str, Any] = field(default_factory=dict)
    # {file name in the trial's directory: SHA-256}, hashed by the worker that wrote them, for the audit log
    artifacts: dict[str, str] = field(default_factory=dict)


MIN_FIDELITY_ROWS = 200  # below this, a low-fidelity fit says too little about the configuration
FIDELITY_SEED = 0


def thread_limits(n_threads: int) -> threadpool_limits:
    """OpenMP (the boosters, HistGradientBoosting) gets the trial's threads; BLAS gets one. Multi-threaded
    OpenBLAS on the small matrices of a linear model or an MLP is slower, not faster: measured on compas
    (5,410 x 161), lbfgs took 0.27 s with one BLAS thread and 6.6 s with two on a busy 2-core machine."""
    return threadpool_limits(limits={"openmp": n_threads, "blas": 1})


def fit_one(ctx: EvalContext, family: str, config: dict[str, Any], seed: int, n_threads: int,
            rows: np.ndarray | None = None) -> Any:
    """Build the configuration's estimator and fit it on ``rows`` (all rows if None)."""
    estimator = get_family(family).build(config, ctx.layout, ctx.task, seed, n_threads)
    X = ctx.X if rows is None else ctx.X.iloc[rows]
    y = ctx.y if rows is None else ctx.y[rows]
    with thread_limits(n_threads):
        estimator.fit(X, y)
    return estimator


def run_trial(ctx: EvalContext, spec: TrialSpec) -> TrialOutcome:
    n_scored = len(ctx.plan.scored_index)
    oof = np.zeros((ctx.plan.n_rows, ctx.n_classes)) if ctx.task.is_classification else np.zeros(ctx.plan.n_rows)
    models, fold_scores = [], []
    fit_seconds = predict_seconds = 0.0
    for train_rows, val_rows in ctx.plan.folds:
        t0 = time.perf_counter()
        fit_rows = fidelity_rows(ctx, train_rows, spec.fidelity)
        model = fit_one(ctx, spec.family, spec.config, spec.seed, spec.n_threads, fit_rows)
        t1 = time.perf_counter()
        with thread_limits(spec.n_threads):
            pred = predict_matrix(model, ctx.X.iloc[val_rows], ctx.task, ctx.n_classes)
        predict_seconds += time.perf_counter() - t1
        fit_seconds += t1 - t0
        oof[val_rows] = pred
        fold_scores.append(ctx.metric(ctx.y[val_rows], pred))
        models.append(model)
    scored = ctx.plan.scored_index
    oof_scored = oof[scored]
    if not np.all(np.isfinite(oof_scored)):
        raise ValueError("the model produced non-finite predictions")
    score = ctx.metric(ctx.y[scored], oof_scored)
    assert len(oof_scored) == n_scored
    keep = spec.fidelity >= 1.0 and (spec.keep_models_above is None
                                     or ctx.metric.utility(score) > spec.keep_models_above)
    artifacts: dict[str, str] = {}
    if keep:
        artifacts = save_fold_models(spec.out_dir, models, spec.family)
    return TrialOutcome(score=score, fold_scores=tuple(fold_scores), oof=oof_scored, fit_seconds=fit_seconds,
                        predict_seconds=predict_seconds, models_saved=keep, artifacts=artifacts)


def fidelity_rows(ctx: EvalContext, train_rows: np.ndarray, fidelity: float) -> np.ndarray:
    """The training rows a trial at ``fidelity`` fits on: all of ``train_rows``, or a stratified share of them
    (at least ``MIN_FIDELITY_ROWS``), drawn with a fixed seed so every configuration sees the same rows."""
    if fidelity >= 1.0:
        return train_rows
    n = max(MIN_FIDELITY_ROWS, round(fidelity * len(train_rows)))
    return train_rows[stratified_subset(ctx.y[train_rows], ctx.task.is_classification, n, seed=FIDELITY_SEED)]


def run_trial_shipped(ctx: EvalContext, spec: TrialSpec) -> tuple[TrialOutcome, dict[str, bytes]]:
    """``run_trial`` on a machine that may not share the run's directory (a Ray node): the fold models are written
    to a temporary directory there and come back as bytes, with their SHA-256 in ``outcome.artifacts`` as the
    worker measured them, for the run to write (``store.run.save_shipped_files``)."""
    with tempfile.TemporaryDirectory(prefix="daedalus-trial-") as tmp:
        outcome = run_trial(ctx, replace(spec, out_dir=Path(tmp)))
        files = {name: (Path(tmp) / name).read_bytes() for name in outcome.artifacts}
    return outcome, files


def refit_full(ctx: EvalContext, members: list[tuple[str, dict[str, Any], int]], n_threads: int,
               out_dir: Path) -> dict[str, str]:
    """Fit each ensemble member (family, config, seed) on all rows and save it under ``member_file(i)``; returns
    {file name: SHA-256} of what it wrote (hashed here, by the process that wrote the files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [member_file(i) for i in range(len(members))]
    for name, (family, config, seed) in zip(names, members, strict=True):
        save_model(fit_one(ctx, family, config, seed, n_threads), out_dir / name)
    return file_hashes(out_dir, names)


def bag_prediction_on_first_fold(ctx: EvalContext, members: list[tuple[str, dict[str, Any], int, float]],
                                 n_threads: int) -> np.ndarray:
    """What a *bag* of the ensemble would predict on the first fold's validation rows, trained only on that
    fold's training rows: each member fit once per inner fold of those rows, its models averaged, the members
    weighted. Set beside the first fold's out-of-fold predictions (one model per member on all the training
    rows, i.e. a refit), it measures bagging against refitting on equal data and equal validation rows."""
    train_rows, val_rows = ctx.plan.folds[0]
    inner = make_plan(ctx.y[train_rows], ctx.task, seed=1, kind="kfold").folds
    X_val = ctx.X.iloc[val_rows]
    total: np.ndarray | None = None
    for family, config, seed, weight in members:
        preds = []
        for inner_train, _ in inner:
            model = fit_one(ctx, family, config, seed, n_threads, train_rows[inner_train])
            with thread_limits(n_threads):
                preds.append(predict_matrix(model, X_val, ctx.task, ctx.n_classes))
        bag = weight * np.mean(preds, axis=0)
        total = bag if total is None else total + bag
    assert total is not None
    return total
