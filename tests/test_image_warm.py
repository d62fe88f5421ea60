"""Image builds start from the user's past image runs (issue 12): the networks recorded in the knowledge base
pretrain the designer and the best of the most similar runs are queued first, with their reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daedalus.designers.nas.generative import GenerativeDesigner
from daedalus.designers.nas.local_search import LocalSearchDesigner
from daedalus.interfaces.cli import main
from daedalus.orchestration.image_warm import image_task, past_image_runs, warm_image_designer
from daedalus.spaces.nas.cnn import CNNSpace
from daedalus.store.knowledge import KnowledgeBase, RunEntry, TrialEntry

SPACE = CNNSpace()
TASK = image_task(10, (1, 8, 8), 1797)


def _record(url: str, run_id: str, task: dict[str, float], trials: list[TrialEntry]) -> None:
    with KnowledgeBase.open(url) as base:
        base.record_run(RunEntry(run_id=run_id, kind="image", task="image", metric="accuracy",
                                 greater_is_better=True, n_rows=int(task["n_images"]), n_features=64,
                                 meta_features=task, created=1.0, dataset=f"{run_id}.csv", best_score=0.9), trials)


def _trial(number: int, genotype: list[int] | object, score: float | None, status: str = "ok") -> TrialEntry:
    return TrialEntry(number=number, space="image", family=SPACE.name, config={"genotype": genotype},
                      score=score, fit_seconds=1.0, status=status)


@pytest.fixture
def knowledge(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    nets = [list(SPACE.sample(rng)) for _ in range(6)]
    url = f"sqlite:///{tmp_path / 'k.db'}"
    # A run like this task (same shape and classes) and one far from it (colour, 100 classes, big images).
    _record(url, "near-run", TASK, [_trial(i, net, 0.5 + 0.05 * i) for i, net in enumerate(nets)] + [
        _trial(90, [999] * len(nets[0]), 0.99),  # outside the space: someone else's data, skipped
        _trial(91, "not a genotype", 0.99), _trial(92, nets[0], None, "error")])
    _record(url, "far-run", image_task(100, (3, 64, 64), 50000), [_trial(0, nets[0], 0.99), _trial(1, nets[1], 0.1)])
    return url


def test_past_image_runs_are_read_and_hostile_trials_skipped(knowledge: str) -> None:
    warnings: list[str] = []
    runs = {r.run_id: r for r in past_image_runs(knowledge, SPACE, warnings)}
    assert set(runs) == {"near-run", "far-run"} and warnings == []
    near = runs["near-run"]
    assert len(near.examples) == 6 and near.examples[0][1] == pytest.approx(0.75)  # best first, hostile ones out
    assert past_image_runs("off", SPACE, warnings) == []


def test_the_most_similar_runs_best_networks_come_first_and_pretrain(knowledge: str) -> None:
    runs = past_image_runs(knowledge, SPACE, [])
    designer = GenerativeDesigner(SPACE, seed=0, task=TASK)
    done = warm_image_designer(designer, SPACE, runs, TASK)
    assert [d["pretrained_on"] for d in done if "pretrained_on" in d] == ["near-run", "far-run"]
    first = designer.ask()
    assert first is not None and first.designer == "knowledge"
    assert "near-run" in first.reason and list(first.candidate) == [
        d["queued"] for d in done if "queued" in d][0]
    assert designer.prior  # the policy was fitted to the past runs' networks


def test_a_designer_that_cannot_pretrain_still_gets_the_queue(knowledge: str) -> None:
    designer = LocalSearchDesigner(SPACE, seed=0)
    done = warm_image_designer(designer, SPACE, past_image_runs(knowledge, SPACE, []), TASK)
    assert not [d for d in done if "pretrained_on" in d] and [d for d in done if "queued" in d]
    assert designer.ask().designer == "knowledge"  # type: ignore[union-attr]


def test_an_unreadable_knowledge_base_is_a_warning(tmp_path: Path) -> None:
    bad = tmp_path / "k.db"
    bad.write_bytes(b"not a database" * 100)
    warnings: list[str] = []
    assert past_image_runs(f"sqlite:///{bad}", SPACE, warnings) == []
    assert warnings and "knowledge base" in warnings[0]


@pytest.mark.slow
def test_a_second_image_build_starts_from_the_first(digits_csv: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    common = ["--target", "digit", "--image-shape", "8x8x1", "--trials", "3", "--final-epochs", "1", "--time", "300",
              "--max-params", "50000", "--designer", "generative", "--quiet", "--threads", "1", "--knowledge", url]
    assert main(["build", str(digits_csv), *common, "--run", str(tmp_path / "a")]) == 0
    assert main(["build", str(digits_csv), *common, "--run", str(tmp_path / "b")]) == 0
    records = [json.loads(line) for line in (tmp_path / "b" / "audit.jsonl").read_text().splitlines()]
    warm = next(r for r in records if r["event"] == "warm_start")
    assert any("pretrained_on" in d for d in warm["done"]) and any("queued" in d for d in warm["done"])
    proposed = [r for r in records if r["event"] == "trial_proposed"]
    assert proposed[0]["designer"] == "knowledge" and "past image run" in proposed[0]["reason"]
