"""A table's fingerprint (data/fingerprint.py), kept in the knowledge base (an older base upgraded to hold it),
and what it changes: a past run on the same table goes first in the warm start, however far its noisy
meta-features put it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from daedalus.data import infer_schema
from daedalus.data.fingerprint import TableFingerprint, column_token, fingerprint
from daedalus.data.schema import Task
from daedalus.designers.warm_start import PastRun, PastTask, kinship, plan_warm_start
from daedalus.orchestration.options import BuildOptions
from daedalus.orchestration.warm import past_runs
from daedalus.store.knowledge import KnowledgeBase
from tests.test_knowledge import postgres_root, run_entry, trial_entries, url  # noqa: F401 (fixtures)
from tests.test_warm_start import FAMILIES, _candidates

FRAME = pd.DataFrame({"age": [30, 41, 52, 23, 35, 47] * 5, "city": list("abcabc") * 5,
                      "income": np.linspace(1.0, 9.0, 30), "bought": [0, 1] * 15})


def test_the_fingerprint_is_the_table_s_columns_and_target_as_hashes() -> None:
    schema = infer_schema(FRAME, "bought")
    table = fingerprint(schema)
    assert table.columns == {column_token(n) for n in ("age", "city", "income", "bought")}
    assert table.target == column_token("bought") and len(table.target) == 16
    assert "age" not in json.dumps(table.to_dict())  # no column name is kept as text
    assert TableFingerprint.from_dict(json.loads(json.dumps(table.to_dict()))) == table

    next_month = fingerprint(infer_schema(FRAME.sample(frac=0.5, random_state=1), "bought"))
    assert next_month == table  # other rows, same table: the meta-features move, the fingerprint does not
    other_target = fingerprint(infer_schema(FRAME, "income"))
    assert other_target.same_table(table) and other_target.target != table.target
    one_more = fingerprint(infer_schema(FRAME.assign(region=1.0), "bought"))
    assert one_more.overlap(table) == pytest.approx(4 / 5) and one_more.same_table(table)
    other = fingerprint(infer_schema(FRAME.rename(columns={"age": "a", "city": "c"}), "bought"))
    assert other.overlap(table) == pytest.approx(2 / 6) and not other.same_table(table)
    assert (kinship(table, next_month), kinship(table, other_target), kinship(table, other),
            kinship(table, None)) == (0, 1, 2, 2)


@pytest.mark.parametrize("recorded", [
    [], "x", {"columns": "abc", "target": "abc"}, {"columns": ["0" * 16], "target": "1" * 16},
    {"columns": ["not hex at all!!"], "target": "not hex at all!!"}, {"columns": [3], "target": 3},
    {"columns": ["0" * 16] * 100_001, "target": "0" * 16}, {"columns": ["0" * 16]},
])
def test_a_damaged_recorded_fingerprint_is_refused(recorded: object) -> None:
    with pytest.raises(ValueError):
        TableFingerprint.from_dict(recorded)


# -- the knowledge base keeps it; an older base is upgraded to -------------------------------------------------
def test_the_fingerprint_round_trips_through_the_base(url: str) -> None:  # noqa: F811 (the fixture)
    table = fingerprint(infer_schema(FRAME, "bought")).to_dict()
    with KnowledgeBase.open(url) as base:
        base.record_run(run_entry("with", fingerprint=table), trial_entries(1))
        base.record_run(run_entry("without"), trial_entries(1))
        assert {r.run_id: r.fingerprint for r in base.runs()} == {"with": table, "without": None}
        assert base.export()["runs"][0]["fingerprint"] == table


def _first_release_base(where: str) -> None:
    """A base as the first release made it: no fingerprint column, one run in it."""
    with KnowledgeBase.open(where) as base:
        base.record_run(run_entry("old"), trial_entries(2))
    engine = sa.create_engine(where)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN fingerprint")
    engine.dispose()


def _columns(where: str) -> set[str]:
    engine = sa.create_engine(where)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()


def test_an_older_base_gains_the_column_and_keeps_its_runs(url: str) -> None:  # noqa: F811 (the fixture)
    _first_release_base(url)
    assert "fingerprint" not in _columns(url)
    table = fingerprint(infer_schema(FRAME, "bought")).to_dict()
    with KnowledgeBase.open(url) as base:
        assert [(r.run_id, r.fingerprint) for r in base.runs()] == [("old", None)]
        assert len(base.trials("old")) == 2
        base.record_run(run_entry("new", fingerprint=table), [])
    assert "fingerprint" in _columns(url)
    with KnowledgeBase.open(url) as base:  # opened again: nothing more to do, nothing lost
        assert {r.run_id: r.fingerprint for r in base.runs()} == {"old": None, "new": table}


def test_an_older_base_that_cannot_be_written_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    _first_release_base(f"sqlite:///{path}")
    with KnowledgeBase.open(f"sqlite:///file:{path}?mode=ro&uri=true") as base:
        assert [(r.run_id, r.fingerprint) for r in base.runs()] == [("old", None)]
        assert base.missing == {("runs", "fingerprint")}
    with sqlite3.connect(path) as conn:  # not upgraded behind the user's back
        assert "fingerprint" not in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}


# -- the warm start puts the same table first --------------------------------------------------------------------
def test_a_past_run_on_the_same_table_goes_first_however_far_its_meta_features() -> None:
    table = fingerprint(infer_schema(FRAME, "bought"))
    elsewhere = fingerprint(infer_schema(FRAME.rename(columns={"age": "a", "city": "c", "income": "i"}), "bought"))
    corpus = [PastTask(f"c{i}", "binary", np.array([0.0, 0.1 * i]), [0.5, 0.5, 0.5]) for i in range(5)]
    # The same table's run lies far (its landmarkers moved with the rows); another table's run lies nearer.
    same = PastRun("run-same", "sales.csv", "binary", "roc_auc", np.array([3.0, 3.0]),
                   [(4, "random_forest", {"n_estimators": 300}, 0.91)], table=table)
    near = PastRun("run-near", "other.csv", "binary", "roc_auc", np.array([0.0, 0.0]),
                   [(2, "linear", {"C": 0.5}, 0.7)], table=elsewhere)
    plan = plan_warm_start(np.array([0.0, 0.05]), Task.BINARY, 1000, FAMILIES, _candidates(), corpus, [near, same],
                           table=table)
    first = plan.proposals[0]
    assert (first.source, first.detail["run"], first.detail["same_target"]) == ("knowledge", "run-same", True)
    assert "(the same table: 100% of the columns shared, the same target; distance" in first.reason
    # Without the fingerprint (the bug it fixes), the same table's run comes after the whole portfolio.
    blind = plan_warm_start(np.array([0.0, 0.05]), Task.BINARY, 1000, FAMILIES, _candidates(), corpus, [near, same])
    assert blind.proposals[0].detail.get("run") != "run-same"
    assert [p.detail.get("run") for p in blind.proposals].index("run-same") > 3


def test_a_past_run_with_a_damaged_fingerprint_is_still_compared_by_its_meta_features(tmp_path: Path) -> None:
    where = f"sqlite:///{tmp_path / 'k.db'}"
    forged = {"columns": ["0" * 16, "__import__('os')"], "target": "0" * 16}
    with KnowledgeBase.open(where) as base:
        base.record_run(run_entry("forged", fingerprint=forged), trial_entries(2))
    warnings: list[str] = []
    (run,) = past_runs(BuildOptions(target="y", knowledge=where), "binary", warnings)
    assert run.run_id == "forged" and run.table is None and len(run.best) == 2
    assert len(warnings) == 1 and warnings[0].startswith("past run forged: its table fingerprint is damaged (")
    assert "is not a column token" in warnings[0] and warnings[0].endswith("compared by its meta-features only")
