"""Options declared once (issue 11, item 7): every CLI flag, every estimator parameter and every field of
BuildOptions / ImageBuildOptions comes from (or is checked against) one declaration, and every refusal's message
is generated from the option's constraint."""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import warnings
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from daedalus.errors import ConfigError
from daedalus.interfaces.cli import main, make_parser
from daedalus.interfaces.flags import KINDS, build_options, dest, image_build_options
from daedalus.orchestration.option_spec import (
    Boolean,
    Declared,
    Interval,
    ListOptions,
    Names,
    StrOptions,
    Style,
    check_value,
    declarations,
)
from daedalus.orchestration.options import BuildOptions, ImageBuildOptions

NOT_OPTIONS = {"help", "data", "run", "quiet"}  # the build's input, where the run goes, how it is shown
ALL = [(cls, d) for cls, _ in KINDS for d in declarations(cls)]


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[0] if a.option_strings else a.dest: a for a in parser._actions}


# -- one declaration --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [BuildOptions, ImageBuildOptions])
def test_every_field_is_a_declared_option(cls: type) -> None:
    assert [d.name for d in declarations(cls)] == [f.name for f in fields(cls)]
    for d in declarations(cls):
        assert d.spec.help, d.name


def test_every_build_flag_comes_from_a_declaration_and_every_declared_flag_is_there() -> None:
    declared_flags = {d.spec.flag for _, d in ALL if d.spec.flag}
    for command, skip in (("build", set()), ("demo", {"--target"})):
        parser_flags = {f for f, a in _flags(_subparser(command)).items() if a.dest not in NOT_OPTIONS}
        assert parser_flags == declared_flags - skip, command
    build, seen = _flags(_subparser("build")), set()
    for _, d in ALL:
        if d.spec.flag:
            action = build[d.spec.flag]
            assert action.dest == dest(d) and action.default is argparse.SUPPRESS  # the dataclass's default applies
            if d.spec.flag not in seen:  # a flag shared by both kinds shows the table build's help
                assert d.spec.help.replace("%", "%%") in (action.help or ""), d.name
            seen.add(d.spec.flag)


def test_resume_budget_flags_come_from_the_declaration() -> None:
    flags = _flags(_subparser("resume"))
    for name in ("time_budget", "n_trials"):
        d = next(d for d in declarations(BuildOptions) if d.name == name)
        assert d.spec.flag in flags and flags[d.spec.flag].default is None  # None: the run's own budget


def test_estimator_parameters_match_the_declaration() -> None:
    """scikit-learn needs explicit __init__ keyword parameters stored as given: their names and defaults are the
    declared ones (run_dir aside: where the run goes, not an option of the build)."""
    from daedalus.interfaces.estimators import PARAMETERS, AutoClassifier, AutoRegressor

    wanted = {d.name: d.default for d in declarations(BuildOptions) if d.spec.python}
    assert [d.name for d in PARAMETERS] == list(wanted)
    for cls in (AutoClassifier, AutoRegressor):
        params = dict(inspect.signature(cls.__init__).parameters)
        params.pop("self")
        assert params.pop("run_dir").default is None
        assert {n: p.default for n, p in params.items()} == wanted, cls.__name__
        assert cls().get_params() == {**wanted, "run_dir": None}


def test_the_cli_defaults_are_the_dataclass_defaults() -> None:
    parse = make_parser().parse_args
    assert build_options(parse(["build", "d.csv", "--target", "y"]), "y") == BuildOptions(target="y")
    # --trials alone bounds a table build by its trials only; an image build keeps its time budget
    assert build_options(parse(["build", "d.csv", "--target", "y", "--trials", "3"]), "y").time_budget is None
    image = image_build_options(parse(["build", "d.csv", "--target", "y", "--image-shape", "8x8x1", "--trials", "3"]))
    assert image == ImageBuildOptions(target="y", image_shape="8x8x1", n_candidates=3)
    got = build_options(parse(["build", "d.csv", "--target", "y", "--no-explain", "--families", "linear, knn",
                               "--memory-limit", "512"]), "y")
    assert (got.explain, got.families, got.memory_mb) == (False, ("linear", "knn"), 512.0)
    flip = image_build_options(parse(["build", "d.csv", "--target", "y", "--image-shape", "8x8x3", "--no-flip"]))
    assert flip.flip is False


def test_the_help_names_each_kinds_default() -> None:
    helps = {f: a.help for f, a in _flags(_subparser("build")).items()}
    assert "(default 60; 600 with --image-shape)" in (helps["--time"] or "")
    assert "shared among the --workers" in (helps["--threads"] or "")  # (the same rule for both kinds)


def test_lists_kept_beside_the_declarations_match_their_sources() -> None:
    from daedalus.data.schema import Task
    from daedalus.designers.nas.registry import BEST, DESIGNERS
    from daedalus.orchestration.options import TASKS, _designer_names

    assert tuple(t.value for t in Task) == TASKS
    assert _designer_names() == (*DESIGNERS, BEST)


# -- messages generated from the constraints ---------------------------------------------------------------------
def _bad_values(d: Declared) -> list[Any]:
    c = d.spec.constraint
    if isinstance(c, Interval):
        below = [c.low - 1 if c.kind is int else c.low - 0.5] if c.low is not None else []
        edge = [c.low] if c.low is not None and c.closed in ("right", "neither") else []
        return [*below, *edge, float("nan") if c.kind is float else 1.5, "3", True]
    if isinstance(c, (StrOptions, ListOptions)):
        return ["nonsense", 3] if isinstance(c, StrOptions) else [("nonsense",), "metric"]
    if isinstance(c, Names):
        return ["a,b", [1, 2]]
    if isinstance(c, Boolean):
        return ["yes", 1]
    return [3]  # Text: anything but a string


@pytest.mark.parametrize("style", ["cli", "python"])
@pytest.mark.parametrize(("cls", "d"), ALL, ids=[f"{c.__name__}.{d.name}" for c, d in ALL])
def test_a_bad_value_is_refused_with_a_message_generated_from_its_constraint(cls: type, d: Declared,
                                                                             style: Style) -> None:
    name = d.spec.flag if style == "cli" and d.spec.flag else d.name
    for value in _bad_values(d):
        with pytest.raises(ConfigError) as caught:
            check_value(d, value, style)
        message = str(caught.value)
        if d.name in ("fairness", "image_shape") and isinstance(value, str):
            continue  # a grammar of its own: its parser names the problem (tests/test_oversight_fairness.py)
        assert message == d.message(value, style)
        assert message.startswith(f"{name} must be {d.spec.constraint.describe()}") and "\n" not in message
        assert f"; e.g. {d.example(style)}" in message


@pytest.mark.parametrize(("cls", "d"), ALL, ids=[f"{c.__name__}.{d.name}" for c, d in ALL])
def test_the_example_in_every_message_and_the_default_are_good_values(cls: type, d: Declared) -> None:
    example = d.spec.example if d.spec.example is not None else d.default
    check_value(d, example)
    if d.default is not MISSING:
        check_value(d, d.default)


def test_defaults_are_valid_and_the_python_api_names_parameters() -> None:
    assert BuildOptions(target="y").checked() == BuildOptions(target="y")
    assert ImageBuildOptions(target="y", image_shape="8x8x1").checked().cost_objective is None
    with pytest.raises(ConfigError, match=r"^time_budget must be a number > 0 or None, got -5; e.g. time_budget=60"):
        BuildOptions(target="y", time_budget=-5).checked(style="python")
    with pytest.raises(ConfigError, match=r"^fairness needs .* name them with sensitive COLS"):
        BuildOptions(target="y", fairness="demographic_parity_difference<=0.05").checked(style="python")


def test_the_estimator_refuses_a_bad_parameter_before_reading_the_data() -> None:
    from daedalus.interfaces.estimators import AutoRegressor

    with pytest.raises(ConfigError, match="^n_threads must be an integer >= 1 or None, got 0; e.g. n_threads=2"):
        AutoRegressor(n_threads=0).fit(None, None)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--time", "-5"], "--time must be a number > 0, got -5; e.g. --time 60"),
    (["--trials", "0"], "--trials must be an integer >= 1, got 0; e.g. --trials 20"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
    (["--validation", "loo"], "--validation must be one of \"kfold\" or \"holdout\", got 'loo'"),
    (["--task", "ranking"], "--task must be one of \"binary\", \"multiclass\" or \"regression\""),
    (["--image-shape", "8x8x1", "--designer", "annealing"], "--designer must be one of \"random\""),
    (["--image-shape", "8x8x1", "--objective", "speed"], "--objective must be one of \"accuracy\""),
    (["--image-shape", "8x8x1", "--shift", "-1"], "--shift must be an integer >= 0 pixels, got -1"),
    (["--image-shape", "8x8x1", "--time", "0"], "--time must be a number > 0, got 0; e.g. --time 600"),
])
def test_cli_refusals_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          fragment: str) -> None:
    code = main(["build", str(tmp_path / "absent.csv"), "--target", "y", *args, "--run", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args", [["--time", "-1"], ["--trials", "0"]])
def test_resume_checks_its_budget_against_the_declaration(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          args: list[str]) -> None:
    assert main(["resume", str(tmp_path / "no-run"), *args]) == 2
    assert f"{args[0]} must be" in capsys.readouterr().err


# -- load keeps every parameter -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_load_keeps_every_option_the_estimators_take(planted_run: Path, tmp_path: Path) -> None:
    """Before: load() dropped sensitive, fairness and explain (the reloaded estimator refit without them)."""
    import daedalus
    from daedalus.interfaces.estimators import PARAMETERS

    run = tmp_path / "run"
    shutil.copytree(planted_run, run)
    info = json.loads((run / "run.json").read_text())
    info["options"].update(sensitive=["group"], fairness="demographic_parity_difference<=0.1", explain=False,
                           keep_leaks=True, seed=7)
    (run / "run.json").write_text(json.dumps(info))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the unapproved use is recorded and warned about
        est = daedalus.load(run, unapproved=True)
    saved = BuildOptions.from_dict(info["options"])
    assert est.get_params() == {**{d.name: getattr(saved, d.name) for d in PARAMETERS}, "run_dir": str(run)}
    assert est.get_params()["sensitive"] == ("group",) and est.get_params()["explain"] is False
