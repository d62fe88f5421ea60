"""The trial runner: where trials run. The search loop submits jobs and collects their results as they finish.

The contract (``tests/test_runner_contract.py`` runs one suite against every implementation):

1. ``submit(job)`` while ``free() > 0`` (at most ``capacity`` jobs in flight); it returns at once. The job's
   limits (``timeout``, ``memory_mb``) count from the submission.
2. ``wait(timeout)`` returns the jobs that finished, each once, as :class:`Finished` (its key and its
   :class:`~daedalus.evaluation.worker.WorkerResult`), in the order they finished, which need not be the order
   they were submitted; an empty list when none finished within ``timeout`` seconds. Nothing raises for a failed
   trial: an error, a crash, a timeout or a memory kill is a result like any other.
3. ``cancel(key)`` stops a job in flight; its result (status ``cancelled``) comes from the next ``wait``.
4. ``close()`` stops every job still in flight (no process is left) and ends the runner; it is idempotent, and a
   runner is a context manager that closes itself. A Ctrl-C inside ``wait`` stops the jobs in flight and is
   raised.

``LocalRunner`` runs each job in a worker forked from the forkserver (``worker.py``), with the cold-start rule
(a cheap job runs in a worker forked from the run while the forkserver is importing). ``RayRunner``
(``ray_runner.py``) runs them as tasks of a Ray cluster: the same five methods; the loop needs no change for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from daedalus.evaluation.worker import Worker, WorkerResult

POLL_SECONDS = 0.05  # how long one look at the workers in flight waits, all of them together


@dataclass(frozen=True)
class Job:
    """A call to run in isolation: ``fn(*args)`` (both picklable), within ``timeout`` seconds and ``memory_mb``
    of resident memory. ``key`` names it in the results (a trial number). ``cold``: cheap enough to run before
    the worker pool has imported the model libraries. ``shared``: how many leading ``args`` are the same object
    for many jobs (the table): a cluster runner sends those once."""

    key: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    timeout: float
    memory_mb: float
    cold: bool = False
    shared: int = 0


@dataclass(frozen=True)
class Finished:
    key: int
    result: WorkerResult


class TrialRunner(ABC):
    """Runs up to ``capacity`` jobs at once (see the module docstring for the contract)."""

    capacity: int
    # Whether a job runs where this process's files are (it may write into the run directory); a runner whose
    # jobs may run on other machines says False, and the jobs then send their files back instead.
    shares_files: bool = True
    _closed = False  # set by close()

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Start ``job``; a ``ValueError`` if the runner is full, closed, or already runs a job of that key."""

    @abstractmethod
    def wait(self, timeout: float) -> list[Finished]:
        """The jobs that finished within ``timeout`` seconds (maybe none), in the order they finished."""

    @abstractmethod
    def cancel(self, key: int) -> None:
        """Stop the job ``key`` if it is in flight (its result, ``cancelled``, comes from the next ``wait``)."""

    @abstractmethod
    def close(self) -> None:
        """Stop every job in flight and end the runner (idempotent)."""

    @property
    @abstractmethod
    def in_flight(self) -> frozenset[int]:
        """The keys of the jobs submitted and not yet returned by ``wait``."""

    def free(self) -> int:
        return self.capacity - len(self.in_flight)

    def _check_submit(self, job: Job) -> None:
        """The refusals of ``submit`` (a ValueError): a closed runner, a key in flight, no room."""
        if self._closed:
            raise ValueError("the runner is closed")
        if job.key in self.in_flight:
            raise ValueError(f"a job with key {job.key} is already in flight")
        if self.free() < 1:
            raise ValueError(f"the runner is full ({self.capacity} job(s) in flight); wait for a result first")

    def __enter__(self) -> TrialRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class LocalRunner(TrialRunner):
    """Jobs in worker processes of this machine (``worker.Worker``): one at a time by default, so that a trial
    gets the threads it was given and ``--seed`` gives the same leaderboard twice."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"a runner needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self._workers: dict[int, Worker] = {}
        self._done: list[Finished] = []  # finished (or cancelled), not yet returned by wait
        self._closed = False

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._workers) | {f.key for f in self._done}

    def submit(self, job: Job) -> None:
        self._check_submit(job)
        self._workers[job.key] = Worker(job.fn, job.args, timeout=job.timeout, memory_mb=job.memory_mb,
                                        cold=job.cold)

    def wait(self, timeout: float) -> list[Finished]:
        try:
            if not self._done and self._workers:
                self._poll_until(timeout)
        except BaseException:  # a Ctrl-C: no worker outlives the wait it interrupted
            self.close()
            raise
        done, self._done = self._done, []
        return done

    def _poll_until(self, timeout: float) -> None:
        spent = 0.0
        while not self._done and self._workers:
            share = POLL_SECONDS / len(self._workers)
            for key, worker in list(self._workers.items()):
                result = worker.poll(share)
                if result is not None:
                    del self._workers[key]
                    self._done.append(Finished(key, result))
            spent += POLL_SECONDS
            if spent >= timeout:
                break

    def cancel(self, key: int) -> None:
        worker = self._workers.pop(key, None)
        if worker is not None:
            self._done.append(Finished(key, worker.stop("cancelled", "cancelled by the run")))

    def close(self) -> None:
        self._closed = True
        workers, self._workers = self._workers, {}
        for worker in workers.values():
            worker.stop("cancelled", "cancelled: the runner was closed")
