"""The ranker shipped with the package (issue 12.7): a run of Daedalus's own ``AutoRegressor`` on the matrix's
training table (``designers.meta.ranker``), kept as a run directory inside the package.

``daedalus/designers/meta/ranker/`` holds what a prediction and a reader need of that run: ``run.json``,
``schema.json``, ``leaderboard.json``, its audit log, its final model directory, and ``ranker.json`` (the
manifest written last: the training table's columns, how the ranker was measured, and the SHA-256 of every other
file). The run's own integrity check cannot serve here: it verifies the audit log against its anchor in the data
directory of the machine that wrote it, which a user's machine does not have. So the manifest records the hashes
when the ranker is packaged, and :func:`load_ranker` checks every file against them, then loads the model files
with the exact-type skops loader (``store.artifacts.load_model``, fed the hash it must match: the bytes checked
are the bytes loaded). Any problem raises :class:`RankerUnavailable`: a build turns it into a warning and keeps the
nearest-task order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from daedalus.data.metafeatures import MetaFeatures
from daedalus.data.schema import Schema, Task
from daedalus.designers.meta.matrix import packaged_path, write_atomic
from daedalus.designers.meta.ranker import Configured, Ranker
from daedalus.ensembles.model import EnsembleModel, ModelSpec
from daedalus.ensembles.predictor import Predictor
from daedalus.errors import DaedalusError
from daedalus.store.artifacts import load_model
from daedalus.store.integrity import directory_files, sha256_file
from daedalus.store.layout import (
    AUDIT_FILE,
    FINAL_MODEL,
    RUN_FILE,
    json_file,
    read_model_file,
    usable_model,
)

FORMAT = 1
PACKAGED_DIR = "ranker"
MANIFEST = "ranker.json"
MAX_MANIFEST_BYTES = 1_000_000
# What a packaged ranker keeps of its run (the model directory besides): enough to predict, and the run's record.
KEPT_FILES = (RUN_FILE, json_file("schema"), json_file("leaderboard"), AUDIT_FILE)


class RankerUnavailable(Exception):
    """The packaged ranker is missing, damaged or refused; the message says which file and why."""


def packaged_ranker_dir() -> Path:
    return packaged_path(PACKAGED_DIR)


def package_run(run_dir: Path, dest: Path, columns: list[str], info: dict[str, Any]) -> None:
    """Copy what a ranker needs of the finished run ``run_dir`` into ``dest`` (replacing it), then write the
    manifest with the hash of every file copied (the manifest last: a ranker cut short has none and is not
    loaded)."""
    found = usable_model(run_dir)
    if found is None or found[0] != FINAL_MODEL:
        raise RankerUnavailable(f"run {run_dir} has no final model to package; let the build finish")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in KEPT_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, tmp / name)
    shutil.copytree(found[1], tmp / FINAL_MODEL)
    for path in directory_files(tmp):
        path.chmod(0o644)  # package data, readable by all (a run's model files are private to their user)
    files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in directory_files(tmp)}
    manifest = {"format": FORMAT, "columns": columns, "files": files, **info}
    write_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False).encode())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes, more than a manifest's {MAX_MANIFEST_BYTES}")
        manifest = json.loads(path.read_bytes())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a ranker manifest of format {FORMAT}")
        if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("columns"), list):
            raise ValueError("no 'files' object or 'columns' list")
        return manifest
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RankerUnavailable(f"the ranker's manifest {path} is missing or damaged ({exc})") from None


def load_ranker(directory: Path | None = None) -> Ranker:
    """The ranker at ``directory`` (None: the one shipped), every file checked against the manifest's hash before
    it is read; :class:`RankerUnavailable` when anything is missing, changed or refused."""
    directory = Path(directory) if directory is not None else packaged_ranker_dir()
    manifest = read_manifest(directory)
    hashes: dict[Path, str] = {}
    for name, digest in manifest["files"].items():
        path = (directory / str(name)).resolve()
        if directory.resolve() not in path.parents:  # a manifest naming ../elsewhere is not ours
            raise RankerUnavailable(f"the ranker's manifest names {name!r}, outside {directory}")
        if not path.is_file() or sha256_file(path) != digest:
            raise RankerUnavailable(f"the ranker file {path} is missing or does not match the SHA-256 its manifest "
                                    "recorded; reinstall Daedalus or rerun bench/train_ranker.py --package")
        hashes[path] = str(digest)
    model_dir = directory / FINAL_MODEL
    try:
        schema = Schema.from_dict(json.loads((directory / json_file("schema")).read_text(encoding="utf-8")))
        spec = ModelSpec.from_dict(read_model_file(model_dir))
        estimators = []
        for member in spec.members:
            paths = [(model_dir / f).resolve() for f in member.files]
            if any(p not in hashes for p in paths):
                raise ValueError(f"member {member.trial} names a file the manifest does not list")
            estimators.append([load_model(p, hashes[p]) for p in paths])
    except (OSError, KeyError, TypeError, ValueError, DaedalusError) as exc:
        raise RankerUnavailable(f"the ranker at {directory} could not be loaded ({exc})") from None
    predictor = Predictor(schema, EnsembleModel(spec, estimators), FINAL_MODEL)
    about = manifest.get("description", "")
    return Ranker(predictor.predict, [str(c) for c in manifest["columns"]], str(about)[:500])


def predict_scores(directory: Path, meta: MetaFeatures, members: list[Configured], task: Task,
                   nearest: list[float] | None = None) -> list[float]:
    """The ranker at ``directory``, loaded and asked for ``members``' scores (what a build runs in a worker)."""
    return [float(x) for x in load_ranker(directory).predict(meta, members, task, nearest)]
