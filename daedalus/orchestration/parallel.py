"""How a table build runs its trials side by side (issue 13): how many at once, with how many threads and how much
memory each, and on which runner (this machine's worker processes, or tasks of a Ray cluster).

The split is decided once per build (and again on resume, where the machine or cluster may differ) and written
to the audit log, so a reviewer can see why a trial had the threads it had. Concurrency never oversubscribes by
default: on this machine N trials on C cores get C // N threads each (at least one); on a Ray cluster each trial
asks Ray for its threads as CPUs (one by default), and as many run as the cluster's CPUs allow (``--workers``
caps it). The memory limit is the run's: on this machine the run's own process (which holds the table) counts, and
each of the N trials may use 1/N of what is left; on a cluster each trial gets 1/N of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from daedalus.errors import ConfigError
from daedalus.evaluation.runner import LocalRunner, TrialRunner
from daedalus.orchestration.loop import default_memory_mb
from daedalus.orchestration.options import MIN_MEMORY_MB, BuildOptions

RAY_ADDRESS_ENV = "RAY_ADDRESS"  # Ray's own variable: a cluster's address, where --ray is not given
RAY_OFF = "off"


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on Linux)
        return os.cpu_count() or 1


def process_memory_mb() -> float:
    """This process's resident memory (the run's driver, which holds the table), in MB."""
    return float(psutil.Process().memory_info().rss) / 2**20


def ray_address(options: BuildOptions) -> str | None:
    """The Ray cluster the trials run on (``--ray``, else ``$RAY_ADDRESS``), or None: this machine."""
    address = options.ray if options.ray is not None else os.environ.get(RAY_ADDRESS_ENV) or None
    return None if address == RAY_OFF else address


@contextmanager
def cluster_joined(options: BuildOptions) -> Iterator[None]:
    """This process joined to the Ray cluster the options name (if any) for the block, and left after it. Joined
    first thing, so a cluster that does not answer is refused (a ConfigError, one line) before a run directory
    exists; with 'local', the Ray instance it starts (and its start-up time) is part of the build."""
    address = ray_address(options)
    if address is None:
        yield
        return
    from daedalus.evaluation.ray_runner import connect, disconnect  # (imports ray: only when a cluster is named)

    connect(address, cpus=machine_cores())
    try:
        yield
    finally:
        disconnect()


@dataclass(frozen=True)
class Parallelism:
    workers: int  # trials in flight at once
    threads_per_trial: int  # OpenMP threads of each trial (BLAS gets one: evaluation.trial.thread_limits)
    memory_mb_per_trial: float
    cores: int  # of this machine, or the Ray cluster's CPUs
    reason: str  # how the split was decided, for the audit log
    ray_address: str | None = None  # None: this machine's workers

    @property
    def final_threads(self) -> int:
        """Threads of the final stage (the refit, the explanations: on this machine, alone): what the trials had
        here, all of this machine's cores after a search on a cluster."""
        return machine_cores() if self.ray_address else self.threads_per_trial * self.workers

    @property
    def final_memory_mb(self) -> float:
        return default_memory_mb() if self.ray_address else self.memory_mb_per_trial * self.workers

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "memory_mb_per_trial": round(self.memory_mb_per_trial, 1)}


def plan_parallelism(options: BuildOptions, cores: int | None = None, held_mb: float = 0.0) -> Parallelism:
    """The split of this machine (``cores``: its count, measured when None), or of the Ray cluster's CPUs (the
    cluster is joined here), among the trials. ``held_mb``: what the run's own process holds (the table
    included); on this machine the memory limit is the whole run's, so the trials share what is left of it."""
    address = ray_address(options)
    if address is not None:
        return _plan_on_ray(options, address)
    cores = cores or machine_cores()
    workers = options.workers or 1
    memory = _trials_share(options, workers, held_mb)
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


def _trials_share(options: BuildOptions, workers: int, held_mb: float) -> float:
    limit = options.memory_mb or default_memory_mb()
    share = (limit - held_mb) / workers
    if share < MIN_MEMORY_MB:
        raise ConfigError(f"--memory-limit {limit:.0f} leaves {max(share, 0):.0f} MB to each of {workers} trial(s) "
                          f"after the {held_mb:.0f} MB this run's own process holds (the table included), below "
                          f"the {MIN_MEMORY_MB:.0f} MB a trial needs; raise --memory-limit to at least "
                          f"{held_mb + MIN_MEMORY_MB * workers:.0f}")
    return share


def _plan_on_ray(options: BuildOptions, address: str) -> Parallelism:
    from daedalus.evaluation.ray_runner import connect  # (imports ray: only when a cluster is asked for)

    cpus = int(connect(address, cpus=machine_cores()).get("CPU", 0))  # (joined already: cluster_joined)
    threads = options.n_threads or 1
    fits = max(1, cpus // threads)
    workers = min(options.workers, fits) if options.workers else fits
    reason = f"the Ray cluster's {cpus} CPUs, {threads} per trial: {fits} trial(s) at once"
    if options.workers:
        reason += f", --workers {options.workers}"
    memory = (options.memory_mb or default_memory_mb()) / workers
    return Parallelism(workers=workers, threads_per_trial=threads, memory_mb_per_trial=memory, cores=cpus,
                       reason=reason, ray_address=address)


def make_runner(parallelism: Parallelism) -> TrialRunner:
    """The runner of the search's trials: ``workers`` at a time, in worker processes of this machine or as Ray
    tasks."""
    if parallelism.ray_address is not None:
        from daedalus.evaluation.ray_runner import RayRunner

        return RayRunner(parallelism.ray_address, capacity=parallelism.workers,
                         threads=parallelism.threads_per_trial)
    return LocalRunner(capacity=parallelism.workers)
