"""An append-only, hash-chained event log (JSON Lines), anchored outside the run directory.

Each record carries ``seq`` (0, 1, 2, ...), ``prev`` (the hash of the record before it, or 64 zeros for the
first) and ``hash``: the SHA-256 of the record's canonical JSON without its own ``hash`` field. Editing,
deleting or reordering any record breaks the chain at that record, which :func:`verify` names.

**Threat model.** The attacker can read and write anything in the run directory, and run ``daedalus`` commands
as a normal user (under their own account, so with their own data directory), but holds no reviewer's private
key and cannot write outside the run directory: not the user's data directory (``store/home.py``: the anchors,
the reviewers' key files, the trusted keys). The hashes alone are unkeyed: such an attacker could rehash an
edited record, rewrite the whole chain or append a record of their own. Two defences close that:

- **The anchor.** Every append first writes the chain's head (seq, hash and the full last record) to
  ``DATA_HOME/anchors/<genesis hash>.json``, atomically (a temporary file renamed), then the log line.
  :func:`verify` fails when no anchor exists for the chain's first record (the log was rewritten from the start,
  or the run was made on another machine), or when the log's head is not the anchored head (records appended,
  cut or rewritten behind the writer's back). A copy of a run (``cp -r``) verifies as long as its head is a head
  anchored for its chain (not merely a record below one: a copy cut back to before a rejection must not
  verify); its own appends are anchored under its own path from then on. An append never
  moves an anchor to a head it does not already trust, so a ``daedalus`` command run on a tampered log cannot
  launder it.
- **Signatures** (``store/signing.py``): approvals and rejections are signed with the reviewer's Ed25519 key over
  the record's body, its ``seq`` and ``prev`` included, so a decision can be neither forged nor replayed
  (``oversight/approval.py`` counts an approval only when a trusted key for its reviewer signed it).

Not covered: an attacker who empties the log and starts a new chain with a ``daedalus`` command gets a new,
anchored chain that holds none of the old records (so no approval either): the history is lost, not forged.

**Concurrency and crashes.** Several processes append to one log: the build, and from other terminals
``approve``, ``reject``, ``steer`` and ``predict --unapproved``. Each append takes an exclusive ``flock`` on the
file and reads the chain's tail from the file itself, never from memory, so records from different processes
interleave into one chain; copies of one run anchored under one genesis also lock the anchor file. Appends are a
single ``write`` of one line followed by ``fsync``, so a process killed at any moment leaves at most one torn
last line; the next append (or :func:`verify`), under the lock, cuts it off. A kill between the anchor and the
log line leaves the anchor one record ahead, holding that record: the next append or :func:`verify` writes it
into the log (it is genuine: the anchor is out of the attacker's reach). Nothing is cut without the lock: a
reader must not truncate a line that another process is writing.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from daedalus.store.atomic import write_text_atomic
from daedalus.store.home import data_home

GENESIS = "0" * 64
ANCHOR_DIR = "anchors"
UNSIGNED_FIELDS = ("hash", "signature")  # what a signature does not cover


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def signed_body(record: dict[str, Any]) -> bytes:
    """The bytes a decision's signature covers: the canonical record without ``hash`` and ``signature``."""
    return _canonical({k: v for k, v in record.items() if k not in UNSIGNED_FIELDS})


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    n_records: int
    first_bad: int | None  # 1-based line number of the first bad record
    reason: str
    last_hash: str = GENESIS  # of the last record, when the chain is intact


def os_user() -> str:
    """The operating-system account running this process, recorded beside a command's own claims (``--by``):
    who typed ``approve`` or ``steer``, as far as the machine knows."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


@dataclass(frozen=True)
class _Tail:
    seq: int  # the next record's sequence number
    hash: str  # the last record's hash (GENESIS when there is none)
    genesis: str | None  # the first record's hash, which names the chain's anchor


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record."""
        return self._append(event, None, fields)

    def append_signed(self, event: str, signer: Callable[[bytes], str], **fields: Any) -> dict[str, Any]:
        """Append one record signed by ``signer`` (given the record's :func:`signed_body`, it returns the
        ``signature``)."""
        return self._append(event, signer, fields)

    def _append(self, event: str, signer: Callable[[bytes], str] | None, fields: dict[str, Any]) -> dict[str, Any]:
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed, or the process dies
            tail = _restore(f, self.path, _tail(f))
            record: dict[str, Any] = {"seq": tail.seq, "time": round(time.time(), 3), "event": event,
                                      **fields, "prev": tail.hash}
            if signer is not None:
                record["signature"] = signer(signed_body(record))
            record["hash"] = record_hash(record)
            genesis = record["hash"] if tail.seq == 0 else tail.genesis
            if genesis is not None:
                with _anchor_lock(genesis):  # the anchor first: a kill before the log line is restored from it
                    heads = _read_anchor(genesis)
                    if tail.seq == 0 or _trusted_head(heads, _location(self.path), tail):
                        _write_anchor(genesis, self.path, record, heads)
            _write_line(f, record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """The complete records (a line still being written by another process is left out)."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        return [json.loads(line) for line in raw[: raw.rfind(b"\n") + 1].splitlines() if line.strip()]


def _write_line(f: BinaryIO, record: dict[str, Any]) -> None:
    f.seek(0, os.SEEK_END)  # verify's repair opens the file for update, not append
    f.write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
    f.flush()
    os.fsync(f.fileno())


def _tail(f: BinaryIO) -> _Tail:
    """The next sequence number, the last record's hash and the first's, read from the open, locked file; a
    torn last line (a writer killed mid-write) is cut off first."""
    size = f.seek(0, os.SEEK_END)
    end = _last_newline_before(f, size)
    if end != size:
        f.truncate(end)
    if end == 0:
        return _Tail(0, GENESIS, None)
    start = _last_newline_before(f, end - 1)
    f.seek(start)
    last = json.loads(f.read(end - start))
    f.seek(0)
    try:
        genesis: str | None = str(json.loads(f.readline())["hash"])
    except (ValueError, KeyError, TypeError):  # a mangled first record: no anchor is ever moved for this log
        genesis = None
    return _Tail(int(last["seq"]) + 1, str(last["hash"]), genesis)


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


# -- anchors -------------------------------------------------------------------------------------------------
def anchor_path(genesis: str) -> Path:
    return data_home() / ANCHOR_DIR / f"{genesis}.json"


def _location(log: Path) -> str:
    return str(Path(log).resolve())


@contextmanager
def _anchor_lock(genesis: str) -> Iterator[None]:
    path = anchor_path(genesis).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def _read_anchor(genesis: str) -> dict[str, dict[str, Any]] | None:
    """The anchored heads of a chain, by log location; None when the chain was never anchored here."""
    path = anchor_path(genesis)
    if not path.exists():
        return None
    heads = json.loads(path.read_text(encoding="utf-8")).get("heads", {})
    return {str(k): v for k, v in heads.items()}


def _write_anchor(genesis: str, log: Path, record: dict[str, Any], heads: dict[str, Any] | None) -> None:
    # Heads of logs that are gone are dropped: a run renamed into place (built under a partial name) or moved
    # leaves its old location's head behind, and a copy cut back to that head must not verify.
    heads = {loc: head for loc, head in (heads or {}).items() if Path(loc).exists()}
    heads[_location(log)] = {"seq": record["seq"], "hash": record["hash"], "record": record}
    write_text_atomic(anchor_path(genesis), json.dumps({"genesis": genesis, "heads": heads}, sort_keys=True,
                                                       default=str), durable=True)


def _trusted_head(heads: dict[str, Any] | None, location: str, tail: _Tail) -> bool:
    """Whether the log's head is anchored: this location's own head, or, for a copy never appended to at
    its new location, a head anchored for its chain elsewhere or a record of a log that verifies there."""
    if not heads:
        return False
    own = heads.get(location)
    if own is not None:
        return bool(own["hash"] == tail.hash)
    return _in_anchored_log(heads, tail.seq - 1, tail.hash)


def _in_anchored_log(heads: dict[str, Any], seq: int, wanted: str) -> bool:
    """Whether record ``seq`` with hash ``wanted`` is an anchored head of its chain (at any location).

    Only heads count, never a record below one: a copy cut back to an earlier record (to drop a rejection
    after an approval, say) must not verify, and cutting is all it would take. So a copy verifies while its
    head is the head its original (or another copy) has anchored; once the original moves on, an untouched
    older copy is a stale fork and says so. ``seq`` is kept for the message's sake by the callers."""
    del seq
    return any(h["hash"] == wanted for h in heads.values())


def _restore(f: BinaryIO, log: Path, tail: _Tail) -> _Tail:
    """Write into the log the record its anchor holds one step ahead of it (a kill between the two writes)."""
    if tail.genesis is None:
        return tail
    heads = _read_anchor(tail.genesis) or {}
    own = heads.get(_location(log))
    if own is None or own["seq"] != tail.seq:
        return tail
    record = own["record"]
    if record.get("prev") != tail.hash or record_hash(record) != own["hash"]:
        return tail
    _write_line(f, record)
    return _Tail(tail.seq + 1, own["hash"], tail.genesis)


def _repair(path: Path) -> None:
    """Under the lock: cut a torn last line and restore a record the anchor holds; nothing when the log cannot
    be written (a read-only copy is verified as it is)."""
    try:
        with open(path, "r+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            _restore(f, path, _tail(f))
    except (OSError, ValueError):  # not writable, or a line that is not JSON: the chain check names it
        return


# -- verification --------------------------------------------------------------------------------------------
def verify(path: Path) -> VerifyResult:
    """Check the whole chain, then its head against the anchor; name the first record (1-based line) that was
    edited, removed or moved, or say how the head departs from the anchored one."""
    path = Path(path)
    _repair(path)
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            return VerifyResult(False, n, n, "not valid JSON")
    broken = _broken(records)
    if broken is not None:
        return broken
    if not records:
        return VerifyResult(False, 0, None, "the log holds no record; a run's log starts with its first step, "
                                            "so it was emptied: treat the run as tampered with")
    return _check_anchor(path, records)


def _broken(records: list[dict[str, Any]]) -> VerifyResult | None:
    """The first record (1-based) that breaks the hash chain, or None when it is intact."""
    prev = GENESIS
    for n, record in enumerate(records, start=1):
        if record.get("seq") != n - 1:
            return VerifyResult(False, n, n, f"sequence number {record.get('seq')} where {n - 1} was expected "
                                             "(a record was removed or moved)")
        if record.get("prev") != prev:
            return VerifyResult(False, n, n, "its 'prev' does not match the hash of the record before it")
        if record_hash(record) != record.get("hash"):
            return VerifyResult(False, n, n, "its content does not match its hash (the record was edited)")
        prev = record["hash"]
    return None


def _check_anchor(path: Path, records: list[dict[str, Any]]) -> VerifyResult:
    n, head, genesis = len(records), records[-1], records[0]["hash"]
    heads = _read_anchor(genesis)
    location = _location(path)
    if heads is None:
        return VerifyResult(False, n, 1, _no_anchor_reason(genesis, location))
    own = heads.get(location)
    if own is None:
        if _in_anchored_log(heads, int(head["seq"]), head["hash"]):
            return VerifyResult(True, n, None, "chain intact; its head is anchored (a copy of a run anchored "
                                               "elsewhere)", head["hash"])
        return VerifyResult(False, n, n, f"this copy's head (record {head['seq']}) is none of the heads anchored "
                                         f"for its chain (at {', '.join(sorted(heads))}): records were appended, "
                                         "cut or rewritten since it was copied")
    seq = int(own["seq"])
    if head["hash"] == own["hash"]:
        return VerifyResult(True, n, None, "chain intact; its head matches the anchor", head["hash"])
    if seq < n and records[seq]["hash"] == own["hash"]:
        return VerifyResult(False, n, seq + 2, f"{n - seq - 1} record(s) after the anchored head (record {seq}) "
                                               "were appended without daedalus anchoring them")
    if seq >= n:
        return VerifyResult(False, n, n + 1, f"records were cut off the end: the anchor's head is record {seq}, "
                                             f"the log ends at record {n - 1}")
    return VerifyResult(False, n, seq + 1, f"record {seq} is not the anchored head (its hash differs): the "
                                           "records up to it were rewritten and rehashed")


def _no_anchor_reason(genesis: str, location: str) -> str:
    """Why a chain has no anchor here: rewritten from the start when another chain was anchored at the same
    place, else most likely made elsewhere."""
    directory = data_home() / ANCHOR_DIR
    for other in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            heads = json.loads(other.read_text(encoding="utf-8")).get("heads", {})
        except (OSError, ValueError):
            continue
        if location in heads:
            return (f"the chain was rewritten from the start: its first record is not the one anchored for this "
                    f"log ({other}); no record in it can be trusted")
    return (f"no anchor for this chain on this machine ({anchor_path(genesis)}): the run was made on another "
            "machine or under another DAEDALUS_HOME, or its log was rewritten from the start; if you moved it "
            "here, copy that anchor file from the data directory that wrote it, else treat the log as forged")
