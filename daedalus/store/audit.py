"""An append-only, hash-chained event log (JSON Lines).

Each record carries ``seq`` (0, 1, 2, ...), ``prev`` (the hash of the record before it, or 64 zeros for the
first) and ``hash``: the SHA-256 of the record's canonical JSON without its own ``hash`` field. Editing,
deleting or reordering any record breaks the chain at that record, which :func:`verify` names.

Appends are a single ``write`` of one line followed by ``fsync``, so a run killed at any moment leaves at
most one torn last line; :class:`AuditLog` drops such a line on open (it was never acknowledged).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    n_records: int
    first_bad: int | None  # 1-based line number of the first bad record
    reason: str


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seq, self._last_hash = self._recover_tail()

    def _recover_tail(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            # A torn final line from a killed process: cut it off, it was never acknowledged.
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(raw))
        lines = raw.splitlines()
        if not lines:
            return 0, GENESIS
        last = json.loads(lines[-1])
        return int(last["seq"]) + 1, str(last["hash"])

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"seq": self._seq, "time": round(time.time(), 3), "event": event,
                                  **fields, "prev": self._last_hash}
        record["hash"] = record_hash(record)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._seq += 1
        self._last_hash = record["hash"]
        return record

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def verify(path: Path) -> VerifyResult:
    """Check the whole chain; name the first record (1-based line) that was edited, removed or moved."""
    prev = GENESIS
    n = 0
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return VerifyResult(False, n, n, "not valid JSON")
        if record.get("seq") != n - 1:
            return VerifyResult(False, n, n, f"sequence number {record.get('seq')} where {n - 1} was expected "
                                             "(a record was removed or moved)")
        if record.get("prev") != prev:
            return VerifyResult(False, n, n, "its 'prev' does not match the hash of the record before it")
        if record_hash(record) != record.get("hash"):
            return VerifyResult(False, n, n, "its content does not match its hash (the record was edited)")
        prev = record["hash"]
    return VerifyResult(True, n, None, "chain intact")
