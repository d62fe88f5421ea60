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


# -- damaged run records (issue 10, finding 8): every command, every damage, one line --------------------------
RUN_COMMANDS = {
    "leaderboard": [], "info": [], "predict": ["{rows}", "--unapproved"], "audit": ["--verify"],
    "report": ["--out", "{tmp}/r.html"], "explain": ["{rows}"], "card": ["--out", "{tmp}/card"],
    "approve": ["--by", "ann", "--reason", "ok"], "reject": ["--by", "ann", "--reason", "no"],
    "resume": ["--trials", "1", "--quiet"], "steer": ["pause"], "fairness": [], "export-arch": ["--out", "{tmp}/m.py"],
}
DAMAGES = {
    "empty": lambda text, kind: "",
    "truncated": lambda text, kind: text[: len(text) // 2],
    "wrong type": lambda text, kind: '{"a": 1}' if kind is list else "[1, 2]",
    "missing keys": lambda text, kind: '[{"a": 1}]' if kind is list else "{}",
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(RUN_COMMANDS))
@pytest.mark.parametrize("record", ["run", "schema", "leaderboard"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_run_record_is_one_line_for_every_command(planted_run, tmp_path, capsys, command, record, damage):
    """Before: 13 commands printed raw tracebacks (JSONDecodeError, KeyError, AttributeError) on an empty, cut,
    mistyped or keyless run.json / schema.json / leaderboard.json. Each is one line naming the file now; the
    audit log stays readable whatever else is damaged."""
    import shutil

    from daedalus.interfaces.cli import main
    from daedalus.store.run import RECORD_SHAPES

    run = tmp_path / "run"
    shutil.copytree(planted_run, run)
    path = run / f"{record}.json"
    path.write_text(DAMAGES[damage](path.read_text(), RECORD_SHAPES[record][0]))
    rows = tmp_path / "rows.csv"
    pd.read_parquet(run / "train.parquet").head(5).to_csv(rows, index=False)
    extra = [a.format(rows=rows, tmp=tmp_path) for a in RUN_COMMANDS[command]]
    capsys.readouterr()
    code = main([command, str(run), *extra])
    err = capsys.readouterr().err.strip()
    if command == "audit":  # reads the audit log only: a damaged record elsewhere must not stop an inspection
        assert code == 0, err
        return
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"{record}.json" in err and "damaged" in err, err
