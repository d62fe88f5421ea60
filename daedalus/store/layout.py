"""Where each file inside a run directory lives: the one place that spells the run's layout.

    RUN/
      run.json, schema.json, checks.json, leaderboard.json, ...   JSON records (RunStore.write / read)
      train.parquet      the training rows
      study.db           the Optuna storage (default)
      audit.jsonl        the hash-chained event log
      trials/00003/      one directory per trial (TRIAL_DIGITS digits, so that names sort by number):
        oof.npy            its out-of-fold predictions
        fold_0.skops ...   its fold models, kept for the best trials only
        bag.json           written last, after the fold models: its presence says the bag is complete
        network/           an image trial's network (a NetworkModel directory)
        checkpoint.pt      an image candidate's training state between rungs of successive halving
      best/              the best single model so far (a model directory: model.json + estimator files)
      model/             the final model; ``<name>.old``: the previous version, left by a swap cut short
      refit.tmp/         members refit on all rows, before they are promoted into model/
      holdout_predictions.npz   an image run's final network on its held-out images
      images/            an image run's split images (*.npy), read by its workers
      designer.json      an image run's designer state after its last tell (the designer's get_state)
      meta_features.json the table's meta-features (data/metafeatures.py), measured before the search

Code anywhere in Daedalus names these paths through this module (or ``RunStore``'s methods, which use it);
the functions here take a directory, not a ``RunStore``, so that a worker process that was handed a trial's
directory can name its files without opening the run. This module imports nothing of Daedalus: every other
module of ``store/`` may use it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
AUDIT_FILE = "audit.jsonl"
DATA_FILE = "train.parquet"
STUDY_FILE = "study.db"  # the Optuna study, when no --storage is given
LOCK_FILE = ".lock"
TRIALS_DIR = "trials"
TRIAL_DIGITS = 5
OOF_FILE = "oof.npy"
BAG_FILE = "bag.json"
NETWORK_DIR = "network"
TRIAL_FILE = "trial.json"
MODEL_FILE = "model.json"  # in every model directory: what it holds (a spec naming its estimator files)
FINAL_MODEL = "model"
BEST_MODEL = "best"
MODEL_DIRS = (FINAL_MODEL, BEST_MODEL)  # the model a prediction uses: the final one, else the best so far
OLD_SUFFIX = ".old"
REFIT_DIR = "refit.tmp"
IMAGE_HOLDOUT_FILE = "holdout_predictions.npz"
IMAGES_DIR = "images"  # an image run's split images, read by its workers
CHECKPOINT_FILE = "checkpoint.pt"  # in an image trial's directory, between rungs
DESIGNER_RECORD = "designer"  # designer.json (a JSON record): the designer's state after its last tell
META_FEATURES = "meta_features"  # meta_features.json (a JSON record): the table's description (issue 12)
SEARCH_ROWS = "search_rows"  # run.json field and audit event: the rows the search fits on (orchestration/rows.py)

_FOLD = re.compile(r"fold_(\d+)\.skops")


def json_file(name: str) -> str:
    """The file of the run's JSON record ``name`` ('run' -> 'run.json')."""
    return f"{name}.json"


# -- trials -----------------------------------------------------------------------------------------------------
def trial_dir(root: Path, number: int) -> Path:
    return Path(root) / TRIALS_DIR / f"{number:0{TRIAL_DIGITS}d}"


def trial_numbers(root: Path) -> list[int]:
    """The numbers of the trials that have a directory, in order."""
    trials = Path(root) / TRIALS_DIR
    if not trials.is_dir():
        return []
    return sorted(int(p.name) for p in trials.iterdir() if p.is_dir() and p.name.isdigit())


def fold_file(fold: int) -> str:
    """The name of fold ``fold``'s model in a trial's directory."""
    return f"fold_{fold}.skops"


def fold_files(directory: Path) -> list[Path]:
    """A trial directory's fold models, in fold order (numerically: fold_10 after fold_9)."""
    if not Path(directory).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(directory).iterdir() if (m := _FOLD.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def member_file(index: int) -> str:
    """The name of ensemble member ``index``'s estimator, refit on all rows, in a model directory."""
    return f"member_{index}.skops"


def is_member_file(name: str) -> bool:
    """True for a ``member_file`` name: an estimator refit on all rows (not a trial's fold model)."""
    return re.fullmatch(r"member_\d+\.skops", name) is not None


# -- model directories ------------------------------------------------------------------------------------------
def model_dir(root: Path, name: str) -> Path:
    """The directory of a saved model (``model`` or ``best``), tolerating a swap cut short by a kill: while
    the directory is missing, its ``.old`` version stands in for it."""
    path = Path(root) / name
    old = path.with_name(name + OLD_SUFFIX)
    if not path.exists() and old.exists():
        return old
    return path


def usable_model(root: Path) -> tuple[str, Path] | None:
    """(name, directory) of the model a prediction uses: the final ``model/``, else the best so far
    (``best/``), each only if it holds its ``model.json``; None while the run has neither."""
    for name in MODEL_DIRS:
        directory = model_dir(root, name)
        if (directory / MODEL_FILE).is_file():
            return name, directory
    return None


def read_model_file(directory: Path) -> dict[str, Any]:
    """The ``model.json`` of a model directory (what it holds), as a dict."""
    return dict(json.loads((Path(directory) / MODEL_FILE).read_text(encoding="utf-8")))
