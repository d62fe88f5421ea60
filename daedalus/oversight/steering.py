"""Steering a running search from another terminal: pause, resume, exclude a family, add time, enqueue a config.

    daedalus steer RUN pause | resume | exclude FAMILY | add-time S | enqueue CONFIG.json

The command is checked (:func:`issue_command`) and appended to the run's audit log as a ``steer`` record; the
audit log is the queue. The search loop (:class:`Steering`, called before every trial) reads the records added
since it last looked, applies each command and records what it did as ``steer_applied`` (with the command's
``seq``). So a command takes effect before the next trial starts, at most one trial after it was issued, and
both the order and the effect are in the hash chain.

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from daedalus.data.schema import Task
from daedalus.designers.base import PRUNED, Proposal, Result
from daedalus.designers.optuna_designer import OptunaDesigner
from daedalus.errors import ConfigError, RunError
from daedalus.spaces.registry import get_family
from daedalus.store.audit import os_user
from daedalus.store.run import RunStore

ACTIONS = ("pause", "resume", "exclude", "add-time", "enqueue")
POLL_SECONDS = 0.25  # how often a paused search looks for new commands
SEARCH_OVER = ("ensemble_selected", "ensemble_skipped", "build_finished")  # events after the search loop
MAX_PRUNED_IN_A_ROW = 25  # proposals of excluded families in a row before one is steered to an allowed family

SpaceOf = Callable[[str], dict[str, BaseDistribution]]


class Clock(Protocol):
    seconds: float | None

    def add(self, seconds: float) -> None: ...


class Messages(Protocol):
    def message(self, text: str, **fields: Any) -> None: ...


# -- issuing a command (the 'steer' command's side) ----------------------------------------------------------
def issue_command(run_dir: Path, action: str, value: str | None) -> dict[str, Any]:
    """Check a command against the run and append it to the run's audit log; returns the record."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown steering command '{action}'; use one of {', '.join(ACTIONS)}")
    store = RunStore.open(run_dir)
    info = store.read("run")
    if info.get("kind") == "image":
        raise ConfigError("steering applies to the tabular search; this is an image run (architecture search)")
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
        family, config = check_config(_read_json(value), families, excluded,
                                      lambda f: get_family(f).space(task, n_rows))
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


# -- applying commands (the search loop's side) --------------------------------------------------------------
class Steering:
    """Stands between the designer and the evaluation: before each trial it applies new commands, waits while
    paused, and hands over the next proposal of a family that is not excluded (see the module docstring)."""

    def __init__(self, store: RunStore, designer: OptunaDesigner, clock: Clock, reporter: Messages) -> None:
        self.store = store
        self.designer = designer
        self.clock = clock
        self.reporter = reporter
        self._offset = 0  # bytes of the audit log read so far (complete lines only)
        state = steering_state(self._new_records())  # what earlier sessions left in force
        self.paused = state.paused_by is not None
        self._carried_pause = state.paused_by
        self.excluded: set[str] = set(state.excluded)
        self._pending = list(state.pending)  # e.g. issued while the run was stopped: applied before any trial

    def next_proposal(self, out_of_time: Callable[[], bool]) -> Proposal | None:
        """The next proposal to evaluate, or None when the search's time ran out while paused."""
        self.apply_commands()
        if self.paused:
            if self._carried_pause is not None:
                self.reporter.message(f"search paused by 'daedalus steer' (audit record {self._carried_pause}) "
                                      f"before the run stopped; it stays paused after the resume: 'daedalus steer "
                                      f"{self.store.root} resume' continues it")
            else:
                self.reporter.message("search paused by 'daedalus steer'; 'steer RUN resume' continues it")
            self._carried_pause = None
            while self.paused:
                if out_of_time():
                    self.store.audit.append("pause_expired", reason="the search's time ran out while paused; "
                                            "the build finishes with the models it has")
                    return None
                time.sleep(POLL_SECONDS)
                self.apply_commands()
            if out_of_time():
                return None
        return self._allowed_proposal()

    def _allowed_proposal(self) -> Proposal:
        for _ in range(MAX_PRUNED_IN_A_ROW):
            proposal = self.designer.ask()
            self.store.audit.append("trial_proposed", trial=proposal.number, family=proposal.family,
                                    config=proposal.candidate, designer=proposal.designer, reason=proposal.reason)
            if proposal.family not in self.excluded:
                return proposal
            reason = f"family {proposal.family} excluded by 'daedalus steer'"
            self.designer.tell(proposal, Result(PRUNED, None, {"reason": reason, "designer": proposal.designer}))
            self.store.audit.append("trial_pruned", trial=proposal.number, family=proposal.family, reason=reason)
        # TPE keeps proposing excluded families (it is still sampling at random): steer it to an allowed one.
        allowed = [f for f in self.designer.families if f not in self.excluded]
        family = allowed[self.designer.study.trials[-1].number % len(allowed)]
        self.designer.enqueue_steered(family, {}, f"{MAX_PRUNED_IN_A_ROW} proposals in a row were of excluded "
                                                  f"families, so {family} is tried, its parameters sampled")
        return self._allowed_proposal()

    # -- commands --------------------------------------------------------------------------------------------
    def _new_records(self) -> list[dict[str, Any]]:
        path = self.store.audit.path
        if not path.exists():
            return []
        with open(path, "rb") as f:
            f.seek(self._offset)
            raw = f.read()
        complete = raw[: raw.rfind(b"\n") + 1]  # a line still being written is read next time
        self._offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def apply_commands(self) -> None:
        """Apply the commands issued since the last call, each recorded as ``steer_applied``."""
        commands = self._pending + [r for r in self._new_records() if r.get("event") == "steer"]
        self._pending = []
        for command in commands:
            applied, effect = self._apply(command)
            extra = {"family": command["family"]} if command.get("command") == "exclude" else {}
            self.store.audit.append("steer_applied", command_seq=command["seq"], command=command.get("command"),
                                    applied=applied, effect=effect, **extra)
            self.reporter.message(f"steering: {command.get('command')}: {effect}")

    def _apply(self, command: dict[str, Any]) -> tuple[bool, str]:
        action = command.get("command")
        if action in ("pause", "resume"):
            self._carried_pause = None  # a pause or resume applied in this session supersedes the carried one
        if action == "pause":
            self.paused = True
            return True, "the search waits before its next trial (the budget clock keeps running)"
        if action == "resume":
            was_paused, self.paused = self.paused, False
            return was_paused, "the search continues" if was_paused else "the search was not paused"
        try:
            if action == "exclude":
                family = check_exclusion(str(command.get("family")), self.designer.families, self.excluded)
                self.excluded.add(family)
                left = [f for f in self.designer.families if f not in self.excluded]
                return True, f"no further trial of {family}; families left: {', '.join(left)}"
            if action == "add-time":
                if self.clock.seconds is None:
                    return False, "this session has no time budget (--trials only), so there is no time to add"
                self.clock.add(float(command["seconds"]))
                return True, f"the budget is now {self.clock.seconds:.1f} s"
            if action == "enqueue":
                task, n_rows = self.designer.task, self.designer.n_rows
                family, config = check_config({"family": command.get("family"), "config": command.get("config")},
                                              self.designer.families, self.excluded,
                                              lambda f: get_family(f).space(task, n_rows))
                self.designer.enqueue_steered(family, config, f"enqueued by 'daedalus steer' (audit record "
                                                              f"{command['seq']})")
                return True, f"the next trial runs this {family} configuration"
        except ConfigError as exc:  # e.g. a family excluded after the configuration was enqueued
            return False, f"not applied: {exc}"
        return False, f"unknown command {action!r}"
