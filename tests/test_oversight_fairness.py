"""Fairness: metrics against hand-computed values, the constraint's parsing, the mitigations as estimators,
CLI errors, and real builds on data with a planted bias (the unconstrained model breaks the constraint, the
constrained one meets it, on fresh rows too)."""

import json

import numpy as np
import pandas as pd
import pytest
from test_cli_errors import assert_user_error

from daedalus.data.schema import Task
from daedalus.data.sensitive import group_labels, with_sensitive_columns
from daedalus.designers.pareto import pareto_front
from daedalus.errors import ConfigError
from daedalus.oversight.fairness import (
    MIN_GROUP_ROWS,
    ReportInput,
    fairness_gap,
    fairness_report,
    parse_constraint,
)
from daedalus.spaces.registry import get_family
from daedalus.store.artifacts import load_model, save_model


# -- metrics against an oracle --------------------------------------------------------------------------------
def _tiny():
    """Eight rows, two sensitive columns. Decisions = argmax of the probabilities."""
    sens = pd.DataFrame({"sex": ["F", "F", "F", "F", "M", "M", "M", "M"],
                         "race": ["a", "a", "b", "b", "a", "a", "b", "b"]})
    y = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    p1 = np.array([0.9, 0.2, 0.4, 0.3, 0.8, 0.7, 0.6, 0.1])  # decisions 1 0 0 0 1 1 1 0
    return sens, y, np.column_stack([1 - p1, p1])


def test_binary_metrics_match_hand_computation():
    sens, y, pred = _tiny()
    rec = fairness_report(ReportInput(Task.BINARY, y, pred, sens, ("no", "yes"), "oracle"))
    by = {(r["column"], r["group"]): r for r in rec["by_group"]}
    # F: y 1 0 1 0, decisions 1 0 0 0 -> selection 1/4, TPR 1/2, FPR 0/2, accuracy 3/4
    f = by[("sex", "F")]
    assert (f["selection_rate"], f["tpr"], f["fpr"], f["accuracy"], f["count"]) == (0.25, 0.5, 0.0, 0.75, 4)
    # M: y 1 0 1 1, decisions 1 1 1 0 -> selection 3/4, TPR 2/3, FPR 1/1, accuracy 2/4
    m = by[("sex", "M")]
    assert m["selection_rate"] == 0.75 and m["tpr"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["fpr"] == 1.0 and m["accuracy"] == 0.5
    # AUC of F: positives score 0.9, 0.4; negatives 0.2, 0.3 -> every pair ordered right: 1.0
    assert f["auc"] == 1.0
    # intersectional "F & b": y 1 0, decisions 0 0 -> selection 0, TPR 0, FPR 0, accuracy 1/2; "M & b": y 1 1,
    # no negative -> FPR and AUC undefined (null)
    inter = {r["group"]: r for r in rec["intersectional"]}
    assert inter["F & b"]["selection_rate"] == 0.0 and inter["F & b"]["accuracy"] == 0.5
    assert inter["M & b"]["fpr"] is None and inter["M & b"]["auc"] is None
    assert inter["F & a"]["values"] == {"sex": "F", "race": "a"}
    # intersectional selection rates: F&a 1/2, F&b 0, M&a 1, M&b 1/2 -> demographic parity difference 1.0
    assert rec["differences"]["demographic_parity_difference"] == 1.0
    # by sex: 0.75 - 0.25
    assert rec["differences_by_column"]["sex"]["demographic_parity_difference"] == 0.5
    # equalized odds by sex: max(|TPR 1/2 - 2/3|, |FPR 0 - 1|) = 1
    assert rec["differences_by_column"]["sex"]["equalized_odds_difference"] == 1.0
    assert rec["overall"]["selection_rate"] == 0.5 and rec["overall"]["count"] == 8
    assert rec["max_gap"] == max(rec["differences"].values())
    assert all(r["small"] for r in rec["by_group"])  # 4 rows < MIN_GROUP_ROWS
    json.dumps(rec)  # JSON-ready: no NaN, no numpy types


def test_regression_metrics_match_hand_computation():
    sens = pd.DataFrame({"g": ["a", "a", "b", "b"]})
    y = np.array([1.0, 2.0, 3.0, 5.0])
    pred = np.array([2.0, 2.0, 3.0, 2.0])  # errors: a 1, 0 ; b 0, 3
    rec = fairness_report(ReportInput(Task.REGRESSION, y, pred, sens, None, "oracle"))
    by = {r["group"]: r for r in rec["by_group"]}
    assert by["a"]["mae"] == 0.5 and by["b"]["mae"] == 1.5
    assert by["b"]["rmse"] == pytest.approx(np.sqrt(4.5), abs=1e-6)
    assert rec["differences"] == {"mae_difference": 1.0,
                                  "rmse_difference": pytest.approx(np.sqrt(4.5) - np.sqrt(0.5), abs=1e-6)}


def test_constraint_gap_and_its_standard_error():
    n = MIN_GROUP_ROWS * 2
    groups = np.array(["a"] * n + ["b"] * n + ["tiny"] * 3, dtype=object)
    labels = np.array([1] * (n // 2) + [0] * (n // 2) + [1] * (n // 4) + [0] * (n - n // 4) + [1, 1, 1])
    y = np.ones_like(labels)
    gap = fairness_gap("demographic_parity_difference", y, labels, groups)
    assert gap.value == pytest.approx(0.5 - 0.25)
    assert gap.se == pytest.approx(np.sqrt(0.25 / n + 0.1875 / n))
    assert gap.small_groups == ("tiny",)  # its rate of 1.0 is too noisy to constrain on
    # equalized odds: only positives here, so the TPR difference, the same numbers
    assert fairness_gap("equalized_odds_difference", y, labels, groups).value == pytest.approx(0.25)


def test_pareto_front_of_metric_against_gap():
    # (utility, gap): the one front function (designers.pareto) with the gap as the cost; exact ties both stay.
    points = [(0.9, 0.30), (0.8, 0.05), (0.85, 0.10), (0.7, 0.20), (0.8, 0.05)]
    front = pareto_front((i, utility, gap) for i, (utility, gap) in enumerate(points))
    assert sorted(i for i, _, _ in front) == [0, 1, 2, 4]


@pytest.mark.parametrize("text,fragment", [
    ("demographic_parity<=0.05", "unknown fairness metric"),
    ("demographic_parity_difference>=0.05", "cannot read"),
    ("demographic_parity_difference<=1.5", "between 0 and 1"),
    ("", "cannot read"),
])
def test_bad_constraints(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_constraint(text)


def test_good_constraint():
    c = parse_constraint(" equalized_odds_difference <= 0.1 ")
    assert (c.metric, c.limit, c.mitigation) == ("equalized_odds_difference", 0.1, "equalized_odds")


# -- the mitigations as estimators ----------------------------------------------------------------------------
def planted(n, seed):
    """A proxy feature carries the planted bias: men get positive labels far more often."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    proxy = rng.normal(size=n) + 1.2 * (sex == "M")
    x2 = rng.normal(size=n)
    y = 0.9 * proxy + x2 + 0.5 * rng.normal(size=n) > 0.9
    return pd.DataFrame({"proxy": proxy, "x2": x2, "colour": rng.choice(["red", "blue"], n), "sex": sex,
                         "label": np.where(y, "yes", "no")})


@pytest.mark.parametrize("family", ["fair_threshold", "fair_expgrad"])
def test_mitigations_reduce_the_gap_and_survive_saving(family, tmp_path):
    from daedalus.data.schema import FeatureLayout

    df = planted(1500, 0)
    layout = FeatureLayout(("proxy", "x2"), ("colour",), ())
    X = with_sensitive_columns(df[["proxy", "x2", "colour"]], df[["sex"]].astype(object))
    y = (df["label"] == "yes").to_numpy(dtype=int)
    groups = group_labels(df[["sex"]])
    base = get_family("linear").build({}, layout, Task.BINARY, 0, 1).fit(X, y)
    base_gap = fairness_gap("demographic_parity_difference", y, base.predict(X), groups).value
    fam = get_family(family)
    model = fam.build(fam.default_config(Task.BINARY, 1500), layout, Task.BINARY, 0, 1).fit(X, y)
    gap = fairness_gap("demographic_parity_difference", y, model.predict(X), groups).value
    assert base_gap > 0.25 and gap < 0.08, (base_gap, gap)
    save_model(model, tmp_path / "m.skops")  # only scikit-learn and NumPy state: loads under the allowlist
    again = load_model(tmp_path / "m.skops")
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    # Decisions are reproducible per row, whatever the batch: reversed rows give reversed decisions.
    np.testing.assert_array_equal(model.predict(X.iloc[::-1]), model.predict(X)[::-1])
    features_only = X[["proxy", "x2", "colour"]]
    if fam.needs_groups_to_predict:
        with pytest.raises(ValueError, match="sensitive"):
            model.predict(features_only)
    else:
        np.testing.assert_array_equal(model.predict(features_only), model.predict(X))


# -- the command line -----------------------------------------------------------------------------------------
@pytest.fixture
def planted_csv(tmp_path):
    path = tmp_path / "train.csv"
    planted(1500, 0).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("args,fragment", [
    (["--sensitive", "gender"], "'gender' not found"),
    (["--sensitive", "label"], "cannot be sensitive"),
    (["--fairness", "demographic_parity_difference<=0.05"], "--sensitive"),
    (["--sensitive", "sex", "--fairness", "parity<=0.05"], "unknown fairness metric 'parity'"),
    (["--sensitive", "sex", "--fairness", "demographic_parity_difference=0.05"], "cannot read"),
    (["--sensitive", "sex", "--objectives", "metric,speed"], "--objectives"),
    (["--objectives", "metric,fairness"], "--sensitive"),
    (["--use-sensitive"], "--sensitive"),
])
def test_cli_refuses_bad_fairness_options(cli, planted_csv, tmp_path, args, fragment):
    run = tmp_path / "run"
    assert_user_error(cli("build", planted_csv, "--target", "label", "--trials", "1", "--run", run, *args), fragment)
    assert not run.exists()


def test_cli_refuses_a_constraint_on_regression(cli, tmp_path):
    path = tmp_path / "reg.csv"
    df = planted(200, 0).assign(label=lambda d: d["proxy"] * 2.0)
    df.to_csv(path, index=False)
    assert_user_error(cli("build", path, "--target", "label", "--trials", "1", "--run", tmp_path / "r",
                          "--sensitive", "sex", "--fairness", "demographic_parity_difference<=0.1"),
                      "binary classification")


# -- real builds with a planted bias --------------------------------------------------------------------------
LIMIT = 0.1


def _test_gap(cli, run, test_csv, tmp_path):
    out = tmp_path / f"{run.name}_test_fairness.json"
    result = cli("fairness", run, test_csv, "--out", out)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_constraint_is_met_where_the_unconstrained_model_breaks_it(cli, planted_csv, tmp_path):
    test_csv = tmp_path / "test.csv"
    planted(4000, 1).to_csv(test_csv, index=False)
    common = ["--target", "label", "--families", "linear", "--exclude", "fair_expgrad", "--sensitive", "sex",
              "--quiet", "--seed", "0", "--no-explain", "--threads", "1"]  # fairness.json needs no explanations

    free = tmp_path / "free"
    result = cli("build", planted_csv, *common, "--trials", "1", "--run", free)
    assert result.returncode == 0, result.stderr
    schema = json.loads((free / "schema.json").read_text())
    assert schema["dropped"]["sex"] == "sensitive" and schema["sensitive"] == ["sex"]
    free_record = json.loads((free / "fairness.json").read_text())
    assert free_record["differences"]["demographic_parity_difference"] > LIMIT
    assert _test_gap(cli, free, test_csv, tmp_path)["differences"]["demographic_parity_difference"] > LIMIT

    fair = tmp_path / "fair"
    result = cli("build", planted_csv, *common, "--trials", "3", "--run", fair,
                 "--fairness", f"demographic_parity_difference<={LIMIT}", "--objectives", "metric,fairness")
    assert result.returncode == 0, result.stderr
    record = json.loads((fair / "fairness.json").read_text())
    assert record["constraint"]["met"], record["constraint"]
    on_test = _test_gap(cli, fair, test_csv, tmp_path)
    assert on_test["differences"]["demographic_parity_difference"] <= LIMIT, on_test["differences"]
    assert on_test["constraint"]["met_without_margin"]

    # The search: every trial carries its gap; the unconstrained linear model was infeasible; the final model
    # is made of feasible trials only; the front and the audit log are written.
    board = json.loads((fair / "leaderboard.json").read_text())
    trials = {r["trial"]: r for r in board if r["trial"] is not None}
    assert trials[0]["family"] == "linear" and trials[0]["feasible"] is False
    members = json.loads((fair / "model" / "model.json").read_text())["members"]
    assert all(trials[m["trial"]]["feasible"] for m in members)
    assert board[0]["feasible"] is True  # ranked as the search ranks: feasible first
    pareto = json.loads((fair / "pareto.json").read_text())
    assert pareto["objectives"] == ["roc_auc", "demographic_parity_difference"] and pareto["front"]
    events = [json.loads(line)["event"] for line in (fair / "audit.jsonl").read_text().splitlines()]
    assert "fairness_report" in events and "pareto_front" in events

    # Predicting: the per-group thresholds need the sensitive column; without it, a clear error.
    uses_thresholds = any(trials[m["trial"]]["family"] == "fair_threshold" for m in members)
    rows = pd.read_csv(test_csv).drop(columns=["label"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    ok = cli("predict", fair, tmp_path / "rows.csv", "--unapproved")
    assert ok.returncode == 0, ok.stderr
    rows.drop(columns=["sex"]).to_csv(tmp_path / "no_sex.csv", index=False)
    missing = cli("predict", fair, tmp_path / "no_sex.csv", "--unapproved")
    if uses_thresholds:  # (stderr also holds the --unapproved warning)
        assert missing.returncode == 2 and "'sex'" in missing.stderr and "Traceback" not in missing.stderr
    else:
        assert missing.returncode == 0, missing.stderr


def test_estimators_take_the_fairness_options():
    from daedalus import AutoClassifier

    clf = AutoClassifier(sensitive=("sex",), fairness="demographic_parity_difference<=0.1")
    options = clf._options("binary").checked()
    assert options.sensitive == ("sex",) and options.fairness == "demographic_parity_difference<=0.1"
    assert clf.get_params()["sensitive"] == ("sex",)


# -- groups too small to measure ------------------------------------------------------------------------------
def test_min_measurable_rows_follows_the_margin_of_error():
    from daedalus.oversight.fairness import min_measurable_rows

    # 1/sqrt(n) <= limit  <=>  n >= 1/limit**2, never under MIN_GROUP_ROWS
    assert [min_measurable_rows(x) for x in (0.05, 0.1, 0.02, 0.2, None)] == [400, 100, 2500, 30, 30]


def _groups_with_a_tiny_one(gap_between_big, tiny_rows=6, big_rows=600, seed=0):
    """Groups A and B (big_rows each) selected at 0.40 and 0.40 + gap_between_big; group T (tiny_rows), all
    selected. Decisions are exact fractions, so the rates are known."""
    rng = np.random.default_rng(seed)
    a = np.zeros(big_rows, dtype=int)
    a[: int(0.40 * big_rows)] = 1
    b = np.zeros(big_rows, dtype=int)
    b[: int(round((0.40 + gap_between_big) * big_rows))] = 1
    labels = np.concatenate([rng.permutation(a), rng.permutation(b), np.ones(tiny_rows, dtype=int)])
    groups = np.array(["A"] * big_rows + ["B"] * big_rows + ["T"] * tiny_rows, dtype=object)
    y = rng.integers(0, 2, len(labels))
    pred = np.column_stack([1.0 - labels, labels.astype(float)])
    return y, pred, pd.DataFrame({"g": groups})


def test_a_tiny_group_is_reported_too_small_and_does_not_make_a_fair_model_infeasible():
    from fairlearn.metrics import demographic_parity_difference

    from daedalus.oversight.fairness import FairnessConstraint

    constraint = parse_constraint("demographic_parity_difference<=0.1")  # measurable from 100 rows
    assert isinstance(constraint, FairnessConstraint)
    y, pred, sens = _groups_with_a_tiny_one(0.0)
    # Over all groups, Fairlearn's difference is 1.0 - 0.4: the 6 rows of T alone would break any limit.
    assert demographic_parity_difference(y, pred.argmax(1), sensitive_features=sens["g"]) == pytest.approx(0.6)
    rec = fairness_report(ReportInput(Task.BINARY, y, pred, sens, ("no", "yes"), "oracle"), constraint)
    c = rec["constraint"]
    assert c["met"] is True and c["value"] == 0.0 and c["min_group_rows"] == 100
    assert c["measured_groups"] == [{"group": "A", "count": 600}, {"group": "B", "count": 600}]
    assert c["too_small_to_measure"] == [{"group": "T", "count": 6}] and c["small_groups"] == ["T"]
    assert c["verdict"].startswith("met over the 2 groups with at least 100 rows") and "T (6 rows)" in c["verdict"]
    assert {r["group"]: r["small"] for r in rec["by_group"]} == {"A": False, "B": False, "T": True}
    assert {r["group"]: r["selection_rate"] for r in rec["by_group"]}["T"] == 1.0  # reported, not dropped
    assert rec["max_gap"] == 0.0

    # A planted bias between the measurable groups still breaks it, tiny group or not.
    y, pred, sens = _groups_with_a_tiny_one(0.15)
    c = fairness_report(ReportInput(Task.BINARY, y, pred, sens, ("no", "yes"), "oracle"), constraint)["constraint"]
    assert c["met"] is False and c["value"] == pytest.approx(0.15) and c["verdict"].startswith("NOT met")
    assert c["too_small_to_measure"] == [{"group": "T", "count": 6}]

    # The search's view of the same decisions: feasible without the bias, infeasible with it.
    from daedalus.orchestration.fairness_search import GapMeasure

    for gap_between_big, feasible in ((0.0, True), (0.15, False)):
        y, pred, sens = _groups_with_a_tiny_one(gap_between_big)
        measure = GapMeasure(constraint, constraint.metric, y, group_labels(sens))
        assert measure.evaluate(pred)["feasible"] is feasible


def test_a_constraint_that_no_two_groups_can_measure_is_not_met():
    # Limit 0.05 needs 400 rows a group: A and B have 300, so nothing can be checked, and the verdict fails
    # closed (the gate sees the gap over all groups, not a vacuous 0).
    y, pred, sens = _groups_with_a_tiny_one(0.0, big_rows=300)
    constraint = parse_constraint("demographic_parity_difference<=0.05")
    rec = fairness_report(ReportInput(Task.BINARY, y, pred, sens, ("no", "yes"), "oracle"), constraint)
    c = rec["constraint"]
    assert c["met"] is False and c["met_without_margin"] is False and c["verdict"].startswith("cannot be checked")
    assert [g["group"] for g in c["too_small_to_measure"]] == ["A", "B", "T"]
    assert rec["max_gap"] >= 0.6  # the largest of the differences over all groups
    from daedalus.orchestration.fairness_search import GapMeasure

    info = GapMeasure(constraint, constraint.metric, y, group_labels(sens)).evaluate(pred)
    assert info["feasible"] is False and info["constraint"] == [1.0]


@pytest.mark.parametrize("family", ["fair_threshold", "fair_expgrad"])
def test_mitigations_pool_tiny_groups_for_fitting(family):
    from daedalus.data.schema import FeatureLayout
    from daedalus.data.sensitive import POOLED_GROUP

    df = planted(1500, 0)
    # Two tiny groups of one label each: alone, each would make Fairlearn's ThresholdOptimizer raise
    # ("Degenerate labels"), and rules fit on 8 and 5 rows would be noise. Pooled, they have both labels.
    df.loc[:7, ["sex", "label"]] = ["X", "yes"]
    df.loc[8:12, ["sex", "label"]] = ["Y", "no"]
    layout = FeatureLayout(("proxy", "x2"), ("colour",), ())
    X = with_sensitive_columns(df[["proxy", "x2", "colour"]], df[["sex"]].astype(object))
    y = (df["label"] == "yes").to_numpy(dtype=int)
    fam = get_family(family)
    model = fam.build(fam.default_config(Task.BINARY, 1500), layout, Task.BINARY, 0, 1).fit(X, y)
    assert model.pooled_ == ["X", "Y"]
    if family == "fair_threshold":
        assert sorted(model.groups_) == sorted(["F", "M", POOLED_GROUP])
        # A group never seen in fitting gets the pooled groups' rule, like the pooled groups themselves.
        unseen = X.iloc[:8].copy()
        unseen["__sensitive__sex"] = "Z"
        np.testing.assert_array_equal(model.predict_proba(unseen), model.predict_proba(X.iloc[:8]))
        # Pooled rows of one label only: fit as part of the largest group, whose rule they then get.
        one_label = X[df["sex"] != "Y"]
        model = fam.build(fam.default_config(Task.BINARY, 1500), layout, Task.BINARY, 0, 1).fit(
            one_label, y[(df["sex"] != "Y").to_numpy()])
        largest = df.loc[df["sex"] != "Y", "sex"].value_counts().index[0]
        assert model.pooled_ == ["X"] and model.fallback_ == largest and sorted(model.groups_) == ["F", "M"]
        as_largest = X.iloc[:8].copy()
        as_largest["__sensitive__sex"] = largest
        np.testing.assert_array_equal(model.predict_proba(X.iloc[:8]), model.predict_proba(as_largest))
    fresh = planted(4000, 1)
    Xf = with_sensitive_columns(fresh[["proxy", "x2", "colour"]], fresh[["sex"]].astype(object))
    yf = (fresh["label"] == "yes").to_numpy(dtype=int)
    gap = fairness_gap("demographic_parity_difference", yf, model.predict(Xf), group_labels(fresh[["sex"]]))
    assert gap.value < 0.08, gap
