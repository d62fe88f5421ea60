"""The trial runner contract (``evaluation/runner.py``), one suite run against every implementation, as Optuna's
``StorageTestCase`` runs against every storage: this machine's workers, and Ray tasks on a loopback cluster.

Real worker processes throughout; the jobs are tiny functions of this module."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from daedalus.evaluation.ray_runner import RayRunner
from daedalus.evaluation.runner import Finished, Job, LocalRunner, TrialRunner
from tests.ray_cluster import loopback_cluster

RUNNERS: dict[str, Callable[[], TrialRunner]] = {
    "local-1": lambda: LocalRunner(1),
    "local-2": lambda: LocalRunner(2),
    "ray-2": lambda: RayRunner(loopback_cluster().address, capacity=2),  # tasks on two nodes of a loopback cluster
}
CONCURRENT = ("local-2", "ray-2")  # the runners above with room for two jobs in flight (the tests of overlapping jobs)
MEMORY = 4000.0


def double(x: int) -> int:
    return 2 * x


def sleep_then(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def raises() -> None:
    raise ValueError("bad config")


def crashes() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def eats_memory() -> None:
    blocks = []
    while True:
        blocks.append(bytearray(50 * 2**20))
        for i in range(0, len(blocks[-1]), 4096):
            blocks[-1][i] = 1


def pid_then_hang(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)


def _params(names: Iterable[str]) -> list[Any]:
    """The runners' names as fixture parameters; Ray's in one xdist group (with ``--dist loadgroup`` one test
    process starts a loopback cluster; the default distribution spreads them, each process starting its own)."""
    return [pytest.param(n, marks=pytest.mark.xdist_group("ray")) if n.startswith("ray") else n for n in names]


@pytest.fixture(params=_params(sorted(RUNNERS)))
def runner(request: pytest.FixtureRequest) -> Iterator[TrialRunner]:
    with RUNNERS[request.param]() as made:
        yield made


@pytest.fixture(params=_params(CONCURRENT))
def concurrent_runner(request: pytest.FixtureRequest) -> Iterator[TrialRunner]:
    with RUNNERS[request.param]() as made:
        assert made.capacity >= 2
        yield made


def _all(runner: TrialRunner, limit: float = 60.0) -> list[Finished]:
    """Every result of the jobs in flight, in the order the runner returned them."""
    out: list[Finished] = []
    end = time.monotonic() + limit
    while runner.in_flight and time.monotonic() < end:
        out.extend(runner.wait(0.5))
    return out


def _run_one(runner: TrialRunner, job: Job) -> Finished:
    runner.submit(job)
    (finished,) = _all(runner)
    assert finished.key == job.key and not runner.in_flight
    return finished


def test_a_result_comes_back_under_its_key(runner: TrialRunner) -> None:
    finished = _run_one(runner, Job(7, double, (21,), timeout=60, memory_mb=MEMORY))
    assert finished.result.status == "ok" and finished.result.value == 42, finished.result.reason


def test_an_error_is_a_result_with_its_reason(runner: TrialRunner) -> None:
    result = _run_one(runner, Job(0, raises, (), timeout=60, memory_mb=MEMORY)).result
    assert result.status == "error" and "ValueError: bad config" in result.reason


def test_a_crash_is_a_result(runner: TrialRunner) -> None:
    result = _run_one(runner, Job(0, crashes, (), timeout=60, memory_mb=MEMORY)).result
    assert result.status == "crash" and "SIGSEGV" in result.reason


def test_a_hang_ends_at_its_timeout(runner: TrialRunner) -> None:
    t0 = time.monotonic()
    result = _run_one(runner, Job(0, sleep_then, (60, 1), timeout=1.0, memory_mb=MEMORY)).result
    assert result.status == "timeout" and time.monotonic() - t0 < 10


def test_a_memory_hog_is_killed(runner: TrialRunner) -> None:
    result = _run_one(runner, Job(0, eats_memory, (), timeout=60, memory_mb=400)).result
    assert result.status == "memory" and "out of memory" in result.reason


def test_wait_returns_nothing_within_its_timeout_while_a_job_runs(runner: TrialRunner) -> None:
    runner.submit(Job(0, sleep_then, (3, 1), timeout=60, memory_mb=MEMORY))
    assert runner.wait(0.2) == [] and runner.in_flight == {0}
    assert [f.result.value for f in _all(runner)] == [1]


def test_capacity_is_respected(runner: TrialRunner) -> None:
    for key in range(runner.capacity):
        runner.submit(Job(key, sleep_then, (0.5, key), timeout=60, memory_mb=MEMORY))
    assert runner.free() == 0
    with pytest.raises(ValueError, match="full"):
        runner.submit(Job(99, double, (1,), timeout=60, memory_mb=MEMORY))
    assert sorted(f.key for f in _all(runner)) == list(range(runner.capacity))
    assert runner.free() == runner.capacity


def test_a_key_in_flight_is_refused(concurrent_runner: TrialRunner) -> None:
    runner = concurrent_runner
    runner.submit(Job(1, sleep_then, (0.5, 1), timeout=60, memory_mb=MEMORY))
    with pytest.raises(ValueError, match="already in flight"):
        runner.submit(Job(1, double, (1,), timeout=60, memory_mb=MEMORY))


def test_results_arrive_in_the_order_they_finish(concurrent_runner: TrialRunner) -> None:
    runner = concurrent_runner
    # Every slot's worker started first: a Ray node's first task waits for its forkserver's imports (seconds),
    # which would decide the order here instead of the jobs' own lengths.
    for key in range(runner.capacity):
        runner.submit(Job(100 + key, sleep_then, (0.5, key), timeout=60, memory_mb=MEMORY))
    assert len(_all(runner)) == runner.capacity
    runner.submit(Job(0, sleep_then, (3.0, 0), timeout=60, memory_mb=MEMORY))
    runner.submit(Job(1, sleep_then, (0.2, 1), timeout=60, memory_mb=MEMORY))
    finished = _all(runner)
    assert [f.key for f in finished] == [1, 0]
    assert [f.result.value for f in finished] == [1, 0]


def test_cancel_stops_a_job_and_reports_it(runner: TrialRunner, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    runner.submit(Job(3, pid_then_hang, (str(marker),), timeout=60, memory_mb=MEMORY))
    pid = _wait_for_pid(runner, marker)
    runner.cancel(3)
    (finished,) = _all(runner)
    assert finished.key == 3 and finished.result.status == "cancelled"
    assert not _running(pid)
    runner.cancel(3)  # no longer in flight: nothing happens


@pytest.mark.xdist_group("ray")
def test_close_with_jobs_in_flight_leaves_no_process(tmp_path: Path) -> None:
    for name, make in RUNNERS.items():
        runner = make()
        markers = [tmp_path / f"{name}-{key}" for key in range(runner.capacity)]
        for key, marker in enumerate(markers):
            runner.submit(Job(key, pid_then_hang, (str(marker),), timeout=60, memory_mb=MEMORY))
        pids = [_wait_for_pid(runner, marker) for marker in markers]
        runner.close()
        runner.close()  # idempotent
        assert not any(_running(pid) for pid in pids), name
        with pytest.raises(ValueError, match="closed"):
            runner.submit(Job(9, double, (1,), timeout=60, memory_mb=MEMORY))


def _wait_for_pid(runner: TrialRunner, marker: Path) -> int:
    end = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < end, "the job never started"
        assert runner.wait(0.1) == []
    return int(marker.read_text())


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
