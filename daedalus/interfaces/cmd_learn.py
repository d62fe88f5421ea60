"""``daedalus learn``: mine the warm-start portfolio again from the shipped matrix and the knowledge base.

    daedalus learn [--knowledge URL] [--size N] [--out FILE]

Builds then start from the learned portfolio (the data directory's ``portfolio.json``) instead of the shipped one;
``--out`` writes it elsewhere (pass it to a build with ``--portfolio FILE``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommand to ``sub`` and return its handler by name."""
    p = sub.add_parser("learn", help="mine the warm-start portfolio again, with the runs in the knowledge base")
    p.add_argument("--knowledge", default=None, metavar="URL",
                   help="SQLAlchemy URL of the knowledge base (default: knowledge.db in the data directory)")
    p.add_argument("--size", type=int, default=None, metavar="N", help="members of the portfolio (default 16)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="where to write it (default: portfolio.json in the data directory, which builds use)")
    return {"learn": cmd_learn}


def cmd_learn(args: argparse.Namespace) -> int:
    from daedalus.errors import ConfigError
    from daedalus.orchestration.learn import LEARNED_SIZE, learn

    if args.size is not None and args.size < 1:
        raise ConfigError(f"--size {args.size} leaves no member; pass --size N with N >= 1")
    if args.out is not None:
        from daedalus.interfaces.paths import check_out_file

        check_out_file(args.out, option="--out")
    learned = learn(args.knowledge, args.size or LEARNED_SIZE, args.out)
    for warning in learned.warnings:
        print(f"warning: {warning}")
    print(f"learned a portfolio of {len(learned.portfolio.members)} from the shipped matrix and "
          f"{learned.runs_used} run(s) of the knowledge base ({learned.new_configs} new configuration(s)); "
          f"written to {learned.path}")
    for member in learned.portfolio.members:
        print(f"  {member.slot:2d}. {member.family:14s} {member.config_id}")
    return 0
