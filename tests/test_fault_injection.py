"""Kill -9 at 22 points spread over a build's life; every time, ``resume`` (or a fresh build, when no run exists)
must complete, no finished trial may be lost, and the finished run must pass ``audit --verify`` and predict.

Most kills are deterministic: ``DAEDALUS_CRASH_AT=point[:n]`` makes the process SIGKILL itself at a stage
boundary (``daedalus/store/faults.py``). A few come from outside, at a seeded random moment or while the
explanations run. The kills are chained: each process after the first resumes what the previous one left,
so a chain also checks that a run killed several times in a row still resumes. Each process runs in its own
working directory, so a process left behind by a killed one (an orphan) is found by its working directory.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna
import psutil
import pytest

from tests.conftest import planted_frame

pytestmark = pytest.mark.slow

DAEDALUS = Path(sys.executable).with_name("daedalus")
FAST = ["--families", "linear", "--threads", "1", "--quiet"]
KILLED = -signal.SIGKILL
ORPHAN_GRACE_S = 3.0


@dataclass(frozen=True)
class Step:
    command: str  # "build" or "resume"
    crash: str | None = None  # DAEDALUS_CRASH_AT
    kill_after: tuple[float, float] | None = None  # an outside SIGKILL at a seeded random time in this range
    kill_on_events: tuple[str, ...] = ()  # an outside SIGKILL once one of these audit events appears (anew)
    expect: str = "killed"  # "killed", "done", or "either" (a timed kill may come after the end)
    run_exists: bool = True  # after this step


# 23 kill points: 9 + 6 + 6 over the whole life of a build, and 2 with two trials in flight.
CHAINS: dict[str, tuple[list[str], list[Step]]] = {
    # Before the run exists, while it is created, then the search.
    "creation-and-search": (["--trials", "2", "--no-explain"], [
        Step("build", crash="intake_done", run_exists=False),
        Step("build", crash="run_partial", run_exists=False),
        Step("build", crash="run_filled", run_exists=False),
        Step("build", crash="run_created"),
        Step("resume", crash="best_saved:1"),
        Step("resume", crash="trial_recorded:2"),
        Step("resume", crash="trial_started:2"),
        Step("resume", crash="search_done"),
        Step("resume", kill_after=(1.0, 12.0), expect="either"),
        Step("resume", expect="done"),
    ]),
    # The ensemble, the final model's directory swap, the final writes.
    "ensemble-and-final-write": (["--trials", "2", "--no-explain"], [
        Step("build", crash="trial_started:1"),
        Step("resume", crash="ensemble_selected"),
        Step("resume", crash="model_written"),
        Step("resume", crash="model_dir_swapped:1"),  # best/ or model/: between its two renames
        Step("resume", crash="leaderboard_written"),
        Step("resume", crash="explanations_done"),
        Step("resume", expect="done"),
    ]),
    # A holdout run: the refit on all rows and the explanations (permutation importance in a worker).
    "refit-and-explanations": (["--trials", "2", "--validation", "holdout"], [
        Step("build", crash="refit_done"),
        Step("resume", crash="explanations_started"),
        Step("resume", kill_on_events=("refit", "final_model"), expect="either"),
        Step("resume", crash="trial_recorded:1"),
        Step("resume", kill_after=(1.0, 10.0), expect="either"),
        Step("resume", crash="model_written"),
        Step("resume", expect="done"),
    ]),
    # Two trials in flight (--workers 2): kills while one trial is recorded and another runs.
    "two-workers": (["--trials", "6", "--no-explain", "--workers", "2"], [
        Step("build", crash="trial_recorded:2"),
        Step("resume", crash="trial_started:2"),
        Step("resume", expect="done"),
    ]),
}


def finished_trials(run: Path) -> dict[int, float]:
    """The COMPLETE trials of the run's study: number -> score."""
    if not (run / "study.db").exists():
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="daedalus", storage=f"sqlite:///{run / 'study.db'}")
    return {t.number: t.value for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}


def survivors(workdir: Path) -> list[str]:
    """Processes still running in ``workdir`` (each daedalus process of a chain runs there, and its forkserver,
    workers and their children inherit it)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if Path(p.cwd()) == workdir and p.pid != os.getpid():
                found.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError):
            continue
    return found


def audit_events(run: Path) -> list[str]:
    path = run / "audit.jsonl"
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines()]


def _kill_when_a_worker_runs(proc: subprocess.Popen[str], wait_s: float = 10.0) -> None:
    """SIGKILL ``proc`` as soon as one of its workers (a child of its forkserver) runs, or at once if none
    starts within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    try:
        main = psutil.Process(proc.pid)
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.ppid() != proc.pid for p in main.children(recursive=True)):
                break
            time.sleep(0.01)
    except psutil.NoSuchProcess:
        return
    proc.kill()


def launch(step: Step, args: list[str], workdir: Path, rng: random.Random) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DAEDALUS_CRASH_AT"}
    if step.crash:
        env["DAEDALUS_CRASH_AT"] = step.crash
    cmd = [str(DAEDALUS), "build", "data.csv", "--target", "y", "--run", "run", *args, *FAST] \
        if step.command == "build" else [str(DAEDALUS), "resume", "run", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if step.kill_after is not None:
        try:
            proc.wait(rng.uniform(*step.kill_after))
        except subprocess.TimeoutExpired:
            proc.kill()
    elif step.kill_on_events:
        # Killed from outside while the permutation importance runs in its worker: once the final model is
        # written (its audit record appears), the explanations come next.
        seen = len(audit_events(workdir / "run"))
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            new = audit_events(workdir / "run")[seen:]
            if any(f'"event": "{event}"' in line for line in new for event in step.kill_on_events):
                _kill_when_a_worker_runs(proc)
                break
            time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    if proc.returncode not in (0, KILLED):
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    return proc.returncode


def run_chain(chain: str, tmp_path: Path) -> None:
    args, steps = CHAINS[chain]
    planted_frame(600).to_csv(tmp_path / "data.csv", index=False)
    run = tmp_path / "run"
    rng = random.Random(f"{chain}")
    before: dict[int, float] = {}
    for i, step in enumerate(steps):
        rc = launch(step, args, tmp_path, rng)
        where = f"{chain}: step {i} ({step.command}, crash={step.crash}, kill_after={step.kill_after})"
        if step.expect == "killed":
            assert rc == KILLED, f"{where}: expected to be killed, exited {rc}"
        elif step.expect == "done":
            assert rc == 0, f"{where}: did not complete"
        assert run.exists() == step.run_exists, f"{where}: run directory present: {run.exists()}"
        if run.exists():  # complete or absent: whatever the moment of the kill, a present run has its study
            assert (run / "run.json").exists() and (run / "study.db").exists()
            assert '"storage"' in (run / "run.json").read_text(encoding="utf-8")
        after = finished_trials(run)
        lost = {n: s for n, s in before.items() if after.get(n) != s}
        assert not lost, f"{where}: finished trials lost or changed: {lost}"
        before = after
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while survivors(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not survivors(tmp_path), f"{where}: processes outlived the run: {survivors(tmp_path)}"
    # Leftovers of the builds killed while creating the run were removed by the build that created it.
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]
    verify = subprocess.run([str(DAEDALUS), "audit", "run", "--verify"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    planted_frame(50, seed=1).drop(columns="y").to_csv(tmp_path / "new.csv", index=False)
    pred = subprocess.run([str(DAEDALUS), "predict", "run", "new.csv", "--unapproved", "--out", "pred.csv"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert pred.returncode == 0, pred.stderr
    assert len((tmp_path / "pred.csv").read_text().splitlines()) == 51
    assert '"status": "finished"' in (run / "run.json").read_text(encoding="utf-8")


def test_kill_at_any_point_resumes(tmp_path):
    """The chains run in pairs (each process mostly waits on its forkserver's imports or its one worker)."""
    folders = {chain: tmp_path / chain for chain in CHAINS}
    for folder in folders.values():
        folder.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {chain: pool.submit(run_chain, chain, folder) for chain, folder in folders.items()}
    failures = [f"{chain}: {f.exception()}" for chain, f in futures.items() if f.exception() is not None]
    assert not failures, "\n".join(failures)
