"""The Optuna study can live in PostgreSQL (--storage URL), and a run resumes from it."""

import json

import optuna
import pytest

from tests.conftest import run_cli
from tests.postgres import postgres_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


def test_build_and_resume_with_postgres_storage(postgres_url, small_binary_csv, tmp_path):
    run = tmp_path / "r"
    result = run_cli("build", small_binary_csv, "--target", "label", "--trials", "3", "--families", "linear,knn",
                     "--storage", postgres_url, "--run", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (run / "study.db").exists()
    study = optuna.load_study(study_name="daedalus", storage=postgres_url)
    assert len(study.trials) == 3
    result = run_cli("resume", run, "--trials", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert len(optuna.load_study(study_name="daedalus", storage=postgres_url).trials) == 5
    board = json.loads((run / "leaderboard.json").read_text())
    assert len([r for r in board if r["family"] != "ensemble"]) == 5


def test_unreachable_storage_is_a_user_error(small_binary_csv, tmp_path):
    result = run_cli("build", small_binary_csv, "--target", "label", "--trials", "1",
                     "--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none", "--run", tmp_path / "r")
    assert result.returncode == 2 and "--storage" in result.stderr and "Traceback" not in result.stderr
