"""The worker pool's start: its library imports (seconds, tens of seconds on a busy machine) are waited for
within the caller's time limit, by a wait that a Ctrl-C ends at once, and a cheap call need not wait at all.

Each case runs in a fresh interpreter, so that the forkserver is cold (this test process may have one warm)."""

import subprocess
import sys
import textwrap


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_a_cold_pool_is_waited_for_within_the_timeout_only():
    result = _python("""
        import os, time
        from daedalus.evaluation.worker import pool_ready, run_in_worker
        t0 = time.monotonic()
        r = run_in_worker(os.getpid, (), timeout=0.5, memory_mb=4000)
        print(r.status, round(time.monotonic() - t0, 2), pool_ready())
        print(r.reason)
    """)
    status, took, ready = result.stdout.split("\n")[0].split()
    assert (status, ready) == ("timeout", "False"), result.stdout + result.stderr
    assert float(took) < 2.0  # not the seconds of the imports
    assert "not started" in result.stdout and "importing" in result.stdout


def test_a_cold_call_runs_while_the_pool_is_still_importing():
    result = _python("""
        import os, time
        from daedalus.evaluation.worker import pool_ready, run_in_worker, start_early
        start_early()
        r = run_in_worker(os.getppid, (), timeout=30, memory_mb=4000, cold=True)
        print(r.status, r.value == os.getpid(), pool_ready())
        r = run_in_worker(os.getpid, (), timeout=120, memory_mb=4000)  # a warm one: waits for the imports
        print(r.status, pool_ready())
    """)
    lines = result.stdout.split("\n")
    assert lines[0] == "ok True False", result.stdout + result.stderr  # forked from this process, pool not ready
    assert lines[1] == "ok True", result.stdout + result.stderr


def test_ctrl_c_ends_the_wait_for_the_pool_at_once():
    # The wait used to be inside Process.start(), with SIGINT blocked for all of the imports.
    result = _python("""
        import os, signal, threading, time
        from daedalus.evaluation.worker import run_in_worker, start_early
        start_early()  # as a build does, while it reads the data
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            run_in_worker(os.getpid, (), timeout=120, memory_mb=4000)
            print("not interrupted", round(time.monotonic() - t0, 2))
        except KeyboardInterrupt:
            print("interrupted", round(time.monotonic() - t0, 2))
    """)
    word, took = result.stdout.split()
    assert word == "interrupted", result.stdout + result.stderr
    assert float(took) < 1.5


def test_the_forkserver_never_sees_a_ctrl_c_meant_for_the_run():
    # A terminal's Ctrl-C reaches the whole process group: the forkserver, importing, printed a traceback.
    result = _python("""
        import os, signal, time
        from multiprocessing import forkserver
        from daedalus.evaluation.worker import start_early, stop_pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # this process stands for the run, which handles it
        start_early()
        pid = forkserver._forkserver._forkserver_pid
        time.sleep(0.5)
        os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        blocked = [ln for ln in open(f"/proc/{pid}/status") if ln.startswith("SigBlk")][0].split()[1]
        print(int(blocked, 16) >> (signal.SIGINT - 1) & 1, os.waitpid(pid, os.WNOHANG)[0] == 0)
        stop_pool()
    """)
    assert result.stdout.split() == ["1", "True"], result.stdout + result.stderr  # blocked, and still running
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr
