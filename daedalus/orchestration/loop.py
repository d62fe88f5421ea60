"""The one search loop, for table runs and image runs: ask the designer, evaluate through the trial runner,
record, tell. Repeat until the budget is spent.

    hooks (steering's commands)  ->  budget check  ->  designer.ask()  ->  evaluator.start()  ->  runner.submit()
    runner.wait()  ->  evaluator.finished()  ->  designer.tell()  ->  evaluator.recorded()  (best/, audit)

What differs between the kinds of run is not here but in the :class:`Evaluator`: how a proposal becomes a job
for the runner (a configuration fitted fold by fold; a network trained on a rung of successive halving), what
its result means, what the final stage keeps in reserve, and how trials rank. Results may arrive in any order
(several trials in flight when the runner's capacity is above 1): each is written as it arrives. Every trial is
on disk before the next result is handled, so a run killed at any moment loses at most the trials in flight,
which ``resume`` runs again.

When the designer is told, and so what it proposes next, depends on timing with several trials in flight. A run
bounded by a number of trials (``--trials N --seed S``) must give the same leaderboard twice, so it is *ordered*:
results are told in the order the trials were proposed, and proposal ``k`` is asked only once the first
``k - W`` trials were told (W = ``ORDER_WINDOW`` x capacity); it then sees exactly those results and, as pending
(Optuna's constant liar), the ``W - 1`` trials before it, whatever the order they finished in. A slot may idle
while a much longer older trial finishes: the price of reproducibility, paid only when it was asked for. A run
bounded by time alone tells each result as it arrives.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import psutil

from daedalus.designers.base import Designer, Proposal, Result
from daedalus.evaluation.metrics import Metric
from daedalus.evaluation.runner import Job, LocalRunner, TrialRunner
from daedalus.evaluation.worker import WorkerResult
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.reporter import Progress, Reporter

C = TypeVar("C")
MIN_TRIAL_SECONDS = 1.0  # below this much search time left, no new trial is started
# An ordered loop lets this many proposals per slot be untold at once (TellOrder): with one, a slot whose trial
# finished waited for every older trial, and 2 workers ran a --trials 24 build 1.35-1.65x as fast as one.
ORDER_WINDOW = 2
POLL_SECONDS = 0.25  # how long the loop waits before asking again a designer that had nothing to propose (paused)


def default_memory_mb() -> float:
    """A trial's memory limit unless set: 60% of this machine's memory."""
    return 0.6 * psutil.virtual_memory().total / 2**20


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial, as the leaderboard shows it; the same record for every kind of run."""

    number: int
    family: str
    status: str  # ok, error, timeout, memory, crash, cancelled, interrupted, failed
    score: float | None
    fit_seconds: float
    reason: str
    designer: str = ""  # who proposed it (a designer's name, "portfolio", "steering", ...)
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific leaderboard columns (architecture, epochs)


def trial_status(score: float | None) -> str:
    """The one rule for a trial that returned: "ok" with a score (0.0 is a score), "failed" without one."""
    return "ok" if score is not None else "failed"


@dataclass(frozen=True)
class Limits:
    """What a job may use: the search's time left (capped by ``cap``) and ``memory_mb``."""

    memory_mb: float
    cap: float


@dataclass(frozen=True)
class Done(Generic[C]):
    """A trial whose evaluation is over: its record, and the result the designer is told."""

    proposal: Proposal[C]
    record: TrialRecord | None  # None: told to the designer, not a trial (a repeat of an evaluated candidate)
    result: Result


class Evaluator(ABC, Generic[C]):
    """What one kind of run does with a proposal. The loop calls, in order: ``start`` for each new proposal (or
    ``next_job`` first: work of the evaluator's own, e.g. a candidate promoted to the next rung), then
    ``finished`` for each job's result, then ``recorded`` for each trial it returned, after the designer was told."""

    metric: Metric
    records: list[TrialRecord]  # the run's finished trials (a resumed run's earlier ones first); the loop appends

    @abstractmethod
    def start(self, proposal: Proposal[C], timeout: float, limits: Limits) -> Job | Done[C]:
        """The job that evaluates ``proposal``, or its :class:`Done` when it is not evaluated (screened out)."""

    @abstractmethod
    def finished(self, key: int, result: WorkerResult) -> list[Done[C]]:
        """Record a job's result (its files, its audit record); the trials whose evaluation is now over."""

    def recorded(self, done: Done[C], ranked: list[TrialRecord]) -> None:
        """After the designer was told: audit the trial, keep what the ranking says to keep (``best/``);
        ``ranked``: the successful trials best first, this one included if it succeeded."""

    def next_job(self, timeout: float, limits: Limits) -> Job | None:
        """Work to run before any new proposal (successive halving's next rung), or None."""
        return None

    def drain(self) -> list[Done[C]]:
        """When the search is over: trials whose evaluation was cut short (nothing runs any more)."""
        return []

    def wants_proposal(self) -> bool:
        """Whether a new proposal may start now (a bracket waiting for its rung to finish: no)."""
        return True

    def reserve(self, records: list[TrialRecord], clock: BudgetClock) -> float:
        """Seconds of the clock the final stage needs once the search is over."""
        return 0.0

    def rank_key(self, record: TrialRecord) -> tuple[float, ...]:
        """The order of successful trials, best first: by the metric, then the earlier trial."""
        return (-self.metric.utility(record.score or 0.0), record.number)

    def ranked_ok(self) -> list[TrialRecord]:
        return sorted((r for r in self.records if r.status == "ok" and r.score is not None), key=self.rank_key)

    def running(self, proposal: Proposal[C]) -> str:
        """What the display shows while ``proposal`` runs."""
        return f"trial {proposal.number}: {proposal.family}"


class TellOrder(Generic[C]):
    """The bookkeeping of an ordered loop (see the module docstring). The trial asked ``p``-th is told once the
    ``p + window - 1``-th was asked, so the ``k``-th proposal sees exactly the trials before ``k - window + 1``
    told and the others pending, however the runner's timing went; and a new proposal waits while ``window``
    trials are untold. A window of twice the runner's capacity lets the slots run ahead of a long trial (a
    finished one is held, not told, and its slot takes the next proposal) at the price of proposals that see
    results a little older."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.n_asked = 0
        self.untold: deque[tuple[int, int]] = deque()  # (position in the asking order, proposal number)
        self.held: dict[int, list[Done[C]]] = {}  # results of untold trials

    def may_ask(self) -> bool:
        return len(self.untold) < self.window

    def asked(self, number: int) -> None:
        self.untold.append((self.n_asked, number))
        self.n_asked += 1

    def hold(self, done: Done[C]) -> bool:
        """Keep ``done`` until its turn; False if it is not an untold trial's (told at once)."""
        if all(number != done.proposal.number for _, number in self.untold):
            return False
        self.held.setdefault(done.proposal.number, []).append(done)
        return True

    def releasable(self, no_more_asks: bool) -> Iterator[Done[C]]:
        """The results whose turn has come, oldest first (``no_more_asks``: every held one, in order)."""
        while self.untold:
            position, number = self.untold[0]
            turn = no_more_asks or self.n_asked >= position + self.window
            if not turn or number not in self.held:
                return
            self.untold.popleft()
            yield from self.held.pop(number)


class SearchLoop(Generic[C]):
    """Runs the loop above until ``trials_to_run`` new proposals were evaluated or the clock's time, less the
    evaluator's reserve, is spent. ``before_budget_check``: called before each look at the budget (steering's
    'add-time' counts); ``after_tell``: called after each tell (the designer's state is stored then);
    ``ordered``: tell results in the order of the proposals (default: when ``trials_to_run`` bounds the run)."""

    def __init__(self, evaluator: Evaluator[C], designer: Designer[C], clock: BudgetClock, reporter: Reporter,
                 trials_to_run: int | None, limits: Limits,
                 runner: TrialRunner | None = None, before_budget_check: Sequence[Callable[[], None]] = (),
                 after_tell: Sequence[Callable[[], None]] = (), ordered: bool | None = None) -> None:
        self.evaluator = evaluator
        self.designer = designer
        self.clock = clock
        self.reporter = reporter
        self.trials_to_run = trials_to_run
        self.records = evaluator.records
        self.limits = limits
        self.runner = runner or LocalRunner()
        self.before_budget_check = list(before_budget_check)
        self.after_tell = list(after_tell)
        self.metric = evaluator.metric
        # ordered (see the module docstring; by default when a number of trials bounds the run): the proposals
        # started and not yet told, oldest first; a result is held back until the older ones are told
        ordered = (trials_to_run is not None and self.runner.capacity > 1) if ordered is None else ordered
        self.in_order: TellOrder[C] | None = TellOrder(ORDER_WINDOW * self.runner.capacity) if ordered else None

    # -- budget --------------------------------------------------------------------------------------------
    def search_time_left(self) -> float:
        return self.clock.remaining - self.evaluator.reserve(self.records, self.clock)

    def _out_of_time(self) -> bool:
        return self.search_time_left() < MIN_TRIAL_SECONDS

    def _trial_timeout(self) -> float:
        return max(0.5, min(self.limits.cap, self.search_time_left()))

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        started = 0
        try:
            while True:
                if self.runner.free() > 0:  # between trials, as a trial is started (not while all slots run)
                    for hook in self.before_budget_check:
                        hook()
                out_of_time = self._out_of_time()
                waiting = False
                self._release(no_more_asks=out_of_time or self._enough(started))
                if not out_of_time:
                    added, waiting = self._fill(started)
                    started += added
                if self.runner.in_flight:
                    for finished in self.runner.wait(POLL_SECONDS):
                        self._finish(finished.key, finished.result)
                elif out_of_time or self._enough(started):
                    break
                elif waiting:  # nothing runs and the designer has nothing to propose now (paused)
                    time.sleep(POLL_SECONDS)
            self._release(no_more_asks=True)
            for done in self.evaluator.drain():  # e.g. a bracket cut short by the budget: its trials so far
                self._record(done)
        finally:
            self.runner.close()  # a Ctrl-C or an error: no worker outlives the loop
        return self.records

    def _enough(self, started: int) -> bool:
        return self.trials_to_run is not None and started >= self.trials_to_run

    def _fill(self, started: int) -> tuple[int, bool]:
        """Submit work while the runner has room: the evaluator's own first (a promotion), then new proposals
        while ``trials_to_run`` allows. Returns (new proposals started, whether the loop waits on the
        designer)."""
        added = 0
        while self.runner.free() > 0 and not self._out_of_time():
            job = self.evaluator.next_job(self._trial_timeout(), self.limits)
            if job is None:
                if self._enough(started + added) or not self.evaluator.wants_proposal():
                    return added, False
                self._release(no_more_asks=False)
                if self.in_order is not None and not self.in_order.may_ask():
                    return added, False  # the oldest trial's result is told first
                proposal = self.designer.ask()
                if proposal is None:
                    self._release(no_more_asks=True)  # (paused: nothing to wait for)
                    return added, True
                start = self.evaluator.start(proposal, self._trial_timeout(), self.limits)
                if isinstance(start, Done):  # not evaluated (screened out, or evaluated before)
                    self._record(start)
                    continue
                job = start
                added += 1
                if self.in_order is not None:
                    self.in_order.asked(proposal.number)
                self._report(self.evaluator.running(proposal))
            self.runner.submit(job)
        return added, False

    def _finish(self, key: int, result: WorkerResult) -> None:
        for done in self.evaluator.finished(key, result):
            if self.in_order is None or not self.in_order.hold(done):
                self._record(done)
        self._report("")

    def _release(self, no_more_asks: bool) -> None:
        if self.in_order is not None:
            for done in self.in_order.releasable(no_more_asks):
                self._record(done)

    def _record(self, done: Done[C]) -> None:
        self.designer.tell(done.proposal, done.result)
        for hook in self.after_tell:
            hook()
        record = done.record
        if record is None:  # told, not a trial of its own
            return
        ok = [record] if record.status == "ok" and record.score is not None else []
        self.evaluator.recorded(done, sorted([*self.ranked_ok(), *ok], key=self.evaluator.rank_key))
        self.records.append(record)
        if not ok:
            self.reporter.message(f"trial {record.number} ({record.family}) failed: {record.reason or record.status}")

    # -- ranking -------------------------------------------------------------------------------------------
    def ranked_ok(self) -> list[TrialRecord]:
        return self.evaluator.ranked_ok()

    def _report(self, running: str) -> None:
        ranked = self.ranked_ok()
        best = ranked[0] if ranked else None
        self.reporter.update(Progress(
            trials_done=len(self.records), trials_failed=sum(r.status != "ok" for r in self.records),
            best_score=best.score if best else None, best_family=best.family if best else None,
            metric=self.metric.name,
            time_left=None if self.clock.seconds is None else max(0.0, self.clock.remaining),
            running=running))
