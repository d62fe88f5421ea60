"""An append-only, hash-chained event log (JSON Lines).

Each record carries ``seq`` (0, 1, 2, ...), ``prev`` (the hash of the record before it, or 64 zeros for the
first) and ``hash``: the SHA-256 of the record's canonical JSON without its own ``hash`` field. Editing,
deleting or reordering any record breaks the chain at that record, which :func:`verify` names. Records cut off
the *end* leave a shorter chain that is still intact: only a copy of the last hash kept elsewhere (``audit
--verify`` prints it) shows that.

Several processes append to one log: the build, and from other terminals ``approve``, ``reject``, ``steer`` and
``predict --unapproved``. Each append therefore takes an exclusive ``flock`` on the file and reads the chain's
tail from the file itself, never from memory, so records from different processes interleave into one chain.
Appends are a single ``write`` of one line followed by ``fsync``, so a process killed at any moment leaves at
most one torn last line; the next append cuts it off, under the lock (it was never acknowledged). Nothing is
cut on open: a reader must not truncate a line that another process is writing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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
    last_hash: str = GENESIS  # of the last record, when the chain is intact


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed, or the process dies
            seq, last_hash = _tail(f)
            record: dict[str, Any] = {"seq": seq, "time": round(time.time(), 3), "event": event,
                                      **fields, "prev": last_hash}
            record["hash"] = record_hash(record)
            f.write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self) -> list[dict[str, Any]]:
        """The complete records (a line still being written by another process is left out)."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        return [json.loads(line) for line in raw[: raw.rfind(b"\n") + 1].splitlines() if line.strip()]


def _tail(f: BinaryIO) -> tuple[int, str]:
    """The next sequence number and the last record's hash, read from the end of the open, locked file; a torn
    last line (a writer killed mid-write) is cut off first."""
    size = f.seek(0, os.SEEK_END)
    end = _last_newline_before(f, size)
    if end != size:
        f.truncate(end)
    if end == 0:
        return 0, GENESIS
    start = _last_newline_before(f, end - 1)
    f.seek(start)
    last = json.loads(f.read(end - start))
    return int(last["seq"]) + 1, str(last["hash"])


def _last_newline_before(f: BinaryIO, pos: int) -> int:
    """The offset just after the last newline in f[:pos] (0 when there is none), read backwards in blocks."""
    while pos > 0:
        start = max(0, pos - 8192)
        f.seek(start)
        at = f.read(pos - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        pos = start
    return 0


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
    return VerifyResult(True, n, None, "chain intact", prev)
