"""A table's fingerprint: which columns it has and which one is the target, to recognise the same table again.

Meta-features say how *alike* two tables are, and sampling noise moves them: next month's rows of the same
table, or half of its rows, land as near some corpus task as to the run on the other half (session 8's
self-improvement bench). The columns do not move. A past run on a table with (almost) the same columns is the
best evidence a build can have, whatever its landmarkers say, so the warm start queues its best configurations
first (``designers/warm_start.py``); with the same target too, it is the same question asked again.

Each column name is kept as the first 16 hex digits of its SHA-256: a fixed-width, comparable token, so that a
shared knowledge base holds no free text from the table. It is not secrecy (a guessed name hashes the same).
Kinds are left out on purpose: a column's inferred kind can change from one month's rows to the next.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from daedalus.data.schema import Schema

__all__ = ["SAME_TABLE_OVERLAP", "TableFingerprint", "column_token", "fingerprint"]

TOKEN_HEX = 16
MAX_COLUMNS = 100_000  # a recorded fingerprint with more column tokens than this is damage, not a table
# Jaccard overlap of two column sets from which they count as one table: a column added or renamed out of ten
# still counts (9/11 = 0.82), half the columns changed does not.
SAME_TABLE_OVERLAP = 0.8
_TOKEN = re.compile(f"[0-9a-f]{{{TOKEN_HEX}}}")


def column_token(name: object) -> str:
    return hashlib.sha256(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:TOKEN_HEX]


@dataclass(frozen=True)
class TableFingerprint:
    columns: frozenset[str]  # a token per column of the table, the target's included
    target: str  # the target's token

    def overlap(self, other: TableFingerprint) -> float:
        """The share of columns the two tables have in common (Jaccard: shared / either's), in [0, 1]."""
        union = len(self.columns | other.columns)
        return len(self.columns & other.columns) / union if union else 0.0

    def same_table(self, other: TableFingerprint) -> bool:
        return self.overlap(other) >= SAME_TABLE_OVERLAP

    def to_dict(self) -> dict[str, Any]:
        return {"columns": sorted(self.columns), "target": self.target}

    @classmethod
    def from_dict(cls, recorded: Any) -> TableFingerprint:
        """A recorded fingerprint (someone else's data: checked); a ValueError names what is wrong."""
        if not isinstance(recorded, dict):
            raise ValueError(f"a fingerprint is a JSON object, not {type(recorded).__name__}")
        columns, target = recorded.get("columns"), recorded.get("target")
        if not isinstance(columns, list) or len(columns) > MAX_COLUMNS:
            raise ValueError(f"a fingerprint's columns are a list of at most {MAX_COLUMNS} tokens")
        tokens = frozenset(_token(c) for c in columns)
        target_token = _token(target)
        if target_token not in tokens:
            raise ValueError("a fingerprint's target is not one of its columns")
        return cls(tokens, target_token)


def _token(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"{str(value)[:40]!r} is not a column token ({TOKEN_HEX} hex digits)")
    return value


def fingerprint(schema: Schema) -> TableFingerprint:
    """The fingerprint of the table a schema describes: every column read, dropped ones included (an id column
    is part of the table's identity), and the target."""
    names = [*(c.name for c in schema.columns), schema.target]
    return TableFingerprint(frozenset(column_token(n) for n in names), column_token(schema.target))
