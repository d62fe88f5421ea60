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
* **Time.** A ``deadline`` (a share of the run's one clock: anything with ``remaining`` seconds) bounds the
  whole run (building the trainers included). Each training call gets the time left and stops after the epoch
  that crosses it; a candidate whose measured epoch time exceeds what is left is not started. Survivors train
  best-first, so a run cut short has spent its time on the likeliest winners. The overrun is at most about one
  epoch of one candidate.
* **Driven from inside or outside.** :class:`Bracket` holds the rules (which candidates go on, and when);
  ``successive_halving`` drives one bracket in this process, candidate after candidate. The search loop's image
  evaluator drives a bracket from outside instead: each rung of each candidate is a job in a worker, results
  arrive in any order, and the bracket says which candidates go on once a rung is complete.

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


class Deadline(Protocol):
    """A share of the run's one clock (``orchestration.budget.BudgetClock``): the seconds it has left."""

    @property
    def remaining(self) -> float: ...


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


class Bracket(Generic[T]):
    """The rules of one bracket, whoever trains: up to ``size`` candidates join the first rung (``add``; ``close``
    when no more will come); each reports its result (``report``, in any order); once every candidate of a rung
    has, the best 1/eta (at least one) go on to the next rung, best first (``promotion``). A candidate whose
    evaluation is over (eliminated, top rung done, failed) is handed out once by ``take_over``."""

    def __init__(self, size: int, budgets: Sequence[int], eta: int = 3) -> None:
        self.size, self.budgets, self.eta = size, list(budgets), eta
        self.entries: list[Entry[T]] = []
        self.rung = 0
        self._alive: list[int] = []  # the candidates of the current rung
        self._waiting: list[int] = []  # promoted to the current rung, not started yet (best first)
        self._running: set[int] = set()
        self._over: list[int] = []  # evaluation over, not yet handed out
        self._closed = False

    def accepts(self) -> bool:
        """Whether a new candidate may join (the first rung is still filling)."""
        return self.rung == 0 and not self._closed and len(self.entries) < self.size

    def add(self, candidate: T) -> int:
        """A new candidate, to be trained for the first rung; its index."""
        if not self.accepts():
            raise ValueError("the bracket takes no more candidates")
        self.entries.append(Entry(candidate))
        index = len(self.entries) - 1
        self._alive.append(index)
        self._running.add(index)
        self._closed = len(self.entries) == self.size
        return index

    def promotion(self) -> tuple[int, int] | None:
        """(candidate index, epochs in all) of the next survivor to train at the current rung, or None."""
        if not self._waiting:
            return None
        index = self._waiting.pop(0)
        self._running.add(index)
        return index, self.budgets[self.rung]

    def report(self, index: int, score: float, epochs: int, seconds: float, complete: bool = True) -> None:
        """A candidate's result at the current rung; ``complete``: it reached the rung (not stopped by time).
        A failure (``score`` -inf, no epochs) ends the candidate's evaluation."""
        entry = self.entries[index]
        entry.score, entry.epochs = float(score), int(epochs)
        entry.best_score = max(entry.best_score, entry.score)
        entry.seconds = seconds
        if complete:
            entry.rung = self.rung
        self._running.discard(index)
        self._advance()

    def close(self) -> None:
        """No more candidates will join: the first rung is complete once those in it have reported."""
        self._closed = True
        self._advance()

    def _advance(self) -> None:
        while self._closed and not self._running and not self._waiting and self._alive:
            if self.rung == len(self.budgets) - 1:
                self._over += self._alive
                self._alive = []
                return
            ranked = sorted(self._alive, key=lambda j: (-self.entries[j].score, j))
            keep = ranked[: max(1, len(ranked) // self.eta)]
            self._over += ranked[len(keep):]
            self._alive, self._waiting = keep, list(keep)
            self.rung += 1

    def take_over(self) -> list[int]:
        """The candidates whose evaluation ended since the last call."""
        over, self._over = self._over, []
        return over

    def stop(self) -> list[int]:
        """End the bracket where it stands (out of time): every candidate not handed out yet, not running."""
        self._closed = True
        rest = [i for i in [*self._over, *self._alive] if i not in self._running]
        self._over, self._alive, self._waiting = [], [i for i in self._alive if i in self._running], []
        return rest

    @property
    def done(self) -> bool:
        return self._closed and not self._alive and not self._running and not self._over

    def best(self) -> int:
        """The most trained candidate, then the best score, then the earliest."""
        return max(range(len(self.entries)), key=lambda j: (self.entries[j].epochs, self.entries[j].score, -j))


def successive_halving(candidates: Sequence[T], make_trainer: Callable[[T], Resumable], *, min_epochs: int = 1,
                       eta: int = 3, max_epochs: int | None = None,
                       deadline: Deadline | None = None) -> HalvingResult[T]:
    """Run successive halving over ``candidates`` in this process; every candidate's best score and fidelity is
    returned."""
    start = time.perf_counter()
    budgets = rung_budgets(len(candidates), min_epochs, eta, max_epochs)
    bracket: Bracket[T] = Bracket(len(candidates), budgets, eta)
    order = [bracket.add(c) for c in candidates]  # the first rung, in the input order
    trainers: dict[int, Resumable] = {}
    stopped = False

    def time_left() -> float:
        return math.inf if deadline is None else deadline.remaining

    while order and not stopped:
        for i in order:
            entry = bracket.entries[i]
            epoch_time = entry.seconds / entry.epochs if entry.epochs else 0.0
            budget = budgets[bracket.rung]
            if time_left() <= epoch_time:
                stopped = True
                break
            begun = time.perf_counter()
            if i not in trainers:
                trainers[i] = make_trainer(entry.candidate)
            left = time_left()
            progress = trainers[i].train(budget - entry.epochs, None if math.isinf(left) else max(left, 0.0))
            seconds = entry.seconds + time.perf_counter() - begun
            out_of_time = int(progress.epochs) < budget and time_left() <= 0  # (not, say, diverged)
            bracket.report(i, float(progress.score), int(progress.epochs), seconds, complete=not out_of_time)
            if out_of_time:
                stopped = True
                break
        for j in bracket.take_over():
            if j != bracket.best():
                trainers.pop(j, None)  # an eliminated candidate's network and optimizer are no longer needed
        order = []
        while (promoted := bracket.promotion()) is not None:
            order.append(promoted[0])

    best = bracket.best()
    return HalvingResult(entries=bracket.entries, rungs=budgets, best=best, seconds=time.perf_counter() - start,
                         stopped_by_time=stopped, best_trainer=trainers.get(best))
