"""How a table build runs its trials side by side (issue 13): how many at once, with how many threads and how much
memory each, and on which runner.

The split is decided once per build (and again on resume, where the machine may differ) and written to the
audit log, so a reviewer can see why a trial had the threads it had. Concurrency never oversubscribes the
machine by default: N trials on C cores get C // N threads each (at least one). The memory limit is the run's,
shared equally: each trial may use 1/N of it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from daedalus.evaluation.runner import LocalRunner, TrialRunner
from daedalus.orchestration.loop import default_memory_mb
from daedalus.orchestration.options import BuildOptions


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on Linux)
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Parallelism:
    workers: int  # trials in flight at once
    threads_per_trial: int  # OpenMP threads of each trial (BLAS gets one: evaluation.trial.thread_limits)
    memory_mb_per_trial: float
    cores: int  # of this machine
    reason: str  # how the split was decided, for the audit log

    @property
    def final_threads(self) -> int:
        """Threads of the final stage (the refit, the explanations), which runs alone: all the trials had."""
        return self.threads_per_trial * self.workers

    @property
    def final_memory_mb(self) -> float:
        return self.memory_mb_per_trial * self.workers

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "memory_mb_per_trial": round(self.memory_mb_per_trial, 1)}


def plan_parallelism(options: BuildOptions, cores: int | None = None) -> Parallelism:
    """The split of this machine (``cores``: its count, measured when None) among ``options.workers`` trials."""
    cores = cores or machine_cores()
    workers = options.workers
    memory = (options.memory_mb or default_memory_mb()) / workers
    if options.n_threads is not None:
        threads = options.n_threads
        reason = f"--threads {threads} as given"
        if threads * workers > cores:
            reason += f" ({threads * workers} threads on {cores} cores: oversubscribed)"
    else:
        threads = max(1, cores // workers)
        reason = f"{cores} cores shared among {workers} trial(s) at once"
        if workers > cores:
            reason += f" (more trials than cores: {workers - cores} wait on a busy core at any time)"
    return Parallelism(workers=workers, threads_per_trial=threads, memory_mb_per_trial=memory, cores=cores,
                       reason=reason)


def make_runner(parallelism: Parallelism) -> TrialRunner:
    """The runner of the search's trials: worker processes of this machine, ``workers`` at a time."""
    return LocalRunner(capacity=parallelism.workers)
