"""``daedalus`` subcommands for oversight (report); see ``cli.EXTENSIONS``.

    daedalus report RUN [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("report", help="write one self-contained HTML report of a run, with its plots")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="the HTML file (default RUN/report.html)")
    return {"report": cmd_report}


def cmd_report(args: argparse.Namespace) -> int:
    from daedalus.errors import ConfigError

    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"cannot write the report to '{args.out}': folder '{args.out.parent}' does not exist; "
                          "create it or pass another --out")
    started = time.perf_counter()
    from daedalus.oversight.report import write_report

    path = write_report(args.run_dir, args.out)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s); open it in a browser "
          "(it needs no network)")
    return 0
