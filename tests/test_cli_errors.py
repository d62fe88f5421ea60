"""Every bad input gets one line naming the problem and the fix, exit status 2, and no traceback."""

import pandas as pd
import pytest


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_file(cli, tmp_path):
    assert_user_error(cli("build", tmp_path / "nope.csv", "--target", "y"), "not found")


def test_directory_instead_of_file(cli, tmp_path):
    assert_user_error(cli("build", tmp_path, "--target", "y"), str(tmp_path.name))


def test_empty_file(cli, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert_user_error(cli("build", path, "--target", "y"), "empty")


def test_unreadable_file(cli, tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"\x00\x01 definitely not parquet")
    result = cli("build", path, "--target", "y")
    assert_user_error(result, "bad.parquet")


def test_absent_target_suggests_close_names(cli, small_binary_csv):
    assert_user_error(cli("build", small_binary_csv, "--target", "lable"), "'lable'", "label")


def test_target_all_missing(cli, tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": range(50), "y": [None] * 50}).to_csv(path, index=False)
    assert_user_error(cli("build", path, "--target", "y"), "'y'")


def test_target_with_one_class(cli, tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": range(50), "y": ["only"] * 50}).to_csv(path, index=False)
    assert_user_error(cli("build", path, "--target", "y"), "only")


def test_too_few_rows(cli, tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0, 2.5, 3.1, 4.2, 5.9], "y": [0.1, 0.2, 0.3, 0.5, 0.4]}).to_csv(path, index=False)
    assert_user_error(cli("build", path, "--target", "y"), "rows")


@pytest.mark.parametrize("args,fragment", [
    (["--metric", "foo"], "unknown metric 'foo'"),
    (["--families", "lgbm"], "lgbm"),
    (["--exclude", "nonsense"], "nonsense"),
    (["--time", "0"], "--time"),
    (["--time", "-5"], "--time"),
    (["--trials", "0"], "--trials"),
    (["--bogus-option"], "--bogus-option"),
])
def test_bad_options(cli, small_binary_csv, args, fragment):
    assert_user_error(cli("build", small_binary_csv, "--target", "label", *args), fragment)


def test_unknown_run_directory(cli, tmp_path):
    assert_user_error(cli("leaderboard", tmp_path / "no-run"), "run")
    assert_user_error(cli("predict", tmp_path / "no-run", tmp_path / "x.csv"), "run")


def test_a_command_called_from_python_counts_its_budget_from_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console script counts from the process start (imports included); main(argv) called in-process, maybe
    long after the import (a notebook, a test session), must not find its budget already spent."""
    import time

    from daedalus.interfaces import cli

    seen: list[float] = []
    monkeypatch.setattr(cli, "_STARTED", time.monotonic() - 1000.0)
    monkeypatch.setitem(cli.COMMANDS, "info", lambda args: seen.append(cli._STARTED) or 0)
    assert cli.main(["info", "anywhere"]) == 0
    assert time.monotonic() - seen[0] < 5.0
