"""``daedalus knowledge``: what the knowledge base holds (``store/knowledge.py``), and taking it out.

    daedalus knowledge list [--kind table|image] [--json]    the runs recorded: id, when, kind, task, data,
                                                             rows x columns, metric, best score, trials
    daedalus knowledge export FILE                           every run with its trials, as JSON
    daedalus knowledge forget RUN                            remove a run's entry and its trials (RUN: its id, a
                                                             prefix naming one run, or its run directory)
    daedalus knowledge forget --dataset NAME                 remove every run of data file NAME: its traces

Each takes ``--knowledge URL`` (default: ``$DAEDALUS_KNOWLEDGE``, else the file in the data directory), as
``build`` does. Entries that are
damaged (a base anyone may write) are skipped and named on stderr, one line each.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daedalus.store.knowledge import KnowledgeBase

ID_SHOWN = 12  # characters of a run's id in the list: enough to name it to 'forget'


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("knowledge", help="list, export or forget the runs recorded in the knowledge base")
    commands = p.add_subparsers(dest="knowledge_command", required=True, parser_class=type(p))
    listing = commands.add_parser("list", help="the runs recorded, oldest first")
    listing.add_argument("--kind", choices=("table", "image"), default=None, help="only runs of this kind")
    listing.add_argument("--json", action="store_true", help="print a JSON list of runs")
    export = commands.add_parser("export", help="write every run and its trials to a JSON file")
    export.add_argument("file", type=Path, metavar="FILE", help="the JSON file to write")
    forget = commands.add_parser("forget", help="remove a run's entry and its trials (or every run of a data set)")
    forget.add_argument("ref", metavar="RUN", nargs="?", default=None,
                        help="the run's id (or a prefix naming one run) or its run directory")
    forget.add_argument("--dataset", default=None, metavar="NAME",
                        help="instead of RUN: every run of the data file NAME (as 'list' shows it)")
    for parser in (listing, export, forget):
        parser.add_argument("--knowledge", default=None, metavar="URL",
                            help="SQLAlchemy URL of the knowledge base (default: $DAEDALUS_KNOWLEDGE, else "
                                 "knowledge.db in the data directory)")
    return {"knowledge": cmd_knowledge}


def cmd_knowledge(args: argparse.Namespace) -> int:
    from daedalus.store.knowledge import KnowledgeBase

    if args.knowledge_command == "export":
        from daedalus.interfaces.paths import check_out_file

        check_out_file(args.file, option="FILE")  # before the base is opened
    with KnowledgeBase.open(args.knowledge) as base:
        if args.knowledge_command == "list":
            return _list(base, args.kind, args.json)
        if args.knowledge_command == "export":
            return _export(base, args.file)
        return _forget(base, args.ref, args.dataset)


def _warn(base: KnowledgeBase) -> None:
    for line in base.warnings:
        print(f"daedalus: warning: {line}", file=sys.stderr)


def _list(base: KnowledgeBase, kind: str | None, as_json: bool) -> int:
    from dataclasses import asdict

    runs = base.runs(kind=kind)
    _warn(base)
    counts = base.trial_counts()
    if as_json:
        print(json.dumps([{**asdict(r), "trials": counts.get(r.run_id, 0)} for r in runs], indent=1))
        return 0
    if not runs:
        from daedalus.store.knowledge import describe_url

        print(f"no runs recorded in {describe_url(base.url)} yet; every finished build records itself there")
        return 0
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    table = Table("id", "when", "kind", "task", "data", "rows x cols", "metric", "best", "trials")
    for r in runs:
        best = "" if r.best_score is None else f"{r.best_score:.5f}"
        table.add_row(r.run_id[:ID_SHOWN], datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"), r.kind,
                      r.task, r.dataset, f"{r.n_rows} x {r.n_features}", r.metric, best,
                      str(counts.get(r.run_id, 0)))
    Console().print(table)
    return 0


def _export(base: KnowledgeBase, file: Path) -> int:
    from daedalus.store.atomic import write_bytes_atomic

    data = base.export()
    _warn(base)
    write_bytes_atomic(file, json.dumps(data, indent=1).encode("utf-8"))
    n_trials = sum(len(run["trials"]) for run in data["runs"])
    print(f"wrote {len(data['runs'])} runs and {n_trials} trials to {file}")
    return 0


def _forget(base: KnowledgeBase, ref: str | None, dataset: str | None) -> int:
    from daedalus.errors import ConfigError

    if (ref is None) == (dataset is None):
        raise ConfigError("name what to forget: a RUN (its id or run directory) or --dataset NAME, not both")
    if dataset is not None:
        runs = base.runs(dataset=dataset)
        _warn(base)
        if not runs:
            raise ConfigError(f"no run of data set {dataset!r} in the knowledge base; 'daedalus knowledge list' "
                              "shows the data sets' names")
        removed = sum(base.forget(run.run_id) for run in runs)
        print(f"forgot {len(runs)} runs of {dataset} and their {removed} trials")
        return 0
    assert ref is not None  # (one of the two, checked above)
    run_id = base.resolve(_run_id_of_directory(Path(ref)) if Path(ref).is_dir() else ref)
    removed = base.forget(run_id)
    print(f"forgot run {run_id} and its {removed} trials")
    return 0


def _run_id_of_directory(directory: Path) -> str:
    """The id a run directory was recorded under (its run.json keeps it)."""
    from daedalus.errors import RunError
    from daedalus.orchestration.knowledge_record import RUN_ID_FIELD
    from daedalus.store.run import RunStore

    recorded = RunStore.open(directory).read("run").get(RUN_ID_FIELD)
    if not isinstance(recorded, str) or not recorded:
        raise RunError(f"run '{directory}' was never recorded in a knowledge base (its run.json has no "
                       f"{RUN_ID_FIELD}); 'daedalus knowledge list' shows the runs recorded")
    return recorded
