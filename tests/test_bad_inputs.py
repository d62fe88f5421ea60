"""Bad inputs of issue 10 (finding 8) and the leaderboard of a live or killed run (finding 9).

Each bad input is one line naming the problem and the fix, exit status 2, no traceback, and nothing half-made
left behind (no run directory, no output file, no audit record).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from daedalus.interfaces.cli import main
from tests.conftest import planted_frame, run_cli
from tests.test_cli_errors import assert_user_error

FAST_BUILD = ["--families", "linear", "--threads", "1", "--no-explain", "--quiet"]


def one_line(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture
def run_copy(planted_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(planted_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def rows_csv(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    planted_frame(20, seed=1).drop(columns="y").to_csv(path, index=False)
    return path


# -- intake -----------------------------------------------------------------------------------------------------
def test_an_infinite_target_is_refused_before_the_run_exists(tmp_path: Path) -> None:
    """Before: 45 warnings, a run directory, and every trial failing (or a scikit-learn traceback)."""
    frame = planted_frame(200, task="regression")
    frame.loc[[3, 50, 70], "y"] = [np.inf, -np.inf, np.inf]
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = run_cli("build", tmp_path / "d.csv", "--target", "y", "--trials", "2", *FAST_BUILD,
                     "--run", tmp_path / "r")
    assert_user_error(result, "'y'", "3 infinite", "finite")
    assert "Warning" not in result.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize("nested", [[1, 2], {"a": 1, "b": "x"}], ids=["list", "struct"])
def test_a_nested_parquet_column_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     nested: object) -> None:
    """Lists and structs are refused, not dropped unseen: the user learns which column is left out and why, and
    chooses (flatten it, or --drop it). Before: TypeError: unhashable type, with a traceback."""
    from daedalus.orchestration.build import intake
    from daedalus.orchestration.options import BuildOptions

    frame = planted_frame(120)
    frame["tags"] = [nested] * len(frame)
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    code = main(["build", str(path), "--target", "y", "--trials", "1", *FAST_BUILD, "--run", str(tmp_path / "r")])
    one_line(capsys, code, "'tags'", "nested", "--drop tags")
    assert not (tmp_path / "r").exists()
    got = intake(str(path), BuildOptions(target="y", drop=("tags",)))  # the fix the message names works
    assert "tags" in got.schema.dropped and "tags" not in got.schema.feature_columns


# -- paths ------------------------------------------------------------------------------------------------------
def test_run_pointing_at_a_file(run_copy: Path, tmp_path: Path, small_binary_csv: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "note.txt"
    a_file.write_text("not a run")
    code = main(["build", str(small_binary_csv), "--target", "label", "--trials", "1", "--run", str(a_file)])
    one_line(capsys, code, "--run", "is a file")
    code = main(["build", str(small_binary_csv), "--target", "label", "--trials", "1", "--run", str(a_file / "r")])
    one_line(capsys, code, "--run", "is a file")
    for command in (["leaderboard"], ["info"], ["resume"], ["steer", "pause"]):
        one_line(capsys, main([command[0], str(a_file), *command[1:]]), "note.txt")
    assert a_file.read_text() == "not a run"


@pytest.mark.parametrize("command", [["predict", "{rows}", "--unapproved"], ["report"], ["explain", "{rows}"],
                                     ["fairness", "{rows_y}"], ["export-arch"]])
def test_out_into_a_missing_folder_or_onto_a_folder(run_copy: Path, rows_csv: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """Before: FileNotFoundError / IsADirectoryError tracebacks after the work was done (and recorded)."""
    rows_y = tmp_path / "rows_y.csv"
    planted_frame(20, seed=1).to_csv(rows_y, index=False)
    args = [command[0], str(run_copy), *(a.format(rows=rows_csv, rows_y=rows_y) for a in command[1:])]
    before = (run_copy / "audit.jsonl").read_text()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    targets = [tmp_path / "folder"]  # onto a folder
    if command[0] != "export-arch":  # export-arch makes the folder of its files
        targets.append(tmp_path / "missing" / "out.csv")
    targets.append(a_file / "out.py")  # a folder on the way is a file
    (tmp_path / "folder").mkdir()
    for out in targets:
        one_line(capsys, main([*args, "--out", str(out)]), "--out")
    assert not (tmp_path / "missing").exists() and list((tmp_path / "folder").iterdir()) == []
    assert (run_copy / "audit.jsonl").read_text() == before  # nothing used, nothing recorded


def test_card_out_onto_a_file(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "card.md"
    a_file.write_text("mine")
    one_line(capsys, main(["card", str(run_copy), "--out", str(a_file)]), "--out", "is a file")
    assert a_file.read_text() == "mine"
    assert main(["card", str(run_copy), "--out", str(tmp_path / "new" / "cards")]) == 0  # a new folder is made


# -- predict ----------------------------------------------------------------------------------------------------
def test_text_in_a_numeric_column_at_predict_is_refused(run_copy: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: 'abc' or '12,5' in a numeric column was read as missing, silently changing those predictions."""
    rows = planted_frame(100, seed=2).drop(columns="y")
    rows["signal"] = rows["signal"].astype(object)
    rows.loc[[1, 5, 9], "signal"] = ["12,5", "abc", "1.2.3"]
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    code = main(["predict", str(run_copy), str(path), "--unapproved", "--out", str(tmp_path / "p.csv")])
    one_line(capsys, code, "'signal'", "3 value(s)", "'12,5'", "'abc'", "--non-numeric-as-missing")
    assert not (tmp_path / "p.csv").exists()
    assert "unapproved_use" not in (run_copy / "audit.jsonl").read_text()
    code = main(["predict", str(run_copy), str(path), "--unapproved", "--non-numeric-as-missing",
                 "--out", str(tmp_path / "p.csv")])
    assert code == 0 and len(pd.read_csv(tmp_path / "p.csv")) == 100


def test_the_training_datas_spellings_of_missing_still_pass_at_predict() -> None:
    """A numeric column that held 'n/a' in training (read as missing there) accepts 'n/a' at predict; other
    text is refused."""
    from daedalus.data import infer_schema, prepare_features
    from daedalus.errors import DataError

    frame = planted_frame(200)
    frame["signal"] = frame["signal"].astype(object)
    frame.loc[[0, 7], "signal"] = "n/a"
    schema = infer_schema(frame, "y")
    assert schema.kind_of("signal") == "numeric"
    rows = frame.head(10).copy()
    assert np.isnan(prepare_features(rows, schema, strict_numbers=True)["signal"].iloc[0])
    rows.loc[3, "signal"] = "unknown"
    with pytest.raises(DataError, match="'unknown'"):
        prepare_features(rows, schema, strict_numbers=True)


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_missing_input_file_leaves_no_unapproved_use_record(run_copy: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              command: str) -> None:
    """Before: predict --unapproved wrote 'unapproved_use' to the audit log, then found the file missing."""
    before = (run_copy / "audit.jsonl").read_text()
    args = [command, str(run_copy), str(tmp_path / "nope.csv")] + (["--unapproved"] if command == "predict" else [])
    one_line(capsys, main(args), "not found")
    assert (run_copy / "audit.jsonl").read_text() == before


# -- options ----------------------------------------------------------------------------------------------------
def test_memory_limit_below_a_workers_start_up_size_is_refused(small_binary_csv: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before: accepted; then every trial was killed as out of memory at once (520 failed trials, no model)."""
    from daedalus.orchestration.options import MIN_MEMORY_MB

    code = main(["build", str(small_binary_csv), "--target", "label", "--trials", "2", "--memory-limit", "100",
                 "--run", str(tmp_path / "r")])
    one_line(capsys, code, "--memory-limit must be", "got 100", f"{MIN_MEMORY_MB:g} MB")
    assert not (tmp_path / "r").exists()


def test_the_memory_floor_is_above_a_workers_start_up_size() -> None:
    """The floor is a measurement: a worker forked with the model libraries loaded must start well below it."""
    from daedalus.evaluation.worker import run_in_worker, start_early, wait_ready
    from daedalus.orchestration.options import MIN_MEMORY_MB

    start_early()
    assert wait_ready(300) is None  # a worker forked from the warm pool, as every trial's
    usage = run_in_worker(resource.getrusage, (resource.RUSAGE_SELF,), timeout=120, memory_mb=1e9)
    assert usage.status == "ok", usage.reason
    start_mb = usage.value.ru_maxrss / 1024  # kB on Linux
    assert 50 < start_mb < MIN_MEMORY_MB - 50, start_mb


# -- storage ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_second_build_on_the_same_postgres_storage(small_binary_csv: Path, tmp_path: Path) -> None:
    """Before: a raw DuplicatedStudyError, and a half-made second run left 'running'. Now each run's study in a
    shared --storage has a name of its own: both builds finish, each with its own trials."""
    import optuna

    from tests.postgres import postgres_server

    with postgres_server() as url:
        for name in ("one", "two"):
            result = run_cli("build", small_binary_csv, "--target", "label", "--trials", "1", *FAST_BUILD,
                             "--storage", url, "--run", tmp_path / name)
            assert result.returncode == 0, result.stderr
        names = {json.loads((tmp_path / n / "run.json").read_text())["study_name"] for n in ("one", "two")}
        assert len(names) == 2
        # One finished trial each (the warm start's other queued configurations wait in their own study).
        finished = [[t for t in optuna.load_study(study_name=n, storage=url).trials if t.state.is_finished()]
                    for n in names]
        assert [len(f) for f in finished] == [1, 1]


# -- the leaderboard of a live or killed run (finding 9) ---------------------------------------------------------
@pytest.mark.slow
def test_leaderboard_of_a_running_then_killed_build(tmp_path: Path) -> None:
    """Before: 'no leaderboard.json ... resume it' while the build ran and after a kill. Now the trials so far,
    from the run's study, marked partial."""
    planted_frame(300).to_csv(tmp_path / "d.csv", index=False)
    run = tmp_path / "r"
    exe = Path(sys.executable).with_name("daedalus")
    build = subprocess.Popen([str(exe), "build", str(tmp_path / "d.csv"), "--target", "y", "--trials", "500",
                              *FAST_BUILD, "--run", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        rows: list[dict] = []
        while time.monotonic() < deadline and build.poll() is None:
            time.sleep(1.0)
            if not (run / "run.json").exists():
                continue
            live = run_cli("leaderboard", run, "--json")
            if live.returncode == 0:
                rows = json.loads(live.stdout)
                if len(rows) >= 3:
                    break
        assert build.poll() is None and len(rows) >= 3, (rows, build.stderr)
        assert "partial: the run is running" in live.stderr and all(r["partial"] for r in rows)
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert not (run / "leaderboard.json").exists()
    finally:
        os.kill(build.pid, signal.SIGKILL)
        build.wait()
    stopped = run_cli("leaderboard", run)
    assert stopped.returncode == 0, stopped.stderr
    assert "partial: the run was stopped" in stopped.stdout and f"daedalus resume {run}" in stopped.stdout
    n = int(stopped.stdout.split("; ")[-1].split()[0])
    assert n >= len(rows)
    assert stopped.stdout.count("linear") >= n
