"""Low-fidelity table trials (issue 13, item 7's first step): a trial fit on a stratified share of each fold's
training rows, scored on the whole validation rows, its models never kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from daedalus.data import infer_schema
from daedalus.evaluation.trial import MIN_FIDELITY_ROWS, TrialSpec, fidelity_rows, run_trial
from daedalus.orchestration.build import eval_context
from daedalus.orchestration.options import BuildOptions


def _context(n: int = 4_000):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    frame["y"] = np.where(frame["a"] - frame["b"] + rng.normal(size=n) > 1.2, "yes", "no")  # ~ 20% "yes"
    return eval_context(frame, infer_schema(frame, "y"), BuildOptions(target="y", n_trials=1))


def test_a_low_fidelity_fold_fits_on_a_stratified_share_of_its_training_rows() -> None:
    ctx = _context()
    train, _ = ctx.plan.folds[0]
    assert fidelity_rows(ctx, train, 1.0) is train
    third = fidelity_rows(ctx, train, 1 / 3)
    assert len(third) == round(len(train) / 3) and set(third) <= set(train)
    assert abs(ctx.y[third].mean() - ctx.y[train].mean()) < 0.005  # the classes' shares kept
    assert np.array_equal(third, fidelity_rows(ctx, train, 1 / 3))  # the same rows for every configuration
    assert len(fidelity_rows(ctx, train, 0.001)) == MIN_FIDELITY_ROWS


def test_a_low_fidelity_trial_is_scored_on_every_validation_row_and_keeps_no_model(tmp_path: Path) -> None:
    ctx = _context()

    def spec(fidelity: float, out: str) -> TrialSpec:
        return TrialSpec(number=0, family="linear", config={}, seed=0, n_threads=1, out_dir=tmp_path / out,
                         fidelity=fidelity)

    full = run_trial(ctx, spec(1.0, "full"))
    low = run_trial(ctx, spec(0.1, "low"))
    assert full.models_saved and list((tmp_path / "full").glob("*.skops"))
    assert not low.models_saved and not (tmp_path / "low").exists()
    assert low.oof.shape == full.oof.shape  # every scored row, at either fidelity
    assert not np.allclose(low.oof, full.oof) and np.isfinite(low.score)
