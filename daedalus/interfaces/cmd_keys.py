"""``daedalus keys``: the reviewers' signing keys (see ``store/signing.py``).

    daedalus keys new NAME     make NAME's Ed25519 key pair: the private key in DATA_HOME/keys/NAME.key (0600,
                               never overwritten), the public key printed and trusted on this machine
    daedalus keys list         the trusted public keys, by reviewer name
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's subcommands to ``sub`` and return their handlers by name."""
    p = sub.add_parser("keys", help="make and list the reviewers' keys that sign approvals and rejections")
    keys = p.add_subparsers(dest="keys_command", required=True, parser_class=type(p))
    new = keys.add_parser("new", help="make a reviewer's key pair and trust its public key on this machine")
    new.add_argument("name", metavar="NAME", help="the reviewer's name, as 'approve --by NAME' gives it")
    keys.add_parser("list", help="the public keys trusted on this machine")
    return {"keys": cmd_keys}


def cmd_keys(args: argparse.Namespace) -> int:
    from daedalus.store.home import data_home
    from daedalus.store.signing import TRUSTED_FILE, new_key, trusted_keys

    if args.keys_command == "new":
        path, public = new_key(args.name)
        print(f"made the key of reviewer '{args.name}': private key {path} (keep it to yourself)")
        print("public key (trusted on this machine; list it in a policy's [reviewers] to pin it):")
        print(f'{args.name} = "{public}"')
        return 0
    trusted = trusted_keys()
    if not trusted:
        print(f"no trusted keys in {data_home() / TRUSTED_FILE}; make one with 'daedalus keys new NAME'")
    for name, public in sorted(trusted.items()):
        print(f'{name} = "{public}"')
    return 0
