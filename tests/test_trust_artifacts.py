"""Hostile model files: loading one must never run code.

Each payload is written the way an attacker would, as a zip with a hand-made ``schema.json``, and each one,
if it were loaded, would write a marker file. Every test checks both that ``load_model`` (and the commands that
load models) refuse the file in one line naming the file and what is untrusted, and that the marker is absent.
``test_payloads_are_live`` is the control: loaded by skops with every name they hold trusted (what the old
prefix allowlist did for the ``numpy.`` one), the payloads do write their marker, so the refusals are real.
"""

from __future__ import annotations

import io
import json
import pickle
import shlex
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from daedalus.errors import RunError
from daedalus.store.artifacts import load_model, save_model

Node = dict[str, Any]

# -- writing skops files by hand -----------------------------------------------------------------------------


def _json(value: Any) -> Node:
    return {"__class__": type(value).__name__, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def _list(*items: Node) -> Node:
    return {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": list(items)}


def _tuple(*items: Node) -> Node:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def _empty_dict() -> Node:
    return {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {},
            "key_types": _list()}


def _call(module: str, name: str, *args: Node) -> Node:
    """skops' ConstructorFromReduceNode: loading it calls ``module.name(*args)``."""
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": _tuple(*args)}


def _function(module: str, name: str) -> Node:
    return {"__class__": name, "__module__": module, "__loader__": "FunctionNode"}


def _partial(func: Node, *args: Node) -> Node:
    return {"__class__": "partial", "__module__": "functools", "__loader__": "PartialNode",
            "content": {"func": func, "args": _tuple(*args), "kwds": _empty_dict(), "namespace": _json(None)}}


def _apply(func: Node, arg: Node) -> Node:
    """``list(map(func, [arg]))``: how a file calls a callable it built (a partial, a methodcaller...)."""
    return _call("builtins", "list", _call("builtins", "map", func, _list(arg)))


def skops_file(root: Node, extra: dict[str, bytes] | None = None) -> bytes:
    """A skops zip holding ``root`` as its schema (plus ``extra`` members, e.g. a real model's arrays)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("schema.json", json.dumps({**root, "protocol": 2, "_skops_version": "0.16.0"}))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def poisoned(model_file: bytes, payload: Node) -> bytes:
    """A real model file with ``payload`` slipped in as one more attribute of its top object: loaded with
    everything trusted, it runs the payload and then predicts as before."""
    with zipfile.ZipFile(io.BytesIO(model_file)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members.pop("schema.json"))
    attrs = schema["content"]
    attrs["content"]["_checked"] = payload
    attrs["key_types"]["content"].append({"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    return skops_file({k: v for k, v in schema.items() if k not in ("protocol", "_skops_version")}, members)


# -- the payloads --------------------------------------------------------------------------------------------


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _shell(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _os() -> Node:
    return _call("importlib", "import_module", _json("os"))


# name -> (builder of the payload node from the marker path, the untrusted name the refusal must give)
PAYLOADS: dict[str, tuple[Callable[[Path], Node], str]] = {
    # (a) the hole in the old allowlist: a NumPy name, trusted by its "numpy." prefix, that runs exec
    "numpy-runstring": (lambda m: _call("numpy.testing._private.utils", "runstring", _json(_code(m)),
                                        _empty_dict()), "numpy.testing._private.utils.runstring"),
    # (b) builtins
    "builtins-exec": (lambda m: _call("builtins", "exec", _json(_code(m))), "builtins.exec"),
    "builtins-eval": (lambda m: _call("builtins", "eval", _json(_code(m))), "builtins.eval"),
    # (c), (d) a shell and a process
    "os-system": (lambda m: _call("os", "system", _json(_shell(m))), "os.system"),
    "subprocess-popen": (lambda m: _call("subprocess", "Popen", _list(_json("touch"), _json(str(m)))),
                         "subprocess.Popen"),
    # (e) functools.partial (a name Daedalus does trust) around exec, then called through map
    "partial-exec": (lambda m: _apply(_partial(_function("builtins", "exec"), _json(_code(m))), _empty_dict()),
                     "builtins.exec"),
    # (e') the same around the NumPy exec, each name of which the old prefixes trusted but list and map
    "partial-runstring": (lambda m: _apply(_partial(_function("numpy.testing._private.utils", "runstring"),
                                                    _json(_code(m))), _empty_dict()),
                          "numpy.testing._private.utils.runstring"),
    # (f) operator.methodcaller("system", cmd) applied to the os module, and getattr(os, "system")
    "methodcaller-os-system": (lambda m: _apply(_call("operator", "methodcaller", _json("system"),
                                                      _json(_shell(m))), _os()), "operator.methodcaller"),
    "getattr-os-system": (lambda m: _apply(_call("builtins", "getattr", _os(), _json("system")),
                                           _json(_shell(m))), "builtins.getattr"),
}


def _wait_for(marker: Path, seconds: float) -> bool:
    """Whether ``marker`` appears within ``seconds`` (a Popen payload writes it from a child process)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(0.05)
    return marker.exists()


def assert_refused(path: Path, marker: Path, *fragments: str) -> None:
    with pytest.raises(RunError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "build the model" in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert not _wait_for(marker, 0.5), "the payload ran"


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, pd.DataFrame]:
    """A real Daedalus pipeline's skops file, and rows it predicts."""
    from daedalus.data.schema import Task
    from daedalus.spaces.registry import FAMILIES
    from daedalus.spaces.testing import toy_problem

    X, y, layout = toy_problem(Task.BINARY, 60, seed=1)
    path = tmp_path_factory.mktemp("real") / "m.skops"
    save_model(FAMILIES["linear"].build({}, layout, Task.BINARY, 0, 1).fit(X, y), path)
    return path.read_bytes(), X


# -- the tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payloads_are_live(name: str, tmp_path: Path) -> None:
    """The control: skops given every name the file holds (as the old prefix allowlist gave it the NumPy one)
    runs the payload while loading."""
    marker = tmp_path / "ran"
    data = skops_file(PAYLOADS[name][0](marker))
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert _wait_for(marker, 10), "the payload did not run, so its refusal below proves nothing"


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_files_are_refused(name: str, tmp_path: Path) -> None:
    build, untrusted = PAYLOADS[name]
    marker = tmp_path / "ran"
    path = tmp_path / "model" / "member_0.skops"
    path.parent.mkdir()
    path.write_bytes(skops_file(build(marker)))
    assert_refused(path, marker, "contains untrusted type", untrusted, "refusing to load it")


@pytest.mark.parametrize("name", ["numpy-runstring", "builtins-exec", "partial-exec"])
def test_poisoned_real_model_is_refused(name: str, real_model: tuple[bytes, pd.DataFrame], tmp_path: Path) -> None:
    """A real model with a payload among its attributes: with everything trusted it loads, runs the payload
    and still predicts normally (nothing would look wrong); load_model refuses it."""
    data, X = real_model
    build, untrusted = PAYLOADS[name]
    live_marker, marker = tmp_path / "live", tmp_path / "ran"
    live = poisoned(data, build(live_marker))
    loaded = sio.loads(live, trusted=sio.get_untrusted_types(data=live))
    assert live_marker.exists()
    clean = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    np.testing.assert_array_equal(loaded.predict_proba(X), clean.predict_proba(X))
    path = tmp_path / "fold_0.skops"
    path.write_bytes(poisoned(data, build(marker)))
    assert_refused(path, marker, untrusted)


def test_a_listed_class_called_by_the_file_is_refused(tmp_path: Path) -> None:
    """Every name in this file is trusted (LightGBM's Booster is on DAEDALUS_TYPES), but it asks skops to call
    the constructor with arguments of its own: Booster(model_file=PATH) opens any path it is given. Daedalus's
    files never use that loader, so it is refused as such."""
    target = tmp_path / "somewhere" / "secret.txt"
    root = _call("lightgbm.basic", "Booster", _empty_dict(), _json(None), _json(str(target)))
    data = skops_file(root)
    assert sio.get_untrusted_types(data=data) == ["lightgbm.basic.Booster"]
    with pytest.raises(Exception, match="secret.txt"):  # the control: LightGBM tries to open the path
        sio.loads(data, trusted=["lightgbm.basic.Booster"])
    path = tmp_path / "member_0.skops"
    path.write_bytes(data)
    assert_refused(path, tmp_path / "ran", "ConstructorFromReduceNode", "refusing to load it")


class _Payload:
    """What a pickle attack looks like: unpickling calls exec."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (self.code,)


def test_pickle_named_skops_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps({"model": _Payload(_code(marker))})
    pickle.loads(payload)  # the control: unpickling runs it
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "member_0.skops"
    path.write_bytes(payload)
    assert_refused(path, marker, "is not a readable skops file")


@pytest.mark.parametrize("members", [
    {"model.pkl": b"\x80\x04K\x01."},  # a zip without schema.json
    {"schema.json": b"{not json"},
    {"schema.json": json.dumps([1, 2]).encode()},  # valid JSON, not a schema
    {"schema.json": json.dumps({"__class__": "system", "__module__": "os", "__loader__": "NoSuchNode",
                                "protocol": 2}).encode()},
    {"schema.json": json.dumps({**_json(1), "protocol": 99}).encode()},  # a protocol from the future
], ids=["no-schema", "bad-json", "json-list", "unknown-loader", "future-protocol"])
def test_zip_that_is_not_skops_is_refused(members: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "member_0.skops"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    assert_refused(path, tmp_path / "ran", "is not a readable skops file")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "member_0.skops"
    path.write_bytes(b"")
    assert_refused(path, tmp_path / "ran", "is not a readable skops file")


# -- the real surfaces: a poisoned fold model in a real run ---------------------------------------------------


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real build (read only: each test poisons a copy)."""
    from tests.conftest import planted_frame, run_cli

    root = tmp_path_factory.mktemp("trust")
    planted_frame(200).to_csv(root / "train.csv", index=False)
    planted_frame(200, seed=1).drop(columns="y").head(5).to_csv(root / "rows.csv", index=False)
    result = run_cli("build", root / "train.csv", "--target", "y", "--trials", "2", "--families", "linear",
                     "--threads", "1", "--no-explain", "--quiet", "--run", root / "run")
    assert result.returncode == 0, result.stderr
    return root / "run"


def _poisoned_copy(built_run: Path, tmp_path: Path, marker: Path) -> tuple[Path, Path]:
    """A copy of the run whose first model file in ``model/`` carries the NumPy exec payload."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(built_run, run)
    target = sorted((run / "model").glob("*.skops"))[0]
    target.write_bytes(poisoned(target.read_bytes(), PAYLOADS["numpy-runstring"][0](marker)))
    # The file's hash is recorded anew, through Daedalus's own (anchored) log, as if the first wall (the hash
    # recorded when the file was written, store/integrity.py) had been passed: the loader must hold alone.
    from daedalus.store.run import RunStore

    RunStore(run).record([target])
    return run, target


def _assert_cli_refused(result: Any, target: Path, marker: Path) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("daedalus: error:")]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(errors) == 1, result.stderr
    assert target.name in errors[0] and "untrusted type numpy.testing._private.utils.runstring" in errors[0]
    assert not _wait_for(marker, 0.5), "the payload ran"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "explain", "approve-latency"])
def test_commands_refuse_a_poisoned_model(command: str, built_run: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    marker = tmp_path / "ran"
    run, target = _poisoned_copy(built_run, tmp_path, marker)
    rows = built_run.parent / "rows.csv"
    if command == "predict":
        result = run_cli("predict", run, rows, "--unapproved")
        assert result.stdout == ""  # no prediction came out of the poisoned model
    elif command == "explain":
        result = run_cli("explain", run, rows, "--unapproved")
    else:  # the latency gate loads the model to time it
        policy = tmp_path / "policy.toml"
        policy.write_text("[gates]\nmax_latency_ms = 10000\n", encoding="utf-8")
        from tests.conftest import reviewer_key

        reviewer_key("ann")  # a real reviewer with a real key: only the poisoned file stands in the way
        result = run_cli("approve", run, "--by", "ann", "--reason", "looks fine", "--policy", policy)
        assert '"event": "approval"' not in (run / "audit.jsonl").read_text(encoding="utf-8")
    _assert_cli_refused(result, target, marker)


@pytest.mark.slow
def test_python_load_refuses_a_poisoned_model(built_run: Path, tmp_path: Path) -> None:
    import daedalus

    marker = tmp_path / "ran"
    run, target = _poisoned_copy(built_run, tmp_path, marker)
    with pytest.warns(UserWarning, match="unapproved"), pytest.raises(RunError, match=target.name):
        daedalus.load(run, unapproved=True)
    assert not marker.exists()
