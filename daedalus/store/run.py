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
      .lock             held (flock) by the one process writing the run: build or resume

A run directory is complete or absent: ``RunStore.creating`` builds it under a hidden sibling name
(``.RUN.partial-PID``) and renames it into place once everything ``resume`` needs is written. JSON files are
written to a temporary name and renamed, so a run killed mid-write keeps the old version.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import psutil

from daedalus.errors import RunError
from daedalus.store.audit import AuditLog
from daedalus.store.faults import crash_point
from daedalus.store.integrity import check_files, digests, record_files

RUN_FILE = "run.json"
STUDY_NAME = "daedalus"  # the study of a run in its own SQLite file (one in an external --storage: its own name)
LOCK_FILE = ".lock"
PARTIAL_MARK = ".partial-"  # a run being created: '.NAME.partial-PID', next to where NAME will be
# The default storage, inside the run: stored with this placeholder, not an absolute path, so that the study is
# found wherever the directory is (renamed into place at creation, or copied elsewhere by a user).
RUN_PLACEHOLDER = "{RUN}"
LOCAL_STORAGE = f"sqlite:///{RUN_PLACEHOLDER}/study.db"


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
        crash_point("model_dir_swapped")
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def command_line() -> str:
    """How this process was started, for a lock refusal ('daedalus build data.csv ...')."""
    words = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return " ".join(words)[:200]


def _lock_holder(root: Path) -> str | None:
    """Who holds ``root``'s writer lock ('process PID (command)'), or None when nobody does."""
    path = root / LOCK_FILE
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return f.read().strip() or "another process"
    return None


def _partial_owner_alive(partial: Path) -> bool:
    """Whether the process creating ``partial`` still runs: it holds the partial's lock for its whole life."""
    if (partial / LOCK_FILE).exists():
        return _lock_holder(partial) is not None
    # No lock file yet: killed in the instant between mkdir and lock, or still starting.
    pid = partial.name.rpartition(PARTIAL_MARK)[2]
    return pid.isdigit() and int(pid) != os.getpid() and psutil.pid_exists(int(pid))


def remove_stale_partials(root: Path) -> list[Path]:
    """Delete what killed builds left while creating ``root`` (their processes are gone); the live ones stay."""
    removed = []
    for partial in root.parent.glob(f".{root.name}{PARTIAL_MARK}*"):
        if partial.is_dir() and not _partial_owner_alive(partial):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


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
        self._lock: IO[str] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, run_info: dict[str, Any]) -> RunStore:
        """A run directory written in place (image runs, tests); a table build uses :meth:`creating`."""
        root = Path(root)
        cls.check_new(root)
        (root / "trials").mkdir(parents=True, exist_ok=True)
        store = cls(root)
        store.write("run", run_info)
        return store

    @staticmethod
    def check_new(root: Path) -> None:
        """Refuse a --run that holds a run already, or other things that a new run must not be mixed into."""
        if (root / RUN_FILE).exists():
            holder = _lock_holder(root)
            busy = f"; it is being written by {holder} now" if holder else f"; use 'daedalus resume {root}'"
            raise RunError(f"run directory '{root}' already holds a run{busy}, or choose another --run directory")
        if root.exists() and not root.is_dir():
            raise RunError(f"--run '{root}' is a file, not a directory; choose another --run directory")
        if root.is_dir() and any(p.name != LOCK_FILE for p in root.iterdir()):
            raise RunError(f"--run '{root}' is a folder that holds other files and no run; choose a new or "
                           "empty --run directory")

    @classmethod
    @contextmanager
    def creating(cls, root: Path, run_info: dict[str, Any]) -> Iterator[RunStore]:
        """Create a run that is complete or absent: the block fills a hidden sibling directory, which is then
        renamed to ``root`` (same filesystem, one ``rename``). The yielded store holds the run's lock from the
        start and keeps it; after the block its ``root`` is the final directory. If the block fails, the
        partial directory is removed (a kill leaves it behind: the next creation of ``root`` removes it); an
        ``OSError`` (a full disk, a folder that cannot be written) becomes a one-line ``RunError``."""
        root = Path(root)
        cls.check_new(root)
        partial = root.with_name(f".{root.name}{PARTIAL_MARK}{os.getpid()}")
        store = cls(partial)
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(root)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            store.lock()
            (partial / "trials").mkdir()
            store.write("run", run_info)
            crash_point("run_partial")
            yield store
            crash_point("run_filled")
            _rename_into_place(partial, root)
        except BaseException as exc:
            store.unlock()
            shutil.rmtree(partial, ignore_errors=True)
            if isinstance(exc, OSError):
                raise RunError(f"cannot create the run directory '{root}': {exc.strerror or exc}; fix that (free disk "
                               "space, or choose a writable --run directory) and build again") from exc
            raise
        store.root = root
        store.audit = AuditLog(root / "audit.jsonl")

    @classmethod
    def open(cls, root: Path) -> RunStore:
        root = Path(root)
        if PARTIAL_MARK in root.name:
            raise RunError(f"'{root}' is an unfinished run left by a build killed while creating it; nothing "
                           "in it can be resumed: run 'daedalus build' again (it removes such leftovers)")
        if not (root / RUN_FILE).exists():
            raise RunError(f"'{root}' is not a Daedalus run directory (no {RUN_FILE}); "
                           "pass the directory that 'daedalus build' created")
        return cls(root)

    # -- the writer's lock -----------------------------------------------------------------------------------
    def lock(self, command: str | None = None) -> None:
        """Become the run's only writer (build or resume), until :meth:`unlock` or this process ends (the kernel
        drops an ``flock`` with its holder, so a killed writer never leaves a stale lock). A second writer is
        refused in one line naming the process that holds the lock."""
        f = open(self.root / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives as long as the file)
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            holder = _lock_holder(self.root) or "another process"
            raise RunError(f"run '{self.root}' is being written by {holder}; wait for it to end or stop it, "
                           "then try again (commands that only read the run work meanwhile)") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} ({command or command_line()})\n")
        f.flush()
        self._lock = f

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- JSON records ----------------------------------------------------------------------------------------
    def write(self, name: str, obj: Any) -> None:
        path = self.root / f"{name}.json"
        write_json_atomic(path, obj)
        self.record([path])

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
    def storage_url(self, info: dict[str, Any] | None = None) -> str:
        """The study's storage URL, the run's own SQLite file resolved to where the run is now."""
        info = info if info is not None else self.read("run")
        if "storage" not in info:
            raise RunError(f"run '{self.root}' was stopped while it was being created (its run.json names no "
                           "study); it holds no trial: remove it and build again")
        return str(info["storage"]).replace(RUN_PLACEHOLDER, str(self.root.resolve()))

    def study_name(self, info: dict[str, Any] | None = None) -> str:
        """The name of the run's study in its storage (runs in a shared --storage each have their own)."""
        info = info if info is not None else self.read("run")
        return str(info.get("study_name", STUDY_NAME))

    def writer(self) -> str | None:
        """Who is writing the run now ('process PID (command)', from its lock), or None: it is not running."""
        return _lock_holder(self.root)

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

    # -- integrity (see store/integrity.py) -------------------------------------------------------------------
    def record(self, files: list[Path], **fields: Any) -> None:
        """Record the SHA-256 of files this process has just written in the audit log."""
        record_files(self.audit, self.root, files, **fields)

    def check(self, files: list[Path], purpose: str = "load") -> dict[Path, str]:
        """Refuse files that do not match the hash recorded when they were written (or the log is broken);
        returns each file's recorded hash."""
        return check_files(self.audit, self.root, files, purpose)

    # -- per-trial arrays ------------------------------------------------------------------------------------
    def save_oof(self, number: int, oof: np.ndarray) -> dict[str, str]:
        """Save a trial's out-of-fold predictions; returns {recorded name: SHA-256} for the caller to record."""
        d = self.trial_dir(number)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "oof.tmp.npy"
        np.save(tmp, oof, allow_pickle=False)
        os.replace(tmp, d / "oof.npy")
        return digests(self.root, [d / "oof.npy"])

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


def _rename_into_place(partial: Path, root: Path) -> None:
    try:
        os.rename(partial, root)  # replaces an empty directory; fails on anything else
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise RunError(f"run directory '{root}' was created by another process meanwhile; use "
                           f"'daedalus resume {root}' or choose another --run directory") from exc
        raise
