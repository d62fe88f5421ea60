"""The run directory: everything a run knows, on disk, so that it can be inspected, resumed and audited.

Which file is where is spelled once, in ``store/layout.py``; ``RunStore`` names every path through it, and
the rest of Daedalus asks ``RunStore`` (or ``layout``) for paths instead of spelling them.

A run directory is complete or absent: ``RunStore.creating`` builds it under a hidden sibling name
(``.RUN.partial-PID``) and renames it into place once everything ``resume`` needs is written. Every file written
inside a run is written atomically (``store/atomic.py``: a temporary name, then a rename), so a run killed
mid-write keeps the old version.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
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
from daedalus.store import layout
from daedalus.store.artifacts import save_model
from daedalus.store.atomic import save_array_atomic, write_bytes_atomic, write_json_atomic
from daedalus.store.audit import AuditLog
from daedalus.store.faults import crash_point
from daedalus.store.integrity import check_files, digests, file_hashes, record_files
from daedalus.store.layout import LOCK_FILE, RUN_FILE
from daedalus.store.records import RECORD_SHAPES, checked_record, damaged, read_json

__all__ = ["LOCAL_STORAGE", "PARTIAL_MARK", "RECORD_SHAPES", "RUN_FILE", "STUDY_NAME", "RunStore", "damaged",
           "remove_stale_partials", "replace_directory", "save_fold_models", "write_json_atomic"]

STUDY_NAME = "daedalus"  # the study of a run in its own SQLite file (one in an external --storage: its own name)
PARTIAL_MARK = ".partial-"  # a run being created: '.NAME.partial-PID', next to where NAME will be
# The default storage, inside the run: stored with this placeholder, not an absolute path, so that the study is
# found wherever the directory is (renamed into place at creation, or copied elsewhere by a user).
RUN_PLACEHOLDER = "{RUN}"
LOCAL_STORAGE = f"sqlite:///{RUN_PLACEHOLDER}/{layout.STUDY_FILE}"


def replace_directory(tmp: Path, directory: Path) -> None:
    """Swap the fully written ``tmp`` in as ``directory`` by renames, so a reader never sees a half-written
    directory; a kill between the two renames leaves the previous version as ``<name>.old``, which readers
    fall back to (``RunStore.model_dir``)."""
    old = directory.with_name(directory.name + layout.OLD_SUFFIX)
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


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.audit = AuditLog(self.root / layout.AUDIT_FILE)
        self._lock: IO[str] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, run_info: dict[str, Any]) -> RunStore:
        """A run directory written in place (image runs, tests); a table build uses :meth:`creating`."""
        root = Path(root)
        cls.check_new(root)
        (root / layout.TRIALS_DIR).mkdir(parents=True, exist_ok=True)
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
            (partial / layout.TRIALS_DIR).mkdir()
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
        store.audit = AuditLog(root / layout.AUDIT_FILE)

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
    def path(self, name: str) -> Path:
        """The file of the run's JSON record ``name`` ('schema' -> RUN/schema.json)."""
        return self.root / layout.json_file(name)

    def write(self, name: str, obj: Any) -> None:
        """Write the JSON record ``name`` atomically and record its hash in the audit log."""
        path = self.path(name)
        write_json_atomic(path, obj)
        self.record([path])

    def read(self, name: str, default: Any = None) -> Any:
        """A JSON record of the run, checked against ``RECORD_SHAPES``: a file that is empty, cut short, of the
        wrong type or without the keys every reader needs is refused in one line (RunError), never a traceback
        from whichever command happened to read it first."""
        path = self.path(name)
        if not path.exists():
            if default is not None:
                return default
            raise RunError(f"run '{self.root}' has no {name}.json; it may not have finished its first steps; "
                           "resume it with 'daedalus resume'")
        return checked_record(path, name, read_json(path))

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
        return self.root / layout.DATA_FILE

    def trial_dir(self, number: int) -> Path:
        return layout.trial_dir(self.root, number)

    def trial_numbers(self) -> list[int]:
        """The trials that have a directory, in order."""
        return layout.trial_numbers(self.root)

    def oof_path(self, number: int) -> Path:
        """Trial ``number``'s out-of-fold predictions."""
        return self.trial_dir(number) / layout.OOF_FILE

    def fold_model(self, number: int, fold: int) -> Path:
        """Where trial ``number``'s model of fold ``fold`` is (or was) saved."""
        return self.trial_dir(number) / layout.fold_file(fold)

    def fold_models(self, number: int) -> list[Path]:
        """Trial ``number``'s saved fold models, in fold order (none once dropped)."""
        return layout.fold_files(self.trial_dir(number))

    def network_dir(self, number: int) -> Path:
        """Trial ``number``'s trained network (an image trial's, a ``NetworkModel`` directory)."""
        return self.trial_dir(number) / layout.NETWORK_DIR

    def model_dir(self, name: str) -> Path:
        """The directory of a saved model (``model`` or ``best``), tolerating a swap cut short by a kill."""
        return layout.model_dir(self.root, name)

    def usable_model(self) -> tuple[str, Path] | None:
        """(name, directory) of the model a prediction uses: the final model, else the best so far; None
        while there is neither."""
        return layout.usable_model(self.root)

    @property
    def refit_dir(self) -> Path:
        """Where the final stage refits members on all rows, before they are promoted into ``model/``."""
        return self.root / layout.REFIT_DIR

    @property
    def image_holdout_path(self) -> Path:
        """An image run's final network's predictions on its held-out images."""
        return self.root / layout.IMAGE_HOLDOUT_FILE

    # -- integrity (see store/integrity.py) -------------------------------------------------------------------
    def record(self, files: list[Path], **fields: Any) -> None:
        """Record the SHA-256 of files this process has just written in the audit log."""
        record_files(self.audit, self.root, files, **fields)

    def check(self, files: list[Path], purpose: str = "load") -> dict[Path, str]:
        """Refuse files that do not match the hash recorded when they were written (or the log is broken);
        returns each file's recorded hash."""
        return check_files(self.audit, self.root, files, purpose)

    # -- per-trial files -------------------------------------------------------------------------------------
    def save_oof(self, number: int, oof: np.ndarray) -> dict[str, str]:
        """Save a trial's out-of-fold predictions; returns {recorded name: SHA-256} for the caller to record."""
        path = self.oof_path(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_array_atomic(path, oof)
        return digests(self.root, [path])

    def load_oof(self, number: int) -> np.ndarray | None:
        path = self.oof_path(number)
        return np.load(path, allow_pickle=False) if path.exists() else None

    def drop_models(self, number: int) -> None:
        """Delete a trial's fold models (kept only for the best trials) but keep its predictions; ``bag.json``
        goes first, so a kill midway never leaves a bag that looks whole."""
        d = self.trial_dir(number)
        (d / layout.BAG_FILE).unlink(missing_ok=True)
        for f in layout.fold_files(d):
            f.unlink()

    def has_models(self, number: int) -> bool:
        return (self.trial_dir(number) / layout.BAG_FILE).exists()

    def remove(self) -> None:
        shutil.rmtree(self.root)


def save_fold_models(directory: Path, models: list[Any], family: str) -> dict[str, str]:
    """Save a trial's fold models into its directory (a worker's call: it has the directory, not the store),
    each atomically, then ``bag.json``, atomically and last: its presence says the bag is whole. Returns
    {file name: SHA-256}, hashed by the process that wrote the files, before anyone else could change them."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = [layout.fold_file(i) for i in range(len(models))]
    for name, model in zip(names, models, strict=True):
        save_model(model, directory / name)
    write_json_atomic(directory / layout.BAG_FILE, {"n_models": len(models), "family": family})
    return file_hashes(directory, [*names, layout.BAG_FILE])


def save_shipped_files(directory: Path, files: dict[str, bytes], hashes: dict[str, str]) -> dict[str, str]:
    """Write a trial's files that came back from another machine (``evaluation.trial.run_trial_shipped``) into its
    directory, as ``save_fold_models`` would have there: each checked against the SHA-256 its worker recorded
    (bytes damaged on the way are refused: a RunError), written atomically, ``bag.json`` last. Returns the
    hashes."""
    if set(files) != set(hashes):
        raise RunError(f"a trial's files came back incomplete: {sorted(set(hashes) ^ set(files))}")
    for name, data in files.items():
        if Path(name).name != name or hashlib.sha256(data).hexdigest() != hashes[name]:
            raise RunError(f"a trial's file '{name}' came back damaged (its SHA-256 differs from its worker's)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == layout.BAG_FILE):  # bag.json last: it says the bag is whole
        write_bytes_atomic(directory / name, files[name])
    return dict(hashes)


def _rename_into_place(partial: Path, root: Path) -> None:
    try:
        os.rename(partial, root)  # replaces an empty directory; fails on anything else
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise RunError(f"run directory '{root}' was created by another process meanwhile; use "
                           f"'daedalus resume {root}' or choose another --run directory") from exc
        raise
