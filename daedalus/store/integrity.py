"""Artifacts trusted by the hash recorded when they were written, never by their name or type.

Every file a run writes that a later step loads or judges (fold models, the final and best-so-far model
directories, out-of-fold predictions, the training rows, the schema, run.json and the other JSON records) has
its SHA-256 recorded in the hash-chained audit log at the moment it is written, by the process that wrote it
(a trial's worker hashes its own fold models before it returns). Before a file is loaded, promoted into
``model/`` or ``best/``, or used as evidence for an approval, :func:`check_files` recomputes its hash and compares
it with the latest one recorded for its path; a file that does not match, or that was never recorded, is
refused in one line naming it.

The records are only as good as the log: :func:`check_files` verifies the chain first (``store.audit.verify``),
so an attacker who rewrites a file must also rewrite the log, which the chain's anchor outside the run
directory exposes. Paths are recorded relative to the run directory, so a run directory can be renamed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from daedalus.errors import RunError
from daedalus.store.audit import AuditLog, verify
from daedalus.store.layout import OLD_SUFFIX

ARTIFACTS_FIELD = "artifacts"  # in any audit record: {path relative to the run directory: SHA-256}
ARTIFACTS_EVENT = "artifacts_written"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """{name: SHA-256} of files in ``directory`` (a worker hashes what it wrote, keyed by the names it used)."""
    return {name: sha256_file(Path(directory) / name) for name in names}


def relative_name(root: Path, path: Path) -> str:
    """The name a file is recorded under: its path inside the run directory, with a model directory's
    ``.old`` fallback read as the directory it stands in for (its files were recorded under that name)."""
    parts = Path(path).resolve().relative_to(Path(root).resolve()).parts
    if parts and parts[0].endswith(OLD_SUFFIX):
        parts = (parts[0][: -len(OLD_SUFFIX)], *parts[1:])
    return "/".join(parts)


def digests(root: Path, files: Iterable[Path]) -> dict[str, str]:
    """{recorded name: SHA-256} of ``files`` as they are on disk now."""
    return {relative_name(root, f): sha256_file(f) for f in files}


def record_files(log: AuditLog, root: Path, files: Iterable[Path], **fields: Any) -> dict[str, Any]:
    """Record the hashes of files just written, in one audit record."""
    return record_digests(log, digests(root, files), **fields)


def record_digests(log: AuditLog, hashes: Mapping[str, str], **fields: Any) -> dict[str, Any]:
    """Record hashes computed by the writer itself (a worker that wrote the files), in one audit record."""
    return log.append(ARTIFACTS_EVENT, **fields, **{ARTIFACTS_FIELD: dict(hashes)})


def recorded_digests(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The latest recorded hash of every path, from the audit records in order."""
    latest: dict[str, str] = {}
    for record in records:
        artifacts = record.get(ARTIFACTS_FIELD)
        if isinstance(artifacts, dict):
            latest.update({str(k): str(v) for k, v in artifacts.items()})
    return latest


def check_files(log: AuditLog, root: Path, files: Iterable[Path], purpose: str = "load") -> dict[Path, str]:
    """Refuse (``RunError``, one line) unless the audit log verifies and every file matches the hash recorded
    for it when it was written. ``purpose`` says what was about to happen (load, promote, approve...). Returns
    each file's recorded hash, for a loader that checks the very bytes it loads (``load_model(sha256=...)``)."""
    files = list(files)
    result = verify(log.path)
    if not result.ok:
        raise RunError(f"the audit log of '{root}' does not verify ({result.reason}, record {result.first_bad}), "
                       f"so no file of the run can be trusted; refusing to {purpose}; see 'daedalus audit {root} "
                       "--verify'")
    known = recorded_digests(log.records())
    checked: dict[Path, str] = {}
    for path in files:
        name = relative_name(root, path)
        if not path.is_file():
            raise RunError(f"'{path}' is missing; the run is incomplete; refusing to {purpose}; resume or rebuild "
                           "the run")
        want = known.get(name)
        if want is None:
            raise RunError(f"'{path}' was never recorded in the audit log (it was not written by this run); "
                           f"refusing to {purpose} it; remove the file, or rebuild the run")
        if sha256_file(path) != want:
            raise RunError(f"'{path}' does not match the SHA-256 recorded in the audit log when it was written "
                           f"(changed since); refusing to {purpose} it; restore the file, or rebuild the run")
        checked[path] = want
    return checked


def directory_files(directory: Path) -> list[Path]:
    """Every file in a directory tree, sorted (all of a model directory is checked, not only what its
    ``model.json`` names: that file could itself have been edited)."""
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())
