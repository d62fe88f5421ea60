import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "daedalus" / "data" / "demo" / "credit_g.csv.gz"
DEMO_TARGET = "class-label"


def run_cli(*args, timeout=300, cwd=None):
    """Run the real console command in a subprocess, as a user would."""
    exe = Path(sys.executable).with_name("daedalus")
    cmd = [str(exe), *map(str, args)] if exe.exists() else [sys.executable, "-m", "daedalus.interfaces.cli",
                                                             *map(str, args)]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="session", autouse=True)
def daedalus_home(tmp_path_factory):
    """The whole session's data directory (anchors, keys, trusted keys): never the real home. Set in os.environ,
    so that every subprocess (run_cli) inherits it."""
    home = tmp_path_factory.mktemp("daedalus-home")
    # The knowledge base is off unless a test names one (--knowledge URL): builds of unrelated tests, in whatever
    # order the workers run them, must not warm start each other.
    saved = {name: os.environ.get(name) for name in ("DAEDALUS_HOME", "DAEDALUS_KNOWLEDGE")}
    os.environ["DAEDALUS_HOME"] = str(home)
    os.environ["DAEDALUS_KNOWLEDGE"] = "off"
    yield home
    for name, old in saved.items():
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def reviewer_key(name: str) -> Path:
    """Reviewer ``name``'s signing key in the session's data directory, made on first use (as 'daedalus keys
    new NAME' would), so that tests can approve and reject."""
    from daedalus.store.signing import key_path, new_key

    path = key_path(name)
    if not path.exists():
        new_key(name)
    return path


@pytest.fixture
def reviewers():
    """Keys for the reviewers the tests name."""
    return {name: reviewer_key(name) for name in ("alice", "bob", "carol", "dave", "erin", "tester")}


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def demo_frame():
    return pd.read_csv(DEMO)


@pytest.fixture
def small_binary_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    logit = 1.5 * x1 - x2 + (color == "red")
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    df = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "label": y})
    path = tmp_path / "small.csv"
    df.to_csv(path, index=False)
    return path


def planted_frame(n: int = 400, task: str = "binary", seed: int = 0) -> pd.DataFrame:
    """'signal' decides the target 'y'; 'noise', 'color' and the date 'day' carry nothing."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    frame = pd.DataFrame({
        "signal": signal, "noise": rng.normal(size=n), "color": rng.choice(["red", "green", "blue"], n),
        "day": (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")).strftime("%Y-%m-%d"),
    })
    if task == "binary":
        frame["y"] = np.where(signal + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    else:
        frame["y"] = 3.0 * signal + 0.1 * rng.normal(size=n)
    return frame


@pytest.fixture(scope="session")
def planted_run(tmp_path_factory):
    """One real build, shared by the oversight modules: binary 'y' on ``planted_frame(300)``, 3 trials of linear
    and LightGBM, explanations and model card, no policy, no sensitive column. Read it only: a test that
    decides on it (approve, reject, steer) or edits it works on a copy (``shutil.copytree``)."""
    from daedalus.interfaces.cli import main

    root = tmp_path_factory.mktemp("planted")
    planted_frame(300).to_csv(root / "plant.csv", index=False)
    code = main(["build", str(root / "plant.csv"), "--target", "y", "--trials", "3", "--families",
                 "linear,lightgbm", "--quiet", "--run", str(root / "run"), "--threads", "1"])
    assert code == 0
    return root / "run"


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    """scikit-learn's bundled 8x8 digits (1,797 images) as a pixel CSV, the way MNIST is written: one column per
    pixel, then the label 'digit'."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(int), columns=[f"pixel{i + 1}" for i in range(64)])
    frame["digit"] = digits.target
    path = tmp_path_factory.mktemp("images") / "digits.csv"
    frame.to_csv(path, index=False)
    return path
