"""The trial runner on a Ray cluster: each job a Ray task, the same contract as ``LocalRunner`` (``runner.py``).

Ray schedules; Daedalus does not build a cluster of its own. A task asks for the trial's threads as CPUs, and
inside it the job runs exactly as on this machine, in a worker forked from a forkserver of that Ray worker
(``worker.run_in_worker``), so a trial's time and memory limits, and a crash, hang or memory blow-up that takes
down only the trial, are the same on a cluster. The driver keeps the search and the run store:

- What many jobs share (the table: ``Job.shared`` leading arguments) is put into Ray's object store once.
- A task whose node or worker process dies is re-run once elsewhere by Ray (``max_retries``); if that fails too,
  or the cluster cannot run it, the trial is a ``crash`` with Ray's reason. The driver also stops a task that
  outlives its job's timeout by ``DRIVER_GRACE_SECONDS`` (a lost node that Ray has not noticed yet), so the
  budget holds.
- Cancelling interrupts the task (the trial's process is stopped by the task itself, and the Ray worker stays
  warm for the next one); a task that does not stop within ``CANCEL_GRACE_SECONDS`` is killed.

``ray`` is imported only here, and this module only when a cluster is asked for (``orchestration.parallel``).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from daedalus.errors import ConfigError
from daedalus.evaluation.runner import Finished, Job, TrialRunner
from daedalus.evaluation.worker import WorkerResult, run_in_worker

DRIVER_GRACE_SECONDS = 30.0  # past a job's own timeout (which its task enforces), the driver gives up on it
CANCEL_GRACE_SECONDS = 5.0
PROBE_SECONDS = 5.0  # to open a connection to a cluster's address, before Ray is asked to join it
LOCAL = "local"  # --ray local: a Ray instance of this machine's cores, started by the build itself
TASK_RETRIES = 1  # a task whose worker or node died is run once more elsewhere
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_joined_here = False  # this process joined the cluster through connect (and so leaves it in disconnect)


def run_job(fn: Callable[..., Any], timeout: float, memory_mb: float, *args: Any) -> WorkerResult:
    """The body of a Ray task: the job in a worker process of this node, under its limits."""
    return run_in_worker(fn, args, timeout=timeout, memory_mb=memory_mb)


@dataclass(frozen=True)
class _InFlight:
    job: Job
    ref: Any  # ray.ObjectRef of the task's WorkerResult
    started: float


def _last_line(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong (the first is the task's name, coloured)."""
    lines = [_ANSI.sub("", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


def check_reachable(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Refuse at once (a ConfigError, one line) an address ``host:port`` where nothing listens: Ray itself retries
    such an address for minutes, printing warnings. "auto" and "local" need no probe (Ray answers at once)."""
    if address in ("auto", LOCAL):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r} is not a Ray address; pass HOST:PORT (as 'ray status' shows), 'auto' "
                          "for the cluster this machine belongs to, 'local' or 'off'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at '{address}' ({exc.strerror or exc}); start it with "
                          "'ray start --head', pass the address that 'ray status' shows, or --ray off") from None


def connect(address: str, cpus: int | None = None) -> dict[str, float]:
    """Join the Ray cluster at ``address`` (an address; "auto": the one this machine runs; "local": a new one
    on this machine, of ``cpus`` CPUs, that ends with this process) unless this process has joined one already;
    returns its resources. A cluster that cannot be reached is the user's mistake: a ConfigError."""
    global _joined_here
    check_reachable(address)  # (also when joined already: an address that does not answer is refused all the same)
    if not ray.is_initialized():
        try:
            ray.init(address=address, num_cpus=cpus if address == LOCAL else None, logging_level=logging.ERROR,
                     log_to_driver=False, configure_logging=True, include_dashboard=False)
            _joined_here = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot reach the Ray cluster at '{address}' ({first}); start it with 'ray start "
                              "--head' or pass the address that 'ray status' shows") from None
    return dict(ray.cluster_resources())


def disconnect() -> None:
    """Leave the cluster if ``connect`` joined it (a connection the caller made is the caller's)."""
    global _joined_here
    if _joined_here:
        ray.shutdown()
        _joined_here = False


class RayRunner(TrialRunner):
    """Jobs as Ray tasks of ``threads`` CPUs each, at most ``capacity`` at once (see the module docstring)."""

    shares_files = False  # a task may run on another machine: files written by a job come back as bytes

    def __init__(self, address: str, capacity: int, threads: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"a runner needs a capacity of at least 1, got {capacity}")
        connect(address)
        self.capacity = capacity
        self.threads = threads
        self._task = ray.remote(run_job).options(num_cpus=threads, max_retries=TASK_RETRIES,
                                                 retry_exceptions=False)
        self._shared: dict[int, tuple[Any, Any]] = {}  # id(object) -> (object, its ObjectRef)
        self._flying: dict[int, _InFlight] = {}
        self._done: list[Finished] = []
        self._closed = False

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._flying) | {f.key for f in self._done}

    def _put_once(self, value: Any) -> Any:
        held = self._shared.get(id(value))
        if held is None or held[0] is not value:
            held = (value, ray.put(value))
            self._shared[id(value)] = held
        return held[1]

    def submit(self, job: Job) -> None:
        self._check_submit(job)
        args = [self._put_once(a) for a in job.args[:job.shared]] + list(job.args[job.shared:])
        ref = self._task.remote(job.fn, job.timeout, job.memory_mb, *args)
        self._flying[job.key] = _InFlight(job, ref, time.monotonic())

    def wait(self, timeout: float) -> list[Finished]:
        try:
            if not self._done and self._flying:
                refs = {f.ref: key for key, f in self._flying.items()}
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=timeout)
                if ready:  # and any others that are done by now
                    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                for ref in ready:
                    self._collect(refs[ref])
                self._overdue()
        except BaseException:  # a Ctrl-C: no task outlives the wait it interrupted
            self.close()
            raise
        done, self._done = self._done, []
        return done

    def _collect(self, key: int, cancelled: bool = False) -> None:
        flying = self._flying.pop(key)
        seconds = time.monotonic() - flying.started
        try:
            result: WorkerResult = ray.get(flying.ref, timeout=0 if cancelled else None)
        except (ray.exceptions.TaskCancelledError, ray.exceptions.GetTimeoutError):
            result = WorkerResult("cancelled", None, "cancelled by the run", seconds)
        except ray.exceptions.RayError as exc:
            result = WorkerResult("crash", None, f"the Ray task failed: {_last_line(exc)}", seconds)
        if cancelled:  # (whatever it had come to)
            result = WorkerResult("cancelled", None, "cancelled by the run", seconds)
        self._done.append(Finished(key, result))

    def _overdue(self) -> None:
        """Kill the tasks far past their job's timeout (a lost node Ray has not noticed): their result, timeout."""
        now = time.monotonic()
        for key, flying in list(self._flying.items()):
            if now - flying.started > flying.job.timeout + DRIVER_GRACE_SECONDS:
                ray.cancel(flying.ref, force=True)
                del self._flying[key]
                self._done.append(Finished(key, WorkerResult(
                    "timeout", None, f"timed out after {now - flying.started:.1f} s (the Ray task did not answer)",
                    now - flying.started)))

    def cancel(self, key: int) -> None:
        """Stop the job: its task is interrupted (its own code then stops the trial's process, and the Ray
        worker stays warm), or killed if it has not stopped within ``CANCEL_GRACE_SECONDS``."""
        flying = self._flying.get(key)
        if flying is None:
            return
        ray.cancel(flying.ref, force=False)
        ready, _ = ray.wait([flying.ref], timeout=CANCEL_GRACE_SECONDS)
        if not ready:
            ray.cancel(flying.ref, force=True)
        self._collect(key, cancelled=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        refs = [f.ref for f in self._flying.values()]
        for ref in refs:  # interrupted, each task stops its trial's process before it ends
            ray.cancel(ref, force=False)
        if refs:  # so wait for them: no trial process outlives the runner; kill the tasks that did not stop
            _, stuck = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)
            for ref in stuck:
                ray.cancel(ref, force=True)
        self._flying.clear()
        self._shared.clear()
