"""Checks of what a command is given, made before any work, so that a mistake is one line (exit 2) and leaves
nothing half-made or recorded: a run directory that is a file, an output file inside a missing folder or onto a
folder, an output folder onto a file, a run whose JSON records are damaged, and input rows that do not fit the
run's schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from daedalus.errors import ConfigError, RunError

if TYPE_CHECKING:
    import pandas as pd


def check_out_file(path: Path | None, option: str = "--out", makes_folder: bool = False) -> None:
    """``path`` can be written as a file: it is not a folder, and its folder exists (or, for a command that
    creates it, ``makes_folder``, nothing on the way to it is a file)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} '{path}' is a folder; pass a file name, e.g. {option} {path / 'out.csv'}")
    parent = path.parent
    if makes_folder:
        parent = next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise ConfigError(f"cannot write {option} '{path}': folder '{parent}' {what}; create the folder or pass "
                          f"another {option}")


def check_out_dir(path: Path | None, option: str = "--out") -> None:
    """``path`` can be used as a folder to write into: absent (it is created) or a folder, never a file."""
    if path is None:
        return
    path = Path(path)
    part = _file_on_the_way(path)
    if part is not None:
        raise ConfigError(f"{option} '{path}' must be a folder but '{part}' is a file; pass a folder, e.g. "
                          f"{option} {path.parent / (path.stem + '_card')}")


def check_new_run_dir(path: Path | None) -> None:
    """``build --run DIR``: DIR is a folder (or can be made one), not a file."""
    if path is None:
        return
    path = Path(path)
    part = _file_on_the_way(path)
    if part is not None:
        raise ConfigError(f"--run '{path}' must be a run folder but '{part}' is a file; pass a folder that "
                          f"does not exist yet, e.g. --run runs/{path.stem or 'run'}")


def _file_on_the_way(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists as a file (so no folder can be made there), or None."""
    return next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)


def check_run_files(run_dir: Path) -> None:
    """The run's JSON records (``run.json``, and ``schema.json`` and ``leaderboard.json`` when present) read and
    parse into what every command expects; a damaged one is a RunError naming the file and the fix."""
    from daedalus.store.run import RUN_FILE, RunStore

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"'{run_dir}' is a file, not a run folder; pass the folder that 'daedalus build' created")
    if not (run_dir / RUN_FILE).exists():
        return  # each command says in its own words that this is not a run
    store = RunStore(run_dir)
    info = store.read("run")
    if info.get("kind") != "image":
        from daedalus.data.schema import Schema
        from daedalus.orchestration.options import BuildOptions

        BuildOptions.from_dict(info["options"])
        if (run_dir / "schema.json").exists():
            Schema.from_dict(store.read("schema"))
    if (run_dir / "leaderboard.json").exists():
        store.read("leaderboard")


def read_rows(run_dir: Path, data: str, strict_numbers: bool = True) -> pd.DataFrame:
    """The rows of ``data``, checked against the run's schema (columns, numbers) before anything is recorded or
    loaded: a missing file or a bad column must not leave an ``unapproved_use`` record behind."""
    from daedalus.data import read_table
    from daedalus.store.run import RunStore

    RunStore.open(run_dir)
    rows = read_table(data)
    check_rows(run_dir, rows, strict_numbers)
    return rows


def check_rows(run_dir: Path, rows: pd.DataFrame, strict_numbers: bool = True) -> None:
    """``rows`` fit the schema of a table run (an image run's network checks its pixels itself)."""
    from daedalus.data import prepare_features
    from daedalus.data.schema import Schema
    from daedalus.store.run import RunStore

    store = RunStore.open(run_dir)
    if store.path("schema").exists():
        prepare_features(rows, Schema.from_dict(store.read("schema")), strict_numbers=strict_numbers)
