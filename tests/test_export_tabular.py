"""``daedalus export-arch`` on table runs: a ``neural`` trial's network as a standalone PyTorch file whose
``predict`` reproduces the trial's own fitted pipeline (the oracle) on the run's prepared rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from daedalus.interfaces.cli import main
from daedalus.store.artifacts import load_model

pytestmark = pytest.mark.slow


def _table(task: str, rows: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    signal = x + (colour == "red") * 1.5 + rng.normal(scale=0.3, size=rows)
    target = np.where(signal > 0.5, "yes", "no") if task == "binary" else signal * 10 + 3
    return pd.DataFrame({"x": x, "z": rng.normal(size=rows), "colour": colour, "y": target})


def _build(tmp_path: Path, task: str, families: str = "neural") -> tuple[Path, pd.DataFrame]:
    frame = _table(task)
    frame.to_csv(tmp_path / "data.csv", index=False)
    run = tmp_path / "run"
    assert main(["build", str(tmp_path / "data.csv"), "--target", "y", "--families", families, "--trials", "2",
                 "--time", "120", "--run", str(run), "--quiet", "--threads", "1", "--no-explain"]) == 0
    return run, frame


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("exported_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_exported_network_reproduces_its_trial(tmp_path: Path, task: str) -> None:
    run, frame = _build(tmp_path, task)
    out = tmp_path / "export" / "model.py"
    assert main(["export-arch", str(run), "--out", str(out)]) == 0
    assert out.with_suffix(".pt").exists() and (out.parent / "model_preprocess.skops").exists()
    text = out.read_text()
    assert "class Net(" in text and "import daedalus" not in text.split("def predict")[0]
    exported = _import(out)
    members = json.loads((run / "model" / "model.json").read_text())["members"]
    neural = max((m for m in members if m["family"] == "neural"), key=lambda m: m["weight"])
    oracle = load_model(run / "model" / neural["files"][0])  # the trial's own fitted pipeline
    features = frame.drop(columns=["y"])
    prepared = load_model(out.parent / "model_preprocess.skops").transform(features)
    if task == "binary":
        np.testing.assert_allclose(exported.predict(prepared), oracle.predict_proba(features), atol=1e-6)
        assert exported.CLASSES == ["no", "yes"]
    else:
        np.testing.assert_allclose(exported.predict(prepared), oracle.predict(features), rtol=1e-6, atol=1e-6)


def test_a_non_network_trial_or_an_ensemble_without_one_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = _build(tmp_path, "binary", families="linear")
    capsys.readouterr()
    for extra, fragment in (([], "no neural member"), (["--trial", "0"], "not a network"),
                            (["--trial", "99"], "no trial 99")):
        assert main(["export-arch", str(run), "--out", str(tmp_path / "m.py"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "m.py").exists()
