"""A run's life on disk: created complete or not at all, one writer at a time, no process outliving it.

Real processes throughout: builds run as the ``daedalus`` command, locks are held by other interpreters, and
kills are SIGKILL (what the OOM killer or a closed laptop lid does: no handler runs).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from daedalus.errors import RunError
from daedalus.store.run import PARTIAL_MARK, RunStore, remove_stale_partials
from tests.conftest import planted_frame

DAEDALUS = Path(sys.executable).with_name("daedalus")
FAST = ["--families", "linear", "--threads", "1", "--no-explain", "--quiet"]
HOLD_LOCK = """
import sys, time
from daedalus.store.run import RunStore
store = RunStore(sys.argv[1]); store.lock("holder-test"); print("locked", flush=True); time.sleep(600)
"""


def _daedalus(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DAEDALUS), *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("daedalus: error:"), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ("data.csv",))


# -- one writer per run --------------------------------------------------------------------------------------
def _holder(run: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    store = RunStore.create(tmp_path / "run", {"status": "running"})
    holder = _holder(store.root)
    try:
        with pytest.raises(RunError, match=f"process {holder.pid} \\(holder-test\\)"):
            RunStore.open(store.root).lock()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    writer = RunStore.open(store.root)
    writer.lock()  # the kernel dropped the killed holder's lock: no stale lock file to clean by hand
    writer.unlock()


@pytest.mark.slow
def test_a_second_writer_is_refused_while_a_build_runs(tmp_path):
    planted_frame(300).to_csv(tmp_path / "data.csv", index=False)
    build = subprocess.Popen([str(DAEDALUS), "build", "data.csv", "--target", "y", "--run", "run", "--trials", "8",
                              *FAST], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert build.poll() is None, "the build ended before the second writer could try"
        message = _one_line_error(_daedalus("resume", "run", cwd=tmp_path))
        assert f"process {build.pid} (daedalus build data.csv" in message
        again = _daedalus("build", "data.csv", "--target", "y", "--run", "run", *FAST, cwd=tmp_path)
        assert f"being written by process {build.pid}" in _one_line_error(again)
        assert build.poll() is None, "the refused resume must not disturb the build"
        # Readers do not take the lock.
        assert _daedalus("audit", "run", cwd=tmp_path).returncode == 0
    finally:
        _, err = build.communicate(timeout=300)
    assert build.returncode == 0, err  # on the old code: Optuna's UpdateFinishedTrialError
    RunStore.open(tmp_path / "run").lock()  # released at the end of the build


# -- complete or absent --------------------------------------------------------------------------------------
def test_a_partial_run_is_never_taken_for_a_run(tmp_path):
    partial = tmp_path / f".run{PARTIAL_MARK}999999"
    (partial / "trials").mkdir(parents=True)
    (partial / "run.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(RunError, match="unfinished run left by a build killed"):
        RunStore.open(partial)
    live = tmp_path / f".run{PARTIAL_MARK}1"
    live.mkdir()
    holder = _holder(live)  # a build still creating its run: its directory stays
    try:
        assert remove_stale_partials(tmp_path / "run") == [partial]
        assert live.exists() and not partial.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_an_old_half_made_run_is_refused_in_one_line(tmp_path):
    store = RunStore.create(tmp_path / "run", {"options": {}, "status": "running"})  # what a kill left before this fix
    with pytest.raises(RunError, match="stopped while it was being created"):
        store.storage_url()


def test_a_bad_storage_leaves_nothing_behind(tmp_path):
    planted_frame(300).to_csv(tmp_path / "data.csv", index=False)
    result = _daedalus("build", "data.csv", "--target", "y", "--run", "run", "--storage", "nosuchdb://x",
                       "--trials", "1", *FAST, cwd=tmp_path)
    assert "nosuchdb://x" in _one_line_error(result)
    assert _leftovers(tmp_path) == []  # on the old code: run/ with a run.json that resume cannot open


def _file_size_limit(limit: int) -> None:
    # Writes past the limit fail with EFBIG, as on a full disk they fail with ENOSPC: one OSError path.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_failed_write_while_creating_leaves_nothing_behind(tmp_path):
    frame = planted_frame(300)
    rng = np.random.default_rng(0)
    frame["note"] = ["".join(rng.choice(list("abcdefghij"), 300)) for _ in range(len(frame))]  # ~90 kB
    frame.to_csv(tmp_path / "data.csv", index=False)
    result = _daedalus("build", "data.csv", "--target", "y", "--run", "run", "--trials", "1", *FAST,
                       cwd=tmp_path, preexec_fn=lambda: _file_size_limit(40_000))
    message = _one_line_error(result)
    assert "cannot create the run directory 'run'" in message and "File too large" in message
    assert _leftovers(tmp_path) == []


def test_build_into_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="holds other files and no run"):
        RunStore.check_new(tmp_path / "run")
    RunStore.check_new(tmp_path / "empty")  # absent, or an empty folder: fine


# -- orphans -------------------------------------------------------------------------------------------------
def _wait_for_event(run: Path, events: tuple[str, ...], proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the build ended before it could be killed"
        path = run / "audit.jsonl"
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if any(f'"event": "{e}"' in text for e in events):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {events} in the audit log after {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["trial", "explanations"])
def test_no_process_outlives_a_killed_build(tmp_path, moment):
    frame = planted_frame(2000)
    for i in range(12):  # columns to permute: permutation importance runs for a while
        frame[f"n{i}"] = np.random.default_rng(i).normal(size=len(frame))
    frame.to_csv(tmp_path / "data.csv", index=False)
    args = ["--trials", "1", "--families", "random_forest", "--threads", "2", "--quiet"]
    build = subprocess.Popen([str(DAEDALUS), "build", "data.csv", "--target", "y", "--run", "run", *args],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_event(tmp_path / "run", ("trial_proposed",) if moment == "trial" else ("final_model", "refit"),
                        build, timeout=240)
        main = psutil.Process(build.pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # a worker busy with the trial or the permutation importance
            tree = main.children(recursive=True)
            workers = [p for p in tree if p.ppid() != build.pid]
            if workers:
                break
            time.sleep(0.05)
        assert workers, f"no worker running during the {moment}"
    finally:
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
    time.sleep(3.0)
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [f"{p.pid} {' '.join(p.cmdline())[:100]}" for p in alive]


@pytest.mark.slow
def test_an_image_run_is_complete_or_absent_and_has_one_writer(tmp_path, digits_csv):
    """Image runs are created like table runs: a kill while the run is being made leaves no run (only a hidden
    leftover), and a resume is refused while another writer holds the run."""
    env = {**os.environ, "DAEDALUS_CRASH_AT": "run_partial"}
    args = ("build", str(digits_csv), "--target", "digit", "--image-shape", "8x8x1", "--time", "30", "--run", "run")
    killed = _daedalus(*args, cwd=tmp_path, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "run").exists()  # on the old code: run/ with run.json and no data
    (tmp_path / "locked").mkdir()
    holder = _holder(tmp_path / "locked")
    try:
        (tmp_path / "locked" / "run.json").write_text('{"options": {}, "status": "running", "kind": "image"}')
        refused = _daedalus("resume", "locked", cwd=tmp_path)
        assert "holder-test" in _one_line_error(refused)
    finally:
        holder.kill()
        holder.wait()
