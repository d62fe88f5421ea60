"""Data checks: leaks are found and dropped (unless kept), honest features stay, duplicates and the rest are
reported; the report survives JSON."""

import json
import time

import numpy as np
import pandas as pd
import pytest

from daedalus.data import DEMO_TARGET, CheckReport, demo_path, infer_schema, read_table, run_checks
from daedalus.errors import DataError

N = 1000


def _frame(task: str, seed: int = 0) -> pd.DataFrame:
    """An honest strong feature, noise, and a planted leak computed from the target."""
    rng = np.random.default_rng(seed)
    strong = rng.normal(size=N)
    noise = rng.normal(size=N)
    latent = strong + 0.6 * rng.normal(size=N)
    if task == "binary":
        y = (latent > 0).astype(int)
        leak = y * 3.0 + rng.normal(scale=0.1, size=N)
    elif task == "multiclass":
        y = np.digitize(latent, [-1, 0, 1])  # 4 classes
        leak = np.array(["w", "x", "y", "z"])[y]  # a category that spells the label
    else:
        y = 3 * latent + 5
        leak = np.exp(y / 4)  # a monotone transform of the target
    return pd.DataFrame({"strong": strong, "noise": noise, "group": rng.choice(["a", "b", "c"], N),
                         "leak": leak, "y": y})


def _by_check(report: CheckReport, check: str):
    return {f.columns[0] if f.columns else None: f for f in report.by_check(check)}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_planted_leak_is_dropped_and_honest_feature_kept(task):
    df = _frame(task)
    schema, report = run_checks(df, infer_schema(df, "y"))
    assert schema.task.value == task
    assert "leak" in schema.dropped and "strong" not in schema.dropped and "noise" not in schema.dropped
    reason = schema.dropped["leak"]
    assert reason.startswith("likely target leak (single-column score") and "--keep leak" in reason
    assert "leak" not in schema.feature_columns
    finding = _by_check(report, "target_leak")["leak"]
    assert finding.severity == "action" and finding.value >= 0.99
    assert "strong" not in _by_check(report, "target_leak")


def test_leak_threshold_is_respected():
    df = _frame("binary")
    schema, _ = run_checks(df, infer_schema(df, "y"), leak_threshold=0.8)
    assert "strong" in schema.dropped  # the honest feature scores about 0.9 alone
    schema, _ = run_checks(df, infer_schema(df, "y"), leak_threshold=1.01)
    assert "leak" not in schema.dropped


def test_keep_leaks_and_kept_columns():
    df = _frame("binary")
    schema, report = run_checks(df, infer_schema(df, "y"), keep_leaks=True)
    assert "leak" not in schema.dropped
    assert _by_check(report, "target_leak")["leak"].severity == "warning"
    schema, _ = run_checks(df, infer_schema(df, "y", keep=["leak"]))
    assert "leak" not in schema.dropped and "leak" in schema.feature_columns


def test_missingness_that_gives_the_answer_away_is_a_leak():
    df = _frame("binary")
    df["outcome_date"] = np.where(df["y"] == 1, "2021-03-04", None)  # only recorded for positives
    schema, _ = run_checks(df, infer_schema(df, "y"))
    assert "outcome_date" in schema.dropped


def test_only_leaks_left_is_an_error():
    df = _frame("binary")[["leak", "y"]]
    with pytest.raises(DataError) as info:
        run_checks(df, infer_schema(df, "y"))
    assert "--keep" in str(info.value) and "\n" not in str(info.value)


def test_duplicates_and_conflicts_are_counted():
    df = _frame("binary")
    copies = df.iloc[:30]
    conflicting = df.iloc[30:40].assign(y=1 - df["y"].iloc[30:40])
    both = pd.concat([df, copies, conflicting], ignore_index=True)
    _, report = run_checks(both, infer_schema(both, "y"))
    finding = report.by_check("duplicates")[0]
    assert finding.value == 30
    assert "30 duplicate rows" in finding.message and "10 more rows" in finding.message
    _, report = run_checks(df, infer_schema(df, "y"))
    assert report.by_check("duplicates")[0].value == 0


def test_ids_constants_missing_values_and_imbalance():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "id": [f"row-{i}" for i in range(N)],
        "const": 7,
        "x": np.where(rng.random(N) < 0.2, np.nan, rng.normal(size=N)),
        "sparse": np.where(rng.random(N) < 0.8, np.nan, rng.normal(size=N)),
        "y": np.where(rng.random(N) < 0.05, "rare", "common"),
    })
    df.loc[:9, "y"] = None
    schema, report = run_checks(df, infer_schema(df, "y"))
    assert report.by_check("id_columns")[0].columns == ("id",)
    assert report.by_check("constant_columns")[0].columns == ("const",)
    missing = report.by_check("missing_values")[0]
    assert missing.columns == ("sparse", "x")  # most empty first
    assert missing.value == pytest.approx(df[["x", "sparse"]].isna().mean().mean())
    assert report.by_check("mostly_missing")[0].columns == ("sparse",)
    balance = report.by_check("class_balance")[0]
    assert balance.severity == "warning" and balance.value < 0.1 and "'rare'" in balance.message
    target = report.by_check("missing_target")[0]
    assert target.value == 10 and target.severity == "warning"


def test_balanced_classes_are_info_only():
    df = _frame("binary")
    _, report = run_checks(df, infer_schema(df, "y"))
    balance = report.by_check("class_balance")[0]
    assert balance.severity == "info" and balance.value == pytest.approx(df["y"].value_counts().min() / N)
    assert not report.by_check("missing_target")


def test_report_round_trips_through_json():
    df = _frame("regression")
    schema, report = run_checks(df, infer_schema(df, "y"))
    text = json.dumps(report.to_dict())
    assert CheckReport.from_dict(json.loads(text)) == report
    assert all(f["severity"] in ("info", "warning", "action") for f in json.loads(text)["findings"])


def test_frame_without_target_is_refused():
    df = _frame("binary")
    schema = infer_schema(df, "y")
    with pytest.raises(DataError) as info:
        run_checks(df.drop(columns=["y"]), schema)
    assert "'y' not found" in str(info.value)


def test_demo_has_no_leak():
    df = read_table(demo_path())
    schema, report = run_checks(df, infer_schema(df, DEMO_TARGET))
    assert schema.dropped == {} and not report.by_check("target_leak")


def test_checks_are_fast_on_a_large_frame():
    rng = np.random.default_rng(0)
    n = 50_000
    cols = {f"f{i}": rng.normal(size=n) for i in range(20)}
    cols.update({f"c{i}": rng.choice([f"v{j}" for j in range(20 * (i + 1))], n) for i in range(8)})
    cols["flag"] = rng.choice(["yes", "no"], n)
    cols["y"] = (cols["f0"] + rng.normal(size=n) > 0).astype(int)
    df = pd.DataFrame(cols)
    schema = infer_schema(df, "y")
    start = time.perf_counter()
    run_checks(df, schema)
    # The target is < 2 s on 2 cores; the bound leaves room for a busy test machine.
    assert time.perf_counter() - start < 6.0
