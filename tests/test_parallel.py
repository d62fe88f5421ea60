"""Trials side by side on this machine (``--workers N``, issue 13): the split of cores and memory, its refusals,
and a real build with two trials in flight that gives the same leaderboard twice."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from daedalus.errors import ConfigError
from daedalus.interfaces.cli import main
from daedalus.orchestration.options import MIN_MEMORY_MB, BuildOptions
from daedalus.orchestration.parallel import plan_parallelism
from tests.conftest import planted_frame


def _options(**kw: object) -> BuildOptions:
    return BuildOptions(target="y", n_trials=4, **kw).checked()  # type: ignore[arg-type]


@pytest.mark.parametrize(("cores", "workers", "threads"), [(2, 1, 2), (2, 2, 1), (16, 3, 5), (2, 4, 1)])
def test_the_cores_are_shared_among_the_trials(cores: int, workers: int, threads: int) -> None:
    split = plan_parallelism(_options(workers=workers, memory_mb=4000.0 * workers), cores=cores)
    assert (split.workers, split.threads_per_trial, split.memory_mb_per_trial) == (workers, threads, 4000.0)
    assert split.final_threads == threads * workers and split.final_memory_mb == 4000.0 * workers
    assert f"{cores} cores shared among {workers}" in split.reason
    assert ("more trials than cores" in split.reason) == (workers > cores)


def test_threads_given_are_kept_and_oversubscription_is_said() -> None:
    split = plan_parallelism(_options(workers=2, n_threads=2), cores=2)
    assert split.threads_per_trial == 2
    assert split.reason == "--threads 2 as given (4 threads on 2 cores: oversubscribed)"


def test_a_memory_limit_too_small_to_share_is_refused_naming_both_options() -> None:
    with pytest.raises(ConfigError) as err:
        BuildOptions(target="y", n_trials=4, workers=3, memory_mb=MIN_MEMORY_MB * 2).checked()
    message = str(err.value)
    assert "--memory-limit 800 shared among --workers 3 leaves 267 MB per trial" in message
    assert "raise --memory-limit to at least 1200 or run fewer --workers" in message
    assert BuildOptions(target="y", n_trials=4, workers=2, memory_mb=MIN_MEMORY_MB * 2).checked()


def test_the_cli_refuses_a_bad_worker_count_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    planted_frame(60).to_csv(tmp_path / "d.csv", index=False)
    assert main(["build", str(tmp_path / "d.csv"), "--target", "y", "--trials", "2", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers" in err and "Traceback" not in err
    assert not list(tmp_path.glob("runs/*"))


@pytest.mark.parametrize(("address", "says"), [("127.0.0.1:1", "cannot reach the Ray cluster at '127.0.0.1:1'"),
                                               ("nonsense", "is not a Ray address; pass HOST:PORT")])
def test_a_ray_address_that_does_not_answer_is_refused_before_the_run_exists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str, says: str) -> None:
    """Ray itself retries an address where nothing listens for minutes, printing warnings: refused at once."""
    planted_frame(60).to_csv(tmp_path / "d.csv", index=False)
    run = tmp_path / "run"
    assert main(["build", str(tmp_path / "d.csv"), "--target", "y", "--trials", "2", "--ray", address,
                 "--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err and ("--ray off" in err or "'off'" in err)
    assert not run.exists()


def _trials(run: Path) -> list[tuple[int, str, str, float | None]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="daedalus", storage=f"sqlite:///{run / 'study.db'}")
    return [(t.number, str(t.state), json.dumps(t.params, sort_keys=True), t.value) for t in study.trials]


def _audit(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_two_workers_run_trials_at_once_and_give_the_same_leaderboard_twice(tmp_path: Path) -> None:
    """10 trials, TPE from the third on (constant liar for the pending one): proposals, scores and leaderboard
    equal in two runs, though which trial finishes first is up to the machine."""
    planted_frame(300).to_csv(tmp_path / "d.csv", index=False)
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert main(["build", str(tmp_path / "d.csv"), "--target", "y", "--trials", "10", "--workers", "2",
                     "--families", "linear,lightgbm", "--warm-start", "off", "--knowledge", "off", "--no-explain",
                     "--quiet", "--run", str(run)]) == 0
    first, second = (_trials(run) for run in runs)
    assert len(first) == 10 and first == second
    assert len({params for _, _, params, _ in first}) >= 9  # TPE proposed new configurations (one repeat allowed)
    boards = [json.loads((run / "leaderboard.json").read_text()) for run in runs]
    strip = [[{k: v for k, v in row.items() if k != "fit_seconds"} for row in board] for board in boards]
    assert strip[0] == strip[1]
    events = _audit(runs[0])
    (split,) = [e for e in events if e["event"] == "parallelism"]
    assert split["workers"] == 2 and split["threads_per_trial"] >= 1
    # Two in flight: some trial was proposed before the one proposed just before it had its result.
    order = [(e["event"], e["trial"]) for e in events if e["event"] in ("trial_proposed", "trial_result")]
    overlapped = [n for (ev, n), (ev2, _) in zip(order, order[1:], strict=False) if ev == ev2 == "trial_proposed"]
    assert overlapped, order
    # Results are recorded in the order of the proposals (what makes the run reproducible).
    results = [n for ev, n in order if ev == "trial_result"]
    assert results == sorted(results)


def test_files_shipped_back_by_a_node_are_written_only_when_their_hashes_match(tmp_path: Path) -> None:
    """A trial on a Ray node sends its fold models back as bytes with the SHA-256 its worker recorded: bytes
    changed on the way, or a name that climbs out of the trial's directory, are refused and nothing is written."""
    import hashlib

    from daedalus.errors import RunError
    from daedalus.store.run import save_shipped_files

    good = {"fold_0.skops": b"model", "bag.json": b"{}"}
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in good.items()}
    with pytest.raises(RunError, match="came back damaged"):
        save_shipped_files(tmp_path / "t", {**good, "fold_0.skops": b"evil"}, hashes)
    with pytest.raises(RunError, match="came back damaged"):
        escape = "../escape.skops"
        save_shipped_files(tmp_path / "t", {escape: b"x"}, {escape: hashlib.sha256(b"x").hexdigest()})
    assert not (tmp_path / "t").exists() and not (tmp_path / "escape.skops").exists()
    assert save_shipped_files(tmp_path / "t", good, hashes) == hashes
    assert (tmp_path / "t" / "fold_0.skops").read_bytes() == b"model"
