"""The portfolio mined from the matrix: an ordered list of configurations to try first on a new table.

Selection (:func:`select_portfolio`) is greedy forward selection (auto-sklearn 2.0, TabRepo): each step adds
the candidate that most raises the mean, over the matrix's tasks, of the normalised score the portfolio gets
on the task. What a portfolio "gets" on a task depends on what the build does with its members:

- **ensemble-aware** (out-of-fold predictions given): the score of a Caruana ensemble of the members
  (``ensembles/caruana.py``), which is what a build ships. A candidate's gain on a task is the best Caruana
  step that would add it to the current ensemble (blended at weights 1/2, 1/3 or 1/5); once chosen, the
  ensemble is selected again by :func:`greedy_selection` over all members. A mediocre model that is right
  where the others are wrong is worth more here than a second copy of the best one (TabRepo's authors name
  ensemble-blind selection as their weakness).
- **best-member** (no predictions): the best single member's normalised score on the task.

A :class:`Portfolio` keeps, besides its members in order, each member's normalised score on every task and
the tasks' meta-features, so a build can re-order the members for a new table by its nearest tasks
(``designers/warm_start.py``, the one place that orders them). ``portfolio.json`` is plain JSON, validated on
load against each family's space:
a damaged or hostile file raises ValueError naming it, and nothing in it is ever executed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from daedalus.data.metafeatures import MetaFeatures
from daedalus.data.schema import Task
from daedalus.designers.meta.matrix import WORST, Matrix, packaged_path, write_atomic
from daedalus.designers.meta.space_fit import Config, fit_to_space, in_distribution
from daedalus.errors import DaedalusError
from daedalus.spaces.registry import FAMILIES, get_family

FORMAT = 1
PACKAGED = "portfolio.json"
MAX_FILE_BYTES = 2_000_000  # a portfolio is a few dozen kilobytes; a huge file is refused before parsing
MINED_ROWS = 1_000  # the spaces a member is checked against: those of the tables it was mined on (small)
BLEND_STEPS = (1, 2, 4)  # the current ensemble's weight against a new member's 1 (Caruana-like additions)
# An ensemble's normalised score is capped: on a task where the best configuration is barely above the median,
# a small absolute gain would be a huge normalised one and outweigh every other task.
ENSEMBLE_CAP = 2.0
DEFAULT_SIZE = 12  # the shipped portfolio's size

# Out-of-fold predictions per task: (targets, {config id: predictions on the same rows})
OOF = Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]]


class Ensembler(Protocol):
    """How a build scores and ensembles predictions on a task of the matrix. It lives above this layer (the
    metrics and Caruana's selection: ``daedalus.ensembles.meta.CaruanaEnsembler``) and is handed in."""

    def utility(self, task: str, y: np.ndarray, pred: np.ndarray) -> float:
        """The metric of ``pred`` on the task, higher is better."""
        ...

    def ensemble(self, task: str, y: np.ndarray, preds: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """The ensemble a build would select from ``preds``: (its blended predictions, its utility)."""
        ...


@dataclass(frozen=True)
class Member:
    slot: int  # 1-based position in the portfolio
    config_id: str
    family: str
    config: Config | None  # None: the family's default configuration (which depends on the task)
    why: str
    scores: dict[str, float] = field(default_factory=dict)  # task name -> this member's normalised score
    cost: float = 1.0  # its fit time against a typical configuration's on the same tasks (Matrix.relative_cost)

    def config_for(self, task: Task, n_rows: int) -> Config:
        """The configuration to run on a table of this task and size (projected onto its space)."""
        return fit_to_space(self.family, self.config, task, n_rows)


@dataclass
class Portfolio:
    members: list[Member]
    tasks: list[dict[str, Any]]  # {name, task, group, meta_features}
    mode: str  # "ensemble" or "best-member"
    trajectory: list[float] = field(default_factory=list)  # mean normalised score after each slot

    # -- file -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "mode": self.mode, "trajectory": self.trajectory,
                "members": [asdict(m) for m in self.members], "tasks": self.tasks}

    def save(self, path: str | Path) -> None:
        write_atomic(Path(path), json.dumps(self.to_dict(), indent=1, allow_nan=False).encode())

    @classmethod
    def load(cls, path: str | Path | None = None) -> Portfolio:
        """The portfolio at ``path`` (None: the one shipped with the package), every member checked against its
        family's space; a damaged or hostile file raises ValueError naming it."""
        return cls.read(path)[0]

    @classmethod
    def read(cls, path: str | Path | None = None) -> tuple[Portfolio, str]:
        """As :meth:`load`, with the SHA-256 of the very bytes parsed (read once: a file replaced after it was
        parsed cannot be the one the audit log names)."""
        p = Path(path) if path is not None else packaged_path(PACKAGED)
        try:
            with p.open("rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError(f"more than a portfolio's {MAX_FILE_BYTES} bytes")
            return cls.from_dict(json.loads(raw)), hashlib.sha256(raw).hexdigest()
        except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, DaedalusError) as exc:
            raise ValueError(f"the portfolio file {p} is damaged or not a Daedalus portfolio ({exc}); restore it "
                             "or rebuild it with bench/meta_matrix.py --stage export") from None

    @classmethod
    def from_dict(cls, data: Any) -> Portfolio:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"expected a JSON object of format {FORMAT}")
        mode = data["mode"]
        if mode not in ("ensemble", "best-member"):
            raise ValueError(f"unknown mode {mode!r}")
        members = [_member(i, m) for i, m in enumerate(_list(data["members"], "members"), 1)]
        tasks = []
        for t in _list(data["tasks"], "tasks"):
            Task(t["task"])
            feats = t.get("meta_features") or {}
            if not isinstance(feats, dict):
                raise ValueError(f"meta_features of task {t.get('name')!r} is not an object")
            tasks.append({"name": _text(t["name"]), "task": t["task"], "group": _text(t["group"]),
                          "meta_features": {_text(k): _number(v) for k, v in feats.items()}})
        trajectory = [_number(v) for v in _list(data.get("trajectory", []), "trajectory")]
        return cls(members=members, tasks=tasks, mode=mode, trajectory=trajectory)


def _similarity(features: Mapping[str, float | None]) -> np.ndarray | None:
    """``MetaFeatures.similarity_vector`` of a whole record of meta-feature values; None for a partial one."""
    try:
        return MetaFeatures.from_dict({"values": dict(features), "seconds": 0.0}).similarity_vector()
    except ValueError:
        return None


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError(f"{value!r} is not a short string")
    return value


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def check_config(family: str, config: Any) -> Config | None:
    """``config`` if every key is a hyperparameter of ``family`` and every value one its space can give for
    some task it does; else ValueError. None (the family's default) passes."""
    if family not in FAMILIES:
        get_family(family)  # raises ConfigError naming the family and the known ones (a mitigation: below)
        raise ValueError(f"family {family!r} is a fairness mitigation, not a portfolio member")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise ValueError(f"the {family} configuration is not an object")
    spaces = [get_family(family).space(task, MINED_ROWS) for task in FAMILIES[family].tasks]
    for key, value in config.items():
        dists = [s[key] for s in spaces if key in s]
        if not dists:
            raise ValueError(f"{key!r} is not a hyperparameter of {family}")
        if not any(in_distribution(value, d) for d in dists):
            raise ValueError(f"{family}.{key} = {value!r} is outside its space")
    return dict(config)


def _member(slot: int, m: Any) -> Member:
    if not isinstance(m, dict):
        raise ValueError(f"member {slot} is not an object")
    family = _text(m["family"])
    scores = m.get("scores", {})
    if not isinstance(scores, dict):
        raise ValueError(f"member {slot}'s scores are not an object")
    cost = _number(m.get("cost", 1.0))
    if not (math.isfinite(cost) and cost > 0):
        raise ValueError(f"member {slot}'s cost {cost!r} is not a positive number")
    return Member(slot=slot, config_id=_text(m["config_id"]), family=family,
                  config=check_config(family, m["config"]), why=str(m.get("why", ""))[:500],
                  scores={_text(k): _number(v) for k, v in scores.items()}, cost=cost)


# -- selection ------------------------------------------------------------------------------------------------
def greedy_order(scores: np.ndarray, cost: np.ndarray | None = None) -> list[int]:
    """An order of the columns of ``scores`` (tasks x members, normalised; NaN counts as failed): each next
    member the one that raises the mean over tasks of the best member so far the most, per unit of ``cost``
    when given (the anytime rule of ``select_portfolio(cost_aware=True)``)."""
    norm = np.nan_to_num(np.asarray(scores, dtype=float), nan=WORST)
    n = norm.shape[1]
    unit = np.ones(n) if cost is None else np.where(np.isfinite(cost) & (cost > 0), cost, 1.0)
    current = np.full(norm.shape[0], WORST)
    order: list[int] = []
    while len(order) < n:
        gains = np.array([-np.inf if j in order else (np.maximum(current, norm[:, j]).mean() - current.mean())
                          / unit[j] for j in range(n)])
        pick = int(np.argmax(gains))
        order.append(pick)
        current = np.maximum(current, norm[:, pick])
    return order


def select_portfolio(matrix: Matrix, size: int = DEFAULT_SIZE, oof: OOF | None = None,
                     ensembler: Ensembler | None = None, candidates: Sequence[str] | None = None,
                     cost_aware: bool = False) -> Portfolio:
    """Greedy forward selection of ``size`` members among ``candidates`` (default: the configurations run on
    90% of the tasks or more); ensemble-aware when ``oof`` (and the ``ensembler`` that scores it) is given, else
    best-member (see the module). ``cost_aware``: each slot takes the candidate with the largest gain *per unit
    of fit time* (``Matrix.relative_cost``), the greedy rule for an anytime schedule (Streeter and Golovin,
    2008): a build with a short budget runs the first few members only, and a slow member that gains a little
    more than a fast one delays every member after it."""
    if size < 1:
        raise ValueError("a portfolio needs at least one member")
    if (oof is None) != (ensembler is None):
        raise ValueError("ensemble-aware selection needs both the out-of-fold predictions and an ensembler")
    ids = list(candidates) if candidates is not None else matrix.dense_configs()
    col = {cid: j for j, cid in enumerate(matrix.config_ids)}
    norm = np.nan_to_num(matrix.normalised()[:, [col[c] for c in ids]], nan=-1.0)  # never run: as bad as failed
    names = matrix.task_names
    state = _EnsembleState(matrix, oof, ensembler) if oof is not None and ensembler is not None else None
    current = np.full(len(names), -np.inf)  # per task, what the portfolio chosen so far gets
    cost_of = matrix.relative_cost()
    cost = np.array([cost_of[col[c]] if cost_aware and np.isfinite(cost_of[col[c]]) else 1.0 for c in ids])
    chosen: list[int] = []
    members: list[Member] = []
    trajectory: list[float] = []
    for slot in range(1, min(size, len(ids)) + 1):
        gains = np.full(len(ids), -np.inf)
        values: dict[int, np.ndarray] = {}
        for j in range(len(ids)):
            if j in chosen:
                continue
            best_member = np.maximum(current, norm[:, j])
            values[j] = best_member if state is None else state.with_candidate(ids[j], best_member)
            gains[j] = float(np.mean(values[j]))
        # per unit of cost, from where the portfolio stands (the first slot: from a failed model's score)
        base = float(np.mean(current)) if slot > 1 else WORST
        pick = int(np.argmax((gains - base) / cost if cost_aware else gains))
        before = f"{float(np.mean(current)):.3f} -> " if slot > 1 else ""
        chosen.append(pick)
        current = values[pick] if state is None else state.add(ids[pick], np.maximum(current, norm[:, pick]))
        trajectory.append(round(float(np.mean(current)), 6))
        wins = [names[i] for i in np.argsort(-norm[:, pick])[:3]]
        why = (f"slot {slot}: mean normalised score over {len(names)} tasks {before}{trajectory[-1]:.3f} "
               f"({'Caruana ensemble of the members' if state else 'best member'}"
               f"{f', per unit of fit time: relative cost {cost[pick]:.2f}' if cost_aware else ''}); strongest on "
               f"{', '.join(wins)}")
        config = matrix.config(ids[pick])
        members.append(Member(slot=slot, config_id=ids[pick], family=config["family"], config=config["config"],
                              why=why, scores={n: round(float(norm[i, pick]), 4) for i, n in enumerate(names)},
                              cost=round(float(cost_of[col[ids[pick]]]), 4) if np.isfinite(cost_of[col[ids[pick]]])
                              else 1.0))
    tasks = [{"name": t["name"], "task": t["task"], "group": t["group"],
              "meta_features": dict(t.get("meta_features") or {})} for t in matrix.tasks]
    return Portfolio(members=members, tasks=tasks, mode="ensemble" if state else "best-member",
                     trajectory=trajectory)


class _EnsembleState:
    """Per task, the ensemble of the members chosen so far and its normalised score."""

    def __init__(self, matrix: Matrix, oof: OOF, ensembler: Ensembler) -> None:
        self.names = matrix.task_names
        self.ensembler = ensembler
        self.oof = [oof.get(n) for n in self.names]
        self.members: list[list[str]] = [[] for _ in self.names]
        self.blend: list[np.ndarray | None] = [None] * len(self.oof)
        self.median, self.best = matrix.reference()

    def _norm(self, i: int, utility: float) -> float:
        spread = self.best[i] - self.median[i]
        return min(max((utility - self.median[i]) / (spread if spread > 1e-12 else 1.0), -1.0), ENSEMBLE_CAP)

    def with_candidate(self, cid: str, best_member: np.ndarray) -> np.ndarray:
        """Per task, the normalised score with ``cid`` added (best member where a task has no predictions)."""
        out = best_member.copy()
        for i, data in enumerate(self.oof):
            blend = self.blend[i]
            if data is None or cid not in data[1] or blend is None:
                continue  # nothing to blend yet (the first slot) or no predictions: the best member's score
            y, cand = data[0], np.asarray(data[1][cid], dtype=float)
            tries = [self.ensembler.utility(self.names[i], y, (w * blend + cand) / (w + 1)) for w in BLEND_STEPS]
            out[i] = max(out[i], self._norm(i, max(tries)))
        return out

    def add(self, cid: str, best_member: np.ndarray) -> np.ndarray:
        """Add ``cid`` to every task's members and select each task's ensemble again."""
        out = best_member.copy()
        for i, data in enumerate(self.oof):
            if data is None or cid not in data[1]:
                continue
            self.members[i].append(cid)
            preds = [np.asarray(data[1][c], dtype=float) for c in self.members[i]]
            blend, utility = self.ensembler.ensemble(self.names[i], data[0], preds)
            self.blend[i] = blend
            out[i] = max(out[i], self._norm(i, utility))
        return out
