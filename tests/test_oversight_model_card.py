"""Model cards: every section of Mitchell et al. 2019, per-group results from a real fairness record, the intended
use from the build option or the attached policy (or an explicit warning), and ``daedalus card`` on the CLI.

The run directories are written with the run store, as a build writes them; the fairness record is made by the
fairness module from synthetic predictions with a planted gap between groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daedalus.data import infer_schema
from daedalus.data.schema import Task
from daedalus.ensembles.model import Member, ModelSpec
from daedalus.oversight.approval import attach_policy
from daedalus.oversight.fairness import ReportInput, fairness_report, parse_constraint
from daedalus.oversight.model_card import NOT_MEASURED, SECTIONS, TITLES, model_card, write_model_card
from daedalus.store.run import RunStore

HEADINGS = [f"## {i}. {TITLES[s]}" for i, s in enumerate(SECTIONS, start=1)]


def make_run(root: Path, intended_use: str | None = None, sensitive: tuple[str, ...] = ()) -> RunStore:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(size=50), "sex": rng.choice(["F", "M"], 50),
                          "y": rng.choice(["no", "yes"], 50)})
    schema = infer_schema(frame, "y")
    options = {"target": "y", "seed": 0, "time_budget": 60.0, "metric": None, "intended_use": intended_use,
               "sensitive": list(sensitive), "use_sensitive": False, "fairness": None}
    store = RunStore.create(root, {"options": options, "status": "finished", "data_source": "credit.csv",
                                   "created": 1.7e9, "validation": "5-fold cross-validation on 50 rows",
                                   "metric": "roc_auc", "task": "binary", "families": ["linear", "lightgbm"],
                                   "elapsed_seconds": 12.5})
    store.write("schema", {**schema.to_dict(), "sensitive": list(sensitive)})
    store.write("checks", {"findings": [{"check": "missing_values", "severity": "info",
                                         "message": "0.0% of feature cells are missing"}],
                           "rows_without_target_dropped": 0})
    store.audit.append("trial_proposed", trial=1, family="lightgbm", config={"num_leaves": 31}, designer="portfolio",
                       reason="portfolio")
    store.write("leaderboard", [
        {"rank": 1, "trial": None, "family": "ensemble", "score": 0.81, "status": "ok", "metric": "roc_auc",
         "fit_seconds": 1.0},
        {"rank": 2, "trial": 1, "family": "lightgbm", "score": 0.80, "status": "ok", "metric": "roc_auc",
         "fit_seconds": 1.0},
        {"rank": 3, "trial": 0, "family": "linear", "score": 0.75, "status": "ok", "metric": "roc_auc",
         "fit_seconds": 1.0}])
    spec = ModelSpec("bagged", Task.BINARY, 2, (Member(1, "lightgbm", 1.0, ("t1_fold_0.skops",)),), 0.81)
    (root / "model").mkdir()
    (root / "model" / "model.json").write_text(json.dumps(spec.to_dict()))
    store.write("explanations", {
        "version": 1, "feature_importance": [{"feature": "income", "mean": 0.12, "std": 0.01}],
        "feature_importance_detail": {"rows": 50}, "hyperparameter_importance": {"family": 0.7},
        "hyperparameter_importance_detail": {},
        "why": {"statement": "The ensemble was chosen because ...", "chosen": {"label": "ensemble", "trial": None},
                "runners_up": [{"label": "trial 1 (lightgbm)", "significant": False}]}})
    return store


def planted_fairness(n: int = 400) -> dict:
    """Group F is selected far less often than M: a demographic parity gap of about 0.4."""
    rng = np.random.default_rng(1)
    sensitive = pd.DataFrame({"sex": rng.choice(["F", "M"], n), "race": rng.choice(["A", "B"], n)})
    y = rng.integers(0, 2, n)
    p1 = np.where(sensitive["sex"] == "M", 0.7, 0.3) + 0.2 * (y - 0.5)
    pred = np.column_stack([1 - p1, p1])
    return fairness_report(ReportInput(Task.BINARY, y, pred, sensitive, ("no", "yes"), "out-of-fold predictions"),
                           parse_constraint("demographic_parity_difference<=0.05"))


def test_the_card_has_every_section_and_says_what_was_not_measured(tmp_path):
    make_run(tmp_path / "run")
    md_path, json_path = write_model_card(tmp_path / "run")
    card = json.loads(json_path.read_text())
    assert [k for k in card if k in SECTIONS] == list(SECTIONS)
    md = md_path.read_text()
    assert [h for h in md.splitlines() if h.startswith("## ")] == HEADINGS
    assert card["quantitative_analyses"]["fairness"] == NOT_MEASURED
    assert card["factors"]["groups_evaluated"] == NOT_MEASURED
    assert NOT_MEASURED in md
    assert card["intended_use"]["primary_use"] is None
    assert "no intended use was stated" in md.split("## 1.")[0]  # the warning stands above every section
    assert card["model_details"]["members"][0]["hyperparameters"] == {"num_leaves": 31}
    assert "The ensemble was chosen because" in md
    assert "not significantly better than trial 1 (lightgbm)" in md
    assert "Audit log: hash chain intact." in card["caveats_and_recommendations"]
    assert any(c.startswith("Approval: NOT approved") for c in card["caveats_and_recommendations"])


def test_per_group_results_come_from_fairness_json(tmp_path):
    store = make_run(tmp_path / "run", intended_use="Pre-screening; a person decides.", sensitive=("sex", "race"))
    fairness = planted_fairness()
    store.write("fairness", fairness)
    card = model_card(store.root)
    md_path, _ = write_model_card(store.root, tmp_path / "out")
    md = md_path.read_text()
    quantitative = card["quantitative_analyses"]["fairness"]
    assert quantitative["by_group"] == fairness["by_group"]
    female = next(g for g in fairness["by_group"] if g["column"] == "sex" and g["group"] == "F")
    male = next(g for g in fairness["by_group"] if g["column"] == "sex" and g["group"] == "M")
    assert male["selection_rate"] - female["selection_rate"] > 0.3  # the planted gap, as the fairness module saw it
    assert "| sex | F |" in md and f"{female['selection_rate']:.4f}" in md and f"{male['selection_rate']:.4f}" in md
    assert any(row["group"] == "F & A" for row in quantitative["intersectional"])
    assert "F & A" in md
    assert card["factors"]["sensitive_columns"] == ["sex", "race"]
    assert "sex=F" in card["factors"]["groups_evaluated"]
    dp = fairness["differences"]["demographic_parity_difference"]
    assert f"demographic_parity_difference = {dp:.4f}" in " ".join(card["ethical_considerations"])
    assert any("NOT met" in e for e in card["ethical_considerations"])  # a 0.4 gap breaks the <= 0.05 constraint
    assert card["intended_use"] == {**card["intended_use"], "primary_use": "Pre-screening; a person decides.",
                                    "source": "--intended-use", "warning": None}
    assert NOT_MEASURED not in md


def test_intended_use_falls_back_to_the_attached_policy(tmp_path):
    store = make_run(tmp_path / "run")
    policy = tmp_path / "policy.toml"
    policy.write_text('intended_use = "Ranking support tickets for a human triager."\n\n[gates]\nreviewers = 1\n')
    attach_policy(store, policy)
    card = model_card(store.root)
    assert card["intended_use"]["primary_use"] == "Ranking support tickets for a human triager."
    assert card["intended_use"]["source"].startswith("policy")
    assert card["intended_use"]["warning"] is None


def test_card_cli_writes_both_files_and_refuses_a_non_run(tmp_path, cli):
    make_run(tmp_path / "run")
    result = cli("card", tmp_path / "run", "--out", tmp_path / "cards")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cards" / "model_card.md").exists() and (tmp_path / "cards" / "model_card.json").exists()
    bad = cli("card", tmp_path / "nowhere")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "not a Daedalus run" in bad.stderr


@pytest.mark.parametrize("missing", ["explanations.json", "leaderboard.json"])
def test_a_card_is_written_for_a_run_missing_an_optional_record(tmp_path, missing):
    make_run(tmp_path / "run")
    (tmp_path / "run" / missing).unlink()
    card = model_card(tmp_path / "run")
    assert [k for k in card if k in SECTIONS] == list(SECTIONS)
