"""Model persistence: every family round-trips through skops; every name a Daedalus model file holds is on the
exact list (``DAEDALUS_TYPES``) and nothing else is; files with other types are refused."""

from __future__ import annotations

import collections
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio

from daedalus.data.schema import Task
from daedalus.errors import RunError
from daedalus.spaces.mitigation import MITIGATIONS
from daedalus.spaces.registry import FAMILIES
from daedalus.spaces.testing import toy_problem, with_unseen
from daedalus.store.artifacts import (
    DAEDALUS_TYPES,
    REFUSED_LOADERS,
    _loaders,
    is_trusted_type,
    load_model,
    save_model,
)
from tests.fitted_models import family_models, mitigation_models, saved_types

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
    # A library update that adds a type to a saved model fails here, not as a model that no longer loads.
    assert set(sio.get_untrusted_types(file=path)) <= DAEDALUS_TYPES
    loaded = load_model(path)
    assert type(loaded) is type(est)
    Xu = with_unseen(X, layout)
    # n_threads=1: forests then add their trees' outputs in a fixed order, so the match is exact.
    np.testing.assert_array_equal(_predict(loaded, Xu, task), _predict(est, Xu, task))
    np.testing.assert_array_equal(np.asarray(loaded.predict(Xu)), np.asarray(est.predict(Xu)))
    if task.is_classification:
        np.testing.assert_array_equal(loaded.classes_, est.classes_)


@pytest.mark.parametrize("task", [Task.BINARY, Task.REGRESSION], ids=lambda t: t.value)
def test_neural_models_hold_no_torch_state(task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The network's weights are saved as NumPy arrays (``state_``), not torch objects: the file names no torch
    module, and every array in it loads without pickle."""
    import io

    monkeypatch.setattr(FAMILIES["neural"], "max_epochs", 2)
    X, y, layout = toy_problem(task, 60, seed=1)
    est = FAMILIES["neural"].build(FAMILIES["neural"].default_config(task, 60), layout, task, 0, 1).fit(X, y)
    save_model(est, tmp_path / "m.skops")
    with zipfile.ZipFile(tmp_path / "m.skops") as zf:
        names = zf.namelist()
        modules = set(_modules(json.loads(zf.read("schema.json"))))
        arrays = [np.load(io.BytesIO(zf.read(n)), allow_pickle=False) for n in names if n.endswith(".npy")]
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}, modules
    assert set(names) == {"schema.json"} | {n for n in names if n.endswith(".npy")}
    network = est.named_steps["model"]
    assert len(arrays) >= len(network.state_)  # the weights travel as arrays, beside the preprocessing's
    assert all(isinstance(v, np.ndarray) for v in network.state_.values())


def _modules(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["__module__"]] if isinstance(node.get("__module__"), str) else []
        return own + [m for v in node.values() for m in _modules(v)]
    if isinstance(node, list):
        return [m for v in node for m in _modules(v)]
    return []


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
    ("functools.partial", True), ("sklearn.utils.validation.check_array", True),
    # Names under the libraries' prefixes that are not model types: the old prefix allowlist trusted them all.
    ("numpy.testing._private.utils.runstring", False), ("numpy.load", False), ("scipy.io.loadmat", False),
    ("sklearn.utils.validation.column_or_1d", False), ("sklearn.datasets.fetch_openml", False),
    ("daedalus.interfaces.cli.main", False), ("daedalus.store.artifacts.save_model", False),
    ("lightgbm.basic._LIB", False), ("xgboost.core.Booster.load_model", False),
    ("sklearnx.Evil", False), ("builtins.eval", False), ("os.system", False), ("collections.Counter", False),
    ("collections.defaultdict", False), ("torch.nn.modules.linear.Linear", False), ("daedalusx.Evil", False),
    ("Sklearn.tree._tree.Tree", False), ("sklearn.tree._tree.Tree ", False), ("", False),
])
def test_allowlist_is_exact_names(name: str, trusted: bool) -> None:
    assert is_trusted_type(name) is trusted


def test_allowlist_is_kept_sorted_one_per_line() -> None:
    """The list in the source is reviewed by reading it: sorted, one name per line, no duplicates."""
    source = (Path(__file__).parents[1] / "daedalus" / "store" / "artifacts.py").read_text(encoding="utf-8")
    body = source.split("DAEDALUS_TYPES: frozenset[str] = frozenset({", 1)[1].split("})", 1)[0]
    names = [line.strip().split('"')[1] for line in body.splitlines() if line.strip().startswith('"')]
    assert names == sorted(names) and len(names) == len(set(names)) == len(DAEDALUS_TYPES)
    assert set(names) == DAEDALUS_TYPES


@pytest.mark.slow
def test_every_saved_type_is_listed_and_every_listed_type_is_needed(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The derivation of DAEDALUS_TYPES, repeated: every family on every task and layout, every categorical
    hyperparameter choice, every mitigation around every base. Each saved file holds only listed names, and each
    listed name turns up in some file (a name no model needs any more is taken off the list). No file uses a
    loader that load_model refuses."""
    monkeypatch.setattr(FAMILIES["neural"], "max_epochs", 3)
    seen: set[str] = set()
    unlisted: dict[str, list[str]] = {}
    models = [m for name in FAMILIES for m in family_models(name)]
    models += [m for name in MITIGATIONS for m in mitigation_models(name)]
    for label, model in models:
        types = saved_types(model, tmp_path / "m.skops")
        with zipfile.ZipFile(tmp_path / "m.skops") as zf:
            assert not _loaders(json.loads(zf.read("schema.json"))) & REFUSED_LOADERS, label
        seen.update(types)
        for t in set(types) - DAEDALUS_TYPES:
            unlisted.setdefault(t, []).append(label)
    assert not unlisted, f"saved models hold names that are not on DAEDALUS_TYPES: {unlisted}"
    assert DAEDALUS_TYPES - seen == set(), "listed but no model holds them"


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
