"""The Optuna study can live in PostgreSQL (--storage URL), and a run resumes from it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.conftest import run_cli
from tests.postgres import postgres_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def _finished(study: optuna.Study) -> list:
    return [t for t in study.trials if t.state.is_finished()]


def test_build_and_resume_with_postgres_storage(postgres_url, small_binary_csv, tmp_path):
    run = tmp_path / "r"
    result = run_cli("build", small_binary_csv, "--target", "label", "--trials", "3", "--families", "linear,knn",
                     "--storage", postgres_url, "--run", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (run / "study.db").exists()
    name = json.loads((run / "run.json").read_text())["study_name"]  # a name of its own in a shared database
    study = optuna.load_study(study_name=name, storage=postgres_url)
    assert len(_finished(study)) == 3  # the warm start's queue may hold more, waiting
    result = run_cli("resume", run, "--trials", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(_finished(optuna.load_study(study_name=name, storage=postgres_url))) == 5
    board = json.loads((run / "leaderboard.json").read_text())
    assert len([r for r in board if r["family"] != "ensemble"]) == 5


def test_unreachable_storage_is_a_user_error(small_binary_csv, tmp_path):
    result = run_cli("build", small_binary_csv, "--target", "label", "--trials", "1",
                     "--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none", "--run", tmp_path / "r")
    assert result.returncode == 2 and "--storage" in result.stderr and "Traceback" not in result.stderr


def test_a_build_killed_after_creating_its_study_can_be_retried(postgres_url, small_binary_csv, tmp_path):
    """The study in an external database is created before the run directory is renamed into place; a kill
    between the two leaves a study there that no run names. The retry (and any other run on the same database)
    must not collide with it: each run's study has a name of its own."""
    run = tmp_path / "r"
    args = ["build", str(small_binary_csv), "--target", "label", "--trials", "1", "--families", "linear",
            "--storage", postgres_url, "--run", str(run), "--quiet", "--no-explain"]
    killed = subprocess.run([str(Path(sys.executable).with_name("daedalus")), *args],
                            env={**os.environ, "DAEDALUS_CRASH_AT": "run_filled"}, capture_output=True, timeout=300)
    assert killed.returncode == -9 and not run.exists()
    before = len(optuna.get_all_study_names(postgres_url))
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert len(optuna.get_all_study_names(postgres_url)) == before + 1
