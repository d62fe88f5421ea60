"""``daedalus`` subcommands for explanations and model cards; see ``cli.EXTENSIONS``.

    daedalus explain RUN rows.csv [--out FILE] [--json] [--top N] [--max-rows N] [--unapproved]

``explain`` runs the model as ``predict`` does, so it goes through the same approval gate: an unapproved model
is refused unless ``--unapproved``, and that use is recorded in the audit log (``unapproved_use``, use
``explain``).
    daedalus card RUN [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_MAX_ROWS = 100  # rows explained per call: a non-tree member costs ~10^4 predictions per row


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("explain", help="SHAP contributions of each raw column to the model's predictions")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("data", help="CSV or Parquet file of rows to explain (the model's input columns)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write every contribution: CSV (one row per input row), or JSON with --json")
    p.add_argument("--json", action="store_true", help="print (or write) the explanations as JSON")
    p.add_argument("--top", type=int, default=10, metavar="N", help="contributions printed per row (default 10)")
    p.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, metavar="N",
                   help=f"refuse files with more rows than this (default {DEFAULT_MAX_ROWS}; cost grows per row)")
    p.add_argument("--unapproved", action="store_true",
                   help="explain with a model that is not approved ('daedalus approve'); recorded in the audit log")
    p = sub.add_parser("card", help="write the run's model card (model_card.md and model_card.json)")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="directory to write to (default: RUN)")
    return {"explain": cmd_explain, "card": cmd_card}


def _format_value(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return repr(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def cmd_explain(args: argparse.Namespace) -> int:
    from daedalus.errors import ConfigError
    if args.top < 1 or args.max_rows < 1:
        raise ConfigError("--top and --max-rows must be at least 1")
    import pandas as pd

    from daedalus.data import read_table
    from daedalus.ensembles.predictor import Predictor
    from daedalus.errors import DataError, RunError
    from daedalus.interfaces.paths import check_rows
    from daedalus.oversight.approval import authorize_use
    from daedalus.oversight.shap_values import BACKGROUND_ROWS, explain_rows
    from daedalus.store.run import RunStore

    store = RunStore.open(args.run_dir)
    if store.read("run").get("kind") == "image":
        raise RunError(f"'{args.run_dir}' is an image run; explain works on table runs (build from a table)")
    # The rows are read and checked against the schema (a missing column, text in a numeric column: one line)
    # before the model is touched or any use of it recorded.
    rows = read_table(args.data)
    if len(rows) == 0:
        raise DataError(f"'{args.data}' has no rows to explain; pass a file with at least one row")
    if len(rows) > args.max_rows:
        raise ConfigError(f"'{args.data}' has {len(rows)} rows, more than --max-rows {args.max_rows}; explain "
                          "fewer rows at a time or raise --max-rows")
    check_rows(args.run_dir, rows)
    warning = authorize_use(args.run_dir, args.unapproved, args.data, use="explain")  # the gate, as for predict
    if warning:
        print(warning, file=sys.stderr)
    predictor = Predictor.load(args.run_dir)
    if not isinstance(predictor, Predictor):
        raise RunError(f"'{args.run_dir}' holds a network; explain works on table runs (build from a table)")
    X = predictor.features(rows)
    train = pd.read_parquet(args.run_dir / "train.parquet")
    background = predictor.features(train.sample(min(BACKGROUND_ROWS, len(train)), random_state=0))
    result = explain_rows(predictor.model, predictor.schema, X, background)
    record = result.to_dict(rows)
    record["model"] = predictor.source
    if args.out is not None:
        if args.json:
            args.out.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        else:
            table = pd.DataFrame(result.contributions, columns=result.features)
            table.insert(0, "base_value", result.base_value)
            table.insert(0, "prediction", result.prediction)
            if result.predicted_class is not None:
                table.insert(0, "predicted_class", result.predicted_class)
            table.to_csv(args.out, index_label="row")
        print(f"wrote contributions of {len(rows)} rows to {args.out}", file=sys.stderr)
    if args.json and args.out is None:
        print(json.dumps(record, indent=1, default=str))
    elif not args.json:
        _print_rows(record, args.top)
    return 0


def _print_rows(record: dict[str, Any], top: int) -> None:
    print(f"explained: {record['output']}; each prediction is the base value (the model's average output) "
          "plus the contributions of the columns")
    for row in record["rows"]:
        label = f", predicted class {row['predicted_class']!r}" if "predicted_class" in row else ""
        print(f"\nrow {row['row']}: prediction {row['prediction']:.4f} = base {row['base_value']:.4f} "
              f"+ contributions{label}")
        ranked = sorted(row["contributions"].items(), key=lambda kv: -abs(kv[1]))
        for feature, value in ranked[:top]:
            shown = _format_value(row.get("values", {}).get(feature))
            print(f"  {value:+.4f}  {feature} = {shown}")
        rest = sum(v for _, v in ranked[top:])
        if len(ranked) > top:
            print(f"  {rest:+.4f}  ({len(ranked) - top} other columns)")


def cmd_card(args: argparse.Namespace) -> int:
    from daedalus.oversight.model_card import write_model_card

    md, js = write_model_card(args.run_dir, args.out)
    print(f"wrote {md} and {js}")
    return 0
