"""The run store's contract, as one reusable suite run against every storage of a run's study (as Optuna's
``testing/pytest_storages.py`` runs one suite against every storage).

Subclass :class:`RunStoreContract` in a ``Test*`` class and give it a ``storage`` fixture: ``None`` (the run's
own SQLite file) or a SQLAlchemy URL (an external database, as ``--storage``). Every test uses the real store,
the real audit log and a real Optuna study in that storage; nothing is mocked.

What a run store promises:
- **create**: a run is created complete or absent (``RunStore.creating``); a failure leaves nothing behind, and
  a study left in an external database by a failed creation never collides with a retry;
- **atomic writes**: every file written inside a run replaces the old one by rename (a new inode, never a file
  truncated in place), leaves no temporary file, and has its hash recorded;
- **damaged records**: a JSON record that is empty, cut short, of the wrong type, without the keys readers rely
  on, or not a file is refused in one line naming it and the fix;
- **paths**: every path inside a run comes from the store (``store/layout.py``): trial directories sorted by
  number, fold models in fold order, the final and best-so-far models with their ``.old`` fallback;
- **hashes**: ``check`` accepts exactly the files whose recorded hash they match, in one-line refusals;
- **lock**: one writer per run, named to the next one, held across the creation's rename;
- **resume**: the study is found again from ``run.json`` after the run is renamed into place, reopened or copied.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from sklearn.dummy import DummyClassifier

from daedalus.errors import RunError
from daedalus.store import layout
from daedalus.store.run import (
    LOCAL_STORAGE,
    PARTIAL_MARK,
    RECORD_SHAPES,
    RunStore,
    replace_directory,
    save_fold_models,
)
from daedalus.store.study import open_study, study_location

DAMAGES = {
    "empty": lambda text, kind: "",
    "cut short": lambda text, kind: text[: len(text) // 2],
    "wrong type": lambda text, kind: "[]" if kind is dict else "{}",
    "missing keys": lambda text, kind: "{}" if kind is dict else "[{}]",
    "binary": lambda text, kind: "\udcff\x00garbage",
}
GOOD_RECORDS: dict[str, Any] = {
    "run": {"options": {}, "status": "running"},
    "schema": {"target": "y", "task": "binary", "columns": [], "classes": [0, 1]},
    "leaderboard": [{"rank": 1, "trial": 0, "family": "linear", "score": 0.5, "metric": "roc_auc",
                     "fit_seconds": 0.1, "status": "ok"}],
}


def _one_line(exc: pytest.ExceptionInfo[RunError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def _fitted() -> DummyClassifier:
    return DummyClassifier().fit(np.zeros((4, 1)), [0, 1, 0, 1])


def _leftover_temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name)


class RunStoreContract:
    """The suite; a subclass provides the ``storage`` fixture (None: the run's own SQLite file)."""

    @pytest.fixture
    def storage(self) -> str | None:
        raise NotImplementedError("a Test class gives the storage: None or a SQLAlchemy URL")

    def _create(self, root: Path, storage: str | None, trials: int = 0) -> RunStore:
        """A run created as ``build`` creates one: run.json naming its study, the study made inside."""
        info = {"options": {"seed": 0}, "status": "running", **study_location(storage)}
        with RunStore.creating(root, info) as store:
            study, opened = open_study(store, "maximize", create=True, info=info)
            for i in range(trials):
                study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=float(i)))
            opened.engine.dispose()  # no connection may outlive the rename
        return store

    # -- create: complete or absent ------------------------------------------------------------------------
    def test_a_created_run_is_complete_and_locked(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)
        try:
            assert store.root == tmp_path / "run" and (store.root / layout.RUN_FILE).is_file()
            assert (store.root / layout.TRIALS_DIR).is_dir()
            assert not [p for p in tmp_path.iterdir() if PARTIAL_MARK in p.name]
            assert store.writer() is not None  # the creator still holds the lock after the rename
            assert RunStore.open(tmp_path / "run").read("run")["status"] == "running"
        finally:
            store.unlock()

    def test_a_failed_creation_leaves_nothing_and_a_retry_succeeds(self, tmp_path: Path,
                                                                   storage: str | None) -> None:
        root = tmp_path / "run"
        info = {"options": {}, "status": "running", **study_location(storage)}
        with pytest.raises(ValueError, match="midway"), RunStore.creating(root, info) as store:
            _, opened = open_study(store, "maximize", create=True, info=info)
            opened.engine.dispose()
            raise ValueError("midway")
        assert not root.exists() and list(tmp_path.iterdir()) == []
        retry = self._create(root, storage)  # a study left in a shared database does not collide with it
        retry.unlock()
        assert (root / layout.RUN_FILE).is_file()

    def test_an_os_error_while_creating_is_one_line(self, tmp_path: Path, storage: str | None) -> None:
        with pytest.raises(RunError) as exc, RunStore.creating(tmp_path / "run", {"status": "x", "options": {}}):
            raise OSError(28, "No space left on device")
        assert "No space left" in _one_line(exc) and not (tmp_path / "run").exists()

    def test_a_run_is_never_created_over_another(self, tmp_path: Path, storage: str | None) -> None:
        self._create(tmp_path / "run", storage).unlock()
        with pytest.raises(RunError) as exc:
            self._create(tmp_path / "run", storage)
        assert "already holds a run" in _one_line(exc)

    # -- atomic writes -------------------------------------------------------------------------------------
    def test_every_write_replaces_by_rename_and_is_recorded(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)
        store.unlock()
        writes = {
            "record": (store.path("checks"), lambda: store.write("checks", {"n": len(store.audit.records())})),
            "oof": (store.oof_path(3), lambda: store.save_oof(3, np.arange(4.0))),
            "folds": (store.fold_model(3, 0), lambda: save_fold_models(store.trial_dir(3), [_fitted()], "x")),
            "bag": (store.trial_dir(3) / layout.BAG_FILE,
                    lambda: save_fold_models(store.trial_dir(3), [_fitted()], "x")),
        }
        for name, (path, write) in writes.items():
            write()
            first = path.stat().st_ino
            write()
            assert path.stat().st_ino != first, f"{name}: rewritten in place, not replaced by a rename"
        store.record([store.oof_path(3), *store.fold_models(3), store.trial_dir(3) / layout.BAG_FILE])
        store.check([store.path("checks"), store.oof_path(3), *store.fold_models(3)])
        assert _leftover_temporaries(store.root) == []

    def test_a_model_directory_is_swapped_whole(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)
        store.unlock()
        for version in (1, 2):
            tmp = store.root / "staging"
            tmp.mkdir()
            (tmp / layout.MODEL_FILE).write_text(json.dumps({"version": version}))
            replace_directory(tmp, store.root / layout.FINAL_MODEL)
        assert layout.read_model_file(store.model_dir(layout.FINAL_MODEL)) == {"version": 2}
        assert not (store.root / (layout.FINAL_MODEL + layout.OLD_SUFFIX)).exists()

    # -- damaged records -----------------------------------------------------------------------------------
    @pytest.mark.parametrize("record", sorted(RECORD_SHAPES))
    @pytest.mark.parametrize("damage", sorted(DAMAGES))
    def test_a_damaged_record_is_refused_in_one_line(self, tmp_path: Path, storage: str | None, record: str,
                                                     damage: str) -> None:
        store = RunStore.create(tmp_path / "run", GOOD_RECORDS["run"])
        store.write(record, GOOD_RECORDS[record])
        path = store.path(record)
        text = DAMAGES[damage](path.read_text(), RECORD_SHAPES[record][0])
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(RunError) as exc:
            store.read(record)
        message = _one_line(exc)
        assert str(path) in message and "damaged" in message and ("resume" in message or "rebuild" in message
                                                                   or "build the run again" in message)

    def test_a_folder_in_place_of_a_record_is_refused_in_one_line(self, tmp_path: Path,
                                                                  storage: str | None) -> None:
        store = RunStore.create(tmp_path / "run", GOOD_RECORDS["run"])
        store.path("schema").mkdir()
        with pytest.raises(RunError) as exc:
            store.read("schema")
        assert "unreadable" in _one_line(exc)

    # -- paths ---------------------------------------------------------------------------------------------
    def test_trial_paths_come_from_the_store_in_order(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)
        store.unlock()
        for number in (10, 2, 9):
            store.save_oof(number, np.zeros(3))
        assert store.trial_numbers() == [2, 9, 10]
        assert sorted(p.name for p in (store.root / layout.TRIALS_DIR).iterdir()) == \
            [store.trial_dir(n).name for n in (2, 9, 10)]  # names sort as numbers do
        assert store.oof_path(9).parent == store.trial_dir(9) and store.network_dir(9).parent == store.trial_dir(9)
        np.testing.assert_array_equal(store.load_oof(9), np.zeros(3))
        assert store.load_oof(4) is None
        hashes = save_fold_models(store.trial_dir(2), [_fitted() for _ in range(11)], "dummy")
        assert [p.name for p in store.fold_models(2)] == [layout.fold_file(i) for i in range(11)]
        assert set(hashes) == {layout.fold_file(i) for i in range(11)} | {layout.BAG_FILE}
        assert store.fold_model(2, 10) == store.fold_models(2)[-1] and store.has_models(2)
        store.drop_models(2)
        assert store.fold_models(2) == [] and not store.has_models(2) and store.oof_path(2).exists()

    def test_the_usable_model_is_the_final_one_else_the_best(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)
        store.unlock()
        assert store.usable_model() is None
        for name in (layout.BEST_MODEL, layout.FINAL_MODEL):
            directory = store.root / name
            directory.mkdir()
            (directory / layout.MODEL_FILE).write_text("{}")
            assert store.usable_model() == (name, directory)
        old = store.root / (layout.FINAL_MODEL + layout.OLD_SUFFIX)
        (store.root / layout.FINAL_MODEL).rename(old)  # a swap killed between its two renames
        assert store.usable_model() == (layout.FINAL_MODEL, old)

    # -- recorded hashes -----------------------------------------------------------------------------------
    def test_check_accepts_exactly_the_recorded_files(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)
        store.unlock()
        store.save_oof(0, np.ones(3))
        with pytest.raises(RunError) as exc:
            store.check([store.oof_path(0)])
        assert "never recorded" in _one_line(exc)
        store.record([store.oof_path(0)])
        assert store.check([store.oof_path(0)])
        np.save(store.oof_path(0), np.zeros(3))
        with pytest.raises(RunError) as exc:
            store.check([store.oof_path(0)])
        assert "does not match" in _one_line(exc)
        store.oof_path(0).unlink()
        with pytest.raises(RunError) as exc:
            store.check([store.oof_path(0)])
        assert "missing" in _one_line(exc)

    # -- one writer ----------------------------------------------------------------------------------------
    def test_one_writer_at_a_time(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage)  # holds the lock since before the rename
        second = RunStore.open(store.root)
        with pytest.raises(RunError) as exc:
            second.lock("second writer")
        assert f"process {os.getpid()}" in _one_line(exc)
        store.unlock()
        assert second.writer() is None
        second.lock("second writer")
        assert "second writer" in (store.writer() or "")
        second.unlock()

    # -- the study, found again ----------------------------------------------------------------------------
    def test_the_study_is_found_again_after_reopen_and_copy(self, tmp_path: Path, storage: str | None) -> None:
        store = self._create(tmp_path / "run", storage, trials=3)  # made under the partial name, then renamed
        store.unlock()
        info = RunStore.open(store.root).read("run")
        assert info["storage"] == (storage or LOCAL_STORAGE)  # the run's own file is named relative to the run
        study, opened = open_study(RunStore.open(store.root), "maximize")
        assert [t.value for t in study.trials] == [0.0, 1.0, 2.0]
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=3.0))  # a resumed session
        opened.engine.dispose()
        copy = tmp_path / "copy"
        shutil.copytree(store.root, copy)
        copied, opened = open_study(RunStore.open(copy), "maximize")
        assert len(copied.trials) == 4
        opened.engine.dispose()

    def test_two_runs_on_one_storage_have_studies_of_their_own(self, tmp_path: Path, storage: str | None) -> None:
        first = self._create(tmp_path / "a", storage, trials=2)
        second = self._create(tmp_path / "b", storage, trials=1)
        first.unlock()
        second.unlock()
        counts = []
        for store in (first, second):
            study, opened = open_study(store, "maximize")
            counts.append(len(study.trials))
            opened.engine.dispose()
        assert counts == [2, 1]

