"""Trial isolation: a trial that raises, crashes, hangs or eats memory is reported, never propagated."""

import os
import signal
import time

from daedalus.evaluation.worker import run_in_worker


def ok(x):
    return x * 2


def raises():
    raise ValueError("bad config")


def crashes():
    os.kill(os.getpid(), signal.SIGSEGV)


def hangs():
    time.sleep(60)


def eats_memory():
    blocks = []
    while True:
        blocks.append(bytearray(50 * 2**20))
        for i in range(0, len(blocks[-1]), 4096):
            blocks[-1][i] = 1


def test_ok():
    result = run_in_worker(ok, (21,), timeout=60, memory_mb=4000)
    assert result.status == "ok" and result.value == 42


def test_error_is_reported_with_its_reason():
    result = run_in_worker(raises, (), timeout=60, memory_mb=4000)
    assert result.status == "error" and "ValueError: bad config" in result.reason


def test_crash_is_reported():
    result = run_in_worker(crashes, (), timeout=60, memory_mb=4000)
    assert result.status == "crash" and "SIGSEGV" in result.reason


def test_hang_is_killed_at_the_timeout():
    t0 = time.monotonic()
    result = run_in_worker(hangs, (), timeout=1.0, memory_mb=4000)
    assert result.status == "timeout" and time.monotonic() - t0 < 10


def test_memory_hog_is_killed():
    result = run_in_worker(eats_memory, (), timeout=60, memory_mb=400)
    assert result.status == "memory" and "out of memory" in result.reason
