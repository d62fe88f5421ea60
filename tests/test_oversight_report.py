"""``daedalus report``: real runs (tabular binary, regression, image) reported and opened in headless Chromium.

The page must draw every plot it holds, log no console error and fetch nothing from the network (the checker in
``browser.py`` aborts and records any request that is not the file itself). The checker is itself tested on
broken pages, so a report that fails to render cannot pass.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from browser import PageCheck, check_page

from daedalus.interfaces.cli import main
from daedalus.oversight.report import render
from daedalus.oversight.report_html import figure, page, section
from daedalus.oversight.run_record import load_run

TABULAR_FIGURES = {"fig-best-over-time", "fig-trial-share", "fig-roc", "fig-calibration"}


def _report(run: Path, out: Path) -> tuple[str, PageCheck]:
    assert main(["report", str(run), "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8"), check_page(out)


def _assert_clean(check: PageCheck, figures: set[str]) -> None:
    assert check.console_errors == []
    assert check.network_requests == []
    assert figures <= set(check.graphs), f"missing figures: {figures - set(check.graphs)}"
    assert check.undrawn == [], f"plots not drawn: {check.undrawn}"


# -- the checker itself ----------------------------------------------------------------------------------------
def test_checker_catches_a_script_error_and_an_undrawn_graph(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"  # plotly.js never loaded: the call fails and the graph stays empty
    broken.write_text('<html><body><div class="plotly-graph-div" id="g"></div>'
                      "<script>Plotly.newPlot('g', [{y: [1, 2]}]);</script></body></html>")
    check = check_page(broken, render_timeout_ms=2000)  # it will never draw: do not wait long
    assert any("Plotly is not defined" in e for e in check.console_errors)
    assert check.undrawn == ["g"]


def test_checker_catches_a_console_error_and_a_network_request(tmp_path: Path) -> None:
    online = tmp_path / "online.html"
    online.write_text('<html><head><script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script></head>'
                      "<body><script>console.error('boom')</script></body></html>")
    check = check_page(online)
    assert check.network_requests == ["https://cdn.plot.ly/plotly-2.35.2.min.js"]
    assert "boom" in check.console_errors


def test_checker_passes_a_page_drawn_by_the_inlined_plotly(tmp_path: Path) -> None:
    good = tmp_path / "good.html"
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    good.write_text(page("t", [section("s", "S", figure(fig, "one", ""))], [("s", "S")]), encoding="utf-8")
    check = check_page(good)
    _assert_clean(check, {"fig-one"})
    assert check.graphs["fig-one"] == 1


# -- user mistakes ---------------------------------------------------------------------------------------------
def test_report_of_a_folder_that_is_not_a_run_is_a_user_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a Daedalus run directory" in err and len(err.strip().splitlines()) == 1


def test_report_into_a_missing_folder_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.json").write_text("{}")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "nope" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_run_that_has_only_begun_is_reported_with_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"options": {"target": "y"}, "status": "running"}))
    html = render(load_run(tmp_path))
    for missing in ("this run has no audit.jsonl", "No trial result is in the audit log yet", "No leaderboard yet",
                    "this run has no explanations.json", "No predictions of a final model", "no fairness.json",
                    "searched a single objective"):
        assert missing in html


# -- a tabular binary run --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def binary_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    n = 300
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    group = rng.choice(["a", "b"], size=n)
    logit = 1.5 * x1 - x2 + (group == "a")
    frame = pd.DataFrame({"x1": x1, "x2": x2, "group": group,
                          "label": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")})
    root = tmp_path_factory.mktemp("report")
    frame.to_csv(root / "binary.csv", index=False)
    run = root / "binary-run"
    assert main(["build", str(root / "binary.csv"), "--target", "label", "--trials", "4", "--families",
                 "linear,lightgbm", "--sensitive", "group", "--objectives", "metric,fairness", "--run", str(run),
                 "--quiet", "--threads", "1"]) == 0
    return run


@pytest.fixture(scope="module")
def binary_report(binary_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, PageCheck]:
    return _report(binary_run, tmp_path_factory.mktemp("out") / "binary.html")


@pytest.mark.slow
def test_tabular_report_draws_its_plots_without_errors(binary_report: tuple[str, PageCheck]) -> None:
    html, check = binary_report
    # fairness.json, pareto.json and explanations.json come from the build itself (--sensitive, --objectives)
    _assert_clean(check, TABULAR_FIGURES | {"fig-fair-by_group", "fig-fair-intersectional", "fig-pareto",
                                            "fig-hp-importance", "fig-feature-importance"})
    assert check.graphs["fig-fair-by_group"] == 2  # one bar trace per group of the sensitive column
    assert "Audit log: intact" in check.text
    for heading in ("Run summary", "Leaderboard", "Explanations", "Final model performance", "Fairness by group",
                    "Pareto front", "Decisions and steering"):
        assert heading in check.text
    assert "No fairness constraint was set" in check.text
    assert "https://" not in html.split("<script>", 1)[0]  # nothing before the inlined library points outside


@pytest.mark.slow
def test_tabular_report_shows_the_final_models_out_of_fold_score(binary_run: Path,
                                                                 binary_report: tuple[str, PageCheck]) -> None:
    """The ROC curve is drawn from the ensemble rebuilt from its members' stored predictions: its score must
    be the one the run selected the ensemble on."""
    board = json.loads((binary_run / "leaderboard.json").read_text())
    ensemble = next(row for row in board if row["family"] == "ensemble")
    assert f"out-of-fold roc_auc {ensemble['score']:.5g}" in binary_report[1].text


def _documented_oversight_files(run: Path) -> None:
    """explanations.json, fairness.json and pareto.json in the formats documented in explain.py, fairness.py and
    image_build.py (this test is about drawing them; their producers have tests of their own)."""
    explanations = {
        "version": 1,
        "feature_importance": [{"feature": "x1", "mean": 0.12, "std": 0.01}, {"feature": "x2", "mean": 0.05,
                                                                              "std": 0.02},
                               {"feature": "group", "mean": 0.01, "std": 0.005}],
        "feature_importance_detail": {"metric": "roc_auc", "rows": 300, "repeats": 5, "model": "fold models"},
        "hyperparameter_importance": {"family": 0.6, "lightgbm.num_leaves": 0.3, "linear.C": 0.1},
        "hyperparameter_importance_detail": {"evaluator": "fanova", "trials": 4},
        "why": {"metric": "roc_auc", "greater_is_better": True, "rows": 300, "resamples": 200, "confidence": 0.95,
                "method": "paired bootstrap", "chosen": {"label": "ensemble", "trial": None, "family": "ensemble",
                                                         "score": 0.81, "ci": [0.76, 0.86]},
                "runners_up": [{"label": "trial 1 (lightgbm)", "trial": 1, "family": "lightgbm", "score": 0.8,
                                "ci": [0.75, 0.85], "advantage": 0.01, "advantage_ci": [-0.01, 0.03],
                                "significant": False, "share_chosen_better": 0.8}],
                "statement": "The difference from trial 1 (lightgbm) is not statistically significant."},
        "seconds": 1.2}
    metrics = {"selection_rate": 0.4, "tpr": 0.7, "fpr": 0.2, "accuracy": 0.75, "auc": 0.8}
    fairness = {
        "version": 1, "task": "binary", "sensitive": ["group"], "used_as_features": True, "rows": 300,
        "source": "out-of-fold predictions of the final model", "positive_class": "yes",
        "metrics": [*metrics, "count"], "overall": {**metrics, "count": 300},
        "by_group": [{"column": "group", "group": "a", "small": False, **metrics, "count": 150},
                     {"column": "group", "group": "b", "small": False, **metrics, "selection_rate": 0.2,
                      "count": 150}],
        "intersectional": [{"group": "a", "values": {"group": "a"}, "small": False, **metrics, "count": 150},
                           {"group": "b", "values": {"group": "b"}, "small": False, **metrics, "count": 150}],
        "differences": {"demographic_parity_difference": 0.2, "equalized_odds_difference": 0.0},
        "differences_by_column": {"group": {"demographic_parity_difference": 0.2}}, "max_gap": 0.2,
        "constraint": {"expression": "demographic_parity_difference<=0.05", "metric": "demographic_parity_difference",
                       "limit": 0.05, "value": 0.2, "se": 0.05, "bound": 0.25, "z": 1.0, "met": False,
                       "small_groups": []}}
    pareto = {"objectives": ["roc_auc", "demographic_parity_difference"],
              "front": [{"trial": 0, "roc_auc": 0.78, "demographic_parity_difference": 0.02},
                        {"trial": 1, "roc_auc": 0.80, "demographic_parity_difference": 0.2}]}
    for name, obj in (("explanations", explanations), ("fairness", fairness), ("pareto", pareto)):
        (run / f"{name}.json").write_text(json.dumps(obj))


@pytest.mark.slow
def test_oversight_files_are_drawn(binary_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(binary_run, run)
    _documented_oversight_files(run)
    _, check = _report(run, tmp_path / "r.html")
    _assert_clean(check, TABULAR_FIGURES | {"fig-hp-importance", "fig-feature-importance", "fig-why",
                                            "fig-fair-by_group", "fig-fair-intersectional", "fig-pareto"})
    assert check.graphs["fig-fair-by_group"] == 2  # one bar trace per group
    assert "Constraint demographic_parity_difference<=0.05: NOT met" in check.text
    assert "not statistically significant" in check.text


@pytest.mark.slow
def test_damaged_inputs_are_named_not_hidden(binary_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(binary_run, run)
    lines = (run / "audit.jsonl").read_text().splitlines()
    edited: dict[str, Any] = json.loads(lines[3])
    edited["tampered"] = True
    lines[3] = json.dumps(edited, sort_keys=True)
    (run / "audit.jsonl").write_text("\n".join(lines) + "\n")
    (run / "fairness.json").write_text("{not json")
    html = render(load_run(run))
    assert "Audit log: BROKEN at record 4" in html
    assert "fairness.json could not be read" in html


@pytest.mark.slow
def test_approval_and_its_record_are_shown(binary_run: Path, tmp_path: Path, reviewers: dict) -> None:
    run = tmp_path / "run"
    shutil.copytree(binary_run, run)
    assert "the model is NOT approved for use" in render(load_run(run))
    assert main(["approve", str(run), "--by", "alice", "--reason", "checked the fairness section"]) == 0
    html = render(load_run(run))
    assert "the model is approved for use (approved by alice)" in html
    assert "checked the fairness section" in html  # the decision's row, from the audit log


# -- regression and image runs ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_regression_report_draws_residuals(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2))
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": 3 * x[:, 0] - x[:, 1] + rng.normal(size=200)})
    frame.to_csv(tmp_path / "reg.csv", index=False)
    assert main(["build", str(tmp_path / "reg.csv"), "--target", "y", "--trials", "2", "--families", "linear",
                 "--run", str(tmp_path / "run"), "--quiet", "--threads", "1"]) == 0
    _, check = _report(tmp_path / "run", tmp_path / "r.html")
    _assert_clean(check, {"fig-best-over-time", "fig-residuals", "fig-residual-histogram"})
    assert "fig-roc" not in check.graphs
    assert "Not computed: this run has no fairness.json" in check.text  # absent parts are named, not hidden
    assert "Not computed: the run searched a single objective" in check.text


@pytest.mark.slow
def test_image_report_draws_the_pareto_front_and_designers(digits_csv: Path, tmp_path: Path) -> None:
    run = tmp_path / "digits"
    assert main(["build", str(digits_csv), "--target", "digit", "--image-shape", "8x8x1", "--trials", "4",
                 "--final-epochs", "1", "--time", "300", "--max-params", "20000", "--designer", "evolution",
                 "--objective", "accuracy,params", "--run", str(run), "--quiet", "--threads", "1"]) == 0
    _, check = _report(run, tmp_path / "r.html")
    # ROC and calibration come from the final network's predictions on the held-out images
    _assert_clean(check, {"fig-best-over-time", "fig-trial-share", "fig-pareto", "fig-roc", "fig-calibration"})
    assert "trials per designer" in check.text
    assert "held-out images" in check.text
