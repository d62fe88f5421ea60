"""An image run's search: the one loop (``loop.py``) with the :class:`ImageEvaluator`, which trains candidate
networks by successive halving (``evaluation.halving.Bracket``), each rung of each candidate a job in a worker.

A bracket takes ``BRACKET`` proposals (1 epoch each); once all have their score, the best third go on to 3
epochs, continuing from their checkpoint (in the trial's directory). The bracket's trials are recorded, and
the designer told, when the bracket is over (or the search's time is), each at the highest fidelity it reached,
in the order they were proposed. Proposals too slow for the
budget (FLOPs x this machine's measured throughput, then timed steps) are told to the designer as failures and
not trained; a proposal evaluated before is told its earlier score.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

import numpy as np
import torch

from daedalus.data.images import parse_image_shape
from daedalus.data.schema import Task
from daedalus.designers.base import Proposal, Result
from daedalus.ensembles.network import NetworkModel, NetworkSpec
from daedalus.evaluation.halving import Bracket
from daedalus.evaluation.metrics import get_metric
from daedalus.evaluation.nas_trial import NetworkData, NetworkJob, NetworkOutcome, train_network
from daedalus.evaluation.runner import Job
from daedalus.evaluation.worker import WorkerResult
from daedalus.orchestration.budget import BudgetClock
from daedalus.orchestration.image_task import ImageTask, NetworkCosts
from daedalus.orchestration.loop import Done, Evaluator, Limits, TrialRecord, trial_status
from daedalus.spaces.nas.base import ArchSpace, Genotype
from daedalus.store.layout import BEST_MODEL, CHECKPOINT_FILE, TRIAL_FILE
from daedalus.store.run import RunStore, write_json_atomic

METRIC = "accuracy"
BRACKET = 9  # candidates per bracket of successive halving
ETA = 3
RUNGS = (1, 3)  # epochs: every candidate 1, the best third 3 (the trainers' schedule horizon)
MAX_ASKS_PER_CANDIDATE = 30  # asks per wanted candidate before a bracket settles for fewer (or the cheapest)
FLOP_SCREEN_SLACK = 2.0  # the FLOP estimate may be this optimistic before a candidate's steps are timed
START_SECONDS = 10.0  # a worker's start (the forkserver has torch) and the network's build, beyond its epochs


def image_metric() -> Any:
    return get_metric(METRIC, Task.MULTICLASS)


def trial_extra(space: ArchSpace, genotype: Genotype, epochs: int, params: int, costs: NetworkCosts,
                latency: bool) -> dict[str, Any]:
    """The leaderboard columns of a network trial."""
    return {"architecture": space.to_string(genotype), "genotype": list(genotype), "epochs": epochs,
            "params": params, "mflops": round(costs.flops(genotype) / 1e6, 3),
            "latency_ms": round(costs.latency_ms(genotype), 3) if latency else None}


class ImageEvaluator(Evaluator[Genotype]):
    def __init__(self, store: RunStore, task: ImageTask, space: ArchSpace, costs: NetworkCosts,
                 data: NetworkData, records: list[TrialRecord], search_seconds: float,
                 n_candidates: int | None, latency: bool, clock: BudgetClock) -> None:
        self.store, self.task, self.space, self.costs, self.data = store, task, space, costs, data
        self.records, self.metric, self.latency = records, image_metric(), latency
        self.n_candidates, self.clock = n_candidates, clock  # the search's share of the run's clock
        # A network whose estimated epoch would eat more than its share of the search is not trained: on a CPU
        # the largest networks of the space take minutes an epoch, and one of them could spend the whole search.
        self.epoch_allowance = search_seconds / (2 * BRACKET)
        self.started = len(records)  # candidates trained (a resumed run's too)
        self.scores: dict[Genotype, float | None] = {tuple(r.extra["genotype"]): r.score for r in records}
        self.bracket: Bracket[int] | None = None  # its candidates are trial numbers
        self._proposals: dict[int, Proposal[Genotype]] = {}
        self._failed: dict[int, WorkerResult] = {}
        self._weights: dict[int, NetworkOutcome] = {}
        self._slow: list[float] = []  # estimates of the proposals screened out since the last one trained
        self._ended: list[int] = []  # candidates of the bracket whose evaluation is over (recorded at its end)
        self._asks = 0  # proposals asked for the current bracket

    # -- proposals -----------------------------------------------------------------------------------------
    def wants_proposal(self) -> bool:
        return self.bracket is None or self.bracket.accepts() or self.bracket.done

    def start(self, proposal: Proposal[Genotype], timeout: float, limits: Limits) -> Job | Done[Genotype]:
        genotype = proposal.candidate
        in_bracket = self.bracket is not None and any(
            self._proposals[e.candidate].candidate == genotype for e in self.bracket.entries
            if e.candidate in self._proposals)
        if genotype in self.scores or in_bracket:
            score = self.scores.get(genotype)
            return Done(proposal, None, Result("ok" if score is not None else "failed", score,
                                               {"reason": "evaluated before"}))
        estimate = self.costs.epoch_seconds(genotype, len(self.task.y))
        if estimate <= FLOP_SCREEN_SLACK * self.epoch_allowance:
            estimate = self.costs.timed_epoch_seconds(genotype, len(self.task.y), self.task.batch_size)
        if self.bracket is None or self.bracket.done:
            size = BRACKET if self.n_candidates is None else max(1, min(BRACKET, self.n_candidates - self.started))
            self.bracket, self._asks = Bracket(size, RUNGS, ETA), 0
        self._asks += 1
        if estimate > self.epoch_allowance and not self._take_slow(estimate):
            self._slow.append(estimate)
            if self.bracket.entries and self._asks >= MAX_ASKS_PER_CANDIDATE * self.bracket.size:
                self.bracket.close()  # enough asks: the bracket goes on with the candidates it has
            return Done(proposal, None, Result("too_slow", None, {"reason": f"an epoch estimated at {estimate:.1f} s"
                                                                  f" > {self.epoch_allowance:.1f} s allowed"}))
        self._audit_slow()
        self.bracket.add(proposal.number)
        self.started += 1
        self._proposals[proposal.number] = proposal
        trial_dir = self.store.trial_dir(proposal.number)
        shutil.rmtree(trial_dir, ignore_errors=True)  # left by a session killed while it trained (no record)
        trial_dir.mkdir(parents=True)
        return self._job(proposal.number, RUNGS[0], timeout, limits)

    def _take_slow(self, estimate: float) -> bool:
        """Whether a proposal too slow for the budget is trained all the same: when every proposal of a bracket
        so far was too slow, after as many asks as a bracket may take, the cheapest one, so the search goes on."""
        assert self.bracket is not None
        if self.bracket.entries or self._asks < MAX_ASKS_PER_CANDIDATE * self.bracket.size:
            return False
        return not self._slow or estimate <= min(self._slow)

    def _audit_slow(self) -> None:
        if self._slow:
            self.store.audit.append("candidates_too_slow", count=len(self._slow), allowance_seconds=round(
                self.epoch_allowance, 2), cheapest_estimate_seconds=round(min(self._slow), 2))
            self._slow = []

    def next_job(self, timeout: float, limits: Limits) -> Job | None:
        if self.bracket is None:
            return None
        while (promoted := self.bracket.promotion()) is not None:
            index, epochs = promoted
            entry = self.bracket.entries[index]
            if entry.seconds / max(entry.epochs, 1) < timeout:  # its measured epoch time fits the time left
                return self._job(entry.candidate, epochs, timeout, limits)
            self.bracket.report(index, entry.score, entry.epochs, entry.seconds, complete=False)
        return None

    def _job(self, number: int, epochs: int, timeout: float, limits: Limits) -> Job:
        genotype = self._proposals[number].candidate
        job = NetworkJob(self.space, genotype, self.task.in_shape, self.task.n_classes, horizon_epochs=RUNGS[-1],
                         epochs=epochs, deadline=self.clock.child(timeout),
                         checkpoint=self.store.trial_dir(number) / CHECKPOINT_FILE)
        # The trainer stops after the epoch that crosses the deadline; the worker is killed only past that epoch.
        grace = START_SECONDS + 2 * epochs * self.costs.epoch_seconds(genotype, len(self.task.y))
        return Job(number, train_network, (self.data, job), timeout=timeout + grace, memory_mb=limits.memory_mb)

    def running(self, proposal: Proposal[Genotype]) -> str:
        return f"trial {proposal.number}: {self.space.to_string(proposal.candidate)[:60]}"

    # -- results -------------------------------------------------------------------------------------------
    def finished(self, key: int, result: WorkerResult) -> list[Done[Genotype]]:
        assert self.bracket is not None
        index = next(i for i, e in enumerate(self.bracket.entries) if e.candidate == key)
        entry = self.bracket.entries[index]
        if result.status == "ok":
            outcome: NetworkOutcome = result.value
            self._weights[key] = outcome
            budget = self.bracket.budgets[self.bracket.rung]
            self.bracket.report(index, outcome.score, outcome.epochs, outcome.seconds,
                                complete=outcome.epochs >= budget or not math.isfinite(outcome.score))
        else:
            self._failed[key] = result
            self.bracket.report(index, -math.inf, entry.epochs, entry.seconds + result.seconds, complete=False)
        self._ended += self.bracket.take_over()
        if not self.bracket.done:
            return []
        # The bracket's trials are recorded, and told to the designer, when the bracket is over, in the order they
        # were proposed: the designer learns from each candidate's score at the highest fidelity it reached.
        ended, self._ended = sorted(self._ended), []
        return [self._done(i) for i in ended]

    def drain(self) -> list[Done[Genotype]]:
        self._audit_slow()
        if self.bracket is None:
            return []
        ended, self._ended = sorted([*self._ended, *self.bracket.stop()]), []
        return [self._done(i) for i in ended]

    def _done(self, index: int) -> Done[Genotype]:
        assert self.bracket is not None
        entry = self.bracket.entries[index]
        number = entry.candidate
        proposal = self._proposals.pop(number)
        failed = self._failed.pop(number, None)
        outcome = self._weights.get(number)
        score = entry.score if math.isfinite(entry.score) and failed is None else None
        status = failed.status if failed is not None else trial_status(score)
        if outcome is not None:
            self.costs.observe(proposal.candidate, len(self.task.y), entry.epochs, entry.seconds)
        reason = (f"{proposal.reason}; trained {entry.epochs} epoch(s) by successive halving"
                  + (f"; {failed.reason.strip().splitlines()[0]}" if failed is not None and failed.reason else ""))
        extra = trial_extra(self.space, proposal.candidate, entry.epochs, outcome.params if outcome else 0,
                            self.costs, self.latency)
        record = TrialRecord(number, self.space.name, status, score, round(entry.seconds, 3), reason,
                             designer=proposal.designer, extra=extra)
        self.scores[proposal.candidate] = score
        return Done(proposal, record, Result(status, score, {"epochs": entry.epochs}))

    def recorded(self, done: Done[Genotype], ranked: list[TrialRecord]) -> None:
        record = done.record
        assert record is not None
        directory = self.store.trial_dir(record.number)
        outcome = self._weights.pop(record.number, None)
        if outcome is not None:
            self.network_model(record, outcome.weights).save(self.store.network_dir(record.number), self.store)
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)  # its evaluation is over: no rung continues it
        save_trial(self.store, record)
        self.store.audit.append("trial_result", trial=record.number, family=record.family,
                                architecture=record.extra["architecture"], score=record.score,
                                epochs=record.extra["epochs"], params=record.extra["params"], status=record.status,
                                designer=record.designer, reason=record.reason)
        if ranked and ranked[0].number == record.number and outcome is not None:
            self.network_model(record, outcome.weights).save(self.store.root / BEST_MODEL, self.store)
            self.store.audit.append("best_model_saved", trial=record.number, score=record.score)

    def rank_key(self, record: TrialRecord) -> tuple[float, ...]:
        """By fidelity reached, then score: a 3-epoch score is not comparable with a 1-epoch one."""
        return (-float(record.extra["epochs"]), -(record.score or -math.inf), record.number)

    def network_model(self, record: TrialRecord, weights: dict[str, Any]) -> NetworkModel:
        table = self.task.table
        spec = NetworkSpec(self.space.name, tuple(record.extra["genotype"]), record.extra["architecture"],
                           parse_image_shape(self.task.options.image_shape), table.classes, table.pixel_columns,
                           table.scale, table.mean, table.std, record.score, record.extra["epochs"], record.number)
        return NetworkModel(spec, {k: torch.from_numpy(np.array(v)) for k, v in weights.items()})


def save_trial(store: RunStore, record: TrialRecord) -> None:
    """An image trial's record, written atomically in its directory and its hash recorded."""
    path = store.trial_dir(record.number) / TRIAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"number": record.number, "family": record.family, "status": record.status,
                             "score": record.score, "fit_seconds": record.fit_seconds, "reason": record.reason,
                             "designer": record.designer, "extra": record.extra})
    store.record([path])


def load_trials(store: RunStore) -> list[TrialRecord]:
    """The trials an image run recorded, in number order (a resumed run's history; the designer's own state is
    restored from ``designer.json``)."""
    import json

    records = []
    for path in (store.trial_dir(n) / TRIAL_FILE for n in store.trial_numbers()):
        if not path.exists():
            continue
        raw = json.loads(path.read_text(encoding="utf-8"))
        records.append(TrialRecord(int(raw["number"]), str(raw["family"]), str(raw["status"]), raw["score"],
                                   float(raw["fit_seconds"]), str(raw["reason"]), designer=str(raw["designer"]),
                                   extra=dict(raw["extra"])))
    return sorted(records, key=lambda r: r.number)
