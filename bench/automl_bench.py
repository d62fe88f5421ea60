#!/usr/bin/env python
"""Benchmark Daedalus against peer AutoML frameworks (FLAML, AutoGluon, ...) on the shared datasets.

    .venv/bin/python bench/automl_bench.py --time 60 --datasets blood_transfusion,abalone

For every dataset the data is prepared once, as ../shared/peers/README.md prescribes (drop the manifest's
`id_cols` and `leak_cols`, keep the original column types, drop rows with a missing target, split 75/25 with
seed 0, stratified for classification), and the same train.csv/test.csv go to every framework. The
frameworks run one after another, never at the same time:

- Daedalus through its CLI (`daedalus build`, then `daedalus predict --proba`);
- each peer through ../shared/peers/run_peer.py with the python of its own venv (`<peers-dir>/venv-<name>`).

Daedalus's test metrics are computed with run_peer.py's own functions (`load_data`, `align_proba`,
`compute_metrics`), imported from the shared folder, so every framework is scored by the same code. Peak memory
(summed RSS and PSS of the whole process tree) is sampled every 0.5 s by this script, for every framework alike.

Results go to --out (default bench/results/<timestamp>/): one JSON per dataset x framework, summary.json and
summary.md (the table printed at the end, with mean ranks).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import psutil
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"
TABULAR_TASKS = ("binary", "multiclass", "regression")
DEFAULT_FRAMEWORKS = ("daedalus", "flaml", "autogluon")
SPLIT_SEED = 0  # the peers README fixes the split seed; --seed only seeds the frameworks
TEST_SIZE = 0.25
CORES = 2  # run_peer.py's default --cores; Daedalus's default --threads
SAMPLE_INTERVAL_S = 0.5
# primary metric per task and whether higher is better (the AutoML Benchmark's choices, as in run_peer.py)
PRIMARY: dict[str, tuple[str, bool]] = {
    "binary": ("roc_auc", True),
    "multiclass": ("log_loss", False),
    "regression": ("rmse", False),
}


# ----------------------------------------------------------------------------- data
@dataclass
class Prepared:
    """One dataset, prepared once and shared by every framework."""

    name: str
    target: str
    task: str
    train_csv: Path
    test_csv: Path
    n_train: int
    n_test: int
    n_features: int
    rows_before_subsampling: int | None  # set only when --max-rows subsampled the data
    y_test: Any = field(repr=False)  # as run_peer.load_data reads it back from test.csv
    classes: list[Any] | None = field(repr=False)  # sorted labels of y_train (None for regression)


def load_run_peer(shared: Path) -> ModuleType:
    """Import run_peer.py from the shared folder, to score Daedalus with the peers' own code."""
    path = shared / "peers" / "run_peer.py"
    spec = importlib.util.spec_from_file_location("run_peer", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_dataset(name: str, meta: dict[str, Any], shared: Path, work: Path,
                    max_rows: int | None, run_peer: ModuleType, corpus: str = "datasets") -> Prepared:
    """``corpus``: the shared folder the table is in (``datasets``, or ``meta`` for bench/meta_bench.py)."""
    target, task = meta["target"], meta["task"]
    df = pd.read_csv(shared / corpus / f"{name}.csv.gz")
    drop = [c for c in [*meta.get("id_cols", []), *meta.get("leak_cols", [])] if c in df.columns]
    df = df.drop(columns=drop).dropna(subset=[target]).reset_index(drop=True)
    stratify = task != "regression"
    rows_before = None
    if max_rows is not None and len(df) > max_rows:
        rows_before = len(df)
        df, _ = train_test_split(df, train_size=max_rows, random_state=SPLIT_SEED,
                                 stratify=df[target] if stratify else None)
    train, test = train_test_split(df, test_size=TEST_SIZE, random_state=SPLIT_SEED,
                                   stratify=df[target] if stratify else None)
    work.mkdir(parents=True, exist_ok=True)
    train_csv, test_csv = work / "train.csv", work / "test.csv"
    train.to_csv(train_csv, index=False)
    test.to_csv(test_csv, index=False)
    # read the files back exactly as run_peer.py does, so labels and classes have the types the peers see
    _, _, _, y_test, _, classes = run_peer.load_data(
        SimpleNamespace(train=str(train_csv), test=str(test_csv), target=target, task=task))
    return Prepared(name=name, target=target, task=task, train_csv=train_csv, test_csv=test_csv,
                    n_train=len(train), n_test=len(test), n_features=df.shape[1] - 1,
                    rows_before_subsampling=rows_before, y_test=y_test, classes=classes)


# ----------------------------------------------------------------------------- processes
@dataclass
class ProcStats:
    returncode: int | None
    wall_s: float
    peak_rss_mb: float  # sum of the tree's RSS: pages shared between processes count once per process
    peak_pss_mb: float  # sum of the tree's PSS: shared pages split between the processes that share them
    timed_out: bool


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [proc, *proc.children(recursive=True)]
    return []


def memory_bytes(members: list[psutil.Process]) -> tuple[int, int]:
    """(RSS, PSS) summed over the processes; PSS falls back to RSS where smaps cannot be read."""
    rss = pss = 0
    for p in members:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            info = p.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return rss, pss


def kill_all(pgid: int, members: list[psutil.Process]) -> None:
    """SIGKILL the processes still in group pgid (the command's session) and the listed ones."""
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == pgid:
                members = [*members, p]
    for p in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running():
                p.kill()


def run_monitored(cmd: list[str], log_path: Path, limit_s: float) -> ProcStats:
    """Run cmd in its own session; sample the tree's RSS every 0.5 s; SIGKILL it all after limit_s."""
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        root = psutil.Process(popen.pid)
        peak_rss = peak_pss = 0
        timed_out = False
        seen: dict[int, psutil.Process] = {}
        while True:
            members = process_tree(root)
            seen.update({p.pid: p for p in members[1:]})
            rss, pss = memory_bytes(members)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            try:
                popen.wait(timeout=SAMPLE_INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() - t0 > limit_s:
                    timed_out = True
                    kill_all(popen.pid, [*seen.values(), *process_tree(root)])
                    popen.wait()
                    break
        wall = time.perf_counter() - t0
    kill_all(popen.pid, list(seen.values()))  # leftovers, e.g. worker processes orphaned by the command
    return ProcStats(returncode=None if timed_out else popen.returncode, wall_s=round(wall, 2),
                     peak_rss_mb=round(peak_rss / 2**20, 1), peak_pss_mb=round(peak_pss / 2**20, 1),
                     timed_out=timed_out)


def log_tail(path: Path, n_chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n_chars:]
    except OSError:
        return ""


# ----------------------------------------------------------------------------- frameworks
@dataclass
class RunResult:
    dataset: str
    framework: str
    task: str
    budget_s: float
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    fit_wall_s: float | None = None
    peak_rss_mb: float | None = None  # whole process tree, sampled by this harness (see ProcStats)
    peak_pss_mb: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> float | None:
        value = self.metrics.get(PRIMARY[self.task][0])
        return None if value is None or not math.isfinite(value) else value

    @property
    def error_line(self) -> str:
        """The error's headline and, when a log tail follows it, the tail's last line."""
        lines = [line.strip() for line in (self.error or "").splitlines() if line.strip()]
        return " ... ".join(dict.fromkeys([lines[0], lines[-1]]))[:400] if lines else ""

    @property
    def fit_ratio(self) -> float | None:
        return None if self.fit_wall_s is None else self.fit_wall_s / self.budget_s


def class_index(values: Any, classes: list[Any]) -> np.ndarray:
    """Position of each label in ``classes``, matched by text first and by number second, so that "1", 1
    and 1.0 are one class whichever way a CSV round trip or a framework spelled it. -1: unknown label."""
    by_text = {str(c): i for i, c in enumerate(classes)}
    by_number: dict[float, int] = {}
    for i, c in enumerate(classes):
        with contextlib.suppress(TypeError, ValueError):
            by_number[float(c)] = i

    def one(v: Any) -> int:
        if str(v) in by_text:
            return by_text[str(v)]
        try:
            return by_number.get(float(v), -1)
        except (TypeError, ValueError):
            return -1

    return np.array([one(v) for v in values])


def score(task: str, y_true: Any, pred: Any, proba: np.ndarray | None,
          classes: list[Any] | None) -> dict[str, float]:
    """The AutoML Benchmark's metrics, computed the same way for every framework.

    Not run_peer.compute_metrics: it passes text labels to log_loss with the probability columns in numeric
    class order, while scikit-learn orders text labels lexicographically ('10' before '2'), which scrambles
    the columns when the classes are numbers >= 10 (letter: 26 classes, log loss 10 instead of 0.1).
    """
    if task == "regression":
        yt, yp = np.asarray(y_true, dtype=float), np.asarray(pred, dtype=float)
        return {"rmse": float(np.sqrt(skm.mean_squared_error(yt, yp))), "r2": float(skm.r2_score(yt, yp))}
    assert proba is not None and classes is not None
    y_idx, pred_idx = class_index(y_true, classes), class_index(pred, classes)
    metrics = {"accuracy": float(np.mean(y_idx == pred_idx))}
    if task == "binary":
        metrics["roc_auc"] = float(skm.roc_auc_score((y_idx == 1).astype(int), proba[:, 1]))
    else:
        p = np.clip(proba, 1e-15, 1 - 1e-15)
        metrics["log_loss"] = float(skm.log_loss(y_idx, p / p.sum(axis=1, keepdims=True),
                                                 labels=list(range(len(classes)))))
    return metrics


def aligned_proba(frame: pd.DataFrame, prefix: str, classes: list[Any] | None) -> np.ndarray:
    """The ``prefix<class>`` columns of ``frame`` in the order of ``classes``."""
    assert classes is not None
    cols = [c for c in frame.columns if c.startswith(prefix)]
    where = class_index([c.removeprefix(prefix) for c in cols], classes)
    out = np.zeros((len(frame), len(classes)))
    for col, i in zip(cols, where, strict=True):
        if i < 0:
            raise ValueError(f"probability column {col!r} matches no class of {classes}")
        out[:, i] = frame[col].to_numpy(dtype=float)
    return out


def hard_limit_s(budget: float) -> float:
    return 2 * budget + 120


def run_daedalus(data: Prepared, budget: float, seed: int, daedalus: str, work: Path,
                 run_peer: ModuleType, result: RunResult, build_args: tuple[str, ...] = ()) -> None:
    """``build_args``: more flags for ``daedalus build`` (bench/meta_bench.py's --warm-start, --portfolio...)."""
    run_dir, pred_csv = work / "daedalus_run", work / "daedalus_pred.csv"
    shutil.rmtree(run_dir, ignore_errors=True)
    pred_csv.unlink(missing_ok=True)
    build = run_monitored(
        [daedalus, "build", str(data.train_csv), "--target", data.target, "--time", f"{budget:g}",
         "--seed", str(seed), "--task", data.task, "--run", str(run_dir), "--quiet", *build_args],
        work / "daedalus_build.log", hard_limit_s(budget))
    result.fit_wall_s = build.wall_s
    result.peak_rss_mb, result.peak_pss_mb = build.peak_rss_mb, build.peak_pss_mb
    result.details.update(build=asdict(build), run_dir=str(run_dir))
    if build.timed_out:
        raise RuntimeError(f"build killed at the hard limit of {hard_limit_s(budget):g} s")
    if build.returncode != 0:
        raise RuntimeError(f"build exited {build.returncode}\n{log_tail(work / 'daedalus_build.log')}")

    classification = data.task != "regression"
    predict = run_monitored(
        [daedalus, "predict", str(run_dir), str(data.test_csv), "--out", str(pred_csv), "--unapproved",
         *(["--proba"] if classification else [])],  # a benchmark scores the model, nobody uses it: no approval
        work / "daedalus_predict.log", hard_limit_s(budget))
    result.peak_rss_mb = max(build.peak_rss_mb, predict.peak_rss_mb)
    result.peak_pss_mb = max(build.peak_pss_mb, predict.peak_pss_mb)
    result.details.update(predict=asdict(predict))
    if predict.timed_out or predict.returncode != 0 or not pred_csv.exists():
        raise RuntimeError(f"predict failed (exit {predict.returncode}, timed out: {predict.timed_out})\n"
                           f"{log_tail(work / 'daedalus_predict.log')}")

    # labels are read as text and matched to the classes by text or number (see class_index)
    preds = pd.read_csv(pred_csv, dtype={"prediction": str} if classification else None)
    if len(preds) != data.n_test:
        raise RuntimeError(f"{len(preds)} predictions for {data.n_test} test rows")
    proba = None
    if classification:
        proba = aligned_proba(preds, "proba_", data.classes)
        result.details["prediction_equals_argmax_proba"] = float(
            (class_index(preds["prediction"], data.classes or []) == proba.argmax(axis=1)).mean())
        result.details["pred_class_counts"] = preds["prediction"].value_counts().sort_index().to_dict()
    result.metrics = score(data.task, data.y_test.values, preds["prediction"].to_numpy(), proba, data.classes)


def run_peer_framework(framework: str, data: Prepared, budget: float, seed: int, peers_dir: Path,
                       shared: Path, work: Path, result: RunResult, preset: str | None = None) -> None:
    python = peers_dir / f"venv-{framework}" / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} missing: bash {shared}/peers/install.sh {peers_dir} {framework}")
    out_json, pred_csv = work / f"{framework}.json", work / f"{framework}_pred.csv"
    out_json.unlink(missing_ok=True)
    pred_csv.unlink(missing_ok=True)
    stats = run_monitored(
        [str(python), str(shared / "peers" / "run_peer.py"), "--framework", framework,
         "--train", str(data.train_csv), "--test", str(data.test_csv), "--target", data.target,
         "--task", data.task, "--budget", f"{budget:g}", "--seed", str(seed), "--cores", str(CORES),
         "--hard-limit", f"{hard_limit_s(budget):g}", "--out", str(out_json), "--pred-out", str(pred_csv),
         *(["--preset", preset] if preset else [])],
        work / f"{framework}.log", hard_limit_s(budget) + 90)  # run_peer's watchdog acts at hard limit + 60 s
    result.peak_rss_mb, result.peak_pss_mb = stats.peak_rss_mb, stats.peak_pss_mb
    result.details["process"] = asdict(stats)
    if not out_json.exists():
        raise RuntimeError(f"no result JSON (exit {stats.returncode}, timed out: {stats.timed_out})\n"
                           f"{log_tail(work / f'{framework}.log')}")
    peer = json.loads(out_json.read_text())
    result.details["peer_result"] = peer
    result.fit_wall_s = peer.get("fit_wall_s")
    if stats.timed_out:
        raise RuntimeError(f"killed at {hard_limit_s(budget) + 90:g} s (run_peer error: {peer.get('error')})")
    if peer.get("error"):
        raise RuntimeError(peer["error"])
    # Rescore from the saved predictions with the same function as Daedalus (see ``score``).
    preds = pd.read_csv(pred_csv, dtype={"predictions": str} if data.task != "regression" else None)
    proba = aligned_proba(preds, "p_", data.classes) if data.task != "regression" else None
    result.metrics = score(data.task, data.y_test.values, preds["predictions"].to_numpy(), proba, data.classes)


def portfolio_without(task: str, out: Path) -> Path:
    """The portfolio mined from the committed matrix without ``task``'s group (the same data under another
    name), as the shipped one is mined (cost-aware), saved to ``out``: what Daedalus would ship had it never
    seen the task."""
    from daedalus.designers.meta.matrix import Matrix
    from daedalus.designers.meta.portfolio import select_portfolio

    if not out.exists():
        matrix = Matrix.load()
        select_portfolio(matrix.without(matrix.group_of(task)), cost_aware=True).save(out)
    return out


def run_one(framework: str, data: Prepared, args: argparse.Namespace, work: Path,
            run_peer: ModuleType) -> RunResult:
    result = RunResult(dataset=data.name, framework=framework, task=data.task, budget_s=args.time,
                       seed=args.seed)
    result.details["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    try:
        if framework == "daedalus":
            # A first run for this user: no knowledge base (a past bench run on the same table would be a
            # warm start the peers do not get); under --leave-one-out, a portfolio mined without this dataset.
            extra = ["--knowledge", "off"]
            if args.cold:
                extra += ["--warm-start", "off"]
            elif args.leave_one_out:
                extra += ["--portfolio", str(portfolio_without(data.name, work / "portfolio.json"))]
            run_daedalus(data, args.time, args.seed, args.daedalus, work, run_peer, result, tuple(extra))
        else:
            preset = args.autogluon_preset if framework == "autogluon" else None
            run_peer_framework(framework, data, args.time, args.seed, args.peers_dir, args.shared, work, result,
                               preset)
        if result.primary is None:
            raise RuntimeError(f"no {PRIMARY[data.task][0]} in the metrics {result.metrics}")
    except Exception as e:  # a framework's failure is recorded, and the benchmark goes on
        result.error = f"{type(e).__name__}: {e}"
    return result


# ----------------------------------------------------------------------------- ranks and report
def ranks_per_dataset(results: list[RunResult], frameworks: list[str]) -> dict[str, dict[str, float]]:
    """Rank 1 = best; ties share the average rank; a failed run ranks after every finished one."""
    table: dict[str, dict[str, float]] = {}
    for ds in dict.fromkeys(r.dataset for r in results):
        rows = {r.framework: r for r in results if r.dataset == ds}
        higher_better = PRIMARY[next(iter(rows.values())).task][1]
        scores = pd.Series({fw: (-math.inf if higher_better else math.inf) if rows[fw].primary is None
                            else rows[fw].primary for fw in frameworks})
        table[ds] = scores.rank(ascending=not higher_better, method="average").to_dict()
    return table


def mean_ranks(results: list[RunResult], frameworks: list[str]) -> dict[str, Any]:
    per_ds = ranks_per_dataset(results, frameworks)
    complete = [ds for ds in per_ds
                if all(r.primary is not None for r in results if r.dataset == ds)]

    def mean(datasets: list[str]) -> dict[str, float | None]:
        return {fw: round(sum(per_ds[d][fw] for d in datasets) / len(datasets), 3) if datasets else None
                for fw in frameworks}

    return {"per_dataset": per_ds, "complete_datasets": complete, "mean_rank_complete": mean(complete),
            "all_datasets": list(per_ds), "mean_rank_all_failures_last": mean(list(per_ds))}


def fmt(value: float | None, spec: str, missing: str = "FAIL") -> str:
    return missing if value is None else format(value, spec)


def markdown_report(results: list[RunResult], frameworks: list[str], ranks: dict[str, Any],
                    header: list[str]) -> str:
    by_key = {(r.dataset, r.framework): r for r in results}
    datasets = list(dict.fromkeys(r.dataset for r in results))
    cols = (["dataset", "task", "metric"] + frameworks + [f"fit/budget {fw}" for fw in frameworks]
            + [f"MB rss/pss {fw}" for fw in frameworks])
    lines = [*header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for ds in datasets:
        row = [by_key[(ds, fw)] for fw in frameworks]
        metric, higher_better = PRIMARY[row[0].task]
        done = [r.primary for r in row if r.primary is not None]
        best = (max(done) if higher_better else min(done)) if done else None
        cells = [ds, row[0].task, metric + (" ↑" if higher_better else " ↓")]
        cells += [f"**{fmt(r.primary, '.4g')}**" if r.primary is not None and r.primary == best
                  else fmt(r.primary, ".4g") for r in row]
        cells += [fmt(r.fit_ratio, ".2f") for r in row]
        cells += ["-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f} / {r.peak_pss_mb:.0f}" for r in row]
        lines.append("| " + " | ".join(cells) + " |")
    n_complete, n_all = len(ranks["complete_datasets"]), len(ranks["all_datasets"])
    lines += ["", "| mean rank (1 = best) | " + " | ".join(frameworks) + " |", "|---|" + "---|" * len(frameworks),
              f"| {n_complete} of {n_all} datasets where every framework produced a result | "
              + " | ".join(fmt(ranks["mean_rank_complete"][fw], ".2f", "n/a") for fw in frameworks) + " |",
              f"| all {n_all} datasets, a failed run ranked worst | "
              + " | ".join(fmt(ranks["mean_rank_all_failures_last"][fw], ".2f") for fw in frameworks) + " |"]
    failures = [r for r in results if r.error]
    if failures:
        lines += ["", "Failures (each ranked worst on its dataset in the second rank row):"]
        lines += [f"- {r.dataset} / {r.framework}: {r.error_line}" for r in failures]
    lines += ["", "fit/budget: Daedalus = wall time of the whole `daedalus build` command (start-up, data loading "
              "and model saving included); peers = run_peer.py's `fit_wall_s` (the framework's fit call only). "
              "MB rss/pss: peaks of the process tree's summed RSS and PSS (children included), sampled every "
              "0.5 s by the harness during fit and predict. Summed RSS counts memory shared between processes "
              "(forked workers) once per process; PSS splits it between them."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def default_daedalus() -> str:
    venv_cli = REPO / ".venv" / "bin" / "daedalus"
    return str(venv_cli) if venv_cli.exists() else (shutil.which("daedalus") or "daedalus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time", type=float, default=60, help="budget in seconds per framework and dataset")
    p.add_argument("--datasets", default=None,
                   help="comma-separated names (default: every binary, multiclass and regression dataset)")
    p.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS))
    p.add_argument("--peers-dir", type=Path, default=Path("~/.cache/peers"))
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="folder with datasets/ and peers/")
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results/<timestamp>)")
    p.add_argument("--max-rows", type=int, default=None, help="subsample each dataset to N rows before the split")
    p.add_argument("--seed", type=int, default=0, help="seed given to every framework (the split seed stays 0)")
    p.add_argument("--daedalus", default=default_daedalus(), help="the daedalus command")
    p.add_argument("--autogluon-preset", default=None,
                   help="AutoGluon's presets (run_peer.py's default: medium_quality; e.g. best_quality)")
    p.add_argument("--leave-one-out", action="store_true",
                   help="Daedalus warm-starts from a portfolio mined without the dataset (the shipped one has "
                        "seen every shared dataset)")
    p.add_argument("--cold", action="store_true", help="Daedalus with --warm-start off (the cold start)")
    args = p.parse_args(argv)
    args.peers_dir = args.peers_dir.expanduser()
    args.shared = args.shared.expanduser().resolve()
    args.out = (args.out or REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    manifest: dict[str, dict[str, Any]] = json.loads((args.shared / "datasets" / "manifest.json").read_text())
    datasets = (args.datasets.split(",") if args.datasets
                else [n for n, m in manifest.items() if m["task"] in TABULAR_TASKS])
    frameworks = args.frameworks.split(",")
    unknown = [d for d in datasets if d not in manifest or manifest[d]["task"] not in TABULAR_TASKS]
    if unknown:
        sys.exit(f"unknown or non-tabular datasets: {unknown}")
    run_peer = load_run_peer(args.shared)
    run_peer.cap_threads(CORES)  # the same thread caps for Daedalus as run_peer.py sets for the peers
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"results -> {args.out}", flush=True)

    results: list[RunResult] = []
    prepared: dict[str, dict[str, Any]] = {}
    for name in datasets:
        work = args.out / "work" / name
        try:
            data = prepare_dataset(name, manifest[name], args.shared, work, args.max_rows, run_peer)
        except Exception as e:
            err = f"data preparation failed: {type(e).__name__}: {e}"
            print(f"[{name}] {err}", flush=True)
            results += [RunResult(name, fw, manifest[name]["task"], args.time, args.seed, error=err)
                        for fw in frameworks]
            continue
        prepared[name] = {k: v for k, v in asdict(data).items() if k not in ("y_test", "classes")}
        sub = f", subsampled from {data.rows_before_subsampling} rows" if data.rows_before_subsampling else ""
        print(f"[{name}] {data.task}: {data.n_train} train / {data.n_test} test rows, "
              f"{data.n_features} features{sub}", flush=True)
        for fw in frameworks:  # one after another, never at the same time
            r = run_one(fw, data, args, work, run_peer)
            results.append(r)
            (args.out / f"{name}__{fw}.json").write_text(
                json.dumps({**asdict(r), "data": prepared[name]}, indent=2, default=str))
            status = f"FAILED {r.error_line}" if r.error else \
                f"{PRIMARY[r.task][0]}={r.primary:.4g}"
            ratio = fmt(r.fit_ratio, ".2f")
            print(f"  {fw:<10} {status}  fit/budget={ratio}  peak rss/pss={r.peak_rss_mb}/{r.peak_pss_mb} MB",
                  flush=True)

    ranks = mean_ranks(results, frameworks)
    header = [f"# AutoML benchmark ({started})", "",
              f"Budget {args.time:g} s per framework and dataset, framework seed {args.seed}, split seed "
              f"{SPLIT_SEED} (75/25, stratified for classification), {CORES} cores each, frameworks run one "
              f"after another on {os.cpu_count()} CPUs."]
    if "autogluon" in frameworks:
        header.append(f"AutoGluon presets: {args.autogluon_preset or 'medium_quality'}.")
    if "daedalus" in frameworks:
        header.append("Daedalus: no knowledge base (`--knowledge off`); " + (
            "the cold start (`--warm-start off`)." if args.cold else
            "warm start from a portfolio mined without the dataset (`--leave-one-out`)." if args.leave_one_out
            else "the shipped portfolio, which was mined with every shared dataset in it."))
    if args.max_rows:
        header.append(f"**Subsampled:** every dataset larger than {args.max_rows} rows was cut to "
                      f"{args.max_rows} rows before the split.")
    report = markdown_report(results, frameworks, ranks, header)
    (args.out / "summary.md").write_text(report)
    summary = {"started_at": started, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "budget_s": args.time, "seed": args.seed, "split_seed": SPLIT_SEED, "max_rows": args.max_rows,
               "subsampled": args.max_rows is not None, "frameworks": frameworks, "datasets": prepared,
               "primary_metrics": PRIMARY, "ranks": ranks,
               "results": [{**asdict(r), "details": None, "primary": r.primary, "fit_to_budget": r.fit_ratio}
                           for r in results]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("\n" + report, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
