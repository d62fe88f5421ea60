"""``daedalus learn`` end to end (issue 12.6): a user's finished run, recorded in the knowledge base, is mined with
the shipped matrix into the data directory's portfolio, which the next build reads (the audit log says which file,
by its hash) and in which the user's own table is the nearest task."""

import hashlib
import json
from pathlib import Path

import pytest

from daedalus.designers.meta.portfolio import Portfolio
from daedalus.store.knowledge import KnowledgeBase
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
BUILD = ("--target", "label", "--threads", "1", "--no-explain", "--quiet", "--families", "linear,lightgbm")


def _audit(run: Path, event: str) -> dict:
    records = [json.loads(line) for line in (run / "audit.jsonl").read_text().splitlines()]
    return next(r for r in records if r["event"] == event)


def test_learn_mines_the_users_runs_into_the_portfolio_later_builds_use(small_binary_csv, tmp_path, monkeypatch):
    home = tmp_path / "home"  # this test's own data directory: the learned portfolio must not reach other tests
    monkeypatch.setenv("DAEDALUS_HOME", str(home))
    knowledge = f"sqlite:///{tmp_path / 'k.db'}"
    built = run_cli("build", small_binary_csv, *BUILD, "--trials", "6", "--run", tmp_path / "a",
                    "--knowledge", knowledge, "--warm-start", "off")
    assert built.returncode == 0, built.stderr
    with KnowledgeBase.open(knowledge) as base:
        (run_id,) = [run.run_id for run in base.runs()]

    learned = run_cli("learn", "--knowledge", knowledge, "--size", "6")
    assert learned.returncode == 0, learned.stderr
    assert "1 run(s) of the knowledge base" in learned.stdout
    path = home / "portfolio.json"
    portfolio = Portfolio.load(path)
    assert len(portfolio.members) == 6
    names = [t["name"] for t in portfolio.tasks]
    assert run_id in names and len(names) > 100  # the user's run joins the shipped corpus

    again = run_cli("build", small_binary_csv, *BUILD, "--trials", "2", "--run", tmp_path / "b", "--knowledge", "off")
    assert again.returncode == 0, again.stderr
    warm = _audit(tmp_path / "b", "warm_start")
    assert warm["portfolio"] == (f"learned (daedalus learn): {path}, sha256 "
                                 f"{hashlib.sha256(path.read_bytes()).hexdigest()}")
    first = warm["warm_start"]["proposals"][0]
    assert first["nearest_task"] == run_id and first["distance"] == pytest.approx(0.0, abs=1e-6)


def test_learn_without_a_knowledge_base_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DAEDALUS_HOME", str(tmp_path))
    for args in (("--knowledge", "off"), ("--size", "0")):
        out = run_cli("learn", *args)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "portfolio.json").exists()
