"""The run directory: everything a run knows, on disk, so that it can be inspected, resumed and audited.

    RUN/
      run.json          the build options and the run's state
      schema.json       the inferred data schema, enforced at predict time
      checks.json       what the data checks found
      train.parquet     the training rows, so that resume does not depend on the original file
      study.db          the Optuna storage (default; --storage takes any SQLAlchemy URL)
      audit.jsonl       the append-only, hash-chained event log
      trials/N/         per trial: out-of-fold predictions (oof.npy) and, for the best ones, fold models
      best/             the best single model so far, usable from the first finished trial
      model/            the final model (ensemble), once built
      leaderboard.json  single models and the ensemble, best first

JSON files are written to a temporary name and renamed, so a run killed mid-write keeps the old version.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.errors import RunError
from daedalus.store.audit import AuditLog

RUN_FILE = "run.json"


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def replace_directory(tmp: Path, directory: Path) -> None:
    """Swap the fully written ``tmp`` in as ``directory`` by renames, so a reader never sees a half-written
    directory; a kill between the two renames leaves the previous version as ``<name>.old``, which readers
    fall back to (``RunStore.model_dir``)."""
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


# The JSON type of each run record and the keys that every reader relies on (rows: each leaderboard row's keys).
RECORD_SHAPES: dict[str, tuple[type, tuple[str, ...]]] = {
    "run": (dict, ("options", "status")),
    "schema": (dict, ("target", "task", "columns", "classes")),
    "leaderboard": (list, ("rank", "trial", "family", "score", "metric", "fit_seconds", "status")),
}
# What the user can do about a damaged record: the leaderboard is rewritten by a resume, the rest is primary.
_REPAIR = {"leaderboard": "continue the run with 'daedalus resume {root}' to rewrite it"}


def damaged(path: Path, problem: str) -> RunError:
    """The one-line error for a run file that cannot be used as it is."""
    name = path.name.removesuffix(".json")
    fix = _REPAIR.get(name, "restore it from a backup or build the run again").format(root=path.parent)
    return RunError(f"'{path}' is damaged ({problem}); {fix}")


def _read_json(path: Path, name: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # a folder in its place, no permission, binary garbage
        raise damaged(path, f"unreadable: {type(exc).__name__}") from None
    if not text.strip():
        raise damaged(path, "empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(path, f"not valid JSON: {exc.msg} at line {exc.lineno}") from None


def checked_record(path: Path, name: str, obj: Any) -> Any:
    """``obj`` (the content of ``path``) if it has the shape ``RECORD_SHAPES`` gives for ``name``."""
    if name not in RECORD_SHAPES:
        return obj
    kind, keys = RECORD_SHAPES[name]
    if not isinstance(obj, kind):
        raise damaged(path, f"a JSON {type(obj).__name__} where a {kind.__name__} belongs")
    items = obj if isinstance(obj, list) else [obj]
    for item in items:
        missing = [k for k in keys if not isinstance(item, dict) or k not in item]
        if missing:
            raise damaged(path, f"missing {', '.join(repr(k) for k in missing)}")
    return obj


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.audit = AuditLog(self.root / "audit.jsonl")

    # -- lifecycle -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, run_info: dict[str, Any]) -> RunStore:
        root = Path(root)
        if (root / RUN_FILE).exists():
            raise RunError(f"run directory '{root}' already holds a run; use 'daedalus resume {root}' "
                           "or choose another --run directory")
        (root / "trials").mkdir(parents=True, exist_ok=True)
        store = cls(root)
        store.write("run", run_info)
        return store

    @classmethod
    def open(cls, root: Path) -> RunStore:
        root = Path(root)
        if not (root / RUN_FILE).exists():
            raise RunError(f"'{root}' is not a Daedalus run directory (no {RUN_FILE}); "
                           "pass the directory that 'daedalus build' created")
        return cls(root)

    # -- JSON records ----------------------------------------------------------------------------------------
    def write(self, name: str, obj: Any) -> None:
        write_json_atomic(self.root / f"{name}.json", obj)

    def read(self, name: str, default: Any = None) -> Any:
        """A JSON record of the run, checked against ``RECORD_SHAPES``: a file that is empty, cut short, of the
        wrong type or without the keys every reader needs is refused in one line (RunError), never a traceback
        from whichever command happened to read it first."""
        path = self.root / f"{name}.json"
        if not path.exists():
            if default is not None:
                return default
            raise RunError(f"run '{self.root}' has no {name}.json; it may not have finished its first steps; "
                           "resume it with 'daedalus resume'")
        return checked_record(path, name, _read_json(path, name))

    def update_run(self, **fields: Any) -> dict[str, Any]:
        info = self.read("run")
        info.update(fields)
        self.write("run", info)
        return dict(info)

    # -- paths -----------------------------------------------------------------------------------------------
    @property
    def default_storage_url(self) -> str:
        return f"sqlite:///{(self.root / 'study.db').resolve()}"

    @property
    def data_path(self) -> Path:
        return self.root / "train.parquet"

    def trial_dir(self, number: int) -> Path:
        return self.root / "trials" / f"{number:05d}"

    def model_dir(self, name: str) -> Path:
        """The directory of a saved model (``model`` or ``best``), tolerating a swap cut short by a kill."""
        path = self.root / name
        if not path.exists() and path.with_name(name + ".old").exists():
            return path.with_name(name + ".old")
        return path

    # -- per-trial arrays ------------------------------------------------------------------------------------
    def save_oof(self, number: int, oof: np.ndarray) -> None:
        d = self.trial_dir(number)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "oof.tmp.npy"
        np.save(tmp, oof, allow_pickle=False)
        os.replace(tmp, d / "oof.npy")

    def load_oof(self, number: int) -> np.ndarray | None:
        path = self.trial_dir(number) / "oof.npy"
        return np.load(path, allow_pickle=False) if path.exists() else None

    def drop_models(self, number: int) -> None:
        """Delete a trial's fold models (kept only for the best trials) but keep its predictions."""
        d = self.trial_dir(number)
        for f in d.glob("fold_*.skops"):
            f.unlink()
        (d / "bag.json").unlink(missing_ok=True)

    def has_models(self, number: int) -> bool:
        return (self.trial_dir(number) / "bag.json").exists()

    def remove(self) -> None:
        shutil.rmtree(self.root)
