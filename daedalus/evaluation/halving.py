"""Successive halving on epochs (Jamieson & Talwalkar, 2016; one bracket of Hyperband, Li et al., 2017).

Every candidate trains ``min_epochs``; the best 1/eta go on to ``min_epochs * eta``, the best 1/eta of those
to ``min_epochs * eta**2``, and so on, so most of the budget goes to the few candidates that look best early.
The choices, and why:

* **Continue, never restart.** A survivor keeps its weights and optimizer state and trains only the epochs
  between rungs (the trainer object holds them; see ``nas_train.Trainer``). Restarting would spend the lower
  rungs' epochs again for nothing.
* **One bracket, not Hyperband.** Hyperband hedges against early scores that mislead by also running brackets
  that start fewer candidates at more epochs. For small networks trained a few epochs that hedge costs more
  than it saves; a caller who wants it can run this function with several ``min_epochs``.
* **Ranking at equal fidelity.** A rung ranks candidates by their score after exactly that rung's epochs,
  ties broken by the input order, so the outcome is deterministic given deterministic trainers.
* **Rungs.** ``rung_budgets``: ``min_epochs * eta**k`` while a rung still has more than one candidate, and,
  when ``max_epochs`` is given, capped there with ``max_epochs`` as the last rung (so the winner ends fully
  trained on the trainers' schedule horizon, which should be ``rung_budgets(...)[-1]``).
* **Time.** ``seconds`` bounds the whole run (building the trainers included). Each training call gets the
  time left and stops after the epoch that crosses it; a candidate whose measured epoch time exceeds what is
  left is not started. Survivors train best-first, so a run cut short has spent its time on the likeliest
  winners. The overrun is at most about one epoch of one candidate.

The function knows nothing of spaces or torch: a candidate is anything, ``make_trainer(candidate)`` returns an
object with ``train(epochs, seconds)`` that returns something with ``score`` (higher is better) and
``epochs`` (the total trained so far).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    @property
    def score(self) -> float: ...

    @property
    def epochs(self) -> int: ...


class Resumable(Protocol):
    def train(self, epochs: int | None = None, seconds: float | None = None) -> Progress: ...


@dataclass
class Entry(Generic[T]):
    """One candidate's standing: its score at the fidelity it reached (``epochs``), and the best rung it
    completed (-1: none)."""

    candidate: T
    score: float = -math.inf
    best_score: float = -math.inf
    epochs: int = 0
    seconds: float = 0.0
    rung: int = -1


@dataclass
class HalvingResult(Generic[T]):
    entries: list[Entry[T]]  # one per candidate, in the input order
    rungs: list[int]  # the epoch budgets
    best: int  # index into entries: the most trained candidate, then the best score
    seconds: float
    stopped_by_time: bool
    best_trainer: Resumable | None  # the winner's trainer, to export it or train it further

    @property
    def best_entry(self) -> Entry[T]:
        return self.entries[self.best]


def rung_budgets(n_candidates: int, min_epochs: int = 1, eta: int = 3, max_epochs: int | None = None) -> list[int]:
    """The epochs of each rung for ``n_candidates`` (see the module's docstring)."""
    if n_candidates < 1 or min_epochs < 1 or eta < 2:
        raise ValueError("need n_candidates >= 1, min_epochs >= 1 and eta >= 2")
    budgets, alive = [min_epochs], n_candidates
    while alive >= eta:
        alive //= eta
        budgets.append(budgets[-1] * eta)
    if max_epochs is not None:
        if max_epochs < min_epochs:
            raise ValueError(f"max_epochs ({max_epochs}) is below min_epochs ({min_epochs})")
        budgets = [b for b in budgets if b < max_epochs] + [max_epochs]
    return budgets


def successive_halving(candidates: Sequence[T], make_trainer: Callable[[T], Resumable], *, min_epochs: int = 1,
                       eta: int = 3, max_epochs: int | None = None,
                       seconds: float | None = None) -> HalvingResult[T]:
    """Run successive halving over ``candidates``; every candidate's best score and fidelity is returned."""
    start = time.perf_counter()
    budgets = rung_budgets(len(candidates), min_epochs, eta, max_epochs)
    entries = [Entry(c) for c in candidates]
    trainers: dict[int, Resumable] = {}
    alive = list(range(len(candidates)))
    stopped = False

    def time_left() -> float:
        return math.inf if seconds is None else seconds - (time.perf_counter() - start)

    for rung, budget in enumerate(budgets):
        for i in alive:
            entry = entries[i]
            epoch_time = entry.seconds / entry.epochs if entry.epochs else 0.0
            if time_left() <= epoch_time:
                stopped = True
                break
            begun = time.perf_counter()
            if i not in trainers:
                trainers[i] = make_trainer(entry.candidate)
            left = time_left()
            progress = trainers[i].train(budget - entry.epochs, None if math.isinf(left) else max(left, 0.0))
            entry.score, entry.epochs = float(progress.score), int(progress.epochs)
            entry.best_score = max(entry.best_score, entry.score)
            entry.seconds += time.perf_counter() - begun
            if entry.epochs < budget and time_left() <= 0:  # out of time mid-rung (not, say, diverged)
                stopped = True
                break
            entry.rung = rung
        if stopped or rung == len(budgets) - 1:
            break
        # Keep the best 1/eta (at least one), and train them best-first at the next rung.
        ranked = sorted(alive, key=lambda j: (-entries[j].score, j))
        alive = ranked[: max(1, len(alive) // eta)]
        for j in ranked[len(alive):]:
            trainers.pop(j, None)  # an eliminated candidate's network and optimizer are no longer needed

    best = max(range(len(entries)), key=lambda j: (entries[j].epochs, entries[j].score, -j))
    return HalvingResult(entries=entries, rungs=budgets, best=best, seconds=time.perf_counter() - start,
                         stopped_by_time=stopped, best_trainer=trainers.get(best))
