"""Atomic writes: a file is written under a temporary name in its own directory, then renamed over its path.

A reader sees the old version or the new one, never half of either, and a process killed mid-write leaves the
old version (and at most a ``*.tmp`` file). The temporary name carries the writer's PID, so two processes that
write the same file (the build and ``daedalus approve``, say) never write into each other's temporary file; the
last rename wins. Every write inside a run directory, and into the user's data directory, goes through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def _temporary(path: Path, keep_suffix: bool = False) -> Path:
    """``NAME.PID.tmp``; with ``keep_suffix``, ``STEM.PID.tmp.SUFFIX`` (NumPy appends its suffix otherwise)."""
    if keep_suffix:
        return path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def write_bytes_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``durable`` also flushes it to the disk before the rename (what
    must survive a power cut, such as an audit log's anchor, not only a killed process)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, durable: bool = False) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), durable)


def write_json_atomic(path: Path, obj: Any, durable: bool = False) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=str), durable)


def save_array_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` atomically (no pickle: the array must be numeric, and is read with ``allow_pickle=False``)."""
    import numpy as np  # here: the audit log and the keys write through this module, and need no NumPy

    path = Path(path)
    tmp = _temporary(path, keep_suffix=True)
    try:
        np.save(tmp, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_arrays_atomic(path: Path, **arrays: Any) -> None:
    """``np.savez`` atomically (read back with ``np.load(path, allow_pickle=False)``)."""
    import numpy as np

    path = Path(path)
    tmp = _temporary(path, keep_suffix=True)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
