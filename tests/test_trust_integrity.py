"""Artifacts are trusted by the SHA-256 recorded in the audit log when they were written (issue 10, finding 1).

Each test tampers with a real run the way someone who can write the run directory would, and checks that the
file is refused, in one line, before it is loaded, promoted or used as evidence. Each tampering would succeed
without the check: the replaced files are valid models of the same run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from daedalus.ensembles.predictor import Predictor
from daedalus.errors import RunError
from daedalus.store.audit import AuditLog, record_hash
from daedalus.store.integrity import ARTIFACTS_FIELD, recorded_digests, sha256_file
from daedalus.store.run import RunStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import planted_frame

    from daedalus.interfaces.cli import main

    root = tmp_path_factory.mktemp("integrity")
    planted_frame(300).to_csv(root / "plant.csv", index=False)
    code = main(["build", str(root / "plant.csv"), "--target", "y", "--trials", "3", "--families", "linear",
                 "--quiet", "--run", str(root / "run"), "--threads", "1", "--no-explain", "--seed", "1"])
    assert code == 0
    return root / "run"


@pytest.fixture
def run_copy(built_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(built_run, copy)
    return copy


def test_every_model_file_and_the_evidence_are_recorded_when_written(built_run: Path) -> None:
    recorded = recorded_digests(AuditLog(built_run / "audit.jsonl").records())
    must = [p for p in (built_run / "model").iterdir()] + [p for p in (built_run / "best").iterdir()]
    must += [built_run / "schema.json", built_run / "train.parquet", built_run / "run.json"]
    must += list((built_run / "trials").glob("*/oof.npy")) + list((built_run / "trials").glob("*/fold_*.skops"))
    for path in must:
        name = path.relative_to(built_run).as_posix()
        assert recorded.get(name) == sha256_file(path), name
    Predictor.load(built_run)  # the untouched run loads


def _swap_in_other_model(run: Path) -> Path:
    """Replace one of the final model's files by another valid model file of the same run."""
    files = sorted((run / "model").glob("*.skops"))
    victim, other = files[0], next(f for f in files[1:] if f.read_bytes() != files[0].read_bytes())
    shutil.copyfile(other, victim)
    return victim


def test_a_swapped_model_file_is_refused_at_load(run_copy: Path) -> None:
    victim = _swap_in_other_model(run_copy)
    with pytest.raises(RunError, match="does not match the SHA-256 recorded") as info:
        Predictor.load(run_copy)
    assert victim.name in str(info.value) and "\n" not in str(info.value)


def test_a_file_added_to_the_model_directory_is_refused(run_copy: Path) -> None:
    shutil.copyfile(next((run_copy / "model").glob("*.skops")), run_copy / "model" / "extra.skops")
    with pytest.raises(RunError, match="never recorded"):
        Predictor.load(run_copy)


def test_reversed_classes_in_the_schema_are_refused(run_copy: Path) -> None:
    schema = json.loads((run_copy / "schema.json").read_text())
    schema["classes"] = list(reversed(schema["classes"]))
    (run_copy / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(RunError, match="schema.json"):
        Predictor.load(run_copy)


def test_an_edited_model_json_is_refused(run_copy: Path) -> None:
    spec = json.loads((run_copy / "model" / "model.json").read_text())
    spec["validation_score"] = 0.999
    (run_copy / "model" / "model.json").write_text(json.dumps(spec))
    with pytest.raises(RunError, match="model.json"):
        Predictor.load(run_copy)


def test_rerecording_the_hash_in_the_log_breaks_the_chain(run_copy: Path) -> None:
    """An attacker who also edits the recorded hash in place breaks the chain, and then nothing loads."""
    victim = _swap_in_other_model(run_copy)
    name = victim.relative_to(run_copy).as_posix()
    log = run_copy / "audit.jsonl"
    lines = log.read_text().splitlines()
    for i, line in enumerate(lines):
        record = json.loads(line)
        if name in (record.get(ARTIFACTS_FIELD) or {}):
            record[ARTIFACTS_FIELD][name] = sha256_file(victim)
            record["hash"] = record_hash(record)  # even rehashed, the next record's 'prev' no longer matches
            lines[i] = json.dumps(record, sort_keys=True)
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunError, match="audit log"):
        Predictor.load(run_copy)


def test_a_poisoned_trial_file_is_not_promoted_by_resume(run_copy: Path) -> None:
    """A fold model swapped in a trial's directory must not become the final model when resume ensembles."""
    from daedalus.orchestration.build import resume

    # The victim: the best trial's first fold model (the one an ensemble selected again will take), whichever
    # trial number the warm start's order made it.
    best = next(r["trial"] for r in json.loads((run_copy / "leaderboard.json").read_text()) if r["trial"] is not None)
    victim = run_copy / "trials" / f"{best:05d}" / "fold_0.skops"
    folds = sorted((run_copy / "trials").glob("*/fold_0.skops"))
    other = next(f for f in folds if f.read_bytes() != victim.read_bytes())
    shutil.copyfile(other, victim)  # a valid model, of another trial: it would load and predict
    RunStore.open(run_copy).update_run(status="running")
    before = sha256_file(run_copy / "model" / "model.json")
    with pytest.raises(RunError, match="refusing to promote"):
        resume(run_copy, n_trials=1)
    assert sha256_file(run_copy / "model" / "model.json") == before  # the approved-shape model is untouched


def test_the_cli_refuses_a_tampered_model_in_one_line(run_copy: Path, cli) -> None:  # type: ignore[no-untyped-def]
    _swap_in_other_model(run_copy)
    rows = run_copy.parent / "rows.csv"
    from conftest import planted_frame

    planted_frame(20, seed=3).drop(columns=["y"]).to_csv(rows, index=False)
    result = cli("predict", run_copy, rows, "--unapproved", "--out", run_copy.parent / "out.csv")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "does not match the SHA-256 recorded" in result.stderr
    assert not (run_copy.parent / "out.csv").exists()


def test_load_model_checks_the_bytes_it_loads_against_the_recorded_hash(built_run: Path) -> None:
    from daedalus.store.artifacts import load_model

    path = next((built_run / "model").glob("*.skops"))
    load_model(path, sha256_file(path))  # the recorded hash: loads
    with pytest.raises(RunError, match="does not match the SHA-256 recorded"):
        load_model(path, "0" * 64)
