"""Explanations: permutation importance on held-out rows, SHAP per row, hyperparameter importance, and the
bootstrap behind "why this model"; then ``daedalus explain`` end to end on a real build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from daedalus.data import feature_layout, infer_schema, prepare_features, prepare_target
from daedalus.data.schema import Task
from daedalus.ensembles.model import EnsembleModel, Member, ModelSpec
from daedalus.evaluation.metrics import get_metric
from daedalus.evaluation.trial import EvalContext, fit_one
from daedalus.evaluation.validation import make_plan
from daedalus.oversight.heldout import FoldEnsemble, HeldOutEnsemble, raw_column_groups
from daedalus.oversight.hyperparams import hyperparameter_importance
from daedalus.oversight.shap_values import RowExplanations, explain_rows
from daedalus.oversight.why import Candidate, compare
from tests.conftest import planted_frame


def context(frame: pd.DataFrame, metric: str | None = None) -> EvalContext:
    schema = infer_schema(frame, "y")
    y = np.asarray(prepare_target(frame["y"], schema))
    task = schema.task
    return EvalContext(X=prepare_features(frame, schema), y=y, task=task,
                       n_classes=len(schema.classes) if schema.classes else 0, layout=feature_layout(schema),
                       plan=make_plan(y, task, 0, kind="kfold"), metric=get_metric(metric, task))


# -- permutation importance ------------------------------------------------------------------------------------
def test_permutation_importance_ranks_the_planted_feature_first_and_noise_near_zero():
    from daedalus.oversight.explain import permutation_importance

    frame = planted_frame()
    schema = infer_schema(frame, "y")
    ctx = context(frame)
    folds = tuple(FoldEnsemble(((1.0, fit_one(ctx, "random_forest", {"n_estimators": 50}, 0, 1, train)),), val)
                  for train, val in ctx.plan.folds)
    groups = raw_column_groups(schema)
    assert groups["day"] == [f"day__{p}" for p in ("year", "month", "day", "dayofweek", "hour", "days")]
    rows = permutation_importance(HeldOutEnsemble(folds, "test"), ctx, groups, n_rows=400, n_repeats=3, seed=0)
    by_name = {r["feature"]: r for r in rows}
    assert [r["feature"] for r in rows][0] == "signal"
    assert set(by_name) == {"signal", "noise", "color", "day"}  # raw columns: the date is one feature
    assert by_name["signal"]["mean"] > 0.2
    for name in ("noise", "color", "day"):
        assert abs(by_name[name]["mean"]) < 0.05, by_name[name]


# -- SHAP --------------------------------------------------------------------------------------------------------
def _ensemble(ctx: EvalContext, families: list[str]) -> EnsembleModel:
    members = tuple(Member(i, f, 1.0 / len(families), (f"{f}.skops",)) for i, f in enumerate(families))
    spec = ModelSpec("refit", ctx.task, ctx.n_classes, members, None)
    return EnsembleModel(spec, [[fit_one(ctx, f, {}, 0, 1)] for f in families])


def _explained(families: list[str], task: str, rows: int) -> tuple[EnsembleModel, pd.DataFrame, RowExplanations]:
    """An equal-weight ensemble of ``families`` fit on the planted frame, its first ``rows`` feature rows, and
    their explanation against the whole frame as background."""
    frame = planted_frame(task=task)
    schema = infer_schema(frame, "y")
    ctx = context(frame)
    model = _ensemble(ctx, families)
    X = ctx.X.iloc[:rows]
    return model, X, explain_rows(model, schema, X, ctx.X)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_tree_shap_values_plus_base_value_sum_to_the_models_output(task):
    model, X, result = _explained(["lightgbm", "random_forest"], task, rows=20)
    assert [m["method"] for m in result.methods] == ["tree", "tree"]
    expected = model.predict_matrix(X)
    expected = expected[:, 1] if task == "binary" else expected
    np.testing.assert_allclose(result.base_value + result.contributions.sum(axis=1), expected, atol=1e-6)
    np.testing.assert_allclose(result.prediction, expected, atol=1e-12)
    assert result.features == ["signal", "noise", "color", "day"]
    mean_abs = np.abs(result.contributions).mean(axis=0)
    assert mean_abs.argmax() == 0  # the planted feature explains most


def test_a_non_tree_member_is_explained_by_permutation_and_the_sum_still_holds():
    model, X, result = _explained(["linear", "lightgbm"], "binary", rows=5)
    assert [m["method"] for m in result.methods] == ["permutation", "tree"]
    assert result.background_rows == 100
    np.testing.assert_allclose(result.base_value + result.contributions.sum(axis=1),
                               model.predict_matrix(X)[:, 1], atol=1e-6)


# -- hyperparameter importance -----------------------------------------------------------------------------------
def test_hyperparameter_importance_on_a_real_conditional_study(tmp_path):
    """Family 'good' scores ~1 and 'bad' ~0; within 'good', good.x drives the score and good.noise does not."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)

    def objective(trial: optuna.Trial) -> float:
        family = trial.suggest_categorical("family", ["good", "bad"])
        if family == "good":
            x = trial.suggest_float("good.x", 0.0, 1.0)
            trial.suggest_float("good.noise", 0.0, 1.0)
            return 1.0 + 0.3 * x
        trial.suggest_int("bad.depth", 1, 10)
        return float(rng.normal(0.0, 0.01))

    study.optimize(objective, n_trials=40)
    flat, detail = hyperparameter_importance(study)
    assert flat["family"] > 0.7
    assert flat["good.x"] > 5 * flat.get("good.noise", 0.0)
    assert abs(sum(flat.values()) - 1.0) < 1e-6  # every family analysed: the shares add up
    assert detail["per_family"]["good"]["importances"]["good.x"] > 0.8


# -- why this model ----------------------------------------------------------------------------------------------
def _scores(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    good = np.clip(0.5 + 0.35 * (2 * y - 1) + 0.3 * rng.normal(size=n), 0.01, 0.99)
    return y, np.column_stack([1 - good, good])


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_identical_models_are_not_significantly_different(metric):
    y, p = _scores()
    why = compare(Candidate("ensemble", None, "ensemble", p), [Candidate("trial 1 (x)", 1, "x", p.copy())], y,
                  get_metric(metric, Task.BINARY), classification=True, n_resamples=200)
    runner = why["runners_up"][0]
    assert runner["advantage"] == 0 and runner["advantage_ci"] == [0.0, 0.0]
    assert not runner["significant"]
    assert "not statistically significant" in why["statement"]
    lo, hi = why["chosen"]["ci"]
    assert lo < why["chosen"]["score"] < hi


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_a_clearly_better_model_is_significant_whatever_the_metrics_direction(metric):
    y, p = _scores()
    rng = np.random.default_rng(1)
    noise = np.clip(0.5 + 0.1 * rng.normal(size=len(y)), 0.01, 0.99)
    weak = np.column_stack([1 - noise, noise])
    m = get_metric(metric, Task.BINARY)
    why = compare(Candidate("trial 0 (a)", 0, "a", p), [Candidate("trial 1 (b)", 1, "b", weak)], y, m,
                  classification=True, n_resamples=200)
    runner = why["runners_up"][0]
    assert runner["significant"] and runner["advantage"] > 0 and runner["advantage_ci"][0] > 0
    assert runner["share_chosen_better"] == 1.0
    assert "significantly better than trial 1 (b)" in why["statement"]
    # the other way round: the chosen model is the worse one, and the statement says so
    reverse = compare(Candidate("trial 1 (b)", 1, "b", weak), [Candidate("trial 0 (a)", 0, "a", p)], y, m,
                      classification=True, n_resamples=200)
    assert reverse["runners_up"][0]["advantage_ci"][1] < 0
    assert "significantly worse" in reverse["statement"]


# -- the CLI on a real build (the session's shared planted_run, from conftest.py) ---------------------------------
@pytest.mark.slow
def test_build_writes_explanations_and_explain_cli_sums_to_the_prediction(planted_run, cli, capsys, tmp_path):
    from daedalus.ensembles.predictor import Predictor
    from daedalus.interfaces.cli import main

    run = planted_run
    expl = json.loads((run / "explanations.json").read_text())
    assert expl["feature_importance"][0]["feature"] == "signal"
    assert expl["feature_importance_detail"]["rows"] > 0
    assert "statement" in expl["why"] or "skipped" in expl["why"]
    assert "family" in expl["hyperparameter_importance"]
    assert any(json.loads(line)["event"] == "explanations" for line in (run / "audit.jsonl").open())
    assert (run / "model_card.md").exists() and (run / "model_card.json").exists()

    rows = planted_frame(300).drop(columns="y").head(4)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    # explain runs the model as predict does, behind the approval gate: a peek at an unapproved model is recorded
    # in the audit log, so it goes to a copy of the shared run
    import shutil

    run = Path(shutil.copytree(planted_run, tmp_path / "run"))
    assert main(["explain", str(run), str(tmp_path / "rows.csv"), "--json", "--unapproved"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["output"] == "the probability of class 'yes'"
    assert len(record["rows"]) == 4
    proba = Predictor.load(run).predict_proba(rows)[:, 1]
    for row, p in zip(record["rows"], proba, strict=True):
        assert row["base_value"] + sum(row["contributions"].values()) == pytest.approx(p, abs=1e-6)
        assert set(row["contributions"]) == {"signal", "noise", "color", "day"}

    out = tmp_path / "contributions.csv"
    text = cli("explain", run, tmp_path / "rows.csv", "--out", out, "--top", "2", "--unapproved")
    assert text.returncode == 0, text.stderr
    assert "row 3: prediction" in text.stdout and "signal" in text.stdout
    table = pd.read_csv(out)
    assert list(table.columns) == ["row", "predicted_class", "prediction", "base_value", "signal", "noise",
                                   "color", "day"]


@pytest.mark.slow
def test_explain_rows_missing_columns_exit_2_with_one_line(planted_run, cli, tmp_path):
    planted_frame(20).drop(columns=["y", "color"]).to_csv(tmp_path / "bad.csv", index=False)
    result = cli("explain", planted_run, tmp_path / "bad.csv")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'color'" in lines[0], result.stderr
    too_many = cli("explain", planted_run, tmp_path / "bad.csv", "--max-rows", "5")
    assert too_many.returncode == 2 and "--max-rows" in too_many.stderr.strip()


@pytest.mark.slow
def test_explanations_respect_the_time_left_and_say_what_was_skipped(planted_run, tmp_path):
    import shutil

    from daedalus.deadline import Deadline
    from daedalus.oversight.explain import explain_build
    from daedalus.store.run import RunStore

    run = tmp_path / "run"
    shutil.copytree(planted_run, run)
    store = RunStore.open(run)
    study = optuna.load_study(study_name="daedalus", storage=f"sqlite:///{run / 'study.db'}")
    ctx = context(pd.read_parquet(run / "train.parquet"))
    assert explain_build(store, ctx, study, Deadline.after(0.1)) is None
    assert store.audit.records()[-1]["event"] == "explanations_skipped"

    record = explain_build(store, ctx, study, Deadline.after(1.0))  # too little to load the fold models
    assert record is not None and record["feature_importance"] == []
    assert record["feature_importance_detail"]["skipped"].startswith("not enough time left")
    assert record["seconds"] < 1.0
    last = store.audit.records()[-1]
    assert last["event"] == "explanations" and "feature_importance" in last["skipped"]


def test_every_member_is_checked_and_the_sum_holds_whatever_explains_it():
    """TreeExplainer ignores HistGradientBoosting's categorical splits (its values miss the prediction by ~0.1
    here), so each tree member's values are checked against its own output and fall back to the permutation
    explainer when they do not add up; the ensemble's values add up either way."""
    model, X, result = _explained(["hist_gb", "xgboost", "catboost", "knn"], "regression", rows=5)
    methods = {m["family"]: m["method"] for m in result.methods}
    assert methods["knn"] == "permutation" and methods["xgboost"] == "tree" and methods["catboost"] == "tree"
    np.testing.assert_allclose(result.base_value + result.contributions.sum(axis=1), model.predict_matrix(X),
                               atol=1e-6)
    assert result.additivity_error < 1e-6


@pytest.mark.slow
def test_no_explain_skips_the_explanations_but_writes_the_card(tmp_path: Path) -> None:
    from daedalus.interfaces.cli import main

    run = tmp_path / "run"
    assert main(["demo", "--trials", "1", "--families", "linear", "--no-explain", "--run", str(run), "--quiet",
                 "--threads", "1"]) == 0
    assert not (run / "explanations.json").exists()
    assert (run / "model_card.md").exists() and (run / "model_card.json").exists()
    events = [json.loads(line)["event"] for line in (run / "audit.jsonl").read_text().splitlines()]
    assert "explanations_skipped" in events and "explanations" not in events
