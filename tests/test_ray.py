"""Builds on a Ray cluster on loopback (a head and two worker nodes, ``tests/ray_cluster.py``), issue 13:

- a build on the cluster gives the very trials (configurations and scores) of the same build on this machine's
  workers, and its run verifies and predicts (its fold models came back from the nodes, hash-checked);
- a worker node removed while its trial runs, then the driver killed (kill -9), ``resume`` on the cluster
  killed too, and ``resume --ray off`` on this machine to the end: no finished trial lost at any step.

The drivers that are killed, or that run while a node is removed, are subprocesses (``daedalus build --ray``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from daedalus.interfaces.cli import main
from tests.conftest import planted_frame
from tests.ray_cluster import loopback_cluster

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

DAEDALUS = Path(sys.executable).with_name("daedalus")
COMMON = ["--target", "y", "--families", "linear,lightgbm", "--knowledge", "off", "--no-explain", "--quiet"]


def _trials(run: Path, states: tuple[optuna.trial.TrialState, ...] | None = None) -> dict[int, tuple[str, float]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="daedalus", storage=f"sqlite:///{run / 'study.db'}")
    return {t.number: (json.dumps(t.params, sort_keys=True), t.value) for t in study.get_trials(states=states)}


def _complete(run: Path) -> dict[int, tuple[str, float]]:
    if not (run / "study.db").exists():
        return {}
    return _trials(run, (optuna.trial.TrialState.COMPLETE,))


def _events(run: Path, name: str) -> list[dict]:
    path = run / "audit.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == name]


def _verify_and_predict(run: Path, tmp_path: Path) -> None:
    verify = subprocess.run([str(DAEDALUS), "audit", str(run), "--verify"], capture_output=True, text=True,
                            timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    planted_frame(40, seed=1).drop(columns="y").to_csv(tmp_path / "new.csv", index=False)
    pred = subprocess.run([str(DAEDALUS), "predict", str(run), str(tmp_path / "new.csv"), "--unapproved", "--out",
                           str(tmp_path / "pred.csv")], capture_output=True, text=True, timeout=120)
    assert pred.returncode == 0, pred.stderr
    assert len((tmp_path / "pred.csv").read_text().splitlines()) == 41


def test_a_build_on_the_cluster_gives_the_trials_of_the_same_build_here(tmp_path: Path) -> None:
    cluster = loopback_cluster()
    planted_frame(300).to_csv(tmp_path / "d.csv", index=False)
    same = ["--trials", "6", "--workers", "2", "--threads", "1", "--warm-start", "off"]
    assert main(["build", str(tmp_path / "d.csv"), *COMMON, *same, "--run", str(tmp_path / "here")]) == 0
    assert main(["build", str(tmp_path / "d.csv"), *COMMON, *same, "--ray", cluster.address,
                 "--run", str(tmp_path / "ray")]) == 0
    here, on_ray = _trials(tmp_path / "here"), _trials(tmp_path / "ray")
    assert len(on_ray) == 6 and on_ray == here
    (split,) = _events(tmp_path / "ray", "parallelism")
    assert split["ray_address"] == cluster.address and split["workers"] == 2 and split["cores"] == 2
    (local,) = _events(tmp_path / "here", "parallelism")
    assert local["ray_address"] is None
    _verify_and_predict(tmp_path / "ray", tmp_path)


def _launch(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(DAEDALUS), *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(condition, proc: subprocess.Popen[str], limit: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"the build ended first: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def test_a_lost_node_and_killed_drivers_lose_no_finished_trial(tmp_path: Path) -> None:
    """One run through three drivers: a build on the cluster that loses a worker node while its trial runs and is
    then killed; ``resume`` on the same cluster (its run.json says which), killed too; ``resume --ray off``,
    here, to the end. No finished trial is lost at any step."""
    cluster = loopback_cluster()
    planted_frame(1000).to_csv(tmp_path / "d.csv", index=False)
    run = tmp_path / "run"
    proc = _launch(["build", "d.csv", *COMMON, "--trials", "8", "--ray", cluster.address, "--run", "run"], tmp_path)
    # Once two trials have results and others run on both nodes, one node goes (its raylet and workers killed).
    _wait_for(lambda: len(_complete(run)) >= 2 and len(_events(run, "trial_proposed")) >= 4, proc)
    before = _complete(run)
    cluster.remove_node(cluster.list_all_nodes()[1], allow_graceful=False)  # (the first is the head)
    try:
        _wait_for(lambda: len(_complete(run)) >= len(before) + 2, proc)  # the search went on without it
    finally:
        cluster.add_node(num_cpus=1)  # the other tests' cluster: two worker nodes again
        cluster.wait_for_nodes()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    for i, args in enumerate((["resume", "run", "--quiet"], ["resume", "run", "--quiet", "--ray", "off"])):
        after = _complete(run)
        assert {n: after.get(n) for n in before} == before, f"driver {i}: finished trials lost"
        before = after
        proc = _launch(args, tmp_path)
        if i == 0:  # killed once a new trial has finished
            finished = len(before)
            _wait_for(lambda: len(_complete(run)) > finished, proc)  # noqa: B023 (called before the loop goes on)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(60)
        else:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
    after = _complete(run)
    assert {n: after.get(n) for n in before} == before, "the last driver lost finished trials"
    assert len(after) + len(_events(run, "trial_failed")) >= 8  # every trial ended, re-run or failed with reason
    assert all(e["reason"] for e in _events(run, "trial_failed"))
    assert [e["ray_address"] for e in _events(run, "parallelism")] == [cluster.address, cluster.address, None]
    assert '"status": "finished"' in (run / "run.json").read_text(encoding="utf-8")
    _verify_and_predict(run, tmp_path)
