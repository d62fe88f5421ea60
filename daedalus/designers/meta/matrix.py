"""The matrix of candidate configurations x tasks, mined offline (``bench/meta_matrix.py``), in its compact form.

Each cell is a configuration's 3-fold cross-validated score on a task (the build's default metric for the
task, in its natural direction) and its fit time; a cell that was run and failed (a timeout, an error) holds
None, a cell never run is absent. The committed file is gzip JSON::

    {"format": 1, "configs": [{"id", "family", "config"}],        # config None: the family's default
     "tasks": [{"name", "source", "group", "task", "metric", "higher_is_better", "n_rows", "n_features",
                "meta_features"}],
     "scores": {task: {config id: score | null}}, "fit_seconds": {task: {config id: seconds | null}}}

``group`` names copies of the same data across the corpora (ggplot2_diamonds = diamonds): leave-one-task-out
removes a whole group (:meth:`Matrix.without`).

Normalised score (:meth:`Matrix.normalised`): per task, on the utility u (the score, negated for a metric to
minimise), ``(u - median) / (best - median)`` over the task's scored cells, so the task's best configuration
is 1 and its median configuration 0 (auto-sklearn 2.0's and TabRepo's "normalised error" in spirit, robust to
one terrible configuration); clipped below at -1, and a failed cell counts -1.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from daedalus.data.schema import Task

FORMAT = 1
PACKAGED = "matrix.json.gz"
WORST = -1.0  # the normalised score of a failed cell, and the floor of every normalised score


def packaged_path(name: str) -> Path:
    """A data file shipped in this package."""
    return Path(str(resources.files(__package__ or "daedalus.designers.meta").joinpath(name)))


def write_atomic(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # package data: readable by everyone, as a checkout's other files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Matrix:
    configs: list[dict[str, Any]]  # {id, family, config (None: the family's default)}
    # {name, source, group, task, metric, higher_is_better, n_rows, n_features, meta_features}
    tasks: list[dict[str, Any]]
    scores: dict[str, dict[str, float | None]]
    fit_seconds: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    @property
    def config_ids(self) -> list[str]:
        return [c["id"] for c in self.configs]

    def task(self, name: str) -> dict[str, Any]:
        for t in self.tasks:
            if t["name"] == name:
                return t
        raise KeyError(name)

    def group_of(self, task_name: str) -> str:
        """The task's group (a task the matrix does not hold is a group of its own: removing it removes nothing)."""
        for t in self.tasks:
            if t["name"] == task_name:
                return str(t["group"])
        return task_name

    def config(self, config_id: str) -> dict[str, Any]:
        for c in self.configs:
            if c["id"] == config_id:
                return c
        raise KeyError(config_id)

    def sign(self, task_name: str) -> float:
        """+1 where the task's metric is to maximise, -1 where to minimise (rmse, log_loss)."""
        return 1.0 if self.task(task_name)["higher_is_better"] else -1.0

    # -- views ------------------------------------------------------------------------------------------------
    def without(self, group: str) -> Matrix:
        """The matrix without every task of ``group`` (leave-one-task-out: both copies of a duplicated table)."""
        gone = {t["name"] for t in self.tasks if t["group"] == group}
        return Matrix(configs=list(self.configs), tasks=[t for t in self.tasks if t["name"] not in gone],
                      scores={k: v for k, v in self.scores.items() if k not in gone},
                      fit_seconds={k: v for k, v in self.fit_seconds.items() if k not in gone})

    def utilities(self) -> np.ndarray:
        """tasks x configs: the score as higher-is-better; NaN where a cell failed or was never run."""
        out = np.full((len(self.tasks), len(self.configs)), np.nan)
        col = {cid: j for j, cid in enumerate(self.config_ids)}
        for i, t in enumerate(self.tasks):
            sign = self.sign(t["name"])
            for cid, score in self.scores.get(t["name"], {}).items():
                if score is not None and cid in col:
                    out[i, col[cid]] = sign * score
        return out

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """Per task, the (median, best) utility over its scored cells: what :meth:`normalised` divides by."""
        u = self.utilities()
        median = np.array([np.nanmedian(row) if np.isfinite(row).any() else 0.0 for row in u])
        best = np.array([np.nanmax(row) if np.isfinite(row).any() else 1.0 for row in u])
        return median, best

    def normalise(self, task_index: int, utility: np.ndarray | float) -> np.ndarray:
        """Utilities on task ``task_index`` on the normalised scale (ensembles of members may exceed 1)."""
        median, best = self.reference()
        return normalise_with(np.asarray(utility, dtype=float), median[task_index], best[task_index])

    def normalised(self) -> np.ndarray:
        """tasks x configs: normalised scores (see the module's docstring); a failed cell is -1, a cell never
        run NaN."""
        u = self.utilities()
        median, best = self.reference()
        out = normalise_with(u, median[:, None], best[:, None])
        failed = np.zeros_like(u, dtype=bool)
        col = {cid: j for j, cid in enumerate(self.config_ids)}
        for i, t in enumerate(self.tasks):
            for cid, score in self.scores.get(t["name"], {}).items():
                if score is None and cid in col:
                    failed[i, col[cid]] = True
        out[failed] = WORST
        return out

    def seconds(self) -> np.ndarray:
        """tasks x configs: fit seconds; a failed or timed-out cell costs the task's slowest cell (it ran to its
        cap, or near), a cell never run NaN."""
        out = np.full((len(self.tasks), len(self.configs)), np.nan)
        col = {cid: j for j, cid in enumerate(self.config_ids)}
        for i, t in enumerate(self.tasks):
            row = self.fit_seconds.get(t["name"], {})
            known = [v for v in row.values() if v is not None and v > 0]
            slowest = max(known, default=1.0)
            for cid in self.scores.get(t["name"], {}):
                if cid in col:
                    value = row.get(cid)
                    out[i, col[cid]] = value if value is not None and value > 0 else slowest
        return out

    def relative_cost(self) -> np.ndarray:
        """Per configuration, how long it takes to fit against the other configurations on the same tasks: the
        geometric mean over tasks of its seconds / the task's median seconds (1 = a typical configuration).
        Relative, so that the corpus's big tables do not decide alone; NaN for a configuration never run."""
        sec = self.seconds()
        with np.errstate(all="ignore"):
            median = np.nanmedian(np.where(np.isfinite(sec), sec, np.nan), axis=1, keepdims=True)
            ratio = np.log(np.maximum(sec, 1e-3) / np.maximum(median, 1e-3))
            counts = np.isfinite(ratio).sum(axis=0)
            total = np.nansum(ratio, axis=0)
        return np.where(counts > 0, np.exp(total / np.maximum(counts, 1)), np.nan)

    def dense_configs(self, share: float = 0.9) -> list[str]:
        """Configurations run on at least ``share`` of the tasks (stage 2 and the defaults): the candidates a
        portfolio is chosen from."""
        ran = {cid: 0 for cid in self.config_ids}
        for t in self.task_names:
            for cid in self.scores.get(t, {}):
                if cid in ran:
                    ran[cid] += 1
        need = share * len(self.tasks)
        return [cid for cid, n in ran.items() if n >= need and n > 0]

    # -- file -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "configs": self.configs, "tasks": self.tasks,
                "scores": {t: {c: _finite_or_none(v) for c, v in row.items()} for t, row in self.scores.items()},
                "fit_seconds": {t: {c: _finite_or_none(v) for c, v in row.items()}
                                for t, row in self.fit_seconds.items()}}

    def save(self, path: str | Path) -> None:
        blob = json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()
        write_atomic(Path(path), gzip.compress(blob, mtime=0))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Matrix:
        """The matrix at ``path`` (None: the one shipped with the package); a damaged file raises ValueError
        naming it."""
        p = Path(path) if path is not None else packaged_path(PACKAGED)
        try:
            data = json.loads(gzip.decompress(p.read_bytes()))
            return cls.from_dict(data)
        except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError,
                ValueError) as exc:
            raise ValueError(f"the matrix file {p} is damaged or not a Daedalus matrix ({exc}); rebuild it "
                             "with bench/meta_matrix.py --stage export") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Matrix:
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        configs = [{"id": str(c["id"]), "family": str(c["family"]), "config": c["config"]} for c in data["configs"]]
        tasks = [dict(t) for t in data["tasks"]]
        for t in tasks:
            Task(t["task"])
            str(t["name"]), str(t["group"]), str(t["metric"])
            if not isinstance(t["higher_is_better"], bool):
                raise ValueError(f"task {t['name']!r}: higher_is_better is not true or false")
        scores = {str(t): {str(c): _finite_or_none(v) for c, v in row.items()} for t, row in data["scores"].items()}
        fits = {str(t): {str(c): _finite_or_none(v) for c, v in row.items()}
                for t, row in data.get("fit_seconds", {}).items()}
        return cls(configs=configs, tasks=tasks, scores=scores, fit_seconds=fits)


def normalise_with(utility: np.ndarray, median: Any, best: Any) -> np.ndarray:
    """``(u - median) / (best - median)``, clipped below at -1 (a task where every configuration scores the same
    divides by 1)."""
    spread = np.asarray(best - median, dtype=float)
    spread = np.where(spread > 1e-12, spread, 1.0)
    with np.errstate(invalid="ignore"):
        return np.maximum((utility - median) / spread, WORST)
