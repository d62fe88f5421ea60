"""``daedalus fairness RUN [DATA]``: the fairness audit of a run built with ``--sensitive``.

Without DATA it prints the run's ``fairness.json`` (out-of-fold predictions of the final model) in brief; with
DATA, labelled rows the model did not train on (a test split), it measures the model on them, with the run's
constraint checked, and can write the full record (``--out FILE.json``, the schema of ``fairness.json``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("fairness", help="per-group fairness of a run built with --sensitive",
                       description=__doc__)
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("data", nargs="?", default=None, help="labelled rows to measure the model on (CSV/Parquet)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the full record as JSON")
    return {"fairness": cmd_fairness}


def cmd_fairness(args: argparse.Namespace) -> int:
    from daedalus.errors import RunError
    from daedalus.oversight.fairness import FAIRNESS_RECORD, fairness_on_rows
    from daedalus.store.layout import json_file

    if args.data is not None:
        from daedalus.data import read_table

        record = fairness_on_rows(args.run_dir, read_table(args.data))
    else:
        path = Path(args.run_dir) / json_file(FAIRNESS_RECORD)
        if not path.exists():
            raise RunError(f"run '{args.run_dir}' has no {path.name}; build with --sensitive COLS, or "
                           f"pass labelled rows: daedalus fairness {args.run_dir} DATA.csv")
        record = json.loads(path.read_text(encoding="utf-8"))
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(summary(record))
    return 0


def summary(record: dict[str, Any]) -> str:
    lines = [f"sensitive: {', '.join(record['sensitive'])} ({record['source']})"]
    metrics = [m for m in record["metrics"] if m != "count"]
    lines.append("group".ljust(32) + "".join(m.rjust(16) for m in [*metrics, "count"]))
    for row in record["intersectional"]:
        cells = ["-" if row[m] is None else f"{row[m]:.4f}" for m in metrics] + [str(row["count"])]
        lines.append((row["group"] + (" (small)" if row["small"] else ""))[:31].ljust(32)
                     + "".join(c.rjust(16) for c in cells))
    lines += [f"{name}: {value}" for name, value in record["differences"].items()]
    c = record.get("constraint")
    if c:
        verdict = "met" if c["met"] else "NOT met"
        lines.append(f"constraint {c['expression']}: {verdict} (gap {c['value']}, bound {c['bound']} = gap + "
                     f"{c['z']} x se)")
    return "\n".join(lines)
