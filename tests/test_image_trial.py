"""The image trial function (``evaluation/nas_trial.py``): a rung that continues from a checkpoint, as a promoted
candidate does in a fresh worker, trains bit for bit as an uninterrupted run; the successive-halving rules
(``halving.Bracket``) promote the best third once a rung is complete, whatever order results arrive in."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from daedalus.evaluation.halving import Bracket
from daedalus.evaluation.nas_trial import NetworkData, NetworkJob, save_arrays, train_network
from daedalus.orchestration.budget import BudgetClock
from daedalus.spaces.nas.cnn import CNNSpace


def _data(tmp_path: Path) -> NetworkData:
    rng = np.random.default_rng(0)
    images = rng.random((60, 1, 8, 8), dtype=np.float32)
    labels = (images.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    save_arrays(tmp_path / "images", {"X": images[:40], "y": labels[:40], "X_val": images[40:], "y_val": labels[40:]})
    return NetworkData(tmp_path / "images", batch_size=16, lr=3e-3, seed=0, n_threads=1, shift=1, flip=False)


def _job(genotype: tuple[int, ...], epochs: int, checkpoint: Path | None) -> NetworkJob:
    return NetworkJob(CNNSpace(), genotype, (1, 8, 8), 2, horizon_epochs=3, epochs=epochs,
                      deadline=BudgetClock(600), checkpoint=checkpoint)


def test_a_rung_continued_from_its_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    data, space = _data(tmp_path), CNNSpace()
    genotype = space.portfolio()[0]
    whole = train_network(data, _job(genotype, 3, None))
    checkpoint = tmp_path / "checkpoint.pt"
    first = train_network(data, _job(genotype, 1, checkpoint))
    assert first.epochs == 1 and checkpoint.exists()
    rest = train_network(data, _job(genotype, 3, checkpoint))
    assert rest.epochs == 3 and rest.score == whole.score
    for name, tensor in whole.weights.items():
        assert np.array_equal(tensor, rest.weights[name]), name


def test_the_final_schedule_trains_the_epochs_asked_or_ends_with_its_deadline(tmp_path: Path) -> None:
    data, genotype = _data(tmp_path), CNNSpace().portfolio()[0]

    def final(epochs: int | None, seconds: float) -> int:
        job = NetworkJob(CNNSpace(), genotype, (1, 8, 8), 2, horizon_epochs=epochs or 200, epochs=epochs,
                         deadline=BudgetClock(seconds), final=True)
        return train_network(data, job).epochs

    assert final(2, 0.0) == 2  # the epochs asked, whatever the time
    assert final(None, 0.0) == 1  # out of time: one epoch, so that there is a network


def test_a_bracket_promotes_the_best_third_whatever_the_order_of_results() -> None:
    bracket: Bracket[str] = Bracket(9, [1, 3], eta=3)
    names = [bracket.add(c) for c in "abcdefghi"]
    assert not bracket.accepts() and bracket.promotion() is None  # the rung is not complete
    scores = [0.3, 0.9, 0.5, 0.1, 0.7, 0.2, 0.8, 0.4, 0.6]
    for i in reversed(names):  # results in reverse order
        bracket.report(i, scores[i], 1, 1.0)
    eliminated = bracket.take_over()
    assert sorted(eliminated) == [0, 2, 3, 5, 7, 8]
    promoted = [bracket.promotion(), bracket.promotion(), bracket.promotion(), bracket.promotion()]
    assert promoted == [(1, 3), (6, 3), (4, 3), None]  # best first
    for index, _ in promoted[:3]:  # type: ignore[misc]
        bracket.report(index, scores[index] + 0.05, 3, 3.0)
    assert sorted(bracket.take_over()) == [1, 4, 6] and bracket.done
    assert bracket.entries[bracket.best()].candidate == "b"


def test_a_bracket_cut_short_hands_back_what_it_has() -> None:
    bracket: Bracket[int] = Bracket(9, [1, 3])
    for candidate in range(4):
        bracket.add(candidate)
    for i in range(4):
        bracket.report(i, -math.inf if i == 2 else 0.1 * i, 1, 1.0)
    assert bracket.take_over() == []  # the first rung is still filling
    assert sorted(bracket.stop()) == [0, 1, 2, 3] and bracket.done
