"""The ``daedalus`` command.

    daedalus demo [--time S]
    daedalus build DATA --target COL [--time S | --trials N] [--seed N] [--metric M] [--run DIR] ...
    daedalus resume RUN [--time S | --trials N] [--ray ADDRESS]
    daedalus leaderboard RUN [--json]
    daedalus predict RUN DATA [--out FILE] [--proba] [--unapproved]
    daedalus info RUN
    daedalus build IMAGES.csv --target COL --image-shape 28x28x1 [--designer NAME] [--max-params N] ...
    daedalus export-arch RUN [--trial N] --out model.py
    daedalus nas-bench --table FILE --designer NAME --queries N --seeds K [--json] [--processes P]
                       [--pretrain-table FILE ...]
    daedalus knowledge list|export FILE|forget RUN [--knowledge URL]
    daedalus learn [--knowledge URL] [--size N] [--out FILE]

A user's mistake (DaedalusError) is printed as one line on stderr with exit status 2, never a traceback.
Heavy libraries are imported inside the commands, so that ``--help`` and bad input answer at once.
"""

from __future__ import annotations

import time

_STARTED = time.monotonic()  # the budget counts from the moment the command starts (its imports included)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

from daedalus.errors import DaedalusError  # noqa: E402
from daedalus.interfaces import interrupts  # noqa: E402
from daedalus.interfaces.flags import (  # noqa: E402  (light: the option declarations only)
    add_budget_flags,
    add_build_flags,
    build_options,
    check_budget,
    image_build_options,
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = interrupts.EXIT_INTERRUPTED
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, as for every other bad input
        self.exit(EXIT_USER_ERROR, f"daedalus: error: {message}; see '{self.prog} --help'\n")


def _add_build(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The build options' flags (declared in ``orchestration/options.py``), then where the run goes and how."""
    add_build_flags(p, skip=skip)
    p.add_argument("--run", type=Path, default=None, metavar="DIR", help="run directory (default runs/NAME-TIME)")
    p.add_argument("--quiet", action="store_true", help="no live progress display")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daedalus", description="Daedalus: AI that builds AI models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("build", help="search, tune and ensemble models for a table")
    p.add_argument("data", help="CSV or Parquet file")
    _add_build(p)

    p = sub.add_parser("demo", help="build on the bundled German credit data (target 'class-label')")
    _add_build(p, skip=("target",))

    p = sub.add_parser("resume", help="continue a run stopped by Ctrl-C or a kill")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    add_budget_flags(p)
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="continue on the Ray cluster at ADDRESS ('off': on this machine; default: where the run ran)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("leaderboard", help="the run's models, best first")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")

    p = sub.add_parser("predict", help="predict new rows with a run's model")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("data", help="CSV or Parquet file of rows to predict")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="output CSV (default: stdout)")
    p.add_argument("--proba", action="store_true", help="add one proba_<class> column per class")
    p.add_argument("--unapproved", action="store_true",
                   help="use a model that is not approved ('daedalus approve'); the use is recorded in the audit log")
    p.add_argument("--non-numeric-as-missing", action="store_true",
                   help="read text in a numeric column as a missing value (default: refuse it, naming the values)")

    p = sub.add_parser("info", help="what a run holds: data, checks, validation, model")
    p.add_argument("run_dir", type=Path, metavar="RUN")

    p = sub.add_parser("audit", help="show or verify the run's hash-chained audit log")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--verify", action="store_true",
                   help="check the chain; exit 1 and name the first bad record if the log was edited, cut or reordered")

    p = sub.add_parser("export-arch", help="write a run's network as one standalone PyTorch file, weights beside it")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--trial", type=int, default=None, metavar="N",
                   help="a trial's network instead of the run's final model")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="the .py file to write; the weights go to the same name with .pt")

    p = sub.add_parser("nas-bench", help="score a NAS designer on a NAS-Bench-201 table, over seeds")
    p.add_argument("--table", required=True, metavar="FILE", help="NAS-Bench-201 CSV (cell, val12, test200 columns)")
    p.add_argument("--designer", default="best", metavar="NAME",
                   help="random, evolution, local, tpe, generative, predictor or best (default best)")
    p.add_argument("--queries", type=int, default=100, metavar="N",
                   help="distinct architectures each search may read (default 100)")
    p.add_argument("--seeds", type=int, default=10, metavar="K", help="searches, seeds 0..K-1 (default 10)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--processes", type=int, default=1, metavar="P", help="seeds run in P processes (default 1)")
    p.add_argument("--pretrain-table", action="append", default=[], metavar="FILE",
                   help="pretrain the designer on another NAS-Bench-201 table first, reading its val12 only "
                        "(repeatable; generative or predictor)")
    for module in _extension_modules():
        COMMANDS.update(module.register(sub))
    return parser


# Commands kept in modules of their own (``cmd_*.py``): each has ``register(sub)``, which adds its parsers and
# returns {command name: handler}. Their heavy imports stay inside the handlers, as here.
EXTENSIONS = ("explain", "report", "gate", "steer", "fairness", "keys", "knowledge", "learn")


def _extension_modules() -> list[Any]:
    import importlib

    return [importlib.import_module(f"daedalus.interfaces.cmd_{name}") for name in EXTENSIONS]


# -- commands ----------------------------------------------------------------------------------------------
def _default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _reporter(quiet: bool) -> Any:
    from daedalus.interfaces.progress import RichReporter
    from daedalus.orchestration.reporter import Reporter

    return Reporter() if quiet else RichReporter()


def _run_build(args: argparse.Namespace, data: Any, target: str, name: str) -> int:
    options = build_options(args, target)  # check options before any heavy import or file read
    from daedalus.orchestration.build import build

    run_dir = interrupts.set_run_dir(args.run or _default_run_dir(name))
    result = build(data, options, run_dir, reporter=_reporter(args.quiet), started=_STARTED)
    return _finish(result)


def _finish(result: Any) -> int:
    _print_summary(result.run_dir, result.leaderboard)
    if result.final is None:
        print(f"daedalus: no trial succeeded; see 'daedalus leaderboard {result.run_dir}' for the reasons",
              file=sys.stderr)
        return 1
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    name = Path(args.data).name.split(".")[0] or "run"
    if getattr(args, "image_shape", None) is not None:  # a flag left out is absent (see interfaces/flags.py)
        return _run_image_build(args, name)
    return _run_build(args, args.data, args.target, name)


def _run_image_build(args: argparse.Namespace, name: str) -> int:
    options = image_build_options(args)
    from daedalus.orchestration.image_build import build_images

    run_dir = interrupts.set_run_dir(args.run or _default_run_dir(name))
    result = build_images(args.data, options, run_dir, reporter=_reporter(args.quiet), started=_STARTED)
    _print_summary(result.run_dir, result.leaderboard)
    if result.final is None:
        print(f"daedalus: no network was trained; see 'daedalus leaderboard {result.run_dir}'", file=sys.stderr)
        return 1
    print(f"export the network with: daedalus export-arch {result.run_dir} --out model.py")
    return 0


def cmd_export_arch(args: argparse.Namespace) -> int:
    from daedalus.orchestration.export import export_architecture

    source, weights = export_architecture(args.run_dir, args.out, trial=args.trial)
    print(f"wrote {source} and {weights}")
    print(f"load with: net = Net(); net.load_state_dict(torch.load('{weights.name}')); net.eval()")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from daedalus.data.io import DEMO_TARGET, demo_path

    return _run_build(args, demo_path(), DEMO_TARGET, "demo")


def cmd_resume(args: argparse.Namespace) -> int:
    check_budget(args)  # before the run is opened
    from daedalus.store.run import RunStore

    interrupts.set_run_dir(args.run_dir)
    if RunStore.open(args.run_dir).read("run").get("kind") == "image":
        from daedalus.orchestration.image_build import resume_images

        image_result = resume_images(args.run_dir, time_budget=args.time, reporter=_reporter(args.quiet),
                                     started=_STARTED)
        _print_summary(image_result.run_dir, image_result.leaderboard)
        return 0 if image_result.final is not None else 1
    from daedalus.orchestration.build import resume

    result = resume(args.run_dir, time_budget=args.time, n_trials=args.trials, reporter=_reporter(args.quiet),
                    started=_STARTED, ray=args.ray)
    return _finish(result)


def _leaderboard(run_dir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The run's leaderboard, and None; or, while it has no ``leaderboard.json`` (running, or stopped before its
    end), its trials so far from the study, and the note that says so."""
    from daedalus.store.run import RunStore

    store = RunStore.open(run_dir)
    if store.path("leaderboard").exists():
        board: list[dict[str, Any]] = store.read("leaderboard")
        return board, None
    from daedalus.orchestration.leaderboard import partial_leaderboard

    partial = partial_leaderboard(run_dir)
    return partial.rows, partial.note


def _print_table(board: list[dict[str, Any]], limit: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("rank", "trial", "family", "score", "metric", "fit s", "status")
    for row in board[:limit]:
        score = "" if row["score"] is None else f"{row['score']:.5f}"
        table.add_row(str(row["rank"]), "" if row["trial"] is None else str(row["trial"]), row["family"], score,
                      row["metric"], f"{row['fit_seconds']:.2f}", row["status"])
    Console().print(table)


def _print_summary(run_dir: Path, board: list[dict[str, Any]]) -> None:
    _print_table(board, limit=10)
    print(f"run saved in {run_dir}")
    print(f"approve with: daedalus keys new NAME (once), then daedalus approve {run_dir} --by NAME --reason TEXT")
    print(f"then predict with: daedalus predict {run_dir} DATA.csv --out predictions.csv")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    board, note = _leaderboard(args.run_dir)
    if args.json:  # a partial board is marked in each row, so that a list stays a list for its readers
        print(json.dumps([{**row, "partial": True} for row in board] if note else board, indent=1, default=str))
    else:
        _print_table(board)
    if note:
        print(note, file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from daedalus.ensembles.predictor import Predictor
    from daedalus.interfaces.paths import read_rows
    from daedalus.oversight.approval import authorize_use

    strict = not args.non_numeric_as_missing
    rows = read_rows(args.run_dir, args.data, strict)
    warning = authorize_use(args.run_dir, args.unapproved, args.data)  # the approval gate; refuses with exit 2
    if warning:
        print(f"daedalus: {warning}", file=sys.stderr)
    predictor = Predictor.load(args.run_dir)
    if isinstance(predictor, Predictor):
        predictor.strict_numbers = strict
    out = pd.DataFrame({"prediction": predictor.predict(rows)})
    if args.proba and predictor.classes is not None:  # a regression has no classes: prediction only
        proba = predictor.predict_proba(rows)
        for j, cls in enumerate(predictor.classes or []):
            out[f"proba_{cls}"] = proba[:, j]
    if args.out is None:
        out.to_csv(sys.stdout, index=False)
    else:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from daedalus.store.run import RunStore

    store = RunStore.open(args.run_dir)
    info = store.read("run")
    schema = store.read("schema", default={})
    checks = store.read("checks", default={})
    board = store.read("leaderboard", default=[])
    print(f"run        {store.root}")
    print(f"status     {info.get('status')}")
    print(f"data       {info.get('data_source')}  target {info['options']['target']}  task {info.get('task')}")
    print(f"validation {info.get('validation')}  metric {info.get('metric')}")
    print(f"families   {', '.join(info.get('families', []))}")
    if schema:
        kinds: dict[str, int] = {}
        for col in schema["columns"]:
            kinds[col["kind"]] = kinds.get(col["kind"], 0) + 1
        print("columns    " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        for col, why in schema.get("dropped", {}).items():
            print(f"dropped    {col}: {why}")
    for finding in checks.get("findings", []):
        print(f"check      [{finding['severity']}] {finding['message']}")
    if board:
        best = board[0]
        print(f"best       {best['family']} {best['metric']}={best['score']}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from daedalus.errors import RunError
    from daedalus.store.audit import verify

    # Read the file directly; only verify() writes, under the log's lock: it cuts a torn last line and restores
    # a record the anchor holds one step ahead (a writer killed between the two writes).
    path = args.run_dir / "audit.jsonl"
    if not (args.run_dir / "run.json").exists() or not path.exists():
        raise RunError(f"'{args.run_dir}' is not a Daedalus run with an audit log (no audit.jsonl); "
                       "pass the directory that 'daedalus build' created")
    if not args.verify:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                print(f"    ?  (not valid JSON) {line[:160]}")
                continue
            extra = {k: v for k, v in record.items() if k not in ("seq", "time", "event", "prev", "hash")}
            print(f"{record.get('seq', '?'):>5}  {record.get('event', '?'):<18} {json.dumps(extra, default=str)[:160]}")
        return 0
    result = verify(path)
    if not result.ok:
        print(f"audit log broken at record {result.first_bad} of {path}: {result.reason}")
        return 1
    from daedalus.oversight.approval import decision_problems
    from daedalus.store.run import RunStore

    print(f"audit log intact: {result.n_records} records, hash chain verified, {result.reason} ({path})")
    print(f"last hash {result.last_hash}")
    problems = decision_problems(RunStore.open(args.run_dir))
    for problem in problems:
        print(f"decision not signed by a trusted key: {problem}")
    if not problems:
        print("every approval and rejection is signed by a key trusted for its reviewer")
    return 1 if problems else 0


def cmd_nas_bench(args: argparse.Namespace) -> int:
    from daedalus.orchestration.nas_bench import bench

    report = bench(args.table, args.designer, args.queries, args.seeds, processes=args.processes,
                   pretrain_tables=args.pretrain_table)
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    pretrained = f", pretrained on {', '.join(report.pretrain_tables)}" if report.pretrain_tables else ""
    print(f"designer {report.designer}{pretrained}, table {report.table}, {report.seeds} seeds: "
          "test200 (%) of the best val12 read")
    print(f"{'budget':>6} {'mean':>8} {'sd':>6} {'regret':>7}")
    for budget, row in report.results.items():
        print(f"{budget:>6} {row['mean']:>8.2f} {row['sd']:>6.2f} {row['regret']:>7.2f}")
    print(f"optimum {report.optimum:.2f} (the table's best test200)")
    return 0


COMMANDS: dict[str, Any] = {
    "build": cmd_build, "demo": cmd_demo, "resume": cmd_resume, "leaderboard": cmd_leaderboard,
    "predict": cmd_predict, "info": cmd_info, "audit": cmd_audit, "nas-bench": cmd_nas_bench,
    "export-arch": cmd_export_arch,
}


# Commands that only read the audit log: a damaged run.json or leaderboard.json must not stop its inspection.
_SKIP_RUN_CHECK = frozenset({"audit"})
# Commands whose --out is a folder (the others write one file).
_OUT_DIRS = frozenset({"card"})
_OUT_MAKES_FOLDER = frozenset({"export-arch"})  # it writes several files and makes their folder


def _check_paths(args: argparse.Namespace) -> None:
    """Paths and run records checked before a command does anything (see ``interfaces/paths.py``)."""
    from daedalus.interfaces.paths import check_new_run_dir, check_out_dir, check_out_file, check_run_files

    check_new_run_dir(getattr(args, "run", None))
    out = getattr(args, "out", None)
    if args.command in _OUT_DIRS:
        check_out_dir(out)
    else:
        check_out_file(out, makes_folder=args.command in _OUT_MAKES_FOLDER)
    run_dir = getattr(args, "run_dir", None)
    if run_dir is not None and args.command not in _SKIP_RUN_CHECK:
        check_run_files(run_dir)


def main(argv: list[str] | None = None) -> int:
    global _STARTED
    if argv is not None:  # called from Python, perhaps long after this module was imported: the budget starts now
        _STARTED = time.monotonic()
    if argv is None:  # the console command; a Python caller keeps its own SIGINT handling
        interrupts.install()
    args = make_parser().parse_args(argv)
    try:
        _check_paths(args)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, not at the interpreter's exit, so that a reader gone away is met below
        return code
    except BrokenPipeError:
        # The reader of the output went away (`daedalus knowledge list --json | head`): stop quietly, as Unix
        # tools do. The rest of the output goes to /dev/null, so that the interpreter's last flush is quiet too.
        if argv is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except DaedalusError as exc:
        print(f"daedalus: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        # Quietly, with the resume command only when there is a run to resume.
        print(interrupts.interrupted_message(), end="", file=sys.stderr)
        interrupts.mark_told()
        if argv is None:
            interrupts.exit_interrupted()
        return EXIT_INTERRUPTED
    finally:
        if argv is None:
            # The process ends next. The interpreter's teardown collected every object of the libraries a build
            # imports: 0.8 s of a Ctrl-C's exit (1.3 s on a busy machine), and of every build's budget. Frozen
            # objects are left to the operating system.
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
