"""``daedalus approve`` and ``daedalus reject``: the human approval gate (see ``oversight/approval.py``).

    daedalus approve RUN --by NAME --reason TEXT [--policy FILE] [--key FILE]
    daedalus reject RUN --by NAME --reason TEXT [--key FILE]

Each decision is signed with the reviewer's Ed25519 key: ``--key FILE``, else the key ``daedalus keys new NAME``
made for ``--by NAME`` in the data directory. The key must be trusted for that name (the run policy's
``[reviewers]``, else this machine's trusted keys), or nothing is recorded.

Exit status of ``approve``: 0 when the approval is recorded, 1 when a gate is not met (the refusal is recorded,
and each unmet gate is named with its measured and required values), 2 for a user mistake (no such run, a bad
policy file, a broken audit log).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

EXIT_REFUSED = 1


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("approve", help="approve a run's model for use, if it meets every gate of its policy")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    _add_decision_options(p)
    p.add_argument("--policy", default=None, metavar="FILE",
                   help="also check the gates of this TOML policy (the run's own policy always applies)")
    p = sub.add_parser("reject", help="reject a run's model: it cancels the approvals given so far")
    p.add_argument("run_dir", type=Path, metavar="RUN")
    _add_decision_options(p)
    return {"approve": cmd_approve, "reject": cmd_reject}


def _add_decision_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", required=True, metavar="NAME", help="the reviewer's name")
    p.add_argument("--reason", required=True, metavar="TEXT", help="why, in the reviewer's words")
    p.add_argument("--key", default=None, metavar="FILE",
                   help="the reviewer's private key that signs the decision (default: the data directory's "
                        "key of --by NAME, made by 'daedalus keys new NAME')")


def cmd_approve(args: argparse.Namespace) -> int:
    from daedalus.oversight.approval import approve
    from daedalus.oversight.policy import load_policy

    extra = load_policy(args.policy) if args.policy else None
    passed, gates, state = approve(args.run_dir, args.by, args.reason, extra, args.key)
    for gate in gates:
        print(f"{'met    ' if gate.passed else 'NOT MET'}  {gate.gate}: {gate.message}  [{gate.policy}]")
    if not gates:
        print("no gate other than the reviewers' approval is set")
    if not passed:
        unmet = ", ".join(g.gate for g in gates if not g.passed)
        print(f"approval refused: gate(s) not met: {unmet}; the refusal is recorded in the audit log")
        return EXIT_REFUSED
    if state.approved:
        print(f"approved: {state.summary}; 'daedalus predict {args.run_dir} ...' may use the model")
    else:
        print(f"approval by {args.by} recorded; the model is not yet approved for use: {state.summary}")
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    from daedalus.oversight.approval import reject

    state = reject(args.run_dir, args.by, args.reason, args.key)
    print(f"rejection by {args.by} recorded; the model is not approved for use ({state.summary})")
    return 0
