"""Training searched networks (nas_train) and successive halving over them (halving)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from daedalus.evaluation.halving import rung_budgets, successive_halving
from daedalus.evaluation.nas_train import (
    Trainer,
    count_params,
    learning_rate,
    measure_latency_ms,
    random_flip,
    random_shift,
    torch_threads,
    train_module,
)
from daedalus.orchestration.budget import BudgetClock
from daedalus.spaces.nas.base import Genotype
from daedalus.spaces.nas.nb201 import NB201Space


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the test machines are small and shared, where more threads only contend."""
    with torch_threads(1):
        yield


def stripes(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 1-pixel stripes: class 1 horizontal, class 0 vertical (a local pattern a 3x3 conv sees at once)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    phase = torch.randint(0, 2, (n,), generator=g)
    pattern = ((torch.arange(size)[None, :] + phase[:, None]) % 2).float()
    rows, cols = pattern[:, :, None].expand(n, size, size), pattern[:, None, :].expand(n, size, size)
    X = torch.where(y[:, None, None] == 1, rows, cols) + 0.3 * torch.randn(n, size, size, generator=g)
    return X[:, None], y


TRAIN, VAL = stripes(256, 0), stripes(128, 1)
SPACE = NB201Space()
SKIP_CELL: Genotype = (1,) * 6
DEAD_CELLS: list[Genotype] = [(0,) * 6, (0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 3)]  # node 3 never sees the input


def nb201_trainer(genotype: Genotype, horizon: int, seed: int = 0) -> Trainer:
    return Trainer(lambda: SPACE.instantiate(genotype, in_shape=(1, 8, 8), n_outputs=2, channels=4), *TRAIN, *VAL,
                   horizon_epochs=horizon, batch_size=32, lr=1e-2, seed=seed, n_threads=1)


def dropout_mlp() -> nn.Module:
    """Small, and with dropout, so that the trainer's RNG handling is exercised."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


def mlp_trainer(seed: int = 0, horizon: int = 5) -> Trainer:
    return Trainer(dropout_mlp, *TRAIN, *VAL, horizon_epochs=horizon, batch_size=32, seed=seed, n_threads=1)


# ----- the trainer -----
def test_trainer_learns_a_separable_problem() -> None:
    trainer = nb201_trainer((3,) * 6, horizon=4)
    result = trainer.train()
    assert result.epochs == 4 and not result.stopped_by_time
    assert result.score >= 0.9  # chance is 0.5
    assert result.params == count_params(trainer.module) > 0


def test_regression_scores_r2() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 5, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * torch.randn(300, generator=g)
    result = train_module(nn.Linear(5, 1), X[:200], y[:200], X[200:], y[200:], epochs=30, task="regression",
                          lr=0.05, batch_size=32, schedule="onecycle")
    assert result.score > 0.95


def test_same_seed_same_run_other_seed_other_run() -> None:
    a, b, c = mlp_trainer(0), mlp_trainer(0), mlp_trainer(1)
    results = [t.train(2) for t in (a, b, c)]
    assert results[0].score == results[1].score and results[0].val_loss == results[1].val_loss
    for key, value in a.module.state_dict().items():
        assert torch.equal(value, b.module.state_dict()[key])
    assert not torch.equal(a.module.state_dict()["1.weight"], c.module.state_dict()["1.weight"])


def test_continuing_equals_training_at_once() -> None:
    at_once, resumed, other = mlp_trainer(), mlp_trainer(), mlp_trainer(seed=3)
    at_once.train(5)
    resumed.train(2)
    torch.manual_seed(123)  # global RNG use in between must not change the resumed run
    other.train(1)
    result = resumed.train(3)
    assert result.epochs == 5
    for key, value in at_once.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert result.score == at_once.score


def test_random_shift_moves_each_image_within_its_bound() -> None:
    images = torch.arange(3 * 2 * 6 * 6, dtype=torch.float32).reshape(3, 2, 6, 6)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    again = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert torch.equal(shifted, again) and shifted.shape == images.shape
    padded = nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    offsets = []
    for i in range(3):  # every image is a window of its padded self, the same window for all its channels
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(shifted[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert found
        offsets.append(found[0])
    assert len(set(offsets)) > 1 or offsets[0] != (2, 2)  # not the identity for all


def test_random_flip_mirrors_some_images_and_leaves_the_rest() -> None:
    images = torch.arange(64 * 3 * 4 * 5, dtype=torch.float32).reshape(64, 3, 4, 5)
    flipped = random_flip(images, torch.Generator().manual_seed(0))
    assert torch.equal(flipped, random_flip(images, torch.Generator().manual_seed(0)))
    mirrored = [bool(torch.equal(flipped[i], images[i].flip(-1))) for i in range(64)]
    kept = [bool(torch.equal(flipped[i], images[i])) for i in range(64)]
    assert all(m != k for m, k in zip(mirrored, kept, strict=True))  # each image is one or the other, whole
    assert 16 < sum(mirrored) < 48


@pytest.mark.parametrize("augment", [{"shift": 1}, {"flip": True}, {"shift": 1, "flip": True}])
def test_augmented_training_still_resumes_bit_for_bit(augment: dict[str, Any]) -> None:
    def trainer() -> Trainer:
        return Trainer(dropout_mlp, *TRAIN, *VAL, horizon_epochs=4, batch_size=32, n_threads=1, **augment)

    at_once, resumed, plain = trainer(), trainer(), mlp_trainer(horizon=4)
    at_once.train(4)
    resumed.train(1)
    resumed.train(3)
    plain.train(4)
    for key, value in at_once.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert not torch.equal(at_once.module.state_dict()["1.weight"], plain.module.state_dict()["1.weight"])


def test_time_budget_stops_after_the_crossing_epoch() -> None:
    trainer = nb201_trainer((3,) * 6, horizon=1000)
    start = time.perf_counter()
    result = trainer.train(1000, seconds=0.5)
    elapsed = time.perf_counter() - start
    assert result.stopped_by_time and 1 <= result.epochs < 1000
    per_epoch = result.seconds / result.epochs
    assert elapsed < 0.5 + 2 * per_epoch + 0.5  # one epoch past the budget, plus scheduling noise


def test_schedules() -> None:
    assert learning_rate("cosine", 1.0, 0.0) == 1.0 and learning_rate("cosine", 1.0, 1.0) == pytest.approx(0.0)
    assert learning_rate("cosine", 1.0, 2.0) == learning_rate("cosine", 1.0, 1.0)  # past the horizon: stays
    assert learning_rate("onecycle", 1.0, 0.0) == pytest.approx(1 / 25)
    assert learning_rate("onecycle", 1.0, 0.3) == pytest.approx(1.0)
    assert learning_rate("onecycle", 1.0, 1.0) < 1e-5
    with pytest.raises(ValueError):
        Trainer(dropout_mlp, *TRAIN, *VAL, schedule="step")  # type: ignore[arg-type]


def test_latency_and_params() -> None:
    module = dropout_mlp()
    module.train()
    ms = measure_latency_ms(module, TRAIN[0][:32], repeats=3, n_threads=1)
    assert 0 < ms < 1000
    assert module.training  # mode restored
    assert count_params(module) == 64 * 16 + 16 + 16 * 2 + 2


# ----- successive halving -----
def test_rung_budgets() -> None:
    assert rung_budgets(9, 1, 3) == [1, 3, 9]
    assert rung_budgets(10, 2, 3) == [2, 6, 18]
    assert rung_budgets(2, 1, 3) == [1]
    assert rung_budgets(9, 1, 3, max_epochs=5) == [1, 3, 5]
    assert rung_budgets(2, 1, 3, max_epochs=4) == [1, 4]


@dataclass
class Progress:
    score: float
    epochs: int


class FakeTrainer:
    """A known learning curve, score = quality * (1 - 0.5 ** epochs), each epoch taking ``epoch_seconds``."""

    built = 0

    def __init__(self, quality: float, epoch_seconds: float = 0.0) -> None:
        FakeTrainer.built += 1
        self.quality, self.epoch_seconds, self.epochs = quality, epoch_seconds, 0

    def train(self, epochs: int | None = None, seconds: float | None = None) -> Progress:
        start = time.perf_counter()
        for _ in range(epochs or 0):
            time.sleep(self.epoch_seconds)
            self.epochs += 1
            if seconds is not None and time.perf_counter() - start >= seconds:
                break
        return Progress(self.quality * (1 - 0.5**self.epochs), self.epochs)


def test_halving_keeps_the_best_and_continues_survivors() -> None:
    FakeTrainer.built = 0
    qualities = [0.3, 0.9, 0.5, 0.1, 0.7, 0.2, 0.8, 0.4, 0.6]
    result = successive_halving(qualities, FakeTrainer, min_epochs=1, eta=3)
    assert result.rungs == [1, 3, 9]
    assert FakeTrainer.built == 9  # one trainer per candidate: survivors continue, never restart
    assert result.best_entry.candidate == 0.9 and result.best_entry.epochs == 9
    reached = {e.candidate: e.epochs for e in result.entries}
    assert sorted(reached.values()) == [1] * 6 + [3] * 2 + [9]
    assert reached[0.8] == reached[0.7] == 3
    assert result.best_entry.score == pytest.approx(0.9 * (1 - 0.5**9))
    assert isinstance(result.best_trainer, FakeTrainer) and result.best_trainer.epochs == 9


def test_halving_respects_the_time_budget() -> None:
    epoch = 0.05
    for seconds in (0.3, 0.9):  # out of time in the first rung (9 x 0.05 s), and in the last (0.45 + 0.3 + 0.3 s)
        result = successive_halving([0.1 * q for q in range(1, 10)], lambda q: FakeTrainer(q, epoch), min_epochs=1,
                                    eta=3, deadline=BudgetClock(seconds))
        assert result.stopped_by_time
        assert result.seconds < seconds + 3 * epoch  # one epoch past the budget, plus sleep's slack
        assert result.best_entry.epochs == max(e.epochs for e in result.entries)
        untrained = [e for e in result.entries if e.epochs == 0]
        assert all(e.score == -math.inf and e.rung == -1 for e in untrained)
        assert bool(untrained) == (seconds == 0.3)


def test_halving_on_real_networks_drops_dead_cells() -> None:
    candidates = [DEAD_CELLS[0], SKIP_CELL, DEAD_CELLS[1], DEAD_CELLS[2]]
    budgets = rung_budgets(len(candidates), 1, 2, max_epochs=4)
    result = successive_halving(candidates, lambda g: nb201_trainer(g, horizon=budgets[-1]), min_epochs=1, eta=2,
                                max_epochs=4, deadline=BudgetClock(60))
    assert result.rungs == [1, 2, 4] and not result.stopped_by_time
    assert result.best_entry.candidate == SKIP_CELL and result.best_entry.epochs == 4
    assert result.best_entry.score >= 0.9
    assert max(e.score for e in result.entries if e.candidate != SKIP_CELL) < 0.7  # a dead cell predicts a constant
