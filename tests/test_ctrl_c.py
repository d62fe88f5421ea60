"""Ctrl-C stops any build within 2 s, quietly, with the resume hint only when there is a run to resume.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the run, its forkserver (perhaps still
importing the model libraries), the resource tracker and the workers. The builds here run in their own
process group and get the signal the same way (``os.killpg``).
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import DEMO, DEMO_TARGET, run_cli

EXE = Path(sys.executable).with_name("daedalus")
MOMENTS = 20
CONCURRENT = 4  # builds at a time (each waits at most 10 s for its signal)
EXIT_LIMIT = 2.0  # seconds from the signal to the process's exit


def _resume_hint(run: Path) -> str:
    return f"continue with 'daedalus resume {run}'"


def _interrupt_builds(tmp_path: Path, moments: list[float | None]) -> list[dict]:
    """Start one build per moment (CONCURRENT at a time), send SIGINT to its process group at that moment after
    its start (None: as soon as its run can be resumed), and time its exit."""
    pending = list(enumerate(moments))
    running: list[dict] = []
    done: list[dict] = []
    while pending or running:
        while pending and len(running) < CONCURRENT:
            i, moment = pending.pop(0)
            run = tmp_path / f"r{i}"
            # A file, not a pipe: nothing waits on a reader. Closed when the build has exited.
            err = open(tmp_path / f"err{i}.txt", "w+")  # noqa: SIM115
            proc = subprocess.Popen([str(EXE), "build", str(DEMO), "--target", DEMO_TARGET, "--time", "60",
                                     "--families", "linear", "--threads", "1", "--no-explain", "--run", str(run),
                                     "--quiet"], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            running.append({"i": i, "moment": moment, "run": run, "proc": proc, "err": err,
                            "start": time.monotonic(), "sent": None, "exited": None})
        now = time.monotonic()
        for job in running:
            due = _resumable(job["run"]) if job["moment"] is None else now - job["start"] >= job["moment"]
            if job["sent"] is None and (due or now - job["start"] > 120):
                os.killpg(job["proc"].pid, signal.SIGINT)
                job["sent"] = time.monotonic()
            if job["proc"].poll() is not None and job["exited"] is None:
                job["exited"] = time.monotonic()
            if job["sent"] is not None and job["exited"] is None and now - job["sent"] > 30:
                os.killpg(job["proc"].pid, signal.SIGKILL)  # a hung build: fail it below, leave nothing behind
        for job in [j for j in running if j["exited"] is not None]:
            running.remove(job)
            job["err"].seek(0)
            job["stderr"] = job["err"].read()
            job["err"].close()
            done.append(job)
        time.sleep(0.01)
    return sorted(done, key=lambda j: j["i"])


def _resumable(run: Path) -> bool:
    """What 'daedalus resume' needs: the run's record with its study, and the training rows."""
    try:
        info = json.loads((run / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return "storage" in info and (run / "train.parquet").exists()


def _resume_all(runs: list[Path]) -> list[tuple[Path, subprocess.CompletedProcess]]:
    results = []
    for start in range(0, len(runs), CONCURRENT):
        batch = [(run, subprocess.Popen([str(EXE), "resume", str(run), "--trials", "1", "--quiet"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for run in runs[start:start + CONCURRENT]]
        for run, proc in batch:
            out, err = proc.communicate(timeout=300)
            results.append((run, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    return results


@pytest.mark.slow
def test_ctrl_c_at_random_moments_of_the_first_ten_seconds(tmp_path):
    rng = random.Random(20261206)
    moments: list[float | None] = sorted(round(rng.uniform(0.2, 10.0), 2) for _ in range(MOMENTS))
    # On a busy machine no run may exist yet 10 s into a build: one more build is stopped as soon as its run
    # exists, so that the hint and the resume are always checked.
    jobs = _interrupt_builds(tmp_path, [*moments, None])
    problems = []
    for job in jobs:
        took = job["exited"] - job["sent"]
        where = f"SIGINT at {job['moment'] or 'the run start'} s: "
        if job["proc"].returncode != 130:
            problems.append(where + f"exit status {job['proc'].returncode}")
        if took > EXIT_LIMIT:
            problems.append(where + f"exited {took:.2f} s after the signal")
        if "Traceback" in job["stderr"] or "KeyboardInterrupt" in job["stderr"]:
            problems.append(where + "a traceback: " + job["stderr"][-400:])
        hinted = _resume_hint(job["run"]) in job["stderr"]
        if hinted != _resumable(job["run"]):
            problems.append(where + f"resume hint {'given' if hinted else 'missing'}: {job['stderr']!r}")
        if not hinted and "daedalus resume" in job["stderr"]:
            problems.append(where + f"a resume hint without a run: {job['stderr']!r}")
    assert not problems, "\n".join(problems)
    # Every run that the hint names resumes to a finished model.
    hinted = [job["run"] for job in jobs if _resume_hint(job["run"]) in job["stderr"]]
    assert jobs[-1]["run"] in hinted
    for run, result in _resume_all(hinted):
        assert result.returncode == 0, f"{run}: {result.stderr[-600:]}"
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        assert (run / "model" / "model.json").exists()


def _python(code: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=timeout)
    return result, time.monotonic() - t0


def test_a_ctrl_c_swallowed_inside_a_callback_is_raised_again():
    # Python runs a signal's handler wherever the main thread is; inside a __del__ (or the import system's
    # weakref callbacks) the KeyboardInterrupt is "ignored", and the command ran on as if no Ctrl-C came.
    result, took = _python("""
        import os, signal, sys, time
        from daedalus.interfaces import interrupts
        interrupts.install()
        sent = []
        class Finalised:
            def __del__(self):
                if not sent:
                    sent.append(1)
                    os.kill(os.getpid(), signal.SIGINT)
                    sum(range(100000))  # the handler runs here, inside __del__
        try:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                Finalised()
                time.sleep(0.001)
            print("ran on")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    assert "interrupted" in result.stdout, result.stdout + result.stderr
    assert took < 10


def test_a_ctrl_c_eaten_by_a_library_still_ends_the_command():
    # A library's `except BaseException: pass` eats the KeyboardInterrupt: the watchdog ends the command.
    result, took = _python("""
        import os, signal, threading, time
        from daedalus.interfaces import interrupts
        interrupts.install()
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except BaseException:
                pass
        print("ran on")
    """)
    assert result.returncode == 130, result.stdout + result.stderr
    assert "ran on" not in result.stdout and "daedalus: interrupted" in result.stderr
    assert "daedalus resume" not in result.stderr  # no run: no hint
    assert took < 0.5 + 1.5 + 5  # the signal, the grace period, the interpreter's start (slack for a busy machine)


def test_no_resume_hint_without_a_run(tmp_path):
    # Ctrl-C before the run directory exists: the message names no run to resume.
    proc = subprocess.Popen([str(EXE), "build", str(DEMO), "--target", DEMO_TARGET, "--run", str(tmp_path / "r"),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip() == "daedalus: interrupted", err
    assert not (tmp_path / "r" / "run.json").exists()
    assert run_cli("info", tmp_path / "r").returncode == 2  # nothing to resume, said in one line
