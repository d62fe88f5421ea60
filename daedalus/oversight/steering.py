"""Steering a running search from another terminal: pause, resume, exclude a family, add time, enqueue a config.

    daedalus steer RUN pause | resume | exclude FAMILY | add-time S | enqueue CONFIG.json

The command is checked (:func:`issue_command`) and appended to the run's audit log as a ``steer`` record; the
audit log is the queue. The search's designer is wrapped in ``orchestration.steered.SteeredDesigner``, which
reads the records added since it last looked before every ask (and the loop before every budget check), applies
each command and records what it did as ``steer_applied`` (with the command's ``seq``). So a command takes
effect before the next trial starts, at most one trial after it was issued, and both the order and the effect
are in the hash chain. This module is the oversight side: issuing and checking commands, and replaying what
they leave in force.

Pause, resume and add-time apply to any search; exclude and enqueue choose among model families, so they are for
table runs only (an image run searches architectures of one space: ``steer`` refuses them).

- ``pause``: the loop waits before its next trial, polling for commands. The budget clock keeps running, since
  ``--time`` bounds the whole build: when the time left for the search runs out while paused, the pause ends
  (``pause_expired``) and the build finishes with the models it has. A run bounded by ``--trials`` only waits
  until ``resume`` (Ctrl-C stops it; ``daedalus resume`` continues it, still paused).
- ``exclude FAMILY``: no further trial of that family is evaluated. A proposal of it (queued or sampled) is closed
  as PRUNED in the study (``trial_pruned`` in the log), so TPE learns to leave it.
- ``add-time S``: the budget clock gets S more seconds (a run bounded by ``--trials`` only has no clock to extend).
- ``enqueue CONFIG.json``: ``{"family": "lightgbm", "num_leaves": 63, ...}`` (or the same with the parameters
  under ``"config"``, as in the audit log's ``trial_proposed``) is checked against the family's search space and
  enqueued in the Optuna study (``enqueue_trial``); the next trial runs it, ahead of the portfolio's queue.
  Parameters left out are sampled by TPE.

Every command keeps its effect across ``daedalus resume`` (after Ctrl-C or a kill), replayed from the log by
:func:`steering_state`:

- a run paused when it stopped stays paused after the resume, until ``steer RUN resume`` (the resume says so);
  only the pause's expiry (``pause_expired``) or the build's end lifts it otherwise;
- excluded families stay excluded;
- time added by ``add-time`` stays in the run's budget: a resume without ``--time`` gets the build's ``--time``
  plus every second added so far (an explicit ``resume --time S`` sets the session's budget to S);
- an enqueued configuration not yet run stays in the study's queue and runs first (one cut short by the kill runs
  again);
- a command issued while the run was stopped (a killed run's status is still ``running``) or not applied before
  it stopped is applied when the search resumes, before its first trial. Each command is applied exactly once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from daedalus.data.schema import Task
from daedalus.errors import ConfigError, RunError
from daedalus.spaces.registry import get_family
from daedalus.store.audit import os_user
from daedalus.store.run import RunStore

ACTIONS = ("pause", "resume", "exclude", "add-time", "enqueue")
FAMILY_ACTIONS = ("exclude", "enqueue")  # they choose among model families: table runs only
SEARCH_OVER = ("ensemble_selected", "ensemble_skipped", "build_finished")  # events after the search loop

SpaceOf = Callable[[str], dict[str, BaseDistribution]]  # a family's search space, by name


def family_spaces(task: Task, n_rows: int) -> SpaceOf:
    """The search space of each family for this run's task and rows (what enqueued configurations are checked
    against)."""
    return lambda family: get_family(family).space(task, n_rows)


# -- issuing a command (the 'steer' command's side) ----------------------------------------------------------
def issue_command(run_dir: Path, action: str, value: str | None) -> dict[str, Any]:
    """Check a command against the run and append it to the run's audit log; returns the record."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown steering command '{action}'; use one of {', '.join(ACTIONS)}")
    store = RunStore.open(run_dir)
    info = store.read("run")
    if info.get("kind") == "image" and action in FAMILY_ACTIONS:
        raise ConfigError(f"'steer {action}' chooses among model families, and this image run searches "
                          f"architectures of one space ({info.get('space', 'cnn')}); use pause, resume or add-time")
    if info.get("status") != "running":
        raise RunError(f"run '{run_dir}' is not running (status {info.get('status')}); steering acts on a running "
                       f"search: continue it with 'daedalus resume {run_dir}' and steer it then")
    needs_value = action in ("exclude", "add-time", "enqueue")
    if needs_value and not value:
        raise ConfigError(f"'steer {action}' needs a value, e.g. 'daedalus steer RUN {action} "
                          f"{ {'exclude': 'knn', 'add-time': '60', 'enqueue': 'config.json'}[action] }'")
    if not needs_value and value:
        raise ConfigError(f"'steer {action}' takes no value; got '{value}'")
    records = store.audit.records()
    session = [r for r in records if r["seq"] > max((r["seq"] for r in records if r["event"] == "resumed"),
                                                    default=-1)]
    if any(r["event"] in SEARCH_OVER for r in session):
        raise RunError(f"the search of run '{run_dir}' is over (its final model is being built); steering acts "
                       f"before a trial: resume the run with 'daedalus resume {run_dir}' to search more")
    fields: dict[str, Any] = {}
    families = list(info.get("families", []))
    excluded = excluded_families(records)
    if action == "exclude":
        assert value is not None
        fields["family"] = check_exclusion(value, families, excluded)
    elif action == "add-time":
        fields["seconds"] = _positive_seconds(value)
    elif action == "enqueue":
        task, n_rows = Task(info["task"]), _n_rows(store)
        family, config = check_config(_read_json(value), families, excluded, family_spaces(task, n_rows))
        fields.update(family=family, config=config, source=str(value))
    return store.audit.append("steer", command=action, **fields, os_user=os_user())


def excluded_families(records: list[dict[str, Any]]) -> set[str]:
    """Families excluded by ``steer exclude``, whether the search has applied the command yet or not."""
    return {str(r["family"]) for r in records if r.get("event") == "steer" and r.get("command") == "exclude"}


def check_exclusion(family: str, families: list[str], excluded: set[str]) -> str:
    if family not in families:
        raise ConfigError(f"family '{family}' is not searched in this run; exclude one of {', '.join(families)}")
    if not set(families) - excluded - {family}:
        raise ConfigError(f"excluding '{family}' would leave no family to search; exclude another, or stop the "
                          "run with Ctrl-C")
    return family


def check_config(raw: Any, families: list[str], excluded: set[str], space_of: SpaceOf
                 ) -> tuple[str, dict[str, Any]]:
    """A configuration to enqueue: its family and its parameters, each within the family's search space."""
    if not isinstance(raw, dict) or not isinstance(raw.get("family"), str):
        raise ConfigError('an enqueued configuration is a JSON object with a "family", e.g. '
                          '{"family": "lightgbm", "num_leaves": 63}')
    family = raw["family"]
    if family not in families or family in excluded:
        allowed = [f for f in families if f not in excluded]
        raise ConfigError(f"family '{family}' is not searched in this run{' any more' if family in excluded else ''};"
                          f" use one of {', '.join(allowed)}")
    params = raw["config"] if isinstance(raw.get("config"), dict) else {k: v for k, v in raw.items() if k != "family"}
    space = space_of(family)
    config = {}
    for name, value in params.items():
        if name not in space:
            raise ConfigError(f"'{name}' is not a hyperparameter of {family}; use some of {', '.join(sorted(space))}")
        config[name] = _in_space(family, name, value, space[name])
    return family, config


def _in_space(family: str, name: str, value: Any, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        for choice in dist.choices:  # compared with types, so that true is not taken for 1
            if type(choice) is type(value) and choice == value:
                return choice
        raise ConfigError(f"{family}.{name} must be one of {list(dist.choices)}, got {value!r}")
    low, high = dist.low, dist.high  # type: ignore[attr-defined]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{family}.{name} must be a number in [{low}, {high}], got {value!r}")
    if isinstance(dist, IntDistribution):
        if not float(value).is_integer():
            raise ConfigError(f"{family}.{name} must be a whole number in [{low}, {high}], got {value!r}")
        value = int(value)
    if not low <= value <= high:
        raise ConfigError(f"{family}.{name} must be in [{low}, {high}], got {value!r}")
    return value


def _positive_seconds(value: str | None) -> float:
    try:
        seconds = float(value or "")
    except ValueError:
        raise ConfigError(f"'steer add-time' takes a number of seconds, got '{value}'; e.g. add-time 60") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"'steer add-time' needs a positive number of seconds, got '{value}'; e.g. add-time 60")
    return seconds


def _read_json(path: str | None) -> Any:
    try:
        return json.loads(Path(str(path)).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file '{path}' not found; pass a JSON file to 'steer enqueue'") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file '{path}' is not valid JSON ({exc}); fix the file") from None


def _n_rows(store: RunStore) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(store.data_path).num_rows)


# -- what earlier sessions leave in force -------------------------------------------------------------------
@dataclass(frozen=True)
class SteeringState:
    """The steering in force at the start of a session, replayed from the audit log."""

    paused_by: int | None  # audit seq of the 'steer pause' in force; None: not paused
    excluded: frozenset[str]  # families excluded by applied commands
    added_seconds: float  # seconds added to the budget by applied 'add-time' commands, every session
    pending: tuple[dict[str, Any], ...]  # commands issued but never applied (e.g. while the run was stopped)

    def to_record(self) -> dict[str, Any]:
        return {"paused_by": self.paused_by, "excluded": sorted(self.excluded),
                "added_seconds": self.added_seconds, "pending": [r["seq"] for r in self.pending]}

    def describe(self, budget: str | None = None) -> str | None:
        """One line for the resume's output, or None when no steering carries over."""
        parts = []
        if self.paused_by is not None:
            parts.append(f"the search was paused (audit record {self.paused_by}) when the run stopped")
        if self.excluded:
            parts.append(f"excluded: {', '.join(sorted(self.excluded))}")
        if budget:
            parts.append(budget)
        if self.pending:
            parts.append(f"{len(self.pending)} command(s) not yet applied (audit record(s) "
                         f"{', '.join(str(r['seq']) for r in self.pending)}) apply before the first trial")
        return "steering carried over: " + "; ".join(parts) if parts else None


def steering_state(records: list[dict[str, Any]]) -> SteeringState:
    """What the steering commands of a run's audit log leave in force (see the module docstring)."""
    commands = {r["seq"]: r for r in records if r.get("event") == "steer"}
    applied: set[Any] = set()
    paused_by: int | None = None
    excluded: set[str] = set()
    added = 0.0
    for r in records:
        event = r.get("event")
        if event in ("pause_expired", "build_finished"):  # the pause ended with the search
            paused_by = None
        if event != "steer_applied":
            continue
        applied.add(r.get("command_seq"))
        if not r.get("applied"):
            continue
        command = r.get("command")
        if command == "pause":
            paused_by = r.get("command_seq")
        elif command == "resume":
            paused_by = None
        elif command == "exclude":
            excluded.add(str(r["family"]))
        elif command == "add-time":
            added += float(commands.get(r.get("command_seq"), {}).get("seconds", 0.0))
    pending = tuple(r for seq, r in commands.items() if seq not in applied)
    return SteeringState(paused_by, frozenset(excluded), added, pending)
