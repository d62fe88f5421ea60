"""Model persistence: every family round-trips through skops; files with untrusted types are refused."""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from daedalus.data.schema import Task
from daedalus.errors import RunError
from daedalus.spaces.registry import FAMILIES
from daedalus.spaces.testing import toy_problem, with_unseen
from daedalus.store.artifacts import is_trusted_type, load_model, save_model

CAPS = {"n_estimators": 30, "iterations": 30, "max_iter": 30}


class NotAllowed:
    """A type from outside the allowlist (this test module)."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def _predict(est: Any, X: Any, task: Task) -> np.ndarray:
    return np.asarray(est.predict_proba(X) if task.is_classification else est.predict(X))


@pytest.mark.parametrize("task", [Task.BINARY, Task.MULTICLASS, Task.REGRESSION], ids=lambda t: t.value)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_round_trips(name: str, task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FAMILIES["neural"], "max_epochs", 10)
    family = FAMILIES[name]
    X, y, layout = toy_problem(task, 60, seed=1)
    config = {k: min(v, CAPS[k]) if k in CAPS else v for k, v in family.default_config(task, 60).items()}
    est = family.build(config, layout, task, 0, 1).fit(X, y)
    path = tmp_path / "sub" / "model.skops"
    save_model(est, path)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["model.skops"]  # no temp file left
    assert zipfile.is_zipfile(path)
    loaded = load_model(path)
    assert type(loaded) is type(est)
    Xu = with_unseen(X, layout)
    # n_threads=1: forests then add their trees' outputs in a fixed order, so the match is exact.
    np.testing.assert_array_equal(_predict(loaded, Xu, task), _predict(est, Xu, task))
    np.testing.assert_array_equal(np.asarray(loaded.predict(Xu)), np.asarray(est.predict(Xu)))
    if task.is_classification:
        np.testing.assert_array_equal(loaded.classes_, est.classes_)


@pytest.mark.parametrize("obj", [NotAllowed(), {"counts": collections.Counter("abc")}],
                         ids=["test-module-class", "collections.Counter"])
def test_untrusted_types_are_refused(obj: Any, tmp_path: Path) -> None:
    path = tmp_path / "evil.skops"
    sio.dump(obj, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted
    with pytest.raises(RunError, match=r"model file .*evil\.skops contains untrusted type .*; refusing to load it"):
        load_model(path)


def test_allowlisted_library_types_load(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "m.skops"
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    save_model({"model": model, "array": np.arange(3), "order": collections.OrderedDict(a=1)}, path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded["array"], np.arange(3))
    assert loaded["order"] == {"a": 1}


@pytest.mark.parametrize(("name", "trusted"), [
    ("sklearn.tree._tree.Tree", True), ("numpy.dtype", True), ("lightgbm.basic.Booster", True),
    ("daedalus.spaces.preprocessing.TextEmbedder", True), ("collections.OrderedDict", True),
    ("functools.partial", True), ("sklearnx.Evil", False), ("builtins.eval", False), ("os.system", False),
    ("collections.Counter", False), ("torch.nn.modules.linear.Linear", False), ("daedalusx.Evil", False),
])
def test_allowlist(name: str, trusted: bool) -> None:
    assert is_trusted_type(name) is trusted


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        load_model(tmp_path / "absent.skops")
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(RunError, match="not a readable skops file"):
        load_model(bad)
    pickled = tmp_path / "pickled.skops"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(RunError, match="not a readable skops file"):
        load_model(pickled)


def test_save_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.skops"
    save_model({"v": np.array([1])}, path)
    save_model({"v": np.array([2])}, path)
    assert load_model(path)["v"].tolist() == [2]

    def broken_dump(obj: Any, file: Any, **kwargs: Any) -> None:
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(sio, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        save_model({"v": np.array([3])}, path)
    monkeypatch.undo()
    # The old file is intact and no temporary file is left behind.
    assert load_model(path)["v"].tolist() == [2]
    assert [p.name for p in tmp_path.iterdir()] == ["m.skops"]
