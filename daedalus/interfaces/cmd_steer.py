"""``daedalus steer``: steer a running search from another terminal (see ``oversight/steering.py``).

    daedalus steer RUN pause | resume | exclude FAMILY | add-time S | enqueue CONFIG.json

The command is checked and recorded in the run's audit log at once; the search applies it before its next trial
and records what it did (``steer_applied``). A run stopped by Ctrl-C or a kill can be steered too: the command
is applied when ``daedalus resume`` continues it, and every command keeps its effect across a resume. Pause,
resume and add-time steer any run; exclude and enqueue choose among model families, so an image run refuses them.
A bad command (unknown family, bad JSON, a non-positive number of seconds, a run not running, exclude on an image
run) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("steer", help="steer a running search: pause, resume, exclude FAMILY, add-time S, "
                                     "enqueue CONFIG.json")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    p.add_argument("action", metavar="COMMAND",
                   help="pause, resume, exclude, add-time or enqueue (exclude and enqueue: table runs only); "
                        "takes effect before the next trial")
    p.add_argument("value", nargs="?", default=None,
                   help="exclude: a family; add-time: seconds; enqueue: a JSON file such as "
                        '{"family": "lightgbm", "num_leaves": 63} (parameters left out are sampled)')
    return {"steer": cmd_steer}


def cmd_steer(args: argparse.Namespace) -> int:
    from daedalus.oversight.steering import issue_command

    record = issue_command(args.run_dir, args.action, args.value)
    print(f"'{args.action}' recorded as audit record {record['seq']}; the search applies it before its next trial "
          f"(a stopped run: when 'daedalus resume {args.run_dir}' continues it; see 'daedalus audit {args.run_dir}')")
    return 0
