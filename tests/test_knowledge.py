"""The knowledge base (store/knowledge.py), what a finished run records into it (orchestration/knowledge_record.py)
and ``daedalus knowledge`` (interfaces/cmd_knowledge.py).

Everything real: SQLite files and a throwaway PostgreSQL server (tests/postgres.py), run stores made as a build
makes them, concurrent writers in separate processes, whole builds through the console command. Every test
uses a knowledge base of its own under tmp_path or its own PostgreSQL database, never the user's data directory
(conftest points DAEDALUS_HOME at a temporary directory for the whole session).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from daedalus.errors import ConfigError
from daedalus.orchestration.knowledge_record import RUN_ID_FIELD, record_image_run, record_run
from daedalus.orchestration.loop import TrialRecord
from daedalus.orchestration.reporter import Reporter
from daedalus.store.knowledge import (
    KnowledgeBase,
    KnowledgeError,
    RunEntry,
    TrialEntry,
    chosen_url,
    default_knowledge_url,
    describe_url,
)
from daedalus.store.layout import META_FEATURES
from daedalus.store.run import RunStore
from tests.conftest import ROOT, planted_frame, run_cli
from tests.postgres import postgres_server

UNREACHABLE = "postgresql+psycopg2://nobody@127.0.0.1:1/none"  # nothing listens on port 1


def run_entry(run_id: str, kind: str = "table", best: float | None = 0.9, **changes: object) -> RunEntry:
    fields: dict[str, object] = dict(
        run_id=run_id, kind=kind, task="binary" if kind == "table" else "image",
        metric="roc_auc" if kind == "table" else "accuracy", greater_is_better=True, n_rows=300, n_features=4,
        meta_features={"n_rows": 300.0, "landmark_1nn": 0.71, "imbalance": None}, created=time.time(),
        dataset="plant.csv", best_score=best)
    fields.update(changes)
    return RunEntry(**fields)  # type: ignore[arg-type]


def trial_entries(n: int, space: str = "table") -> list[TrialEntry]:
    return [TrialEntry(number=i, space=space, family="linear" if space == "table" else "cnn",
                       config={"C": 10.0 ** -i, "penalty": "l2"} if space == "table" else {"genotype": [i, 1, 2]},
                       score=0.5 + i / 100, fit_seconds=0.1 * i, status="ok") for i in range(n)]


# -- the two kinds of base --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres_root() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty knowledge base: an SQLite file of its own, or a database of its own on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'knowledge.db'}"
    root = request.getfixturevalue("postgres_root")
    name = f"kb_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(root, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return root.rsplit("/", 1)[0] + f"/{name}"


def test_record_list_forget_export_round_trip(url: str) -> None:
    with KnowledgeBase.open(url) as base:
        assert base.runs() == [] and base.export()["runs"] == []
        first = run_entry("run-a", created=1000.0)
        base.record_run(first, trial_entries(3))
        image = run_entry("run-b", kind="image", created=2000.0, best=None)
        base.record_run(image, trial_entries(2, "image"))
        assert base.runs() == [first, image]  # oldest first, every field as written
        assert base.runs(kind="image") == [image] and base.runs(task="binary") == [first]
        assert base.trials("run-a") == trial_entries(3) and base.trials("nothing") == []
        assert base.trial_counts() == {"run-a": 3, "run-b": 2}

        # The same run again (a resumed run records again): replaced, not doubled.
        again = run_entry("run-a", created=1000.0, best=0.95)
        base.record_run(again, [*trial_entries(4)])
        assert base.runs() == [again, image] and len(base.trials("run-a")) == 4

        exported = json.loads(json.dumps(base.export()))  # JSON through and through
        assert [r["run_id"] for r in exported["runs"]] == ["run-a", "run-b"]
        assert exported["runs"][0]["trials"][1]["config"] == {"C": 0.1, "penalty": "l2"}
        assert exported["runs"][1]["trials"][0]["config"] == {"genotype": [0, 1, 2]}

        assert base.resolve("run-b") == "run-b"
        assert base.forget("run-a") == 4
        assert base.runs() == [image] and base.trials("run-a") == []
        with pytest.raises(KnowledgeError, match="no run 'run-a'.*knowledge list"):
            base.forget("run-a")


def test_non_finite_numbers_are_stored_as_no_value(url: str) -> None:
    with KnowledgeBase.open(url) as base:
        base.record_run(run_entry("nan", best=float("nan"), meta_features={"x": float("inf"), "y": 1.0}),
                        [TrialEntry(0, "table", "linear", {"alpha": float("nan")}, float("nan"), None, "failed")])
        run = base.runs()[0]
        assert run.best_score is None and run.meta_features == {"x": None, "y": 1.0}
        assert base.trials("nan") == [TrialEntry(0, "table", "linear", {"alpha": None}, None, None, "failed")]


def test_a_run_id_prefix_names_one_run_or_is_refused(tmp_path: Path) -> None:
    with KnowledgeBase.open(f"sqlite:///{tmp_path / 'k.db'}") as base:
        base.record_run(run_entry("abc111"), [])
        base.record_run(run_entry("abc222"), [])
        assert base.resolve("abc1") == "abc111"
        with pytest.raises(KnowledgeError, match="2 runs start with 'abc'"):
            base.resolve("abc")
        with pytest.raises(KnowledgeError, match="no run 'zzz'"):
            base.resolve("zzz")


# -- two writers at once ----------------------------------------------------------------------------------------
WRITER = """
import sys, time
from daedalus.store.knowledge import KnowledgeBase, RunEntry, TrialEntry
url, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
while time.time() < float(sys.argv[4]):  # both writers start together, tables not yet made
    time.sleep(0.005)
with KnowledgeBase.open(url) as base:
    for i in range(n):
        run = RunEntry(f"{prefix}-{i}", "table", "binary", "roc_auc", True, 100, 3, {"i": float(i)}, time.time(),
                       "d.csv", 0.5)
        base.record_run(run, [TrialEntry(j, "table", "linear", {"C": j}, 0.5, 0.1, "ok") for j in range(25)])
"""


def test_two_concurrent_writer_processes_lose_nothing(url: str) -> None:
    n = 40
    start = time.time() + 2.0
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, prefix, str(n), str(start)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for prefix in "pq"]
    for writer in writers:
        _, err = writer.communicate(timeout=240)
        assert writer.returncode == 0, err
    with KnowledgeBase.open(url) as base:
        runs = base.runs()
        assert sorted(r.run_id for r in runs) == sorted(f"{p}-{i}" for p in "pq" for i in range(n))
        assert set(base.trial_counts().values()) == {25} and len(base.trial_counts()) == 2 * n
        assert base.warnings == []


# -- what is read back is someone else's data -------------------------------------------------------------------
HOSTILE_RUNS = {  # run_id: what is wrong with its row
    "kind": "'alien', 'binary', 'm', TRUE, 3, 2, '{}', 1.0, 'd', NULL, 1.0, NULL",
    "meta-not-json": "'table', 'binary', 'm', TRUE, 3, 2, '{not json', 1.0, 'd', NULL, 1.0, NULL",
    "meta-list": "'table', 'binary', 'm', TRUE, 3, 2, '[1, 2]', 1.0, 'd', NULL, 1.0, NULL",
    "meta-text-value": "'table', 'binary', 'm', TRUE, 3, 2, '{\"a\": \"x\"}', 1.0, 'd', NULL, 1.0, NULL",
    "fingerprint-not-json": "'table', 'binary', 'm', TRUE, 3, 2, '{}', 1.0, 'd', NULL, 1.0, '{oops'",
    "fingerprint-list": "'table', 'binary', 'm', TRUE, 3, 2, '{}', 1.0, 'd', NULL, 1.0, '[\"0123\"]'",
    "meta-deep": "'table', 'binary', 'm', TRUE, 3, 2, '" + "[" * 100_000 + "', 1.0, 'd', NULL, 1.0, NULL",
}
SQLITE_ONLY_RUNS = {  # SQLite stores whatever it is given: wrong types too (PostgreSQL refuses them on insert)
    "rows-text": "'table', 'binary', 'm', TRUE, 'many', 2, '{}', 1.0, 'd', NULL, 1.0, NULL",
    "score-text": "'table', 'binary', 'm', TRUE, 3, 2, '{}', 1.0, 'd', 'great', 1.0, NULL",
    "direction-text": "'table', 'binary', 'm', 'yes', 3, 2, '{}', 1.0, 'd', NULL, 1.0, NULL",
}
HOSTILE_TRIALS = {  # number: its config, score
    1: ("'[1, 2, 3]'", "0.5"),  # a configuration that is not a mapping
    2: ("'{\"C\": 1'", "0.5"),  # not JSON
    3: ("'gASVAAAAAAAAAACMBHBpY2tsZZSMBGxvYWRzlJOULg=='", "0.5"),  # a pickle's bytes: never unpickled
}


def test_hostile_rows_are_skipped_with_a_warning(url: str) -> None:
    with KnowledgeBase.open(url) as base:
        base.record_run(run_entry("good"), trial_entries(1))
        hostile = dict(HOSTILE_RUNS)
        if url.startswith("sqlite"):
            hostile.update(SQLITE_ONLY_RUNS)
        with base.engine.connect() as conn, conn.begin():
            for run_id, values in hostile.items():
                conn.execute(sa.text(f"INSERT INTO runs VALUES ('{run_id}', {values})"))
            for number, (config, score) in HOSTILE_TRIALS.items():
                conn.execute(sa.text("INSERT INTO trials (run_id, number, space, family, config, score, fit_seconds,"
                                     f" status) VALUES ('good', {number}, 'table', 'linear', {config}, {score}, NULL,"
                                     " 'ok')"))
            if url.startswith("sqlite"):
                conn.execute(sa.text("INSERT INTO runs VALUES (X'00FF', 'table', 'binary', 'm', TRUE, 3, 2, '{}',"
                                     " 1.0, 'd', NULL, 1.0, NULL)"))  # an id that is bytes
                conn.execute(sa.text("INSERT INTO trials (run_id, number, space, family, config, score, fit_seconds,"
                                     " status) VALUES ('good', 4, 'table', 'linear', '{}', 'great', NULL, 'ok')"))
        sqlite = url.startswith("sqlite")  # one more of each: a run id that is bytes, a score that is text
        assert [r.run_id for r in base.runs()] == ["good"]
        assert len(base.warnings) == len(hostile) + sqlite
        assert all(w.startswith("skipped a damaged run entry") for w in base.warnings)
        assert base.trials("good") == trial_entries(1)
        # The warnings of every read since the base was opened, each damaged row named once.
        assert len(base.warnings) == len(hostile) + len(HOSTILE_TRIALS) + 2 * sqlite
        assert sum(w.startswith("skipped a damaged trial entry (run 'good' trial") for w in base.warnings) == \
            len(HOSTILE_TRIALS) + sqlite
    with KnowledgeBase.open(url) as base:
        exported = base.export()  # the export leaves them out too, and says so
        assert len(exported["runs"]) == 1 and len(exported["runs"][0]["trials"]) == 1
        assert len(base.warnings) == len(hostile) + len(HOSTILE_TRIALS) + 2 * sqlite


# -- a base that cannot be used -----------------------------------------------------------------------------------
def corrupt_file(path: Path) -> Path:
    path.write_bytes(b"this is not a database\x00" + os.urandom(4096))
    return path


def test_a_damaged_or_unreachable_base_is_one_line(tmp_path: Path) -> None:
    bad = corrupt_file(tmp_path / "bad.db")
    for url, what in [(f"sqlite:///{bad}", "not a database"), (UNREACHABLE, "Connection refused"),
                      (f"sqlite:///{tmp_path / 'missing' / 'dir' / 'k.db'}", "unable to open"),
                      ("nosuchdialect://x", "nosuchdialect")]:
        with pytest.raises(KnowledgeError) as exc:
            KnowledgeBase.open(url)
        message = str(exc.value)
        assert what in message and "--knowledge" in message and "\n" not in message
    with pytest.raises(ConfigError, match="off"):
        KnowledgeBase.open("off")


class Said(Reporter):
    """A reporter that keeps what it is told (the CLI shows these lines)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str, **fields: object) -> None:
        self.lines.append(text)


def made_run(root: Path, **info: object) -> RunStore:
    """A run directory as a build creates one (run.json, audit log), closed for writing as a finished run is."""
    with RunStore.creating(root, {"options": {}, "status": "finished", "created": 1234.5, "task": "image",
                                  "metric": "accuracy", "data_source": "/data/digits.csv", **info}) as store:
        pass
    store.unlock()
    return store


def events(store: RunStore, name: str) -> list[dict[str, object]]:
    return [r for r in store.audit.records() if r.get("event") == name]


def test_an_image_run_records_its_networks_and_keeps_its_id(tmp_path: Path) -> None:
    store = made_run(tmp_path / "run", kind="image")
    records = [TrialRecord(n, "cnn", "ok" if n else "timeout", 0.8 + n / 100 if n else None, 2.0, "",
                           extra={"genotype": [n, 3], "architecture": f"net{n}", "epochs": 3, "params": 1000,
                                  "mflops": 1.0}) for n in (1, 0, 2)]
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert record_image_run(store, records, (1, 8, 8), 1797, 10, url, Said())
    run_id = store.read("run")[RUN_ID_FIELD]
    with KnowledgeBase.open(url) as base:
        (run,) = base.runs()
        assert (run.run_id, run.kind, run.dataset, run.n_rows, run.n_features, run.created) == \
            (run_id, "image", "digits.csv", 1797, 64, 1234.5)
        assert run.best_score == pytest.approx(0.82) and run.meta_features["n_classes"] == 10.0
        trials = base.trials(run_id)
        assert [t.number for t in trials] == [0, 1, 2] and trials[0].status == "timeout"
        assert trials[2].config == {"genotype": [2, 3], "architecture": "net2", "epochs": 3, "params": 1000}
    assert events(store, "knowledge_recorded")[0]["run_id"] == run_id
    # Recorded again (a resumed run): the same id, its entry replaced.
    assert record_image_run(store, records[:1], (1, 8, 8), 1797, 10, url, Said())
    with KnowledgeBase.open(url) as base:
        assert [r.run_id for r in base.runs()] == [run_id] and len(base.trials(run_id)) == 1


def test_the_run_s_meta_features_are_recorded_numbers_only(tmp_path: Path) -> None:
    store = made_run(tmp_path / "run", task="binary", metric="roc_auc")
    store.write(META_FEATURES, {"values": {"n_rows": 300, "landmark_nb": 0.7, "name": "x", "flag": True,
                                             "gap": None}, "seconds": 0.2})
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert record_run(store, "table", lambda: trial_entries(2), url, Said(), n_rows=300, n_features=4,
                      greater_is_better=False)
    with KnowledgeBase.open(url) as base:
        (run,) = base.runs()
    assert run.meta_features == {"n_rows": 300.0, "landmark_nb": 0.7, "gap": None}
    assert run.best_score == 0.5  # the least: a loss


def read_only(path: Path) -> str:
    """A base this process may read and not write (SQLite's read-only mode: root ignores a file's mode bits)."""
    with KnowledgeBase.open(f"sqlite:///{path}") as base:
        base.record_run(run_entry("old"), trial_entries(1))
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_a_read_only_base_is_read(tmp_path: Path) -> None:
    with KnowledgeBase.open(read_only(tmp_path / "k.db")) as base:
        assert [r.run_id for r in base.runs()] == ["old"] and base.trials("old") == trial_entries(1)
        with pytest.raises(KnowledgeError, match="readonly"):
            base.record_run(run_entry("new"), [])


@pytest.mark.parametrize("damage", ["corrupt file", "unreachable server", "read-only", "trials unreadable"])
def test_recording_never_raises_it_warns(tmp_path: Path, damage: str) -> None:
    store = made_run(tmp_path / "run")
    url = {"corrupt file": f"sqlite:///{corrupt_file(tmp_path / 'bad.db')}", "unreachable server": UNREACHABLE,
           "read-only": read_only(tmp_path / "ro.db"), "trials unreadable": f"sqlite:///{tmp_path / 'k.db'}"}[damage]

    def trials() -> list[TrialEntry]:
        if damage == "trials unreadable":
            raise ValueError("the study's storage is gone")
        return trial_entries(2)

    said = Said()
    assert record_run(store, "table", trials, url, said, n_rows=1, n_features=1, greater_is_better=True) is False
    (warning,) = events(store, "knowledge_warning")
    assert warning["error"] and not events(store, "knowledge_recorded")
    assert warning["knowledge"] == (url if damage != "read-only" else describe_url(url))
    assert len(said.lines) == 1 and "not recorded" in said.lines[0] and "--knowledge off" in said.lines[0]


def test_off_records_nothing(tmp_path: Path) -> None:
    store = made_run(tmp_path / "run")
    said = Said()
    assert record_run(store, "table", lambda: trial_entries(1), "off", said, n_rows=1, n_features=1,
                      greater_is_better=True) is False
    assert said.lines == [] and not events(store, "knowledge_warning") and not events(store, "knowledge_recorded")
    assert RUN_ID_FIELD not in store.read("run")


def test_the_default_base_is_in_the_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEDALUS_HOME", str(tmp_path / "home"))  # not made yet: the base makes it
    monkeypatch.delenv("DAEDALUS_KNOWLEDGE", raising=False)  # (conftest turns it off for the session)
    assert default_knowledge_url() == f"sqlite:///{tmp_path / 'home' / 'knowledge.db'}"
    with KnowledgeBase.open(None) as base:
        base.record_run(run_entry("x"), [])
    assert (tmp_path / "home" / "knowledge.db").is_file()


def test_the_environment_names_the_default_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("DAEDALUS_KNOWLEDGE", url)
    assert chosen_url(None) == url and chosen_url("off") is None
    monkeypatch.setenv("DAEDALUS_KNOWLEDGE", "off")
    assert chosen_url(None) is None and chosen_url(url) == url  # the option wins over the environment


# -- the command ----------------------------------------------------------------------------------------------
def test_knowledge_command_lists_exports_and_forgets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    with KnowledgeBase.open(url) as base:
        base.record_run(run_entry("aaaa1111bbbb2222", dataset="credit.csv", best=0.8123456), trial_entries(3))
        base.record_run(run_entry("cccc3333", kind="image", dataset="digits.csv"), trial_entries(2, "image"))
        with base.engine.connect() as conn, conn.begin():
            conn.execute(sa.text("INSERT INTO runs VALUES ('evil', 'table', 'binary', 'm', TRUE, 'x', 2, '{}', 1.0,"
                                 " 'd', NULL, 1.0, NULL)"))
    listed = run_cli("knowledge", "list", "--knowledge", url)
    assert listed.returncode == 0, listed.stderr
    assert "aaaa1111bbbb" in listed.stdout and "credit.csv" in listed.stdout and "0.81235" in listed.stdout
    assert "300 x 4" in listed.stdout and "digits.csv" in listed.stdout
    assert "skipped a damaged run entry (run 'evil')" in listed.stderr and "Traceback" not in listed.stderr
    as_json = json.loads(run_cli("knowledge", "list", "--kind", "image", "--json", "--knowledge", url).stdout)
    assert [(r["run_id"], r["trials"]) for r in as_json] == [("cccc3333", 2)]

    out = tmp_path / "export.json"
    exported = run_cli("knowledge", "export", out, "--knowledge", url)
    assert exported.returncode == 0 and "2 runs and 5 trials" in exported.stdout
    data = json.loads(out.read_text())
    assert [len(r["trials"]) for r in data["runs"]] == [3, 2] and data["format"] == "daedalus-knowledge"

    forgot = run_cli("knowledge", "forget", "aaaa1111", "--knowledge", url)
    assert forgot.returncode == 0 and "3 trials" in forgot.stdout
    forgot = run_cli("knowledge", "forget", "--dataset", "digits.csv", "--knowledge", url)  # a data set's traces
    assert forgot.returncode == 0 and "1 runs of digits.csv and their 2 trials" in forgot.stdout
    for args in [("forget", "aaaa1111"), ("forget", "--dataset", "digits.csv"), ("forget",),
                 ("forget", "x", "--dataset", "y"), ("list", "--knowledge", "off"),
                 ("list", "--knowledge", "not a url"), ("export", tmp_path / "no" / "such" / "dir.json")]:
        refused = run_cli("knowledge", *args, *(("--knowledge", url) if "--knowledge" not in args else ()))
        assert refused.returncode == 2, refused
        assert refused.stderr.startswith("daedalus: error: ") and refused.stderr.count("\n") == 1
    bad = f"sqlite:///{corrupt_file(tmp_path / 'bad.db')}"
    refused = run_cli("knowledge", "list", "--knowledge", bad)
    assert refused.returncode == 2 and "not a database" in refused.stderr and refused.stderr.count("\n") == 1


def test_a_bad_knowledge_url_is_refused_at_the_door(tmp_path: Path) -> None:
    result = run_cli("build", tmp_path / "absent.csv", "--target", "y", "--knowledge", "my-db")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--knowledge must be 'off' or a SQLAlchemy URL, got 'my-db'" in result.stderr


# -- whole builds -------------------------------------------------------------------------------------------------
BUILD = ("--trials", "2", "--families", "linear", "--threads", "1", "--no-explain", "--quiet")


@pytest.fixture
def plant_csv(tmp_path: Path) -> Path:
    path = tmp_path / "plant.csv"
    planted_frame(200).to_csv(path, index=False)
    return path


def audit_events(run: Path, name: str) -> list[dict[str, object]]:
    return events(RunStore.open(run), name)


@pytest.mark.slow
def test_a_build_records_itself_and_resume_replaces_it(plant_csv: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEDALUS_HOME", str(tmp_path / "home"))  # the default base, in a data directory of its own
    monkeypatch.delenv("DAEDALUS_KNOWLEDGE", raising=False)  # (conftest turns it off for the session)
    run = tmp_path / "run"
    built = run_cli("build", plant_csv, "--target", "y", *BUILD, "--run", run)
    assert built.returncode == 0, built.stderr
    run_id = json.loads((run / "run.json").read_text())[RUN_ID_FIELD]
    with KnowledgeBase.open(None) as base:
        (entry,) = base.runs()
        assert (entry.run_id, entry.kind, entry.task, entry.dataset, entry.n_rows, entry.n_features) == \
            (run_id, "table", "binary", "plant.csv", 200, 4)
        trials = base.trials(run_id)
        assert [(t.family, t.status) for t in trials] == [("linear", "ok")] * 2
        assert entry.best_score == max(t.score for t in trials if t.score is not None)
        assert entry.meta_features and all(v is None or math.isfinite(v) for v in entry.meta_features.values())
    resumed = run_cli("resume", run, "--trials", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    with KnowledgeBase.open(None) as base:
        assert [r.run_id for r in base.runs()] == [run_id] and len(base.trials(run_id)) == 3
    forgot = run_cli("knowledge", "forget", run)  # by its run directory
    assert forgot.returncode == 0 and "3 trials" in forgot.stdout
    assert run_cli("knowledge", "forget", run).returncode == 2


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["corrupt file", "unreachable server"])
def test_a_build_with_a_broken_base_finishes_with_a_warning(plant_csv: Path, tmp_path: Path, damage: str) -> None:
    bad = corrupt_file(tmp_path / "bad.db") if damage == "corrupt file" else None
    url = f"sqlite:///{bad}" if bad is not None else UNREACHABLE
    before = bad.read_bytes() if bad is not None else b""
    run = tmp_path / "run"
    built = run_cli("build", plant_csv, "--target", "y", *BUILD, "--run", run, "--knowledge", url)
    assert built.returncode == 0, built.stderr
    (warning,) = audit_events(run, "knowledge_warning")
    assert warning["knowledge"] == url
    assert json.loads((run / "leaderboard.json").read_text()) and audit_events(run, "build_finished")
    if bad is not None:
        assert bad.read_bytes() == before  # a damaged file is left as it was, for its owner to look at


@pytest.mark.slow
def test_a_build_with_knowledge_off_writes_nothing(plant_csv: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEDALUS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAEDALUS_KNOWLEDGE", raising=False)  # the default would record: --knowledge off stops it
    run = tmp_path / "run"
    built = run_cli("build", plant_csv, "--target", "y", *BUILD, "--run", run, "--knowledge", "off")
    assert built.returncode == 0, built.stderr
    assert not (tmp_path / "home" / "knowledge.db").exists()
    assert not audit_events(run, "knowledge_recorded") and not audit_events(run, "knowledge_warning")
    assert RUN_ID_FIELD not in json.loads((run / "run.json").read_text())


@pytest.mark.slow
def test_an_image_build_records_its_networks(digits_csv: Path, tmp_path: Path) -> None:
    url, run = f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "run"
    built = run_cli("build", digits_csv, "--target", "digit", "--image-shape", "8x8x1", "--trials", "2",
                    "--final-epochs", "1", "--time", "300", "--max-params", "20000", "--threads", "1", "--quiet",
                    "--run", run, "--knowledge", url)
    assert built.returncode == 0, built.stderr
    with KnowledgeBase.open(url) as base:
        (entry,) = base.runs()
        assert (entry.kind, entry.n_rows, entry.n_features, entry.meta_features["n_classes"]) == \
            ("image", 1797, 64, 10.0)
        trials = base.trials(entry.run_id)
    assert len(trials) == 2 and all(t.space == "image" and t.config["genotype"] for t in trials)
    assert audit_events(run, "knowledge_recorded")[0]["run_id"] == entry.run_id


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`daedalus knowledge list --json | head`: the pipe's reader is gone before the output is written. Before, a
    BrokenPipeError traceback; now the shell's status for it (141) and nothing on stderr."""
    exe = Path(sys.executable).with_name("daedalus")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([str(exe), "knowledge", "list", "--knowledge", f"sqlite:///{tmp_path / 'k.db'}"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""
